"""The shared layout: weight dims, the pointwise Gaussian log-likelihood (one formula, that of
``comparisons.metrics.gaussian``) and the checks of ``GaussianDrawsConverter``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comparisons.inference_data.base import (
    GaussianDrawsConverter,
    check_scale,
    pointwise_gaussian_log_likelihood,
    split_chains,
    weight_dims,
    weight_site_names,
)
from comparisons.inference_data.io_exact_gp import from_exact_gp
from comparisons.inference_data.io_mc_dropout import from_mc_dropout
from comparisons.inference_data.io_svi import from_svi_guide
from tests.comparisons.inference_data.helpers import svi_setup
from vi_dropout import Architecture

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_weight_dims_and_site_names_follow_the_architecture():
    arch = Architecture((3, 5, 2))
    dims, coords = weight_dims(arch)
    assert list(dims) == weight_site_names(arch) == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert dims["layers.1.weight"] == ["layer1_out", "layer1_in"]
    assert (len(coords["layer0_in"]), len(coords["layer0_out"]), len(coords["layer1_out"])) \
        == (3, 5, 2)


def test_pointwise_log_likelihood_is_the_precision_form_summed_over_outputs():
    # sum_d [1/2 log(tau / 2 pi) - tau/2 (y - f)^2], per-observation precisions, to 1e-12
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 7, 4, 3))
    y = rng.normal(size=(4, 3))
    tau = rng.uniform(0.5, 3.0, size=(4, 1))
    ll = pointwise_gaussian_log_likelihood(f, y, tau)
    ref = (0.5 * (np.log(tau) - math.log(2 * math.pi)) - 0.5 * tau * (y - f) ** 2).sum(-1)
    assert ll.shape == (2, 7, 4)
    np.testing.assert_allclose(ll, ref, rtol=1e-13, atol=1e-12)


def test_converter_refuses_bad_precision_shapes_and_feature_names():
    f = np.zeros((1, 4, 3, 1))
    with pytest.raises(ValueError, match="m: the noise precision must be finite and > 0"):
        GaussianDrawsConverter("m", f, np.zeros((3, 1)), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"m: draws have 3 observation\(s\) x 1 output\(s\) but "
                                         r"y has shape 2 x 1"):
        GaussianDrawsConverter("m", f, np.zeros((2, 1)), 1.0)
    with pytest.raises(ValueError, match="feature_names has 1 entries but x has 2"):
        GaussianDrawsConverter("m", f, np.zeros((3, 1)), 1.0, np.zeros((3, 2)),
                               feature_names=["a"])
    with pytest.raises(ValueError, match=r"the latent draws f has 1 non-finite"):
        GaussianDrawsConverter("m", np.full((1, 1, 1, 1), np.nan), np.zeros((1, 1)), 1.0)
    idata = GaussianDrawsConverter("m", f, np.zeros((3, 1)), 2.0, attrs={"skip": None, "a": 1}
                                   ).to_datatree()
    assert "constant_data" not in idata.children and "sample_stats" not in idata.children
    assert idata.posterior.attrs["a"] == 1 and "skip" not in idata.posterior.attrs


@pytest.mark.parametrize("value,kind", [(True, "a bool"), (np.bool_(True), "a bool"),
                                        ("4", "a str")])
def test_converters_refuse_bools_and_strings_as_numbers(gp_setup, value, kind):
    """The converters' numbers go through :mod:`vi_dropout.validation`: ``True`` was read as 1
    draw / chain (and as ``tau``, ``y_std`` 1), ``"4"`` refused only by some, and by none with
    the same message."""
    gp, lik, xs, ys = gp_setup
    samples, y = np.zeros((8, 5, 1)), np.zeros((5, 1))
    x, y_svi, model, guide = svi_setup()
    calls = {
        "from_mc_dropout: num_chains must be an integer >= 1":
            lambda v: from_mc_dropout(samples, y, tau=1.0, num_chains=v),
        "from_mc_dropout: tau must be a finite number > 0":
            lambda v: from_mc_dropout(samples, y, tau=v),
        "from_mc_dropout: y_mean must be a finite real number":
            lambda v: from_mc_dropout(samples, y, tau=1.0, y_mean=v),
        "from_mc_dropout: y_std must be a finite number > 0":
            lambda v: from_mc_dropout(samples, y, tau=1.0, y_std=v),
        "from_exact_gp: num_draws must be an integer >= 1":
            lambda v: from_exact_gp(gp, lik, xs, ys, num_draws=v),
        "from_svi_guide: num_samples must be an integer >= 1":
            lambda v: from_svi_guide(model, guide, x, y_svi, num_samples=v),
    }
    for message, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{message}, got {kind} "):
            call(value)


def test_converters_accept_numpy_scalars():
    samples, y = np.zeros((8, 5, 1)), np.zeros((5, 1))
    idata = from_mc_dropout(samples, y, tau=np.float64(2.0), y_mean=np.float32(0.5),
                            y_std=np.int64(2), num_chains=np.int64(2))
    assert idata.posterior["f"].shape == (2, 4, 5)
    assert check_scale(np.float64(1.0), np.int64(2), "m") == (1.0, 2.0)
    assert split_chains(np.zeros((6, 1)), np.int64(3), "draws", "m").shape == (3, 2, 1)


def test_no_draws_are_refused():
    with pytest.raises(ValueError, match=r"from_mc_dropout: samples has no draws \(its first dim is "
                                         r"0\)"):
        from_mc_dropout(np.zeros((0, 5, 1)), np.zeros((5, 1)), tau=1.0)
