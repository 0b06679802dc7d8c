"""``comparisons.experiments.diagnose`` on tiny settings: the records (LOO, compare, test metrics,
distances from HMC, HMC diagnostics), the InferenceData of every method and bad input. The
report (tables, figures, files) is tested in ``tests/comparisons/report/test_diagnose.py``.

One tiny run (toy1d, 10 epochs x 1 grid point, T = 200, 2 NUTS chains x (30 + 50) iterations of
tree depth <= 4 in this process) is shared by the tests of this module (about 5 s on one thread).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from comparisons.experiments.diagnose import (
    DIAGNOSE_METHODS,
    DRAW_METHODS,
    DiagnoseResult,
    DiagnoseSettings,
    DiagnoseWarning,
    compare_methods,
    run,
)
from comparisons.inference_data.io_mc_dropout import from_mc_dropout
from comparisons.inference_data.loo import LOOReliabilityWarning, checked_loo
from comparisons.reference.nuts import HMCDiagnosticsWarning

TINY = dict(epochs_multiplier=0.01, num_samples=200, max_grid=1, gp_iterations=20,
            gp_num_draws=200, hmc_chains=2, hmc_warmup=30, hmc_samples=50, hmc_processes=1,
            hmc_max_tree_depth=4)


def _run_quietly(settings: DiagnoseSettings) -> DiagnoseResult:
    """toy1d split 0 on one torch thread (restored afterwards), without the LOO-reliability and
    HMC-diagnostics warnings that tiny settings always raise."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LOOReliabilityWarning)
            warnings.simplefilter("ignore", HMCDiagnosticsWarning)
            return run(settings)
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def result():
    return _run_quietly(DiagnoseSettings(**TINY))


def _values(records):
    return {(r["method"], r["metric"]): (r["value"], r["note"]) for r in records}


def test_every_method_has_test_metrics(result):
    assert isinstance(result, DiagnoseResult)
    assert list(result.methods) == list(DIAGNOSE_METHODS)
    values = _values(result.records)
    for m in DIAGNOSE_METHODS:
        for metric in ("test_ll", "coverage_95", "rmse", "mean_pred_sd"):
            value, note = values[(m, metric)]
            assert math.isfinite(value) and note == "", (m, metric)
        assert 0.0 <= values[(m, "coverage_95")][0] <= 1.0
    # every record is tidy and either finite or explained
    for r in result.records:
        assert set(r) == {"dataset", "method", "split", "metric", "value", "note"}
        assert r["dataset"] == "toy1d" and r["split"] == 0
        assert math.isfinite(r["value"]) or r["note"].startswith("n/a")


def test_loo_and_compare_ranking(result):
    values = _values(result.records)
    ranks = sorted(int(values[(m, "rank")][0]) for m in DRAW_METHODS)
    assert ranks == [0, 1, 2]
    weights = [values[(m, "weight")][0] for m in DRAW_METHODS]
    assert abs(sum(weights) - 1.0) < 1e-6 and min(weights) >= 0.0
    best = min(DRAW_METHODS, key=lambda m: values[(m, "rank")][0])
    assert values[(best, "elpd_diff")][0] == 0.0
    for m in DRAW_METHODS:
        assert math.isfinite(values[(m, "elpd_loo")][0]) and values[(m, "elpd_loo_se")][0] > 0
        assert values[(m, "pareto_k_bad")][0] >= 0
        # elpd_loo of the table is ArviZ's own, to 1e-9
        assert abs(values[(m, "elpd_loo")][0]
                   - float(result.comparison.loc[m, "elpd"])) < 1e-9
    assert list(result.comparison.index)[0] == best


def test_standard_dropout_has_no_loo_but_has_test_ll(result):
    values = _values(result.records)
    for metric in ("elpd_loo", "elpd_loo_se", "p_loo", "rank", "weight"):
        value, note = values[("standard_dropout", metric)]
        assert math.isnan(value) and note == "n/a (no posterior)"
    assert math.isfinite(values[("standard_dropout", "test_ll")][0])
    # Gaussian N(standard prediction, 1/tau): recompute the test LL, tolerance 1e-10
    sd = result.methods["standard_dropout"]
    tau = sd.info["tau"]
    ll = -0.5 * math.log(2 * math.pi) + 0.5 * math.log(tau) - 0.5 * tau * (
        result.y_test - sd.mean) ** 2
    assert abs(ll.mean() - sd.test_ll) < 1e-10
    assert sd.idata_train is None and sd.idata_test is None and sd.loo_note == "n/a (no posterior)"


