"""Mean-field Gaussian VI (:mod:`vi_dropout.infer.mean_field`): the closed-form KL against
``torch.distributions`` and the priors of :class:`~vi_dropout.models.BayesianMLP`, the local
reparameterisation against explicit weight sampling, batched fits against single fits, the
predictive of a linear model against its closed form, and failure handling."""

import math

import pyro.poutine as poutine
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vi_dropout.infer.mean_field import (
    MeanFieldObjective,
    fit_mean_field,
    preactivation_moments,
)
from vi_dropout.kl import mean_field_kl_to_prior
from vi_dropout.models import BayesianMLP
from vi_dropout.network import Architecture

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _set_scales(obj: MeanFieldObjective, generator, low=0.05, high=0.5):
    """Random per-entry standard deviations in [low, high] (through the softplus parameters)."""
    with torch.no_grad():
        for rho in [*obj.weight_rhos, *obj.bias_rhos]:
            s = low + (high - low) * torch.rand(rho.shape, generator=generator, dtype=F64)
            rho.copy_(s + torch.log(-torch.expm1(-s)))  # inverse softplus


@pytest.mark.parametrize("event_dims", [0, 1, 2])
def test_kl_matches_torch_normal_kl(event_dims):
    # per-entry KL(N(m, s^2) || N(0, l^-2)) against torch.distributions, summed over the last
    # event_dims dims (float64, 1e-12)
    g = _gen(0)
    loc = torch.randn(3, 4, 5, generator=g, dtype=F64)
    scale = 0.01 + torch.rand(3, 4, 5, generator=g, dtype=F64)
    expected = kl_divergence(Normal(loc, scale), Normal(torch.zeros((), dtype=F64), 1 / 0.7))
    if event_dims:
        expected = expected.sum(tuple(range(-event_dims, 0)))
    got = mean_field_kl_to_prior(loc, scale, 0.7, event_dims=event_dims)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="event_dims"):
        mean_field_kl_to_prior(loc, scale, 0.7, event_dims=4)


def test_objective_kl_uses_the_priors_of_bayesian_mlp():
    # the objective's KL is the sum over every site of the Pyro model's prior (float64, 1e-12)
    arch = Architecture((3, 4, 2), "relu")
    obj = MeanFieldObjective(arch, prior_length_scale=0.3, generator=_gen(1))
    _set_scales(obj, _gen(2))
    trace = poutine.trace(BayesianMLP(arch, prior_length_scale=0.3).sample_params).get_trace()
    expected = torch.zeros((), dtype=F64)
    for i, (w, b, sw, sb) in enumerate(zip(obj.weights, obj.biases, obj.weight_scales,
                                          obj.bias_scales)):
        for kind, loc, scale in (("weight", w, sw), ("bias", b, sb)):
            prior = trace.nodes[f"layers.{i}.{kind}"]["fn"].base_dist
            expected = expected + kl_divergence(
                Normal(loc, scale), Normal(prior.loc, prior.scale)).sum()
    torch.testing.assert_close(obj.kl().detach(), expected.detach(), rtol=1e-12, atol=1e-12)


def test_preactivation_moments_match_weight_sampling():
    # W ~ q drawn explicitly (S = 100,000): the sample mean and variance of W h + b per example
    # and unit against the closed form, within 5 standard errors (SE of a mean sqrt(v / S), of
    # a Gaussian sample variance v sqrt(2 / (S - 1)))
    g = _gen(3)
    h = torch.randn(3, 4, generator=g, dtype=F64)
    loc, bias_loc = torch.randn(2, 4, generator=g, dtype=F64), torch.randn(2, generator=g,
                                                                           dtype=F64)
    scale = 0.1 + torch.rand(2, 4, generator=g, dtype=F64)
    bias_scale = 0.1 + torch.rand(2, generator=g, dtype=F64)
    s = 100_000
    w = loc + scale * torch.randn(s, 2, 4, generator=g, dtype=F64)
    b = bias_loc + bias_scale * torch.randn(s, 2, generator=g, dtype=F64)
    a = h @ w.transpose(-1, -2) + b[:, None, :]                          # S x 3 x 2
    mean, var = preactivation_moments(h, loc, bias_loc, scale, bias_scale)
    assert mean.shape == var.shape == (3, 2)
    assert bool(((a.mean(0) - mean).abs() <= 5 * (var / s).sqrt()).all())
    assert bool(((a.var(0) - var).abs() <= 5 * var * math.sqrt(2 / (s - 1))).all())


