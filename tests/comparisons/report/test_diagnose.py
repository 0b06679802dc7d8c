"""``comparisons.report.diagnose``: the Markdown tables, the figures, NetCDF files and
``write_report`` of one tiny diagnose run (toy1d, the settings of
``tests/comparisons/experiments/test_diagnose.py``)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.experiments.diagnose import DIAGNOSE_METHODS, DRAW_METHODS, DiagnoseSettings, run
from comparisons.inference_data.loo import LOOReliabilityWarning
from comparisons.inference_data.netcdf import write_datatree
from comparisons.reference.nuts import HMCDiagnosticsWarning
from comparisons.report.diagnose import (
    diagnose_markdown,
    plot_loo_pit,
    plot_ppc,
    plot_predictive_bands,
    write_report,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TINY = dict(epochs_multiplier=0.01, num_samples=200, max_grid=1, gp_iterations=20,
            gp_num_draws=200, hmc_chains=2, hmc_warmup=30, hmc_samples=50, hmc_processes=1,
            hmc_max_tree_depth=4)


@pytest.fixture(scope="module")
def result():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LOOReliabilityWarning)
            warnings.simplefilter("ignore", HMCDiagnosticsWarning)
            return run(DiagnoseSettings(**TINY))
    finally:
        torch.set_num_threads(n)


def test_markdown_shows_notes_distances_and_hmc_diagnostics(result):
    table = diagnose_markdown(result.records, result.warnings)
    assert table.startswith("PSIS-LOO on the training data and az.compare")
    assert "| standard_dropout | n/a (no posterior) |" in table
    assert "Distance of each test predictive" in table
    assert "The same per region of the test grid (toy):" in table
    note = next(r["note"] for r in result.records
                if (r["method"], r["metric"]) == ("hmc", "max_r_hat"))
    assert "HMC diagnostics: " + (note or "no problems flagged") in table
    # the rows follow DIAGNOSE_METHODS; every test LL appears as format_value writes it
    rows = [line.split(" | ")[0][2:] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| method")]
    assert rows[:4] == list(DIAGNOSE_METHODS)
    for m in DIAGNOSE_METHODS:
        assert f"| {m} | {result.methods[m].test_ll:.3f} |" in table
    for w in result.warnings:
        assert f"- {w}" in table


def test_markdown_orders_methods_and_leaves_missing_cells_empty():
    recs = [{"method": "hmc", "metric": "test_ll", "value": -2.0, "note": ""},
            {"method": "gp_arccos1_prior", "metric": "test_ll", "value": -1.0, "note": ""},
            {"method": "gp_arccos1_prior", "metric": "elpd_loo", "value": float("nan"),
             "note": "n/a (too few draws: 50 < 100)"}]
    table = diagnose_markdown(recs)
    assert table.index("| gp_arccos1_prior |") < table.index("| hmc |")
    assert "| gp_arccos1 |" not in table
    assert "| gp_arccos1_prior | n/a (too few draws: 50 < 100) |  |" in table
    assert "| hmc | -2 |  |  |  |  |" in table
    assert "Warnings surfaced" not in table


def test_figures_draw_and_refuse_methods_without_draws(result):
    fig, axes = plt.subplots(1, 3)
    assert plot_ppc(result, "hmc", axes[0]) is axes[0]
    # one KDE per drawn predictive draw (50 of HMC's 100) and the observed one
    assert [line.get_xdata().shape for line in axes[0].get_lines()] == [(512,)] * 51
    assert plot_loo_pit(result, "mc_dropout", axes[1]) is axes[1]
    assert plot_predictive_bands(result, axes[2]) is axes[2]
    assert len(axes[2].get_lines()) >= 3 * len(DIAGNOSE_METHODS)
    with pytest.raises(ValueError, match="method must be one of"):
        plot_loo_pit(result, "svi", axes[1])
    with pytest.raises(ValueError, match="no posterior draws"):
        plot_ppc(result, "standard_dropout", axes[0])
    with pytest.raises(ValueError, match="result must be a DiagnoseResult"):
        plot_ppc(result.records, "hmc", axes[0])
    plt.close(fig)


def test_loo_pit_panel_says_why_when_arviz_cannot_smooth(result):
    """20 draws are too few for arviz-stats' Pareto tail (it raises): the panel says so and the
    report goes on."""
    out = result.methods["hmc"]
    few = dataclasses.replace(out, idata_train=out.idata_train.isel(draw=slice(0, 10)),
                              loo_note="n/a (too few draws: 20 < 100)")
    short = dataclasses.replace(result, methods=dict(result.methods, hmc=few))
    fig, ax = plt.subplots()
    assert plot_loo_pit(short, "hmc", ax) is ax
    assert [t.get_text() for t in ax.texts] == ["LOO-PIT n/a (too few draws: 20 < 100)"]
    plt.close(fig)


def test_netcdf_round_trip(result, tmp_path):
    for m in DRAW_METHODS:
        for part in ("train", "test"):
            idata = getattr(result.methods[m], f"idata_{part}")
            path = write_datatree(idata, tmp_path / f"{m}_{part}.nc")
            assert path.stat().st_mode & 0o777 == 0o644
            back = az.from_netcdf(path)
            np.testing.assert_array_equal(back.log_likelihood["y"].values,
                                          idata.log_likelihood["y"].values)
            assert back.posterior.attrs["dataset"] == "toy1d"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{m}_{part}.nc" for m in DRAW_METHODS for part in ("train", "test"))


def test_write_report_writes_every_file(result, tmp_path):
    out = tmp_path / "diag"
    paths = write_report(result, out)
    expected = [f"{m}_{part}" for m in DRAW_METHODS for part in ("train", "test")]
    assert list(paths) == [*expected, "ppc", "loo_pit", "bands", "records_csv", "report"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    for png in ("ppc", "loo_pit", "bands"):
        assert paths[png].stat().st_size > 5000
    records = pd.read_csv(paths["records_csv"], keep_default_na=False, na_values=[""])
    assert len(records) == len(result.records)
    got = records.set_index(["method", "metric"])["value"]
    for r in result.records:  # the values as written round-trip exactly
        v = got[(r["method"], r["metric"])]
        assert (math.isnan(v) and math.isnan(r["value"])) or v == r["value"]
    report = paths["report"].read_text()
    assert report.startswith("# Posterior diagnostics: toy1d, split 0\n")
    assert "Settings: epochs_multiplier=0.01, num_samples=200" in report
    assert diagnose_markdown(result.records, result.warnings) + "\n" in report
    idata = az.from_netcdf(paths["hmc_test"])
    assert idata.posterior.attrs["method"] == "hmc" and idata.posterior.attrs["sampler"] == "nuts"
