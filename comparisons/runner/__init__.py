"""Running many cells: cells and their ids, local and Ray executors, the resumable results store."""

from __future__ import annotations

from . import executors, store
from .executors import *  # noqa: F401,F403
from .store import *  # noqa: F401,F403

__all__ = [*executors.__all__, *store.__all__]
