"""The report of the pitfalls experiment: its figures, its tables and :func:`write_report`,
which writes every output file of :func:`comparisons.experiments.pitfalls.run` atomically.

Files written under ``out``: ``improper_kl.png``, ``non_concentration.png`` (training and
extrapolation regions side by side, every method of the non-concentration experiment),
``learned_keep_prob.png`` (the learned keep_probs vs N; only when the learned-rate methods ran),
``keep_prob_sensitivity.png``, ``records.csv`` (tidy records) and ``report.md`` (tables, the
log-log slopes of the variance in N, the learned parameters, HMC's diagnostics and the surfaced
warnings). Every plot takes an ``ax`` and returns it; colours and labels come from
:mod:`comparisons.report.styles`.

Example:
    >>> result = comparisons.experiments.pitfalls.run(settings)  # doctest: +SKIP
    >>> sorted(write_report(result, "outputs/pitfalls"))         # doctest: +SKIP
    ['improper_kl', 'keep_prob_sensitivity', 'learned_keep_prob', 'non_concentration', 'records', 'report']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from comparisons.report.styles import method_color, method_label
from comparisons.runner.store import atomic_savefig, atomic_write_text

__all__ = ["plot_improper_kl", "plot_non_concentration", "plot_learned_keep_prob",
           "plot_keep_prob_sensitivity", "pivot_markdown", "variance_slopes", "report_markdown",
           "write_report"]

#: the two metrics of the non-concentration variance table and figure
VARIANCE_METRICS = ("epistemic_variance_train", "epistemic_variance_extrapolation")
#: the learned-rate methods (ids of :mod:`comparisons.report.styles`)
LEARNED_RATE_METHODS = ("concrete_dropout", "full_elbo")


def pivot_markdown(df: pd.DataFrame, index: Sequence[str], headers: Sequence[str] | None = None,
                   columns: str = "metric", formats: dict | None = None) -> str:
    """A Markdown table of tidy records pivoted to one row per ``index`` key and one column per
    ``columns`` value (numbers as ``.4g``, a missing value as ``–``).

    Args:
        df: tidy records.
        index: the key columns of a row (e.g. ``["method", "split"]``).
        headers: their headers in the table (default: ``index``).
        columns: the column whose values become the table's columns.
        formats: ``{column value: function of a number -> text}`` for columns not shown as
            ``.4g``.

    Example:
        >>> df = pd.DataFrame({"split": [1], "metric": ["m"], "value": [0.5]})
        >>> pivot_markdown(df, ["split"], ["theta"]).splitlines()[0]
        '| theta | m |'
    """
    headers = list(index) if headers is None else list(headers)
    pivot = df.pivot_table(index=list(index), columns=columns, values="value", aggfunc="first")
    lines = ["| " + " | ".join([*headers, *map(str, pivot.columns)]) + " |",
             "|" + "---|" * (len(index) + len(pivot.columns))]
    formats = formats or {}
    for key, row in pivot.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        cells = [("–" if v != v else formats.get(c, lambda x: f"{x:.4g}")(v))
                 for c, v in row.items()]
        lines.append("| " + " | ".join([*map(str, key), *cells]) + " |")
    return "\n".join(lines)


def _hmc_lines(result, df_nc: pd.DataFrame, variance) -> list[str]:
    settings, hmc = result.settings, result.settings.hmc
    if hmc is None:
        return ["HMC: off (--no-hmc)."]
    lines = [
        f"HMC: {hmc}; prior N(0, {settings.prior_length_scale:g}^-2) on every weight and bias "
        f"and the toy's noise precision, as the GP. Diagnostics (hmc_summary of f at the "
        f"test inputs; wall_time_s: this run, hmc_chain_wall_time_sum_s: the chains' own "
        f"time, also when loaded from the cache):", ""]
    if (df_nc.method == "hmc").any():
        lines += [pivot_markdown(df_nc[(df_nc.method == "hmc") & ~variance], ["split"], ["N"]),
                  ""]
    lines += ["HMC warnings: " + ("none" if not result.hmc_warnings else "")]
    return lines + [f"- {w}" for w in result.hmc_warnings]


def variance_slopes(records: Sequence[dict]) -> pd.DataFrame:
    r"""The least-squares slope of :math:`\log \mathrm{Var}` against :math:`\log N` per method
    and region of the non-concentration records: the rate :math:`\mathrm{Var} \propto N^{b}`
    (the GP's :math:`b \approx -1` inside the data; a fixed dropout rate's :math:`b \approx 0`).

    .. math::
        b = \frac{\sum_j (u_j - \bar u)(v_j - \bar v)}{\sum_j (u_j - \bar u)^2},
        \quad u_j = \log N_j,\ v_j = \log \mathrm{Var}_j

    Args:
        records: tidy records with ``epistemic_variance_{train,extrapolation}`` per ``split = N``.

    Returns:
        One row per method: ``method``, ``slope_train``, ``slope_extrapolation``, ``n_min``,
        ``n_max``, ``num_sizes`` (NaN slopes for a method with fewer than two sizes).

    Example:
        >>> recs = [{"method": "m", "split": n, "metric": f"epistemic_variance_{r}",
        ...          "value": 1.0 / n} for n in (10, 100) for r in ("train", "extrapolation")]
        >>> round(float(variance_slopes(recs).slope_train[0]), 12)
        -1.0
    """
    rows = []
    methods = dict.fromkeys(r["method"] for r in records if r["metric"] in VARIANCE_METRICS)
    for method in methods:
        row = {"method": method}
        for metric in VARIANCE_METRICS:
            n, v = _select(records, method, metric)
            ok = v > 0
            slope = (np.polyfit(np.log(n[ok]), np.log(v[ok]), 1)[0]
                     if len(set(n[ok])) >= 2 else float("nan"))
            row[metric.replace("epistemic_variance", "slope")] = float(slope)
        n, _ = _select(records, method, VARIANCE_METRICS[0])
        row.update(n_min=int(n.min()), n_max=int(n.max()), num_sizes=len(n))
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "slope_train", "slope_extrapolation", "n_min",
                                       "n_max", "num_sizes"])


def _learned_lines(result, df_nc: pd.DataFrame) -> list[str]:
    """The learned-rate part of section 2 of ``report.md``."""
    settings = result.settings
    if not getattr(settings, "learned_rates", False):
        return ["Learned-rate methods: off (--no-learned-rates)."]
    lines = [
        "Learned-rate methods (vi_dropout.infer.concrete.fit_concrete, full batch, "
        f"{settings.steps} Adam steps of 0.01, temperature 0.1, keep_probs from 0.9, tau from 1; "
        "concrete_dropout: theta fixed at 1e-6 (theta -> 0), full_elbo: theta learned from 0.01). "
        "Learned parameters (tau on the standardised scale; final_loss: negative ELBO per point, "
        "last 10% of the steps; masks_only: full_elbo's variance without its theta noise; a "
        "keep_prob above 0.999 as 1 - its drop rate):", ""]
    learned = df_nc[df_nc.method.isin(LEARNED_RATE_METHODS)
                    & ~df_nc.metric.isin([*VARIANCE_METRICS, "wall_time_s"])]
    if not learned.empty:
        near_one = {f"learned_keep_prob_{layer}": _keep_prob_text for layer in ("input", "hidden")}
        lines += [pivot_markdown(learned, ["method", "split"], ["method", "N"],
                                 formats=near_one), ""]
    warned = getattr(result, "fit_warnings", ())
    lines += ["Learned-rate fit warnings: " + ("none" if not warned else "")]
    return lines + [f"- {w}" for w in warned]


def _keep_prob_text(keep_prob: float) -> str:
    """A keep_prob as ``.4g``, or as ``1 - drop rate`` above 0.999 (where ``.4g`` shows 1)."""
    return f"{keep_prob:.4g}" if keep_prob <= 0.999 else f"1 - {1 - keep_prob:.2g}"


def _slope_lines(records) -> list[str]:
    slopes = variance_slopes(records)
    if slopes.empty:
        return []
    lines = ["Slope b of log variance vs log N (Var ~ N^b, least squares over the sizes each "
             "method ran):", "", "| method | b, train | b, extrapolation | N range |",
             "|---|---|---|---|"]
    for row in slopes.itertuples():
        b = [f"{v:.3g}" if v == v else "–" for v in (row.slope_train, row.slope_extrapolation)]
        lines.append(f"| {row.method} | {b[0]} | {b[1]} | {row.n_min}-{row.n_max} "
                     f"({row.num_sizes} size{'s' if row.num_sizes > 1 else ''}) |")
    return lines + [""]


def report_markdown(result) -> str:
    """The text of ``report.md`` for a :class:`~comparisons.experiments.pitfalls.PitfallResult`:
    one section per experiment with its table and wall time."""
    settings, t = result.settings, result.wall_times_s
    df_nc = pd.DataFrame(result.non_concentration)
    variance = df_nc.metric.isin(VARIANCE_METRICS)
    walls = df_nc[df_nc.metric == "wall_time_s"].pivot_table(
        index="split", columns="method", values="value", aggfunc="first")
    return "\n".join([
        "# Pitfalls of MC dropout (toy data unless stated)", "",
        f"Settings: {settings}; non-concentration keep_prob {settings.keep_prob}.", "",
        f"## 1. Improper KL (equivalence-report problem, float64; {t['improper_kl']:.1f} s)", "",
        pivot_markdown(pd.DataFrame(result.improper_kl), ["split"], ["theta"]), "",
        f"## 2. Non-concentration ({t['non_concentration']:.1f} s)", "",
        "Epistemic variance (standardised scale), mean over the test points in the region:", "",
        pivot_markdown(df_nc[variance], ["method", "split"], ["method", "N"]), "",
        *_slope_lines(result.non_concentration),
        "Wall time per N (s): " + "; ".join(
            f"N={int(n)}: " + ", ".join(f"{m} {v:.1f}" for m, v in row.items() if v == v)
            for n, row in walls.iterrows()) + ".", "",
        *_learned_lines(result, df_nc), "",
        *_hmc_lines(result, df_nc, df_nc.metric.str.startswith("epistemic_variance")), "",
        f"## 3. keep_prob sensitivity ({t['keep_prob_sensitivity']:.1f} s; predictive sd, "
        "original scale)", "",
        pivot_markdown(pd.DataFrame(result.sensitivity.records), ["method", "split"],
                       ["method", "keep_prob"]), "",
    ])


def write_report(result, out: str | os.PathLike) -> dict[str, Path]:
    """Write the figures, ``records.csv`` and ``report.md`` of a
    :class:`~comparisons.experiments.pitfalls.PitfallResult` under ``out`` (atomically);
    ``learned_keep_prob.png`` only when the records hold learned keep_probs.

    Returns:
        ``{file stem: path}`` of every file written.
    """
    from matplotlib.figure import Figure

    out = Path(out)
    paths = {}
    figures = [("improper_kl", lambda ax: plot_improper_kl(result.improper_kl, ax)),
               ("non_concentration", None)]
    if any(r["metric"].startswith("learned_keep_prob") for r in result.non_concentration):
        figures.append(("learned_keep_prob",
                        lambda ax: plot_learned_keep_prob(result.non_concentration, ax)))
    figures.append(("keep_prob_sensitivity",
                    lambda ax: plot_keep_prob_sensitivity(result.sensitivity, ax)))
    for name, draw in figures:
        if draw is None:  # the two regions side by side
            fig = Figure(figsize=(11, 4.2))
            axes = fig.subplots(1, 2)
            plot_non_concentration(result.non_concentration, axes[0], "train")
            plot_non_concentration(result.non_concentration, axes[1], "extrapolation")
        else:
            fig = Figure(figsize=(7, 4.2))
            draw(fig.subplots())
        fig.tight_layout()
        paths[name] = atomic_savefig(fig, out / f"{name}.png", dpi=100)
    paths["records"] = atomic_write_text(out / "records.csv",
                                         pd.DataFrame(result.records).to_csv(index=False))
    paths["report"] = atomic_write_text(out / "report.md", report_markdown(result))
    return paths


def _select(records, method, metric):
    rows = [r for r in records if r["method"] == method and r["metric"] == metric]
    return np.array([float(r["split"]) for r in rows]), np.array([r["value"] for r in rows])


def plot_improper_kl(records: Sequence[dict], ax):
    """Left axis: ELBO - dropout loss vs theta (diverges); right: gradient difference (vanishes)."""
    th, val = _select(records, "exact_elbo", "elbo_minus_dropout_loss")
    _, grad = _select(records, "exact_elbo", "gradient_relative_difference")
    ax.semilogx(th, val, "o-", color="C0", label=r"$-\mathrm{ELBO}/(N\tau) - L_\mathrm{dropout}$")
    ax.set_xlabel(r"$\theta$")
    ax.set_ylabel("objective difference", color="C0")
    ax.invert_xaxis()
    ax2 = ax.twinx()
    ax2.loglog(th, grad, "s--", color="C3", label="gradient rel. difference")
    ax2.set_ylabel("gradient relative difference", color="C3")
    ax.set_title(r"improper KL: value diverges like $-\log\theta$, gradient converges")
    return ax


#: line style per method (colours and labels: comparisons.report.styles)
_NC_STYLE = {"mc_dropout": "o-", "gp_arccos1_prior": "s-", "hmc": "^-",
             "concrete_dropout": "D-", "full_elbo": "v-"}


def plot_non_concentration(records: Sequence[dict], ax, region: str = "train"):
    """Epistemic variance vs N on log-log axes for every method in ``records`` (fixed-rate MC
    dropout, the GP, HMC and the learned-rate methods in their colours of
    :data:`~comparisons.report.styles.METHOD_STYLES`; each curve covers the sizes its method ran
    for)."""
    if region not in ("train", "extrapolation"):
        raise ValueError(f"region must be 'train' or 'extrapolation', got {region!r}")
    metric = f"epistemic_variance_{region}"
    methods = sorted({r["method"] for r in records if r["metric"] == metric},
                     key=lambda m: (list(_NC_STYLE).index(m) if m in _NC_STYLE else 99, m))
    for i, method in enumerate(methods):
        n, v = _select(records, method, metric)
        order = np.argsort(n)
        ax.loglog(n[order], v[order], _NC_STYLE.get(method, "o-"),
                  color=method_color(method, f"C{i + 3}"), label=method_label(method))
    ax.set_xlabel("training points N")
    ax.set_ylabel(f"epistemic variance ({region}, standardised)")
    ax.set_title(f"non-concentration ({region} region)")
    ax.legend(fontsize=8)
    return ax


def plot_learned_keep_prob(records: Sequence[dict], ax):
    """The learned keep_probs vs N: log x, logit y (0.5, 0.9, 0.99, ... equally spaced), one
    colour per method (:data:`~comparisons.report.styles.METHOD_STYLES`), the input layer dashed
    with open markers and the hidden layer solid; the fixed-rate MC dropout's keep_prob is not a
    record and not drawn.

    Args:
        records: non-concentration records with ``learned_keep_prob_input`` /
            ``learned_keep_prob_hidden`` per method and ``split = N``.
        ax: a matplotlib ``Axes``.
    """
    methods = sorted({r["method"] for r in records if r["metric"].startswith("learned_keep_prob")},
                     key=lambda m: (list(_NC_STYLE).index(m) if m in _NC_STYLE else 99, m))
    for i, method in enumerate(methods):
        color = method_color(method, f"C{i + 5}")
        marker = _NC_STYLE.get(method, "o-")[0]
        for layer, style in (("hidden", "-"), ("input", "--")):
            n, kp = _select(records, method, f"learned_keep_prob_{layer}")
            order = np.argsort(n)
            ax.plot(n[order], kp[order], marker + style, color=color,
                    mfc=color if layer == "hidden" else "none",
                    label=f"{method_label(method)}: {layer}")
    ax.set_xscale("log")
    ax.set_yscale("logit")
    ax.set_xlabel("training points N")
    ax.set_ylabel("learned keep_prob (logit scale)")
    ax.set_title("learned keep_prob vs N (solid: hidden layer, dashed: input)")
    if methods:
        ax.legend(fontsize=8)
    return ax


def plot_keep_prob_sensitivity(result, ax):
    """Predictive sd vs x for each keep_prob (a
    :class:`~comparisons.experiments.pitfalls.KeepProbSensitivity`), the GP's in black, training
    intervals shaded."""
    for lo, hi in result.data.train_intervals:
        ax.axvspan(lo, hi, color="0.92", zorder=0)
    for i, (kp, sd) in enumerate(zip(result.keep_probs, result.mc_sd)):
        ax.plot(result.x, sd, color=f"C{i}", label=f"MC dropout, keep_prob {kp:g}")
    ax.plot(result.x, result.gp_sd, "k--", lw=2, label=method_label("gp_arccos1_prior"))
    ax.set_xlabel("x")
    ax.set_ylabel("predictive sd (original scale)")
    ax.set_title("sensitivity of MC dropout's uncertainty to keep_prob (shaded: training data)")
    ax.legend(fontsize=8)
    return ax
