"""Running many cells: cells and their ids, local and Ray executors, the resumable results store."""

from __future__ import annotations

from .executors import (  # noqa: F401
    Cell,
    CellOutcome,
    Executor,
    LocalExecutor,
    RayExecutor,
    RunInterrupted,
    RunSummary,
    cell_id_of,
    run_cells,
)
from .store import (  # noqa: F401
    REQUIRED_FIELDS,
    DamagedCellWarning,
    ResultsFolderBusy,
    ResultsStore,
    SettingsMismatch,
    atomic_savefig,
    atomic_write_bytes,
    atomic_write_text,
    config_hash,
    make_cell_id,
    records_checksum,
    validate_records,
)

__all__ = [
    "Cell",
    "CellOutcome",
    "RunSummary",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "RunInterrupted",
    "cell_id_of",
    "run_cells",
    "REQUIRED_FIELDS",
    "ResultsStore",
    "DamagedCellWarning",
    "ResultsFolderBusy",
    "SettingsMismatch",
    "records_checksum",
    "make_cell_id",
    "config_hash",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_savefig",
    "validate_records",
]
