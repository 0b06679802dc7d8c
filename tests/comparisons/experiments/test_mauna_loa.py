"""Mauna Loa CO2 extrapolation: data loading and cut, the settings, the GP's extrapolation
limit, tidy records, the seasonal check, the plots, the CLI on tiny settings, the device check
and two training processes (whole file < 30 s without the ``slow`` tests, which spawn
processes). The trainer itself: tests/comparisons/training/test_dropout_regressor.py."""

from __future__ import annotations

import argparse
import math
import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.cli.mauna_loa import add_parser, run
from comparisons.datasets.mauna_loa import load_mauna_loa
from comparisons.experiments.mauna_loa import (
    METHODS,
    PAPER_LIKE_SETTINGS,
    MaunaLoaSettings,
    MethodPrediction,
    annual_amplitude,
    seasonal_records,
)
from comparisons.experiments.mauna_loa import run as run_mauna_loa
from comparisons.report.mauna_loa import (
    comparison_markdown,
    fit_markdown,
    loss_curves_frame,
    plot_loss_curves,
    plot_mauna_loa,
    records_markdown,
)
from comparisons.runner.store import REQUIRED_FIELDS, validate_records
from comparisons.training.checkpoint import read_checkpoint_meta
from tests.common import run_benchmark_quick

matplotlib.use("Agg")

NUM_WEEKS = 2284  # statsmodels' co2: 1958-03-29 .. 2001-12-29, weekly
NUM_MISSING = 59

TINY = dict(iterations=60, num_samples=64, hidden_layers=1, hidden_units=16, gp_iterations=40,
            data_stride=8, gp_stride=1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_result():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_mauna_loa(MaunaLoaSettings(**TINY))
    finally:
        torch.set_num_threads(n)


# ------------------------------------------------------------------------------------- data


def test_load_interpolates_gaps_and_cuts_at_train_fraction():
    d = load_mauna_loa(train_fraction=0.7, extrapolation=1.0)
    assert len(d.time) == len(d.co2) == NUM_WEEKS
    assert int(d.interpolated.sum()) == NUM_MISSING
    assert np.isfinite(d.co2).all() and np.isfinite(d.time).all()
    # strictly increasing, weekly: 7 days in years (365 or 366-day years) within 1e-9
    steps = np.diff(d.time)
    assert (steps > 0).all()
    assert np.all(np.abs(steps - 7 / 365.25) < 7 / 365 - 7 / 366 + 1e-9)
    assert d.num_train == round(0.7 * NUM_WEEKS) == 1599
    assert d.num_train + d.num_heldout == NUM_WEEKS
    # filled weeks: linear in time between the observed neighbours (pandas interpolates in
    # datetime, we compare in decimal years: equal to 1e-3 ppm across year boundaries)
    obs = ~d.interpolated
    expected = np.interp(d.time[~obs], d.time[obs], d.co2[obs])
    np.testing.assert_allclose(d.co2[~obs], expected, rtol=0, atol=1e-3)
    # standardisation uses the training part only: mean 0, sd 1 there (1e-12)
    x, y = d.xy("train")
    assert abs(float(x.mean())) < 1e-12 and abs(float(x.std(correction=0)) - 1) < 1e-12
    assert abs(float(y.mean())) < 1e-12 and abs(float(y.std(correction=0)) - 1) < 1e-12
    xh, _ = d.xy("heldout")
    assert xh.shape == (NUM_WEEKS - 1599, 1) and float(xh.min()) > float(x.max())
    # horizon: as far again as the training span
    assert d.horizon == pytest.approx(d.train_end + d.train_span, abs=1e-12)
    np.testing.assert_allclose(d.co2_from_standardized(d.standardize_co2(d.co2)), d.co2,
                               rtol=0, atol=1e-10)


def test_prediction_times_and_stride():
    d = load_mauna_loa(train_fraction=0.75, extrapolation=0.5, stride=4)
    assert len(d.time) == math.ceil(NUM_WEEKS / 4)
    assert d.num_train == round(0.75 * len(d.time))
    t = d.prediction_times(grid_step=0.25)
    assert (np.diff(t) > 0).all()
    np.testing.assert_array_equal(t[: len(d.time)], d.time)
    assert t[-1] == pytest.approx(d.horizon, abs=1e-9)
    assert np.diff(t[len(d.time):]).max() <= 0.25 + 1e-12
    # a horizon inside the record: the query times are the data times
    short = load_mauna_loa(train_fraction=0.7, extrapolation=0.05)
    np.testing.assert_array_equal(short.prediction_times(), short.time)


@pytest.mark.parametrize("kwargs, match", [
    (dict(train_fraction=0.0), "train_fraction must lie in"),
    (dict(train_fraction=1.2), "train_fraction must lie in"),
    (dict(train_fraction=0.0001), "need >= 2"),
    (dict(extrapolation=0.0), "extrapolation must be a finite number > 0"),
    (dict(stride=0), "stride must be an integer >= 1"),
])
def test_load_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_mauna_loa(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(iterations=0), r"iterations must be an integer >= 1, got 0"),
    (dict(num_samples=-3), r"num_samples must be an integer >= 1, got -3"),
    (dict(hidden_units=0), "hidden_units"),
    (dict(keep_prob=0.0), r"keep_prob must lie in \(0, 1\].*got 0.0"),
    (dict(keep_prob=1.1), "keep_prob"),
    (dict(input_keep_prob=0.0), "input_keep_prob must lie in"),
    (dict(tau=0.0), "tau must be a finite number > 0"),
    (dict(net_dtype="float16"), "net_dtype must be one of"),
    (dict(se_init_lengthscales=()), "se_init_lengthscales"),
    (dict(train_fraction=1.0), "train_fraction"),
])
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaunaLoaSettings(**kwargs)


