"""Exact GP helpers: predictive vs a direct Cholesky computation, fitting, test log-likelihood,
dropout-prior hyper-parameters, the kernel factory and the NotPSDError re-raise."""

from __future__ import annotations

import math

import gpytorch
import pytest
import torch

from comparisons.gp.models import (
    KERNEL_NAMES,
    ExactGPModel,
    GPNotPSDError,
    dropout_prior_hyperparameters,
    fit_exact_gp,
    gp_predict,
    make_kernel,
)
from comparisons.kernels.random_features import RandomFeatureKernel
from tests.common import toy_regression
from tests.comparisons.mc_helpers import NUM_SE
from vi_dropout.network import mlp_forward


def _direct_cholesky(kernel, x, y, xs, noise, mean):
    with torch.no_grad():
        kxx = kernel(x).to_dense() + noise * torch.eye(len(x), dtype=x.dtype)
        ksx = kernel(xs, x).to_dense()
        kss = kernel(xs, diag=True)
        chol = torch.linalg.cholesky(kxx)
        alpha = torch.cholesky_solve((y - mean).unsqueeze(-1), chol).squeeze(-1)
        v = torch.linalg.solve_triangular(chol, ksx.T, upper=False)
        return ksx @ alpha + mean, kss - v.pow(2).sum(0) + noise


@pytest.mark.parametrize("name", KERNEL_NAMES)
@pytest.mark.parametrize("mean", ["zero", "constant"])
def test_predictive_equals_direct_cholesky(name, mean):
    # N=120 < max_cholesky_size, float64, fixed hyper-parameters: agreement to 1e-8.
    x, y = toy_regression(120, 3)
    y = y.squeeze(-1)
    xs = torch.randn(30, 3, dtype=torch.float64)
    kernel = make_kernel(name, 3, weight_variance=1.5, bias_variance=0.3, outputscale=1.7,
                         num_features=64, generator=torch.Generator().manual_seed(0)).double()
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.07
    model = ExactGPModel(x, y, lik, kernel, mean=mean).double()
    if mean == "constant":
        model.mean_module.constant.data.fill_(0.3)
    m, v = gp_predict(model, lik, xs)
    m_ref, v_ref = _direct_cholesky(kernel, x, y, xs, lik.noise.item(), 0.3 if mean == "constant" else 0.0)
    torch.testing.assert_close(m, m_ref, rtol=0, atol=1e-8)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-8)
    assert model.low_rank_solve == (name == "random-features")


def test_fit_decreases_loss_and_updates_hyperparameters():
    x, y = toy_regression(60, 2)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    model = ExactGPModel(x, y.squeeze(-1), lik, make_kernel("nngp-relu", 2)).double()
    before = model.covar_module.weight_variance.item()
    history = fit_exact_gp(model, lik, num_iters=30, lr=0.05)
    assert len(history) == 30 and history[-1] < history[0] - 0.05
    assert model.covar_module.weight_variance.item() != before


def test_low_rank_marginal_likelihood_uses_woodbury_and_matches_dense():
    x, y = toy_regression(200, 3)
    y = y.squeeze(-1)
    kernel = make_kernel("random-features", 3, num_features=20, outputscale=2.0,
                         generator=torch.Generator().manual_seed(1)).double()
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.1
    model = ExactGPModel(x, y, lik, kernel).double()
    model.train()
    covar = lik(model(x)).lazy_covariance_matrix
    assert type(covar).__name__ == "LowRankRootAddedDiagLinearOperator"
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)(model(x), y)
    dense = covar.to_dense()
    ref = torch.distributions.MultivariateNormal(torch.zeros(200, dtype=torch.float64), dense)
    assert mll.item() == pytest.approx(ref.log_prob(y).item() / 200, abs=1e-10)


def test_dropout_prior_hyperparameters_values():
    h = dropout_prior_hyperparameters(2.0, tau=4.0, keep_prob=0.8, input_dim=5, num_hidden=10)
    assert h == pytest.approx({"weight_variance": 5 / 4, "bias_variance": 1 / 4,
                               "outputscale": 10 / 4, "output_bias_variance": 1 / 4,
                               "noise": 0.25})
    h2 = dropout_prior_hyperparameters(2.0, 4.0, 0.8, 5, 10, scale_by_keep_prob=True)
    assert h2["outputscale"] == pytest.approx(0.8 * 10 / 4)


