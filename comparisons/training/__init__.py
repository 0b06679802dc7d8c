"""Resumable training of one dropout network: checkpoints, a stopping rule, CPU or CUDA.

Modules::

    checkpoint          checkpoint files: atomic, checksummed, verified when read; settings
                        compared with the current ones
    dropout_regressor   fit_dropout_regressor (step budget or StoppingRule, checkpointed,
                        resumable bit for bit), resolve_device
    stopping            StoppingRule (NumPy only)

The names below are imported on first use (``__getattr__``), so that the light module
``stopping`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time __getattr__ imports on first use
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
        fit_dropout_regressor,
        initial_network,
        preflight_dropout_regressor,
        regularised_mse,
        resolve_device,
    )
    from comparisons.training.stopping import (
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

#: the module that defines each name of :data:`__all__`: imported on first use
_HOMES = {
    "MAGIC": "comparisons.training.checkpoint",
    "CheckpointError": "comparisons.training.checkpoint",
    "CheckpointMismatch": "comparisons.training.checkpoint",
    "save_checkpoint": "comparisons.training.checkpoint",
    "load_checkpoint": "comparisons.training.checkpoint",
    "read_checkpoint_meta": "comparisons.training.checkpoint",
    "settings_changes": "comparisons.training.checkpoint",
    "check_settings": "comparisons.training.checkpoint",
    "TRAINER": "comparisons.training.dropout_regressor",
    "StoppingRule": "comparisons.training.stopping",
    "RegressorFit": "comparisons.training.dropout_regressor",
    "resolve_device": "comparisons.training.dropout_regressor",
    "fit_dropout_regressor": "comparisons.training.dropout_regressor",
    "preflight_dropout_regressor": "comparisons.training.dropout_regressor",
    "LossHistory": "comparisons.training.dropout_regressor",
    "initial_network": "comparisons.training.dropout_regressor",
    "EpochBatches": "comparisons.training.dropout_regressor",
    "regularised_mse": "comparisons.training.dropout_regressor",
}


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