def test_config_keep_probs():
    cfg = MaunaLoaSettings(hidden_layers=4, keep_prob=0.8)
    assert cfg.keep_prob == 0.8 and MaunaLoaSettings().keep_prob == 0.8
    assert cfg.layer_keep_probs == (1.0, 0.8, 0.8, 0.8, 0.8)
    assert cfg.hidden == (1024,) * 4
    assert (PAPER_LIKE_SETTINGS.iterations, PAPER_LIKE_SETTINGS.num_samples) == (1_000_000, 1000)


# ------------------------------------------------------------------------ run and behaviour


def test_se_gp_reverts_to_its_prior_far_from_the_data(tiny_result):
    pred = tiny_result.predictions["gp_se"]
    info, data = pred.info, tiny_result.data
    # the horizon is many lengthscales from the last training input, so k(x*, X) ~ 0 there
    distance = float(data.standardize_time(data.horizon) - data.standardize_time(data.train_end))
    assert distance > 8 * info["lengthscale"]
    prior_sd_ppm = math.sqrt(info["outputscale"] + info["noise"]) * data.co2_std
    assert pred.sd[-1] == pytest.approx(prior_sd_ppm, rel=1e-6)
    assert pred.mean[-1] == pytest.approx(data.co2_mean, abs=1e-6 * data.co2_std)
    # and the sd never exceeds the prior's (posterior variance <= prior variance)
    assert pred.sd.max() <= prior_sd_ppm * (1 + 1e-9)


def test_uncertainty_is_finite_positive_and_grows_away_from_the_data(tiny_result):
    preds, data = tiny_result.predictions, tiny_result.data
    assert list(preds) == list(METHODS)
    beyond = preds["gp_se"].time > data.train_end
    for name in ("mc_dropout_relu", "mc_dropout_tanh", "gp_se", "gp_arccos1"):
        p = preds[name]
        assert np.isfinite(p.mean).all() and np.isfinite(p.sd).all(), name
        assert (p.sd > 0).all(), name
    for name in ("mc_dropout_relu", "mc_dropout_tanh"):
        p = preds[name]
        # sd^2 = model variance + 1/tau exactly (ppm^2); model sd positive somewhere
        tau = tiny_result.settings.tau
        np.testing.assert_allclose(p.sd**2, p.model_sd**2 + data.co2_std**2 / tau, rtol=1e-10)
        assert p.model_sd.max() > 0
    for name in ("gp_se", "gp_arccos1"):
        p = preds[name]
        assert p.sd[beyond].mean() > p.sd[~beyond].mean(), name
    # standard dropout is a point prediction, finite everywhere
    std = preds["standard_dropout_relu"]
    assert std.sd is None and np.isfinite(std.mean).all()


