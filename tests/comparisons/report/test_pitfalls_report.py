"""The pitfalls report on synthetic records (no training): the learned-rate methods in the
non-concentration figure and tables, the learned keep_prob figure, the variance slopes and the
fit warnings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from comparisons.datasets.toy1d import load_toy1d  # noqa: E402
from comparisons.experiments.pitfalls import (  # noqa: E402
    KeepProbSensitivity,
    PitfallResult,
    PitfallSettings,
)
from comparisons.report.pitfalls import (  # noqa: E402
    plot_learned_keep_prob,
    plot_non_concentration,
    report_markdown,
    variance_slopes,
    write_report,
)
from comparisons.report.styles import METHOD_STYLES  # noqa: E402

SIZES = (10, 100, 1000)
#: variance ~ c N^b per method: the slopes the report must recover
RATES = {"mc_dropout": (0.1, 0.0), "gp_arccos1_prior": (0.5, -1.0),
         "concrete_dropout": (0.2, -0.5), "full_elbo": (0.3, -0.7)}


def _records(learned=True):
    recs = []
    for method, (c, b) in RATES.items():
        if method in ("concrete_dropout", "full_elbo") and not learned:
            continue
        for n in SIZES:
            for region, factor in (("train", 1.0), ("extrapolation", 10.0)):
                recs.append({"dataset": "toy1d", "method": method, "split": n,
                             "metric": f"epistemic_variance_{region}",
                             "value": factor * c * n ** b})
            recs.append({"dataset": "toy1d", "method": method, "split": n,
                         "metric": "wall_time_s", "value": 0.1})
            if method in ("concrete_dropout", "full_elbo"):
                for metric, value in (("learned_keep_prob_input", 1 - 0.1 / n),
                                      ("learned_keep_prob_hidden", 1 - 1.0 / (n + 1)),
                                      ("learned_tau", 10.0), ("final_loss", 0.5)):
                    recs.append({"dataset": "toy1d", "method": method, "split": n,
                                 "metric": metric, "value": value})
                if method == "full_elbo":
                    recs.append({"dataset": "toy1d", "method": method, "split": n,
                                 "metric": "learned_theta", "value": 0.1 / np.sqrt(n)})
    return recs


def _result(learned=True, fit_warnings=()):
    data = load_toy1d(20, seed=0)
    m = data.x_test_raw.shape[0]
    sens_records = [{"dataset": "toy1d", "method": "mc_dropout", "split": kp,
                     "metric": "mean_sd_train", "value": 1.0} for kp in (0.5, 0.9)]
    sens = KeepProbSensitivity(np.asarray(data.x_test_raw), (0.5, 0.9), np.ones((2, m)),
                               np.ones(m), data, sens_records)
    kl = [{"dataset": "toy1d", "method": "exact_elbo", "split": t, "metric": metric, "value": v}
          for t in (1e-2, 1e-4) for metric, v in (("elbo_minus_dropout_loss", -np.log(t)),
                                                  ("gradient_relative_difference", t),
                                                  ("predicted_offset", -np.log(t)))]
    settings = PitfallSettings(sizes=SIZES, hmc=None, learned_rates=learned)
    return PitfallResult(settings, kl, _records(learned), sens, (),
                         {"improper_kl": 0.1, "non_concentration": 1.0,
                          "keep_prob_sensitivity": 0.2}, fit_warnings)


def test_variance_slopes_recover_the_rates():
    slopes = variance_slopes(_records()).set_index("method")
    for method, (_, b) in RATES.items():
        assert slopes.loc[method, "slope_train"] == pytest.approx(b, abs=1e-12)
        assert slopes.loc[method, "slope_extrapolation"] == pytest.approx(b, abs=1e-12)
        assert (slopes.loc[method, "n_min"], slopes.loc[method, "n_max"]) == (10, 1000)
    one = variance_slopes([r for r in _records() if r["split"] == 10])
    assert one.slope_train.isna().all() and (one.num_sizes == 1).all()


def test_report_writes_the_learned_figure_and_columns(tmp_path):
    warning = "non-concentration, full_elbo at N = 1000: the fit failed (keep_prob_hidden): x"
    paths = write_report(_result(fit_warnings=(warning,)), tmp_path)
    assert set(paths) == {"improper_kl", "non_concentration", "learned_keep_prob",
                          "keep_prob_sensitivity", "records", "report"}
    assert (tmp_path / "learned_keep_prob.png").stat().st_size > 10_000
    text = (tmp_path / "report.md").read_text()
    header = next(line for line in text.splitlines() if "learned_keep_prob_hidden" in line)
    for column in ("learned_keep_prob_input", "learned_keep_prob_hidden", "learned_tau",
                   "learned_theta", "final_loss"):
        assert column in header
    assert "| concrete_dropout | 1000 |" in text and "| full_elbo | 10 |" in text
    # the slopes, and concrete_dropout's missing theta drawn as a dash
    assert "| gp_arccos1_prior | -1 | -1 | 10-1000 (3 sizes) |" in text
    assert "| concrete_dropout | -0.5 | -0.5 |" in text
    assert "| concrete_dropout | 10 | 0.5 | 0.9091 | 0.99 | 10 | – |" in text
    # keep_probs near 1 as 1 - drop rate (.4g would show 1)
    assert "| full_elbo | 1000 | 0.5 | 1 - 0.001 | 1 - 0.0001 | 10 | 0.003162 |" in text
    assert f"- {warning}" in text
    records = pd.read_csv(tmp_path / "records.csv")
    assert {"concrete_dropout", "full_elbo"} <= set(records.method)


def test_without_learned_rates_no_learned_figure(tmp_path):
    paths = write_report(_result(learned=False), tmp_path)
    assert "learned_keep_prob" not in paths and not (tmp_path / "learned_keep_prob.png").exists()
    text = report_markdown(_result(learned=False))
    assert "Learned-rate methods: off (--no-learned-rates)." in text
    assert "concrete_dropout" not in text


def test_plots_take_an_ax_and_use_the_method_styles():
    ax = Figure().subplots()
    assert plot_non_concentration(_records(), ax, "train") is ax
    colors = {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in ax.lines}
    for method in RATES:
        style = METHOD_STYLES[method]
        assert colors[style.label] == matplotlib.colors.to_hex(style.color)
    ax = Figure().subplots()
    assert plot_learned_keep_prob(_records(), ax) is ax
    assert ax.get_xscale() == "log" and ax.get_yscale() == "logit"
    labels = [line.get_label() for line in ax.lines]
    assert len(labels) == 4  # 2 methods x (input, hidden)
    hidden = next(line for line in ax.lines
                  if line.get_label() == f"{METHOD_STYLES['full_elbo'].label}: hidden")
    assert list(hidden.get_xdata()) == list(SIZES)
    assert hidden.get_ydata()[-1] == pytest.approx(1 - 1 / 1001)
    assert matplotlib.colors.to_hex(hidden.get_color()) == \
        matplotlib.colors.to_hex(METHOD_STYLES["full_elbo"].color)
