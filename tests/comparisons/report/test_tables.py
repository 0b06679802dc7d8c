"""The shared helpers of every report (:mod:`comparisons.report.tables`): the one records check
that the UCI, UCI-comparison and Mauna Loa reports and ``--compare-records`` call, the number
format and the Markdown table builder."""

from __future__ import annotations

import pandas as pd
import pytest

from comparisons.report.tables import format_value, markdown_table, records_frame
from comparisons.report.uci import summarize
from comparisons.report.uci_comparison import comparison_table


def test_records_frame_copies_and_names_what_is_missing():
    frame = pd.DataFrame({"method": ["m"], "split": [0], "metric": ["x"], "value": [1.0]})
    out = records_frame(frame)
    out.loc[0, "value"] = 2.0
    assert frame.loc[0, "value"] == 1.0  # a copy: the caller's frame is left alone
    assert records_frame([{"method": "m", "split": 0, "metric": "x", "value": 1}]).shape == (1, 4)
    with pytest.raises(ValueError, match=r"^run 'a' lack the column\(s\) \['split', 'value'\] of "
                                         r"a records.csv; they have \['method', 'metric'\]$"):
        records_frame([{"method": "m", "metric": "x"}], "run 'a'")


def test_the_reports_share_the_records_check():
    bad = [{"dataset": "d", "method": "m", "metric": "rmse", "value": 1.0}]  # no split
    for report in (lambda r: summarize(r), lambda r: comparison_table(r)):
        with pytest.raises(ValueError, match=r"records lack the column\(s\) \['split'\]"):
            report(bad)


def test_format_value_and_markdown_table():
    assert [format_value(v) for v in (None, 2.0, 0.5)] == ["–", "2", "0.500"]
    assert markdown_table(["a"], ["x"], lambda r, c: "1", row_header="run") == [
        "| run | x |", "|---|---|", "| a | 1 |"]
