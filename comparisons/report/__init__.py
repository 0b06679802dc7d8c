"""Reports: record tables, plots (one colour and one label per method) and the UCI summary."""

from __future__ import annotations

from .styles import (  # noqa: F401
    LEGACY_METHOD_IDS,
    METHOD_STYLES,
    MethodStyle,
    canonical_method,
    method_color,
    method_label,
)
from .uci import (  # noqa: F401
    format_mean_se,
    plot_split_metric,
    summarize,
    summary_markdown,
)

__all__ = [
    "METHOD_STYLES",
    "LEGACY_METHOD_IDS",
    "MethodStyle",
    "canonical_method",
    "method_color",
    "method_label",
    "summarize",
    "format_mean_se",
    "summary_markdown",
    "plot_split_metric",
]
