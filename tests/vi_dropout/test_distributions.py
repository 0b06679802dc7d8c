import math

import numpy as np
import pytest
import torch

from tests.common import DTYPES
from vi_dropout.distributions import DropoutNormal


def test_log_prob_normalises_1d():
    # K = Q = 1: integrate exp(log_prob) on a fine grid (trapezoid; grid error << 1e-6)
    q = DropoutNormal(torch.tensor([[0.7]], dtype=torch.float64), keep_prob=0.3, theta=0.2)
    grid = torch.linspace(-3, 4, 20001, dtype=torch.float64)
    dens = q.log_prob(grid.reshape(-1, 1, 1)).exp()
    assert abs(float(torch.trapezoid(dens, grid)) - 1.0) < 1e-6


def test_log_prob_normalises_2d_and_factorises_over_columns():
    # K = 1, Q = 2: two independent columns; 2-D trapezoid on a 801 x 801 grid (error < 1e-4)
    loc = torch.tensor([[0.5, -0.8]], dtype=torch.float64)
    q = DropoutNormal(loc, keep_prob=0.6, theta=0.25)
    g = torch.linspace(-2.5, 2.5, 801, dtype=torch.float64)
    a, b = torch.meshgrid(g, g, indexing="ij")
    w = torch.stack([a, b], -1).unsqueeze(-2)  # 801 x 801 x 1 x 2
    dens = q.log_prob(w).exp()
    total = torch.trapezoid(torch.trapezoid(dens, g, dim=1), g)
    assert abs(float(total) - 1.0) < 1e-4
    cols = q.log_prob_columns(w)
    torch.testing.assert_close(cols.sum(-1), q.log_prob(w))


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_prob_matches_explicit_mixture(dtype):
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(3, 4, generator=g, dtype=dtype)
    q = DropoutNormal(loc, keep_prob=0.7, theta=0.5)
    w = torch.randn(5, 3, 4, generator=g, dtype=dtype)
    n1 = torch.distributions.Normal(loc, 0.5).log_prob(w).sum(-2)
    n0 = torch.distributions.Normal(torch.zeros_like(loc), 0.5).log_prob(w).sum(-2)
    expected = torch.logaddexp(math.log(0.7) + n1, math.log(0.3) + n0).sum(-1)
    torch.testing.assert_close(q.log_prob(w), expected)


def test_keep_prob_one_is_a_normal():
    loc = torch.randn(2, 3, dtype=torch.float64)
    q = DropoutNormal(loc, keep_prob=1.0, theta=0.3)
    w = q.rsample((4,))
    expected = torch.distributions.Normal(loc, 0.3).log_prob(w).sum((-1, -2))
    torch.testing.assert_close(q.log_prob(w), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rsample_moments_match_mean_and_variance(dtype):
    # 200k draws: the standard error of each sample mean is sd / sqrt(2e5); allow 5 SE.
    loc = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=dtype)
    q = DropoutNormal(loc, keep_prob=0.8, theta=0.3)
    w = q.rsample((200_000,)).double()
    se_mean = (q.variance.double() / 200_000).sqrt()
    assert ((w.mean(0) - q.mean.double()).abs() <= 5 * se_mean).all()
    # variance of the sample variance ~ (m4 - var^2)/n; use the empirical 4th moment
    c = w - w.mean(0)
    se_var = ((c.pow(4).mean(0) - c.pow(2).mean(0).pow(2)) / 200_000).sqrt()
    assert ((w.var(0) - q.variance.double()).abs() <= 5 * se_var).all()


def test_columns_are_dropped_together():
    q = DropoutNormal(torch.ones(6, 5, dtype=torch.float64), keep_prob=0.5, theta=1e-12)
    w = q.rsample((100,))
    # within a column every row is either ~1 (kept) or ~0 (dropped)
    per_col = w.round()
    assert torch.all(per_col == per_col[..., :1, :])
    frac_kept = float(per_col[..., 0, :].mean())
    assert 0.35 < frac_kept < 0.65  # 500 Bernoulli(0.5) draws: sd 0.022


def test_shapes_batching_and_expand():
    loc = torch.randn(4, 3, 2)
    q = DropoutNormal(loc, keep_prob=torch.tensor([0.5, 0.6, 0.7, 0.8]), theta=0.1)
    assert q.batch_shape == (4,) and q.event_shape == (3, 2)
    assert q.rsample((5,)).shape == (5, 4, 3, 2)
    assert q.log_prob(q.rsample((5,))).shape == (5, 4)
    qe = DropoutNormal(torch.randn(3, 2), 0.9, 0.1).expand((7, 4))
    assert qe.batch_shape == (7, 4) and qe.rsample().shape == (7, 4, 3, 2)
    assert qe.log_prob(qe.rsample()).shape == (7, 4)
    assert q.mean.shape == q.variance.shape == (4, 3, 2)


def test_rsample_is_differentiable_in_loc_and_scale():
    loc = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    w = DropoutNormal(loc, 0.5, theta).rsample(mask=mask)
    w.sum().backward()
    torch.testing.assert_close(loc.grad, mask.expand(3, 2))
    assert theta.grad is not None and torch.isfinite(theta.grad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"keep_prob": 0.0, "theta": 0.1}, "keep_prob"),
        ({"keep_prob": 1.2, "theta": 0.1}, "keep_prob"),
        ({"keep_prob": 0.5, "theta": 0.0}, "theta"),
        ({"keep_prob": 0.5, "theta": -1.0}, "theta"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DropoutNormal(torch.zeros(2, 2), validate_args=True, **kwargs)


def test_bad_loc_and_sample_shape_raise():
    with pytest.raises(ValueError, match="loc"):
        DropoutNormal(torch.zeros(3), 0.5, 0.1)
    q = DropoutNormal(torch.zeros(2, 2), 0.5, 0.1, validate_args=True)
    with pytest.raises(ValueError):
        q.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="noise"):
        q.rsample(noise=torch.zeros(3, 3))


def test_responsibilities_sum_to_one():
    q = DropoutNormal(torch.randn(2, 3, dtype=torch.float64), 0.7, 0.5)
    r = q.responsibilities(q.rsample((10,)))
    np.testing.assert_allclose(r.sum(-2).numpy(), 1.0, rtol=0, atol=1e-12)
