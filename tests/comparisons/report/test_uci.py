"""Mean ± standard error tables, the per-split plot and the UCI report files."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt  # tests/conftest.py selects the Agg backend
import numpy as np
import pandas as pd
import pytest

from comparisons.report.uci import (
    format_mean_se,
    plot_split_metric,
    summarize,
    summary_markdown,
    write_uci_report,
)

RMSE_YACHT = [1.0, 2.0, 4.0, 5.0]
LL_YACHT = [-1.5, -1.25, -1.75, -2.0]
RMSE_ENERGY = [0.5, 0.7, 0.6]


def _records():
    recs = []
    for k, (r, ll) in enumerate(zip(RMSE_YACHT, LL_YACHT)):
        recs.append({"dataset": "yacht", "method": "mc", "split": k, "metric": "rmse", "value": r})
        recs.append({"dataset": "yacht", "method": "mc", "split": k, "metric": "test_ll",
                     "value": ll})
    for k, r in enumerate(RMSE_ENERGY):
        recs.append({"dataset": "energy", "method": "mc", "split": k, "metric": "rmse",
                     "value": r})
        recs.append({"dataset": "energy", "method": "gp", "split": k, "metric": "rmse",
                     "value": 2 * r})
    return recs


def _hand_mean_se(values):
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var) / math.sqrt(n)


def test_mean_and_standard_error_by_hand():
    table = summarize(_records())
    assert list(table.columns) == ["dataset", "method", "metric", "mean", "se", "n_splits"]
    assert len(table) == 4
    row = table[(table.dataset == "yacht") & (table.metric == "rmse")].iloc[0]
    mean, se = _hand_mean_se(RMSE_YACHT)  # 3.0, sqrt(10/3)/2
    assert (row["mean"], row["n_splits"]) == (3.0, 4)
    assert row["se"] == pytest.approx(se) and se == pytest.approx(math.sqrt(10 / 3) / 2)
    gp = table[(table.dataset == "energy") & (table.method == "gp")].iloc[0]
    m, s = _hand_mean_se([2 * v for v in RMSE_ENERGY])
    assert (gp["mean"], gp["se"]) == (pytest.approx(m), pytest.approx(s))
    only_ll = summarize(pd.DataFrame(_records()), metrics=["test_ll"])
    assert only_ll["metric"].tolist() == ["test_ll"]
    assert only_ll["mean"].item() == pytest.approx(np.mean(LL_YACHT))


def test_single_split_and_duplicates():
    one = summarize([{"dataset": "d", "method": "m", "split": 0, "metric": "x", "value": 2.0}])
    assert math.isnan(one["se"].item())
    dup = [{"dataset": "d", "method": "m", "split": 0, "metric": "x", "value": v}
           for v in (1.0, 2.0)]
    with pytest.raises(ValueError, match="share"):
        summarize(dup)


def test_methods_are_their_ids_with_no_aliases():
    """Method ids only: another spelling is another method, never merged into an id."""
    old = [{"dataset": "d", "method": "gp-se", "split": 0, "metric": "x", "value": 1.0},
           {"dataset": "d", "method": "nuts", "split": 0, "metric": "x", "value": 2.0}]
    new = [{"dataset": "d", "method": "gp_se", "split": 1, "metric": "x", "value": 3.0}]
    table = summarize(old + new)
    assert list(table["method"]) == ["gp-se", "nuts", "gp_se"]
    assert table.set_index("method").loc["gp_se", "n_splits"] == 1
    # the same (method, split) twice is still refused
    with pytest.raises(ValueError, match="share"):
        summarize(new + new)


def test_markdown():
    md = summary_markdown(_records(), metrics=["rmse", "test_ll"])
    lines = md.splitlines()
    assert lines[0] == "| dataset | method | rmse | test_ll |"
    assert lines[1] == "|---|---|---|---|"
    m, s = _hand_mean_se(LL_YACHT)
    assert lines[2] == f"| yacht | mc | 3.00 ± {math.sqrt(10 / 3) / 2:.2f} | {m:.2f} ± {s:.2f} |"
    assert lines[2] == "| yacht | mc | 3.00 ± 0.91 | -1.62 ± 0.16 |"
    assert lines[3] == "| energy | mc | 0.600 ± 0.058 | – |"  # auto: 2 significant SE digits
    fixed = summary_markdown(_records(), metrics=["rmse", "test_ll"], decimals=2).splitlines()
    assert fixed[3] == "| energy | mc | 0.60 ± 0.06 | – |"
    assert lines[4] == "| energy | gp | 1.20 ± 0.12 | – |"
    assert format_mean_se(2.9712, 0.1893) == "2.97 ± 0.19"
    assert format_mean_se(1.0, float("nan"), 1) == "1.0 ± n/a"
    assert format_mean_se(0.00172, 0.000061, None) == "0.001720 ± 0.000061"
    assert format_mean_se(0.0031, float("nan"), None) == "0.0031 ± n/a"
    assert format_mean_se(-2.4, 0.19, None) == "-2.40 ± 0.19"
    # Beyond 6 decimals (a GP on naval: RMSE 1.6e-5): a shared exponent, two SE digits.
    assert format_mean_se(1.63e-05, 2.1e-07, None) == "(1.630 ± 0.021)e-05"
    assert format_mean_se(-1.63e-05, 2.1e-07, None) == "(-1.630 ± 0.021)e-05"
    assert "3.000 ±" in summary_markdown(_records(), decimals={"rmse": 3, "test_ll": 2})


def test_plot_split_metric_points():
    fig, ax = plt.subplots()
    try:
        out = plot_split_metric(_records(), "rmse", ax)
        assert out is ax
        counts = [len(c.get_offsets()) for c in ax.collections]
        assert counts == [4, 3, 3]  # one marker per split, one row per data set / method
        rows = [set(np.asarray(c.get_offsets())[:, 1]) for c in ax.collections]
        assert rows == [{0.0}, {1.0}, {2.0}]
        np.testing.assert_allclose(np.asarray(ax.collections[0].get_offsets())[:, 0], RMSE_YACHT)
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == ["yacht / mc", "energy / mc", "energy / gp"]
        assert ax.get_xlabel() == "rmse"
        with pytest.raises(ValueError, match="no records"):
            plot_split_metric(_records(), "nll", ax)
    finally:
        plt.close(fig)


def test_write_uci_report(tmp_path):
    out = tmp_path / "uci"
    paths = write_uci_report(_records(), out, title="UCI test", preamble=["(a note)", ""],
                             footer=["cells: 2 done"])
    assert [p.name for p in paths.values()] == ["report.md", "test_ll_per_split.png"]
    text = paths["report"].read_text()
    lines = text.splitlines()
    assert lines[:3] == ["# UCI test", "", "(a note)"]
    assert lines[4] == "| dataset | method | rmse | test_ll |"  # report metrics present only
    assert text.endswith("\n\ncells: 2 done\n")
    assert summary_markdown(_records(), metrics=["rmse", "test_ll"]) in text
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "test_ll_per_split.png"]


def test_write_uci_report_without_records(tmp_path):
    paths = write_uci_report([], tmp_path, title="empty", footer=["cells: 0 done"])
    assert list(paths) == ["report"]
    assert paths["report"].read_text() == "# empty\n\n\ncells: 0 done\n"


def test_report_shows_learned_drop_rates_next_to_the_grid_choice(tmp_path):
    # learned keep_probs become drop rates (1 - keep_prob) in the hyper-parameter table, beside
    # the grid's drop rate; a group wall time shared by its splits (SE at rounding level) reads
    # as a plain number
    from comparisons.report.uci import with_learned_drop_rates, write_uci_report

    recs = []
    for k in range(2):
        base = {"dataset": "yacht", "split": k}
        recs += [dict(base, method="mc_dropout", metric="best_dropout_rate", value=0.01),
                 dict(base, method="concrete_dropout", metric="learned_keep_prob_input",
                      value=0.99),
                 dict(base, method="concrete_dropout", metric="wall_time_s",
                      value=2.999841),
                 dict(base, method="concrete_dropout", metric="test_ll", value=-1.0 - k)]
    df = with_learned_drop_rates(pd.DataFrame(recs))
    rates = df[df.metric == "learned_drop_rate_input"]["value"]
    assert list(rates.round(12)) == [0.01, 0.01]
    text = write_uci_report(recs, tmp_path, title="t")["report"].read_text()
    assert "learned_drop_rate_input" in text and "best_dropout_rate" in text
    assert "3.00 ± 0.00" in text
