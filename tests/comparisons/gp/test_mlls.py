"""CholeskyMarginalLogLikelihood equals GPyTorch's exact MLL (value and every gradient)."""

from __future__ import annotations

import gpytorch
import pytest
import torch

from comparisons.gp.mlls import CholeskyMarginalLogLikelihood, gaussian_log_density
from comparisons.gp.models import ExactGPModel, make_kernel


def _model(kernel_name, prior=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(-1)) + 0.1 * torch.randn(60, generator=g, dtype=torch.float64)
    kwargs = {}
    if prior:
        kwargs["weight_variance_prior"] = gpytorch.priors.GammaPrior(2.0, 1.0)
    kernel = make_kernel(kernel_name, 3, 1.3, 0.4, outputscale=0.8, **kwargs)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = torch.tensor(0.05, dtype=torch.float64)
    model = ExactGPModel(x, y, lik, kernel.double(), mean="constant").double()
    with torch.no_grad():
        model.mean_module.constant.fill_(0.3)
    model.train()
    return model, lik, x, y


def _value_and_grads(mll_cls, model, lik, x, y):
    model.zero_grad()
    mll = mll_cls(lik, model)
    with gpytorch.settings.max_cholesky_size(10**6):
        value = mll(model(x), y)
    value.backward()
    return float(value.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("kernel_name,prior", [("arccos1", False), ("arccos1", True), ("se", False)])
def test_matches_gpytorch_exact_mll(kernel_name, prior):
    # float64, N = 60: both are the same closed form; rounding differences are ~1e-13.
    model, lik, x, y = _model(kernel_name, prior)
    v_ref, g_ref = _value_and_grads(gpytorch.mlls.ExactMarginalLogLikelihood, model, lik, x, y)
    v, g = _value_and_grads(CholeskyMarginalLogLikelihood, model, lik, x, y)
    assert v == pytest.approx(v_ref, rel=1e-10, abs=1e-10)
    assert set(g) == set(g_ref) and len(g) >= 4
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-8, atol=1e-10, msg=name)


def test_gaussian_log_density_against_torch_distribution_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64)
    cov = a @ a.T + 5 * torch.eye(5, dtype=torch.float64)
    r = torch.randn(5, generator=g, dtype=torch.float64)
    ref = torch.distributions.MultivariateNormal(torch.zeros(5, dtype=torch.float64), cov).log_prob(r)
    torch.testing.assert_close(gaussian_log_density(cov, r), ref, rtol=1e-12, atol=1e-12)

    def f(b, res):  # symmetric parametrisation so finite differences stay on SPD matrices
        return gaussian_log_density(b @ b.T + 5 * torch.eye(5, dtype=torch.float64), res)

    assert torch.autograd.gradcheck(f, (a.clone().requires_grad_(), r.clone().requires_grad_()))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="covariance must be"):
        gaussian_log_density(torch.eye(3), torch.zeros(4))
    model, lik, x, y = _model("arccos1")
    with pytest.raises(ValueError, match="likelihood must be a Gaussian"):
        CholeskyMarginalLogLikelihood(gpytorch.likelihoods.BernoulliLikelihood(), model)
