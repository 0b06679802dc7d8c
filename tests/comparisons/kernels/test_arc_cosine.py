"""ArcCosineKernel: Monte-Carlo agreement, PSD, diag, batches, dtypes, gradients, bad input."""

from __future__ import annotations

import math
import unittest

import gpytorch
import pytest
import torch
from gpytorch.test.base_kernel_test_case import BaseKernelTestCase

from comparisons.kernels.arc_cosine import ArcCosineKernel, arc_cosine_expectation
from comparisons.kernels.base import WeightBiasVarianceKernel
from tests.common import DTYPES, NUM_SE, mc_second_moment

SW2, SB2 = 1.7, 0.4


def _kernel(order, dtype=torch.float64, **kwargs):
    return ArcCosineKernel(order=order, weight_variance=SW2, bias_variance=SB2, **kwargs).to(dtype)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_matches_monte_carlo_with_bias(order):
    # 10^6 random units; tolerance 4 Monte-Carlo standard errors computed from the per-unit
    # products (see mc_helpers.NUM_SE).
    q = 3
    x = torch.randn(5, q, dtype=torch.float64)
    x[1] = -x[0]  # include an anti-parallel pair
    k = _kernel(order)
    sw2, sb2 = k.weight_variance.item(), k.bias_variance.item()

    def draw(n, g):
        w = torch.randn(n, q, generator=g, dtype=torch.float64) * math.sqrt(sw2 / q)
        b = torch.randn(n, 1, generator=g, dtype=torch.float64) * math.sqrt(sb2)
        pre = w @ x.T + b
        return (pre > 0).double() * pre.clamp_min(0).pow(order)

    mean, se = mc_second_moment(draw)
    exact = k(x).to_dense().detach()
    assert ((exact - mean).abs() <= NUM_SE * se).all(), (exact - mean).abs() / se


