"""GP fitting and prediction (:mod:`comparisons.gp.fit`): the predictive equals a direct
Cholesky computation, Adam and L-BFGS decrease the loss, the one Cholesky rule, the prior GPs keep
float64 hyper-parameters, the weight-space random-feature posterior, fitting on a subset and the
NotPSDError re-raise."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch

from comparisons.datasets.toy1d import load_toy1d
from comparisons.gp.fit import (
    MAX_CHOLESKY_SIZE,
    exact_cholesky,
    fit_exact_gp,
    fit_gp,
    gp_predict,
    random_feature_posterior,
)
from comparisons.gp.models import KERNEL_NAMES, ExactGPModel, GPNotPSDError, make_kernel
from comparisons.gp.priors import dropout_prior_gp_hyperparameters
from comparisons.kernels.random_features import RandomFeatureKernel
from tests.common import toy_regression

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_fit_exact_gp_bad_input():
    x, y = toy_regression(10, 2)
    lik = gpytorch.likelihoods.GaussianLikelihood()
    model = ExactGPModel(x, y.squeeze(-1), lik, make_kernel("se", 2))
    with pytest.raises(ValueError, match="num_iters must be an integer >= 1, got 0"):
        fit_exact_gp(model, lik, num_iters=0)
    with pytest.raises(ValueError, match="likelihood must be the model's own likelihood"):
        fit_exact_gp(model, gpytorch.likelihoods.GaussianLikelihood(), num_iters=1)


def test_exact_cholesky_covers_every_size_an_exact_gp_can_hold():
    # GPyTorch's default switches to CG above 800 points; inside exact_cholesky() it may not
    # below MAX_CHOLESKY_SIZE, which exceeds any N whose N x N float64 factor fits in memory.
    default = gpytorch.settings.max_cholesky_size.value()
    assert default < 1000
    with exact_cholesky():
        assert gpytorch.settings.max_cholesky_size.value() == MAX_CHOLESKY_SIZE
    assert gpytorch.settings.max_cholesky_size.value() == default
    assert MAX_CHOLESKY_SIZE >= 10**6


def test_predict_above_800_points_is_the_cholesky_answer():
    # N = 900 > GPyTorch's default 800: GPFit.predict (under exact_cholesky) equals a direct
    # dense Cholesky to 1e-8.
    x, y = toy_regression(900, 2, seed=3)
    fit = fit_gp("gp_arccos1_prior", x.numpy(), y.numpy(),
                 prior=dict(weight_variance=1.0, bias_variance=0.5, outputscale=2.0, noise=0.1))
    xs = torch.randn(5, 2, dtype=torch.float64)
    mean, var = fit.predict(xs.numpy())
    m_ref, v_ref = _direct_cholesky(fit.model.covar_module, x, y[:, 0], xs, 0.1, 0.0)
    np.testing.assert_allclose(mean, m_ref.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(var, v_ref.numpy(), rtol=0, atol=1e-8)


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


def test_prior_gp_keeps_float64_hyperparameters_and_noise_floor():
    d = load_toy1d(num_train=60, seed=0)
    h = dropout_prior_gp_hyperparameters(1e-2, 0.99, 20.0, d.y_std, 1, 50)
    for method in ("gp_arccos1_prior", "gp_rf_prior"):
        fit = fit_gp(method, d.x_train, d.y_train, prior=h)
        for key in ("weight_variance", "bias_variance", "outputscale", "noise"):
            assert fit.hyperparameters[key] == pytest.approx(h[key], rel=1e-12), (method, key)
        mean, var = fit.predict(d.x_test)
        assert np.isfinite(mean).all()
        # predictive variance includes the noise (up to rounding of the huge prior scale)
        assert (var >= h["noise"] * (1 - 1e-6)).all(), (method, var.min())
        # vague prior: far larger variance in extrapolation than at the data
        extrap = d.region_mask("extrapolation")
        assert np.median(var[extrap]) > 100 * np.median(var[d.region_mask("train")])


def test_random_feature_posterior_equals_function_space_formula():
    # moderate hyper-parameters (well conditioned): weight-space vs dense Cholesky, 1e-9
    d = load_toy1d(num_train=60, seed=2)
    h = dict(weight_variance=2.0, bias_variance=0.5, outputscale=1.5, noise=0.1)
    fit = fit_gp("gp_rf_prior", d.x_train, d.y_train, prior=h, num_features=30, seed=1)
    mean, var = fit.predict(d.x_test)
    m_ref, v_ref = gp_predict(fit.model, fit.likelihood, torch.tensor(d.x_test))
    np.testing.assert_allclose(mean, m_ref.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(var, v_ref.numpy(), rtol=0, atol=1e-9)
    phi = torch.eye(2, dtype=torch.float64)
    m, v = random_feature_posterior(phi, torch.ones(2, dtype=torch.float64), phi, 1.0, 1.0)
    np.testing.assert_allclose(m.numpy(), [0.5, 0.5], rtol=1e-14)
    np.testing.assert_allclose(v.numpy(), [1.5, 1.5], rtol=1e-14)


def test_lbfgs_reaches_a_lower_loss_than_adam():
    d = load_toy1d(num_train=60, seed=0)
    lb = fit_gp("gp_se", d.x_train, d.y_train, iterations=30)
    ad = fit_gp("gp_se", d.x_train, d.y_train, iterations=30, optimizer="adam", lr=0.1)
    assert lb.hyperparameters["optimizer_fallback"] == 0.0
    assert lb.losses[-1] < lb.losses[0]
    assert lb.losses[-1] <= ad.losses[-1] + 1e-9
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit_gp("gp_se", d.x_train, d.y_train, optimizer="sgd")
    with pytest.raises(ValueError, match="method must be one of"):
        fit_gp("gp-matern", d.x_train, d.y_train)
    with pytest.raises(ValueError, match="needs prior="):
        fit_gp("gp_arccos1_prior", d.x_train, d.y_train)
    with pytest.raises(ValueError, match="y_train must have .* rows like x"):
        fit_gp("gp_se", d.x_train, d.y_train[:-1])
    with pytest.raises(ValueError, match=r"y_train must have shape N x D .*reshape\(-1, 1\)"):
        fit_gp("gp_se", d.x_train, d.y_train[:, 0])


def test_subset_fit_conditions_exactly_on_all_points():
    # max_fit_size: hyper-parameters from a 25-point subset, posterior on all 60 points; the
    # prediction must equal a direct float64 Cholesky with those hyper-parameters (1e-8).
    g = np.random.default_rng(4)
    x = g.normal(size=(60, 2))
    y = (np.sin(x[:, 0]) + 0.1 * g.normal(size=60))[:, None]
    fit = fit_gp("gp_arccos1", x, y, iterations=5, max_fit_size=25, seed=3)
    full = fit_gp("gp_arccos1", x, y, iterations=5)
    assert fit.hyperparameters["fit_subset_size"] == 25
    assert full.hyperparameters["fit_subset_size"] == 60
    assert fit.model.train_inputs[0].shape[0] == 60
    assert fit.hyperparameters["outputscale"] != pytest.approx(full.hyperparameters["outputscale"])
    xs = g.normal(size=(7, 2))
    mean, var = fit.predict(xs)
    kern, lik = fit.model.covar_module, fit.likelihood
    xt, xst = torch.tensor(x), torch.tensor(xs)
    with torch.no_grad():
        c = float(fit.model.mean_module.constant)
        k = kern(xt).to_dense() + lik.noise * torch.eye(60, dtype=torch.float64)
        ks = kern(xst, xt).to_dense()
        chol = torch.linalg.cholesky(k)
        alpha = torch.cholesky_solve(torch.tensor(y) - c, chol)[:, 0]
        v = torch.linalg.solve_triangular(chol, ks.T, upper=False)
        ref_var = kern(xst, diag=True) - v.pow(2).sum(0) + lik.noise
    np.testing.assert_allclose(mean, (c + ks @ alpha).numpy(), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(var, ref_var.numpy(), rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="max_fit_size"):
        fit_gp("gp_arccos1", x, y, iterations=2, max_fit_size=0)


PRIOR = {"weight_variance": 1.0, "bias_variance": 1.0, "outputscale": 1.0, "noise": 0.1}


@pytest.fixture(scope="module", params=["gp_se", "gp_rf_prior"])
def small_fit(request):
    """A GP fitted on 20 points with Q = 2 inputs (the GPyTorch and the weight-space
    predictive)."""
    x, y = np.random.default_rng(0).normal(size=(20, 2)), np.zeros((20, 1))
    return fit_gp(request.param, x, y, iterations=2, prior=PRIOR)


@pytest.mark.parametrize("x,message", [
    (np.zeros(4), r"^x must have shape N x D = N x 2 \(one row per point, D = 2 input columns as "
                  r"in training\), got a 1-D array of shape \(4,\) \(for one point pass "
                  r"x.reshape\(1, -1\)\)$"),
    (np.zeros(()), r"^x must have shape N x D = N x 2 .*got a 0-D array"),
    (np.zeros((4, 3)), r"^x must have shape N x D = N x 2 \(D = 2 input columns as in training\), "
                       r"got shape \(4, 3\)$"),
    (np.zeros((0, 2)), r"^x must hold at least one row \(N >= 1\), got 0 rows \(shape \(0, 2\)\)$"),
    (np.full((3, 2), np.nan), r"^x must be finite, but 6 of 6 entries are NaN or inf$"),
    (np.array([["a", "b"]]), r"^x must be an array of real numbers, got dtype <U1"),
    (np.ones((3, 2), dtype=bool), r"^x must be an array of real numbers, got dtype bool"),
])
def test_gpfit_predict_refuses_bad_inputs_naming_the_expected_shape(small_fit, x, message):
    """A 1-D x gave torch's raw ``Sizes of tensors must match``; zero rows an empty result."""
    with pytest.raises(ValueError, match=message):
        small_fit.predict(x)


