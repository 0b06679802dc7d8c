"""``from_mc_dropout``: layout, agreement with the paper's per-point log-likelihood
(``regression_summary``), the noise draws, optional weights / masks, NetCDF round trip and the
errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from comparisons.inference_data.io_mc_dropout import from_mc_dropout
from tests.common import NUM_SE
from tests.comparisons.inference_data.helpers import (
    assert_common_layout,
    assert_netcdf_roundtrip,
    assert_one_dimensional_targets_refused,
    dropout_samples,
)
from vi_dropout.summaries import regression_summary

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_mc_dropout_log_likelihood_is_regression_summary_pointwise():
    # logsumexp_t(log_lik) - log T is exactly the paper's per-point test log-likelihood
    # (float64; tolerance 1e-12), on the original scale with y_mean / y_std.
    x, s = dropout_samples()
    y_orig = 5.0 + 2.5 * torch.randn(30, 1, generator=torch.Generator().manual_seed(3),
                                     dtype=torch.float64)
    idata = from_mc_dropout(s, y_orig, tau=0.7, x=x, y_mean=5.0, y_std=2.5, num_chains=4)
    assert_common_layout(idata, "mc_dropout", 4, 100, 30, 3)
    ref = regression_summary(s, y_orig, tau=0.7, y_mean=5.0, y_std=2.5)
    ll = idata.log_likelihood["y"].values.reshape(400, 30)
    np.testing.assert_allclose(logsumexp(ll, axis=0) - math.log(400),
                               ref.log_likelihood.numpy(), rtol=0, atol=1e-12)
    # chain-major split: chain c, draw d is MC sample c * 100 + d, mapped to the original scale
    f = idata.posterior["f"].values
    np.testing.assert_array_equal(f[2, 7], 5.0 + 2.5 * s[207, :, 0].numpy())
    np.testing.assert_array_equal(idata.observed_data["y"].values, y_orig[:, 0].numpy())


def test_mc_dropout_noise_draws_have_precision_tau():
    # y - f ~ N(0, 1/tau) on the original scale: sample variance within 4 standard errors.
    s = np.zeros((4000, 5, 1))
    idata = from_mc_dropout(s, np.zeros((5, 1)), tau=4.0, y_std=2.0, seed=1)
    resid = (idata.posterior_predictive["y"] - idata.posterior["f"]).values.ravel()
    se = 0.25 * math.sqrt(2.0 / resid.size)
    assert abs(resid.var() - 0.25) < NUM_SE * se
    idata2 = from_mc_dropout(s, np.zeros((5, 1)), tau=4.0, y_std=2.0, seed=1)
    np.testing.assert_array_equal(idata2.posterior_predictive["y"].values,
                                  idata.posterior_predictive["y"].values)


def test_mc_dropout_optional_masks_weights_and_multi_output():
    rng = np.random.default_rng(0)
    T, N = 60, 7
    masks = [rng.integers(0, 2, size=(T, N, 3)).astype(np.float64),
             rng.integers(0, 2, size=(T, 8)).astype(np.float64)]
    weights = [rng.normal(size=(T, 8, 3)), rng.normal(size=(T, 2, 8))]
    biases = [rng.normal(size=(T, 8)), rng.normal(size=(T, 2))]
    idata = from_mc_dropout(rng.normal(size=(T, N, 2)), rng.normal(size=(N, 2)), tau=1.0,
                            x=rng.normal(size=(N, 3)), num_chains=3, masks=masks,
                            weights=weights, biases=biases, feature_names=["a", "b", "c"])
    post = idata.posterior
    assert post["layers.0.mask"].dims == ("chain", "draw", "obs", "layer0_in")
    assert post["layers.1.mask"].dims == ("chain", "draw", "layer1_in")
    assert post["layers.1.weight"].dims == ("chain", "draw", "layer1_out", "layer1_in")
    assert post["layers.0.bias"].shape == (3, 20, 8)
    np.testing.assert_array_equal(post["layers.1.weight"].values[1, 4], weights[1][24])
    assert post["f"].dims == ("chain", "draw", "obs", "output")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")  # joint over outputs
    assert list(idata.constant_data["feature"].values) == ["a", "b", "c"]


def test_netcdf_roundtrip_is_lossless(tmp_path):
    x, s = dropout_samples(T=80, N=12)
    idata = from_mc_dropout(s, torch.zeros(12, 1), tau=2.0, x=x, num_chains=2,
                            masks=[np.ones((80, 12, 3))], feature_names=["u", "v", "w"])
    assert_netcdf_roundtrip(idata, tmp_path / "mc_dropout.nc")


def test_non_finite_draws_are_rejected_with_method_and_count():
    s = np.zeros((20, 4, 1))
    s[3, 1, 0] = np.nan
    s[5, 2, 0] = np.inf
    s[7, 0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"from_mc_dropout: samples has 3 non-finite"):
        from_mc_dropout(s, np.zeros((4, 1)), tau=1.0)


def test_mismatched_observation_counts_and_chains_are_rejected():
    with pytest.raises(ValueError, match=r"from_mc_dropout: samples have 5 observation"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((6, 1)), tau=1.0)
    with pytest.raises(ValueError, match=r"from_mc_dropout: x has 4 observation\(s\) but y has 5"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((5, 1)), tau=1.0, x=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"10 draws of samples cannot be split into 3 chains"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((5, 1)), tau=1.0, num_chains=3)
    with pytest.raises(ValueError, match=r"tau must be a finite number > 0"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((5, 1)), tau=0.0)


def test_one_dimensional_targets_are_refused_naming_the_argument():
    assert_one_dimensional_targets_refused(
        lambda y: from_mc_dropout(np.zeros((40, len(y), 1)), y, tau=1.0), "from_mc_dropout", 5)


def test_errors_of_the_common_layout_name_the_converter():
    """The checks of the shared layout (GaussianDrawsConverter) name the function the user
    called, as the converter's own checks do."""
    with pytest.raises(ValueError, match=r"^from_mc_dropout: feature_names has 1 entries but x "
                                         r"has 2 feature"):
        from_mc_dropout(np.zeros((10, 3, 1)), np.zeros((3, 1)), tau=1.0, x=np.zeros((3, 2)),
                        feature_names=["a"])