def test_dropout_prior_kernel_matches_network_prior_monte_carlo():
    # 200,000 networks f(x) = W2 relu(W1 x + b1), every weight N(0, l^-2), no output bias, drawn
    # with vi_dropout.network.mlp_forward: the empirical output covariance at 4 points must match
    # the implied kernel within 4 Monte-Carlo standard errors (exact second moment for any K).
    length, q, k_hidden, n_net = 1.5, 3, 10, 200_000
    h = dropout_prior_hyperparameters(length, 10.0, 0.9, q, k_hidden)
    kernel = make_kernel("arccos1", q, h["weight_variance"], h["bias_variance"],
                         outputscale=h["outputscale"]).double()
    x = torch.randn(4, q, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    std = 1.0 / length
    w1 = torch.randn(n_net, k_hidden, q, generator=g, dtype=torch.float64) * std
    b1 = torch.randn(n_net, k_hidden, generator=g, dtype=torch.float64) * std
    w2 = torch.randn(n_net, 1, k_hidden, generator=g, dtype=torch.float64) * std
    b2 = torch.zeros(n_net, 1, dtype=torch.float64)
    f = mlp_forward(x, [w1, w2], [b1, b2], activation="relu").squeeze(-1)  # n_net x 4
    prods = f.unsqueeze(-1) * f.unsqueeze(-2)
    mean, se = prods.mean(0), prods.std(0) / math.sqrt(n_net)
    exact = kernel(x).to_dense().detach()
    assert ((exact - mean).abs() <= NUM_SE * se).all()


def test_dropout_prior_bad_input():
    with pytest.raises(ValueError, match="keep_prob must lie in"):
        dropout_prior_hyperparameters(1.0, 1.0, 0.0, 3, 10)
    with pytest.raises(ValueError, match="tau must be a finite number > 0, got -1"):
        dropout_prior_hyperparameters(1.0, -1, 0.5, 3, 10)
    with pytest.raises(ValueError, match="num_hidden must be an integer >= 1, got 0"):
        dropout_prior_hyperparameters(1.0, 1.0, 0.5, 3, 0)


def test_make_kernel_and_model_bad_input():
    with pytest.raises(ValueError, match=r"name must be one of \['arccos0'.*got 'matern'"):
        make_kernel("matern", 3)
    x, y = toy_regression(10, 2)
    lik = gpytorch.likelihoods.GaussianLikelihood()
    with pytest.raises(ValueError, match=r"mean must be one of \['zero', 'constant'\], got 'linear'"):
        ExactGPModel(x, y.squeeze(-1), lik, make_kernel("se", 2), mean="linear")
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="train_x must be finite"):
        ExactGPModel(x, y.squeeze(-1), lik, make_kernel("se", 2))
    with pytest.raises(ValueError, match="num_iters must be an integer >= 1, got 0"):
        x2, y2 = toy_regression(10, 2)
        m = ExactGPModel(x2, y2.squeeze(-1), lik, make_kernel("se", 2))
        fit_exact_gp(m, lik, num_iters=0)


def test_not_psd_error_is_explained():
    # Rank-2 random-feature kernel, N=100 points, float32, zero noise, dense Cholesky
    # path (low_rank_solve=False) and a tiny jitter: Cholesky must fail.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, generator=g)
    y = torch.randn(100, generator=g)
    kernel = RandomFeatureKernel("relu", 2, 3, generator=g)
    lik = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=gpytorch.constraints.Interval(0.0, 1.0))
    lik.raw_noise.data.fill_(-100.0)  # noise = sigmoid(-100) ~ 4e-44 -> 0 in float32
    model = ExactGPModel(x, y, lik, kernel, low_rank_solve=False)
    with gpytorch.settings.cholesky_jitter(float_value=1e-30, double_value=1e-30), \
            gpytorch.settings.cholesky_max_tries(1), \
            pytest.raises(GPNotPSDError) as info:
        fit_exact_gp(model, lik, num_iters=1)
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    for part in ("RandomFeatureKernel", "num_features=2", "N=100", "jitter 1e-30", "float64",
                 "noise"):
        assert part in msg, msg