def test_records_are_tidy(tiny_result):
    records = validate_records(tiny_result.records)
    frame = pd.DataFrame(records)
    assert set(REQUIRED_FIELDS) <= set(frame.columns)
    assert set(frame["method"]) == set(METHODS)
    assert set(frame["split"]) == {"train", "heldout", "extrapolation", "all"}
    assert np.isfinite(frame["value"]).all()
    assert not frame.duplicated(["method", "split", "metric"]).any()
    rmse = frame.query("metric == 'rmse_ppm'")
    assert len(rmse) == 2 * len(METHODS) and (rmse["value"] > 0).all()
    cov = frame.query("metric == 'coverage_2sd'")["value"]
    assert ((cov >= 0) & (cov <= 1)).all()
    assert (frame.query("metric == 'wall_time_s'")["value"] > 0).all()
    table = records_markdown(frame)
    assert len(table.splitlines()) == 2 + len(METHODS)
    assert "| standard_dropout_relu |" in table and "–" in table  # no sd for (a)


def test_comparison_table_has_one_row_per_method_and_run_and_dashes_for_gaps():
    new = [{"method": "gp_se", "split": "train", "metric": "rmse_ppm", "value": 0.25},
           {"method": "mc_dropout_relu", "split": "heldout", "metric": "coverage_2sd",
            "value": 0.9}]
    old = pd.DataFrame([{"method": "gp_se", "split": "train", "metric": "rmse_ppm",
                         "value": 0.5, "note": ""}])
    lines = comparison_markdown({"new": new, "old": old}).splitlines()
    rows = [line.split("|")[1].strip() for line in lines[2:]]
    assert rows == ["gp_se (new)", "gp_se (old)", "mc_dropout_relu (new)",
                    "mc_dropout_relu (old)"]
    assert lines[2].split("|")[2].strip() == "0.250" and lines[3].split("|")[2].strip() == "0.500"
    assert set(lines[5].split("|")[2:-1]) == {" – "}  # the old run has no ReLU network
    with pytest.raises(ValueError, match=r"the records of run 'old' lack the column\(s\) "
                                         r"\['split'\]"):
        comparison_markdown({"new": new, "old": [{"method": "m", "metric": "x", "value": 1}]})
    with pytest.raises(ValueError, match="at least one run"):
        comparison_markdown({})


def test_run_rejects_bad_arguments():
    with pytest.raises(ValueError, match="methods must be a non-empty subset"):
        run_mauna_loa(MaunaLoaSettings(**TINY), methods=["mc_dropout_sigmoid"])
    with pytest.raises(ValueError, match="settings must be a MaunaLoaSettings"):
        run_mauna_loa({"iterations": 3})


def test_plot_takes_a_figure_or_axes_and_returns_it(tiny_result, tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8, 12))
    assert plot_mauna_loa(tiny_result, fig) is fig
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 5
    assert [a.get_title(loc="left")[:3] for a in axes] == ["(a)", "(b)", "(c)", "(d)", "(e)"]
    # MC and GP panels carry the +-1 and +-2 sd bands, standard dropout none
    assert len(axes[0].collections) == 0 and len(axes[2].collections) == 2
    # the boundary: a vertical line at the end of the training data on every panel
    for ax in axes:
        xs = [ln.get_xdata() for ln in ax.lines if len(ln.get_xdata()) == 2]
        assert any(np.allclose(np.asarray(x, float), tiny_result.data.train_end) for x in xs)
    path = tmp_path / "p.png"
    fig.savefig(path, dpi=40)
    assert path.stat().st_size > 1000
    plt.close(fig)
    fig2, grid = plt.subplots(2, 3)
    out = plot_mauna_loa(tiny_result, grid)
    assert out is grid and not grid[1, 2].get_visible()
    plt.close(fig2)
    fig3, few = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="axes must hold at least 5 Axes"):
        plot_mauna_loa(tiny_result, few)
    plt.close(fig3)


