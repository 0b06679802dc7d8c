"""Mean-field Gaussian VI on UCI (:mod:`comparisons.protocols.uci_mfvi`): a split gives the same
numbers alone or in a group, a failed fit fails only its own cell (named), the metrics against a
direct computation, the group keys, the config checks, and ``uci --methods mfvi``."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from comparisons.cli.main import main
from comparisons.cli.uci import UCIGroupKey
from comparisons.datasets.uci import load_uci, standardize
from comparisons.protocols import uci_mfvi
from comparisons.protocols.uci_concrete import ConcreteUCISettings, concrete_uci_cells
from comparisons.protocols.uci_mfvi import (
    MFVIUCISettings,
    mfvi_group_key,
    mfvi_uci_cells,
    run_mfvi_uci_cells,
)
from comparisons.runner.executors import CellError, CellGroup
from comparisons.runner.store import validate_records
from vi_dropout.network import mlp_forward
from vi_dropout.summaries import regression_summary

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(epochs_multiplier=0.1, num_samples=50, dtype="float64")
METRICS = ("rmse", "rmse_standard", "test_ll", "coverage_95", "learned_tau", "final_loss",
           "steps")


def _metrics(records):
    return {r["metric"]: r["value"] for r in records}


def test_a_split_gives_the_same_numbers_alone_or_in_a_group():
    # every network draws from its own generator: grouping must not change a split's numbers
    # (float64; the batched matmuls may round differently from one network's: 1e-9 relative)
    cells = mfvi_uci_cells(["yacht"], "0-2", MFVIUCISettings(**TINY))
    grouped = run_mfvi_uci_cells(CellGroup(tuple(cells)))
    alone = run_mfvi_uci_cells(cells[1])
    assert len(grouped) == 3 and all(isinstance(g, list) for g in grouped)
    validate_records(alone)
    a, g = _metrics(alone), _metrics(grouped[1])
    assert set(a) == {*METRICS, "group_size", "wall_time_s"}
    assert a["group_size"] == 1 and g["group_size"] == 3
    for k in METRICS:
        assert g[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
    assert {r["split"] for r in grouped[2]} == {2}
    assert {r["method"] for r in alone} == {"mfvi"}


def test_metrics_against_a_direct_computation(monkeypatch):
    # the cell's test LL and RMSEs equal regression_summary of the fit's own samples (and of the
    # network at the means) at the learned tau mapped to the original scale (tau / y_std^2)
    fits = []
    real = uci_mfvi.fit_mean_field

    def keep(*args, **kwargs):
        fits.append(real(*args, **kwargs))
        return fits[-1]

    monkeypatch.setattr(uci_mfvi, "fit_mean_field", keep)
    config = MFVIUCISettings(**TINY)
    got = _metrics(run_mfvi_uci_cells(mfvi_uci_cells(["yacht"], "0", config)[0]))
    fit = fits[0]
    raw = load_uci("yacht", 0)
    std = standardize(raw)
    x = torch.tensor(std.x_test)
    seed = uci_mfvi.protocol_seed(config, 0) + uci_mfvi.SEED_OFFSET + 1
    samples = fit.objective.predict(x, config.num_samples, network=0,
                                    generator=torch.Generator().manual_seed(seed))
    means = mlp_forward(x, [w[0] for w in fit.weights], [b[0] for b in fit.biases])
    tau = float(fit.tau[0]) / float(std.y_std) ** 2
    summary = regression_summary(samples, torch.tensor(raw.y_test), tau, float(std.y_mean),
                                 float(std.y_std), means)
    assert got["test_ll"] == pytest.approx(float(summary.mean_log_likelihood), rel=1e-12)
    assert got["rmse"] == pytest.approx(float(summary.rmse), rel=1e-12)
    assert got["rmse_standard"] == pytest.approx(float(summary.rmse_standard), rel=1e-12)
    assert got["learned_tau"] == pytest.approx(tau, rel=1e-12)
    assert 0 <= got["coverage_95"] <= 1
    steps = math.ceil(raw.n_epochs * 0.1) * math.ceil(len(raw.y_train) / 128)
    assert got["steps"] == steps
    per_epoch = math.ceil(len(raw.y_train) / 128)
    final = float(fit.losses[-per_epoch:, 0].mean()) / len(raw.y_train)
    assert got["final_loss"] == pytest.approx(final, rel=1e-12)


def test_a_failed_fit_fails_only_its_cell(monkeypatch):
    # a network whose tau ran to a bound: its cell is a CellError naming the data set, split,
    # method and parameter; the other splits of the group keep their records; alone, it raises
    real = uci_mfvi.fit_mean_field

    def failing(*args, **kwargs):
        fit = real(*args, **kwargs)  # the last network of the fit fails
        return fit._replace(failures=(None,) * (len(fit.failures) - 1)
                            + ("tau left [1e-10, 1e10] at step 7: tau = nan",))

    monkeypatch.setattr(uci_mfvi, "fit_mean_field", failing)
    cells = mfvi_uci_cells(["yacht"], "3-4", MFVIUCISettings(**TINY))
    out = run_mfvi_uci_cells(CellGroup(tuple(cells)))
    assert isinstance(out[0], list) and {r["split"] for r in out[0]} == {3}
    assert isinstance(out[1], CellError)
    assert "yacht split 4 (mfvi)" in out[1].error and "tau" in out[1].error
    with pytest.raises(RuntimeError, match="yacht split 4"):  # alone: the cell raises
        run_mfvi_uci_cells(cells[1])


def test_group_keys_and_mixed_groups_refused():
    mf = mfvi_uci_cells(["yacht"], "0-1", MFVIUCISettings(**TINY))
    cd = concrete_uci_cells(["yacht"], "0", ConcreteUCISettings(**TINY), "concrete_dropout")[0]
    assert mfvi_group_key(mf[0]) == mfvi_group_key(mf[1]) is not None
    assert mfvi_group_key(cd) is None
    # the CLI's key covers both protocols, and tells them apart
    uci_group_key = UCIGroupKey()  # the key of the default command
    assert uci_group_key(mf[0]) == mfvi_group_key(mf[0])
    assert uci_group_key(cd) is not None and uci_group_key(cd) != uci_group_key(mf[0])
    assert uci_group_key(type(cd)("yacht", 0, "mc_dropout", {})) is None
    with pytest.raises(ValueError, match="one data set, method and settings"):
        run_mfvi_uci_cells(CellGroup((mf[0], cd)))
    other = mfvi_uci_cells(["yacht"], "1", MFVIUCISettings(**TINY, seed=3))[0]
    with pytest.raises(ValueError, match="got 2 kinds"):
        run_mfvi_uci_cells(CellGroup((mf[0], other)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(initial_sigma=0.0), "initial_sigma"),
    (dict(initial_tau=-1.0), "initial_tau"),
    (dict(lr=0.0), "lr"),
    (dict(hyper_lr=float("nan")), "hyper_lr"),
    (dict(prior_length_scale=0.0), "prior_length_scale"),
    (dict(batch_size=0), "batch_size"),
    (dict(num_samples=0), "num_samples"),
    (dict(epochs_multiplier=0.0), "epochs_multiplier"),
    (dict(dtype="float16"), "dtype"),
])
def test_config_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MFVIUCISettings(**kwargs)


def test_cells_refuse_an_unknown_method():
    with pytest.raises(ValueError, match="mfvi"):
        mfvi_uci_cells(["yacht"], "0", MFVIUCISettings(), "concrete_dropout")


def test_uci_command_runs_and_resumes_mfvi(tmp_path, capsys):
    out = tmp_path / "uci"
    argv = ["uci", "--dataset", "yacht", "--splits", "0-1", "--methods", "mfvi",
            "--epochs-multiplier", "0.05", "--num-samples", "20", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    text = (out / "report.md").read_text()
    assert "mfvi" in text and "learned_tau" in text
    records = pd.read_csv(out / "records.csv")
    assert set(records["method"]) == {"mfvi"} and records["split"].nunique() == 2
    assert set(records.loc[records["metric"] == "group_size", "value"]) == {2.0}
    assert len(list((out / "cells").rglob("*.json"))) == 2
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
