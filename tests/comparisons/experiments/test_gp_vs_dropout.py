"""MC dropout vs exact GPs (:mod:`comparisons.experiments.gp_vs_dropout`): the settings are
checked, the dropout side equals the UCI protocol, the GP side equals the UCI GP cell, records are
tidy and consistent with the stored predictions, and nothing is written. Tiny settings (seconds)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from comparisons.datasets.uci import load_uci
from comparisons.experiments.gp_vs_dropout import (
    GP_METHODS,
    GPvsDropoutSettings,
    run,
)
from comparisons.gp.priors import dropout_prior_gp_hyperparameters
from comparisons.metrics.distances import summarize_predictive_distances
from comparisons.protocols.uci import MCDropoutUCISettings, run_uci_cell
from comparisons.protocols.uci_gp import GPUCISettings, gp_uci_cells, run_gp_uci_cell
from comparisons.runner.executors import Cell
from comparisons.runner.store import validate_records

TINY = dict(epochs_multiplier=0.05, num_samples=20, max_grid=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy_result():
    torch.set_num_threads(1)
    return run(GPvsDropoutSettings("toy1d", toy_num_train=40, epochs_multiplier=0.01,
                                   num_samples=50, gp_iterations=5, max_grid=2))


@pytest.fixture(scope="module")
def yacht_result():
    torch.set_num_threads(1)
    return run(GPvsDropoutSettings("yacht", 0, gp_iterations=5,
                                   methods=["gp_arccos1_prior", "gp_se"], **TINY))


def _value(records, method, metric):
    vals = [r["value"] for r in records if r["method"] == method and r["metric"] == metric]
    assert len(vals) == 1, (method, metric, vals)
    return vals[0]


def test_dropout_numbers_equal_the_uci_protocol(yacht_result):
    # same seeds, training and MC streams as run_uci_cell: identical numbers
    cell = Cell("yacht", 0, "mc_dropout", asdict(MCDropoutUCISettings(**TINY)))
    ref = {r["metric"]: r["value"] for r in run_uci_cell(cell)}
    for metric in ("rmse", "rmse_standard", "test_ll", "best_dropout_rate", "best_tau"):
        assert _value(yacht_result.records, "mc_dropout", metric) == ref[metric], metric


def test_gp_numbers_equal_the_uci_gp_cell(yacht_result):
    cell = gp_uci_cells(["yacht"], "0", GPUCISettings(gp_iterations=5, methods=("gp_se",)))[0]
    records = run_gp_uci_cell(cell)
    for metric in ("rmse", "test_ll", "coverage_95"):
        assert _value(records, "gp_se", metric) == pytest.approx(
            _value(yacht_result.records, "gp_se", metric), rel=1e-10)


def test_settings_are_checked_and_resolved():
    s = GPvsDropoutSettings("toy1d", random_features=False)
    assert s.methods == ("gp_arccos1_prior", "gp_arccos1", "gp_se")
    assert GPvsDropoutSettings(methods=["gp_se"]).methods == ("gp_se",)
    assert s.protocol == MCDropoutUCISettings(epochs_multiplier=10.0, num_samples=10_000)
    assert s.record_fields() == {"epochs_multiplier": 10.0, "num_samples": 10_000,
                                 "gp_iterations": 200, "gp_optimizer": "lbfgs"}
    with pytest.raises(ValueError, match="methods must be a subset"):
        GPvsDropoutSettings("toy1d", methods=["gp-nngp"])
    with pytest.raises(ValueError, match="gp_optimizer must be one of"):
        GPvsDropoutSettings("toy1d", gp_optimizer="newton")
    with pytest.raises(ValueError, match="unknown UCI data set 'yaht'"):
        GPvsDropoutSettings("yaht", **TINY)
    with pytest.raises(ValueError, match="num_samples"):
        GPvsDropoutSettings("toy1d", num_samples=0)
    with pytest.raises(ValueError, match="gp_iterations"):
        GPvsDropoutSettings("toy1d", gp_iterations=0)
    with pytest.raises(ValueError, match="dataset must be"):
        GPvsDropoutSettings(3)


def test_toy_records_are_tidy_and_consistent(toy_result):
    records = validate_records(toy_result.records)
    methods = {r["method"] for r in records}
    assert methods == {"mc_dropout", *GP_METHODS}
    for method in methods:
        for metric in ("rmse", "test_ll", "coverage_95", "mean_pred_sd", "wall_time_s"):
            assert math.isfinite(_value(records, method, metric))
        assert 0.0 <= _value(records, method, "coverage_95") <= 1.0
    assert all(r["epochs_multiplier"] == 0.01 and r["num_samples"] == 50 for r in records)
    # distances in the records are those of the stored predictions, overall and per region
    m_d, v_d = toy_result.predictions["mc_dropout"]
    for gp in GP_METHODS:
        m_g, v_g = toy_result.predictions[gp]
        d = summarize_predictive_distances(m_d, v_d, m_g, v_g, scale=toy_result.data.y_std)
        for k, v in d.items():
            assert _value(records, gp, k) == pytest.approx(v, rel=1e-12)
        mask = toy_result.data.region_mask("gap")
        dg = summarize_predictive_distances(m_d, v_d, m_g, v_g, mask=mask)
        assert _value(records, gp, "kl[gap]") == pytest.approx(dg["kl"], rel=1e-12)
        y = toy_result.data.source.y_test[:, 0]
        assert _value(records, gp, "rmse") == pytest.approx(np.sqrt(np.mean((y - m_g) ** 2)))
    # the prior GPs record the dropout prior they used
    drop = toy_result.dropout
    h = dropout_prior_gp_hyperparameters(1e-2, drop.keep_prob, drop.tau,
                                         toy_result.data.y_std, 1, 50)
    assert _value(records, "gp_arccos1_prior", "hp_outputscale") == pytest.approx(
        h["outputscale"], rel=1e-12)
    assert toy_result.wall_time_s > 0 and toy_result.num_threads == 1


def test_run_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(GPvsDropoutSettings("yacht", 3, gp_iterations=2, methods=["gp_arccos1_prior"],
                                     **TINY))
    assert list(tmp_path.iterdir()) == []
    assert result.dataset == "yacht" and result.split == 3
    assert result.dropout.mean.shape == (load_uci("yacht", 3).x_test.shape[0],)


def test_keyword_spelling_equals_settings(yacht_result):
    again = run(GPvsDropoutSettings("yacht", 0, gp_iterations=5, methods=["gp_arccos1_prior"],
                                    **TINY))
    for metric in ("rmse", "test_ll", "kl", "hp_outputscale"):
        assert _value(again.records, "gp_arccos1_prior", metric) == _value(
            yacht_result.records, "gp_arccos1_prior", metric), metric
