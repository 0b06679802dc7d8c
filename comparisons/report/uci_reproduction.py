r"""A run of the UCI protocol against an earlier run of the same settings, split by split
(``python -m comparisons uci-table --against EARLIER``).

Both runs are tidy records (``dataset, method, split, metric, value``, optionally the settings
``epochs_multiplier`` and ``num_samples`` and each cell's ``wall_time_s``). Cells are matched on
data set, method, the settings both runs record and the split; only splits present in both are
compared, so a run of some splits only (``--splits 0-4``, or the finished cells of a run still
going, :meth:`comparisons.runner.store.ResultsStore.load_records`) is compared with the earlier run
on those splits.
For each (data set, method, setting, metric) the table has both means over those splits, each
with its standard error over splits, and the paired difference

.. math::
    \bar d = \frac{1}{n} \sum_{k=1}^{n} (v_k - v^{\mathrm{earlier}}_k), \qquad
    \mathrm{SE}(\bar d) = \frac{\operatorname{sd}(d)}{\sqrt n},

with :math:`n` the shared splits, and :math:`\bar d / \mathrm{SE}^{\mathrm{earlier}}`: the
difference in units of the earlier run's standard error (``|.| <= 1``: reproduced within one
standard error, the criterion of the project's re-runs). Where both runs record ``wall_time_s``,
the mean cell time of each and their ratio (times from different machines or days compare
hardware, not code).

Example:
    >>> old = [{"dataset": "yacht", "method": "mc_dropout", "split": k, "metric": "test_ll",
    ...         "value": v} for k, v in enumerate([-1.0, -1.2, -0.8])]
    >>> new = [{**r, "value": r["value"] + 0.01} for r in old[:2]]
    >>> row = reproduction_table(new, old).iloc[0]
    >>> int(row["n_splits"]), round(float(row["difference"]), 6), bool(row["within_one_se"])
    (2, 0.01, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from comparisons.report.tables import records_frame
from comparisons.report.uci import format_mean_se, summarize

__all__ = ["REPRODUCTION_METRICS", "MATCHED_SETTINGS", "REPRODUCTION_COLUMNS",
           "reproduction_table", "reproduction_markdown", "unmatched_runs"]

#: metrics compared by default
REPRODUCTION_METRICS = ("rmse", "test_ll")
#: settings that must be equal for two cells to be compared (where both runs record them)
MATCHED_SETTINGS = ("epochs_multiplier", "num_samples")
#: columns of :func:`reproduction_table`
REPRODUCTION_COLUMNS = (
    "dataset", "method", "epochs_multiplier", "num_samples", "metric", "n_splits", "mean", "se",
    "earlier_mean", "earlier_se", "difference", "difference_se", "difference_in_earlier_se",
    "within_one_se", "cell_time_s", "earlier_cell_time_s", "time_ratio")

_BASE = ("dataset", "method", "split", "metric", "value")
_NO_SETTING = -1.0  # stands for an absent setting inside (settings are positive)


def _shown(value: Any) -> str:
    """A value of a records file as an error message quotes it: text in quotes, numbers bare."""
    return repr(value) if isinstance(value, str) else str(value.item() if hasattr(value, "item")
                                                            else value)


def _numeric(df: pd.DataFrame, column: str, what: str) -> pd.Series:
    """``df[column]`` as floats (empty: NaN), or a ``ValueError`` that names the column, the
    first value that is not a number and the file it came from (``source_file``)."""
    values = pd.to_numeric(df[column], errors="coerce").astype(float)
    bad = values.isna() & df[column].notna() & (df[column].astype(str).str.strip() != "")
    if bad.any():
        i = bad.idxmax()
        where = f" of {df.at[i, 'source_file']}" if "source_file" in df.columns else ""
        raise ValueError(f"the {what}{where} have a {column} that is not a number: "
                         f"{_shown(df.at[i, column])} ({df.at[i, 'dataset']} {df.at[i, 'method']})")
    return values


def _frame(records, what: str) -> pd.DataFrame:
    df = records_frame(records, what, _BASE).reset_index(drop=True)
    for column in ("value", *MATCHED_SETTINGS, "wall_time_s"):
        if column in df.columns:
            df[column] = _numeric(df, column, what)
    split = _numeric(df, "split", what)
    bad = split.isna() | (split != split.round()) | (split < 0)
    if bad.any():
        i = bad.idxmax()
        where = f" of {df.at[i, 'source_file']}" if "source_file" in df.columns else ""
        raise ValueError(f"the {what}{where} have a split that is not a whole number >= 0: "
                         f"{_shown(df.at[i, 'split'])} ({df.at[i, 'dataset']} {df.at[i, 'method']})")
    df["split"] = split.astype(int)
    return df


def _cell_times(df: pd.DataFrame, shared: pd.DataFrame, keys: list[str],
                name: str) -> pd.DataFrame:
    """Per ``keys``: the mean over the ``shared`` splits of each cell's ``wall_time_s`` (the
    cell's first record's) as column ``name``; NaN without a ``wall_time_s`` column."""
    if "wall_time_s" not in df.columns:
        return shared[keys].drop_duplicates().assign(**{name: np.nan})
    cells = (df.merge(shared, on=[*keys, "split"]).groupby([*keys, "split"], sort=False,
                                                         dropna=False)["wall_time_s"].first())
    return (cells.astype(float).groupby(keys, sort=False, dropna=False).mean()
            .rename(name).reset_index())


def _matched(records, earlier, metrics):
    """Both runs as frames (settings NaN -> sentinel), the matching keys, and the records of
    ``metrics`` present in both (``value`` and ``value_earlier``)."""
    new, old = _frame(records, "records"), _frame(earlier, "earlier records")
    settings = [s for s in MATCHED_SETTINGS if s in new.columns and s in old.columns]
    keys = ["dataset", "method", *settings]
    for df in (new, old):  # a method without a setting (NaN) is matched on its absence: a
        for s in settings:  # sentinel, so that no grouping drops it, NaN again in the result
            df[s] = df[s].astype(float).fillna(_NO_SETTING)
    metrics = [m for m in metrics if m in set(new["metric"]) | set(old["metric"])]
    new_m, old_m = new[new["metric"].isin(metrics)], old[old["metric"].isin(metrics)]
    on = [*keys, "split", "metric"]
    for df, what in ((new_m, "records"), (old_m, "earlier records")):
        dup = df.duplicated(on, keep=False)
        if dup.any():
            example = df.loc[dup, on].head(1).to_dict("records")[0]
            raise ValueError(f"the {what} hold several records of one cell and metric, e.g. "
                             f"{example}; give one run's records")
    pair = new_m[[*on, "value"]].merge(old_m[[*on, "value"]], on=on,
                                       suffixes=("", "_earlier"))
    return new, old, keys, pair


def unmatched_runs(records: pd.DataFrame | Iterable[Mapping[str, Any]],
                   earlier: pd.DataFrame | Iterable[Mapping[str, Any]],
                   metrics: Sequence[str] = REPRODUCTION_METRICS) -> list[str]:
    """The (data set, method, epochs multiplier) of ``records`` that share no cell with
    ``earlier`` (left out of :func:`reproduction_table`), as ``"dataset method xN"`` texts.

    Example:
        >>> old = [{"dataset": "yacht", "method": "mc_dropout", "split": 0, "metric": "rmse",
        ...         "value": 1.0}]
        >>> unmatched_runs(old + [{**old[0], "method": "mfvi"}], old)
        ['yacht mfvi']
    """
    new, _, keys, pair = _matched(records, earlier, metrics)
    new = new[new["metric"].isin(list(metrics))]
    found = set(map(tuple, pair[keys].values))
    out = []
    for key in dict.fromkeys(map(tuple, new[keys].values)):
        if key not in found:
            named = dict(zip(keys, key))
            em = named.get("epochs_multiplier", _NO_SETTING)
            out.append(f"{named['dataset']} {named['method']}"
                       + ("" if em == _NO_SETTING else f" x{em:g}"))
    return out


def reproduction_table(records: pd.DataFrame | Iterable[Mapping[str, Any]],
                       earlier: pd.DataFrame | Iterable[Mapping[str, Any]],
                       metrics: Sequence[str] = REPRODUCTION_METRICS) -> pd.DataFrame:
    r"""``records`` against ``earlier``, paired by split (see the module docstring).

    Args:
        records: tidy records of the new run (a frame or dicts; e.g. from
            :func:`comparisons.report.uci_comparison.load_records` or
            :meth:`comparisons.runner.store.ResultsStore.load_records`).
        earlier: tidy records of the earlier run, the same columns.
        metrics: the metrics compared (default :data:`REPRODUCTION_METRICS`); a metric that
            neither run has is left out.

    Returns:
        One row per (data set, method, setting, metric) with at least one shared split, columns
        :data:`REPRODUCTION_COLUMNS`: ``n_splits`` shared splits; ``mean``/``se`` and
        ``earlier_mean``/``earlier_se`` over them (SE ``std(ddof=1) / sqrt(n)``, NaN for one
        split); ``difference`` :math:`\bar d` and ``difference_se`` its paired SE;
        ``difference_in_earlier_se`` :math:`\bar d / \mathrm{SE}^{\mathrm{earlier}}` (``inf``
        for a nonzero difference over an earlier SE of 0) and ``within_one_se``
        (``|difference| <= earlier_se``, an exact tie counts as within; a nullable boolean,
        ``<NA>`` where the earlier SE is undefined, one shared split, and so is the ratio);
        ``cell_time_s``, ``earlier_cell_time_s`` (mean ``wall_time_s`` over the shared splits,
        NaN where a run does not record it) and ``time_ratio`` (new / earlier). Settings a run
        does not record are NaN.

    Raises:
        ValueError: either run lacks a column of ``dataset, method, split, metric, value``, has
            two records of one (data set, method, setting, split, metric), a split, value,
            setting or ``wall_time_s`` that is not a number (or a split that is not a whole
            number; the message names the column, the value and its ``source_file``), or the
            two runs share no cell (the message names what each run has).
    """
    new, old, keys, pair = _matched(records, earlier, metrics)
    if pair.empty:
        def cells(df):
            shown = df[keys].replace(_NO_SETTING, "none").astype(str)
            return sorted("/".join(row) for row in dict.fromkeys(map(tuple, shown.values)))[:3]
        raise ValueError(f"the runs share no cell ({'/'.join(keys)}, split) of metrics "
                         f"{list(metrics)}: the records have {cells(new)}, the earlier records "
                         f"{cells(old)}")
    on = [*keys, "split", "metric"]
    shared = pair[[*keys, "split"]].drop_duplicates()
    pair["difference"] = pair["value"] - pair["value_earlier"]

    def stats(column: str, prefix: str) -> pd.DataFrame:
        out = summarize(pair[on].assign(value=pair[column].to_numpy()), by=keys)
        return out.rename(columns={"mean": f"{prefix}mean", "se": f"{prefix}se"})

    table = stats("value", "").merge(
        stats("value_earlier", "earlier_").drop(columns="n_splits"), on=[*keys, "metric"]
    ).merge(stats("difference", "difference_").drop(columns="n_splits"), on=[*keys, "metric"])
    table = table.rename(columns={"difference_mean": "difference"})
    for df, name in ((new, "cell_time_s"), (old, "earlier_cell_time_s")):
        table = table.merge(_cell_times(df, shared, keys, name), on=keys, how="left")
    d, e = table["difference"], table["earlier_se"]
    # one shared split has no SE: neither the ratio nor "within" can be told (NaN, <NA>), not
    # "not within"; an earlier SE of exactly 0 makes any other difference infinitely many SEs
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(e > 0, d / e.where(e > 0, 1.0), np.where(d == 0, 0.0, np.sign(d) * np.inf))
    table["difference_in_earlier_se"] = np.where(e.isna(), np.nan, ratio)
    table["within_one_se"] = pd.array(
        [pd.NA if pd.isna(se) else bool(abs(x) <= se) for x, se in zip(d, e)], dtype="boolean")
    table["time_ratio"] = table["cell_time_s"] / table["earlier_cell_time_s"]
    for s in MATCHED_SETTINGS:
        table[s] = table[s].replace(_NO_SETTING, np.nan) if s in table.columns else np.nan
    table["n_splits"] = table["n_splits"].astype(int)
    return table[list(REPRODUCTION_COLUMNS)].reset_index(drop=True)


def reproduction_markdown(table: pd.DataFrame, unmatched: Sequence[str] = ()) -> str:
    """:func:`reproduction_table` as a Markdown section (a heading, one line on how to read it
    and the table, then the runs ``unmatched``, e.g. from :func:`unmatched_runs`, as not
    compared), ending with a newline.

    Example:
        >>> old = [{"dataset": "yacht", "method": "mc_dropout", "split": k, "metric": "rmse",
        ...         "value": v} for k, v in enumerate([1.0, 1.2])]
        >>> text = reproduction_markdown(reproduction_table(old, old))
        >>> [line for line in text.splitlines() if line.startswith("| yacht")]
        ['| yacht | mc_dropout | rmse | 2 | 1.10 ± 0.10 | 1.10 ± 0.10 | 0 ± 0 | 0.00 | yes | – |']
    """
    lines = ["## Against the earlier run", "",
             "Split by split on the splits both runs have: the paired difference (this run "
             "minus the earlier) ± its SE, and the difference in units of the earlier run's SE "
             "over the same splits (within one SE: |.| <= 1; – where one split is shared and "
             "there is no SE). Cell time: the mean wall time per split, this run / the earlier "
             "(machines and days differ).", ""]
    columns = ["data set", "method", "metric", "splits", "this run", "earlier run",
               "difference", "in earlier SEs", "within 1 SE", "cell time (s)"]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in table.iterrows():
        setting = ("" if pd.isna(r["epochs_multiplier"])
                   else f" x{float(r['epochs_multiplier']):g}")
        d, s = r["difference"], r["difference_se"]
        time = ("–" if pd.isna(r["cell_time_s"]) or pd.isna(r["earlier_cell_time_s"]) else
                f"{r['cell_time_s']:.1f} / {r['earlier_cell_time_s']:.1f} "
                f"({r['time_ratio']:.2f}x)")
        cells = [str(r["dataset"]), f"{r['method']}{setting}", str(r["metric"]),
                 str(int(r["n_splits"])), format_mean_se(r["mean"], r["se"], None),
                 format_mean_se(r["earlier_mean"], r["earlier_se"], None),
                 "0 ± 0" if d == 0 and s == 0 else format_mean_se(d, s, None),
                 ("–" if pd.isna(r["difference_in_earlier_se"])
                  else f"{r['difference_in_earlier_se']:.2f}"),
                 ("–" if pd.isna(r["within_one_se"]) else
                  "yes" if r["within_one_se"] else "**no**"), time]
        lines.append("| " + " | ".join(cells) + " |")
    if unmatched:
        lines += ["", f"Not in the earlier run (not compared): {', '.join(unmatched)}."]
    return "\n".join(lines) + "\n"
