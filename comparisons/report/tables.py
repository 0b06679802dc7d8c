"""Markdown tables of tidy records: one check of records, one formatter of numbers and one table
builder for every experiment's report."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd

__all__ = ["records_frame", "format_value", "markdown_table"]


def records_frame(records: pd.DataFrame | Iterable[Mapping], what: str = "records",
                  columns: Sequence[str] = ("method", "split", "metric", "value")
                  ) -> pd.DataFrame:
    """``records`` as a new frame, checked to have ``columns``.

    Args:
        records: tidy records (dicts, or a frame, which is copied).
        what: how the error names them, e.g. ``"the records of run 'old'"``.
        columns: the columns they must have.

    Returns:
        The records as a :class:`pandas.DataFrame`.

    Raises:
        ValueError: naming ``what``, the missing columns (in ``columns``' order) and those
            present.

    Example:
        >>> records_frame([{"method": "m", "split": "s", "metric": "x", "value": 1.0}]).shape
        (1, 4)
    """
    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lack the column(s) {missing} of a records.csv; they have "
                         f"{list(frame.columns)}")
    return frame


def format_value(value: float | None) -> str:
    """A number for a Markdown table: ``–`` if missing or not finite, scientific notation below
    1e-3 or from 1e4, integers without decimals, three decimals otherwise.

    Example:
        >>> [format_value(v) for v in (None, float("nan"), 3.0, 0.12345, 2.5e-5, 12345.0)]
        ['–', '–', '3', '0.123', '2.50e-05', '1.23e+04']
    """
    if value is None or not math.isfinite(value):
        return "–"
    a = abs(value)
    if a != 0 and (a >= 1e4 or a < 1e-3):
        return f"{value:.2e}"
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.3f}"


def markdown_table(rows: Sequence[str], columns: Sequence[str],
                   cell: Callable[[str, str], str], *, labels: Sequence[str] | None = None,
                   row_header: str = "method") -> list[str]:
    """The lines of a Markdown table with one row per ``rows`` entry and one column per
    ``columns`` entry; ``cell(row, column)`` gives each cell's TEXT (format numbers with
    :func:`format_value`). ``labels`` are the column headers (default: ``columns``).

    Example:
        >>> markdown_table(["a"], ["x"], lambda r, c: format_value(1.5))
        ['| method | x |', '|---|---|', '| a | 1.500 |']
    """
    labels = list(columns) if labels is None else list(labels)
    if len(labels) != len(columns):
        raise ValueError(f"labels must have {len(columns)} entries, got {len(labels)}")
    lines = [f"| {row_header} | " + " | ".join(labels) + " |", "|---|" + "---|" * len(columns)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(cell(r, c) for c in columns) + " |")
    return lines
