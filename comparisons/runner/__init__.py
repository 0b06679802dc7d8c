"""Running many cells: cells and their ids, local and Ray executors, the resumable results store,
the folder lock of every results folder and the one reader of records files."""

from __future__ import annotations

from . import executors, folder_lock, records_file, store
from .executors import *  # noqa: F401,F403
from .folder_lock import *  # noqa: F401,F403
from .records_file import *  # noqa: F401,F403
from .store import *  # noqa: F401,F403

__all__ = [*executors.__all__, *store.__all__,
           *(n for n in folder_lock.__all__ if n not in store.__all__), *records_file.__all__]
