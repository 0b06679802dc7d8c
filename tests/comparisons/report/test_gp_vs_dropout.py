"""The report of one MC dropout vs GPs comparison (:mod:`comparisons.report.gp_vs_dropout`):
the Markdown tables, the toy figure (one colour and label per method) and the files, written
atomically."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt  # tests/conftest.py selects the Agg backend
import pandas as pd
import pytest
import torch

from comparisons.experiments.gp_vs_dropout import GPvsDropoutSettings, run
from comparisons.report.gp_vs_dropout import (
    plot_toy1d_comparison,
    records_markdown,
    report_markdown,
    write_report,
)
from comparisons.report.styles import METHOD_STYLES


@pytest.fixture(scope="module")
def toy_result():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    result = run(GPvsDropoutSettings("toy1d", toy_num_train=40, epochs_multiplier=0.01,
                                     num_samples=50, gp_iterations=3, max_grid=1))
    torch.set_num_threads(n)
    return result


def test_markdown_tables(toy_result):
    text = records_markdown(toy_result.records)
    lines = text.splitlines()
    assert lines[0] == "| method | rmse | test_ll | coverage_95 | mean_pred_sd | wall_time_s |"
    assert sum(line.startswith("| gp_se |") for line in lines) == 3  # perf, distances, regions
    assert "kl[extrapolation]" in text and "| smd | var_ratio | kl | w2 | tv |" in text


def test_markdown_without_gps_and_missing_values():
    recs = [{"dataset": "d", "method": "mc_dropout", "split": 0, "metric": "rmse",
             "value": 0.25}]
    assert records_markdown(recs).splitlines() == [
        "| method | rmse | test_ll | coverage_95 | mean_pred_sd | wall_time_s |",
        "|---|---|---|---|---|---|", "| mc_dropout | 0.250 | – | – | – | – |"]


def test_report_markdown_states_the_settings(toy_result):
    text = report_markdown(toy_result)
    assert text.startswith("# MC dropout vs exact GPs: toy1d, split 0\n")
    assert "N_train = 40" in text and "epochs x0.01, T = 50, max grid 1" in text
    assert "GPs: lbfgs, up to 3 iterations, float64 Cholesky; 1 torch thread(s)" in text
    assert text.splitlines()[-1].startswith("total wall time ")


def test_plot(toy_result):
    fig, ax = plt.subplots()
    out = plot_toy1d_comparison(toy_result, ax, "gp_arccos1")
    assert out is ax
    colors = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert colors["MC dropout mean ± 2 sd"] == METHOD_STYLES["mc_dropout"].color
    assert colors["GP arc-cosine (fitted) mean ± 2 sd"] == METHOD_STYLES["gp_arccos1"].color
    assert len(ax.collections) >= 3  # two bands and the data
    with pytest.raises(ValueError, match="gp_method must be one of"):
        plot_toy1d_comparison(toy_result, ax, "gp-none")
    with pytest.raises(ValueError, match="toy1d result"):
        plot_toy1d_comparison(type("R", (), {"dataset": "yacht"})(), ax)
    plt.close(fig)


def test_write_report_files(toy_result, tmp_path):
    out = tmp_path / "new" / "toy"
    paths = write_report(toy_result, out)
    assert list(paths) == ["report", "records_csv", "records_json", "figure"]
    assert [p.name for p in paths.values()] == ["report.md", "records.csv", "records.json",
                                                "toy1d.png"]
    assert paths["report"].read_text() == report_markdown(toy_result) + "\n"
    csv = pd.read_csv(paths["records_csv"])
    assert len(csv) == len(toy_result.records) == len(json.loads(paths["records_json"].read_text()))
    assert csv["value"].tolist() == [r["value"] for r in toy_result.records]
    png = paths["figure"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert sorted(p.name for p in out.iterdir()) == ["records.csv", "records.json", "report.md",
                                                      "toy1d.png"]  # no temporary files left
