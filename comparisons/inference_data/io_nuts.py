r"""NUTS draws of a :class:`~vi_dropout.models.BayesianMLP` as ``DataTree`` (layout:
:mod:`comparisons.inference_data.base`), from a finished ``pyro.infer.MCMC`` or a
:class:`~comparisons.reference.nuts.NUTSResult`.

Example:
    >>> result = run_nuts(x, y, hidden=(5,), num_chains=2)  # doctest: +SKIP
    >>> from_nuts(result).sample_stats["tree_depth"].dims  # doctest: +SKIP
    ('chain', 'draw')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from comparisons.inference_data.base import (
    GaussianDrawsConverter,
    check_finite,
    check_gaussian_model,
    check_inputs,
    check_scale,
    check_target_array,
    forward_weight_draws,
    to_numpy,
    weight_dims,
    weight_draws,
)
from vi_dropout.network import Architecture

__all__ = ["from_nuts"]

_METHOD = "from_nuts"
#: run attributes of a ``NUTSResult`` copied into ``attrs`` (from the result or its settings)
_RUN_ATTRS = ("wall_time_s", "draws_per_second", "num_warmup", "seed")


@dataclass
class _NUTSDraws:
    """What one source (an ``MCMC`` or a ``NUTSResult``) gives the converter."""

    model: Any
    draws: dict[str, np.ndarray]
    n_chains: int
    n_draws: int
    x: Any
    y: Any
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    run_attrs: dict[str, Any] = field(default_factory=dict)


def _from_mcmc(mcmc, model, x, y) -> _NUTSDraws:
    """Draws and statistics of a finished ``pyro.infer.MCMC`` (ArviZ 1.x has no
    ``from_pyro``: the divergences come from ``MCMC.diagnostics()``)."""
    if mcmc._samples is None:  # pyro keeps no public "has run" flag
        raise ValueError(f"{_METHOD}: the MCMC object has not been run")
    model = check_gaussian_model(model if model is not None else mcmc.kernel.model, _METHOD)
    raw = mcmc.get_samples(group_by_chain=True)
    n_chains, n_draws = next(iter(raw.values())).shape[:2]
    src = _NUTSDraws(model, weight_draws(raw, model.architecture, (n_chains, n_draws), _METHOD),
                     n_chains, n_draws, x, y)
    div = mcmc.diagnostics()["divergences"]
    diverging = np.zeros((n_chains, n_draws), dtype=bool)
    for c, key in enumerate(sorted(div)):
        diverging[c, div[key]] = True
    src.stats["diverging"] = diverging
    collect = getattr(mcmc.kernel, "collected_sample_stats", None)
    extra = collect(n_draws, n_chains) if callable(collect) else None
    src.stats.update(extra or {})
    return src


def _model_from_settings(settings: Mapping[str, Any]):
    from vi_dropout.models import BayesianMLP

    arch = Architecture(tuple(settings["widths"]), settings["activation"])
    return BayesianMLP(arch, prior_length_scale=settings["prior_length_scale"], tau=settings["tau"])


def _from_result(result, model, x, y, y_mean, y_std) -> _NUTSDraws:
    """Draws, statistics, data and run attributes of a ``NUTSResult``-like object."""
    samples = getattr(result, "samples", None)
    if not isinstance(samples, Mapping):
        raise ValueError(
            f"{_METHOD}: expected a pyro.infer.MCMC or a NUTSResult, got {type(result).__name__}"
        )
    settings = getattr(result, "settings", {})
    model = check_gaussian_model(
        model if model is not None else _model_from_settings(settings), _METHOD)
    first = to_numpy(next(iter(samples.values())), "samples", _METHOD)
    n_chains, n_draws = first.shape[:2]
    src = _NUTSDraws(model, weight_draws(samples, model.architecture, (n_chains, n_draws), _METHOD),
                     n_chains, n_draws, x, y)
    for key, value in (getattr(result, "sample_stats", None) or {}).items():
        arr = np.asarray(value)
        if arr.shape[:2] != (n_chains, n_draws):
            raise ValueError(
                f"{_METHOD}: sample stat {key!r} has shape {arr.shape}, expected "
                f"({n_chains}, {n_draws})"
            )
        if arr.dtype != bool:
            check_finite(arr.astype(np.float64), f"sample stat {key}", _METHOD)
        src.stats[key] = arr
    if src.x is None:
        src.x = getattr(result, "x", None)
    if src.y is None and getattr(result, "y", None) is not None:
        src.y = float(y_mean) + float(y_std) * np.asarray(result.y)
    for key in _RUN_ATTRS:
        value = getattr(result, key, None)
        value = settings.get(key) if value is None else value
        if value is not None:
            src.run_attrs[key] = value
    return src


def from_nuts(
    mcmc,
    model=None,
    x: Any = None,
    y: Any = None,
    *,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    r"""NUTS draws of a :class:`~vi_dropout.models.BayesianMLP` as ``DataTree``.

    Accepts either a finished ``pyro.infer.MCMC`` whose kernel ran on the ``BayesianMLP``
    (``sample_stats["diverging"]`` from ``MCMC.diagnostics()``, and a
    :class:`~comparisons.reference.nuts.RecordingNUTS` kernel adds per-draw ``step_size``,
    ``tree_depth``, ``n_steps``, ``energy``, ``lp`` and ``acceptance_rate``), or the
    :class:`~comparisons.reference.nuts.NUTSResult` of
    :func:`~comparisons.reference.nuts.run_nuts` (chains run in separate processes; its
    ``samples`` and ``sample_stats`` are ``chain x draw x ...`` arrays). The weight draws keep
    their Pyro site names with dims ``layer{i}_out, layer{i}_in``; ``f``, ``y`` and the
    log-likelihood are added as for the other methods, with the model precision on the
    original scale

    .. math::
        \tau_o = \tau / s_y^2.

    Args:
        mcmc: ``pyro.infer.MCMC`` or ``NUTSResult`` (anything with ``samples`` and
            ``sample_stats`` mappings and ``settings``).
        model: the ``BayesianMLP``; default: the MCMC kernel's model or the one described by
            ``NUTSResult.settings``.
        x: inputs ``N x Q`` on the model's scale; default: ``NUTSResult.x``.
        y: targets on the ORIGINAL scale, ``N x D`` (``N x 1`` for one output); default:
            ``y_mean + y_std * NUTSResult.y``.
        y_mean, y_std: the training-target standardisation.
        seed: seed of the observation noise in ``posterior_predictive``.
        feature_names, attrs: as in
            :func:`~comparisons.inference_data.io_mc_dropout.from_mc_dropout`.

    Example:
        >>> result = run_nuts(x, y, hidden=(5,), num_chains=2)  # doctest: +SKIP
        >>> idata = from_nuts(result)  # doctest: +SKIP
        >>> idata.sample_stats["tree_depth"].dims  # doctest: +SKIP
        ('chain', 'draw')
    """
    from pyro.infer import MCMC

    if isinstance(mcmc, MCMC):
        src = _from_mcmc(mcmc, model, x, y)
    else:
        src = _from_result(mcmc, model, x, y, y_mean, y_std)
    if src.x is None or src.y is None:
        raise ValueError(f"{_METHOD}: pass x and y (the data to evaluate the draws at)")
    arch = src.model.architecture
    y_orig = check_target_array(src.y, _METHOD)
    n, d = y_orig.shape
    x_arr = check_inputs(src.x, n, _METHOD)
    if x_arr.shape[1] != arch.in_features or d != arch.out_features:
        raise ValueError(
            f"{_METHOD}: the model maps {arch.in_features} -> {arch.out_features} but x has "
            f"{x_arr.shape[1]} feature(s) and y {d} output(s)"
        )
    y_mean, y_std = check_scale(y_mean, y_std, _METHOD)
    f = forward_weight_draws(src.draws, arch, x_arr, src.n_chains, src.n_draws)
    dims, coords = weight_dims(arch)
    model = src.model
    return GaussianDrawsConverter(
        "hmc", y_mean + y_std * f, y_orig, model.tau / y_std**2, x_arr, seed=seed,
        feature_names=feature_names, dims=dims, coords=coords, posterior_extra=src.draws,
        sample_stats=src.stats,
        attrs={"sampler": "nuts", "tau_model_scale": model.tau,
               "prior_length_scale": model.prior_length_scale,
               "y_mean": y_mean, "y_std": y_std, "activation": arch.activation,
               "widths": np.asarray(arch.widths), **src.run_attrs, **(attrs or {})},
        caller=_METHOD,
    ).to_datatree()
