"""One comparison of every method on the UCI data sets, gathered from several result folders,
with the published numbers beside and a paired ranking (``python -m comparisons uci-table``).

Input is the tidy ``records.csv`` of ``python -m comparisons uci`` runs (columns ``dataset``,
``method``, ``split``, ``metric``, ``value``, optionally setting columns such as
``epochs_multiplier``, ``num_samples``, ``temperature``, ``ensemble_size``). Each row of the
comparison is a *variant*: the method id, plus `` x<epochs_multiplier>`` when that method was run
at more than one epochs multiplier across the inputs (``mc_dropout x10``, ``mc_dropout x100``).
Two inputs with records of the same (data set, variant, split, metric) are an error, never
merged. Each file is read by :func:`comparisons.runner.records_file.read_records`, the one
reader of records (it refuses a truncated, malformed, non-finite or duplicated file), and every
record needs a split.

Outputs of :func:`write_comparison_report`, each written atomically
(:func:`comparisons.runner.store.atomic_write_text`):

* ``records.csv``: the combined records, with ``variant`` and ``source_file``;
* ``report.md``: an overview (test log-likelihood, data sets x variants), then per data set the
  mean ± SE over splits of each metric, the published numbers and the best variant by test LL
  and by RMSE against the next one (:func:`paired_ranking`);
* ``ranking.csv``: both rankings.

The published numbers (``data/published_uci.csv``, :func:`load_published`) are long, one row
per (data set, method, setting, metric): ``dataset, method, setting, metric, mean, spread,
spread_kind, source``; ``metric`` is ``rmse`` or ``test_ll``; ``spread_kind`` says what the ±
of the source is: ``sd`` (a standard deviation over splits), ``se`` (a standard error) or
``unknown`` (not stated); shown as ``(SD)``, ``(SE)`` and ``(±?)``.

Example:
    >>> recs = [{"dataset": "yacht", "method": m, "split": k, "metric": "test_ll", "value": v}
    ...         for m, vals in (("mc_dropout", [-1.0, -2.0]), ("gp_se", [-3.0, -3.5]))
    ...         for k, v in enumerate(vals)]
    >>> paired_ranking(recs, "test_ll", higher_is_better=True)["variant"].tolist()
    ['mc_dropout', 'gp_se']

Why one module of this size: the one comparison report: reading the records of several runs, the
published numbers, the ranks and the paired tests, and the table and figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comparisons.report.styles import METHOD_STYLES
from comparisons.report.tables import markdown_table, records_frame
from comparisons.report.uci import format_mean_se, summarize
from comparisons.report.uci_reproduction import (
    reproduction_markdown,
    reproduction_table,
    unmatched_runs,
)
from comparisons.runner.records_file import NON_EMPTY_FIELDS, read_records, records_path
from comparisons.runner.store import REQUIRED_FIELDS, atomic_write_text

__all__ = [
    "DEFAULT_METRICS",
    "PUBLISHED_COLUMNS",
    "SHOWN_PUBLISHED_SETTINGS",
    "PUBLISHED_METRICS",
    "PUBLISHED_PATH",
    "SETTING_COLUMNS",
    "SIGNIFICANCE_SE",
    "SPREAD_KINDS",
    "comparison_markdown",
    "comparison_table",
    "load_published",
    "load_records",
    "paired_ranking",
    "write_comparison_report",
]

#: metrics of the comparison table, in this order
DEFAULT_METRICS = ("rmse", "test_ll", "coverage_95", "wall_time_s")
#: columns of the published numbers' CSV
PUBLISHED_COLUMNS = ("dataset", "method", "setting", "metric", "mean", "spread", "spread_kind",
                     "source")
#: metrics the published numbers may have
PUBLISHED_METRICS = ("rmse", "test_ll")
#: what the ± of a published number is -> its marking in the report
SPREAD_KINDS = {"sd": "(SD)", "se": "(SE)", "unknown": "(±?)"}
#: the packaged published numbers
PUBLISHED_PATH = Path(__file__).parent / "data" / "published_uci.csv"
#: run settings listed beside each variant in the report (those present in the records)
SETTING_COLUMNS = ("epochs_multiplier", "num_samples", "temperature", "ensemble_size")
#: a paired difference counts as real when ``|mean| > SIGNIFICANCE_SE * SE``
SIGNIFICANCE_SE = 2.0

_KEYS = ["dataset", "variant", "split", "metric"]
_RUN, _PUBLISHED = "run", "published"
_LABELS = {"wall_time_s": "wall_time_s (per split)"}
#: joins several sources (files, publications) in one cell of the table
_SOURCE_SEP = "\n"


# --- records ----------------------------------------------------------------------------------
def _read_records(path: Path) -> pd.DataFrame:
    """The records of ``path`` (:func:`comparisons.runner.records_file.read_records`, with a
    split on every record), without a ``variant`` or ``source_file`` of an earlier combination."""
    df = read_records(path, non_empty=(*NON_EMPTY_FIELDS, "split"))
    if "epochs_multiplier" in df.columns:
        try:
            df["epochs_multiplier"] = df["epochs_multiplier"].astype(float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"records file {path}: non-numeric epochs_multiplier: "
                             f"{exc}") from None
    return df.drop(columns=[c for c in ("variant", "source_file") if c in df.columns])


def _add_variants(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (a copy) with an ``epochs_multiplier`` column and ``variant``."""
    df = df.copy()
    if "epochs_multiplier" not in df.columns:
        df["epochs_multiplier"] = np.nan
    df["epochs_multiplier"] = df["epochs_multiplier"].astype(float)
    counts = df.groupby("method", sort=False)["epochs_multiplier"].nunique(dropna=False)
    several = set(counts[counts > 1].index)
    df["variant"] = [f"{m} x{e:g}" if m in several and not math.isnan(e) else m
                     for m, e in zip(df["method"], df["epochs_multiplier"])]
    return df


