"""The one reader of a ``records.csv`` written back to disk (by :meth:`ResultsStore.export
<comparisons.runner.store.ResultsStore.export>` or an experiment's report): it checks what the
file claims before anything is computed from it.

A file is refused, with a :class:`RecordsFileError` (a ``ValueError``) naming the file, the line
and what is wrong, when

* it is empty, not UTF-8, or has a header but no records;
* it does not end with a newline: it was cut short (a copy or a write stopped half-way), so its
  last record may be cut mid-value (``1.2`` of ``1.2345``) and later records are missing;
* a row has more or fewer fields than the header, or a quoted field is never closed;
* the header repeats a column or lacks one of
  :data:`~comparisons.runner.store.REQUIRED_FIELDS`;
* a record has an empty ``dataset``, ``method`` or ``metric`` (an empty ``split`` is a record
  of no split, e.g. one fixed test set; a reader that needs splits asks for them with
  ``non_empty``), or a ``value`` that is empty, not a number, NaN or infinite (then the store's
  :func:`validate_records <comparisons.runner.store.validate_records>` checks every record as
  the store does);
* two records share their key: every column but ``value`` and :data:`NON_KEY_COLUMNS` (the
  data set, method, split, metric and the settings columns such as ``epochs_multiplier`` or
  ``cell_id``);
* it is a ``records.csv`` with the ``records.json`` written beside it (by the same export) and
  the two disagree (number of records, or a record's data set, method, split, metric or value);
* it is a ``records.csv`` beside the ``cells/`` of a :class:`~comparisons.runner.store.ResultsStore`
  and has a ``cell_id`` column, and its records are not those of the finished cells: a cell
  with another number of records, a cell that is not there, or finished cells it lacks (the
  file is cut at a line end, or was exported before the run finished). Damaged cell files are
  not compared (the export leaves them out too).

A file cut exactly at a line end with neither ``records.json`` nor ``cells/`` beside it cannot be
told from a complete one.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "records.csv"
    >>> _ = path.write_text("dataset,method,split,metric,value\\nyacht,mc_dropout,0,rmse,0.9\\n")
    >>> read_records(path)["value"].tolist()
    [0.9]
    >>> _ = path.write_text("dataset,method,split,metric,value\\nyacht,mc_dropout,0,rmse,0.")
    >>> read_records(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    comparisons.runner.records_file.RecordsFileError: records file ..., line 2: ...truncated...
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from comparisons.runner.store import REQUIRED_FIELDS, validate_records

__all__ = ["NON_EMPTY_FIELDS", "NON_KEY_COLUMNS", "RECORDS_NAME", "RecordsFileError", "read_records", "records_path"]

#: the file name of the records in an output folder
RECORDS_NAME = "records.csv"
#: columns that are measurements of a record, not part of its key
NON_KEY_COLUMNS = ("value", "wall_time_s", "note")
#: the required fields that name a record (all but ``value``)
_NAME_FIELDS = tuple(f for f in REQUIRED_FIELDS if f != "value")
#: the fields no record may leave empty (by default)
NON_EMPTY_FIELDS = ("dataset", "method", "metric")


class RecordsFileError(ValueError):
    """A records file that cannot be trusted: truncated, malformed, non-finite, duplicated, or
    disagreeing with the ``records.json`` or ``cells/`` beside it.

    Attributes:
        path: the file.
        line: the line (1 = the header) the problem is on, or ``None`` for the whole file.
        problem: what is wrong, without the file and line.
    """

    def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None):
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"records file {self.path}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {problem}")


def records_path(path: str | os.PathLike) -> Path:
    """The records file of ``path``: ``path`` itself, or the ``records.csv`` in a folder.

    Args:
        path: a records file or an output folder holding ``records.csv``.

    Returns:
        The file's path.

    Raises:
        FileNotFoundError: ``path`` does not exist, or is a folder without ``records.csv``.

    Example:
        >>> import tempfile
        >>> records_path(tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        FileNotFoundError: records folder ... has no records.csv; pass a records.csv or the output folder holding one
    """
    p = Path(path)
    if p.is_dir():
        if not (p / RECORDS_NAME).is_file():
            raise FileNotFoundError(f"records folder {p} has no {RECORDS_NAME}; pass a "
                                    f"{RECORDS_NAME} or the output folder holding one")
        return p / RECORDS_NAME
    if not p.exists():
        raise FileNotFoundError(f"records file {p} does not exist")
    return p


def read_records(path: str | os.PathLike, *, check_beside: bool = True,
                 non_empty: Sequence[str] = NON_EMPTY_FIELDS) -> pd.DataFrame:
    """Read a records file, refusing one that is truncated, malformed or inconsistent.

    The rules are those of the module docstring; they are the same for every reader of records.

    Args:
        path: a records CSV, or an output folder holding ``records.csv``.
        check_beside: compare a ``records.csv`` with the ``records.json`` and ``cells/`` beside
            it, when present (default ``True``).
        non_empty: the columns no record may leave empty (default :data:`NON_EMPTY_FIELDS`;
            e.g. add ``"split"`` where records are paired by split).

    Returns:
        One row per record, the columns typed as :func:`pandas.read_csv` types them, except
        ``value``: float, parsed exactly as written.

    Raises:
        FileNotFoundError: the file (or the folder's ``records.csv``) does not exist.
        RecordsFileError: the file breaks one of the rules; the message names the file, the
            line and what is wrong.

    Example:
        >>> read_records("docs/uci/x10").groupby("dataset").size()["yacht"]  # doctest: +SKIP
        160
    """
    path = records_path(path)
    text = _read_text(path)
    header, rows, lines = _parse(path, text)
    df = pd.read_csv(io.StringIO(text))
    if len(df) != len(rows):  # pragma: no cover - a safety net: both parse the same text
        raise RecordsFileError(path, f"reads as {len(df)} records with pandas but {len(rows)} "
                                     "with the csv module; fix its quoting")
    df["value"] = _values(path, header, rows, lines)
    _check_non_empty(path, header, rows, lines, non_empty)
    _check_unique(path, header, rows, lines)
    if check_beside and path.name == RECORDS_NAME:
        _check_json(path, header, rows, lines, df["value"].tolist())
        _check_cells(path, header, rows, lines)
    return df


# --- the file itself -------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordsFileError(path, f"is not UTF-8 text (byte {exc.start})",
                               data.count(b"\n", 0, exc.start) + 1) from None
    if not text.strip():
        raise RecordsFileError(path, "is empty: no header, no records")
    if not text.endswith(("\n", "\r")):
        raise RecordsFileError(
            path, "the file ends without a newline: it is truncated (cut short by a write or "
                  "copy that stopped), so this last record may be cut mid-value and the records "
                  "after it are missing; export or copy it again", text.count("\n") + 1)
    return text


def _parse(path: Path, text: str) -> tuple[list[str], list[list[str]], list[int]]:
    """``(header, rows, line of each row)``; blank lines are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    last = 0
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not row:
                continue
            if header is None:
                header = row
                _check_header(path, header)
            elif len(row) != len(header):
                raise RecordsFileError(
                    path, f"has {len(row)} field{'s' * (len(row) != 1)}, the header "
                          f"{len(header)}: a record cut short or run together with the next",
                    start)
            else:
                rows.append(row)
                lines.append(start)
    except csv.Error as exc:
        raise RecordsFileError(path, f"is not valid CSV ({exc}): a quoted field cut short?",
                               reader.line_num) from None
    if not rows:
        raise RecordsFileError(path, "has a header but no records", 1)
    return header, rows, lines


def _check_header(path: Path, header: Sequence[str]) -> None:
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise RecordsFileError(path, f"the header repeats the column(s) {repeated}", 1)
    missing = [c for c in REQUIRED_FIELDS if c not in header]
    if missing:
        raise RecordsFileError(path, f"lacks column(s) {missing} of a records file; it has "
                                     f"{list(header)}", 1)


def _values(path: Path, header: list[str], rows: list[list[str]], lines: list[int]
            ) -> list[float]:
    """The ``value`` of every row, each a finite float, then every record checked by the
    store's :func:`~comparisons.runner.store.validate_records`."""
    col = header.index("value")
    values = []
    for row, line in zip(rows, lines):
        text = row[col].strip()
        try:
            if "_" in text:  # float() reads 1_000 as 1000; a writer of records never does
                raise ValueError(text)
            value = float(text)
        except ValueError:
            why = "is empty (NaN, or missing)" if not text else f"{row[col]!r} is not a number"
            raise RecordsFileError(path, f"the value {why}: every value must be a finite number",
                                   line) from None
        if not math.isfinite(value):
            raise RecordsFileError(path, f"the value {row[col]!r} is not finite: every value "
                                         "must be a finite number", line)
        values.append(value)
    records = [dict(zip(header, row), value=v) for row, v in zip(rows, values)]
    try:
        validate_records(records)
    except (TypeError, ValueError) as exc:  # pragma: no cover - the checks above come first
        raise RecordsFileError(path, str(exc)) from None
    return values


def _check_non_empty(path: Path, header: list[str], rows: list[list[str]], lines: list[int],
                     fields: Sequence[str]) -> None:
    missing = [f for f in fields if f not in header]
    if missing:
        raise RecordsFileError(path, f"lacks column(s) {missing}; it has {header}", 1)
    cols = [header.index(f) for f in fields]
    for row, line in zip(rows, lines):
        empty = [f for f, c in zip(fields, cols) if not row[c].strip()]
        if empty:
            raise RecordsFileError(path, f"the record has an empty {', '.join(empty)}", line)


def _name(header: list[str], row: Sequence[str]) -> str:
    return ", ".join(f"{f}={row[header.index(f)]}" for f in _NAME_FIELDS)


def _check_unique(path: Path, header: list[str], rows: list[list[str]], lines: list[int]
                  ) -> None:
    cols = [i for i, c in enumerate(header) if c not in NON_KEY_COLUMNS]
    settings = [header[i] for i in cols if header[i] not in _NAME_FIELDS]
    same = f"; the same {', '.join(settings)}" if settings else ""
    seen: dict[tuple[str, ...], int] = {}
    for row, line in zip(rows, lines):
        key = tuple(row[i] for i in cols)
        if key in seen:
            raise RecordsFileError(path, f"repeats the record of line {seen[key]} "
                                         f"({_name(header, row)}{same}): a record given twice",
                                   line)
        seen[key] = line


# --- what is written beside it ---------------------------------------------------------------
def _same(csv_text: str, other: Any) -> bool:
    """Whether a CSV field and a JSON value say the same (numbers compared as numbers)."""
    if other is None:
        return csv_text == ""
    try:
        return float(csv_text) == float(other)
    except (TypeError, ValueError):
        return csv_text == str(other)


def _check_json(path: Path, header: list[str], rows: list[list[str]], lines: list[int],
                values: list[float]) -> None:
    """The records must be those of ``records.json`` beside ``path``, in the same order."""
    beside = path.with_name("records.json")
    if not beside.is_file():
        return
    try:
        doc = json.loads(beside.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordsFileError(path, f"cannot be checked against {beside.name} beside it, which "
                                     f"is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise RecordsFileError(path, f"cannot be checked against {beside.name} beside it, which "
                                     "is not a list of records")
    if len(doc) != len(rows):
        raise RecordsFileError(
            path, f"has {len(rows)} records, {beside.name} beside it {len(doc)}: one of them is "
                  "truncated or was rewritten alone; export them again")
    cols = {f: header.index(f) for f in REQUIRED_FIELDS}
    for i, (row, line, value, rec) in enumerate(zip(rows, lines, values, doc)):
        differ = [f for f in _NAME_FIELDS if not _same(row[cols[f]], rec.get(f))]
        if not _same(repr(value), rec.get("value")):
            differ.append("value")
        if differ:
            here = ", ".join(f"{f}={row[cols[f]]}" for f in differ)
            there = ", ".join(f"{f}={rec.get(f)!r}" for f in differ)
            raise RecordsFileError(
                path, f"says {here} but record {i} of {beside.name} beside it says {there} "
                      f"({_name(header, row)}): one of them was edited or rewritten alone; "
                      "export them again", line)


def _same_value(stored: float, text: str) -> bool:
    """Whether the csv's ``text`` is the stored float (as the export writes it: repr, to the
    last bit; NaN equal to NaN)."""
    try:
        value = float(text)
    except ValueError:
        return False
    return value == stored or (math.isnan(value) and math.isnan(stored))


def _check_cells(path: Path, header: list[str], rows: list[list[str]], lines: list[int]
                 ) -> None:
    """Per ``cell_id``, the records must be those of the finished cells of the store beside
    ``path`` (a folder with ``cells/``): as many, each (method, metric, value) found there, and
    no finished cell missing."""
    folder = path.parent
    if "cell_id" not in header or not (folder / "cells").is_dir():
        return
    from comparisons.runner.store import DamagedCellWarning, ResultsStore

    store = ResultsStore(folder)  # reading creates nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedCellWarning)  # the export skipped them too
        stored = store.load_records()
        damaged = set(store.damaged_cells())
    cells = stored["cell_id"].value_counts().to_dict()
    # each cell's (method, metric, value) records, to compare values, not only counts
    cell_values: dict[str, list] = {}
    for rec in stored.to_dict("records"):
        cell_values.setdefault(rec["cell_id"], []).append(
            (str(rec["method"]), str(rec["metric"]), float(rec["value"])))
    keys = [header.index(k) for k in ("method", "metric", "value")]
    col = header.index("cell_id")
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for row, line in zip(rows, lines):
        counts[row[col]] = counts.get(row[col], 0) + 1
        first.setdefault(row[col], line)
    for cid, n in counts.items():
        if store.cell_path(cid) in damaged:
            continue
        if cid not in cells:
            raise RecordsFileError(path, f"has records of cell {cid!r}, which is not among the "
                                         "finished cells in cells/ beside it", first[cid])
        if cells[cid] != n:
            raise RecordsFileError(
                path, f"has {n} record{'s' * (n != 1)} of cell {cid!r}, its file in cells/ "
                      f"{cells[cid]}: the records file is cut short or out of date; export it "
                      "again (re-run the same command)", first[cid])
    for row, line in zip(rows, lines):
        cid = row[col]
        if store.cell_path(cid) in damaged:
            continue
        method, metric, value = (row[k] for k in keys)
        if not any(m == method and k == metric and _same_value(v, value)
                   for m, k, v in cell_values[cid]):
            raise RecordsFileError(
                path, f"its {method} {metric} = {value} of cell {cid!r} is not the value in "
                      "cells/ beside it: the records file was edited or is out of date; export "
                      "it again (re-run the same command)", line)
    lacking = [cid for cid in cells if cid not in counts]
    if lacking:
        raise RecordsFileError(
            path, f"lacks the records of {len(lacking)} finished cell(s) in cells/ beside it "
                  f"(e.g. {lacking[0]!r}): it is cut short at a line end or was exported before "
                  "those cells finished; export it again (re-run the same command)")
