"""NUTS reference posterior: the potential is the BayesianMLP log joint, tiny runs give finite
draws and diagnostics, the per-chain cache is reused (also by a later spawn run with more
chains), and hmc_summary flags bad draws."""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import torch
from pyro import poutine

from comparisons.reference.nuts import (
    HMCDiagnosticsWarning,
    bnn_potential,
    hmc_summary,
    jit_potential,
    nuts_cache_key,
    run_nuts,
)
from vi_dropout import Architecture, BayesianMLP

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# The tiny problem: 20 points, 1 -> 3 -> 1 tanh network, weak likelihood (tau = 1), trees of
# depth <= 4 so that a chain of 100 + 100 iterations takes about a second.
TINY = dict(hidden=(3,), activation="tanh", prior_length_scale=1.0, tau=1.0, num_warmup=100,
            num_samples=100, max_tree_depth=4, seed=0)
#: TINY with a shorter warmup and a lower tree-depth cap: the cache and spawned-chain test
SHORT = dict(TINY, num_warmup=50, max_tree_depth=3)


def _tiny_data():
    x = torch.linspace(-2, 2, 20, dtype=torch.float64)[:, None]
    y = torch.sin(2 * x) + 0.1 * torch.randn(20, 1, generator=torch.Generator().manual_seed(0),
                                             dtype=torch.float64)
    return x, y


def test_potential_is_minus_the_bayesian_mlp_log_joint():
    # Same target as the Pyro model: -U equals the trace's log_prob_sum to 1e-10 (float64).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(11, 3, generator=g, dtype=torch.float64)
    y = torch.randn(11, 2, generator=g, dtype=torch.float64)
    arch = Architecture((3, 5, 4, 2), "relu")
    model = BayesianMLP(arch, prior_length_scale=0.7, tau=3.0)
    pot = bnn_potential(x, y, arch, 0.7, 3.0)
    for _ in range(3):
        params = {}
        for i, (o, q) in enumerate(arch.layer_shapes):
            params[f"layers.{i}.weight"] = torch.randn(o, q, generator=g, dtype=torch.float64)
            params[f"layers.{i}.bias"] = torch.randn(o, generator=g, dtype=torch.float64)
        tr = poutine.trace(poutine.condition(model, data=params)).get_trace(x, y)
        assert float(pot(params)) == pytest.approx(-float(tr.log_prob_sum()), abs=1e-10)


def test_jit_potential_gives_the_eager_value_and_gradient():
    # the traced potential (what run_nuts and the benchmark run) equals the eager one: value and
    # gradient to 1e-12 at a point other than the tracing example
    g = torch.Generator().manual_seed(2)
    x = torch.randn(9, 2, generator=g, dtype=torch.float64)
    y = torch.randn(9, 1, generator=g, dtype=torch.float64)
    arch = Architecture((2, 4, 1), "relu")
    pot = bnn_potential(x, y, arch, 0.8, 2.0)

    def draw():
        params = {}
        for i, (o, q) in enumerate(arch.layer_shapes):
            params[f"layers.{i}.weight"] = torch.randn(o, q, generator=g, dtype=torch.float64)
            params[f"layers.{i}.bias"] = torch.randn(o, generator=g, dtype=torch.float64)
        return params

    traced = jit_potential(pot, arch, draw())
    assert traced is not None
    params = {k: v.requires_grad_() for k, v in draw().items()}
    eager, jitted = pot(params), traced(params)
    assert float(jitted) == pytest.approx(float(eager), abs=1e-12)
    for a, b in zip(torch.autograd.grad(eager, list(params.values())),
                    torch.autograd.grad(jitted, list(params.values()))):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_cache_key_depends_on_settings_and_data():
    x, y = np.zeros((3, 1)), np.ones((3, 1))
    k = nuts_cache_key({"tau": 1.0}, x, y)
    assert k == nuts_cache_key({"tau": 1.0}, x.copy(), y.copy())
    assert k != nuts_cache_key({"tau": 2.0}, x, y)
    assert k != nuts_cache_key({"tau": 1.0}, x, y + 1e-12)
    assert k != nuts_cache_key({"tau": 1.0}, x.astype(np.float32), y)


