"""``from_exact_gp``: the draws reproduce the exact Gaussian predictive density, the pointwise
log-likelihood of ``N x 1`` targets, NetCDF round trip and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from comparisons.inference_data.io_exact_gp import from_exact_gp
from comparisons.metrics.gaussian import gaussian_log_likelihood
from tests.common import NUM_SE
from tests.comparisons.inference_data.helpers import (
    assert_common_layout,
    assert_netcdf_roundtrip,
    assert_one_dimensional_targets_refused,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_exact_gp_draws_reproduce_the_gaussian_predictive_density(gp_setup):
    gp, lik, xs, ys = gp_setup
    y_mean, y_std = -1.0, 2.0
    S = 4000
    idata = from_exact_gp(gp, lik, xs, y_mean + y_std * ys, num_draws=S, num_chains=2,
                          y_mean=y_mean, y_std=y_std, seed=3)
    assert_common_layout(idata, "exact_gp", 2, 2000, 15, 2)
    const = idata.constant_data
    np.testing.assert_allclose(const["noise_var"].values,
                               y_std**2 * lik.noise.item(), rtol=1e-12)
    # MC estimate of the log predictive density vs the exact Gaussian marginal, per point,
    # within 4 delta-method standard errors of the estimator.
    ll = idata.log_likelihood["y"].values.reshape(S, -1)
    est = logsumexp(ll, axis=0) - math.log(S)
    w = np.exp(ll - ll.max(0))
    se = w.std(0) / w.mean(0) / math.sqrt(S)
    mean = torch.as_tensor(const["f_mean"].values)
    var = torch.as_tensor(const["f_var"].values + const["noise_var"].values)
    exact = gaussian_log_likelihood(mean, var, y_mean + y_std * ys[:, 0]).numpy()
    assert np.all(np.abs(est - exact) < NUM_SE * se + 1e-12)
    assert se.max() < 0.05  # the check is not vacuous (S = 4000 draws)
    f = idata.posterior["f"].values.reshape(S, -1)
    f_se = np.sqrt(const["f_var"].values / S)
    assert np.all(np.abs(f.mean(0) - const["f_mean"].values) < NUM_SE * f_se)


def test_n_by_1_gp_targets_give_the_gaussian_log_likelihood_of_each_point(gp_setup):
    # N x 1 test targets: log N(y_n; f_sn, noise_n) per point and draw, to 1e-12, and the
    # same numbers from numpy and from torch (the values a 1-D y_test used to give)
    gp, lik, xs, ys = gp_setup
    y_orig = 0.5 + 1.5 * ys
    idata = from_exact_gp(gp, lik, xs, y_orig, num_draws=30, y_mean=0.5, y_std=1.5, seed=2)
    f = idata.posterior["f"].values
    noise = idata.constant_data["noise_var"].values
    y = y_orig[:, 0].numpy()
    np.testing.assert_array_equal(idata.observed_data["y"].values, y)
    ref = -0.5 * np.log(2 * np.pi * noise) - 0.5 * (y - f) ** 2 / noise
    np.testing.assert_allclose(idata.log_likelihood["y"].values, ref, rtol=0, atol=1e-12)
    again = from_exact_gp(gp, lik, xs, y_orig.numpy(), num_draws=30, y_mean=0.5, y_std=1.5,
                          seed=2)
    np.testing.assert_array_equal(again.log_likelihood["y"].values,
                                  idata.log_likelihood["y"].values)


def test_netcdf_roundtrip_is_lossless(gp_setup, tmp_path):
    gp, lik, xs, ys = gp_setup
    assert_netcdf_roundtrip(from_exact_gp(gp, lik, xs, ys, num_draws=60), tmp_path / "gp.nc")


def test_non_finite_targets_are_rejected_with_method_and_count(gp_setup):
    gp, lik, xs, ys = gp_setup
    bad_y = ys.clone()
    bad_y[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"from_exact_gp: y_test has 1 non-finite"):
        from_exact_gp(gp, lik, xs, bad_y, num_draws=10)


def test_one_dimensional_targets_are_refused_naming_the_argument(gp_setup):
    gp, lik, xs, _ = gp_setup
    assert_one_dimensional_targets_refused(
        lambda y: from_exact_gp(gp, lik, xs, y, num_draws=20), "from_exact_gp", 15, "y_test")
