r"""Draws of a fitted Pyro guide over a :class:`~vi_dropout.models.BayesianMLP` (SVI) as
``DataTree`` (layout: :mod:`comparisons.inference_data.base`).

Example:
    >>> import torch
    >>> from vi_dropout import Architecture, BayesianMLP, DropoutGuide
    >>> model = BayesianMLP(Architecture((2, 8, 1)), prior_length_scale=1.0, tau=10.0,
    ...                     keep_prob=0.9)
    >>> guide = DropoutGuide(model, theta=1e-2)
    >>> idata = from_svi_guide(model, guide, torch.randn(6, 2, dtype=torch.float64),
    ...                        torch.zeros(6, 1), num_samples=100)
    >>> idata.posterior["layers.0.weight"].dims
    ('chain', 'draw', 'layer0_out', 'layer0_in')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from comparisons.inference_data.base import (
    GaussianDrawsConverter,
    check_gaussian_model,
    check_inputs,
    check_scale,
    check_target_array,
    forward_weight_draws,
    split_chains,
    weight_dims,
    weight_draws,
    weight_site_names,
)
from vi_dropout.validation import check_positive_int

__all__ = ["from_svi_guide"]

_METHOD = "from_svi_guide"


def _guide_draws(guide, architecture, x_arr: np.ndarray, num_samples: int, num_chains: int,
                 seed: int) -> dict[str, np.ndarray]:
    """``num_chains x num_samples / num_chains x ...`` weight draws of ``guide`` (vectorised
    ``pyro.infer.Predictive``), under ``torch.random.fork_rng`` seeded by ``seed``."""
    from pyro.infer import Predictive

    sites = weight_site_names(architecture)
    xt = torch.as_tensor(x_arr, dtype=torch.float64)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        raw = Predictive(guide, num_samples=num_samples, parallel=True, return_sites=sites)(xt)
    return weight_draws(raw, architecture, (num_chains, num_samples // num_chains), _METHOD)


def from_svi_guide(
    model,
    guide,
    x: Any,
    y: Any,
    num_samples: int,
    *,
    num_chains: int = 1,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    r"""Draws of a fitted Pyro guide (e.g. :class:`~vi_dropout.guides.DropoutGuide`) over a
    :class:`~vi_dropout.models.BayesianMLP` as ``DataTree``.

    ``num_samples`` weight draws :math:`\mathbf{W}_s \sim q` are taken with
    ``pyro.infer.Predictive(guide, parallel=True)`` (under ``torch.random.fork_rng`` seeded by
    ``seed``, so the global RNG is left untouched) and stored as ``layers.{i}.weight``
    (dims ``layer{i}_out, layer{i}_in``) and ``layers.{i}.bias``; the network outputs
    :math:`f_s = \bar y + s_y f^{\mathbf{W}_s}(\mathbf{x})` are ``posterior["f"]`` and the
    log-likelihood uses the model's precision on the original scale,

    .. math::
        \tau_o = \tau / s_y^2.

    Args:
        model: the :class:`BayesianMLP` (architecture, ``tau``; Gaussian likelihood only).
        guide: a callable guide whose sample sites include every ``layers.{i}.weight|bias``.
        x: inputs ``N x Q`` (torch or numpy), on the scale the model was fitted on.
        y: targets on the ORIGINAL scale, ``N x D`` (``N x 1`` for one output).
        num_samples: number of draws ``S`` (divisible by ``num_chains``).
        num_chains: chains to split the independent draws into.
        y_mean, y_std: the training-target standardisation.
        seed: seeds the guide draws and the observation noise.
        feature_names, attrs: as in
            :func:`~comparisons.inference_data.io_mc_dropout.from_mc_dropout`.

    Example:
        >>> from vi_dropout import Architecture, BayesianMLP, DropoutGuide
        >>> model = BayesianMLP(Architecture((2, 8, 1)), prior_length_scale=1.0, tau=10.0,
        ...                     keep_prob=0.9)
        >>> guide = DropoutGuide(model, theta=1e-2)
        >>> x = torch.randn(6, 2, dtype=torch.float64)
        >>> from_svi_guide(model, guide, x, torch.zeros(6, 1), num_samples=100).posterior["f"].shape
        (1, 100, 6)
    """
    model = check_gaussian_model(model, _METHOD)
    arch = model.architecture
    y_orig = check_target_array(y, _METHOD)
    n, d = y_orig.shape
    x_arr = check_inputs(x, n, _METHOD)
    if x_arr is None:
        raise ValueError(f"{_METHOD}: x is required")
    if x_arr.shape[1] != arch.in_features or d != arch.out_features:
        raise ValueError(
            f"{_METHOD}: the model maps {arch.in_features} -> {arch.out_features} but x has "
            f"{x_arr.shape[1]} feature(s) and y {d} output(s)"
        )
    num_samples = check_positive_int(num_samples, f"{_METHOD}: num_samples")
    y_mean, y_std = check_scale(y_mean, y_std, _METHOD)
    split_chains(np.empty((num_samples, 0)), num_chains, "the guide draws", _METHOD)
    draws = _guide_draws(guide, arch, x_arr, num_samples, int(num_chains), seed)
    f = forward_weight_draws(draws, arch, x_arr, int(num_chains), num_samples // int(num_chains))
    dims, coords = weight_dims(arch)
    keep = getattr(guide, "keep_probs", None)
    return GaussianDrawsConverter(
        "svi_dropout_guide", y_mean + y_std * f, y_orig, model.tau / y_std**2, x_arr, seed=seed,
        feature_names=feature_names, dims=dims, coords=coords, posterior_extra=draws,
        attrs={"tau_model_scale": model.tau, "prior_length_scale": model.prior_length_scale,
               "y_mean": y_mean, "y_std": y_std, "activation": arch.activation,
               "widths": np.asarray(arch.widths), "guide": type(guide).__name__,
               "keep_probs": None if keep is None else np.asarray(keep, dtype=np.float64),
               "theta": getattr(guide, "theta", None), "draws_independent": 1,
               **(attrs or {})},
        caller=_METHOD,
    ).to_datatree()
