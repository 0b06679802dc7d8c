r"""PSIS-LOO that refuses too few draws and names the method in its warnings.

Example:
    >>> import numpy as np
    >>> from comparisons.inference_data.io_mc_dropout import from_mc_dropout
    >>> draws = 0.1 * np.random.default_rng(0).normal(size=(500, 4, 1))  # T x N x D
    >>> round(float(checked_loo(from_mc_dropout(draws, np.zeros((4, 1)), tau=1.0)).elpd), 2)
    -3.7
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import xarray as xr

from comparisons.inference_data.base import CHAIN_DIM, DRAW_DIM
from vi_dropout.validation import check_positive_int

__all__ = ["LOOReliabilityWarning", "checked_loo", "pointwise_psis", "unreliable_points"]


class LOOReliabilityWarning(UserWarning):
    """PSIS-LOO of a method is unreliable (Pareto :math:`\\hat k` above ArviZ's threshold)."""


def unreliable_points(result) -> tuple[int, int, float]:
    r"""``(bad, n, good_k)`` of an ``ELPDData``: the points whose Pareto :math:`\hat k` exceeds
    ``good_k`` or is not finite (arviz-stats returns NaN, without a warning, when the tail fit
    overflows: such a point is as unreliable as one with a large :math:`\hat k`).

    Example:
        >>> from types import SimpleNamespace
        >>> unreliable_points(SimpleNamespace(pareto_k=np.array([0.1, 0.9, np.nan]), good_k=0.7))
        (2, 3, 0.7)
    """
    k = np.asarray(result.pareto_k, dtype=np.float64)
    good_k = float(getattr(result, "good_k", None) or 0.7)
    return int(np.sum(~(k <= good_k))), int(k.size), good_k


def _relative_ess(idata: xr.DataTree) -> float:
    """The relative efficiency arviz-stats' ``loo`` uses by default: 1 for one chain, else
    the mean ``"mean"``-ESS of the posterior over its draws."""
    if ("posterior" not in idata.children
            or int(idata["posterior"].sizes.get(CHAIN_DIM, 1)) == 1):
        return 1.0
    ess = az.ess(idata, method="mean", relative=True)
    return float(np.mean(np.hstack([ess[v].values.ravel() for v in ess.data_vars])))


def pointwise_psis(log_lik: xr.DataArray, reff: float) -> tuple[xr.DataArray, xr.DataArray]:
    r"""Pareto-smoothed log weights and :math:`\hat k` per point (arviz-stats' ``psislw``,
    ``arviz_stats.base.array_stats``), where a point whose tail fit fails keeps its raw
    normalised weights :math:`-\ell_s - \operatorname{logsumexp}_s(-\ell_s)` and
    :math:`\hat k = \infty`.

    Why ours: arviz-stats refuses the whole data set (``ValueError: All tail values are the
    same``) if one point's tail ties, which MC dropout's draws do in a small network (its masks
    repeat) and a stuck chain does, and returns NaN weights and :math:`\hat k` (no warning)
    where the tail fit overflows (a sharp likelihood); ArviZ 0.x gave such points
    :math:`\hat k = \infty` (too few distinct tail draws for the Pareto fit), and so does
    this. The other points are arviz-stats' own numbers.

    Args:
        log_lik: ``chain x draw x ...`` pointwise log-likelihood.
        reff: relative efficiency of the draws (the tail length depends on it).

    Returns:
        ``(log_weights, pareto_k)`` in the layout arviz-stats' ``loo`` takes.

    Example:
        >>> ll = xr.DataArray(np.repeat([[-1.0, -2.0]], 100, 0)[None], dims=("chain", "draw", "obs"))
        >>> lw, k = pointwise_psis(ll, 1.0)
        >>> k.values.tolist()
        [inf, inf]
    """
    from arviz_stats.base import array_stats
    from scipy.special import logsumexp

    obs_dims = [d for d in log_lik.dims if d not in (CHAIN_DIM, DRAW_DIM)]
    ordered = log_lik.transpose(CHAIN_DIM, DRAW_DIM, *obs_dims)
    flat = ordered.values.reshape(-1, int(np.prod([ordered.sizes[d] for d in obs_dims])))
    log_weights, pareto_k = np.empty_like(flat), np.empty(flat.shape[1])
    for j in range(flat.shape[1]):
        try:
            lw, k = array_stats.psislw(flat[:, j], r_eff=reff)
        except ValueError:  # the largest draws tie
            lw, k = None, np.nan
        if not (np.isfinite(k) and np.isfinite(lw).all()):
            lw, k = -flat[:, j] - logsumexp(-flat[:, j]), np.inf
        log_weights[:, j], pareto_k[j] = lw, k
    shape = [ordered.sizes[d] for d in obs_dims]
    coords = {d: ordered[d] for d in obs_dims if d in ordered.coords}
    weights = xr.DataArray(log_weights.reshape(ordered.shape), dims=ordered.dims,
                           coords=ordered.coords)
    return weights, xr.DataArray(pareto_k.reshape(shape), dims=obs_dims, coords=coords)


def checked_loo(idata: xr.DataTree, *, min_draws: int = 100, var_name: str | None = None):
    r"""arviz-stats' ``loo`` that refuses too few draws and names the method in its warnings.

    PSIS fits a generalised Pareto to the largest importance ratios, :math:`M` of them,

    .. math::
        M = \min(0.2\,S,\ 3\sqrt{S}),

    so with few draws that fit (and its :math:`\hat k` diagnostic, whose threshold
    :math:`\min(1 - 1/\log_{10} S, 0.7)` ArviZ uses) is meaningless: fewer than ``min_draws``
    draws (chains x draws) raise ``ValueError``. Points whose :math:`\hat k` is above the
    threshold or not finite (arviz-stats gives NaN, silently, when the tail fit overflows) raise
    one :class:`LOOReliabilityWarning` naming the method and their number; ArviZ's own
    Pareto-:math:`\hat k` warning is replaced by it. Draws that are independent by construction (``attrs["draws_independent"]``:
    MC dropout, SVI, GP) use ``reff=1``.

    Args:
        idata: ``DataTree`` with a ``log_likelihood`` group (``attrs["method"]`` names it).
        min_draws: fewest draws (chains x draws) accepted, default 100.
        var_name: as in ``arviz_stats.loo`` (default: ``"y"``). The result is always
            pointwise (the per-point :math:`\hat k` are what the check reads).

    A point whose tail fit fails (its largest draws tie, and arviz-stats refuses the whole set;
    or the fit overflows, and arviz-stats returns NaN) gets :math:`\hat k = \infty` and its raw
    weights (:func:`pointwise_psis`), as in ArviZ 0.x, so ``elpd`` is always finite.

    Raises:
        ValueError: no ``log_likelihood`` group, an unknown or ambiguous ``var_name``, a
            log-likelihood that is not floating point, has NaN / inf entries or no
            observations, or too few draws.

    Returns:
        arviz-stats' ``ELPDData`` (``elpd``, ``se``, ``p``, ``pareto_k``, ``good_k``, ...).

    Example:
        >>> import numpy as np
        >>> from comparisons.inference_data.io_mc_dropout import from_mc_dropout
        >>> draws = 0.1 * np.random.default_rng(0).normal(size=(500, 4, 1))  # T x N x D
        >>> idata = from_mc_dropout(draws, np.zeros((4, 1)), tau=1.0)
        >>> round(float(checked_loo(idata).elpd), 2)
        -3.7
    """
    if not isinstance(idata, xr.DataTree):
        raise ValueError(f"checked_loo: idata must be an xarray.DataTree (ArviZ 1.x), got "
                         f"{type(idata).__name__}")
    if "log_likelihood" not in idata.children:
        raise ValueError("checked_loo: the DataTree has no log_likelihood group")
    ll = idata.log_likelihood
    method = ll.attrs.get("method", "unknown method")
    min_draws = check_positive_int(min_draws, f"checked_loo ({method}): min_draws")
    names = list(ll.data_vars)
    if var_name is None:
        if "y" not in names and len(names) != 1:
            raise ValueError(f"checked_loo ({method}): the log_likelihood group has the "
                             f"variables {names}; pass var_name")
        var_name = "y" if "y" in names else names[0]
    elif var_name not in names:
        raise ValueError(f"checked_loo ({method}): var_name {var_name!r} is not in the "
                         f"log_likelihood group (it has {names})")
    values = ll[var_name]
    if CHAIN_DIM not in values.dims or DRAW_DIM not in values.dims or values.ndim < 3:
        raise ValueError(f"checked_loo ({method}): log_likelihood[{var_name!r}] must have dims "
                         f"chain, draw and at least one observation dim, got {values.dims}")
    if not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"checked_loo ({method}): log_likelihood[{var_name!r}] must hold "
                         f"floating-point numbers, got {values.dtype}")
    n_points = int(values.size // (values.sizes[CHAIN_DIM] * values.sizes[DRAW_DIM]))
    if n_points == 0:
        raise ValueError(f"checked_loo ({method}): log_likelihood[{var_name!r}] has no "
                         f"observations")
    bad_values = int(np.count_nonzero(~np.isfinite(values.values)))
    if bad_values:
        raise ValueError(f"checked_loo ({method}): log_likelihood[{var_name!r}] has "
                         f"{bad_values} non-finite value(s) (NaN or inf); PSIS-LOO needs finite "
                         f"ones")
    n_draws = int(values.sizes[CHAIN_DIM] * values.sizes[DRAW_DIM])
    if n_draws < min_draws:
        raise ValueError(
            f"checked_loo ({method}): PSIS-LOO needs at least {min_draws} draws (chains x "
            f"draws), got {n_draws}; draw more samples"
        )
    # the relative efficiency arviz-stats would take from the posterior, computed here so that
    # a tree without a posterior group (only log_likelihood) works as well
    reff = 1.0 if ll.attrs.get("draws_independent", 0) in (1, True, "1") else \
        _relative_ess(idata)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            result = az.loo(idata, pointwise=True, var_name=var_name, reff=reff)
        except ValueError as err:
            if "tail values are the same" not in str(err):
                raise
            result = None
        if result is None or not (np.isfinite(result.pareto_k).all()
                                  and np.isfinite(result.elpd_i).all()):
            # some point's largest draws tie (MC dropout's masks repeat in a small network; a
            # stuck chain) or overflow the tail fit: smooth point by point, those raw, k = inf
            log_weights, pareto_k = pointwise_psis(values, reff)
            result = az.loo(idata, pointwise=True, var_name=var_name, reff=reff,
                            log_weights=log_weights, pareto_k=pareto_k)
    for w in caught:  # ArviZ's own Pareto-k warning is replaced by the one below
        if "Pareto" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    bad, n_obs, good_k = unreliable_points(result)
    if bad:
        warnings.warn(
            f"checked_loo ({method}): PSIS-LOO is unreliable: {bad} of {n_obs} observations "
            f"have Pareto k > {good_k:.2f} or a k that is not finite, with {n_draws} draws "
            f"(more draws, or exact LOO / K-fold for those points)",
            LOOReliabilityWarning, stacklevel=2)
    return result
