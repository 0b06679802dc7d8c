"""Exact Gaussian processes: the GPyTorch model and kernel factory (``models``), the Cholesky
marginal likelihood (``mlls``), fitting and prediction with one Cholesky rule (``fit``) and the map
from a dropout network's prior to GP hyper-parameters (``priors``)."""

from __future__ import annotations

from . import fit, mlls, models, priors
from .fit import *  # noqa: F401,F403
from .mlls import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .priors import *  # noqa: F401,F403

__all__ = [*models.__all__, *mlls.__all__, *fit.__all__, *priors.__all__]
