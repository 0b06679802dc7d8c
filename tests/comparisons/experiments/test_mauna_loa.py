"""Mauna Loa CO2 extrapolation: data loading and cut, the trainer, MC function draws, the GP's
extrapolation limit, tidy records, the plot and the CLI on tiny settings (whole file < 40 s)."""

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
    mc_function_draws,
    train_dropout_regressor,
)
from comparisons.experiments.mauna_loa import run as run_mauna_loa
from comparisons.report.mauna_loa import plot_mauna_loa, records_markdown
from comparisons.runner.store import REQUIRED_FIELDS, validate_records
from vi_dropout.network import Architecture
from vi_dropout.predict import DropoutMLPParams, mc_predict

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
    (dict(drop_rate=1.0), r"drop_rate must lie in \[0, 1\).*got 1.0"),
    (dict(drop_rate=-0.1), "drop_rate"),
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
    cfg = MaunaLoaSettings(hidden_layers=4, drop_rate=0.2)
    assert cfg.keep_prob == pytest.approx(0.8)
    assert cfg.layer_keep_probs == (1.0, 0.8, 0.8, 0.8, 0.8)
    assert cfg.hidden == (1024,) * 4
    assert (PAPER_LIKE_SETTINGS.iterations, PAPER_LIKE_SETTINGS.num_samples) == (1_000_000, 1000)


# ------------------------------------------------------------------------ network and draws


def test_trainer_is_seeded_and_reduces_the_loss():
    x = torch.linspace(-1.5, 1.5, 64).unsqueeze(-1)
    y = torch.sin(2 * x)
    kw = dict(hidden=(32,), activation="tanh", keep_probs=(1.0, 0.9), reg=1e-6,
              iterations=300, batch_size=16, lr=1e-2, seed=3)
    p1, l1 = train_dropout_regressor(x, y, **kw)
    p2, l2 = train_dropout_regressor(x, y, **kw)
    np.testing.assert_array_equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(p1.weights, p2.weights))
    # the weight-averaged prediction explains > 90% of the variance of sin(2x) (measured: 94%)
    with torch.no_grad():
        mse = float((p1.standard_predict(x) - y).square().mean())
    assert mse < 0.1 * float(y.var())
    assert l1[-50:].mean() < l1[:50].mean()
    assert p1.inverted and p1.keep_probs == (1.0, 0.9)
    with pytest.raises(ValueError, match="keep_probs must hold one value per weight layer"):
        train_dropout_regressor(x, y, **dict(kw, keep_probs=(0.9,)))
    with pytest.raises(ValueError, match="iterations must be an integer >= 1"):
        train_dropout_regressor(x, y, **dict(kw, iterations=0))


def test_function_draws_have_the_marginals_of_mc_predict():
    # Same law at every input: means and variances agree within 5 Monte Carlo standard errors.
    g = torch.Generator().manual_seed(0)
    ws, bs = Architecture((1, 24, 24, 1), "relu").init_params(generator=g)
    params = DropoutMLPParams(ws, bs, keep_probs=(1.0, 0.7, 0.7), activation="relu",
                              inverted=True)
    x = torch.linspace(-2, 2, 5, dtype=torch.float64).unsqueeze(-1)
    T = 20_000
    a = mc_function_draws(params, x, T, generator=torch.Generator().manual_seed(1))[..., 0]
    b = mc_predict(x, ws, bs, (1.0, 0.7, 0.7), T, activation="relu", inverted=True,
                   generator=torch.Generator().manual_seed(2))[..., 0]
    se_mean = torch.sqrt(a.var(0) / T + b.var(0) / T)
    assert bool(((a.mean(0) - b.mean(0)).abs() <= 5 * se_mean).all())
    # variance: SE of a sample variance ~ sqrt((m4 - s^4) / T), per estimator
    def var_se(s):
        c = s - s.mean(0)
        return torch.sqrt(((c**4).mean(0) - c.var(0) ** 2) / T)
    assert bool(((a.var(0) - b.var(0)).abs() <= 5 * torch.sqrt(var_se(a)**2 + var_se(b)**2)).all())
    # one mask per draw: with keep_prob 1 everywhere the draws are all the deterministic net
    det = DropoutMLPParams(ws, bs, keep_probs=1.0, inverted=True)
    d = mc_function_draws(det, x, 3)
    torch.testing.assert_close(d[0], d[2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        mc_function_draws(params, x, 0)


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
    assert "drop_rate 0.2 (keep_prob 0.8)" in text and "| gp_arccos1 |" in text
    frame = pd.read_csv(csv)
    assert list(frame.columns[:5]) == ["dataset", "method", "split", "metric", "value"]
    assert set(frame["method"]) == set(METHODS)
    npz = np.load(out / "predictions.npz")
    assert npz["mc_dropout_relu_sd"].shape == npz["time"].shape
    printed = capsys.readouterr().out
    assert str(png) in printed and str(csv) in printed and "held-out RMSE" in printed
    assert {p.name for p in out.iterdir()} == {"mauna_loa.png", "report.md", "records.csv",
                                               "predictions.npz"}
    assert not list(out.glob(".tmp-*")), "temporary files left behind"


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
