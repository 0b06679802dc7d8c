"""NNGPKernel: link to the arc-cosine kernel, layer-wise Monte Carlo, PSD, diag, batches,
gradients, bad input."""

from __future__ import annotations

import unittest

import pytest
import torch
from gpytorch.test.base_kernel_test_case import BaseKernelTestCase

from comparisons.kernels.arc_cosine import ArcCosineKernel
from comparisons.kernels.base import WeightBiasVarianceKernel
from comparisons.kernels.nngp import NNGPKernel, erf_expectation
from comparisons.kernels.random_features import RandomFeatureKernel
from tests.common import DTYPES, NUM_SE, mc_second_moment

SW2, SB2 = 1.6, 0.3
ACTS = {"relu": torch.relu, "erf": torch.erf}


def _kernel(depth, activation, dtype=torch.float64, **kwargs):
    return NNGPKernel(
        depth=depth, activation=activation, weight_variance=SW2, bias_variance=SB2, **kwargs
    ).to(dtype)


def test_depth_one_relu_is_arc_cosine_with_output_layer_variances():
    x = torch.randn(8, 3, dtype=torch.float64)
    nngp = _kernel(1, "relu")
    arc = ArcCosineKernel(order=1, weight_variance=SW2, bias_variance=SB2).double()
    sw2, sb2 = nngp.weight_variance.detach(), nngp.bias_variance.detach()
    expected = sb2 + sw2 * arc(x).to_dense().detach()
    torch.testing.assert_close(nngp(x).to_dense().detach(), expected[0] if expected.dim() > 2 else expected, rtol=1e-12, atol=1e-12)


def test_depth_one_erf_matches_random_features():
    # One hidden erf layer: K^1 = sb2 + sw2 * E[erf erf]; the inner expectation is checked
    # against 10^6 random erf units within 4 Monte-Carlo standard errors.
    q = 3
    x = torch.randn(5, q, dtype=torch.float64)
    k = _kernel(1, "erf")
    rf = RandomFeatureKernel("erf", 1, q, weight_variance=SW2, bias_variance=SB2).double()
    sw2, sb2 = k.weight_variance.item(), k.bias_variance.item()

    def draw(n, g):
        w = torch.randn(n, q, generator=g, dtype=torch.float64) * (sw2 / q) ** 0.5
        b = torch.randn(n, 1, generator=g, dtype=torch.float64) * sb2**0.5
        return torch.erf(w @ x.T + b)

    mean, se = mc_second_moment(draw)
    inner = (k(x).to_dense().detach() - sb2) / sw2
    assert ((inner - mean).abs() <= NUM_SE * se).all()
    assert rf.activation == "erf"


@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth", [2, 3])
def test_last_layer_matches_monte_carlo_given_previous_layer(depth, activation):
    # K^L = sb2 + sw2 E[phi(u) phi(u')], u ~ N(0, K^{L-1}) jointly over the 5 points. We draw
    # 10^6 Gaussian pre-activation vectors with the exact K^{L-1} (the previous layer, itself
    # checked at depth L-1), i.e. one infinitely wide previous layer: unbiased, so the tolerance
    # is 4 Monte-Carlo standard errors of the product (scaled by sw2).
    x = torch.randn(5, 3, dtype=torch.float64)
    prev = _kernel(depth - 1, activation)(x).to_dense().detach()
    k = _kernel(depth, activation)
    sw2, sb2 = k.weight_variance.item(), k.bias_variance.item()
    chol = torch.linalg.cholesky(prev)

    def draw(n, g):
        z = torch.randn(n, 5, generator=g, dtype=torch.float64)
        return ACTS[activation](z @ chol.T)

    mean, se = mc_second_moment(draw)
    exact = k(x).to_dense().detach()
    assert ((exact - (sb2 + sw2 * mean)).abs() <= NUM_SE * sw2 * se).all()