def test_gpfit_predict_one_input_column_hint():
    x = np.linspace(-1, 1, 10)[:, None]
    fit = fit_gp("gp_se", x, np.sin(x), iterations=2)
    with pytest.raises(ValueError, match=r"^x must have shape N x D = N x 1 .*\(for one input "
                                         r"column pass x.reshape\(-1, 1\)\)$"):
        fit.predict(x[:, 0])
    mean, var = fit.predict(x[:3])
    assert mean.shape == var.shape == (3,)


def test_gp_predict_refuses_a_one_dimensional_test_x():
    x, y = toy_regression(10, 2)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    model = ExactGPModel(x, y.squeeze(-1), lik, make_kernel("se", 2).double()).double()
    with pytest.raises(ValueError, match=r"^test_x must have shape N x D = N x 2 .*got a 1-D array "
                                         r"of shape \(2,\)"):
        gp_predict(model, lik, x[0])
    assert gp_predict(model, lik, x[:1])[0].shape == (1,)


@pytest.mark.parametrize("method", ["gp_se", "gp_arccos1", "gp_arccos1_prior", "gp_rf_prior"])
@pytest.mark.parametrize("x,y,message", [
    (np.zeros((0, 2)), np.zeros((0, 1)),
     r"^x_train must hold at least one row \(N >= 1\), got 0 rows \(shape \(0, 2\)\)$"),
    (np.zeros((5, 0)), np.zeros((5, 1)),
     r"^x_train must have at least one input column \(Q >= 1\), got shape \(5, 0\)$"),
    (np.zeros((5, 2), dtype=bool), np.zeros((5, 1)),
     r"^x_train must be an array of real numbers, got dtype bool"),
    (np.zeros((5, 2)), np.array([["1"]] * 5), r"^y_train must be an array of real numbers"),
])
def test_fit_gp_refuses_empty_or_non_numeric_training_data(method, x, y, message):
    """Zero training rows were accepted silently (a GP on nothing)."""
    with pytest.raises(ValueError, match=message):
        fit_gp(method, x, y, iterations=2, prior=PRIOR)


