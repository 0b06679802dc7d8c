r"""MC dropout forward passes as ``DataTree`` (layout: :mod:`comparisons.inference_data.base`).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> samples = rng.normal(size=(200, 5, 1))          # T x N x D, standardised scale
    >>> idata = from_mc_dropout(samples, y=np.zeros((5, 1)), tau=2.0, x=np.ones((5, 3)))
    >>> idata.log_likelihood["y"].dims
    ('chain', 'draw', 'obs')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from comparisons.inference_data.base import (
    OBS_DIM,
    GaussianDrawsConverter,
    check_finite,
    check_inputs,
    check_scale,
    check_target_array,
    split_chains,
    to_numpy,
)
from vi_dropout.validation import check_positive

__all__ = ["from_mc_dropout"]

_METHOD = "from_mc_dropout"


def _passes(arr: np.ndarray, n: int, d: int) -> np.ndarray:
    """The ``T x N x D`` passes (a ``T x N`` is one output), checked against ``y``'s ``N x D``."""
    if arr.ndim == 2 and d == 1:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"{_METHOD}: samples must have shape T x N x D or T x N, got {arr.shape}")
    if arr.shape[1:] != (n, d):
        raise ValueError(
            f"{_METHOD}: samples have {arr.shape[1]} observation(s) x {arr.shape[2]} output(s) "
            f"but y has shape {n} x {d}; they must match"
        )
    return arr


def _layer_dims(kind: str, name: str, i: int, a: np.ndarray, n: int) -> list[str]:
    """Dims (after ``T``) of the ``i``-th layer's ``kind`` (weight, bias or mask) draws."""
    if kind == "weight":
        if a.ndim != 3:
            raise ValueError(f"{_METHOD}: {name} must be T x out x in, got {a.shape}")
        return [f"layer{i}_out", f"layer{i}_in"]
    if kind == "bias":
        if a.ndim != 2:
            raise ValueError(f"{_METHOD}: {name} must be T x out, got {a.shape}")
        return [f"layer{i}_out"]
    if a.ndim == 3:
        if a.shape[1] != n:
            raise ValueError(f"{_METHOD}: {name} has {a.shape[1]} observation(s) but y has {n}")
        return [OBS_DIM, f"layer{i}_in"]
    if a.ndim == 2:
        return [f"layer{i}_in"]
    raise ValueError(f"{_METHOD}: {name} must be T x N x in or T x in, got {a.shape}")


def _layer_draws(layers: Mapping[str, Sequence[Any] | None], num_passes: int, n: int,
                 num_chains: int) -> tuple[dict, dict, dict]:
    """``(variables, dims, coords)`` of the optional per-layer weights, biases and masks."""
    extra, dims, coords = {}, {}, {}
    for kind, seq in layers.items():
        for i, value in enumerate(seq or ()):
            name = f"layers.{i}.{kind}"
            a = check_finite(to_numpy(value, name, _METHOD), name, _METHOD)
            if a.shape[0] != num_passes:
                raise ValueError(
                    f"{_METHOD}: {name} has {a.shape[0]} draws but samples have {num_passes}"
                )
            dims_i = _layer_dims(kind, name, i, a, n)
            for dim, size in zip(dims_i, a.shape[1:]):
                if dim in coords and len(coords[dim]) != size:
                    raise ValueError(f"{_METHOD}: {name} disagrees with another layer on {dim}")
                coords[dim] = np.arange(size)
            extra[name] = split_chains(a, num_chains, name, _METHOD)
            dims[name] = dims_i
    return extra, dims, coords


def from_mc_dropout(
    samples: Any,
    y: Any,
    tau: float,
    x: Any = None,
    *,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    num_chains: int = 1,
    weights: Sequence[Any] | None = None,
    biases: Sequence[Any] | None = None,
    masks: Sequence[Any] | None = None,
    seed: int | None = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    r"""MC dropout forward passes as ``DataTree``.

    The ``T`` stochastic passes :math:`\hat{\mathbf{y}}_t` (e.g. from
    :func:`vi_dropout.predict.mc_predict`, standardised scale) are the latent draws
    :math:`f_t = \bar y + s_y \hat{\mathbf{y}}_t` (``posterior["f"]``); ``posterior_predictive["y"]``
    adds Gaussian noise of precision ``tau``; ``log_likelihood["y"]`` is

    .. math::
        \log p(y_n \mid f_t) = -\tfrac12\log 2\pi + \tfrac12\log\tau
        - \tfrac{\tau}{2}\,(y_n - f_{t,n})^2 \quad (\text{summed over outputs}),

    so that :math:`\operatorname{logsumexp}_t(\cdot) - \log T` is the per-point
    log-likelihood of :func:`~vi_dropout.summaries.regression_summary`. MC dropout draws are
    independent, so splitting them into ``num_chains`` chains is arbitrary (R-hat is then a
    sanity check only).

    Args:
        samples: ``T x N x D`` (or ``T x N``) passes on the standardised scale.
        y: targets on the ORIGINAL scale, ``N x D`` (``N x 1`` for one output; a 1-D ``y`` is
            refused).
        tau: precision :math:`\tau` on the ORIGINAL scale (the paper's grid).
        x: optional inputs ``N x Q`` (stored in ``constant_data``).
        y_mean, y_std: the training-target standardisation :math:`\bar y, s_y`.
        num_chains: chains to split the ``T`` draws into (``T`` must be divisible).
        weights, biases: optional per-layer draws, ``T x out x in`` / ``T x out`` (the weights
            :math:`\mathbf{W}_i \operatorname{diag}(\mathbf{z})` of each pass when one mask is
            shared by all examples), stored as ``layers.{i}.weight`` / ``layers.{i}.bias``.
        masks: optional per-layer masks, ``T x N x in`` (per example, dims ``obs, layer{i}_in``)
            or ``T x in`` (shared), stored as ``layers.{i}.mask``.
        seed: seed of the observation noise in ``posterior_predictive``.
        feature_names: optional names for the ``feature`` coordinate.
        attrs: extra attributes for every group (e.g. ``keep_prob``, ``dataset``).

    Returns:
        ``xarray.DataTree`` with ``posterior``, ``posterior_predictive``, ``log_likelihood``,
        ``observed_data`` and (with ``x``) ``constant_data``.

    Example:
        >>> import numpy as np
        >>> idata = from_mc_dropout(np.zeros((100, 3, 1)), np.zeros((3, 1)), tau=1.0,
        ...                         num_chains=4)
        >>> idata.posterior["f"].shape
        (4, 25, 3)
    """
    arr = check_finite(to_numpy(samples, "samples", _METHOD), "samples", _METHOD)
    y_orig = check_target_array(y, _METHOD)
    n, d = y_orig.shape
    arr = _passes(arr, n, d)
    tau_f = check_positive(tau, f"{_METHOD}: tau")
    y_mean, y_std = check_scale(y_mean, y_std, _METHOD)
    x_arr = check_inputs(x, n, _METHOD)
    f_orig = split_chains(y_mean + y_std * arr, num_chains, "samples", _METHOD)
    extra, dims, coords = _layer_draws({"weight": weights, "bias": biases, "mask": masks},
                                       arr.shape[0], n, num_chains)
    return GaussianDrawsConverter(
        "mc_dropout", f_orig, y_orig, tau_f, x_arr, seed=seed, feature_names=feature_names,
        dims=dims, coords=coords, posterior_extra=extra,
        attrs={"tau": tau_f, "y_mean": y_mean, "y_std": y_std, "num_mc_samples": arr.shape[0],
               "draws_independent": 1, **(attrs or {})},
        caller=_METHOD,
    ).to_datatree()