def test_plot_title_fits_the_report_figure_with_long_step_counts(tiny_result):
    """The report's figure title stays inside its 9-inch figure even when both networks' step
    counts have seven digits and differ (a one-line title was cut at both ends)."""
    import dataclasses

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    training = {act: dict(t, steps=n) for (act, t), n in
                zip(tiny_result.training.items(), (1_000_000, 9_999_999))}
    result = dataclasses.replace(tiny_result, training=training)
    fig = plot_mauna_loa(result, Figure(figsize=(9, 2.4 * len(result.predictions) + 0.6)))
    renderer = FigureCanvasAgg(fig).get_renderer()
    (title,) = [t for t in fig.texts if t.get_text() == fig.get_suptitle()]
    assert "relu 1000000, tanh 9999999 steps" in title.get_text()
    box, page = title.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (box, page)


# ------------------------------------------------------------------------------------- CLI


def _parser():
    parser = argparse.ArgumentParser(prog="python -m comparisons")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return parser


def test_cli_tiny_run_writes_png_table_and_csv(tmp_path, capsys):
    out = tmp_path / "ml"
    args = _parser().parse_args([
        "mauna-loa", "--out", str(out), "--iterations", "5", "--num-samples", "4",
        "--hidden-layers", "1", "--hidden-units", "8", "--keep-prob", "0.8", "--seed", "1",
        "--gp-iterations", "3", "--data-stride", "16", "--no-progress",
    ])
    assert run(args) == 0
    png, md, csv = out / "mauna_loa.png", out / "report.md", out / "records.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = md.read_text()
    assert "keep_prob 0.8 on every hidden layer" in text and "| gp_arccos1 |" in text
    frame = pd.read_csv(csv)
    assert list(frame.columns[:5]) == ["dataset", "method", "split", "metric", "value"]
    assert set(frame["method"]) == set(METHODS)
    npz = np.load(out / "predictions.npz")
    assert npz["mc_dropout_relu_sd"].shape == npz["time"].shape
    printed = capsys.readouterr().out
    assert str(png) in printed and str(csv) in printed and "held-out RMSE" in printed
    assert {p.name for p in out.iterdir()} == {"mauna_loa.png", "report.md", "records.csv",
                                               "predictions.npz", "fit.csv", "losses.csv",
                                               "losses.png", "checkpoints"}
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"relu.ckpt", "tanh.ckpt"}
    assert read_checkpoint_meta(out / "checkpoints" / "relu.ckpt")["finished"] is True
    assert not list(out.rglob(".tmp-*")), "temporary files left behind"
    losses = pd.read_csv(out / "losses.csv")
    assert set(losses["network"]) == {"relu", "tanh"} and len(losses) == 2 * 5
    assert "## Training and the fit of the training weeks" in text


@pytest.mark.parametrize("flag, value, match", [
    ("--iterations", "0", r"--iterations must be an integer >= 1, got '0'"),
    ("--num-samples", "-1", r"--num-samples must be an integer >= 1, got '-1'"),
    ("--num-samples", "many", r"--num-samples must be an integer >= 1, got 'many'"),
    ("--keep-prob", "1.5", r"--keep-prob must be a finite number in \(0, 1\]"),
    ("--keep-prob", "0", r"--keep-prob must be a finite number in \(0, 1\]"),
])
def test_cli_rejects_bad_values(flag, value, match, capsys):
    with pytest.raises(SystemExit) as err:
        _parser().parse_args(["mauna-loa", "--out", "x", flag, value])
    assert err.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_cli_run_validates_namespaces_built_by_hand(tmp_path):
    args = _parser().parse_args(["mauna-loa", "--out", str(tmp_path)])
    args.iterations = 0
    with pytest.raises(ValueError, match="iterations must be an integer >= 1, got 0"):
        run(args)
    assert not (tmp_path / "mauna_loa.png").exists()