def _key_text(key: Sequence[Any]) -> str:
    return ", ".join(f"{k}={v.item() if hasattr(v, 'item') else v}" for k, v in zip(_KEYS, key))


def _check_unique(df: pd.DataFrame) -> None:
    """Raise ``ValueError`` when records share (dataset, variant, split, metric)."""
    dup = df.duplicated(_KEYS, keep=False)
    if not dup.any():
        return
    sources = (df["source_file"] if "source_file" in df.columns
               else pd.Series("the records", index=df.index))
    groups = [(key, list(dict.fromkeys(sources[idx])))
              for key, idx in df[dup].groupby(_KEYS, sort=False).groups.items()]
    across = [(key, files) for key, files in groups if len(files) > 1]
    if across:
        key, files = across[0]
        raise ValueError(
            f"records of the same (dataset, variant, split, metric) in {files[0]} and "
            f"{files[1]}, e.g. {_key_text(key)} ({len(across)} such keys); give each run once "
            "(runs at different epochs multipliers are kept apart by their epochs_multiplier)")
    key, files = groups[0]
    raise ValueError(
        f"{files[0]} holds several records for {_key_text(key)} ({len(groups)} such keys; "
        "runs of other settings, e.g. num_samples, in one file?); deduplicate it")


def _prepared(records: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Tidy records with ``variant`` (added when absent), checked for duplicates."""
    df = records_frame(records, "records", REQUIRED_FIELDS)
    if "variant" not in df.columns:
        df = _add_variants(df)
    elif "epochs_multiplier" not in df.columns:
        df["epochs_multiplier"] = np.nan
    df["epochs_multiplier"] = df["epochs_multiplier"].astype(float)
    df["value"] = df["value"].astype(float)
    _check_unique(df)
    return df


def load_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read and combine the ``records.csv`` of several runs.

    Args:
        paths: ``records.csv`` files or the output folders holding them (one path or several).

    Returns:
        The records of all files, with ``source_file`` (the file each came from),
        ``epochs_multiplier`` (NaN where a file has none) and ``variant``: the method id, plus
        `` x<epochs_multiplier>`` (``:g``) for the records with a multiplier of a method that
        appears with more than one value of it (an absent multiplier counting as one value).
        A ``variant`` or ``source_file`` column already in a file (e.g. the combined
        ``records.csv`` of :func:`write_comparison_report`) is replaced.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder without ``records.csv``.
        ValueError: no paths, a file given twice, a file the records reader refuses
            (:class:`~comparisons.runner.records_file.RecordsFileError`: empty, truncated, a
            malformed row, missing columns, a record without a split, a value that is not a
            finite number, a record twice, or disagreeing with its ``records.json`` or
            ``cells/``; see :func:`~comparisons.runner.records_file.read_records`), or records
            of the same (dataset, variant, split, metric) in two files or twice in one (the
            message names the file(s), the line or a key).

    Example:
        >>> import pathlib, tempfile
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (run / "records.csv").write_text(
        ...     "dataset,method,split,metric,value\\nyacht,mc_dropout,0,rmse,1.5\\n")
        >>> load_records([run])[["variant", "value"]].values.tolist()
        [['mc_dropout', 1.5]]
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files = [records_path(p) for p in paths]
    if not files:
        raise ValueError("no records files given")
    seen: dict[Path, Path] = {}
    for f in files:
        if f.resolve() in seen:
            raise ValueError(f"records file {f} given twice (also as {seen[f.resolve()]})")
        seen[f.resolve()] = f
    frames = []
    for f in files:
        df = _read_records(f)
        df["source_file"] = str(f)
        frames.append(df)
    df = _add_variants(pd.concat(frames, ignore_index=True))
    _check_unique(df)
    return df


# --- published numbers -----------------------------------------------------------------------
def _read_csv(path: Path, what: str, columns: Sequence[str], **read_kwargs) -> pd.DataFrame:
    """``path`` read as CSV, refused (naming ``what`` and the file) when empty or without one of
    ``columns``."""
    try:
        df = pd.read_csv(path, **read_kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what} file {path} is empty") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} file {path} lacks column(s) {missing}; have "
                         f"{list(df.columns)}")
    return df


def load_published(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read and check the published numbers.

    Args:
        path: a CSV with :data:`PUBLISHED_COLUMNS`; default: the packaged
            :data:`PUBLISHED_PATH`.

    Returns:
        One row per (dataset, method, setting, metric) with those columns; data set names and
        aliases are read as the canonical names (:func:`comparisons.datasets.uci.resolve_uci_name`),
        method spellings as the ids; an empty ``setting``, ``source`` or ``spread`` stays ``""``,
        ``""`` and NaN.

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing columns, an unknown data set, an empty method, a metric not in
            :data:`PUBLISHED_METRICS`, a ``spread_kind`` not in :data:`SPREAD_KINDS`, a mean that
            is not a finite number, a negative or non-numeric spread, or a repeated row (the
            message names the file and line).

    Example:
        >>> import pathlib, tempfile
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "published.csv"
        >>> _ = f.write_text("dataset,method,setting,metric,mean,spread,spread_kind,source\\n"
        ...                  "boston,mc_dropout,,rmse,2.97,0.85,sd,Gal 2016\\n")
        >>> load_published(f)[["dataset", "mean", "spread_kind"]].values.tolist()
        [['bostonHousing', 2.97, 'sd']]
    """
    from comparisons.datasets.uci import resolve_uci_name

    path = PUBLISHED_PATH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"published numbers file {path} does not exist")
    text_columns = [c for c in PUBLISHED_COLUMNS if c not in ("mean", "spread")]
    raw = _read_csv(path, "published numbers", PUBLISHED_COLUMNS, dtype=str,
                    keep_default_na=False)
    df = raw[list(PUBLISHED_COLUMNS)].copy()
    for c in text_columns:
        df[c] = df[c].str.strip()
    df["mean"] = pd.to_numeric(df["mean"].str.strip(), errors="coerce")
    df["spread"] = pd.to_numeric(df["spread"].str.strip().replace("", "nan"), errors="coerce")
    for i, row in df.iterrows():
        where = f"{path} line {int(i) + 2}"
        try:
            df.at[i, "dataset"] = resolve_uci_name(row["dataset"])
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        problem = None
        if not row["method"]:
            problem = "empty method"
        elif row["metric"] not in PUBLISHED_METRICS:
            problem = f"metric {row['metric']!r} is not one of {list(PUBLISHED_METRICS)}"
        elif row["spread_kind"] not in SPREAD_KINDS:
            problem = f"spread_kind {row['spread_kind']!r} is not one of {list(SPREAD_KINDS)}"
        elif not math.isfinite(row["mean"]):
            problem = f"mean {raw.at[i, 'mean']!r} is not a finite number"
        elif ((math.isnan(row["spread"]) and raw.at[i, "spread"].strip())
              or row["spread"] < 0 or math.isinf(row["spread"])):
            problem = f"spread {raw.at[i, 'spread']!r} is not a number >= 0 (or empty)"
        if problem:
            raise ValueError(f"{where}: {problem}")
    keys = ["dataset", "method", "setting", "metric"]
    dup = df.duplicated(keys, keep="first")
    if dup.any():
        i = dup.idxmax()
        raise ValueError(f"{path} line {int(i) + 2}: a second row for "
                         f"{df.loc[i, keys].to_dict()}")
    return df.reset_index(drop=True)


