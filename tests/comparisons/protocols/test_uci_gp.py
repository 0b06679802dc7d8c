"""Exact GPs as UCI cells (:mod:`comparisons.protocols.uci_gp`): the cell fits exactly as
:func:`comparisons.gp.fit.fit_gp` on the standardised split, default methods, the size guard and
the config checks; :func:`predictive_metrics` against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from comparisons.datasets.uci import load_uci, standardize
from comparisons.gp.fit import fit_gp
from comparisons.protocols.uci_gp import (
    GPUCISettings,
    gp_uci_cells,
    predictive_metrics,
    run_gp_uci_cell,
)
from comparisons.runner.store import validate_records

pytestmark = pytest.mark.usefixtures("one_thread")


def _value(records, method, metric):
    vals = [r["value"] for r in records if r["method"] == method and r["metric"] == metric]
    assert len(vals) == 1, (method, metric, vals)
    return vals[0]


def test_cell_equals_a_direct_fit():
    # the GP-only cell fits gp_se exactly as fit_gp on the standardised split (seed = split)
    cell = gp_uci_cells(["yacht"], "0", GPUCISettings(gp_iterations=5, methods=("gp_se",)))[0]
    records = validate_records(run_gp_uci_cell(cell))
    assert {r["method"] for r in records} == {"gp_se"}
    assert {r["metric"] for r in records} == {"rmse", "test_ll", "coverage_95", "wall_time_s"}
    raw = load_uci("yacht", 0)
    std = standardize(raw)
    fit = fit_gp("gp_se", std.x_train, std.y_train, iterations=5, max_fit_size=3000, seed=0)
    m, v = fit.predict(std.x_test)
    ref = predictive_metrics(std.y_mean + std.y_std * m, std.y_std**2 * v, raw.y_test[:, 0], 0.0)
    for metric in ("rmse", "test_ll", "coverage_95"):
        assert _value(records, "gp_se", metric) == ref[metric], metric
    assert all(r["split"] == 0 and r["dataset"] == "yacht" for r in records)
    assert all(r["fit_subset_size"] == raw.x_train.shape[0] for r in records)


def test_cell_default_methods_and_errors():
    cells = gp_uci_cells(["yacht"], "1", GPUCISettings(gp_iterations=2))
    records = pd.DataFrame(run_gp_uci_cell(cells[0]))
    assert set(records["method"]) == {"gp_arccos1", "gp_se"}
    assert records["value"].notna().all() and (records["split"] == 1).all()
    too_small = gp_uci_cells(["yacht"], "0", GPUCISettings(gp_iterations=2, max_train_size=100))[0]
    with pytest.raises(ValueError, match=r"N=277 training rows > max_train_size=100"):
        run_gp_uci_cell(too_small)
    with pytest.raises(ValueError, match="methods must be a non-empty subset"):
        GPUCISettings(methods=("gp_arccos1_prior",))
    with pytest.raises(ValueError, match="gp_optimizer must be one of"):
        GPUCISettings(gp_optimizer="sgd")
    with pytest.raises(ValueError, match="max_fit_size"):
        GPUCISettings(max_fit_size=0)


def test_cells_per_split_with_the_method_gp():
    cells = gp_uci_cells(["boston"], "0-2", GPUCISettings())
    assert [c.split for c in cells] == [0, 1, 2]
    assert {c.method for c in cells} == {"gp"} and {c.dataset for c in cells} == {"bostonHousing"}


def test_predictive_metrics_by_hand():
    mean, var, y = np.array([0.0, 1.0]), np.array([1.0, 4.0]), np.array([1.0, 1.0])
    m = predictive_metrics(mean, var, y, 2.5)
    assert m["rmse"] == pytest.approx(math.sqrt(0.5))
    ll = [-0.5 * math.log(2 * math.pi) - 0.5, -0.5 * math.log(2 * math.pi * 4.0)]
    assert m["test_ll"] == pytest.approx(np.mean(ll))
    assert m["coverage_95"] == 1.0 and m["mean_pred_sd"] == pytest.approx(1.5)
    assert m["wall_time_s"] == 2.5