def test_order0_is_probability_both_positive():
    x = torch.randn(4, 2, dtype=torch.float64)
    k = _kernel(0)
    values = k(x).to_dense().detach()
    assert values.min() >= 0 and values.max() <= 0.5 + 1e-15
    assert torch.allclose(values.diagonal(), torch.full((4,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("order", [0, 1, 2])
def test_gram_matrix_is_psd(order):
    x = torch.randn(200, 4, dtype=torch.float64)
    gram = _kernel(order)(x).to_dense().detach()
    assert torch.allclose(gram, gram.T)
    assert torch.linalg.eigvalsh(gram).min() >= -1e-8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", [0, 1, 2])
def test_diag_equals_diagonal_of_full_matrix(order, dtype):
    x = torch.randn(30, 3, dtype=dtype)
    k = _kernel(order, dtype)
    full = k(x).to_dense()
    diag = k(x, diag=True)
    assert full.dtype == dtype and diag.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(diag, full.diagonal(), rtol=tol, atol=tol)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_float32_agrees_with_float64(order):
    x = torch.randn(20, 3, dtype=torch.float64)
    k64, k32 = _kernel(order), _kernel(order, torch.float32)
    v64 = k64(x).to_dense().detach()
    v32 = k32(x.float()).to_dense().detach().double()
    # float32 rounding of the cosine moves the angle by <= ~1e-3 near theta = 0 (see the
    # docstring), so order 0 agrees to ~2e-4 and orders 1, 2 to float32 relative precision.
    atol = 5e-4 if order == 0 else 1e-5 * float(v64.abs().max())
    assert (v32 - v64).abs().max() <= atol


def test_batch_shape_parameters_and_values():
    batch = torch.Size([2])
    k = ArcCosineKernel(order=2, batch_shape=batch).double()
    k.weight_variance = torch.tensor([1.0, 3.0], dtype=torch.float64).view(2, 1, 1)
    k.bias_variance = torch.tensor([0.5, 0.1], dtype=torch.float64).view(2, 1, 1)
    assert k.raw_weight_variance.shape == (2, 1, 1)
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    full = k(x).to_dense()
    assert full.shape == (2, 7, 7)
    assert k(x, diag=True).shape == (2, 7)
    for i, (sw2, sb2) in enumerate([(1.0, 0.5), (3.0, 0.1)]):
        ki = ArcCosineKernel(order=2, weight_variance=sw2, bias_variance=sb2).double()
        torch.testing.assert_close(full[i], ki(x[i]).to_dense(), rtol=1e-6, atol=1e-10)
    # a batch kernel applied to un-batched inputs broadcasts
    assert k(x[0]).to_dense().shape == (2, 7, 7)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_gradcheck_hyperparameters_and_inputs(order):
    # Off-diagonal pairs only (x1 and x2 independent), where the closed form is smooth.
    x1 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    sw2 = torch.tensor([[1.3]], dtype=torch.float64, requires_grad=True)
    sb2 = torch.tensor([[0.6]], dtype=torch.float64, requires_grad=True)

    def fn(sw2, sb2, x1, x2):
        cross, v1, v2 = WeightBiasVarianceKernel.input_covariance(x1, x2, sw2, sb2, False)
        return arc_cosine_expectation(cross, v1, v2, order)

    assert torch.autograd.gradcheck(fn, (sw2, sb2, x1, x2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", [0, 1, 2])
def test_gradients_finite_at_coincident_points(order, dtype):
    x = torch.randn(6, 3, dtype=dtype)
    x = torch.cat([x, x[:2]])  # duplicated rows: cos = 1 off the diagonal too
    x.requires_grad_(True)
    k = _kernel(order, dtype)
    k(x).to_dense().sum().backward()
    grads = [k.raw_weight_variance.grad, k.raw_bias_variance.grad, x.grad]
    assert all(torch.isfinite(g).all() for g in grads)
    assert k.raw_weight_variance.grad.abs().sum() > 0


def test_priors_and_setters():
    prior = gpytorch.priors.GammaPrior(2.0, 1.0)
    k = ArcCosineKernel(order=1, weight_variance_prior=prior, bias_variance_prior=prior)
    names = {name for name, *_ in k.named_priors()}
    assert names == {"weight_variance_prior", "bias_variance_prior"}
    k.weight_variance = 2.5
    k.bias_variance = 0.25
    assert k.weight_variance.item() == pytest.approx(2.5, rel=1e-6)
    assert k.bias_variance.item() == pytest.approx(0.25, rel=1e-6)


@pytest.mark.parametrize("order", [3, -1, 1.5, True, "1"])
def test_bad_order(order):
    with pytest.raises(ValueError, match=r"order must be one of \(0, 1, 2\).*got"):
        ArcCosineKernel(order=order)


@pytest.mark.parametrize("name", ["weight_variance", "bias_variance"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_variances(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a finite number > 0, got {value}"):
        ArcCosineKernel(order=1, **{name: value})
    k = ArcCosineKernel(order=1)
    with pytest.raises(ValueError, match=rf"{name} must be finite and > 0"):
        setattr(k, name, value)


def test_bad_prior_type():
    with pytest.raises(ValueError, match="weight_variance_prior must be a gpytorch.priors.Prior"):
        ArcCosineKernel(order=1, weight_variance_prior=1.0)


def test_nan_inputs():
    x = torch.randn(4, 2)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x1 must be finite, but 1 of 8 entries are NaN"):
        ArcCosineKernel(order=1)(x).to_dense()


class TestArcCosineKernelGPyTorch(BaseKernelTestCase, unittest.TestCase):
    """GPyTorch's generic kernel checks (active_dims, batches, getitem, pickling, dtype).
    The *_ard variants return early because this kernel has no ARD lengthscales."""

    def create_kernel_no_ard(self, **kwargs):
        return ArcCosineKernel(order=1, weight_variance=1.3, bias_variance=0.2, **kwargs)


def _composed_reference(cross, var1, var2, order):
    """The textbook expression, differentiated by autograd (float64, away from theta = 0, pi)."""
    norm = torch.sqrt(var1 * var2)
    t = torch.acos(cross / norm)
    if order == 1:
        j = torch.sin(t) + (math.pi - t) * torch.cos(t)
    else:
        j = 3 * torch.sin(t) * torch.cos(t) + (math.pi - t) * (1 + 2 * torch.cos(t) ** 2)
    return norm.pow(order) * j / (2 * math.pi)


@pytest.mark.parametrize("order", [1, 2])
def test_fused_orders_match_composed_expression_and_its_gradients(order):
    # The fused autograd function (analytic derivatives) against autograd through acos / sin /
    # cos; float64 and |cos theta| <= 0.99 so both are accurate to ~1e-13.
    g = torch.Generator().manual_seed(3)
    var1 = (torch.rand(6, 1, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    var2 = (torch.rand(1, 5, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    cos = 1.98 * torch.rand(6, 5, generator=g, dtype=torch.float64) - 0.99
    cross = (cos * torch.sqrt(var1 * var2).detach()).requires_grad_()
    w = torch.randn(6, 5, generator=g, dtype=torch.float64)
    fused = arc_cosine_expectation(cross, var1, var2, order)
    ref = _composed_reference(cross, var1, var2, order)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    g_fused = torch.autograd.grad((fused * w).sum(), (cross, var1, var2))
    g_ref = torch.autograd.grad((ref * w).sum(), (cross, var1, var2))
    for a, b in zip(g_fused, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