# --- the comparison table --------------------------------------------------------------------
def _dataset_order(names: Iterable[str]) -> list[str]:
    return sorted(dict.fromkeys(names), key=lambda d: (str(d).lower(), str(d)))


def _variant_order(df: pd.DataFrame) -> list[str]:
    """Variants by the method order of :data:`METHOD_STYLES` (unknown methods after, by first
    appearance), then by epochs multiplier (none first)."""
    known = {m: i for i, m in enumerate(METHOD_STYLES)}
    first = {m: i for i, m in enumerate(dict.fromkeys(df["method"]))}
    rows = df[["variant", "method", "epochs_multiplier"]].drop_duplicates("variant")

    def key(row):
        m, e = row
        none = math.isnan(e)
        return known.get(m, len(known) + first[m]), not none, 0.0 if none else e

    order = sorted(zip(rows["variant"], zip(rows["method"], rows["epochs_multiplier"])),
                   key=lambda ve: key(ve[1]))
    return [v for v, _ in order]


def _setting_text(df: pd.DataFrame) -> str:
    parts = []
    for c in SETTING_COLUMNS:
        if c in df.columns:
            values = [v for v in dict.fromkeys(df[c].dropna()) if v != ""]
            if values:
                parts.append(f"{c}=" + "/".join(f"{v:g}" if isinstance(v, float) else str(v)
                                                for v in values))
    return ", ".join(parts)


