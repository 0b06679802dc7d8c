"""Concrete dropout: relaxed masks, the learned-keep_prob objective, and its fit, checked against
exact enumeration of every Bernoulli mask (Gal, Hron & Kendall, 2017)."""

import itertools
import math

import pytest
import torch
from torch.func import functional_call

from vi_dropout.infer.concrete import (
    ConcreteDropoutObjective,
    fit_concrete,
    relaxed_bernoulli_mask,
)
from vi_dropout.kl import binary_entropy
from vi_dropout.network import Architecture

F64 = torch.float64


def _all_masks(width: int) -> torch.Tensor:
    """Every binary mask of ``width`` units, ``2^width x width``."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=width)), dtype=F64)


def _bernoulli_weights(keep_prob: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Probability of each mask under independent Bernoulli(keep_prob) units."""
    return (keep_prob**masks * (1 - keep_prob) ** (1 - masks)).prod(-1)


def test_relaxed_mask_limits_and_gradient():
    logit = torch.tensor(math.log(0.7 / 0.3), dtype=F64, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    z = relaxed_bernoulli_mask(logit, (200_000,), 1e-3, generator=g)
    assert z.dtype == F64 and bool(((z >= 0) & (z <= 1)).all())
    # near-zero temperature: (almost) hard masks, kept with probability 0.7
    assert float(((z > 1e-3) & (z < 1 - 1e-3)).double().mean()) < 1e-2
    assert abs(float((z > 0.5).double().mean()) - 0.7) < 4 * math.sqrt(0.21 / 200_000)
    (grad,) = torch.autograd.grad(relaxed_bernoulli_mask(logit, (10,), 0.5).sum(), logit)
    assert math.isfinite(float(grad)) and float(grad) > 0


def test_relaxed_gradient_bias_shrinks_with_temperature():
    """E[relaxed gradient] -> exact d/d logit E_z[loss(z)] as the temperature falls.

    Network 2 -> 3 -> 1 (tanh), dropout only on the 3 hidden units (the last layer's input), two
    data points, theta-noise set to zero: 2^3 = 8 masks, enumerated exactly. By linearity of
    expectation, using one enumerated mask for both examples gives the same expectation as
    independent per-example masks. The relaxed gradient is averaged over S = 100,000 draws in 20
    batches; its standard error (SE) is the std of the batch means / sqrt(20). Common seeds across
    temperatures. Tolerances: the bias at t = 0.5 is significant (> 10 SE); at every later
    temperature |bias| is at most the previous |bias| plus 3 combined SEs; at t = 0.05 it is within
    4 SE of zero and below a tenth of the bias at t = 0.5.
    """
    g = torch.Generator().manual_seed(1)
    arch = Architecture((2, 3, 1), "tanh")
    x = torch.randn(2, 2, generator=g, dtype=F64)
    y = torch.randn(2, 1, generator=g, dtype=F64)
    obj = ConcreteDropoutObjective(arch, [None, 0.6], theta=1e-3, tau=2.0, generator=g)
    logit = obj.keep_prob_logit(1)
    z = _all_masks(3)
    masks = [torch.ones(8, 2, 2, dtype=F64), z[:, None, :].expand(8, 2, 3)]
    noise = [torch.zeros(8, 2, 3, dtype=F64), torch.zeros(8, 2, 1, dtype=F64)]
    weights = _bernoulli_weights(torch.sigmoid(logit), z)
    exact = (weights * obj(x, y, masks=masks, noise=noise)).sum()
    (grad_exact,) = torch.autograd.grad(exact, logit)

    n_batches, per_batch = 20, 5_000
    zero_noise = [torch.zeros(per_batch, 2, 3, dtype=F64), torch.zeros(per_batch, 2, 1, dtype=F64)]
    biases, ses = [], []
    for t in (0.5, 0.2, 0.1, 0.05):
        gen = torch.Generator().manual_seed(7)
        grads = []
        for _ in range(n_batches):
            relaxed = obj.sample_masks(2, t, (per_batch,), generator=gen)
            value = obj(x, y, masks=relaxed, noise=zero_noise).mean()
            grads.append(torch.autograd.grad(value, logit)[0])
        grads = torch.stack(grads)
        biases.append(abs(float(grads.mean() - grad_exact)))
        ses.append(float(grads.std() / math.sqrt(n_batches)))
    assert biases[0] > 10 * ses[0]
    for k in range(1, len(biases)):
        assert biases[k] <= biases[k - 1] + 3 * math.hypot(ses[k], ses[k - 1])
    assert biases[-1] <= 4 * ses[-1]
    assert biases[-1] < 0.1 * biases[0]


def test_entropy_term_derivative_closed_form():
    """d/dpi [-Q H(pi)] = Q log(pi / (1 - pi)), through the objective's KL (autograd, 1e-12)."""
    g = torch.Generator().manual_seed(2)
    arch = Architecture((4, 3, 1), "relu")
    obj = ConcreteDropoutObjective(arch, [0.3, 0.85], theta=0.1, prior_length_scale=1.5,
                                   generator=g)
    for i, (_, q) in enumerate(arch.layer_shapes):
        kp = torch.sigmoid(obj.keep_prob_logit(i)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(-q * binary_entropy(kp), kp)
        expected = q * torch.log(kp / (1 - kp))
        torch.testing.assert_close(grad, expected.detach(), rtol=1e-12, atol=1e-12)
        # the same derivative inside the objective's KL, minus the mean term l^2/2 ||M_i||^2
        (grad_logit,) = torch.autograd.grad(obj.kl(), obj.keep_prob_logit(i))
        p = kp.detach()
        d_kl_d_pi = grad_logit / (p * (1 - p))
        mean_term = 0.5 * 1.5**2 * obj.weights[i].detach().pow(2).sum()
        torch.testing.assert_close(d_kl_d_pi - mean_term, expected.detach(), rtol=1e-12,
                                   atol=1e-12)


def _profile_negative_elbo(obj, x, y, keep_prob: float) -> float:
    """min over (M, b) of the exactly enumerated negative ELBO of a linear model at keep_prob.

    With the theta-noise set to zero the enumerated objective is quadratic in (M, b), so one
    Newton step from zero is its exact minimiser.
    """
    n, q = x.shape
    z = _all_masks(q)
    masks = [z[:, None, :].expand(len(z), n, q)]
    noise = [torch.zeros(len(z), n, 1, dtype=F64)]
    logit = torch.logit(torch.tensor(keep_prob, dtype=F64))
    weights = _bernoulli_weights(torch.tensor(keep_prob, dtype=F64), z)

    def objective(p):
        params = {"weights.0": p[:q].reshape(1, q), "biases.0": p[q:], "keep_prob_logits.0": logit}
        values = functional_call(obj, params, (x, y), {"masks": masks, "noise": noise})
        return (weights * values).sum()

    p0 = torch.zeros(q + 1, dtype=F64)
    grad = torch.autograd.functional.jacobian(objective, p0)
    hess = torch.autograd.functional.hessian(objective, p0)
    return float(objective(p0 - torch.linalg.solve(hess, grad)))


def test_fit_concrete_finds_exact_elbo_maximiser():
    """The keep_prob learned by fit_concrete matches the maximiser of the exactly enumerated ELBO.

    Linear model (2 inputs, dropout on both, 2^2 masks per example), theta = 1e-3 and tau = 0.5
    fixed. The exact profile negative ELBO (minimised over the means for each keep_prob) is
    evaluated on a grid of spacing 0.02. Tolerance: the grid spacing plus 0.06 for Adam's
    final-iterate noise and the t = 0.1 relaxation bias (seeds 0-4 gave 0.79-0.82
    against a grid maximiser of 0.82).
    """
    g = torch.Generator().manual_seed(0)
    n, tau = 8, 0.5
    x = torch.randn(n, 2, generator=g, dtype=F64)
    y = x @ torch.tensor([[1.0], [-0.5]], dtype=F64) + 0.3 * torch.randn(n, 1, generator=g,
                                                                          dtype=F64)
    fit = fit_concrete(x, y, (), keep_probs=0.5, theta=1e-3, tau=tau, learn_theta=False,
                       learn_tau=False, steps=600, lr=0.03, num_samples=16, temperature=0.1,
                       seed=0)
    learned = float(fit.keep_probs[0])
    assert float(fit.tau) == pytest.approx(tau) and float(fit.theta) == pytest.approx(1e-3)

    grid = torch.linspace(0.02, 0.98, 49, dtype=F64)
    values = [_profile_negative_elbo(fit.objective, x, y, float(p)) for p in grid]
    best = float(grid[min(range(len(values)), key=values.__getitem__)])
    assert 0.1 < best < 0.9  # an interior maximiser: the check is not about a boundary
    assert abs(learned - best) <= 0.02 + 0.06


def test_fit_concrete_learns_tau_and_theta():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 2, generator=g, dtype=F64)
    y = torch.sin(x[:, :1]) + 0.1 * torch.randn(16, 1, generator=g, dtype=F64)
    fit = fit_concrete(x, y, (8,), keep_probs=[0.9, 0.8], theta=1e-2, tau=1.0, steps=200,
                       lr=0.02, seed=0)
    assert float(fit.tau) != pytest.approx(1.0) and float(fit.theta) != pytest.approx(1e-2)
    assert all(0 < float(kp) < 1 for kp in fit.keep_probs)
    assert torch.isfinite(fit.losses).all()


@pytest.mark.parametrize("temperature", [0.0, -0.1, math.nan])
def test_relaxed_mask_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        relaxed_bernoulli_mask(0.0, (3,), temperature)
    x, y = torch.zeros(4, 2, dtype=F64), torch.zeros(4, 1, dtype=F64)
    with pytest.raises(ValueError, match="temperature"):
        fit_concrete(x, y, (3,), steps=1, temperature=temperature)


@pytest.mark.parametrize("keep_prob", [0.0, 1.0, -0.2, 1.5, math.nan])
def test_rejects_initial_keep_prob_outside_open_unit_interval(keep_prob):
    x, y = torch.zeros(4, 2, dtype=F64), torch.zeros(4, 1, dtype=F64)
    with pytest.raises(ValueError, match="keep_probs"):
        fit_concrete(x, y, (3,), keep_probs=keep_prob, steps=1)
    with pytest.raises(ValueError, match=r"keep_probs\[1\]"):
        ConcreteDropoutObjective(Architecture((2, 3, 1)), [0.5, keep_prob])


def test_fit_stops_when_keep_prob_hits_a_bound():
    x = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    y = torch.zeros(4, 1, dtype=F64)
    with pytest.raises(ValueError, match=r"keep_probs\[0\]"):
        fit_concrete(x, y, (), keep_probs=1 - 1e-7, steps=5)


# --- E networks, the theta -> 0 limit, the predictive, the clamp ---------------------------------
def _toy(num_networks: int, n: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_networks, n, 2, generator=g, dtype=F64)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * torch.randn(num_networks, n, 1, generator=g,
                                                               dtype=F64)
    return x, y


@pytest.mark.parametrize("theta", [1e-2, None])
def test_batched_fit_reproduces_each_single_fit(theta):
    # network e of a batched fit draws from its own generator in the single fit's order:
    # same parameters and loss trace up to rounding (float64, 1e-10)
    x, y = _toy(3)
    kw = dict(steps=25, batch_size=10, lr=1e-2, hyper_lr=3e-2, theta=theta, tau=2.0)
    batched = fit_concrete(x, y, (6,), seed=[5, 6, 7], **kw)
    assert batched.losses.shape == (25, 3) and batched.failures == (None, None, None)
    for e, seed in enumerate([5, 6, 7]):
        single = fit_concrete(x[e], y[e], (6,), seed=seed, **kw)
        for a, b in zip(batched.weights + batched.biases, single.weights + single.biases):
            assert torch.allclose(a[e], b, rtol=0, atol=1e-10)
        assert torch.allclose(batched.losses[:, e], single.losses, rtol=1e-10)
        assert float(batched.tau[e]) == pytest.approx(float(single.tau), rel=1e-10)
        assert float(batched.keep_probs[1][e]) == pytest.approx(float(single.keep_probs[1]),
                                                                rel=1e-10)


def test_theta_limit_is_the_objective_at_theta_one_over_l_without_noise():
    # theta=None: no jitter noise and no theta terms in the KL. With theta = 1/l those terms
    # vanish (l^2 theta^2 - 1 - log l^2 theta^2 = 0), so zero noise at theta = 1/l is the same
    # objective: equal values and keep_prob gradients (float64, 1e-12)
    arch = Architecture((2, 5, 1), "relu")
    g = torch.Generator().manual_seed(3)
    w, b = arch.init_params(generator=g)
    x, y = _toy(1)
    x, y = x[0], y[0]
    limit = ConcreteDropoutObjective(arch, 0.8, None, tau=3.0, prior_length_scale=0.5,
                                     weights=w, biases=b)
    at_l = ConcreteDropoutObjective(arch, 0.8, 2.0, tau=3.0, prior_length_scale=0.5,
                                    weights=w, biases=b, learn_theta=False)
    # the same uniforms for both (same seed), each through its own keep_prob logit
    masks1 = limit.sample_masks(24, 0.1, generator=torch.Generator().manual_seed(1))
    masks2 = at_l.sample_masks(24, 0.1, generator=torch.Generator().manual_seed(1))
    noise = [torch.zeros(24, 5, dtype=F64), torch.zeros(24, 1, dtype=F64)]
    v1, v2 = limit(x, y, masks=masks1), at_l(x, y, masks=masks2, noise=noise)
    assert float(v1.detach()) == pytest.approx(float(v2.detach()), rel=1e-12)
    g1 = torch.autograd.grad(v1, limit.keep_prob_logits[0])[0]
    g2 = torch.autograd.grad(v2, at_l.keep_prob_logits[0])[0]
    assert float(g1) == pytest.approx(float(g2), rel=1e-12)
    assert float(limit.theta) == 0.0 and "log_theta" not in dict(limit.named_parameters())
    with pytest.raises(ValueError, match="learn_theta=False"):
        ConcreteDropoutObjective(arch, 0.8, None, learn_theta=True)


def test_predict_mean_matches_exact_enumeration():
    # exact Bernoulli masks at the learned keep_probs (theta -> 0): the MC mean of f at each
    # point against the expectation over all 2^(2+3) masks; tolerance 5 MC standard errors
    arch = Architecture((2, 3, 1), "tanh")
    obj = ConcreteDropoutObjective(arch, [0.7, 0.6], None,
                                   generator=torch.Generator().manual_seed(0))
    x = torch.tensor([[0.5, -1.0], [1.5, 0.3]], dtype=F64)
    t = 40_000
    samples = obj.predict(x, t, generator=torch.Generator().manual_seed(1), max_rows=5_000)
    assert samples.shape == (t, 2, 1)
    z_in, z_h = _all_masks(2), _all_masks(3)
    p_in = _bernoulli_weights(torch.tensor(0.7, dtype=F64), z_in)
    p_h = _bernoulli_weights(torch.tensor(0.6, dtype=F64), z_h)
    w, b = [p.detach() for p in obj.weights], [p.detach() for p in obj.biases]
    h = torch.tanh((x[None] * z_in[:, None]) @ w[0].T + b[0])           # 4 x 2 x 3
    out = (h[:, None] * z_h[None, :, None]) @ w[1].T + b[1]             # 4 x 8 x 2 x 1
    exact = (p_in[:, None, None, None] * p_h[None, :, None, None] * out).sum((0, 1))
    se = samples.std(0) / math.sqrt(t)
    assert bool(((samples.mean(0) - exact).abs() <= 5 * se).all())


def test_predict_with_theta_adds_the_jitter_variance():
    # keep_prob ~ 1 and a linear model: f = m x + b + theta (e^T x + e_b), so the sample
    # variance is theta^2 (||x||^2 + 1); 10,000 draws: relative SE of a variance ~ 1.4%, 6%
    arch = Architecture((2, 1), "relu")
    w, b = [torch.tensor([[1.0, -2.0]], dtype=F64)], [torch.tensor([0.5], dtype=F64)]
    obj = ConcreteDropoutObjective(arch, 1 - 1e-9, 0.3, weights=w, biases=b)
    x = torch.tensor([[1.0, 2.0]], dtype=F64)
    s = obj.predict(x, 10_000, generator=torch.Generator().manual_seed(0))
    assert float(s.mean()) == pytest.approx(-2.5, abs=5 * 0.3 * math.sqrt(6) / 100)
    assert float(s.var()) == pytest.approx(0.09 * 6, rel=0.06)


def test_clamp_keeps_keep_prob_at_the_boundary_and_fit_goes_on():
    # a keep_prob beyond the bound (1 - 1e-7): "fail" stops with the parameter named; "clamp"
    # projects it to 1 - 2e-6 after every step (a small hyper_lr keeps it within 5% of the clamp
    # over 20 steps) and the fit goes on to the end
    x = torch.linspace(-1, 1, 64, dtype=F64).reshape(-1, 1)
    y = 3 * x
    kw = dict(keep_probs=1 - 1e-7, theta=None, tau=100.0, steps=20, lr=0.05, hyper_lr=1e-3)
    with pytest.raises(ValueError, match=r"keep_probs\[0\]"):
        fit_concrete(x, y, (), **kw)
    fit = fit_concrete(x, y, (), at_bound="clamp", **kw)
    assert 2e-6 * (1 - 1e-9) <= 1 - float(fit.keep_probs[0]) <= 2.1e-6
    assert fit.failures == (None,) and bool(torch.isfinite(fit.losses).all())
    with pytest.raises(ValueError, match="at_bound"):
        fit_concrete(x, y, (), at_bound="stop", steps=1)


def test_batched_failure_is_named_and_the_others_go_on():
    # network 1's targets overflow the loss (1e200^2): its entry of failures says so, network 0
    # trains on with finite losses
    x, y = _toy(2)
    y = y.clone()
    y[1] = 1e200
    fit = fit_concrete(x, y, (4,), seed=[0, 1], steps=10, theta=None)
    assert fit.failures[0] is None and "non-finite" in fit.failures[1]
    assert bool(torch.isfinite(fit.losses[:, 0]).all())


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=[]), "non-empty"),
    (dict(seed=[0, 1, 2]), "networks' data"),
])
def test_batched_fit_checks_its_arguments(kwargs, match):
    x, y = _toy(2)
    with pytest.raises(ValueError, match=match):
        fit_concrete(x, y, (3,), steps=1, **kwargs)


def test_objective_checks_generators_and_network():
    arch = Architecture((2, 3, 1), "relu")
    with pytest.raises(ValueError, match="sequence of 2"):
        ConcreteDropoutObjective(arch, num_networks=2, generator=torch.Generator())
    obj = ConcreteDropoutObjective(arch, num_networks=2)
    with pytest.raises(ValueError, match="network must"):
        obj.predict(torch.zeros(1, 2, dtype=F64), 3)
    with pytest.raises(ValueError, match="network must be in 0..1"):
        obj.predict(torch.zeros(1, 2, dtype=F64), 3, network=2)
