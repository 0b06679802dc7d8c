"""Resumable training of one dropout network: checkpoints, a stopping rule, CPU or CUDA.

Modules::

    checkpoint          checkpoint files: atomic, checksummed, verified when read; settings
                        compared with the current ones
    dropout_regressor   fit_dropout_regressor (step budget or StoppingRule, checkpointed,
                        resumable bit for bit), resolve_device, mc_function_draws
"""

from __future__ import annotations

from . import checkpoint, dropout_regressor
from .checkpoint import *  # noqa: F401,F403
from .dropout_regressor import *  # noqa: F401,F403

__all__ = [*checkpoint.__all__, *dropout_regressor.__all__]
