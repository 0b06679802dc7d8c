"""Scores of predictive distributions: Gaussian log-likelihood, distances between predictives,
interval coverage and classification calibration."""

from __future__ import annotations

from . import calibration, distances, gaussian
from .calibration import *  # noqa: F401,F403
from .distances import *  # noqa: F401,F403
from .gaussian import *  # noqa: F401,F403

__all__ = [*calibration.__all__, *distances.__all__, *gaussian.__all__]
