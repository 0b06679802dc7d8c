"""Exact GP model and kernel factory: the Woodbury path of random-feature kernels, the kernel
description used in error messages, and bad input."""

from __future__ import annotations

import gpytorch
import pytest
import torch

from comparisons.gp.models import ExactGPModel, make_kernel
from tests.common import toy_regression


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


def test_kernel_description_names_the_kernel_and_its_settings():
    x, y = toy_regression(10, 2)
    lik = gpytorch.likelihoods.GaussianLikelihood()
    model = ExactGPModel(x, y.squeeze(-1), lik, make_kernel("arccos1", 2, outputscale=1.0))
    assert model.kernel_description() == "ScaleKernel(ArcCosineKernel(order=1))"
    rf = make_kernel("random-features", 2, num_features=7)
    assert ExactGPModel(x, y.squeeze(-1), lik, rf).kernel_description() == (
        "RandomFeatureKernel(activation='relu', num_features=7)")


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