# ---------------------------------------------------------------------------- the trainer


def test_the_trainer_names_stay_importable_from_the_experiment():
    from comparisons.experiments import mauna_loa
    from comparisons.training import dropout_regressor

    for name in ("StoppingRule", "RegressorFit", "resolve_device", "fit_dropout_regressor"):
        assert getattr(mauna_loa, name) is getattr(dropout_regressor, name), name


def test_settings_and_run_check_the_device_before_any_work():
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        MaunaLoaSettings(device="gpu")
    assert MaunaLoaSettings(device="cuda:1").device == "cuda:1"
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    with pytest.raises(ValueError, match="is False"):
        run_mauna_loa(MaunaLoaSettings(**dict(TINY, device="cuda")))


# --------------------------------------------------------------------------- seasonal check


def test_annual_amplitude_recovers_a_cycle_on_a_trend():
    t = np.arange(1958.2, 1988.9, 7 / 365.25)
    trend = 315 + 0.8 * (t - 1958) + 0.012 * (t - 1958) ** 2
    season = 2.7 * np.sin(2 * np.pi * t + 1.1)
    assert annual_amplitude(t, trend + season) == pytest.approx(2.7, rel=1e-3)
    assert annual_amplitude(t, trend) < 1e-6
    # a half-year cycle is not a one-year cycle
    assert annual_amplitude(t, np.sin(4 * np.pi * t)) < 0.01
    with pytest.raises(ValueError, match="N >= 5"):
        annual_amplitude(t[:3], t[:3])


def test_seasonal_records_compare_residuals_with_the_data_and_the_se_gp():
    data = load_mauna_loa(stride=1)
    n_tr = data.num_train
    t, co2 = data.time, data.co2
    season = np.sin(2 * np.pi * t)
    fits_all = co2.copy()                                   # residual 0 on the training weeks
    trend_only = np.polyval(np.polyfit(t[:n_tr], co2[:n_tr], 2), t)
    half = trend_only + 0.5 * (co2 - trend_only)            # half the cycle (and noise) left

    def pred(method, mean):
        return MethodPrediction(method, method, t, mean, info={"device": "cuda (X)"}
                                if method == "mc_dropout_relu" else {})

    preds = {"gp_se": pred("gp_se", half), "mc_dropout_relu": pred("mc_dropout_relu", fits_all),
             "mc_dropout_tanh": pred("mc_dropout_tanh", trend_only)}
    frame = pd.DataFrame(seasonal_records(data, preds)).set_index(["method", "metric"])
    value = frame["value"]
    amp_data = value["gp_se", "seasonal_amplitude_data_ppm"]
    assert 2.5 < amp_data < 3.0  # Mauna Loa's annual cycle, 1958-1988
    assert value["mc_dropout_relu", "seasonal_amplitude_ppm"] < 1e-9
    assert value["mc_dropout_relu", "seasonal_resolved"] == 1
    assert value["mc_dropout_relu", "train_rmse_ppm"] == 0
    assert value["mc_dropout_tanh", "seasonal_amplitude_fraction"] == pytest.approx(1, abs=1e-9)
    assert value["mc_dropout_tanh", "seasonal_resolved"] == 0
    assert value["gp_se", "seasonal_amplitude_fraction"] == pytest.approx(0.5, abs=1e-9)
    assert value["gp_se", "seasonal_power_ratio_to_gp_se"] == pytest.approx(1)
    assert value["mc_dropout_tanh", "seasonal_power_ratio_to_gp_se"] == pytest.approx(4)
    assert frame.loc[("mc_dropout_relu", "seasonal_resolved"), "device"] == "cuda (X)"
    assert frame.loc[("gp_se", "seasonal_resolved"), "device"] == "cpu"
    assert season.shape == t.shape


