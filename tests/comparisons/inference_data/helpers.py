"""Shared checks and inputs of the converter tests: the common layout, lossless NetCDF round
trips, the one target-shape rule, and small models / draws for each source."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import torch

from comparisons.reference.nuts import NUTSResult
from tests.common import toy_regression
from vi_dropout import Architecture, BayesianMLP, DropoutGuide
from vi_dropout.predict import mc_predict

COMMON_GROUPS = {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
                 "constant_data"}


def assert_common_layout(idata, method, n_chains, n_draws, n_obs, n_features):
    """Groups, dims, shapes, coords and ``attrs["method"]`` of the common layout."""
    assert COMMON_GROUPS <= set(idata.children)
    for group in COMMON_GROUPS:
        assert idata[group].attrs["method"] == method
    assert idata.posterior["f"].dims == ("chain", "draw", "obs")
    assert idata.posterior["f"].shape == (n_chains, n_draws, n_obs)
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "obs")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
    assert idata.observed_data["y"].dims == ("obs",)
    assert idata.constant_data["x"].dims == ("obs", "feature")
    assert idata.constant_data["x"].shape == (n_obs, n_features)
    np.testing.assert_array_equal(idata.posterior["obs"].values, np.arange(n_obs))


def assert_netcdf_roundtrip(idata, path):
    """Every group, variable, dim, coordinate and dtype survives to_netcdf/from_netcdf."""
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.children) == set(idata.children)
    for group in idata.children:
        a, b = idata[group], back[group]
        assert set(a.data_vars) == set(b.data_vars), group
        for name in a.data_vars:
            assert a[name].dims == b[name].dims, (group, name)
            assert a[name].dtype == b[name].dtype, (group, name)
            assert np.array_equal(a[name].values, b[name].values), (group, name)
        for name in a.coords:
            assert np.array_equal(a[name].values, b[name].values), (group, name)
        assert b.attrs["method"] == a.attrs["method"]


def assert_one_dimensional_targets_refused(convert, func: str, n: int, arg: str = "y"):
    """One rule for every converter: ``N x 1`` targets, never a reshaped ``(N,)`` (numpy or
    torch), refused with the function and the argument named."""
    for y in (np.zeros(n), torch.zeros(n, dtype=torch.float64)):
        with pytest.raises(ValueError, match=rf"{func}: {arg} must have shape N x D "
                                             rf"\(N x 1 for one output\), got a 1-D"):
            convert(y)
    assert convert(np.zeros((n, 1))).observed_data["y"].shape == (n,)


def dropout_samples(T=400, N=30, seed=0):
    """``N x 3`` inputs and ``T`` MC dropout passes of a random 3-16-1 network."""
    x, _ = toy_regression(N, 3, seed=seed)
    arch = Architecture((3, 16, 1))
    ws, bs = arch.init_params(torch.Generator().manual_seed(seed))
    s = mc_predict(x, ws, bs, keep_probs=0.9, T=T, generator=torch.Generator().manual_seed(1))
    return x, s


def svi_setup():
    """25 x 2 data, a 2-6-1 tanh BayesianMLP and its dropout guide."""
    x, y = toy_regression(25, 2, seed=4)
    model = BayesianMLP(Architecture((2, 6, 1), "tanh"), prior_length_scale=1.0, tau=8.0,
                        keep_prob=0.8, generator=torch.Generator().manual_seed(0))
    guide = DropoutGuide(model, theta=0.05)
    return x, y, model, guide


def fake_nuts_result(n_chains=3, n_draws=40, seed=0):
    """A ``NUTSResult`` of random draws of a 2-4-1 network on 9 random points."""
    rng = np.random.default_rng(seed)
    arch = Architecture((2, 4, 1))
    samples = {}
    for i, (o, q) in enumerate(arch.layer_shapes):
        samples[f"layers.{i}.weight"] = rng.normal(size=(n_chains, n_draws, o, q))
        samples[f"layers.{i}.bias"] = rng.normal(size=(n_chains, n_draws, o))
    stats = {"diverging": rng.random((n_chains, n_draws)) < 0.05,
             "tree_depth": rng.integers(1, 6, size=(n_chains, n_draws)),
             "energy": rng.normal(size=(n_chains, n_draws))}
    x = rng.normal(size=(9, 2))
    y = rng.normal(size=(9, 1))
    settings = {"widths": [2, 4, 1], "activation": "relu", "prior_length_scale": 1.0,
                "tau": 3.0, "num_warmup": 10, "seed": 0}
    return NUTSResult(samples, stats, x, y, settings, wall_time_s=2.0,
                      chain_wall_times_s=np.ones(n_chains), chain_sampling_times_s=np.ones(n_chains),
                      warmup_grad_evals=np.ones(n_chains), from_cache=(False,) * n_chains)