def test_tiny_run_diagnostics_cache_and_spawned_extra_chain(tmp_path):
    # TINY's 100 draws per chain, after 50 warmup iterations at tree depth 3 (the runs here
    # check the plumbing and the diagnostics' presence, not the posterior)
    x, y = _tiny_data()
    t0 = time.perf_counter()
    first = run_nuts(x, y, num_chains=2, num_processes=1, cache_dir=tmp_path, **SHORT)
    t_first = time.perf_counter() - t0
    assert first.from_cache == (False, False)
    w = first.samples["layers.0.weight"]
    assert w.shape == (2, 100, 3, 1)
    assert all(np.isfinite(v).all() for v in first.samples.values())
    stats = first.sample_stats
    assert stats["tree_depth"].shape == (2, 100) and stats["tree_depth"].max() <= 3
    assert stats["n_steps"].min() >= 1 and stats["n_steps"].max() <= 2**3 - 1
    assert np.isfinite(stats["energy"]).all() and np.isfinite(stats["lp"]).all()
    assert (first.chain_wall_times_s > first.chain_sampling_times_s).all()
    # the recorded lp belongs to the returned draw: lp = -U(draw) to 1e-9
    pot = bnn_potential(x, y, Architecture((1, 3, 1), "tanh"), 1.0, 1.0)
    for c, d in [(0, 0), (1, 57)]:
        params = {k: torch.as_tensor(v[c, d]) for k, v in first.samples.items()}
        assert stats["lp"][c, d] == pytest.approx(-float(pot(params)), abs=1e-9)
    assert first.draws_per_second > 0 and first.grad_evals_per_draw >= 1

    idata = first.to_datatree()
    assert idata.posterior["layers.1.weight"].dims == ("chain", "draw", "layer1_out", "layer1_in")
    assert idata.sample_stats["energy"].dims == ("chain", "draw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HMCDiagnosticsWarning)  # 2 x 100 draws are few
        table = hmc_summary(idata, var_names=["f"])
    diag = table.attrs["diagnostics"]
    assert np.isfinite(table["r_hat"].to_numpy()).all() and len(table) == 20
    assert 0.99 < diag["max_r_hat"] < 2.0 and diag["min_ess_bulk"] > 5
    assert diag["min_bfmi"] is not None and diag["min_bfmi"] > 0

    # second call: every chain from the cache, files untouched, identical draws, much faster
    files = [Path(f) for f in first.cache_files]
    assert all(f.is_file() and f.parent.parent == tmp_path for f in files)
    mtimes = [f.stat().st_mtime_ns for f in files]
    t0 = time.perf_counter()
    second = run_nuts(x, y, num_chains=2, num_processes=1, cache_dir=tmp_path, **SHORT)
    t_second = time.perf_counter() - t0
    assert second.from_cache == (True, True)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    for k, v in first.samples.items():
        np.testing.assert_array_equal(second.samples[k], v)
    np.testing.assert_array_equal(second.sample_stats["energy"], stats["energy"])
    assert t_second < 0.25 * t_first

    # a third chain in a spawned worker process: chains 0, 1 reused, chain 2 new and cached
    third = run_nuts(x, y, num_chains=3, num_processes=2, cache_dir=tmp_path, **SHORT)
    assert third.from_cache == (True, True, False)
    assert os.path.isfile(third.cache_files[2])
    assert np.isfinite(third.samples["layers.0.bias"]).all()
    bias = third.samples["layers.0.bias"]
    assert not np.array_equal(bias[2], bias[0])  # its own seed, not a copy of chain 0
    # other settings -> another cache entry
    other = run_nuts(x, y, num_chains=1, num_processes=1, cache_dir=tmp_path,
                     **dict(SHORT, num_warmup=20, num_samples=20))
    assert other.from_cache == (False,) and other.cache_files[0] != first.cache_files[0]


def test_dense_mass_matrix_samples_the_same_target_with_other_draws():
    # Pyro's full_mass: the recorded lp of each draw is still -U of that draw, and the adapted
    # dense matrix changes the draws after warmup (same seed and initial values)
    x, y = _tiny_data()
    kw = dict(TINY, num_samples=10, max_tree_depth=3)
    dense = run_nuts(x, y, num_chains=1, num_processes=1, dense_mass=True, **kw)
    diagonal = run_nuts(x, y, num_chains=1, num_processes=1, **kw)
    assert dense.settings["dense_mass"] is True and "dense_mass" not in diagonal.settings
    pot = bnn_potential(x, y, Architecture((1, 3, 1), "tanh"), 1.0, 1.0)
    for d in (0, 9):
        params = {k: torch.as_tensor(v[0, d]) for k, v in dense.samples.items()}
        assert dense.sample_stats["lp"][0, d] == pytest.approx(-float(pot(params)), abs=1e-9)
    assert not np.array_equal(dense.samples["layers.0.weight"], diagonal.samples["layers.0.weight"])


def test_model_backend_samples_the_same_target():
    # Pyro's NUTS on the BayesianMLP itself: the recorded lp of each draw is -U of that draw.
    x, y = _tiny_data()
    res = run_nuts(x, y, num_chains=1, num_processes=1, backend="model", jit_compile=False,
                   **dict(TINY, num_warmup=15, num_samples=10, max_tree_depth=3))
    arch = Architecture((1, 3, 1), "tanh")
    pot = bnn_potential(x, y, arch, 1.0, 1.0)
    for d in (0, 9):
        params = {k: torch.as_tensor(v[0, d]) for k, v in res.samples.items()}
        assert res.sample_stats["lp"][0, d] == pytest.approx(-float(pot(params)), abs=1e-9)


def test_run_nuts_rejects_bad_input():
    x, y = _tiny_data()
    bad = x.clone()
    bad[4, 0] = float("nan")
    with pytest.raises(ValueError, match="x has 1 non-finite"):
        run_nuts(bad, y, num_processes=1, **TINY)
    with pytest.raises(ValueError, match="y must have 5 rows like x"):
        run_nuts(x[:5], y, num_processes=1, **TINY)
    with pytest.raises(ValueError, match=r"y must have shape N x D .*reshape"):
        run_nuts(x, y[:, 0], num_processes=1, **TINY)
    with pytest.raises(ValueError, match="backend must be one of"):
        run_nuts(x, y, num_processes=1, backend="stan", **TINY)
    with pytest.raises(ValueError, match="num_chains must be an integer >= 1"):
        run_nuts(x, y, num_chains=0, num_processes=1, **TINY)
    with pytest.raises(ValueError, match="num_warmup must be an integer >= 0"):
        run_nuts(x, y, num_processes=1, **dict(TINY, num_warmup=-1))
    with pytest.raises(ValueError, match="init_scale must be a finite number > 0"):
        run_nuts(x, y, num_processes=1, init_scale=float("inf"), **TINY)
    with pytest.raises(ValueError, match=r"target_accept_prob must be in \(0, 1\)"):
        run_nuts(x, y, num_processes=1, target_accept_prob=1.0, **TINY)
    with pytest.raises(ValueError, match="dense_mass must be True or False, got 'yes'"):
        run_nuts(x, y, num_processes=1, dense_mass="yes", **TINY)


def test_hmc_summary_flags_disagreeing_chains_and_passes_good_draws():
    rng = np.random.default_rng(0)
    good = az.from_dict({"posterior": {"a": rng.normal(size=(4, 500)),
                                   "b": rng.normal(size=(4, 500, 3))},
                        "sample_stats": {"diverging": np.zeros((4, 500), dtype=bool),
                                      "energy": rng.normal(size=(4, 500))}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", HMCDiagnosticsWarning)
        table = hmc_summary(good)
    diag = table.attrs["diagnostics"]
    assert diag["ok"] and diag["max_r_hat"] < 1.01 and diag["min_ess_bulk"] > 400
    # chains 0-1 centred at 0, chains 2-3 at 1 (two modes), plus divergences and a random walk
    # energy (E-BFMI near 0)
    shifted = rng.normal(size=(4, 500)) + np.array([0, 0, 1, 1])[:, None]
    diverging = np.zeros((4, 500), dtype=bool)
    diverging[1, 10:13] = True
    bad = az.from_dict({"posterior": {"a": shifted},
                       "sample_stats": {"diverging": diverging,
                                     "energy": np.cumsum(rng.normal(size=(4, 500)), axis=1)}})
    with pytest.warns(HMCDiagnosticsWarning, match=r"R-hat > 1.01.*3 divergent.*E-BFMI below"):
        table = hmc_summary(bad)
    diag = table.attrs["diagnostics"]
    assert not diag["ok"] and diag["max_r_hat"] > 1.1 and diag["num_divergent"] == 3
    # ESS threshold scales with the number of chains: 100 x 4 = 400 > ~ 2 x 60 autocorrelated
    ar = np.zeros((4, 60))
    for t in range(1, 60):
        ar[:, t] = 0.9 * ar[:, t - 1] + rng.normal(size=4)
    with pytest.warns(HMCDiagnosticsWarning, match=r"bulk ESS < 400 \(100 x 4 chains"):
        hmc_summary(az.from_dict({"posterior": {"a": ar}}))
    assert math.isfinite(diag["min_ess_tail"])


def test_damaged_cache_files_are_named_resampled_and_rewritten(tmp_path):
    x, y = _tiny_data()
    small = dict(TINY, num_warmup=20, num_samples=20)
    first = run_nuts(x, y, num_chains=3, num_processes=1, cache_dir=tmp_path, **small)
    files = [Path(f) for f in first.cache_files]
    files[0].write_bytes(files[0].read_bytes()[:-200])  # truncated: zipfile.BadZipFile
    files[1].write_bytes(b"")  # empty: EOFError
    files[2].write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)  # garbage behind a zip header
    with pytest.warns(RuntimeWarning, match="ignoring unreadable NUTS cache file") as record:
        again = run_nuts(x, y, num_chains=3, num_processes=1, cache_dir=tmp_path, **small)
    named = " ".join(str(w.message) for w in record)
    assert all(str(f) in named for f in files)
    assert again.from_cache == (False, False, False)
    for k, v in first.samples.items():  # the same seeds give the same chains
        np.testing.assert_array_equal(again.samples[k], v)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        third = run_nuts(x, y, num_chains=3, num_processes=1, cache_dir=tmp_path, **small)
    assert third.from_cache == (True, True, True)  # the files were rewritten whole
    assert not list(files[0].parent.glob(".tmp-*"))


def test_an_edited_cached_chain_is_resampled(tmp_path):
    """A cache file rewritten whole with changed draws (a valid zip: its CRCs match) is caught by
    the arrays_sha256 of its meta, named, and sampled again."""
    x, y = _tiny_data()
    small = dict(TINY, num_warmup=20, num_samples=20)
    first = run_nuts(x, y, num_chains=2, num_processes=1, cache_dir=tmp_path, **small)
    path = Path(first.cache_files[0])
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    name = next(k for k in arrays if k.startswith("sample:"))
    arrays[name] = arrays[name] + 1.0
    np.savez(path.with_suffix(".tmp.npz"), **arrays)
    path.with_suffix(".tmp.npz").replace(path)
    with pytest.warns(RuntimeWarning, match=f"{path.name}.*do not match the arrays_sha256"):
        again = run_nuts(x, y, num_chains=2, num_processes=1, cache_dir=tmp_path, **small)
    assert again.from_cache == (False, True)
    for k, v in first.samples.items():
        np.testing.assert_array_equal(again.samples[k], v)
