"""Comparisons of MC dropout with exact Gaussian processes, reference posteriors and the UCI
benchmarks."""

from .executors import Cell, LocalExecutor, RayExecutor, RunSummary, run_cells
from .results_store import REQUIRED_FIELDS, ResultsStore, config_hash, make_cell_id
from .uci_datasets import (
    UCI_ALIASES,
    UCI_DATASETS,
    StandardizedSplit,
    UCIDataError,
    UCIInfo,
    UCISplit,
    load_uci,
    resolve_uci_name,
    standardize,
    uci_info,
    validation_split,
)
from .uci_summary import format_mean_se, plot_split_metric, summarize, summary_markdown

__all__ = [
    "Cell",
    "LocalExecutor",
    "RayExecutor",
    "RunSummary",
    "run_cells",
    "REQUIRED_FIELDS",
    "ResultsStore",
    "config_hash",
    "make_cell_id",
    "UCI_ALIASES",
    "UCI_DATASETS",
    "StandardizedSplit",
    "UCIDataError",
    "UCIInfo",
    "UCISplit",
    "load_uci",
    "resolve_uci_name",
    "standardize",
    "uci_info",
    "validation_split",
    "format_mean_se",
    "plot_split_metric",
    "summarize",
    "summary_markdown",
]