def test_expected_negative_elbo_of_a_linear_model():
    # linear model: f_n ~ N(m^T x_n + m_b, sum_j s_j^2 x_nj^2 + s_b^2), so the expected
    # estimate is N[tau/2 mean_n((y_n - mean_n)^2 + var_n) + 1/2 log(2 pi / tau)] + KL;
    # 20,000 draws, tolerance 5 SE
    arch = Architecture((3, 1), "relu")
    obj = MeanFieldObjective(arch, tau=2.5, prior_length_scale=0.5, generator=_gen(4))
    _set_scales(obj, _gen(5))
    g = _gen(6)
    x, y = torch.randn(7, 3, generator=g, dtype=F64), torch.randn(7, 1, generator=g, dtype=F64)
    with torch.no_grad():
        draws = obj(x, y, num_data=70, sample_shape=(20_000,), generator=_gen(7))
        mean, var = preactivation_moments(x, obj.weights[0], obj.biases[0],
                                          obj.weight_scales[0], obj.bias_scales[0])
        expected = 70 * (2.5 / 2 * ((y - mean) ** 2 + var).mean()
                         + 0.5 * math.log(2 * math.pi / 2.5)) + obj.kl()
    assert draws.shape == (20_000,)
    se = draws.std() / math.sqrt(draws.numel())
    assert abs(float(draws.mean() - expected)) <= 5 * float(se)


def test_predict_of_a_linear_model_matches_the_closed_form():
    # f(x) = w^T x + b, w ~ N(m, diag s^2): mean m^T x + m_b and variance sum s_j^2 x_j^2 +
    # s_b^2 per point; 40,000 samples in chunks (max_rows), tolerance 5 SE
    arch = Architecture((2, 1), "relu")
    obj = MeanFieldObjective(arch, generator=_gen(8))
    _set_scales(obj, _gen(9), 0.2, 0.6)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3], [0.0, 0.0]], dtype=F64)
    t = 40_000
    samples = obj.predict(x, t, generator=_gen(10), max_rows=9_000)
    assert samples.shape == (t, 3, 1)
    w, b = obj.weights[0].detach(), obj.biases[0].detach()
    sw, sb = obj.weight_scales[0].detach(), obj.bias_scales[0].detach()
    mean = x @ w.T + b
    var = x.pow(2) @ sw.pow(2).T + sb.pow(2)
    assert bool(((samples.mean(0) - mean).abs() <= 5 * (var / t).sqrt()).all())
    assert bool(((samples.var(0) - var).abs() <= 5 * var * math.sqrt(2 / (t - 1))).all())


def _toy(num_networks: int, n: int = 30):
    g = _gen(11)
    x = torch.randn(num_networks, n, 2, generator=g, dtype=F64)
    y = torch.sin(x.sum(-1, keepdim=True)) + 0.1 * torch.randn(num_networks, n, 1, generator=g,
                                                               dtype=F64)
    return x, y


def test_batched_fit_reproduces_each_single_fit():
    # network e of a batched fit draws its initial means, permutations and noise from its own
    # generator in the single fit's order: same parameters and losses (float64, 1e-10)
    x, y = _toy(3)
    kw = dict(steps=25, batch_size=10, lr=1e-2, hyper_lr=3e-2, tau=2.0, initial_sigma=1e-2,
              prior_length_scale=0.5, num_samples=2)
    batched = fit_mean_field(x, y, (6,), seed=[5, 6, 7], **kw)
    assert batched.losses.shape == (25, 3) and batched.failures == (None, None, None)
    for e, seed in enumerate([5, 6, 7]):
        single = fit_mean_field(x[e], y[e], (6,), seed=seed, **kw)
        for a, b in zip(batched.weights + batched.biases + batched.weight_scales
                        + batched.bias_scales, single.weights + single.biases
                        + single.weight_scales + single.bias_scales):
            assert torch.allclose(a[e], b, rtol=0, atol=1e-10)
        assert torch.allclose(batched.losses[:, e], single.losses, rtol=1e-10)
        assert float(batched.tau[e]) == pytest.approx(float(single.tau), rel=1e-10)
        t1 = batched.objective.predict(x[e, :4], 5, network=e, generator=_gen(0))
        t2 = single.objective.predict(x[e, :4], 5, generator=_gen(0))
        assert torch.allclose(t1, t2, rtol=0, atol=1e-10)