def test_distances_from_hmc_are_finite(result):
    values = _values(result.records)
    for m in DIAGNOSE_METHODS:
        for d in ("smd", "var_ratio", "kl", "w2", "tv"):
            value, _ = values[(m, f"{d}_vs_hmc")]
            assert math.isfinite(value) and value >= 0, (m, d)
        assert values[(m, "tv_vs_hmc")][0] <= 1.0
    # HMC against itself: zero distance, ratio 1 (to 1e-12)
    assert abs(values[("hmc", "smd_vs_hmc")][0]) < 1e-12
    assert abs(values[("hmc", "var_ratio_vs_hmc")][0] - 1.0) < 1e-12
    # per region of the toy's test grid
    for region in ("train", "gap", "extrapolation"):
        assert 0.0 <= values[("mc_dropout", f"tv_vs_hmc[{region}]")][0] <= 1.0
    # MC dropout differs from HMC
    assert values[("mc_dropout", "tv_vs_hmc")][0] > 1e-3


def test_hmc_diagnostics_surfaced(result):
    values = _values(result.records)
    r_hat, note = values[("hmc", "max_r_hat")]
    assert math.isfinite(r_hat)
    diag = result.hmc_table.attrs["diagnostics"]
    assert r_hat == diag["max_r_hat"] and values[("hmc", "num_divergent")][0] == \
        diag["num_divergent"]
    if not diag["ok"]:  # 50 draws x 2 chains never reach ESS 200: the problems must show
        assert note and any("hmc_summary" in w for w in result.warnings)
        assert note == "; ".join(diag["problems"])
    # the prior is the dropout-matched one: l_eff = l p s_y / sqrt 2 with l = 1e-2
    drop = result.methods["mc_dropout"].info
    l_eff = 1e-2 * drop["keep_prob"] * result.data.y_std / math.sqrt(2)
    assert abs(values[("hmc", "prior_length_scale")][0] - l_eff) < 1e-12
    assert abs(values[("hmc", "tau_standardized")][0]
               - drop["tau"] * result.data.y_std ** 2) < 1e-9


def test_inference_data_of_every_draw_method(result):
    # training and test InferenceData carry the run's dataset / split and the method id, and
    # the test log-likelihood's mixture estimate is the method's test_ll (to 1e-12)
    n_test = result.y_test.size
    for m in DRAW_METHODS:
        out = result.methods[m]
        for idata in (out.idata_train, out.idata_test):
            assert idata.posterior.attrs["dataset"] == "toy1d"
            assert idata.posterior.attrs["split"] == 0
            assert idata.posterior.attrs["method"] == m
        assert out.idata_test.observed_data["y"].shape == (n_test,)
        np.testing.assert_array_equal(out.idata_test.observed_data["y"].values, result.y_test)
    for m in ("mc_dropout", "hmc"):
        ll = result.methods[m].idata_test.log_likelihood["y"].values.reshape(-1, n_test)
        lppd = np.mean(np.logaddexp.reduce(ll, axis=0) - math.log(ll.shape[0]))
        assert abs(lppd - result.methods[m].test_ll) < 1e-12


