"""The names of :mod:`comparisons.training`, for type checkers and for lazy_loader (``__init__.py``
imports each module on first use)."""

from .checkpoint import (
    MAGIC,
    CheckpointError,
    CheckpointMismatch,
    check_settings,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    settings_changes,
)
from .dropout_regressor import (
    TRAINER,
    EpochBatches,
    LossHistory,
    RegressorFit,
    fit_dropout_regressor,
    initial_network,
    preflight_dropout_regressor,
    regularised_mse,
    resolve_device,
)
from .stopping import (
    StoppingRule,
)

__all__ = [
    "MAGIC",
    "CheckpointError",
    "CheckpointMismatch",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_meta",
    "settings_changes",
    "check_settings",
    "TRAINER",
    "StoppingRule",
    "RegressorFit",
    "resolve_device",
    "fit_dropout_regressor",
    "preflight_dropout_regressor",
    "LossHistory",
    "initial_network",
    "EpochBatches",
    "regularised_mse",
]