def test_depth_two_matches_finite_width_network():
    # A real network with two relu hidden layers of width H=300 and 64 output units, 2000
    # networks. Per network we average f_o(x) f_o(x') over its outputs (i.i.d. across networks,
    # so the MC standard error se is valid). Finite width adds a bias of order 1/H (the second
    # layer sees the empirical, not the exact, K^1; Jensen); tolerance 4 se + 5/H * max|K|.
    q, h, n_out, n_net = 3, 300, 64, 2000
    x = torch.randn(4, q, dtype=torch.float64)
    k = _kernel(2, "relu")
    sw2, sb2 = k.weight_variance.item(), k.bias_variance.item()

    def layer(inp, fan_in, fan_out, n, g):
        w = torch.randn(n, fan_in, fan_out, generator=g, dtype=torch.float64) * (sw2 / fan_in) ** 0.5
        b = torch.randn(n, 1, fan_out, generator=g, dtype=torch.float64) * sb2**0.5
        return inp @ w + b

    g = torch.Generator().manual_seed(1)
    per_net = []
    for _ in range(n_net // 100):
        h1 = torch.relu(layer(x, q, h, 100, g))
        h2 = torch.relu(layer(h1, h, h, 100, g))
        f = layer(h2, h, n_out, 100, g)  # 100 x 4 x n_out
        per_net.append((f.unsqueeze(2) * f.unsqueeze(1)).mean(-1))
    prods = torch.cat(per_net)
    mean, se = prods.mean(0), prods.std(0) / n_net**0.5
    exact = k(x).to_dense().detach()
    tol = NUM_SE * se + 5.0 / h * exact.abs().max()
    assert ((exact - mean).abs() <= tol).all(), ((exact - mean).abs(), tol)
    # the depth-1 kernel is clearly different, so this check has power
    assert ((_kernel(1, "relu")(x).to_dense().detach() - mean).abs() > tol).any()


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_gram_matrix_is_psd(activation):
    x = torch.randn(200, 4, dtype=torch.float64)
    gram = _kernel(3, activation)(x).to_dense().detach()
    assert torch.linalg.eigvalsh(gram).min() >= -1e-8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_diag_equals_diagonal_of_full_matrix(activation, dtype):
    x = torch.randn(25, 3, dtype=dtype)
    k = _kernel(3, activation, dtype)
    full, diag = k(x).to_dense(), k(x, diag=True)
    assert diag.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(diag, full.diagonal(), rtol=tol, atol=tol)


def test_cross_covariance_consistent_with_joint():
    x1, x2 = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    k = _kernel(2, "erf")
    joint = k(torch.cat([x1, x2])).to_dense().detach()
    torch.testing.assert_close(k(x1, x2).to_dense().detach(), joint[:5, 5:], rtol=1e-12, atol=1e-12)


def test_batch_shape():
    k = NNGPKernel(depth=2, activation="relu", batch_shape=torch.Size([3])).double()
    k.weight_variance = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64).view(3, 1, 1)
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    full = k(x).to_dense().detach()
    assert full.shape == (3, 6, 6) and k(x, diag=True).shape == (3, 6)
    for i in range(3):
        torch.testing.assert_close(full[i], k[i](x[i]).to_dense().detach())
    assert not torch.allclose(full[0], full[1])


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_gradcheck_hyperparameters(activation):
    x1 = torch.randn(4, 3, dtype=torch.float64)
    x2 = torch.randn(3, 3, dtype=torch.float64)
    k = _kernel(2, activation)

    def fn(sw2, sb2):
        cross, v1, v2 = WeightBiasVarianceKernel.input_covariance(x1, x2, sw2, sb2, False)
        for _ in range(k.depth):
            d1 = sb2 + sw2 * k._moment(v1, v1, v1, diag=True)
            d2 = sb2 + sw2 * k._moment(v2, v2, v2, diag=True)
            cross, v1, v2 = sb2 + sw2 * k._moment(cross, v1, v2, diag=False), d1, d2
        return cross

    sw2 = torch.tensor([[1.2]], dtype=torch.float64, requires_grad=True)
    sb2 = torch.tensor([[0.4]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (sw2, sb2))
    # the helper reproduces the kernel's own forward
    k.weight_variance, k.bias_variance = 1.2, 0.4
    torch.testing.assert_close(fn(sw2, sb2).detach(), k(x1, x2).to_dense().detach())


def test_gradients_finite_at_coincident_points():
    x = torch.randn(5, 3, dtype=torch.float64)
    k = _kernel(3, "relu")
    k(x).to_dense().sum().backward()
    assert torch.isfinite(k.raw_weight_variance.grad).all()
    assert torch.isfinite(k.raw_bias_variance.grad).all()
    assert k.raw_bias_variance.grad.abs().sum() > 0


def test_erf_expectation_diag_consistent():
    v = torch.tensor([0.3, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        erf_expectation(v, v, None, diag=True), erf_expectation(v, v.unsqueeze(-1), v, diag=False).diagonal()
    )


@pytest.mark.parametrize("depth", [0, -2, 1.5, "2"])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="depth must be an integer >= 1, got"):
        NNGPKernel(depth=depth)


@pytest.mark.parametrize("activation", ["tanh", "Relu", None])
def test_bad_activation(activation):
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'erf'\].*got"):
        NNGPKernel(depth=2, activation=activation)


def test_bad_variance_and_nan_input():
    with pytest.raises(ValueError, match="bias_variance must be a finite number > 0, got -0.1"):
        NNGPKernel(depth=2, bias_variance=-0.1)
    x = torch.randn(3, 2)
    x2 = x.clone()
    x2[0, 0] = float("inf")
    with pytest.raises(ValueError, match="x2 must be finite"):
        NNGPKernel(depth=2)(x, x2).to_dense()


class TestNNGPKernelGPyTorch(BaseKernelTestCase, unittest.TestCase):
    """GPyTorch's generic kernel checks; the *_ard variants return early (no ARD)."""

    def create_kernel_no_ard(self, **kwargs):
        return NNGPKernel(depth=3, activation="erf", weight_variance=1.3, bias_variance=0.2, **kwargs)
