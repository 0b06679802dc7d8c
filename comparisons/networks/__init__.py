"""Plain PyTorch networks used by the experiments (the dropout LeNet)."""

from __future__ import annotations

from . import lenet
from .lenet import *  # noqa: F401,F403

__all__ = [*lenet.__all__]
