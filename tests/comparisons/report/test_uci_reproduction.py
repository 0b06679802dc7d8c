"""A run of the UCI protocol against an earlier run, split by split
(:mod:`comparisons.report.uci_reproduction`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from comparisons.report.uci_reproduction import (
    REPRODUCTION_COLUMNS,
    reproduction_markdown,
    reproduction_table,
    unmatched_runs,
)


def _records(values, dataset="yacht", metric="test_ll", epochs_multiplier=100.0, times=None,
             splits=None):
    splits = range(len(values)) if splits is None else splits
    return [{"dataset": dataset, "method": "mc_dropout", "split": k, "metric": metric,
             "value": v, "epochs_multiplier": epochs_multiplier, "num_samples": 10000,
             **({} if times is None else {"wall_time_s": times[i]})}
            for i, (k, v) in enumerate(zip(splits, values))]


def test_paired_difference_and_its_units_of_the_earlier_se():
    old = np.array([-1.0, -1.4, -0.9, -1.2])
    new = old + np.array([0.02, -0.01, 0.03, 0.00])
    t = reproduction_table(_records(new, times=[2.0] * 4), _records(old, times=[1.0] * 4))
    assert list(t.columns) == list(REPRODUCTION_COLUMNS)
    r = t.iloc[0]
    d = new - old
    se_old = old.std(ddof=1) / 2
    assert int(r["n_splits"]) == 4
    assert r["mean"] == pytest.approx(new.mean()) and r["earlier_mean"] == pytest.approx(old.mean())
    assert r["earlier_se"] == pytest.approx(se_old)
    assert r["difference"] == pytest.approx(d.mean())
    assert r["difference_se"] == pytest.approx(d.std(ddof=1) / 2)
    assert r["difference_in_earlier_se"] == pytest.approx(d.mean() / se_old)
    assert bool(r["within_one_se"])
    assert (r["cell_time_s"], r["earlier_cell_time_s"], r["time_ratio"]) == (2.0, 1.0, 2.0)


def test_a_shift_beyond_one_se_is_not_within():
    old = np.array([-1.0, -1.1, -0.9])  # SE 0.0577
    t = reproduction_table(_records(old + 0.1), _records(old))
    assert not bool(t.iloc[0]["within_one_se"])
    assert t.iloc[0]["difference_in_earlier_se"] == pytest.approx(0.1 / (0.1 / math.sqrt(3)))


def test_only_shared_splits_are_compared():
    """A run cut off half way is compared on the splits it finished, both means over them."""
    old = _records([-1.0, -2.0, -3.0, -4.0])
    new = _records([-1.5, -3.5], splits=[1, 3])
    r = reproduction_table(new, old).iloc[0]
    assert int(r["n_splits"]) == 2
    assert r["earlier_mean"] == pytest.approx(-3.0)  # splits 1 and 3 of the earlier run
    assert r["difference"] == pytest.approx(0.5)


def test_other_settings_and_data_sets_are_not_paired():
    old = _records([-1.0, -2.0], epochs_multiplier=10.0) + _records([-1.0, -2.0], dataset="wine")
    new = _records([-1.0, -2.0], epochs_multiplier=100.0) + _records([-1.5, -2.5], dataset="wine")
    t = reproduction_table(new, old)
    assert t["dataset"].tolist() == ["wine"]
    with pytest.raises(ValueError, match="share no cell"):
        reproduction_table(_records([-1.0], epochs_multiplier=100.0),
                           _records([-1.0], epochs_multiplier=10.0))


def test_several_records_of_one_cell_are_refused():
    twice = _records([-1.0, -2.0]) + _records([-1.5], splits=[0])
    with pytest.raises(ValueError, match="several records of one cell"):
        reproduction_table(twice, _records([-1.0, -2.0]))
    with pytest.raises(ValueError, match="earlier records lack"):
        reproduction_table(_records([-1.0]), [{"dataset": "yacht", "split": 0}])


def test_identical_runs_and_the_markdown():
    old = _records([1.0, 1.2], metric="rmse") + _records([-1.0, -1.5])
    t = reproduction_table(old, old)
    assert t["difference"].tolist() == [0.0, 0.0]
    assert t["within_one_se"].all() and (t["difference_in_earlier_se"] == 0).all()
    assert t["metric"].tolist() == ["rmse", "test_ll"]
    text = reproduction_markdown(t)
    assert text.startswith("## Against the earlier run") and text.endswith("\n")
    assert "| yacht | mc_dropout x100 | test_ll | 2 | -1.25 ± 0.25 | -1.25 ± 0.25 | 0 ± 0 | 0.00 | " \
           "yes | – |" in text
    shifted = reproduction_markdown(reproduction_table(_records([-3.0, -3.5]),
                                                       _records([-1.0, -1.5])))
    assert "| **no** |" in shifted


def test_a_method_without_an_epochs_multiplier_is_compared_not_dropped():
    """Baselines (deep ensembles, GPs) record no epochs multiplier: matched on its absence."""
    old = _records([-1.0, -2.0], epochs_multiplier=float("nan"))
    new = _records([-1.1, -2.1], epochs_multiplier=float("nan"))
    t = reproduction_table(new, old)
    assert len(t) == 1 and np.isnan(t.iloc[0]["epochs_multiplier"])
    assert t.iloc[0]["difference"] == pytest.approx(-0.1)
    assert "| yacht | mc_dropout | test_ll | 2 |" in reproduction_markdown(t)
    with pytest.raises(ValueError, match="share no cell"):  # absent is not x100
        reproduction_table(new, _records([-1.0, -2.0]))


def test_runs_without_a_shared_cell_are_named_as_not_compared():
    old = _records([-1.0, -2.0])
    new = old + [{**r, "method": "mfvi", "epochs_multiplier": float("nan")} for r in old]
    assert unmatched_runs(new, old) == ["yacht mfvi"]
    assert unmatched_runs(old, old) == []
    text = reproduction_markdown(reproduction_table(new, old), unmatched_runs(new, old))
    assert text.rstrip().endswith("Not in the earlier run (not compared): yacht mfvi.")
    with pytest.raises(ValueError, match=r"yacht/mc_dropout/none/10000.0"):
        reproduction_table(_records([-1.0], epochs_multiplier=float("nan")),
                           _records([-1.0], dataset="wine"))


def test_one_shared_split_leaves_the_verdict_open():
    """One shared split has no SE: "within one SE" cannot be told, so it is neither yes nor a
    bold no (a run that finished one split is not a failed reproduction), also for equal values."""
    old = _records([-1.0, -2.0, -3.0])
    for new in (_records([-1.5], splits=[1]), _records([-2.0], splits=[1])):
        t = reproduction_table(new, old)
        r = t.iloc[0]
        assert int(r["n_splits"]) == 1 and np.isnan(r["earlier_se"])
        assert np.isnan(r["difference_in_earlier_se"]) and r["within_one_se"] is pd.NA
        row = [line for line in reproduction_markdown(t).splitlines()
               if line.startswith("| yacht")][0]
        assert row.endswith("| – | – | – |") and "**no**" not in row


def test_a_difference_over_an_earlier_se_of_zero_is_infinitely_many_ses():
    t = reproduction_table(_records([1.5, 1.5]), _records([1.0, 1.0]))
    assert t.iloc[0]["difference_in_earlier_se"] == np.inf
    assert not t.iloc[0]["within_one_se"]
    assert "| inf | **no** |" in reproduction_markdown(t)


@pytest.mark.parametrize("column, value, expected", [
    ("split", "x", "split that is not a number: 'x'"),
    ("split", 1.5, "split that is not a whole number"),  # not cut to split 1 and paired with it
    ("num_samples", "many", "num_samples that is not a number: 'many'"),
    ("wall_time_s", "fast", "wall_time_s that is not a number: 'fast'"),
])
def test_a_value_that_is_not_a_number_is_named_with_its_file(column, value, expected):
    old = _records([-1.0, -2.0, -3.0], times=[1.0, 1.0, 1.0])
    bad = [dict(r, source_file="old/records.csv") for r in old]
    bad[2][column] = value
    with pytest.raises(ValueError, match=f"earlier records of old/records.csv have a {expected}"):
        reproduction_table(old, bad)
