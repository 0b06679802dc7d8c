"""Exact Gaussian processes: the GPyTorch model, the Cholesky marginal likelihood, the fits and the
map from a dropout network's prior to GP hyper-parameters."""

from __future__ import annotations

from . import mlls, models
from .mlls import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403

__all__ = [*mlls.__all__, *models.__all__]
