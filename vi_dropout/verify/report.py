r"""The rows of the equivalence reports and their table, shared by every check.

Each check returns tidy rows ``{check, setting, value, tolerance, passed, detail}``
(:func:`report_row`); :func:`format_table` prints them as Markdown.

Example:
    >>> print(format_table([report_row("value", "theta=0.1", 0.5, "<= 1", True)]))
    | check | setting | value | tolerance | pass | detail |
    |---|---|---|---|---|---|
    | value | theta=0.1 | 5.000e-01 | <= 1 | yes |  |
    <BLANKLINE>
    1 passed, 0 failed
"""

from __future__ import annotations

__all__ = ["report_row", "format_table"]


def report_row(check, setting, value, tolerance, passed, detail=""):
    """One row of the report: ``{check, setting, value, tolerance, passed, detail}``."""
    return {"check": check, "setting": setting, "value": float(value),
            "tolerance": tolerance, "passed": bool(passed), "detail": detail}


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    lines = ["| check | setting | value | tolerance | pass | detail |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['check']} | {r['setting']} | {r['value']:.3e} | {r['tolerance']} | "
                     f"{'yes' if r['passed'] else '**NO**'} | {r['detail']} |")
    n_fail = sum(not r["passed"] for r in rows)
    n_info = sum(r["passed"] and r["tolerance"] in ("reported", "not run") for r in rows)
    lines.append("")
    lines.append(f"{len(rows) - n_fail - n_info} passed, {n_fail} failed"
                 + (f" ({n_info} reported only)" if n_info else ""))
    return "\n".join(lines)
