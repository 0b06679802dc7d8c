"""Reference posteriors: NUTS on the Bayesian MLP, with convergence diagnostics."""

from __future__ import annotations

from . import nuts
from .nuts import *  # noqa: F401,F403

__all__ = [*nuts.__all__]
