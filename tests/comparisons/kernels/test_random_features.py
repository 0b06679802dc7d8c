"""RandomFeatureKernel: convergence to the closed forms, low-rank structure, buffers,
batches, gradients, bad input, and the random-feature GP converging to the arc-cosine GP."""

from __future__ import annotations

import math

import gpytorch
import pytest
import torch
from linear_operator.operators import (
    LowRankRootLinearOperator,
    MatmulLinearOperator,
    RootLinearOperator,
)

from comparisons.gp.fit import gp_predict
from comparisons.gp.models import ExactGPModel
from comparisons.kernels.arc_cosine import ArcCosineKernel
from comparisons.kernels.nngp import erf_expectation
from comparisons.kernels.random_features import RandomFeatureKernel
from tests.common import DTYPES, NUM_SE, gauss_hermite_second_moment
from vi_dropout.network import ACTIVATIONS

SW2, SB2, Q = 1.4, 0.5, 3


def _rf(activation="relu", k=256, dtype=torch.float64, seed=0, **kwargs):
    g = torch.Generator().manual_seed(seed)
    return RandomFeatureKernel(activation, k, Q, weight_variance=SW2, bias_variance=SB2,
                               generator=g, **kwargs).to(dtype)


def _input_cov(kernel, x):
    sw2, sb2 = kernel.weight_variance.detach()[..., 0, 0], kernel.bias_variance.detach()[..., 0, 0]
    return sb2 + sw2 * (x @ x.T) / x.shape[-1]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_converges_to_expectation_with_1e6_features(activation):
    # K = 10^6 features at 5 points; tolerance 4 Monte-Carlo standard errors from the
    # per-feature products. References: arc-cosine (relu), Williams (erf), Sigma itself
    # (identity), 80x80-node Gauss-Hermite quadrature (tanh, sigmoid; error << 1e-6).
    x = torch.randn(5, Q, dtype=torch.float64)
    k = _rf(activation, k=1_000_000)
    phi = k.features(x).detach() * math.sqrt(k.num_features)  # 5 x K unscaled activations
    prods = phi.unsqueeze(1) * phi.unsqueeze(0)  # 5 x 5 x K
    se = prods.std(-1) / math.sqrt(k.num_features)
    estimate = k(x).to_dense().detach()
    torch.testing.assert_close(estimate, prods.mean(-1), rtol=1e-10, atol=1e-10)
    sigma = _input_cov(k, x)
    if activation == "relu":
        exact = ArcCosineKernel(1, SW2, SB2).double()(x).to_dense().detach()
    elif activation == "erf":
        exact = erf_expectation(sigma, sigma.diagonal().unsqueeze(-1), sigma.diagonal().unsqueeze(-2))
    elif activation == "identity":
        exact = sigma
    else:
        exact = gauss_hermite_second_moment(ACTIVATIONS[activation], sigma)
    assert ((estimate - exact).abs() <= NUM_SE * se).all()


def test_low_rank_operators_and_diag():
    x1, x2 = torch.randn(7, Q, dtype=torch.float64), torch.randn(4, Q, dtype=torch.float64)
    k = _rf(k=16)
    with gpytorch.settings.lazily_evaluate_kernels(False):
        same, cross = k(x1), k(x1, x2)
    assert isinstance(same, RootLinearOperator) and not isinstance(same, LowRankRootLinearOperator)
    assert isinstance(cross, MatmulLinearOperator)
    phi1, phi2 = k.features(x1), k.features(x2)
    assert phi1.shape == (7, 16)
    torch.testing.assert_close(same.to_dense(), phi1 @ phi1.T)
    torch.testing.assert_close(cross.to_dense(), phi1 @ phi2.T)
    torch.testing.assert_close(k(x1, diag=True), same.to_dense().diagonal())
    # K < N: low-rank operator (Woodbury path), and the matrix is singular
    big = torch.randn(40, Q, dtype=torch.float64)
    with gpytorch.settings.lazily_evaluate_kernels(False):
        assert isinstance(k(big), LowRankRootLinearOperator)
    assert torch.linalg.matrix_rank(k(big).to_dense()) <= 16


def test_features_by_hand():
    x = torch.randn(6, Q, dtype=torch.float64)
    k = _rf("tanh", k=8)
    w = k.weight_draws * math.sqrt(k.weight_variance.item() / Q)
    b = k.bias_draws * math.sqrt(k.bias_variance.item())
    torch.testing.assert_close(k.features(x).detach(), torch.tanh(x @ w + b) / math.sqrt(8))


