r"""Distances between two Gaussian predictive marginals, point by point, for comparing any two
predictive methods (MC dropout, exact GPs, HMC, ...).

Each function takes the per-test-point marginals of method *a*, :math:`\mathcal{N}(\mu_a,
\sigma_a^2)`, and of a reference method *b*, :math:`\mathcal{N}(\mu_b, \sigma_b^2)`, and
returns one value per point:

=======================================  ===========================================================
function                                 value per point
=======================================  ===========================================================
:func:`standardized_mean_difference`     :math:`|\mu_a - \mu_b| / \sigma_b`
:func:`variance_ratio`                   :math:`\sigma_a^2 / \sigma_b^2`
:func:`gaussian_kl`                      :math:`\mathrm{KL}(\mathcal{N}_a \,\|\, \mathcal{N}_b)`
:func:`gaussian_w2`                      2-Wasserstein distance :math:`W_2(\mathcal{N}_a, \mathcal{N}_b)`
:func:`gaussian_total_variation`         :math:`\mathrm{TV}(\mathcal{N}_a, \mathcal{N}_b) \in [0, 1]`
=======================================  ===========================================================

plus :func:`interval_coverage` (how often held-out targets fall into central predictive
intervals), :func:`mixture_interval_mass` (how much of a reference's draws-based predictive
falls into them), :func:`moment_match_samples` (MC samples -> moment-matched Gaussian, e.g. MC dropout
or HMC predictive draws) and :func:`summarize_predictive_distances` (all of the above averaged
over points, as a dict).

Conventions. Inputs are array-likes (numpy arrays, torch tensors, Python numbers) of one common
shape (0-d scalars broadcast); everything is computed in float64 numpy and returned as float64
numpy arrays of that shape. KL, the standardised mean difference and the variance ratio are
invariant under a common affine map of the target (so the scale the targets are on does not
matter); :math:`W_2` has the units of the target. Invalid input (NaN / inf, a variance
:math:`\le 0`, mismatched shapes) raises a ``ValueError`` naming the argument.

Why not ArviZ's: ``arviz_stats.kl_divergence`` and ``arviz_stats.wasserstein`` (ArviZ 1.x)
estimate distances between two sets of DRAWS of a whole posterior; these are the closed forms
between two Gaussians at each test point, exact and free of Monte Carlo error, for the
moment-matched predictives every method of the comparison gives. Where both exist they agree within
the estimators' Monte Carlo error (tests/comparisons/metrics/test_against_arviz_stats.py).

Example:
    >>> float(gaussian_kl(0.0, 1.0, 0.0, 1.0)), float(gaussian_w2(1.0, 4.0, 0.0, 1.0))
    (0.0, 1.4142135623730951)
    >>> round(float(gaussian_total_variation(0.0, 1.0, 1.0, 1.0)), 6)
    0.382925
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import special

__all__ = [
    "standardized_mean_difference",
    "variance_ratio",
    "gaussian_kl",
    "gaussian_w2",
    "gaussian_total_variation",
    "interval_coverage",
    "mixture_interval_mass",
    "moment_match_samples",
    "summarize_predictive_distances",
    "DISTANCE_METRICS",
]

DISTANCE_METRICS: tuple[str, ...] = ("smd", "var_ratio", "kl", "w2", "tv")


def _as_array(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real array-like, got {type(value).__name__}") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} must be finite, but {int(bad.sum())} of {arr.size} entries are NaN or inf"
        )
    return arr


def _check_variance(arr: np.ndarray, name: str) -> np.ndarray:
    bad = arr <= 0
    if bad.any():
        raise ValueError(
            f"{name} must be > 0 everywhere (a variance, not a standard deviation of 0), but "
            f"{int(bad.sum())} of {arr.size} entries are <= 0 (minimum {float(arr.min()):g})"
        )
    return arr


def _common_shape(arrays: dict[str, np.ndarray]) -> tuple[int, ...]:
    shapes = {name: a.shape for name, a in arrays.items() if a.ndim > 0}
    distinct = set(shapes.values())
    if len(distinct) > 1:
        listing = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(
            f"inputs must all have the same shape (0-d scalars broadcast); got {listing}. "
            f"Reshape them first (e.g. squeeze a trailing output dimension of 1)."
        )
    return distinct.pop() if distinct else ()


def _pair(mean_a, var_a, mean_b, var_b):
    arrays = {
        "mean_a": _as_array(mean_a, "mean_a"),
        "var_a": _check_variance(_as_array(var_a, "var_a"), "var_a"),
        "mean_b": _as_array(mean_b, "mean_b"),
        "var_b": _check_variance(_as_array(var_b, "var_b"), "var_b"),
    }
    shape = _common_shape(arrays)
    return tuple(np.broadcast_to(a, shape) for a in arrays.values())


def standardized_mean_difference(mean_a, var_a, mean_b, var_b) -> np.ndarray:
    r"""Mean difference in units of the reference's standard deviation.

    .. math::
        d = \frac{|\mu_a - \mu_b|}{\sigma_b}.

    Args:
        mean_a, var_a: method *a*'s predictive means and variances (same shape, e.g. ``(N,)``).
        mean_b, var_b: the reference method *b*'s.

    Returns:
        float64 array of the common shape.

    Example:
        >>> standardized_mean_difference([0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [4.0, 9.0]).tolist()
        [1.0, 0.0]
    """
    ma, _, mb, vb = _pair(mean_a, var_a, mean_b, var_b)
    return np.abs(ma - mb) / np.sqrt(vb)


def variance_ratio(mean_a, var_a, mean_b, var_b) -> np.ndarray:
    r"""Ratio of predictive variances, :math:`\sigma_a^2 / \sigma_b^2` (means are only checked).

    Example:
        >>> variance_ratio(0.0, [2.0, 3.0], 0.0, [1.0, 6.0]).tolist()
        [2.0, 0.5]
    """
    _, va, _, vb = _pair(mean_a, var_a, mean_b, var_b)
    return va / vb


def gaussian_kl(mean_a, var_a, mean_b, var_b) -> np.ndarray:
    r"""Closed-form :math:`\mathrm{KL}(\mathcal{N}(\mu_a, \sigma_a^2) \,\|\,
    \mathcal{N}(\mu_b, \sigma_b^2))` in nats.

    .. math::
        \mathrm{KL} = \frac12\Big(r - 1 - \log r + \frac{(\mu_a - \mu_b)^2}{\sigma_b^2}\Big),
        \qquad r = \frac{\sigma_a^2}{\sigma_b^2}.

    :math:`r - 1 - \log r` is evaluated as :math:`\operatorname{expm1}(\ell) - \ell` with
    :math:`\ell = \log\sigma_a^2 - \log\sigma_b^2`, accurate when the variances are close.

    Returns:
        float64 array :math:`\ge 0` of the common shape.

    Example:
        >>> round(float(gaussian_kl(1.0, 1.0, 0.0, 2.0)), 6)
        0.346574
    """
    ma, va, mb, vb = _pair(mean_a, var_a, mean_b, var_b)
    log_r = np.log(va) - np.log(vb)
    return 0.5 * (np.expm1(log_r) - log_r + (ma - mb) ** 2 / vb)


def gaussian_w2(mean_a, var_a, mean_b, var_b) -> np.ndarray:
    r"""Closed-form 2-Wasserstein distance between two 1-D Gaussians.

    .. math::
        W_2 = \sqrt{(\mu_a - \mu_b)^2 + (\sigma_a - \sigma_b)^2}

    (the quantile functions are :math:`\mu + \sigma\Phi^{-1}(u)`, and
    :math:`W_2^2 = \int_0^1 (F_a^{-1}(u) - F_b^{-1}(u))^2\,du`). Same units as the means.

    Example:
        >>> float(gaussian_w2(3.0, 1.0, 0.0, 25.0))
        5.0
    """
    ma, va, mb, vb = _pair(mean_a, var_a, mean_b, var_b)
    return np.hypot(ma - mb, np.sqrt(va) - np.sqrt(vb))


def _mass_between(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """:math:`\\Phi(hi) - \\Phi(lo)` for ``lo <= hi``, from whichever tail keeps precision."""
    upper = lo > 0
    return np.where(
        upper,
        special.ndtr(-lo) - special.ndtr(-hi),  # both in the upper tail: survival functions
        special.ndtr(hi) - special.ndtr(lo),
    )


def gaussian_total_variation(mean_a, var_a, mean_b, var_b) -> np.ndarray:
    r"""Total-variation distance between two 1-D Gaussians, in closed form via the crossing
    points of their densities.

    .. math::
        \mathrm{TV} = \sup_A |P_a(A) - P_b(A)| = \tfrac12\int|p_a - p_b|\,dx
        = \big|[\Phi(z_2) - \Phi(z_1)] - [\Phi(\tfrac{z_2 - \delta}{s}) - \Phi(\tfrac{z_1 - \delta}{s})]\big|.

    Write the narrower Gaussian as *a* (TV is symmetric), :math:`z = (x - \mu_a)/\sigma_a`,
    :math:`\delta = (\mu_b - \mu_a)/\sigma_a` and :math:`s = \sigma_b/\sigma_a \ge 1`. The
    densities cross where :math:`(s^2 - 1) z^2 + 2\delta z - \delta^2 - 2 s^2 \log s = 0`,

    .. math::
        z_{1,2} = \frac{-\delta \mp s\sqrt{\delta^2 + 2(s^2 - 1)\log s}}{s^2 - 1},

    evaluated in the cancellation-free form (:math:`q = -(\delta + \operatorname{sign}(\delta)
    s R)`, roots :math:`q/(s^2-1)` and :math:`c/q`), with :math:`s^2 - 1 =
    \operatorname{expm1}(2\log s)`. For equal variances one root is at infinity and the formula
    reduces to :math:`\mathrm{TV} = 2\Phi(|\delta|/2) - 1`. Probability masses between two
    points are taken from the tail that keeps precision. Absolute accuracy about ``1e-15``
    (checked against numerical integration in the tests).

    Returns:
        float64 array in :math:`[0, 1]` of the common shape.

    Example:
        >>> round(float(gaussian_total_variation(0.0, 1.0, 0.0, 4.0)), 6)
        0.322675
    """
    ma, va, mb, vb = _pair(mean_a, var_a, mean_b, var_b)
    swap = va > vb
    m1, v1 = np.where(swap, mb, ma), np.where(swap, vb, va)  # the narrower one
    m2, v2 = np.where(swap, ma, mb), np.where(swap, va, vb)
    s1 = np.sqrt(v1)
    delta = (m2 - m1) / s1
    log_s = 0.5 * (np.log(v2) - np.log(v1))  # >= 0
    s = np.exp(log_s)
    a = np.expm1(2.0 * log_s)  # s^2 - 1 >= 0
    c = -(delta**2 + 2.0 * s**2 * log_s)
    root = s * np.sqrt(delta**2 + 2.0 * a * log_s)
    sign = np.where(delta >= 0, 1.0, -1.0)
    q = -(delta + sign * root)
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = np.where(a > 0, q / np.where(a > 0, a, 1.0), -sign * np.inf)
        r2 = np.where(q != 0, c / np.where(q != 0, q, 1.0), 0.0)
    z1, z2 = np.minimum(r1, r2), np.maximum(r1, r2)
    identical = (delta == 0) & (a == 0)
    mass1 = _mass_between(z1, z2)
    mass2 = _mass_between((z1 - delta) / s, (z2 - delta) / s)
    tv = np.abs(mass1 - mass2)
    return np.clip(np.where(identical, 0.0, tv), 0.0, 1.0)


def interval_coverage(mean, var, y, level: float = 0.95, per_point: bool = False):
    r"""Fraction of targets inside the central ``level`` predictive interval of
    :math:`\mathcal{N}(\mu, \sigma^2)`.

    .. math::
        \hat c = \frac1N\sum_n \mathbf{1}\big[|y_n - \mu_n| \le z\,\sigma_n\big], \qquad
        z = \Phi^{-1}\big(\tfrac{1 + \text{level}}{2}\big)

    (:math:`z = 1.95996` for 95%). A calibrated predictive gives :math:`\hat c \approx` ``level``
    (binomial standard error :math:`\sqrt{\text{level}(1-\text{level})/N}`).

    Args:
        mean, var: predictive means and variances (same shape as ``y``, e.g. ``(N,)``).
        y: held-out targets on the same scale.
        level: nominal coverage in (0, 1).
        per_point: return the boolean indicators instead of their mean.

    Returns:
        A float (or a boolean array if ``per_point``).

    Example:
        >>> interval_coverage([0.0, 0.0], [1.0, 1.0], [1.0, 3.0])
        0.5
    """
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < float(
        level
    ) < 1.0:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    arrays = {
        "mean": _as_array(mean, "mean"),
        "var": _check_variance(_as_array(var, "var"), "var"),
        "y": _as_array(y, "y"),
    }
    shape = _common_shape(arrays)
    m, v, yy = (np.broadcast_to(a, shape) for a in arrays.values())
    z = special.ndtri(0.5 * (1.0 + float(level)))
    inside = np.abs(yy - m) <= z * np.sqrt(v)
    if per_point:
        return inside
    if inside.size == 0:
        raise ValueError("interval_coverage needs at least one point, got empty arrays")
    return float(inside.mean())


def mixture_interval_mass(mean, var, f_draws, noise_var, level: float = 0.95):
    r"""Mass that a reference predictive (a mixture over draws) puts inside the central ``level``
    interval of :math:`\mathcal{N}(\mu, \sigma^2)`: the calibration of a method's intervals
    against the reference instead of against held-out targets.

    .. math::
        m_n = \frac1S\sum_{s=1}^S \Big[\Phi\Big(\frac{\mu_n + z\sigma_n - f_{s,n}}
        {\sigma_\epsilon}\Big) - \Phi\Big(\frac{\mu_n - z\sigma_n - f_{s,n}}
        {\sigma_\epsilon}\Big)\Big], \qquad z = \Phi^{-1}\big(\tfrac{1 + \text{level}}{2}\big),

    for a reference :math:`y_n \sim \frac1S\sum_s \mathcal{N}(f_{s,n}, \sigma_\epsilon^2)` (e.g. HMC
    draws of :math:`f` with the model's noise). A method that matches the reference gives
    :math:`m_n \approx` ``level``; below it, its intervals are too narrow (over-confident).

    Args:
        mean, var: the method's predictive means and variances, shape ``(N,)``.
        f_draws: the reference's draws of :math:`f`, ``S x N`` (same scale).
        noise_var: :math:`\sigma_\epsilon^2 > 0`, the reference's noise variance.
        level: nominal level in (0, 1).

    Returns:
        ``(N,)`` float64 masses in [0, 1].

    Example:
        >>> float(mixture_interval_mass([0.0], [1.0], [[0.0]], 1.0)[0])  # the same Gaussian
        0.95
        >>> m = mixture_interval_mass([0.0], [2.0], [[-1.0], [1.0]], 1.0)  # moment-matched
        >>> round(float(m[0]), 4)  # the two-component mixture has lighter tails than N(0, 2)
        0.9617
    """
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < float(
        level
    ) < 1.0:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    m = _as_array(mean, "mean")
    v = _check_variance(_as_array(var, "var"), "var")
    f = _as_array(f_draws, "f_draws")
    if m.ndim != 1 or v.shape != m.shape:
        raise ValueError(f"mean and var must be (N,) arrays of one shape, got {m.shape} and "
                         f"{v.shape}")
    if f.ndim != 2 or f.shape[1] != m.shape[0]:
        raise ValueError(f"f_draws must be S x N with N = {m.shape[0]}, got shape {f.shape}")
    nv = _check_variance(_as_array(noise_var, "noise_var"), "noise_var")
    if nv.ndim != 0:
        raise ValueError(f"noise_var must be one number (the reference's noise variance), got "
                         f"shape {nv.shape}")
    noise_sd = math.sqrt(float(nv))
    z = special.ndtri(0.5 * (1.0 + float(level)))
    hi = (m + z * np.sqrt(v) - f) / noise_sd
    lo = (m - z * np.sqrt(v) - f) / noise_sd
    return _mass_between(lo, hi).mean(axis=0)


def moment_match_samples(samples, noise_var=0.0, y_mean=0.0, y_std=1.0, axis: int = 0):
    r"""Moment-matched Gaussian predictive from Monte Carlo samples of the regression function.

    Samples :math:`\hat y_t` (e.g. MC dropout forward passes on the standardised scale, or HMC
    draws of :math:`f`) are mapped to the target scale, :math:`\tilde y_t = \bar y + s\,\hat y_t`,
    and

    .. math::
        \mu = \frac1T\sum_t \tilde y_t, \qquad
        \sigma^2 = \sigma^2_\text{noise} + \frac1T\sum_t (\tilde y_t - \mu)^2

    (population variance, :math:`1/T`, as in :func:`vi_dropout.summaries.regression_summary`;
    for MC dropout :math:`\sigma^2_\text{noise} = 1/\tau` on the target scale).

    Args:
        samples: array-like, ``T x ...`` (sample axis ``axis``), e.g. ``T x N x 1``.
        noise_var: observation-noise variance :math:`\ge 0` on the target scale, a number or an
            array broadcastable to the output.
        y_mean: :math:`\bar y` (0 if the samples are already on the target scale).
        y_std: :math:`s > 0`.
        axis: the sample axis.

    Returns:
        ``(mean, var)``, float64 arrays of the samples' shape without ``axis``.

    Example:
        >>> m, v = moment_match_samples([[1.0], [3.0]], noise_var=0.5, y_mean=10.0, y_std=2.0)
        >>> m.tolist(), v.tolist()
        ([14.0], [4.5])
    """
    s = _as_array(samples, "samples")
    if s.ndim == 0:
        raise ValueError("samples must have a sample axis, got a scalar")
    try:
        s = np.moveaxis(s, axis, 0)
    except np.exceptions.AxisError:
        raise ValueError(f"axis {axis} is out of range for samples of shape {s.shape}") from None
    if s.shape[0] < 1:
        raise ValueError(f"samples must hold at least one sample along axis {axis}, got 0")
    nv = _as_array(noise_var, "noise_var")
    if (nv < 0).any():
        raise ValueError(f"noise_var must be >= 0, got minimum {float(nv.min()):g}")
    ym = float(_as_array(y_mean, "y_mean"))
    ys = float(_as_array(y_std, "y_std"))
    if not ys > 0:
        raise ValueError(f"y_std must be > 0, got {y_std!r}")
    orig = ym + ys * s
    mean = orig.mean(0)
    var = orig.var(0) + nv
    return mean, np.broadcast_to(var, mean.shape).copy()


def summarize_predictive_distances(mean_a, var_a, mean_b, var_b, scale: float = 1.0,
                                   mask=None) -> dict[str, float]:
    r"""All distances of this module averaged over points: how far method *a*'s Gaussian
    predictive marginals are from the reference *b*'s.

    Keys (:data:`DISTANCE_METRICS`):

    * ``smd``: mean of :math:`|\mu_a - \mu_b|/\sigma_b`;
    * ``var_ratio``: **geometric** mean of :math:`\sigma_a^2/\sigma_b^2`, i.e.
      :math:`\exp(\overline{\log r})` (a ratio's arithmetic mean is dominated by its large
      values; 1 means equal on average in log scale);
    * ``kl``: mean of :math:`\mathrm{KL}(\mathcal{N}_a\|\mathcal{N}_b)`;
    * ``w2``: mean of :math:`W_2 / \text{scale}` (pass the target's standard deviation to get
      :math:`W_2` in units of it);
    * ``tv``: mean total-variation distance.

    Args:
        mean_a, var_a, mean_b, var_b: per-point marginals (same shape).
        scale: divisor of :math:`W_2`, ``> 0``.
        mask: optional boolean array of the same shape selecting the points to average over.

    Returns:
        dict of floats.

    Example:
        >>> d = summarize_predictive_distances([0.0, 0.0], [1.0, 4.0], [0.0, 0.0], [1.0, 1.0])
        >>> d["var_ratio"], d["smd"], round(d["w2"], 3)
        (2.0, 0.0, 0.5)
    """
    ma, va, mb, vb = _pair(mean_a, var_a, mean_b, var_b)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (
        math.isfinite(scale) and scale > 0
    ):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != ma.shape:
            raise ValueError(
                f"mask must be a boolean array of shape {ma.shape}, got dtype {mask.dtype} and "
                f"shape {mask.shape}"
            )
        if not mask.any():
            raise ValueError("mask selects no points")
        ma, va, mb, vb = ma[mask], va[mask], mb[mask], vb[mask]
    if ma.size == 0:
        raise ValueError("summarize_predictive_distances needs at least one point")
    return {
        "smd": float(standardized_mean_difference(ma, va, mb, vb).mean()),
        "var_ratio": float(np.exp(np.mean(np.log(va) - np.log(vb)))),
        "kl": float(gaussian_kl(ma, va, mb, vb).mean()),
        "w2": float(gaussian_w2(ma, va, mb, vb).mean() / scale),
        "tv": float(gaussian_total_variation(ma, va, mb, vb).mean()),
    }
