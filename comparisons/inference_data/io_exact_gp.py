r"""Predictive draws of an exact GPyTorch GP as ``DataTree`` (layout:
:mod:`comparisons.inference_data.base`).

Example:
    >>> import gpytorch, torch
    >>> from comparisons.gp.models import ExactGPModel, make_kernel
    >>> x = torch.randn(10, 2, dtype=torch.float64)
    >>> lik = gpytorch.likelihoods.GaussianLikelihood().double()
    >>> gp = ExactGPModel(x, torch.randn(10, dtype=torch.float64), lik,
    ...                   make_kernel("arccos1", 2)).double()
    >>> from_exact_gp(gp, lik, x[:4], torch.zeros(4, 1), num_draws=100).posterior["f"].shape
    (1, 100, 4)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from comparisons.inference_data.base import (
    GaussianDrawsConverter,
    check_finite,
    check_inputs,
    check_scale,
    check_target_array,
    split_chains,
)
from vi_dropout.validation import check_positive_int

__all__ = ["from_exact_gp"]

_METHOD = "from_exact_gp"


def _gp_moments(model, likelihood, x_arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent means, latent variances (clipped at 0) and noise variances at ``x_arr``
    (standardised scale), each ``(M,)``, checked."""
    import gpytorch

    m = x_arr.shape[0]
    train_x = model.train_inputs[0]
    xt = torch.as_tensor(x_arr, dtype=train_x.dtype, device=train_x.device)
    model.eval()
    likelihood.eval()
    with torch.no_grad():
        latent = model(xt)
        f_mean = latent.mean.detach().cpu().numpy().astype(np.float64)
        f_var = latent.variance.detach().cpu().numpy().astype(np.float64)
        if isinstance(likelihood, gpytorch.likelihoods.GaussianLikelihood):
            noise = likelihood.noise.detach().cpu().numpy().astype(np.float64)
            noise = np.broadcast_to(noise.reshape(-1), (m,)).copy()
        else:
            noise = (likelihood(latent).variance.detach().cpu().numpy().astype(np.float64)
                     - f_var)
    if f_mean.shape != (m,):
        raise ValueError(
            f"{_METHOD}: the GP returned predictions of shape {f_mean.shape} for {m} test points "
            f"(batched or multi-output GPs are not supported)"
        )
    for arr, name in ((f_mean, "the predictive mean"), (f_var, "the predictive variance"),
                      (noise, "the noise variance")):
        check_finite(arr, name, _METHOD)
    if np.any(noise <= 0):
        raise ValueError(f"{_METHOD}: the noise variance must be > 0 at every test point")
    return f_mean, np.clip(f_var, 0.0, None), noise


def from_exact_gp(
    model,
    likelihood,
    x_test: Any,
    y_test: Any,
    num_draws: int,
    *,
    num_chains: int = 1,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    r"""Predictive draws of an exact GPyTorch GP (e.g.
    :class:`~comparisons.gp.models.ExactGPModel`) as ``DataTree``.

    With the latent posterior marginals :math:`f_n \sim \mathcal{N}(\mu_n, v_n)` and the
    likelihood's noise variance :math:`\sigma_n^2` at each test input (standardised scale),
    ``num_draws`` latent draws are taken **independently per point from the marginals** (enough
    for every pointwise quantity: log-likelihood, LOO, PIT, intervals; not for joint functionals
    across points), mapped to the original scale, and

    .. math::
        \log p(y_n \mid f_{s,n}) = \log\mathcal{N}\big(y_n;\ \bar y + s_y f_{s,n},\
        s_y^2\sigma_n^2\big),

    whose :math:`\operatorname{logsumexp}_s - \log S` converges to the exact Gaussian log
    predictive density :math:`\log\mathcal{N}(y_n; \bar y + s_y\mu_n, s_y^2(v_n + \sigma_n^2))`
    (see :func:`~comparisons.metrics.gaussian.gaussian_log_likelihood`). The exact moments are
    stored in ``constant_data`` as ``f_mean``, ``f_var`` and ``noise_var`` (original scale, dims
    ``obs``).

    Args:
        model: a fitted single-output ``gpytorch.models.ExactGP`` (no batch dims).
        likelihood: its Gaussian likelihood.
        x_test: inputs ``M x Q`` on the GP's (standardised) scale.
        y_test: targets on the ORIGINAL scale, ``M x 1`` (a 1-D ``y_test`` is refused, as
            everywhere).
        num_draws: number of draws ``S`` (divisible by ``num_chains``).
        num_chains: chains to split the independent draws into.
        y_mean, y_std: the training-target standardisation.
        seed: seed of the latent and the observation-noise draws.
        feature_names, attrs: as in
            :func:`~comparisons.inference_data.io_mc_dropout.from_mc_dropout`;
            ``attrs["method"]`` (default ``"exact_gp"``) names the GP, e.g. ``"gp_arccos1"``.

    Example:
        >>> import gpytorch
        >>> from comparisons.gp.models import ExactGPModel, make_kernel
        >>> x, xs = torch.randn(10, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
        >>> lik = gpytorch.likelihoods.GaussianLikelihood().double()
        >>> gp = ExactGPModel(x, torch.randn(10, dtype=torch.float64), lik,
        ...                   make_kernel("arccos1", 2)).double()
        >>> from_exact_gp(gp, lik, xs, torch.zeros(6, 1), num_draws=200).log_likelihood["y"].shape
        (1, 200, 6)
    """
    y_orig = check_target_array(y_test, _METHOD, "y_test")
    m, d = y_orig.shape
    if d != 1:
        raise ValueError(f"{_METHOD}: only single-output GPs are supported, y_test has {d} outputs")
    x_arr = check_inputs(x_test, m, _METHOD)
    if x_arr is None:
        raise ValueError(f"{_METHOD}: x_test is required")
    num_draws = check_positive_int(num_draws, f"{_METHOD}: num_draws")
    y_mean, y_std = check_scale(y_mean, y_std, _METHOD)
    split_chains(np.empty((num_draws, 0)), num_chains, "the GP draws", _METHOD)
    f_mean, f_var, noise = _gp_moments(model, likelihood, x_arr)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((num_draws, m))
    f = y_mean + y_std * (f_mean + np.sqrt(f_var) * eps)
    f_orig = split_chains(f[..., None], num_chains, "the GP draws", _METHOD)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    return GaussianDrawsConverter(
        "exact_gp", f_orig, y_orig, 1.0 / (y_std**2 * noise), x_arr, seed=noise_seed,
        feature_names=feature_names,
        constant_extra={"f_mean": y_mean + y_std * f_mean, "f_var": y_std**2 * f_var,
                        "noise_var": y_std**2 * noise},
        attrs={"y_mean": y_mean, "y_std": y_std, "draws": "independent per-point marginals",
               "draws_independent": 1, **(attrs or {})},
        caller=_METHOD,
    ).to_datatree()
