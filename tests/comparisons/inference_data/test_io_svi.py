"""``from_svi_guide``: layout, log-likelihood equal to Pyro's own, the guide's weight means,
reproducible draws with the global RNG untouched, NetCDF round trip and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pyro import poutine

from comparisons.inference_data.base import weight_dims
from comparisons.inference_data.io_svi import from_svi_guide
from tests.common import NUM_SE
from tests.comparisons.inference_data.helpers import (
    assert_common_layout,
    assert_netcdf_roundtrip,
    assert_one_dimensional_targets_refused,
    svi_setup,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_svi_guide_draws_dims_and_log_likelihood_match_pyro():
    x, y, model, guide = svi_setup()
    y_mean, y_std = 1.5, 3.0
    y_orig = y_mean + y_std * y
    state = torch.get_rng_state()
    idata = from_svi_guide(model, guide, x, y_orig, num_samples=120, num_chains=2,
                           y_mean=y_mean, y_std=y_std, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert_common_layout(idata, "svi_dropout_guide", 2, 60, 25, 2)
    dims, _ = weight_dims(model.architecture)
    for name, d in dims.items():
        assert idata.posterior[name].dims == ("chain", "draw", *d)
    # Pyro's own obs log density (model scale) of draw (c, d), minus the Jacobian log(y_std):
    # agreement to 1e-10 for several draws.
    for c, d in [(0, 0), (1, 59), (0, 31)]:
        params = {k: torch.as_tensor(idata.posterior[k].values[c, d]) for k in dims}
        tr = poutine.trace(poutine.condition(model, data=params)).get_trace(x, y)
        tr.compute_log_prob()
        ref = tr.nodes["obs"]["log_prob"].numpy() - math.log(y_std)
        np.testing.assert_allclose(idata.log_likelihood["y"].values[c, d], ref, rtol=0, atol=1e-10)
    # the guide's weight means: E[W] = keep_prob * M, within 4 standard errors per entry
    w = idata.posterior["layers.0.weight"].values.reshape(120, 6, 2)
    m = 0.8 * guide.weight_locs[0].detach().numpy()
    se = w.std(0) / math.sqrt(120)
    assert np.all(np.abs(w.mean(0) - m) < NUM_SE * se + 1e-12)
    again = from_svi_guide(model, guide, x, y_orig, num_samples=120, num_chains=2,
                           y_mean=y_mean, y_std=y_std, seed=7)
    np.testing.assert_array_equal(again.posterior["layers.1.weight"].values,
                                  idata.posterior["layers.1.weight"].values)


def test_netcdf_roundtrip_is_lossless(tmp_path):
    x, y, model, guide = svi_setup()
    assert_netcdf_roundtrip(from_svi_guide(model, guide, x, y, num_samples=50),
                            tmp_path / "svi.nc")


def test_mismatched_observation_counts_are_rejected():
    x, y, model, guide = svi_setup()
    with pytest.raises(ValueError, match=r"from_svi_guide: x has 25 observation\(s\) but y has 24"):
        from_svi_guide(model, guide, x, y[:24], num_samples=10)


def test_one_dimensional_targets_are_refused_naming_the_argument():
    x, _, model, guide = svi_setup()
    assert_one_dimensional_targets_refused(
        lambda y: from_svi_guide(model, guide, x, y, num_samples=10), "from_svi_guide", 25)
