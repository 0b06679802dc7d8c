"""ArviZ ``InferenceData`` for every method (one converter per source) and checked PSIS-LOO."""

from __future__ import annotations

from . import converters
from .converters import *  # noqa: F401,F403

__all__ = [*converters.__all__]
