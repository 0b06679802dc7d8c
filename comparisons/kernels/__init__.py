"""Covariance functions of infinitely wide networks, as GPyTorch kernels: the arc-cosine kernel,
the deep NNGP kernel and random features, on one shared weight/bias-variance base."""

from __future__ import annotations

from .arc_cosine import (  # noqa: F401
    ARC_COSINE_ORDERS,
    ArcCosineKernel,
    arc_cosine_expectation,
)
from .base import (  # noqa: F401
    WeightBiasVarianceKernel,
    check_inputs,
    clamp_eps,
)
from .nngp import (  # noqa: F401
    NNGP_ACTIVATIONS,
    NNGPKernel,
    erf_expectation,
)
from .random_features import (  # noqa: F401
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
