"""Resumable training of one dropout network: checkpoints, a stopping rule, CPU or CUDA.

Modules::

    checkpoint          checkpoint files: atomic, checksummed, verified when read; settings
                        compared with the current ones
    dropout_regressor   fit_dropout_regressor (step budget or StoppingRule, checkpointed,
                        resumable bit for bit), resolve_device
"""

from __future__ import annotations

from comparisons.training.checkpoint import (
    MAGIC,
    CheckpointError,
    CheckpointMismatch,
    check_settings,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    settings_changes,
)
from comparisons.training.dropout_regressor import (
    TRAINER,
    EpochBatches,
    LossHistory,
    RegressorFit,
    StoppingRule,
    fit_dropout_regressor,
    initial_network,
    preflight_dropout_regressor,
    regularised_mse,
    resolve_device,
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