def test_fit_records_losses_and_their_report(tiny_result):
    res = tiny_result
    assert set(res.losses) == {"relu", "tanh"}
    assert all(v.shape == (TINY["iterations"],) for v in res.losses.values())
    assert res.training["relu"]["steps"] == TINY["iterations"]
    assert res.training["tanh"]["stopped_by"] == "budget"
    frame = res.fit_records_frame()
    validate_records(res.fit_records)
    assert set(frame["device"]) == {"cpu"}
    steps = frame.query("metric == 'steps'")
    assert set(steps["method"]) == {"standard_dropout_relu", "mc_dropout_relu", "mc_dropout_tanh"}
    assert (steps["value"] == TINY["iterations"]).all()
    seasonal = frame.query("metric == 'seasonal_amplitude_fraction'")
    assert set(seasonal["method"]) == set(METHODS) and (seasonal["value"] >= 0).all()
    # the train RMSE of fit.csv is the one of records.csv
    rmse = frame.query("metric == 'train_rmse_ppm'").set_index("method")["value"]
    recs = res.records_frame().query("split == 'train' and metric == 'rmse_ppm'")
    assert dict(zip(recs["method"], recs["value"])) == pytest.approx(rmse.to_dict(), rel=1e-12)
    table = fit_markdown(frame)
    assert len(table.splitlines()) == 2 + len(METHODS)
    assert "| mc_dropout_tanh | cpu | 60 | step budget | 0 |" in table


def test_loss_curves_table_and_plot():
    import matplotlib.pyplot as plt

    losses = {"relu": np.arange(1.0, 11.0), "tanh": np.array([5.0, 4.0, 3.0])}
    frame = loss_curves_frame(losses, max_rows=4)
    relu = frame[frame.network == "relu"]
    assert relu["first_step"].tolist() == [1, 4, 7, 10]
    assert relu["last_step"].tolist() == [3, 6, 9, 10]
    assert relu["loss_mean"].tolist() == [2.0, 5.0, 8.0, 10.0]
    assert relu["loss_min"].tolist() == [1.0, 4.0, 7.0, 10.0]
    tanh = frame[frame.network == "tanh"]
    assert tanh["loss_mean"].tolist() == [5.0, 4.0, 3.0]
    fig, ax = plt.subplots()
    assert plot_loss_curves(ax, losses, max_points=4) is ax
    assert len(ax.lines) == 2 and ax.get_yscale() == "log" and ax.get_xscale() == "log"
    assert len(ax.collections) == 1  # the block range of the averaged curve only
    plt.close(fig)


# ---------------------------------------------------------------------- processes, benchmark


@pytest.mark.slow
def test_two_processes_give_the_numbers_of_one(tmp_path):
    # 10 steps: bitwise equality of every number needs no more (the pool start is the rest)
    settings = MaunaLoaSettings(**dict(TINY, iterations=10))
    methods = ["standard_dropout_relu", "mc_dropout_relu", "mc_dropout_tanh"]
    data = load_mauna_loa(settings.train_fraction, settings.extrapolation, settings.data_stride)
    one = run_mauna_loa(settings, methods=methods, data=data, workers=1)
    two = run_mauna_loa(settings, methods=methods, data=data, workers=2,
                        checkpoint_dir=tmp_path / "ck")
    for name in ("relu", "tanh"):
        np.testing.assert_array_equal(one.losses[name], two.losses[name])
        assert two.training[name]["checkpoint"] == str(tmp_path / "ck" / f"{name}.ckpt")

    def untimed(records):
        return [r for r in records if not re.search("time|wall|seconds", r["metric"])]

    assert untimed(one.records) == untimed(two.records)
    assert untimed(one.fit_records) == untimed(two.fit_records)
    for method in methods:
        np.testing.assert_array_equal(one.predictions[method].mean, two.predictions[method].mean)
    with pytest.raises(ValueError, match="workers must be 1 or 2"):
        run_mauna_loa(settings, methods=methods, data=data, workers=3)


@pytest.mark.slow
def test_step_benchmark_quick_mode_prints_its_tables():
    out = run_benchmark_quick("bench_mauna_loa_step")
    assert "|---|" in out and "speed-up" in out and "load average" in out
    for phase in ("masks", "forward", "backward", "optimizer", "side by side", "fused"):
        assert phase in out
