"""Learned-rate dropout on UCI (:mod:`comparisons.protocols.uci_concrete`): a split gives the same
numbers alone or in a group, a failed fit fails only its own cell (named), the metrics against a
direct computation, the config checks, and the ``uci`` command line with the new methods."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from comparisons.cli.main import main
from comparisons.datasets.uci import load_uci, standardize
from comparisons.protocols import uci_concrete
from comparisons.protocols.uci_concrete import (
    ConcreteUCISettings,
    concrete_group_key,
    concrete_uci_cells,
    run_concrete_uci_cells,
)
from comparisons.runner.executors import CellError, CellGroup
from comparisons.runner.store import validate_records
from vi_dropout.summaries import regression_summary

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(epochs_multiplier=0.1, num_samples=50, dtype="float64")


def _metrics(records):
    return {r["metric"]: r["value"] for r in records}


@pytest.mark.parametrize("method", ["concrete_dropout", "full_elbo"])
def test_a_split_gives_the_same_numbers_alone_or_in_a_group(method):
    # every network draws from its own generator: grouping must not change a split's numbers
    # (float64; the batched matmuls may round differently from one network's: 1e-9 relative)
    cells = concrete_uci_cells(["yacht"], "0-2", ConcreteUCISettings(**TINY), method)
    grouped = run_concrete_uci_cells(CellGroup(tuple(cells)))
    alone = run_concrete_uci_cells(cells[1])
    assert len(grouped) == 3 and all(isinstance(g, list) for g in grouped)
    validate_records(alone)
    a, g = _metrics(alone), _metrics(grouped[1])
    assert a["group_size"] == 1 and g["group_size"] == 3
    for k in ("rmse", "rmse_standard", "test_ll", "coverage_95", "learned_keep_prob_input",
              "learned_keep_prob_hidden", "learned_tau", "final_loss"):
        assert g[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
    assert ("learned_theta" in a) == (method == "full_elbo")
    assert {r["split"] for r in grouped[2]} == {2}


def test_metrics_against_a_direct_computation(monkeypatch):
    # the cell's test LL and RMSE equal regression_summary of the fit's own samples at the
    # learned tau mapped to the original scale (tau / y_std^2); keep_probs in (0, 1)
    fits = []
    real = uci_concrete.fit_concrete

    def keep(*args, **kwargs):
        fits.append(real(*args, **kwargs))
        return fits[-1]

    monkeypatch.setattr(uci_concrete, "fit_concrete", keep)
    config = ConcreteUCISettings(**TINY)
    cell = concrete_uci_cells(["yacht"], "0", config, "concrete_dropout")[0]
    got = _metrics(run_concrete_uci_cells(cell))
    fit = fits[0]
    raw = load_uci("yacht", 0)
    std = standardize(raw)
    seed = uci_concrete.protocol_seed(config, 0) + uci_concrete.SEED_OFFSET + 1
    samples = fit.objective.predict(torch.tensor(std.x_test), config.num_samples, network=0,
                                    generator=torch.Generator().manual_seed(seed))
    tau = float(fit.tau[0]) / float(std.y_std) ** 2
    summary = regression_summary(samples, torch.tensor(raw.y_test), tau, float(std.y_mean),
                                 float(std.y_std))
    assert got["test_ll"] == pytest.approx(float(summary.mean_log_likelihood), rel=1e-12)
    assert got["rmse"] == pytest.approx(float(summary.rmse), rel=1e-12)
    assert got["learned_tau"] == pytest.approx(tau, rel=1e-12)
    assert 0 < got["learned_keep_prob_input"] < 1 and 0 < got["learned_keep_prob_hidden"] < 1
    assert 0 <= got["coverage_95"] <= 1
    assert got["steps"] == math.ceil(raw.n_epochs * 0.1) * math.ceil(len(raw.y_train) / 128)


def test_a_failed_fit_fails_only_its_cell(monkeypatch):
    # a network whose parameter ran to a bound: its cell is a CellError naming the data set,
    # split, method and parameter; the other splits of the group keep their records
    real = uci_concrete.fit_concrete

    def failing(*args, **kwargs):
        fit = real(*args, **kwargs)
        return fit._replace(failures=(None, "tau left (1e-10, 1e10) at step 7: tau = nan"))

    monkeypatch.setattr(uci_concrete, "fit_concrete", failing)
    cells = concrete_uci_cells(["yacht"], "3-4", ConcreteUCISettings(**TINY), "full_elbo")
    out = run_concrete_uci_cells(CellGroup(tuple(cells)))
    assert isinstance(out[0], list) and {r["split"] for r in out[0]} == {3}
    assert isinstance(out[1], CellError)
    assert "yacht split 4 (full_elbo)" in out[1].error and "tau" in out[1].error


def test_group_key_and_mixed_groups_refused():
    config = ConcreteUCISettings(**TINY)
    a = concrete_uci_cells(["yacht"], "0", config, "concrete_dropout")[0]
    b = concrete_uci_cells(["yacht"], "0", config, "full_elbo")[0]
    assert concrete_group_key(a) != concrete_group_key(b)
    assert concrete_group_key(type(a)("yacht", 0, "mc_dropout", {})) is None
    with pytest.raises(ValueError, match="one data set, method and settings"):
        run_concrete_uci_cells(CellGroup((a, b)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(initial_keep_prob=1.0), "initial_keep_prob"),
    (dict(initial_keep_prob=0.0), "initial_keep_prob"),
    (dict(hyper_lr=0.0), "hyper_lr"),
    (dict(dtype="float16"), "dtype"),
])
def test_config_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConcreteUCISettings(**kwargs)


def test_cells_refuse_an_unknown_method():
    with pytest.raises(ValueError, match="concrete_dropout"):
        concrete_uci_cells(["yacht"], "0", ConcreteUCISettings(), "mc_dropout")


def test_uci_command_runs_and_resumes_the_learned_methods(tmp_path, capsys):
    out = tmp_path / "uci"
    argv = ["uci", "--dataset", "yacht", "--splits", "0-1", "--methods",
            "concrete_dropout,full_elbo", "--epochs-multiplier", "0.05", "--num-samples", "20",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = (out / "report.md").read_text()
    assert "learned_drop_rate_hidden" in text and "learned_theta" in text
    records = pd.read_csv(out / "records.csv")
    assert set(records["method"]) == {"concrete_dropout", "full_elbo"}
    assert sorted(records.groupby("method")["split"].nunique()) == [2, 2]
    assert len(list((out / "cells").rglob("*.json"))) == 4
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 done, 4 skipped" in capsys.readouterr().out


def test_uci_command_rejects_bad_learned_rate_options(tmp_path, capsys):
    # a bad value: at parse time; an unknown method id: when the run starts (the registry is
    # read after --method-file), one line naming the registered ones; nothing is written
    with pytest.raises(SystemExit) as exc:
        main(["uci", "--dataset", "yacht", "--out", str(tmp_path / "o"), "--temperature", "0"])
    assert exc.value.code == 2
    assert "--temperature" in capsys.readouterr().err
    assert main(["uci", "--dataset", "yacht", "--out", str(tmp_path / "o"),
                 "--methods", "concrete"]) == 2
    assert "concrete_dropout, full_elbo" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
