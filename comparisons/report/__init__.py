"""Reports: record tables, plots (one colour and one label per method), the reliability diagram
and the UCI summary; each experiment's ``write_report`` is in its own module
(:mod:`~comparisons.report.gp_vs_dropout`, :mod:`~comparisons.report.diagnose`,
:mod:`~comparisons.report.pitfalls`, :mod:`~comparisons.report.mauna_loa`,
:mod:`~comparisons.report.rotated_digit`), imported where used."""

from __future__ import annotations

from comparisons.report.calibration import (
    plot_reliability_diagram,
)
from comparisons.report.plots import (
    finish_toy_axes,
    plot_predictive_band,
    toy_ylim,
)
from comparisons.report.styles import (
    METHOD_STYLES,
    MethodStyle,
    method_color,
    method_label,
    register_style,
)
from comparisons.report.tables import (
    format_value,
    markdown_table,
    records_frame,
)
from comparisons.report.uci import (
    HYPERPARAMETER_METRICS,
    REPORT_METRICS,
    format_mean_se,
    plot_split_metric,
    summarize,
    summary_markdown,
    with_learned_drop_rates,
    write_uci_report,
)

__all__ = [
    "plot_reliability_diagram",
    "toy_ylim",
    "plot_predictive_band",
    "finish_toy_axes",
    "METHOD_STYLES",
    "MethodStyle",
    "method_color",
    "method_label",
    "register_style",
    "records_frame",
    "format_value",
    "markdown_table",
    "summarize",
    "format_mean_se",
    "summary_markdown",
    "plot_split_metric",
    "REPORT_METRICS",
    "HYPERPARAMETER_METRICS",
    "with_learned_drop_rates",
    "write_uci_report",
]