def test_draws_fixed_until_resampled_and_reproducible():
    x = torch.randn(5, Q, dtype=torch.float64)
    k = _rf(k=32, seed=3)
    first = k(x).to_dense().detach()
    torch.testing.assert_close(k(x).to_dense().detach(), first)
    k.resample_features(torch.Generator().manual_seed(4))
    assert not torch.allclose(k(x).to_dense().detach(), first)
    k.resample_features(torch.Generator().manual_seed(3))
    torch.testing.assert_close(k(x).to_dense().detach(), first)
    # same seed, float32: same draws up to rounding
    k32 = _rf(k=32, seed=3, dtype=torch.float32)
    torch.testing.assert_close(k32.weight_draws.double(), k.weight_draws, rtol=1e-6, atol=1e-6)
    assert set(dict(k.named_buffers(recurse=False))) == {"weight_draws", "bias_draws"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_variances_are_differentiable(dtype):
    x = torch.randn(5, Q, dtype=dtype)
    k = _rf(k=64, dtype=dtype)
    k(x).to_dense().sum().backward()
    assert k.raw_weight_variance.grad.abs() > 0 and k.raw_bias_variance.grad.abs() > 0
    assert k(x).to_dense().dtype == dtype


def test_gradcheck_variances():
    x1, x2 = torch.randn(4, Q, dtype=torch.float64), torch.randn(3, Q, dtype=torch.float64)
    k = _rf("sigmoid", k=20)

    def fn(sw2, sb2):
        w = k.weight_draws * torch.sqrt(sw2 / Q)
        b = k.bias_draws * torch.sqrt(sb2)
        return (torch.sigmoid(x1 @ w + b) @ torch.sigmoid(x2 @ w + b).T) / 20

    sw2 = torch.tensor([[1.1]], dtype=torch.float64, requires_grad=True)
    sb2 = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (sw2, sb2))
    k.weight_variance, k.bias_variance = 1.1, 0.7
    torch.testing.assert_close(fn(sw2, sb2).detach(), k(x1, x2).to_dense().detach())


def test_batch_shape():
    k = _rf(k=16, batch_shape=torch.Size([2]))
    assert k.weight_draws.shape == (2, Q, 16) and k.raw_weight_variance.shape == (2, 1, 1)
    x = torch.randn(2, 5, Q, dtype=torch.float64)
    full = k(x).to_dense().detach()
    assert full.shape == (2, 5, 5) and k(x, diag=True).shape == (2, 5)
    for i in range(2):
        torch.testing.assert_close(full[i], k[i](x[i]).to_dense().detach())
    assert not torch.allclose(full[0], full[1])


def _gp_errors(num_features, seed, x, y, xs, ref_mean, ref_var):
    k = _rf("relu", k=num_features, seed=seed)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.05
    mean, var = gp_predict(ExactGPModel(x, y, lik, k).double(), lik, xs)
    return (mean - ref_mean).abs().mean().item(), (var - ref_var).abs().mean().item()


def test_random_feature_gp_converges_to_arc_cosine_gp():
    # Random-feature errors scale as K^{-1/2}: each 16x step in K should cut the mean absolute
    # error of the predictive mean and variance ~4x (averaged over 3 feature seeds); we require
    # at least 2x per step.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, Q, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(100, generator=g, dtype=torch.float64)
    xs = torch.randn(50, Q, generator=g, dtype=torch.float64)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.05
    ref = ExactGPModel(x, y, lik, ArcCosineKernel(1, SW2, SB2).double()).double()
    ref_mean, ref_var = gp_predict(ref, lik, xs)
    errs = []
    for num_features in (64, 1024, 16384):
        per_seed = [_gp_errors(num_features, s, x, y, xs, ref_mean, ref_var) for s in range(3)]
        errs.append(torch.tensor(per_seed).mean(0))
    for coarse, fine in zip(errs[:-1], errs[1:]):
        assert (fine * 2.0 < coarse).all(), errs


@pytest.mark.parametrize("num_features", [0, -3, 2.5])
def test_bad_num_features(num_features):
    with pytest.raises(ValueError, match="num_features must be an integer >= 1, got"):
        RandomFeatureKernel("relu", num_features, Q)


def test_bad_activation_and_inputs():
    with pytest.raises(ValueError, match=r"activation must be one of \['erf', 'identity'.*'swish'"):
        RandomFeatureKernel("swish", 8, Q)
    with pytest.raises(ValueError, match="input_dim must be an integer >= 1, got 0"):
        RandomFeatureKernel("relu", 8, 0)
    with pytest.raises(ValueError, match="weight_variance must be a finite number > 0, got 0"):
        RandomFeatureKernel("relu", 8, Q, weight_variance=0)
    k = _rf(k=8)
    with pytest.raises(ValueError, match=r"x must have input_dim=3 features .* got shape \(4, 2\)"):
        k.features(torch.randn(4, 2, dtype=torch.float64))
    bad = torch.randn(4, Q, dtype=torch.float64)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="must be finite, but 1 of 12 entries are NaN or inf"):
        k(bad).to_dense()
