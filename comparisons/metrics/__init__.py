"""Scores of predictive distributions: Gaussian log-likelihood, distances between predictives,
interval coverage and classification calibration."""

from __future__ import annotations

from comparisons.metrics.calibration import (
    ReliabilityBins,
    accuracy,
    calibration_records,
    expected_calibration_error,
    negative_log_likelihood,
    predictive_probs,
    reliability_bins,
)
from comparisons.metrics.distances import (
    DISTANCE_METRICS,
    gaussian_kl,
    gaussian_total_variation,
    gaussian_w2,
    interval_coverage,
    mixture_interval_mass,
    moment_match_samples,
    standardized_mean_difference,
    summarize_predictive_distances,
    variance_ratio,
)
from comparisons.metrics.gaussian import (
    gaussian_log_likelihood,
)

__all__ = [
    "ReliabilityBins",
    "predictive_probs",
    "accuracy",
    "reliability_bins",
    "expected_calibration_error",
    "negative_log_likelihood",
    "calibration_records",
    "standardized_mean_difference",
    "variance_ratio",
    "gaussian_kl",
    "gaussian_w2",
    "gaussian_total_variation",
    "interval_coverage",
    "mixture_interval_mass",
    "moment_match_samples",
    "summarize_predictive_distances",
    "DISTANCE_METRICS",
    "gaussian_log_likelihood",
]