@pytest.mark.parametrize("kwargs,message", [
    (dict(iterations=True), r"^iterations must be an integer >= 1, got a bool \(True\)"),
    (dict(iterations="3"), r"^iterations must be an integer >= 1, got a str \('3'\)"),
    (dict(lr=True, optimizer="adam"), r"^lr must be a finite number > 0, got a bool"),
    (dict(seed=True), r"^seed must be an integer, got a bool"),
    (dict(max_fit_size=True), r"^max_fit_size must be an integer >= 1, got a bool"),
])
def test_fit_gp_numbers_are_not_bools_or_strings(kwargs, message):
    x, y = np.random.default_rng(0).normal(size=(12, 2)), np.zeros((12, 1))
    with pytest.raises(ValueError, match=message):
        fit_gp("gp_se", x, y, **{"iterations": 2, **kwargs})


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_features=True), r"^num_features must be an integer >= 1, got a bool"),
    (dict(prior={**PRIOR, "noise": "0.1"}), r"^prior\['noise'\] must be a finite number > 0, "
                                             r"got a str"),
    (dict(prior={**PRIOR, "outputscale": True}), r"^prior\['outputscale'\] must be a finite "
                                                 r"number > 0, got a bool"),
])
def test_prior_gp_numbers_are_not_bools_or_strings(kwargs, message):
    x, y = np.random.default_rng(0).normal(size=(12, 2)), np.zeros((12, 1))
    with pytest.raises(ValueError, match=message):
        fit_gp("gp_rf_prior", x, y, **{"prior": PRIOR, **kwargs})


def test_fit_gp_accepts_numpy_scalars_with_the_same_result():
    x, y = np.random.default_rng(0).normal(size=(12, 2)), np.zeros((12, 1))
    want = fit_gp("gp_rf_prior", x, y, prior=PRIOR, num_features=8, seed=3)
    got = fit_gp("gp_rf_prior", x, y, prior={k: np.float64(v) for k, v in PRIOR.items()},
                 num_features=np.int64(8), seed=np.int64(3))
    for a, b in zip(want.predict(x[:4]), got.predict(x[:4])):
        np.testing.assert_array_equal(a, b)
