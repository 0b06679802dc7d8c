"""Markdown tables of tidy records: one formatter of numbers and one table builder for every
experiment's report."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["format_value", "markdown_table"]


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