def _empty_metric_cells(metrics: Sequence[str]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for m in metrics:
        cells.update({f"{m}_mean": np.nan, f"{m}_spread": np.nan, f"{m}_spread_kind": "",
                      f"{m}_n": pd.NA})
    return cells


def _published_rows(published: pd.DataFrame, metrics: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    groups = published.groupby(["dataset", "method", "setting"], sort=False)
    for (dataset, method, setting), g in groups:
        row = {"dataset": dataset, "kind": _PUBLISHED,
               "variant": f"{method} ({setting})" if setting else method, "method": method,
               "epochs_multiplier": np.nan, "setting": setting, "n_splits": pd.NA,
               "source": _SOURCE_SEP.join(s for s in dict.fromkeys(g["source"]) if s),
               **_empty_metric_cells(metrics)}
        for _, r in g.iterrows():
            if r["metric"] in metrics:
                row.update({f"{r['metric']}_mean": float(r["mean"]),
                            f"{r['metric']}_spread": float(r["spread"]),
                            f"{r['metric']}_spread_kind": r["spread_kind"]})
        rows.append(row)
    return rows


def comparison_table(records: pd.DataFrame | Iterable[Mapping[str, Any]],
                     published: pd.DataFrame | None = None,
                     metrics: Sequence[str] = DEFAULT_METRICS) -> pd.DataFrame:
    """Mean ± standard error over splits of each metric per (data set, variant), with the
    published numbers as extra rows.

    Args:
        records: tidy records, e.g. from :func:`load_records` (without ``variant`` it is added
            as there).
        published: the published numbers (:func:`load_published`); ``None``: none.
        metrics: the metric columns, in this order; a metric without records is NaN.

    Returns:
        One row per (data set, variant) with ``kind == "run"``, then per data set the published
        rows (``kind == "published"``, ``variant`` = ``"method (setting)"``), sorted by data set,
        then the method order of :data:`comparisons.report.styles.METHOD_STYLES` (unknown
        methods after, by first appearance) and epochs multiplier. Columns ``dataset, kind,
        variant, method, epochs_multiplier, setting, n_splits, source`` (``setting``: the
        :data:`SETTING_COLUMNS` of the run; ``n_splits``: distinct splits of any metric;
        ``source``: the records files or the publications, one per line), then per metric
        ``<m>_mean``,
        ``<m>_spread``, ``<m>_spread_kind`` and ``<m>_n``: for runs the mean, the SE
        ``std(ddof=1) / sqrt(n)`` (:func:`comparisons.report.uci.summarize`), ``"se"`` and the
        number of splits ``n``; for published rows the mean, the published ± and its kind
        (``sd``, ``se`` or ``unknown``).

    Raises:
        ValueError: missing columns, or records of the same (dataset, variant, split, metric).

    Example:
        >>> recs = [{"dataset": "yacht", "method": "mc_dropout", "split": k, "metric": "rmse",
        ...          "value": v} for k, v in enumerate([1.0, 3.0])]
        >>> row = comparison_table(recs).iloc[0]
        >>> row["variant"], float(row["rmse_mean"]), float(row["rmse_spread"]), int(row["n_splits"])
        ('mc_dropout', 2.0, 1.0, 2)
    """
    metrics = list(metrics)
    df = _prepared(records)
    present = [m for m in metrics if m in set(df["metric"])]
    summary = (summarize(df[df["metric"].isin(present)], metrics=present,
                         by=("dataset", "variant")) if present else None)
    cells = {} if summary is None else {
        (r["dataset"], r["variant"], r["metric"]): r for _, r in summary.iterrows()}
    variant_rank = {v: i for i, v in enumerate(_variant_order(df))}
    rows = []
    for (dataset, variant), g in df.groupby(["dataset", "variant"], sort=False):
        row = {"dataset": dataset, "kind": _RUN, "variant": variant,
               "method": g["method"].iloc[0],
               "epochs_multiplier": float(g["epochs_multiplier"].iloc[0]),
               "setting": _setting_text(g),
               "n_splits": int(g["split"].nunique()),
               "source": (_SOURCE_SEP.join(dict.fromkeys(g["source_file"].astype(str)))
                          if "source_file" in g.columns else ""),
               **_empty_metric_cells(metrics)}
        for m in present:
            if (dataset, variant, m) in cells:
                s = cells[(dataset, variant, m)]
                row.update({f"{m}_mean": float(s["mean"]), f"{m}_spread": float(s["se"]),
                            f"{m}_spread_kind": "se", f"{m}_n": int(s["n_splits"])})
        row["_order"] = variant_rank[variant]
        rows.append(row)
    if published is not None:
        for i, row in enumerate(_published_rows(published, metrics)):
            rows.append({**row, "_order": i})
    columns = ["dataset", "kind", "variant", "method", "epochs_multiplier", "setting", "n_splits",
               "source", *[f"{m}_{c}" for m in metrics for c in ("mean", "spread", "spread_kind",
                                                                   "n")]]
    table = pd.DataFrame(rows, columns=[*columns, "_order"])
    dataset_rank = {d: i for i, d in enumerate(_dataset_order(table["dataset"]))}
    table["_d"] = table["dataset"].map(dataset_rank)
    table["_k"] = (table["kind"] == _PUBLISHED).astype(int)
    table = table.sort_values(["_d", "_k", "_order"], kind="stable")[columns]
    for c in ["n_splits", *[f"{m}_n" for m in metrics]]:
        table[c] = table[c].astype("Int64")
    for m in metrics:
        table[f"{m}_mean"] = table[f"{m}_mean"].astype(float)
        table[f"{m}_spread"] = table[f"{m}_spread"].astype(float)
    return table.reset_index(drop=True)


# --- the paired ranking ----------------------------------------------------------------------
_RANKING_COLUMNS = ["dataset", "metric", "higher_is_better", "rank", "variant", "mean",
                    "n_splits", "best", "mean_diff", "se", "n_shared", "significant"]


def paired_ranking(records: pd.DataFrame | Iterable[Mapping[str, Any]], metric: str,
                   higher_is_better: bool) -> pd.DataFrame:
    """Per data set, the best variant by its mean of ``metric`` and how far each other variant
    is from it, paired by split.

    The comparison of the best with another variant is paired over their SHARED splits only:
    the per-split differences ``best - other`` (so positive for ``test_ll``, negative for
    ``rmse``), their mean, and its standard error ``std(ddof=1) / sqrt(n_shared)``. The
    difference counts as ``significant`` when ``|mean_diff| > 2 SE``
    (:data:`SIGNIFICANCE_SE`), about a 95% two-sided normal interval. The splits overlap in
    their training data, so the differences are not independent and this SE is optimistic
    (Nadeau & Bengio 2003, *Inference for the generalization error*); it is reported as is, not
    corrected: "significant" is a lower bar than it reads. The best is picked by each variant's
    mean over all its own splits, which may differ from the mean over the shared ones.

    Args:
        records: tidy records (``variant`` is added as in :func:`load_records` when absent).
        metric: e.g. ``"test_ll"`` or ``"rmse"``.
        higher_is_better: ``True`` for ``test_ll``, ``False`` for ``rmse``.

    Returns:
        One row per (data set, variant with a finite mean), ``rank`` 1 the best, with columns
        ``dataset, metric, higher_is_better, rank, variant, mean, n_splits, best, mean_diff, se,
        n_shared, significant``. The best's own row has NA ``mean_diff``, ``se``, ``n_shared``
        and ``significant``; ``se`` is NaN and ``significant`` False below 2 shared splits.
        Data sets in name order, ties in the order of :func:`comparison_table`.

    Raises:
        ValueError: missing columns, or records of the same (dataset, variant, split, metric).

    Example:
        >>> recs = [{"dataset": "yacht", "method": m, "split": k, "metric": "rmse", "value": v}
        ...         for m, vals in (("mc_dropout", [1.0, 2.0, 3.0]), ("gp_se", [2.0, 2.5, 4.0]))
        ...         for k, v in enumerate(vals)]
        >>> r = paired_ranking(recs, "rmse", higher_is_better=False).iloc[1]
        >>> r["best"], r["variant"], float(r["mean_diff"]), int(r["n_shared"]), bool(r["significant"])
        ('mc_dropout', 'gp_se', -0.8333333333333334, 3, True)
    """
    df = _prepared(records)
    order = {v: i for i, v in enumerate(_variant_order(df))}
    df = df[df["metric"] == metric]
    rows = []
    for dataset in _dataset_order(df["dataset"]):
        sub = df[df["dataset"] == dataset]
        wide = sub.pivot(index="split", columns="variant", values="value")
        means = wide.mean()
        counts = wide.count()
        valid = sorted((v for v in wide.columns if math.isfinite(means[v])), key=order.__getitem__)
        ranked = sorted(valid, key=lambda v: -means[v] if higher_is_better else means[v])
        if not ranked:
            continue
        best = ranked[0]
        for rank, v in enumerate(ranked, start=1):
            row = {"dataset": dataset, "metric": metric, "higher_is_better": bool(higher_is_better),
                   "rank": rank, "variant": v, "mean": float(means[v]), "n_splits": int(counts[v]),
                   "best": best, "mean_diff": np.nan, "se": np.nan, "n_shared": pd.NA,
                   "significant": pd.NA}
            if v != best:
                pair = wide[[best, v]].dropna()
                diff = (pair[best] - pair[v]).to_numpy(dtype=np.float64)
                n = diff.size
                mean = float(diff.mean()) if n else np.nan
                se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else np.nan
                row.update({"mean_diff": mean, "se": se, "n_shared": n,
                            "significant": bool(math.isfinite(se)
                                                and abs(mean) > SIGNIFICANCE_SE * se)})
            rows.append(row)
    out = pd.DataFrame(rows, columns=_RANKING_COLUMNS)
    out["n_shared"] = out["n_shared"].astype("Int64")
    out["significant"] = out["significant"].astype("boolean")
    out["mean_diff"] = out["mean_diff"].astype(float)
    out["se"] = out["se"].astype(float)
    return out


# --- Markdown --------------------------------------------------------------------------------
def _metrics_of(table: pd.DataFrame) -> list[str]:
    return [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]


def _run_cell(row: pd.Series, metric: str) -> str:
    mean = row[f"{metric}_mean"]
    if not math.isfinite(mean):
        return "–"
    return format_mean_se(mean, row[f"{metric}_spread"], None)


def _written_decimals(value: float) -> int:
    """Digits after the point of ``value`` as written in a CSV (its shortest repr)."""
    if not math.isfinite(value):
        return 0
    return max(0, -int(Decimal(repr(float(value))).as_tuple().exponent))


def _published_cell(row: pd.Series, metric: str) -> str:
    """``mean ± spread (SD)`` with the decimals of the source (at least 2; trailing zeros are
    not kept by the CSV's numbers), ``mean`` alone without a spread, ``–`` without a mean."""
    mean = row.get(f"{metric}_mean", np.nan)
    if mean is None or not math.isfinite(mean):
        return "–"
    spread = row[f"{metric}_spread"]
    decimals = max(2, _written_decimals(mean), _written_decimals(spread))
    text = format_mean_se(mean, spread, decimals if decimals <= 6 else None)
    if not math.isfinite(spread):
        return text.removesuffix(" ± n/a")
    return f"{text} {SPREAD_KINDS[row[f'{metric}_spread_kind']]}"


def _md(text: str) -> str:
    """``text`` for a Markdown table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _best_line(ranking: pd.DataFrame | None, dataset: str, name: str) -> str:
    r = (ranking[ranking["dataset"] == dataset].sort_values("rank")
         if ranking is not None else pd.DataFrame())
    if r.empty:
        return f"Best {name}: – (no records)"
    best = r.iloc[0]
    if len(r) == 1:
        return f"Best {name}: {best['variant']} (no other variant)"
    nxt = r.iloc[1]
    n = int(nxt["n_shared"])
    if n == 0:
        return f"Best {name}: {best['variant']} (next: {nxt['variant']}, no shared splits)"
    if not math.isfinite(nxt["se"]):
        verdict = "no SE from fewer than 2 shared splits"
    else:
        verdict = "real" if bool(nxt["significant"]) else "within noise"
    return (f"Best {name}: {best['variant']} (next: {nxt['variant']}, difference "
            f"{format_mean_se(nxt['mean_diff'], nxt['se'], None)} over {n} shared "
            f"split{'' if n == 1 else 's'}: {verdict})")


def comparison_markdown(table: pd.DataFrame, ranking_ll: pd.DataFrame | None,
                        ranking_rmse: pd.DataFrame | None,
                        published: pd.DataFrame | None = None) -> str:
    """The comparison as Markdown: an overview, then one section per data set.

    The overview has one row per data set and one column per variant: the test log-likelihood,
    mean ± SE over splits, the best (rank 1 of ``ranking_ll``) in bold. Each data set's section
    has a table (variant, each metric's mean ± SE, ``wall_time_s (per split)``, ``n`` splits;
    ``–`` where a variant has no record of a metric), the published numbers of that data set
    (method, setting, rmse, test_ll as ``mean ± spread`` marked ``(SD)``, ``(SE)`` or ``(±?)``
    with the decimals of the source, and the source as a reference into the numbered list at
    the end of the report), then the lines ``Best test LL: ...`` and ``Best RMSE: ...``: the best variant, the
    next, their paired difference ± SE over the shared splits and whether it is real
    (``|difference| > 2 SE``) or within noise (see :func:`paired_ranking`).

    Args:
        table: :func:`comparison_table` (its ``run`` rows; also its ``published`` rows when
            ``published`` is ``None``).
        ranking_ll: :func:`paired_ranking` of ``test_ll`` (``None``: no line).
        ranking_rmse: :func:`paired_ranking` of ``rmse`` (``None``: no line).
        published: the published numbers (:func:`load_published`); ``None``: those in ``table``.

    Returns:
        The Markdown text, ending with a newline.

    Example:
        >>> recs = [{"dataset": "yacht", "method": "mc_dropout", "split": k, "metric": "test_ll",
        ...          "value": v} for k, v in enumerate([-1.0, -2.0])]
        >>> text = comparison_markdown(comparison_table(recs),
        ...                            paired_ranking(recs, "test_ll", True), None)
        >>> [line for line in text.splitlines() if line.startswith("| yacht")]
        ['| yacht | **-1.50 ± 0.50** |']
    """
    metrics = _metrics_of(table)
    runs = table[table["kind"] == _RUN]
    pub = (table[table["kind"] == _PUBLISHED] if published is None
           else pd.DataFrame(_published_rows(published, metrics)))
    datasets = _dataset_order(runs["dataset"])
    variants = _variant_order(runs)
    by_key = {(r["dataset"], r["variant"]): r for _, r in runs.iterrows()}
    sources: dict[str, int] = {}  # source of a published number -> its reference number
    best_ll = ({} if ranking_ll is None else
               dict(ranking_ll.loc[ranking_ll["rank"] == 1, ["dataset", "variant"]].values))

    def overview_cell(dataset: str, variant: str) -> str:
        row = by_key.get((dataset, variant))
        if row is None or "test_ll" not in metrics:
            return "–"
        text = _run_cell(row, "test_ll")
        return f"**{text}**" if best_ll.get(dataset) == variant and text != "–" else text

    lines = [
        "# UCI comparison", "",
        "Mean ± standard error over splits (std(ddof=1) / sqrt(n)) of every variant (method, "
        "with its epochs multiplier when it ran at several). The published numbers are shown as "
        "their source gives them: (SD) a standard deviation over splits, (SE) a standard error, "
        "(±?) not stated.", "",
        "Best: the variant with the best mean; difference = best − next, the mean of the "
        "per-split differences over the splits both ran (paired by split) ± its SE; 'real' when "
        f"|difference| > {SIGNIFICANCE_SE:g} SE (about a 95% two-sided normal interval). The "
        "splits share training data, so this SE is optimistic (Nadeau & Bengio 2003) and "
        "'real' is a lower bar than it reads; it is not corrected here.", "",
        "## Overview: test log-likelihood (best per data set in bold)", "",
        *markdown_table(datasets, variants, overview_cell, row_header="dataset"), "",
    ]
    for dataset in datasets:
        names = [v for v in variants if (dataset, v) in by_key]
        columns = [*metrics, "n"]
        labels = [*(_LABELS.get(m, m) for m in metrics), "n"]

        def cell(variant: str, column: str, dataset: str = dataset) -> str:
            row = by_key[(dataset, variant)]
            if column == "n":
                return str(int(row["n_splits"]))
            return _run_cell(row, column)

        lines += [f"## {dataset}", "",
                  *markdown_table(names, columns, cell, labels=labels, row_header="variant"), ""]
        rows = pub[pub["dataset"] == dataset] if len(pub) else pub
        if len(rows):
            shown = [m for m in PUBLISHED_METRICS if m in metrics] or list(PUBLISHED_METRICS)
            lines += ["Published:", "",
                      "| method | setting | " + " | ".join(shown) + " | source |",
                      "|---|---|" + "---|" * len(shown) + "---|"]
            for _, r in rows.iterrows():
                refs = [f"[{sources.setdefault(src, len(sources) + 1)}]"
                        for src in r["source"].split(_SOURCE_SEP) if src]
                lines.append(f"| {_md(r['method'])} | {_md(r['setting']) or '–'} | "
                             + " | ".join(_published_cell(r, m) for m in shown)
                             + f" | {', '.join(refs) or '–'} |")
            lines.append("")
        if ranking_ll is not None:
            lines.append(_best_line(ranking_ll, dataset, "test LL"))
        if ranking_rmse is not None:
            lines.append(_best_line(ranking_rmse, dataset, "RMSE"))
        lines.append("")
    lines += ["## Runs", ""]
    for v in variants:
        rv = runs[runs["variant"] == v]
        settings = "; ".join(s for s in dict.fromkeys(rv["setting"]) if s)
        files = ", ".join(dict.fromkeys(
            f for src in rv["source"] for f in src.split(_SOURCE_SEP) if f))
        lines.append(f"- {v}: {settings or 'no settings recorded'}"
                     + (f" ({files})" if files else ""))
    if sources:
        lines += ["", "## Sources of the published numbers", ""]
        lines += [f"{n}. {' '.join(src.split())}" for src, n in sources.items()]
    return "\n".join(lines) + "\n"


#: the published settings the report shows by default (the CSV keeps every version): the
#: paper's Table 1 and '10x epochs' columns in the corrected arXiv v6 (standard errors), the
#: 2018 grid search of the README, VI from the same table and the deep-ensemble paper's Table 1
SHOWN_PUBLISHED_SETTINGS = (
    "x10, paper Table 1 [arXiv v6 Table 1]",
    "x100, '10x epochs' [arXiv v6 Table 2]",
    "x100, grid search 2018 [readme HEAD]",
    "VI (Graves 2011) [Gal & Ghahramani Table 1]",
    "M=5, 40 epochs [Table 1]",
)


#: the files :func:`write_comparison_report` writes under its ``out``
_OUTPUT_NAMES = ("report.md", "records.csv", "ranking.csv")
#: and with ``against_paths``
_REPRODUCTION_NAME = "reproduction.csv"


def _same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file or folder (through links; either may not exist)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_out(out: Path, records_files: Sequence[Path], published: Path) -> None:
    """Refuse an ``out`` that would overwrite what is read: the folder of a records file (its
    ``records.csv`` and ``report.md``), or a written file that is the published numbers."""
    for f in records_files:
        # the folder of the file as given and of the file it links to: either is overwritten
        if _same_path(out, f.parent) or _same_path(out, f.resolve().parent):
            raise ValueError(
                f"--out {out} is the folder of the records being read ({f}): writing "
                f"{', '.join(_OUTPUT_NAMES)} there would overwrite that run's files; choose "
                "another --out")
    for name in (*_OUTPUT_NAMES, _REPRODUCTION_NAME):
        if any(_same_path(out / name, f) for f in records_files):
            raise ValueError(f"--out {out}: writing {name} there would overwrite the records "
                             "being read (through a link); choose another --out")
        if _same_path(out / name, published):
            raise ValueError(f"--out {out}: writing {name} there would overwrite the published "
                             f"numbers being read ({published}); choose another --out")


def write_comparison_report(records_paths: str | os.PathLike | Iterable[str | os.PathLike],
                            out: str | os.PathLike,
                            published_path: str | os.PathLike | None = None,
                            published_settings: Sequence[str] | None = SHOWN_PUBLISHED_SETTINGS,
                            against_paths: (str | os.PathLike | Iterable[str | os.PathLike]
                                            | None) = None,
                            ) -> dict[str, Path]:
    """Write the comparison of several runs under ``out``, each file atomically.

    Args:
        records_paths: ``records.csv`` files of ``python -m comparisons uci`` runs, or their
            output folders (see :func:`load_records`).
        out: the output folder (created if needed).
        published_path: the published numbers (:func:`load_published`); default: the packaged
            :data:`PUBLISHED_PATH`.
        published_settings: the ``setting`` values of the published rows to show (default
            :data:`SHOWN_PUBLISHED_SETTINGS`; ``None``: every row of the file).
        against_paths: the records of an earlier run of the same protocol (files or folders,
            read as ``records_paths``; ``None``: none): ``report.md`` ends with the records
            against them, split by split, and ``reproduction.csv`` holds that table
            (:func:`comparisons.report.uci_reproduction.reproduction_table`).

    Returns:
        ``{"report": out/report.md, "records": out/records.csv, "ranking": out/ranking.csv}``:
        the report (:func:`comparison_markdown`), the combined records with ``variant`` and
        ``source_file``, and the rankings of ``test_ll`` and ``rmse`` (:func:`paired_ranking`);
        with ``against_paths`` also ``"reproduction": out/reproduction.csv`` (without, a
        ``reproduction.csv`` left in ``out`` by an earlier comparison is removed).

    Raises:
        FileNotFoundError: a records path or the published file does not exist.
        ValueError: ``out`` is the folder of a records file being read, or one of the files
            written would replace a file being read (checked before anything is read or
            written); a path in both ``records_paths`` and ``against_paths``; the records and
            the earlier records share no cell; see also
            :func:`load_records` and :func:`load_published`.

    Example:
        >>> write_comparison_report(["runs/x10", "runs/x100"], "runs/compare")  # doctest: +SKIP
    """
    out = Path(out)
    if isinstance(records_paths, str | os.PathLike):
        records_paths = [records_paths]
    records_paths = list(records_paths)
    if isinstance(against_paths, str | os.PathLike):
        against_paths = [against_paths]
    against_paths = None if against_paths is None else list(against_paths)
    _check_out(out, [records_path(p) for p in [*records_paths, *(against_paths or [])]],
               PUBLISHED_PATH if published_path is None else Path(published_path))
    if against_paths is not None:
        given = {records_path(p).resolve(): p for p in records_paths}
        for p in against_paths:
            if records_path(p).resolve() in given:
                raise ValueError(f"{p} is both a records file and an earlier run (--against): "
                                 "compare a run with another one")
    records = load_records(records_paths)
    reproduction = None
    if against_paths is not None:
        earlier = load_records(against_paths)
        reproduction = reproduction_table(records, earlier)
        unmatched = unmatched_runs(records, earlier)
    published = load_published(published_path)
    if published_settings is not None:
        published = published[published["setting"].isin(list(published_settings))]
    table = comparison_table(records, published)
    ranking_ll = paired_ranking(records, "test_ll", higher_is_better=True)
    ranking_rmse = paired_ranking(records, "rmse", higher_is_better=False)
    text = comparison_markdown(table, ranking_ll, ranking_rmse)
    if reproduction is not None:
        text += "\n" + reproduction_markdown(reproduction, unmatched)
    paths = {
        "report": atomic_write_text(out / "report.md", text),
        "records": atomic_write_text(out / "records.csv", records.to_csv(index=False)),
        "ranking": atomic_write_text(out / "ranking.csv", pd.concat(
            [ranking_ll, ranking_rmse], ignore_index=True).to_csv(index=False)),
    }
    if reproduction is not None:
        paths["reproduction"] = atomic_write_text(out / _REPRODUCTION_NAME,
                                                  reproduction.to_csv(index=False))
    else:  # a reproduction.csv of an earlier comparison would not match this report
        (out / _REPRODUCTION_NAME).unlink(missing_ok=True)
    return paths
