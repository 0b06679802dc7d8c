"""The report of :mod:`comparisons.experiments.reference_scores`: one table per reference (data
set and split), a summary ranking over the CONVERGED references only, and a figure of each
method's distance from HMC per data set.

:func:`write_report` writes ``records.csv``, ``report.md`` and ``tv_vs_hmc.png`` atomically.
A table of an unconverged reference says so in its title and is left out of the summary and
the figure.

Example:
    >>> write_report(run(ScoreSettings(reference_dir="docs/reference/hmc")),
    ...              "docs/reference/scores")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from comparisons.report.plots import finish_toy_axes, plot_predictive_band, toy_ylim
from comparisons.report.styles import method_color, method_label
from comparisons.report.tables import format_value, markdown_table
from comparisons.runner.store import atomic_savefig, atomic_write_text

__all__ = ["TABLE_METRICS", "converged_records", "plot_distance_by_dataset",
           "plot_toy_reference_bands", "ranking", "report_markdown", "write_report"]

#: columns of the per-reference tables
TABLE_METRICS = ("test_ll", "rmse", "coverage_95", "smd_vs_hmc", "var_ratio_vs_hmc",
                 "tv_vs_hmc", "w2_vs_hmc", "hmc_mass_50", "hmc_mass_95", "wall_time_s")


def converged_records(records: pd.DataFrame) -> pd.DataFrame:
    """The records of the references whose convergence gate passed."""
    flag = records[(records.method == "hmc") & (records.metric == "reference_converged")]
    ok = {(r.dataset, r.split) for r in flag.itertuples() if r.value == 1.0}
    keep = [(d, s) in ok for d, s in zip(records.dataset, records.split)]
    return records[np.asarray(keep, dtype=bool)]


def ranking(records: pd.DataFrame, metric: str = "tv_vs_hmc") -> pd.DataFrame:
    """Per method over the converged references: the mean of ``metric`` and its mean rank
    (1 = closest to HMC; ties share the mean rank), and the number of references."""
    rec = converged_records(records)
    rec = rec[rec.metric == metric]
    if rec.empty:
        return pd.DataFrame(columns=["method", f"mean_{metric}", "mean_rank", "references"])
    rec = rec.assign(rank=rec.groupby(["dataset", "split"])["value"].rank(method="average"))
    out = rec.groupby("method").agg(**{f"mean_{metric}": ("value", "mean"),
                                       "mean_rank": ("rank", "mean"),
                                       "references": ("value", "size")})
    return out.sort_values("mean_rank").reset_index()


def plot_distance_by_dataset(records: pd.DataFrame, ax, metric: str = "tv_vs_hmc"):
    """Each method's ``metric`` (default: average total variation from HMC's predictive) per
    data set and split of the converged references, one colour and marker row per method.
    Returns ``ax``."""
    rec = converged_records(records)
    rec = rec[rec.metric == metric]
    keys = sorted({(d, s) for d, s in zip(rec.dataset, rec.split)})
    methods = list(dict.fromkeys(rec.method))
    width = 0.8 / max(len(methods), 1)
    for j, method in enumerate(methods):
        sub = rec[rec.method == method]
        xs = [keys.index((d, s)) + (j - (len(methods) - 1) / 2) * width
              for d, s in zip(sub.dataset, sub.split)]
        ax.scatter(xs, sub.value, color=method_color(method), label=method_label(method), s=28)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{d}\nsplit {s}" for d, s in keys], fontsize=8)
    ax.set_ylabel(metric.replace("_", " "))
    if methods:  # beside the axes: inside, it hides the points of the farthest methods
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("distance from the HMC reference (converged references)")
    return ax


def plot_toy_reference_bands(predictives: dict, data, ax, methods: Sequence[str] | None = None,
                             num_sd: float = 2.0):
    r"""The toy's test predictives :math:`\mu \pm` ``num_sd`` :math:`\sigma` of the HMC
    reference (its band the most opaque) and of the scored methods over ``x``, training intervals shaded.

    Args:
        predictives: one (data set, split) entry of
            :attr:`~comparisons.experiments.reference_scores.ScoreResult.predictives`
            (method id -> ``Predictive``; must hold ``"hmc"``).
        data: the toy split's ``Toy1DData`` (``load_split("toy1d", split).data``).
        ax: matplotlib ``Axes``.
        methods: the methods drawn beside HMC (default: all scored ones).
        num_sd: half-width of the bands in predictive sds.

    Returns:
        ``ax``.

    Example:
        >>> plot_toy_reference_bands(result.predictives[("toy1d", 0)], data, ax)  # doctest: +SKIP
    """
    if "hmc" not in predictives:
        raise ValueError(f"predictives must hold the 'hmc' reference, got {sorted(predictives)}")
    methods = [m for m in predictives if m != "hmc"] if methods is None else list(methods)
    bad = [m for m in methods if m not in predictives]
    if bad:
        raise ValueError(f"methods must be among {sorted(predictives)}, got unknown {bad}")
    x = np.asarray(data.x_test_raw)
    if x.shape != np.shape(predictives["hmc"].mean):
        raise ValueError(f"data has {x.shape[0]} test inputs, the predictives "
                         f"{np.shape(predictives['hmc'].mean)[0]}: not the same split")
    for i, (a, b) in enumerate(data.train_intervals):
        ax.axvspan(a, b, color="0.9", lw=0, label="training intervals" if i == 0 else None)
    ylim = toy_ylim(data)
    for m in ["hmc", *methods]:
        pred = predictives[m]
        plot_predictive_band(ax, x, pred.mean, pred.var, m, ylim, num_sd=num_sd,
                             alpha=0.25 if m == "hmc" else 0.1, lw=2.2 if m == "hmc" else 1.3,
                             edges=m != "hmc")
    return finish_toy_axes(ax, data, x, ylim, "test predictive against the HMC reference")


def _num(value, digits: int | None = None) -> str:
    if value is None:
        return "n/a"
    return format_value(float(value)) if digits is None else f"{float(value):,.{digits}f}"


def _table(rec: pd.DataFrame) -> list[str]:
    methods = list(dict.fromkeys(rec.method))
    values = {(r.method, r.metric): r.value for r in rec.itertuples()}

    def cell(method, metric):
        value = values.get((method, metric))
        return "" if value is None or not np.isfinite(value) else format_value(value)

    columns = [m for m in TABLE_METRICS if any((meth, m) in values for meth in methods)]
    return markdown_table(methods, columns, cell)


def _priors_note(references: dict) -> list[str]:
    """A line naming each prior of the converged references when they have more than one (the
    summary then ranks over references made under different priors)."""
    priors: dict[float, list[str]] = {}
    for (dataset, split), manifest in references.items():
        if manifest["convergence"]["converged"]:
            priors.setdefault(float(manifest["prior_length_scale"]), []).append(
                f"{dataset} split {split}")
    if len(priors) < 2:
        return []
    return ["The summarised references differ in prior: "
            + "; ".join(f"l = {length:g} ({', '.join(names)})" for length, names in priors.items())
            + ". Each method is scored against a reference under that reference's prior.", ""]


def report_markdown(records: pd.DataFrame, references: dict, commands: Sequence[str] = ()
                    ) -> str:
    """The Markdown report: the summary ranking, then one table per reference."""
    lines = ["# Methods scored against the HMC reference", ""]
    if commands:
        lines += ["```bash", *commands, "```", ""]
    lines += ["## Summary (converged references only)", ""]
    rank = ranking(records)
    if rank.empty:
        lines += ["No reference passed the convergence gate: no summary.", ""]
    else:
        lines += markdown_table(
            list(rank.method), ["mean_tv_vs_hmc", "mean_rank", "references"],
            lambda m, c: format_value(float(rank.set_index("method").loc[m, c])))
        lines += ["", "Rank 1 = closest to HMC's predictive in total variation, per reference.",
                  ""]
        lines += _priors_note(references)
    for (dataset, split), manifest in references.items():
        conv = manifest["convergence"]
        title = f"## {dataset}, split {split}"
        if not conv["converged"]:
            title += " (unconverged reference: not used in the summary)"
        lines += [title, "",
                  f"Reference: {manifest['prior']}, tau_s = {manifest['tau_standardized']:.4g}, "
                  f"max R-hat {_num(conv['max_r_hat'])}, min bulk / tail ESS "
                  f"{_num(conv['min_ess_bulk'], 0)} / {_num(conv['min_ess_tail'], 0)}, "
                  f"{conv['divergences']} divergences "
                  f"({conv['num_chains']} chains x {conv['num_draws']} draws).", ""]
        if conv["reasons"]:
            lines += ["Gate failed: " + "; ".join(conv["reasons"]), ""]
        rec = records[(records.dataset == dataset) & (records.split == split)]
        lines += _table(rec) + [""]
        lines += _psis_lines(rec)
    return "\n".join(lines)


def _psis_lines(rec: pd.DataFrame) -> list[str]:
    """The PSIS of the posterior against the MC dropout family, when the run computed it
    (``--psis-draws``): Pareto k and the ESS per theta."""
    psis = rec[(rec.method == "mc_dropout") & rec.metric.str.startswith("psis_k[")]
    if psis.empty:
        return []
    values = {r.metric: r.value for r in rec[rec.method == "mc_dropout"].itertuples()}
    parts = []
    for metric in psis.metric:
        theta = metric[len("psis_k["):-1]
        k = values[metric]

        def value(name, theta=theta):
            return format_value(values.get(f"{name}[{theta}]", float("nan")))

        parts.append(f"{theta}: k = {'inf' if k == float('inf') else format_value(k)}, ESS "
                     f"{value('psis_ess')}, elpd_loo {value('psis_loo_posterior')} reweighted to the "
                     f"posterior ({value('psis_loo_posterior_k_bad')} points with k above the "
                     f"threshold) against {value('psis_loo_q')} taking q for it "
                     f"({value('psis_loo_q_k_bad')} points)")
    return ["PSIS of the posterior (this reference's prior and noise) against MC dropout's q "
            "(Pareto k; k >= 0.7: q misses the posterior), and PSIS-LOO of the training data "
            "from the same draws (arviz-stats' loo_approximate_posterior): "
            + "; ".join(parts) + ".", ""]


def write_report(result, out, commands: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``records.csv``, ``report.md`` and ``tv_vs_hmc.png`` into ``out``; returns the
    paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = pd.DataFrame(result.records)
    paths = {"records": atomic_write_text(out / "records.csv", records.to_csv(index=False)),
             "report": atomic_write_text(out / "report.md",
                                         report_markdown(records, result.references, commands))}
    fig = Figure(figsize=(10, 4))
    plot_distance_by_dataset(records, fig.subplots())
    fig.tight_layout()
    paths["figure"] = atomic_savefig(fig, out / "tv_vs_hmc.png", dpi=100)
    return paths
