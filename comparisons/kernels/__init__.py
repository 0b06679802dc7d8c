"""Covariance functions of infinitely wide networks, as GPyTorch kernels: the arc-cosine kernel,
the deep NNGP kernel and random features, on one shared weight/bias-variance base."""

from __future__ import annotations

from comparisons.kernels.arc_cosine import (
    ARC_COSINE_ORDERS,
    ArcCosineKernel,
    arc_cosine_expectation,
)
from comparisons.kernels.base import (
    WeightBiasVarianceKernel,
    check_inputs,
    clamp_eps,
)
from comparisons.kernels.nngp import (
    NNGP_ACTIVATIONS,
    NNGPKernel,
    erf_expectation,
)
from comparisons.kernels.random_features import (
    RandomFeatureKernel,
)

__all__ = [
    "ArcCosineKernel",
    "arc_cosine_expectation",
    "ARC_COSINE_ORDERS",
    "WeightBiasVarianceKernel",
    "clamp_eps",
    "check_inputs",
    "NNGPKernel",
    "erf_expectation",
    "NNGP_ACTIVATIONS",
    "RandomFeatureKernel",
]
