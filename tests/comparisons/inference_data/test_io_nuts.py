"""``from_nuts`` of a ``pyro.infer.MCMC`` (ArviZ 1.x has no ``from_pyro``) and of a ``NUTSResult``:
layout, sample statistics, log-likelihood equal to Pyro's vectorised trace, NetCDF round trips
and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pyro import poutine
from pyro.infer import Predictive

from comparisons.inference_data.io_nuts import from_nuts
from tests.comparisons.inference_data.helpers import (
    assert_common_layout,
    assert_netcdf_roundtrip,
    assert_one_dimensional_targets_refused,
    fake_nuts_result,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def test_from_nuts_of_an_mcmc_has_the_layout_and_sample_stats(tiny_mcmc):
    x, y, model, mcmc = tiny_mcmc
    idata = from_nuts(mcmc, model, x, y)
    assert_common_layout(idata, "hmc", 2, 30, 15, 1)
    assert idata.posterior.attrs["sampler"] == "nuts"
    assert idata.posterior["layers.0.weight"].dims == ("chain", "draw", "layer0_out", "layer0_in")
    stats = idata.sample_stats
    for name in ("diverging", "step_size", "tree_depth", "n_steps", "energy", "lp",
                 "acceptance_rate"):
        assert stats[name].dims == ("chain", "draw"), name
    assert stats["diverging"].dtype == bool
    assert int(stats["tree_depth"].max()) <= 3 and int(stats["n_steps"].min()) >= 1
    # the divergences are those Pyro's diagnostics report, chain by chain
    div = mcmc.diagnostics()["divergences"]
    for c, key in enumerate(sorted(div)):
        assert sorted(np.flatnonzero(stats["diverging"].values[c])) == sorted(div[key])
    # ours equals Pyro's vectorised trace with the slot restored, to 1e-10
    flat = {k: v.unsqueeze(1) for k, v in mcmc.get_samples().items()}
    site = Predictive(model, flat).get_vectorized_trace(x, y).nodes["obs"]
    ref = site["fn"].log_prob(site["value"]).reshape(2, 30, 15).numpy()
    np.testing.assert_allclose(idata.log_likelihood["y"].values, ref, rtol=0, atol=1e-10)
    # the recorded lp is the log joint at the returned draw
    draws = mcmc.get_samples(group_by_chain=True)
    params = {k: v[1, 5] for k, v in draws.items()}
    tr = poutine.trace(poutine.condition(model, data=params)).get_trace(x, y)
    assert float(stats["lp"][1, 5]) == pytest.approx(float(tr.log_prob_sum()), abs=1e-9)


def test_from_nuts_result_defaults_to_its_data_and_settings():
    result = fake_nuts_result()
    idata = result.to_datatree(y_mean=2.0, y_std=0.5)
    assert_common_layout(idata, "hmc", 3, 40, 9, 2)
    assert idata.sample_stats.attrs["sampler"] == "nuts"
    assert idata.sample_stats["tree_depth"].dims == ("chain", "draw")
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values,
                                  result.sample_stats["diverging"])
    np.testing.assert_array_equal(idata.observed_data["y"].values, 2.0 + 0.5 * result.y[:, 0])
    assert idata.posterior.attrs["tau_model_scale"] == 3.0
    assert idata.posterior.attrs["wall_time_s"] == 2.0


@pytest.mark.parametrize("source", ["nuts_result", "nuts_mcmc"])
def test_netcdf_roundtrip_is_lossless(source, tmp_path, request):
    if source == "nuts_result":
        idata = from_nuts(fake_nuts_result())
    else:
        x, y, model, mcmc = request.getfixturevalue("tiny_mcmc")
        idata = from_nuts(mcmc, model, x, y)
    assert_netcdf_roundtrip(idata, tmp_path / f"{source}.nc")


def test_non_finite_draws_are_rejected_with_method_and_count():
    result = fake_nuts_result()
    result.samples["layers.1.bias"][0, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"from_nuts: draws of layers.1.bias has 1 non-finite"):
        from_nuts(result)


def test_mismatched_observation_counts_are_rejected():
    with pytest.raises(ValueError, match=r"from_nuts: x has 9 observation\(s\) but y has 3"):
        from_nuts(fake_nuts_result(), y=np.zeros((3, 1)))


def test_one_dimensional_targets_are_refused_naming_the_argument(tiny_mcmc):
    assert_one_dimensional_targets_refused(lambda y: from_nuts(fake_nuts_result(), y=y),
                                           "from_nuts", 9)
    x, _, model, mcmc = tiny_mcmc
    assert_one_dimensional_targets_refused(lambda y: from_nuts(mcmc, model, x, y),
                                           "from_nuts", 15)
