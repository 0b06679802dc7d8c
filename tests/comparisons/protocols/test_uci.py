from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.cli.main import main
from comparisons.datasets.uci import load_uci
from comparisons.protocols.uci import (
    MCDropoutUCISettings,
    fit_mc_dropout,
    fit_mc_dropout_under_prior,
    parse_splits,
    protocol_seed,
    run_uci_cell,
    select_and_retrain,
    uci_cells,
)
from comparisons.runner.executors import Cell

TINY = dict(epochs_multiplier=0.05, num_samples=20, max_grid=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_parse_splits():
    assert parse_splits("0-2,5", 20) == [0, 1, 2, 5]
    assert parse_splits("all", 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"out of range.*0\.\.4"):
        parse_splits("0-19", 5)
    with pytest.raises(ValueError, match="splits must look like"):
        parse_splits("zero", 20)


def test_bad_dataset_and_protocol():
    with pytest.raises(ValueError, match="yacht"):
        uci_cells(["yaht"], "0", MCDropoutUCISettings())
    with pytest.raises(ValueError, match="num_samples"):
        MCDropoutUCISettings(num_samples=0)


def test_cell_records_are_tidy_and_finite():
    cell = uci_cells(["yacht"], "0", MCDropoutUCISettings(epochs_multiplier=0.05, num_samples=20,
                                                 max_grid=2))[0]
    records = pd.DataFrame(run_uci_cell(cell))
    assert set(records["metric"]) >= {"rmse", "rmse_standard", "test_ll", "best_tau",
                                      "best_dropout_rate", "wall_time_s"}
    assert (records["epochs_multiplier"] == 0.05).all()
    assert records["value"].notna().all()
    assert (records.set_index("metric").loc["rmse", "value"]) > 0


def test_cli_end_to_end_and_resume(tmp_path, capsys):
    args = ["uci", "--dataset", "yacht", "--splits", "0-1", "--epochs-multiplier", "0.05",
            "--num-samples", "20", "--max-grid", "2", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    first = pd.read_csv(tmp_path / "records.csv")
    assert sorted(first["split"].unique()) == [0, 1]
    # one row in the metric table, one in the hyper-parameter table
    assert (tmp_path / "report.md").read_text().count("| yacht | mc_dropout |") == 2
    assert not (tmp_path / "summary.md").exists()
    assert (tmp_path / "test_ll_per_split.png").stat().st_size > 0
    assert main(args) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    second = pd.read_csv(tmp_path / "records.csv")
    assert len(second) == len(first)  # no duplicated rows after a re-run


def test_diverged_grid_point_is_named_stopped_and_the_rest_kept(monkeypatch):
    """A grid point with a NaN loss is stopped, named in a warning, counted in the records."""
    import comparisons.protocols.uci as up

    original = up.train_batched

    def exploding(x, y, keep_prob, reg, seeds, **kwargs):
        if len(seeds) > 1:  # the grid search: make the first network blow up
            kwargs["lr"] = [1e10] + [1e-3] * (len(seeds) - 1)
        return original(x, y, keep_prob, reg, seeds, **kwargs)

    monkeypatch.setattr(up, "train_batched", exploding)
    protocol = MCDropoutUCISettings(epochs_multiplier=0.5, num_samples=20, max_grid=2)
    (cell,) = uci_cells(["yacht"], "0", protocol)
    with pytest.warns(RuntimeWarning, match=r"yacht split 0: training diverged .* dropout rate "
                                            r"0.005 / tau"):
        records = pd.DataFrame(run_uci_cell(cell))
    value = records.set_index("metric")["value"]
    assert value["diverged_grid_points"] == 1.0
    assert value["best_dropout_rate"] == 0.005 and torch.isfinite(torch.tensor(value["test_ll"]))


def test_protocol_seed_arithmetic():
    assert protocol_seed(MCDropoutUCISettings(), 0) == 0
    assert protocol_seed(MCDropoutUCISettings(seed=2), 3) == 2 * 1_000_003 + 3_000


def test_fit_mc_dropout_equals_run_uci_cell():
    # both go through select_and_retrain with the same seeds: identical numbers
    raw = load_uci("yacht", 1)
    fit = fit_mc_dropout(raw, MCDropoutUCISettings(**TINY))
    ref = {r["metric"]: r["value"] for r in
           run_uci_cell(Cell("yacht", 1, "mc_dropout", asdict(MCDropoutUCISettings(**TINY))))}
    assert float(fit.summary.rmse) == ref["rmse"]
    assert float(fit.summary.rmse_standard) == ref["rmse_standard"]
    assert float(fit.summary.mean_log_likelihood) == ref["test_ll"]
    assert (fit.dropout_rate, fit.tau) == (ref["best_dropout_rate"], ref["best_tau"])
    assert fit.validation_ll == ref["validation_ll"]
    assert fit.diverged_grid_points == ref["diverged_grid_points"] == 0
    # the moment-matched predictive is the regression summary's, with the noise 1/tau in it
    np.testing.assert_allclose(fit.mean, fit.summary.mean[:, 0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(fit.var, fit.summary.variance[:, 0].numpy(), rtol=1e-12)
    assert (fit.var >= 1.0 / fit.tau - 1e-12).all()
    assert fit.mean.shape == (raw.x_test.shape[0],) and fit.keep_prob == 1 - fit.dropout_rate
    # standard dropout's prediction is the one the summary's rmse_standard was computed from
    assert fit.standard_mean.shape == fit.mean.shape and fit.standard_mean.dtype == np.float64
    rmse_standard = np.sqrt(np.mean((fit.standard_mean - raw.y_test.reshape(-1)) ** 2))
    np.testing.assert_allclose(rmse_standard, float(fit.summary.rmse_standard), rtol=1e-10)


def test_fit_under_prior_selects_at_keep_prob_one_and_retrains_with_the_exact_l():
    # l_eff = l p s_y / sqrt 2: the grid runs at l = sqrt 2 l_eff / s_y; the selected grid point
    # is retrained with l = sqrt 2 l_eff / (p s_y) and keeps the grid's (dropout rate, tau)
    raw = load_uci("yacht", 1)
    y_std = float(np.std(raw.y_train))
    fit, protocol = fit_mc_dropout_under_prior(raw, 0.7, y_std, **TINY)
    grid = fit_mc_dropout(raw, MCDropoutUCISettings(**TINY, prior_length_scale=np.sqrt(2) * 0.7 / y_std))
    assert (fit.dropout_rate, fit.tau) == (grid.dropout_rate, grid.tau)
    assert protocol.prior_length_scale == pytest.approx(
        np.sqrt(2) * 0.7 / (grid.keep_prob * y_std), rel=1e-15)
    assert protocol.epochs_multiplier == TINY["epochs_multiplier"]
    if grid.keep_prob < 1:  # another weight decay: another network
        assert not np.array_equal(fit.mean, grid.mean)


def test_select_and_retrain_returns_the_final_network_and_its_seeds():
    raw = load_uci("yacht", 2)
    sel = select_and_retrain(raw, MCDropoutUCISettings(**TINY))
    assert sel.seed0 == protocol_seed(MCDropoutUCISettings(**TINY), 2) and sel.test_seed == sel.seed0 + 501
    assert sel.keep_prob == 1 - sel.best_pair[0]
    assert int(sel.final.diverged_epoch[0]) < 0 and sel.diverged == []
    assert sel.standardized.x_train.shape == raw.x_train.shape


def _by_metric(records):
    return {r["metric"]: r["value"] for r in records}


def test_splits_in_a_group_get_the_numbers_they_get_alone():
    """A CellGroup trains every split's grid in one batched call and every final network in
    another; over a short fit each split's records equal its single-cell records (the weights
    and MC samples bit for bit; rmse_standard within float32 history effects, see
    tests/test_frozen_records.py). Over thousands of epochs the batched rounding makes them
    drift apart, which is why grouping is opt-in (mc_dropout_group_key)."""
    from comparisons.protocols.uci import mc_dropout_group_key, select_and_retrain_splits
    from comparisons.runner.executors import CellGroup

    cells = uci_cells(["yacht"], "0-2", MCDropoutUCISettings(**TINY))
    grouped = run_uci_cell(CellGroup(tuple(cells)))
    for cell, records in zip(cells, grouped):
        alone = _by_metric(run_uci_cell(cell))
        got = _by_metric(records)
        assert got["group_size"] == 3 and alone["group_size"] == 1
        for metric, value in alone.items():
            if metric in ("wall_time_s", "group_size"):
                continue
            if metric == "rmse_standard":
                assert got[metric] == pytest.approx(value, rel=1e-9)
            else:
                assert got[metric] == value, metric
    raws = [load_uci("yacht", s) for s in (0, 1)]
    sels = select_and_retrain_splits(raws, MCDropoutUCISettings(**TINY))
    for raw, sel in zip(raws, sels):
        single = select_and_retrain(raw, MCDropoutUCISettings(**TINY))
        assert all(torch.equal(a, b) for a, b in zip(single.final.weights, sel.final.weights))
    four = uci_cells(["yacht"], "3-6", MCDropoutUCISettings(**TINY))
    keys = [mc_dropout_group_key(c, 5) for c in four]
    assert keys[0] == keys[1] != keys[2] == keys[3]  # chunks of 5 consecutive splits
    assert [mc_dropout_group_key(c, 1) for c in four] == [None] * 4  # the default: alone
    with pytest.raises(ValueError, match="one data set"):
        select_and_retrain_splits([load_uci("yacht", 0), load_uci("bostonHousing", 0)],
                                  MCDropoutUCISettings(**TINY))


def test_a_split_whose_grid_diverges_fails_alone_in_its_group(monkeypatch):
    """Every grid network of split 1 (networks 2-3 of the first batched call) sees targets
    scaled by 1e30: its cell fails, named; splits 0 and 2 keep their numbers."""
    from comparisons.protocols import uci as protocol
    from comparisons.runner.executors import CellError, CellGroup

    real, calls = protocol.train_batched, []

    def corrupt(x, y, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            y = y.clone()
            y[2:4] *= 1e30  # finite in float32, its square is not
        return real(x, y, *args, **kwargs)

    cells = uci_cells(["yacht"], "0-2", MCDropoutUCISettings(**TINY))
    alone = _by_metric(run_uci_cell(cells[2]))
    monkeypatch.setattr(protocol, "train_batched", corrupt)
    out = run_uci_cell(CellGroup(tuple(cells)))
    assert isinstance(out[1], CellError)
    assert "yacht split 1: every grid point diverged" in out[1].error
    assert _by_metric(out[2])["test_ll"] == alone["test_ll"]
    assert isinstance(out[0], list)