def test_compare_methods_rejects_mismatched_data():
    rng = np.random.default_rng(0)
    a = from_mc_dropout(rng.normal(size=(200, 6, 1)), np.zeros((6, 1)), tau=1.0)
    b = from_mc_dropout(rng.normal(size=(200, 5, 1)), np.zeros((5, 1)), tau=1.0)
    c = from_mc_dropout(rng.normal(size=(200, 6, 1)), np.ones((6, 1)), tau=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LOOReliabilityWarning)
        la, lb, lc = checked_loo(a), checked_loo(b), checked_loo(c)
    with pytest.raises(ValueError, match="different numbers of observations"):
        compare_methods({"a": la, "b": lb}, {"a": a, "b": b})
    with pytest.raises(ValueError, match="observed y of 'c' differ"):
        compare_methods({"a": la, "c": lc}, {"a": a, "c": c})
    with pytest.raises(ValueError, match="at least 2 methods"):
        compare_methods({"a": la}, {"a": a})
    with pytest.raises(ValueError, match="non-finite"):
        from_mc_dropout(np.full((200, 6, 1), np.nan), np.zeros((6, 1)), tau=1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_samples": 0}, "num_samples must be an integer >= 1"),
    ({"hmc_max_train": 1}, "hmc_max_train must be an integer >= 2"),
    ({"epochs_multiplier": -1.0}, "epochs_multiplier must be a finite number > 0"),
    ({"hmc_target_accept_prob": 1.0}, "hmc_target_accept_prob must be in"),
    ({"hmc": "yes"}, "hmc must be True or False"),
    ({"prior_length_scale": 0.0}, "prior_length_scale must be a finite number > 0"),
    ({"prior_length_scale": 1.0, "hmc_prior_length_scale": 2.0}, "exclude each other"),
    ({"split": -1}, "split must be an integer >= 0"),
    ({"dataset": 3}, "dataset must be 'toy1d' or a UCI name"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiagnoseSettings(**kwargs)


def test_bad_run_arguments():
    with pytest.raises(ValueError, match="settings must be a DiagnoseSettings"):
        run({"num_samples": 10})


def test_too_few_draws_and_hmc_subset_are_surfaced():
    # (with hmc_warmup=20 one chain sticks and PSIS-LOO of HMC is undefined: 30 mixes)
    settings = DiagnoseSettings(**dict(TINY, num_samples=50, hmc_max_train=40, hmc_warmup=30,
                                       hmc_samples=50))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = run(settings)
    finally:
        torch.set_num_threads(n)
    messages = [str(w.message) for w in caught if issubclass(w.category, DiagnoseWarning)]
    assert any("mc_dropout: PSIS-LOO skipped, 50 draws < min_loo_draws=100" in m
               for m in messages)
    assert any("hmc left out of az.compare" in m for m in messages)
    values = _values(r.records)
    value, note = values[("mc_dropout", "elpd_loo")]
    assert math.isnan(value) and note == "n/a (too few draws: 50 < 100)"
    assert math.isfinite(values[("hmc", "elpd_loo")][0])
    assert values[("hmc", "rank")][1] == "n/a (HMC conditioned on 40 of 200 training rows)"
    assert values[("hmc", "num_train")][0] == 40
    assert r.comparison is None  # only the GP is left: nothing to compare
    assert values[("gp_arccos1", "rank")][1] == "n/a (fewer than two methods with LOO)"
    assert r.methods["hmc"].idata_train.observed_data["y"].shape == (40,)


def test_shared_prior_is_used_by_every_method():
    """``prior_length_scale``: MC dropout's final network, the GP's fixed hyper-parameters and HMC
    use one l_eff (here 0.5). Exact relations (float64 arithmetic, rel 1e-12): l_eff = l p s_y /
    sqrt 2 for the retrained network; GP outputscale K / l_eff^2 = 200, weight variance
    Q / l_eff^2 = 4 and noise 1 / tau_s with HMC's tau_s."""
    settings = DiagnoseSettings(**dict(TINY, prior_length_scale=0.5, hmc_warmup=20,
                                       hmc_samples=20, min_loo_draws=40))
    r = _run_quietly(settings)
    assert list(r.methods) == ["mc_dropout", "standard_dropout", "gp_arccos1_prior", "hmc"]
    mc = r.methods["mc_dropout"].info
    assert mc["effective_length_scale"] == pytest.approx(0.5, rel=1e-12)
    assert mc["prior_length_scale_keras"] == pytest.approx(
        math.sqrt(2) * 0.5 / (mc["keep_prob"] * r.data.y_std), rel=1e-12)
    assert r.settings["hmc_prior_length_scale_used"] == pytest.approx(0.5, rel=1e-12)
    hp = r.methods["gp_arccos1_prior"].info
    assert hp["hp_outputscale"] == pytest.approx(50 / 0.5**2, rel=1e-12)
    assert hp["hp_weight_variance"] == pytest.approx(1 / 0.5**2, rel=1e-12)
    assert hp["hp_noise"] == pytest.approx(1 / r.settings["hmc_tau_standardized"], rel=1e-12)
    assert r.settings["hmc_tau_standardized"] == pytest.approx(mc["tau"] * r.data.y_std**2,
                                                               rel=1e-12)
    values = _values(r.records)
    assert values[("hmc", "prior_length_scale")][0] == pytest.approx(0.5, rel=1e-12)
    assert math.isfinite(values[("gp_arccos1_prior", "tv_vs_hmc")][0])
    assert {rec["method"] for rec in r.records} == set(r.methods)


def test_registered_methods_join_the_diagnosis():
    """diagnose reads the registry: a built-in protocol (mfvi) and a method of your own
    (examples/swag_method.py) get the test metrics through their split predictive, and no LOO
    (no posterior draws), named as such; the report lists them."""
    from comparisons.protocols.registry import load_method_file
    from comparisons.report.diagnose import diagnose_markdown
    from tests.common import REPO

    load_method_file(str(REPO / "examples" / "swag_method.py"))
    settings = DiagnoseSettings(**dict(TINY, hmc=False, methods=("mfvi", "swag")))
    result = _run_quietly(settings)
    values = _values(result.records)
    for method in ("mfvi", "swag"):
        assert result.methods[method].idata_train is None
        for metric in ("test_ll", "rmse", "coverage_95", "mean_pred_sd"):
            value, note = values[(method, metric)]
            assert np.isfinite(value) and note == "", (method, metric)
        value, note = values[(method, "elpd_loo")]
        assert np.isnan(value) and note == "n/a (no posterior)"
    table = diagnose_markdown(result.records)
    assert "| mfvi |" in table and "| swag |" in table
    with pytest.raises(ValueError, match=r"^methods: 'nope' is not a registered method with a "
                                         r"split predictive \(a method of your own needs its "
                                         r"--method-file\); the registered .* are .*mfvi"):
        DiagnoseSettings(methods=("nope",))
    with pytest.raises(ValueError, match="^methods: 'mc_dropout' is one of the four methods "
                                         "diagnose always fits"):
        DiagnoseSettings(methods=("mc_dropout",))  # one of the four, not a registered extra
    with pytest.raises(ValueError, match="^methods: 'mfvi' is given twice"):
        DiagnoseSettings(methods=("mfvi", "mfvi"))
