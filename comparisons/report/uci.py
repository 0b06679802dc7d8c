"""Summary tables and plots of UCI benchmark records: mean ± standard error over splits, and the
UCI report (``report.md`` and ``test_ll_per_split.png``, :func:`write_uci_report`).

Input is tidy records (a DataFrame or a list of dicts, e.g. from
:meth:`comparisons.runner.store.ResultsStore.load_records`) with columns ``dataset``,
``method``, ``split``, ``metric`` and ``value``. The standard error over splits is
``std(ddof=1) / sqrt(n_splits)``, as reported in the MC dropout paper.

Example:
    >>> recs = [{"dataset": "yacht", "method": "mc", "split": k, "metric": "rmse",
    ...          "value": v} for k, v in enumerate([1.0, 2.0, 3.0])]
    >>> print(summary_markdown(recs))
    | dataset | method | rmse |
    |---|---|---|
    | yacht | mc | 2.00 ± 0.58 |
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comparisons.report.tables import records_frame

__all__ = ["summarize", "format_mean_se", "summary_markdown", "plot_split_metric", "REPORT_METRICS",
           "HYPERPARAMETER_METRICS", "with_learned_drop_rates", "write_uci_report"]


def _frame(records: pd.DataFrame | Iterable[Mapping[str, Any]],
           by: Sequence[str]) -> pd.DataFrame:
    df = records_frame(records, "records", (*by, "split", "metric", "value"))
    df["value"] = df["value"].astype(float)
    keys = [*by, "metric", "split"]
    dup = df.duplicated(keys, keep=False)
    if dup.any():
        example = df.loc[dup, keys].head(3).to_dict("records")
        raise ValueError(
            f"{int(dup.sum())} records share {keys}; add the distinguishing field to `by` "
            f"(e.g. 'epochs_multiplier') or deduplicate. Examples: {example}"
        )
    return df


def summarize(records: pd.DataFrame | Iterable[Mapping[str, Any]],
              metrics: Sequence[str] | None = None,
              by: Sequence[str] = ("dataset", "method")) -> pd.DataFrame:
    """Mean and standard error over splits per group and metric.

    Args:
        records: tidy records (DataFrame or list of dicts), methods spelled by their ids.
        metrics: metrics to keep (default: all, in order of appearance).
        by: grouping columns (add e.g. ``"epochs_multiplier"`` when it varies).

    Returns:
        Long DataFrame with columns ``*by, metric, mean, se, n_splits``; ``se`` is
        ``std(ddof=1) / sqrt(n_splits)`` (NaN for a single split). Groups keep their order of
        first appearance.

    Raises:
        ValueError: missing columns, or several records for one (group, metric, split).

    Example:
        >>> recs = [{"dataset": "d", "method": "m", "split": k, "metric": "rmse", "value": v}
        ...         for k, v in enumerate([1.0, 3.0])]
        >>> row = summarize(recs).iloc[0]
        >>> float(row["mean"]), float(row["se"]), int(row["n_splits"])
        (2.0, 1.0, 2)
    """
    by = list(by)
    df = _frame(records, by)
    if metrics is not None:
        unknown = sorted(set(metrics) - set(df["metric"]))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; have {sorted(set(df['metric']))}")
        df = df[df["metric"].isin(list(metrics))]
    grouped = df.groupby([*by, "metric"], sort=False)["value"]
    out = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1), n_splits="count").reset_index()
    out["n_splits"] = out["n_splits"].astype(int)
    out["se"] = out["std"] / np.sqrt(out["n_splits"])
    out = out.drop(columns="std")
    if metrics is not None:  # groups by first appearance, then metrics in the given order
        first = {g: i for i, g in enumerate(dict.fromkeys(map(tuple, df[by].values)))}
        order = {m: i for i, m in enumerate(metrics)}
        out["_g"] = [first[tuple(r)] for r in out[by].values]
        out["_m"] = out["metric"].map(order)
        out = out.sort_values(["_g", "_m"], kind="stable").drop(columns=["_g", "_m"])
    return out[[*by, "metric", "mean", "se", "n_splits"]].reset_index(drop=True)


_MAX_FIXED_DECIMALS = 6


def _auto_decimals(mean: float, se: float, cap: int | None = _MAX_FIXED_DECIMALS) -> int:
    """At least 2 decimals; enough for two significant digits of ``se`` (or of ``mean`` when
    there is no finite SE), at most ``cap``."""
    d = 2
    # an SE at rounding level (equal values, e.g. a group's wall time shared by its splits)
    # counts as zero
    if se is not None and math.isfinite(se) and se > 1e-12 * abs(mean):
        d = max(d, 1 - math.floor(math.log10(se)))
    elif math.isfinite(mean) and mean != 0:
        d = max(d, 1 - math.floor(math.log10(abs(mean))))
    return d if cap is None else min(d, cap)


def format_mean_se(mean: float, se: float, decimals: int | None = 2) -> str:
    """Format ``mean ± se`` with a fixed number of decimals, or enough for the SE (``None``).

    Args:
        mean: the mean.
        se: its standard error (NaN shown as ``n/a``).
        decimals: digits after the decimal point; ``None``: at least 2 and enough for two
            significant digits of ``se`` (naval's RMSE of 0.0017 is not "0.00 ± 0.00").

    Returns:
        e.g. ``"2.97 ± 0.19"``.

    Example:
        >>> format_mean_se(2.9712, 0.1893)
        '2.97 ± 0.19'
        >>> format_mean_se(0.00172, 0.000061, None)
        '0.001720 ± 0.000061'
        >>> format_mean_se(1.63e-05, 2.1e-07, None)  # beyond 6 decimals: a shared exponent
        '(1.630 ± 0.021)e-05'
        >>> format_mean_se(2.999841, 4e-16, None)  # equal values: an SE at rounding level
        '3.00 ± 0.00'
    """
    if decimals is None:
        if (_auto_decimals(mean, se, cap=None) > _MAX_FIXED_DECIMALS and math.isfinite(mean)
                and mean != 0):
            exp = math.floor(math.log10(abs(mean)))
            scale = 10.0**exp
            se_s = se / scale if se is not None and math.isfinite(se) else float("nan")
            inner = format_mean_se(mean / scale, se_s, _auto_decimals(mean / scale, se_s))
            return f"({inner})e{exp:+03d}"
        decimals = _auto_decimals(mean, se)
    se_text = "n/a" if se is None or not math.isfinite(se) else f"{se:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {se_text}"


def summary_markdown(records: pd.DataFrame | Iterable[Mapping[str, Any]],
                     metrics: Sequence[str] | None = None,
                     by: Sequence[str] = ("dataset", "method"),
                     decimals: int | Mapping[str, int] | None = None) -> str:
    """A Markdown table: one row per group, one ``mean ± SE`` column per metric.

    Args:
        records: tidy records.
        metrics: metric columns, in this order (default: all, in order of appearance).
        by: grouping columns (become the leading columns).
        decimals: digits after the point, one number or a per-metric mapping; ``None`` (default)
            picks them per cell from the SE (see :func:`format_mean_se`).

    Returns:
        The table as a string (no trailing newline); a missing (group, metric) shows ``–``.

    Example:
        >>> recs = [{"dataset": "d", "method": "m", "split": k, "metric": "rmse", "value": v}
        ...         for k, v in enumerate([1.0, 3.0])]
        >>> summary_markdown(recs).splitlines()[-1]
        '| d | m | 2.00 ± 1.00 |'
    """
    by = list(by)
    table = summarize(records, metrics, by)
    metric_names = list(metrics) if metrics is not None else list(dict.fromkeys(table["metric"]))
    groups = list(dict.fromkeys(map(tuple, table[by].values)))
    cells = {(tuple(r[by]), r["metric"]): (r["mean"], r["se"]) for _, r in table.iterrows()}
    lines = ["| " + " | ".join([*by, *metric_names]) + " |",
             "|" + "---|" * (len(by) + len(metric_names))]
    for g in groups:
        row = [str(v) for v in g]
        for m in metric_names:
            d = decimals[m] if isinstance(decimals, Mapping) else decimals
            row.append(format_mean_se(*cells[(g, m)], decimals=d) if (g, m) in cells else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_split_metric(records: pd.DataFrame | Iterable[Mapping[str, Any]], metric: str, ax,
                      by: Sequence[str] = ("dataset", "method"), show_mean: bool = False,
                      **scatter_kwargs: Any):
    """Per-split values of one metric: one row per group, one marker per split.

    Args:
        records: tidy records.
        metric: the metric to plot, e.g. ``"test_ll"``.
        ax: a matplotlib ``Axes``.
        by: grouping columns; each group is one row labelled ``"a / b"``.
        show_mean: also draw the mean ± SE as an error bar on each row.
        **scatter_kwargs: passed to ``ax.scatter`` (e.g. ``s``, ``alpha``).

    Returns:
        ``ax``, with one scatter collection per group holding that group's split values
        (x = value, y = row index).

    Example:
        >>> import matplotlib.pyplot as plt  # doctest: +SKIP
        >>> fig, ax = plt.subplots()  # doctest: +SKIP
        >>> plot_split_metric(records, "test_ll", ax)  # doctest: +SKIP
    """
    by = list(by)
    df = _frame(records, by)
    df = df[df["metric"] == metric]
    if df.empty:
        raise ValueError(f"no records for metric {metric!r}")
    groups = list(dict.fromkeys(map(tuple, df[by].values)))
    kwargs = {"s": 18, "alpha": 0.8, "marker": "o", **scatter_kwargs}
    for row, g in enumerate(groups):
        mask = np.logical_and.reduce([df[c].values == v for c, v in zip(by, g)])
        values = df.loc[mask, "value"].to_numpy(dtype=float)
        ax.scatter(values, np.full(values.shape, float(row)), **kwargs)
        if show_mean:
            se = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else 0.0
            ax.errorbar([values.mean()], [row], xerr=[se], fmt="|", color="black", capsize=3)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([" / ".join(str(v) for v in g) for g in groups])
    ax.set_ylim(len(groups) - 0.5, -0.5)
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    return ax


#: metrics of the UCI report table, in this order (those present in the records)
REPORT_METRICS = ("rmse", "rmse_standard", "test_ll", "coverage_95", "wall_time_s")
#: the hyper-parameters each method chose, as DROP rates (``1 - keep_prob``) side by side: the
#: grid's (MC dropout) and the learned ones (derived from the learned keep_probs), tau on the
#: original scale, theta
HYPERPARAMETER_METRICS = ("best_dropout_rate", "learned_drop_rate_input",
                          "learned_drop_rate_hidden", "best_tau", "learned_tau", "learned_theta")


def with_learned_drop_rates(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus ``learned_drop_rate_input`` / ``_hidden`` = ``1 - learned_keep_prob_*``
    records (drop rates read better than keep_probs within 1e-4 of 1)."""
    kp = df[df["metric"].isin(["learned_keep_prob_input", "learned_keep_prob_hidden"])].copy()
    if not len(kp):
        return df
    kp["value"] = 1.0 - kp["value"].astype(float)
    kp["metric"] = kp["metric"].str.replace("learned_keep_prob", "learned_drop_rate")
    return pd.concat([df, kp], ignore_index=True)


def write_uci_report(records: pd.DataFrame | Iterable[Mapping[str, Any]], out: str | Path, *,
                     title: str, preamble: Sequence[str] = (), footer: Sequence[str] = ()
                     ) -> dict[str, Path]:
    """Write the UCI report under ``out``: ``report.md`` (title, ``preamble`` lines, the
    :func:`summary_markdown` table of :data:`REPORT_METRICS`, the table of
    :data:`HYPERPARAMETER_METRICS` when present, ``footer`` lines) and, when there
    are records, ``test_ll_per_split.png`` (:func:`plot_split_metric` with the mean ± SE), each
    atomically (:mod:`comparisons.runner.store`).

    Args:
        records: tidy records of one run's settings (may be empty).
        out: the output folder.
        title: the Markdown title (without ``#``).
        preamble: lines between the title and the table.
        footer: lines after the table (e.g. the cell counts).

    Returns:
        ``{"report": report.md}`` plus ``"figure"`` when there are records.

    Example:
        >>> recs = [{"dataset": "yacht", "method": "mc_dropout", "split": k, "metric": "rmse",
        ...          "value": v} for k, v in enumerate([1.0, 2.0])]
        >>> paths = write_uci_report(recs, "/tmp/uci-report", title="UCI")  # doctest: +SKIP
        >>> sorted(paths)  # doctest: +SKIP
        ['figure', 'report']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from comparisons.runner.store import atomic_savefig, atomic_write_text

    out = Path(out)
    df = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    lines = [f"# {title}", "", *preamble]
    paths: dict[str, Path] = {}
    if len(df):
        present = set(df["metric"])
        lines.append(summary_markdown(df, metrics=[m for m in REPORT_METRICS if m in present]))
        hyper = with_learned_drop_rates(df)
        chosen = [m for m in HYPERPARAMETER_METRICS if m in set(hyper["metric"])]
        if chosen:
            lines += ["", "Hyper-parameters per method (mean ± SE over splits): the drop rate "
                      "(1 - keep_prob) the grid search chose (MC dropout) or the ELBO learned per "
                      "layer, tau on the original scale, theta.", "",
                      summary_markdown(hyper, metrics=chosen)]
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * df["dataset"].nunique()))
        plot_split_metric(df, "test_ll", ax, show_mean=True)
        ax.set_title("test log-likelihood per split")
        fig.tight_layout()
        paths["figure"] = atomic_savefig(fig, out / "test_ll_per_split.png", dpi=120)
        plt.close(fig)
    lines += ["", *footer]
    paths = {"report": atomic_write_text(out / "report.md", "\n".join(lines) + "\n"), **paths}
    return paths