def test_fit_learns_tau_and_the_exact_posterior_of_a_linear_model():
    # y = 2x + noise (std 0.1) on a symmetric grid: x and the bias column are orthogonal, so the
    # exact posterior of (w, b) given tau is a product of Gaussians, the mean-field optimum:
    # std 1 / sqrt(tau sum x^2 + l^2) and 1 / sqrt(tau N + l^2) at the learned tau, which is
    # the ELBO's fixed point tau = N / sum_n ((y_n - m_n)^2 + v_n). Full batch, 8 noise draws
    # per step (over 8 seeds these settings land within 4% of the optimum): tolerance 10%, tau 2%
    obj = MeanFieldObjective(Architecture((1, 4, 1)), initial_sigma=3e-3)
    assert all(torch.allclose(s, torch.full_like(s, 3e-3)) for s in obj.weight_scales)
    g = _gen(12)
    x = torch.linspace(-1, 1, 200, dtype=F64).reshape(-1, 1)
    y = 2 * x + 0.1 * torch.randn(200, 1, generator=g, dtype=F64)
    fit = fit_mean_field(x, y, (), steps=3000, lr=1e-2, num_samples=8, seed=0)
    tau = float(fit.tau)
    assert float(fit.weights[0]) == pytest.approx(2.0, abs=0.05)
    mean, var = preactivation_moments(x, fit.weights[0], fit.biases[0], fit.weight_scales[0],
                                      fit.bias_scales[0])
    assert tau == pytest.approx(200 / float(((y - mean) ** 2 + var).sum()), rel=0.02)
    exact_w = 1 / math.sqrt(tau * float(x.pow(2).sum()) + 1.0)
    exact_b = 1 / math.sqrt(tau * 200 + 1.0)
    assert float(fit.weight_scales[0]) == pytest.approx(exact_w, rel=0.1)
    assert float(fit.bias_scales[0]) == pytest.approx(exact_b, rel=0.1)


def test_failures_single_raises_and_batched_names_the_network():
    x, y = _toy(2)
    # one network: a tau beyond 1e10 is named in a ValueError
    with pytest.raises(ValueError, match="tau left"):
        fit_mean_field(x[0], y[0], (3,), tau=1e11, steps=2)
    # E networks: network 1's targets overflow the loss (1e200^2); network 0 trains on
    y = y.clone()
    y[1] = 1e200
    fit = fit_mean_field(x, y, (4,), seed=[0, 1], steps=10)
    assert fit.failures[0] is None and "non-finite" in fit.failures[1]
    assert bool(torch.isfinite(fit.losses[:, 0]).all())


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed=[]), "non-empty"),
    (dict(seed=[0, 1, 2]), "networks' data"),
    (dict(seed=[0, 1], initial_sigma=0.0), "initial_sigma"),
    (dict(seed=[0, 1], hyper_lr=-1.0), "hyper_lr"),
])
def test_fit_checks_its_arguments(kwargs, match):
    x, y = _toy(2)
    with pytest.raises(ValueError, match=match):
        fit_mean_field(x, y, (3,), steps=1, **kwargs)


def test_objective_checks_generators_shapes_and_network():
    arch = Architecture((2, 3, 1), "relu")
    with pytest.raises(ValueError, match="sequence of 2"):
        MeanFieldObjective(arch, num_networks=2, generator=torch.Generator())
    with pytest.raises(ValueError, match="layer 0"):
        MeanFieldObjective(arch, weights=[torch.zeros(3, 3, dtype=F64),
                                          torch.zeros(1, 3, dtype=F64)],
                           biases=[torch.zeros(3, dtype=F64), torch.zeros(1, dtype=F64)])
    obj = MeanFieldObjective(arch, num_networks=2)
    with pytest.raises(ValueError, match="network must"):
        obj.predict(torch.zeros(1, 2, dtype=F64), 3)
    with pytest.raises(ValueError, match="network must be in 0..1"):
        obj.predict(torch.zeros(1, 2, dtype=F64), 3, network=2)
    with pytest.raises(ValueError, match="2 x B x Q"):
        obj(torch.zeros(4, 2, dtype=F64), torch.zeros(4, 1, dtype=F64))
    out = obj(torch.zeros(2, 4, 2, dtype=F64), torch.zeros(2, 4, 1, dtype=F64),
              sample_shape=(3,), generator=[_gen(0), _gen(1)])
    assert out.shape == (3, 2)
