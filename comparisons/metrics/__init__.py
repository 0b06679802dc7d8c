"""Scores of predictive distributions: Gaussian log-likelihood, distances between predictives,
interval coverage and classification calibration."""

from __future__ import annotations

from .calibration import (  # noqa: F401
    ReliabilityBins,
    accuracy,
    calibration_records,
    expected_calibration_error,
    negative_log_likelihood,
    plot_reliability_diagram,
    predictive_probs,
    reliability_bins,
)
from .distances import (  # noqa: F401
    DISTANCE_METRICS,
    gaussian_kl,
    gaussian_total_variation,
    gaussian_w2,
    interval_coverage,
    moment_match_samples,
    standardized_mean_difference,
    summarize_predictive_distances,
    variance_ratio,
)

__all__ = [
    "ReliabilityBins",
    "predictive_probs",
    "accuracy",
    "reliability_bins",
    "expected_calibration_error",
    "negative_log_likelihood",
    "calibration_records",
    "plot_reliability_diagram",
    "standardized_mean_difference",
    "variance_ratio",
    "gaussian_kl",
    "gaussian_w2",
    "gaussian_total_variation",
    "interval_coverage",
    "moment_match_samples",
    "summarize_predictive_distances",
    "DISTANCE_METRICS",
]
