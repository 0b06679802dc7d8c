"""MC dropout vs exact GPs: the dropout side equals the UCI protocol, the prior hyper-parameters
follow the derivation, the GP predictions are right, records are tidy and consistent, and the
UCI cell function agrees with the runner. Tiny settings throughout (seconds)."""

from __future__ import annotations

import math
from dataclasses import asdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from comparisons.datasets.toy1d import load_toy1d  # noqa: E402
from comparisons.datasets.uci import load_uci  # noqa: E402
from comparisons.experiments.gp_vs_dropout import (  # noqa: E402
    GP_METHODS,
    GPUCIConfig,
    dropout_prior_gp_hyperparameters,
    fit_gp,
    gp_uci_cells,
    plot_toy1d_comparison,
    random_feature_posterior,
    records_markdown,
    run_gp_uci_cell,
    run_gp_vs_dropout,
)
from comparisons.gp.models import gp_predict  # noqa: E402
from comparisons.metrics.distances import summarize_predictive_distances  # noqa: E402
from comparisons.protocols.uci import UCIProtocol, run_uci_cell  # noqa: E402
from comparisons.report.styles import METHOD_STYLES  # noqa: E402
from comparisons.runner.executors import Cell  # noqa: E402
from comparisons.runner.store import validate_records  # noqa: E402
from vi_dropout.training.batched import weight_decay  # noqa: E402

TINY = dict(epochs_multiplier=0.05, num_samples=20, max_grid=2)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy_result():
    torch.set_num_threads(1)
    return run_gp_vs_dropout("toy1d", toy_num_train=40, epochs_multiplier=0.01, num_samples=50,
                             gp_iterations=5, max_grid=2)


@pytest.fixture(scope="module")
def yacht_result():
    torch.set_num_threads(1)
    return run_gp_vs_dropout("yacht", 0, gp_iterations=5, methods=["gp_arccos1_prior", "gp_se"],
                             **TINY)


def _value(records, method, metric):
    vals = [r["value"] for r in records if r["method"] == method and r["metric"] == metric]
    assert len(vals) == 1, (method, metric, vals)
    return vals[0]


def test_dropout_numbers_equal_the_uci_protocol(yacht_result):
    # same seeds, training and MC streams as run_uci_cell: identical numbers (tolerance 1e-12)
    cell = Cell("yacht", 0, "mc_dropout", asdict(UCIProtocol(**TINY)))
    ref = {r["metric"]: r["value"] for r in run_uci_cell(cell)}
    recs = yacht_result.records
    for metric in ("rmse", "rmse_standard", "test_ll", "best_dropout_rate", "best_tau"):
        assert _value(recs, "mc_dropout", metric) == pytest.approx(ref[metric], rel=1e-12,
                                                                   abs=1e-12), metric


