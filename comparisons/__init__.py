"""Comparisons of MC dropout with exact Gaussian processes, reference posteriors and the UCI
benchmarks."""

from .arc_cosine_kernel import ARC_COSINE_ORDERS, ArcCosineKernel, arc_cosine_expectation
from .exact_gp import (
    KERNEL_NAMES,
    ExactGPModel,
    GPNotPSDError,
    dropout_prior_hyperparameters,
    fit_exact_gp,
    gaussian_test_loglik,
    gp_predict,
    make_kernel,
)
from .executors import Cell, LocalExecutor, RayExecutor, RunSummary, run_cells
from .nngp_kernel import NNGP_ACTIVATIONS, NNGPKernel, erf_expectation
from .random_feature_kernel import RandomFeatureKernel
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
    "ARC_COSINE_ORDERS",
    "ArcCosineKernel",
    "arc_cosine_expectation",
    "KERNEL_NAMES",
    "ExactGPModel",
    "GPNotPSDError",
    "dropout_prior_hyperparameters",
    "fit_exact_gp",
    "gaussian_test_loglik",
    "gp_predict",
    "make_kernel",
    "NNGP_ACTIVATIONS",
    "NNGPKernel",
    "erf_expectation",
    "RandomFeatureKernel",
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
