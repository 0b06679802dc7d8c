import math

import pytest
import torch

from vi_dropout.distributions import DropoutNormal
from vi_dropout.kl import (
    binary_entropy,
    cross_entropy_to_prior,
    gaussian_kl_to_prior,
    kl_gap,
    kl_large_width,
    kl_monte_carlo,
)

F64 = torch.float64


def test_binary_entropy_values():
    torch.testing.assert_close(binary_entropy(torch.tensor(0.5, dtype=F64)),
                               torch.tensor(math.log(2), dtype=F64))
    assert float(binary_entropy(torch.tensor(1.0, dtype=F64))) == 0.0


def test_prop1_equals_component_kls_minus_entropy():
    # Prop. 1 = sum_a [sum_z pi_z KL(q_{a,z} || p)] - Q H(pi), each KL a Gaussian closed form
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(5, 3, generator=g, dtype=F64)
    kp, theta, ls = 0.7, 0.3, 2.0
    q = DropoutNormal(loc, kp, theta)
    prior = torch.distributions.Normal(torch.zeros((), dtype=F64), 1 / ls)
    kl1 = torch.distributions.kl_divergence(torch.distributions.Normal(loc, theta), prior).sum()
    kl0 = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.zeros_like(loc), theta), prior).sum()
    expected = kp * kl1 + (1 - kp) * kl0 - 3 * binary_entropy(torch.tensor(kp, dtype=F64))
    torch.testing.assert_close(kl_large_width(q, ls), expected)


def test_cross_entropy_closed_form_matches_monte_carlo():
    q = DropoutNormal(torch.randn(4, 3, dtype=F64), 0.6, 0.4)
    w = q.rsample((100_000,))
    prior = torch.distributions.Normal(torch.zeros((), dtype=F64), 1 / 1.5)
    vals = -prior.log_prob(w).sum((-1, -2))
    se = float(vals.std() / math.sqrt(len(vals)))
    assert abs(float(vals.mean() - cross_entropy_to_prior(q, 1.5))) < 5 * se


@pytest.mark.parametrize("cross_entropy", ["analytic", "monte-carlo"])
@pytest.mark.parametrize("k, theta", [(1, 0.3), (2, 0.3), (8, 0.1)])
def test_exact_kl_equals_prop1_plus_gap(k, theta, cross_entropy):
    # KL = Prop.1 + gap exactly; both sides are MC estimates: allow 4 combined SEs
    g = torch.Generator().manual_seed(k)
    q = DropoutNormal(torch.randn(k, 4, generator=g, dtype=F64), 0.6, theta)
    mc = kl_monte_carlo(q, 1.0, 20_000, generator=g, cross_entropy=cross_entropy)
    gap = kl_gap(q, 20_000, generator=g)
    tol = 4 * math.hypot(float(mc.stderr), float(gap.stderr))
    assert abs(float(mc.estimate - kl_large_width(q, 1.0) - gap.estimate)) <= tol
    assert float(gap.estimate) >= 0.0


def test_gap_estimators_agree_and_bounds_hold():
    g = torch.Generator().manual_seed(3)
    q = DropoutNormal(0.3 * torch.randn(1, 6, generator=g, dtype=F64), 0.5, 0.2)
    rb = kl_gap(q, 40_000, generator=g)
    naive = kl_gap(q, 40_000, generator=g, estimator="naive")
    assert abs(float(rb.estimate - naive.estimate)) <= 4 * math.hypot(float(rb.stderr), float(naive.stderr))
    assert float(rb.stderr) < float(naive.stderr)  # Rao-Blackwellisation lowers the variance
    upper = 6 * float(binary_entropy(torch.tensor(0.5, dtype=F64)))
    assert 0.0 < float(rb.estimate) < upper


def test_gap_is_full_entropy_when_components_coincide():
    # m = 0: both components are the same Gaussian, r_z = pi_z, so the gap is exactly Q H(pi)
    q = DropoutNormal(torch.zeros(3, 5, dtype=F64), 0.8, 0.1)
    gap = kl_gap(q, 100)
    expected = 5 * binary_entropy(torch.tensor(0.8, dtype=F64))
    torch.testing.assert_close(gap.estimate, expected)


def test_gap_vanishes_for_separated_components():
    q = DropoutNormal(torch.full((16, 4), 3.0, dtype=F64), 0.5, 0.01)
    assert float(kl_gap(q, 1000).estimate) < 1e-12


def test_gaussian_kl_to_prior_matches_torch():
    loc = torch.randn(7, dtype=F64)
    prior = torch.distributions.Normal(torch.zeros((), dtype=F64), 1 / 0.5)
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(loc, 0.2), prior).sum()
    torch.testing.assert_close(gaussian_kl_to_prior(loc, 0.2, 0.5), expected)


def test_bad_arguments():
    q = DropoutNormal(torch.zeros(2, 2, dtype=F64), 0.5, 0.1)
    with pytest.raises(ValueError, match="prior_length_scale"):
        kl_large_width(q, 0.0)
    with pytest.raises(ValueError, match="num_samples"):
        kl_monte_carlo(q, 1.0, 0)
    with pytest.raises(ValueError, match="estimator"):
        kl_gap(q, 10, estimator="magic")


@pytest.mark.parametrize("estimator", ["naive", "rao-blackwell"])
def test_gap_of_one_component_family_is_zero_with_zero_gradient(estimator):
    """keep_prob = 1 leaves one component: the gap (a conditional entropy) is exactly 0, and so is
    its gradient (0 log 0 = 0 must not turn into NaN in the backward pass). A batch that mixes
    keep_prob 1 and 0.5 keeps the 0.5 member's gap and gradient finite."""
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(3, 4, dtype=F64, generator=g).requires_grad_()
    theta = torch.tensor(0.1, dtype=F64, requires_grad=True)
    gap = kl_gap(DropoutNormal(loc, 1.0, theta), 200, generator=g, estimator=estimator,
                 differentiable=True)
    assert float(gap.estimate.detach()) == 0.0 and float(gap.stderr.detach()) == 0.0
    d_loc, d_theta = torch.autograd.grad(gap.estimate, (loc, theta))
    assert torch.equal(d_loc, torch.zeros_like(loc)) and float(d_theta) == 0.0
    mixed = kl_gap(DropoutNormal(loc, torch.tensor([1.0, 0.5], dtype=F64), theta), 200,
                   generator=g, estimator=estimator, differentiable=True)
    assert float(mixed.estimate[0].detach()) == 0.0 and float(mixed.estimate[1].detach()) >= 0.0
    grads = torch.autograd.grad(mixed.estimate.sum(), (loc, theta))
    assert all(bool(torch.isfinite(t).all()) for t in grads)