def test_moment_matched_dropout_predictive_equals_regression_summary(yacht_result):
    drop = yacht_result.dropout
    np.testing.assert_allclose(drop.mean, drop.summary.mean[:, 0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(drop.var, drop.summary.variance[:, 0].numpy(), rtol=1e-12)
    assert (drop.var >= 1.0 / drop.tau - 1e-12).all()


def test_uci_cell_agrees_with_the_runner(yacht_result):
    # the GP-only cell fits gp_se exactly as the runner does: same rmse / test_ll (1e-10)
    cell = gp_uci_cells(["yacht"], "0", GPUCIConfig(gp_iterations=5, methods=("gp_se",)))[0]
    records = validate_records(run_gp_uci_cell(cell))
    assert {r["method"] for r in records} == {"gp_se"}
    assert {r["metric"] for r in records} == {"rmse", "test_ll", "coverage_95", "wall_time_s"}
    for metric in ("rmse", "test_ll", "coverage_95"):
        assert _value(records, "gp_se", metric) == pytest.approx(
            _value(yacht_result.records, "gp_se", metric), rel=1e-10)
    assert all(r["split"] == 0 and r["dataset"] == "yacht" for r in records)


def test_uci_cell_default_methods_and_errors():
    cells = gp_uci_cells(["yacht"], "1", GPUCIConfig(gp_iterations=2))
    records = pd.DataFrame(run_gp_uci_cell(cells[0]))
    assert set(records["method"]) == {"gp_arccos1", "gp_se"}
    assert records["value"].notna().all() and (records["split"] == 1).all()
    too_small = gp_uci_cells(["yacht"], "0", GPUCIConfig(gp_iterations=2, max_train_size=100))[0]
    with pytest.raises(ValueError, match=r"N=277 training rows > max_train_size=100"):
        run_gp_uci_cell(too_small)
    with pytest.raises(ValueError, match="methods must be a non-empty subset"):
        GPUCIConfig(methods=("gp_arccos1_prior",))
    with pytest.raises(ValueError, match="gp_optimizer must be one of"):
        GPUCIConfig(gp_optimizer="sgd")


def test_prior_hyperparameters_follow_the_keras_objective():
    # lambda of the Keras objective (halved, on M = W'/p) = p l_eff^2 / (2 N tau_s), float64
    length, p, tau, s, n, q, k = 1e-2, 0.9, 0.5, 7.3, 455, 13, 50
    h = dropout_prior_gp_hyperparameters(length, p, tau, s, q, k)
    lam_keras = weight_decay(length, p, n, tau) * p**2 / 2.0
    lam_derivation = p * h["effective_length_scale"] ** 2 / (2 * n * h["tau_standardized"])
    assert lam_keras == pytest.approx(lam_derivation, rel=1e-14)
    inv = h["effective_length_scale"] ** -2
    assert h["weight_variance"] == pytest.approx(q * inv, rel=1e-14)
    assert h["bias_variance"] == pytest.approx(inv, rel=1e-14)
    assert h["outputscale"] == pytest.approx(k * inv, rel=1e-14)
    assert h["noise"] == pytest.approx(1.0 / (tau * s**2), rel=1e-14)
    with pytest.raises(ValueError, match="keep_prob"):
        dropout_prior_gp_hyperparameters(length, 0.0, tau, s, q, k)


def test_prior_gp_keeps_float64_hyperparameters_and_noise_floor():
    d = load_toy1d(num_train=60, seed=0)
    h = dropout_prior_gp_hyperparameters(1e-2, 0.99, 20.0, d.y_std, 1, 50)
    for method in ("gp_arccos1_prior", "gp_rf_prior"):
        fit = fit_gp(method, d.x_train, d.y_train, prior=h)
        for key in ("weight_variance", "bias_variance", "outputscale", "noise"):
            assert fit.hyperparameters[key] == pytest.approx(h[key], rel=1e-12), (method, key)
        mean, var = fit.predict(d.x_test)
        assert np.isfinite(mean).all()
        # predictive variance includes the noise (up to rounding of the huge prior scale)
        assert (var >= h["noise"] * (1 - 1e-6)).all(), (method, var.min())
        # vague prior: far larger variance in extrapolation than at the data
        extrap = d.region_mask("extrapolation")
        assert np.median(var[extrap]) > 100 * np.median(var[d.region_mask("train")])


def test_random_feature_posterior_equals_function_space_formula():
    # moderate hyper-parameters (well conditioned): weight-space vs dense Cholesky, 1e-9
    d = load_toy1d(num_train=60, seed=2)
    h = dict(weight_variance=2.0, bias_variance=0.5, outputscale=1.5, noise=0.1)
    fit = fit_gp("gp_rf_prior", d.x_train, d.y_train, prior=h, num_features=30, seed=1)
    mean, var = fit.predict(d.x_test)
    m_ref, v_ref = gp_predict(fit.model, fit.likelihood, torch.tensor(d.x_test))
    np.testing.assert_allclose(mean, m_ref.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(var, v_ref.numpy(), rtol=0, atol=1e-9)
    phi = torch.eye(2, dtype=torch.float64)
    m, v = random_feature_posterior(phi, torch.ones(2, dtype=torch.float64), phi, 1.0, 1.0)
    np.testing.assert_allclose(m.numpy(), [0.5, 0.5], rtol=1e-14)
    np.testing.assert_allclose(v.numpy(), [1.5, 1.5], rtol=1e-14)


def test_lbfgs_reaches_a_lower_loss_than_adam():
    d = load_toy1d(num_train=60, seed=0)
    lb = fit_gp("gp_se", d.x_train, d.y_train, iterations=30)
    ad = fit_gp("gp_se", d.x_train, d.y_train, iterations=30, optimizer="adam", lr=0.1)
    assert lb.hyperparameters["optimizer_fallback"] == 0.0
    assert lb.losses[-1] < lb.losses[0]
    assert lb.losses[-1] <= ad.losses[-1] + 1e-9
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit_gp("gp_se", d.x_train, d.y_train, optimizer="sgd")
    with pytest.raises(ValueError, match="method must be one of"):
        fit_gp("gp-matern", d.x_train, d.y_train)
    with pytest.raises(ValueError, match="needs prior="):
        fit_gp("gp_arccos1_prior", d.x_train, d.y_train)
    with pytest.raises(ValueError, match="y_train must have .* rows like x"):
        fit_gp("gp_se", d.x_train, d.y_train[:-1])
    with pytest.raises(ValueError, match=r"y_train must have shape N x D .*reshape\(-1, 1\)"):
        fit_gp("gp_se", d.x_train, d.y_train[:, 0])


def test_toy_records_are_tidy_and_consistent(toy_result):
    records = validate_records(toy_result.records)
    methods = {r["method"] for r in records}
    assert methods == {"mc_dropout", *GP_METHODS}
    for method in methods:
        for metric in ("rmse", "test_ll", "coverage_95", "mean_pred_sd", "wall_time_s"):
            v = _value(records, method, metric)
            assert math.isfinite(v)
        assert 0.0 <= _value(records, method, "coverage_95") <= 1.0
    assert all(r["epochs_multiplier"] == 0.01 and r["num_samples"] == 50 for r in records)
    # distances in the records are those of the stored predictions, overall and per region
    m_d, v_d = toy_result.predictions["mc_dropout"]
    for gp in GP_METHODS:
        m_g, v_g = toy_result.predictions[gp]
        d = summarize_predictive_distances(m_d, v_d, m_g, v_g, scale=toy_result.data.y_std)
        for k, v in d.items():
            assert _value(records, gp, k) == pytest.approx(v, rel=1e-12)
        mask = toy_result.data.region_mask("gap")
        dg = summarize_predictive_distances(m_d, v_d, m_g, v_g, mask=mask)
        assert _value(records, gp, "kl[gap]") == pytest.approx(dg["kl"], rel=1e-12)
        # RMSE on the original scale from the stored predictions
        y = toy_result.data.source.y_test[:, 0]
        assert _value(records, gp, "rmse") == pytest.approx(np.sqrt(np.mean((y - m_g) ** 2)))
    # the prior GPs record the dropout prior they used
    drop = toy_result.dropout
    h = dropout_prior_gp_hyperparameters(1e-2, drop.keep_prob, drop.tau,
                                         toy_result.data.y_std, 1, 50)
    assert _value(records, "gp_arccos1_prior", "hp_outputscale") == pytest.approx(
        h["outputscale"], rel=1e-12)


def test_markdown_tables(toy_result):
    text = records_markdown(toy_result.records)
    lines = text.splitlines()
    assert lines[0] == "| method | rmse | test_ll | coverage_95 | mean_pred_sd | wall_time_s |"
    assert sum(line.startswith("| gp_se |") for line in lines) == 3  # perf, distances, regions
    assert "kl[extrapolation]" in text and "| smd | var_ratio | kl | w2 | tv |" in text


def test_plot(toy_result):
    fig, ax = plt.subplots()
    out = plot_toy1d_comparison(toy_result, ax, "gp_arccos1")
    assert out is ax
    labels = [line.get_label() for line in ax.get_lines()]
    # one label and one colour per method, from comparisons.report.styles
    assert "MC dropout mean ± 2 sd" in labels and "GP arc-cosine (fitted) mean ± 2 sd" in labels
    colors = {line.get_label(): line.get_color() for line in ax.get_lines()}
    assert colors["MC dropout mean ± 2 sd"] == METHOD_STYLES["mc_dropout"].color
    assert colors["GP arc-cosine (fitted) mean ± 2 sd"] == METHOD_STYLES["gp_arccos1"].color
    assert len(ax.collections) >= 3  # two bands and the data
    with pytest.raises(ValueError, match="gp_method must be one of"):
        plot_toy1d_comparison(toy_result, ax, "gp-none")
    plt.close(fig)


def test_runner_argument_errors():
    with pytest.raises(ValueError, match="methods must be a subset"):
        run_gp_vs_dropout("toy1d", methods=["gp-nngp"])
    with pytest.raises(ValueError, match="gp_optimizer must be one of"):
        run_gp_vs_dropout("toy1d", gp_optimizer="newton")
    with pytest.raises(ValueError, match="unknown UCI data set 'yaht'"):
        run_gp_vs_dropout("yaht", **TINY)
    with pytest.raises(ValueError, match="num_samples"):
        run_gp_vs_dropout("toy1d", num_samples=0)
    with pytest.raises(ValueError, match="toy1d result"):
        plot_toy1d_comparison(type("R", (), {"dataset": "yacht"})(), None)


def test_uci_loader_is_used_for_named_sets(yacht_result):
    assert yacht_result.dataset == "yacht"
    assert yacht_result.dropout.mean.shape == (load_uci("yacht", 0).x_test.shape[0],)


def test_subset_fit_conditions_exactly_on_all_points():
    # max_fit_size: hyper-parameters from a 25-point subset, posterior on all 60 points; the
    # prediction must equal a direct float64 Cholesky with those hyper-parameters (1e-8).
    g = np.random.default_rng(4)
    x = g.normal(size=(60, 2))
    y = (np.sin(x[:, 0]) + 0.1 * g.normal(size=60))[:, None]
    fit = fit_gp("gp_arccos1", x, y, iterations=5, max_fit_size=25, seed=3)
    full = fit_gp("gp_arccos1", x, y, iterations=5)
    assert fit.hyperparameters["fit_subset_size"] == 25
    assert full.hyperparameters["fit_subset_size"] == 60
    assert fit.model.train_inputs[0].shape[0] == 60
    assert fit.hyperparameters["outputscale"] != pytest.approx(full.hyperparameters["outputscale"])
    xs = g.normal(size=(7, 2))
    mean, var = fit.predict(xs)
    kern, lik = fit.model.covar_module, fit.likelihood
    xt, xst = torch.tensor(x), torch.tensor(xs)
    with torch.no_grad():
        c = float(fit.model.mean_module.constant)
        k = kern(xt).to_dense() + lik.noise * torch.eye(60, dtype=torch.float64)
        ks = kern(xst, xt).to_dense()
        chol = torch.linalg.cholesky(k)
        alpha = torch.cholesky_solve(torch.tensor(y) - c, chol)[:, 0]
        v = torch.linalg.solve_triangular(chol, ks.T, upper=False)
        ref_var = kern(xst, diag=True) - v.pow(2).sum(0) + lik.noise
    np.testing.assert_allclose(mean, (c + ks @ alpha).numpy(), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(var, ref_var.numpy(), rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="max_fit_size"):
        fit_gp("gp_arccos1", x, y, iterations=2, max_fit_size=0)
    with pytest.raises(ValueError, match="max_fit_size"):
        GPUCIConfig(max_fit_size=0)
