"""Plain PyTorch networks used by the experiments (the dropout LeNet)."""

from __future__ import annotations

from .lenet import (
    LeNet,
    TrainHistory,
    lenet_features,
    mc_logits,
    standard_logits,
    train_lenet,
)

__all__ = [
    "LeNet",
    "TrainHistory",
    "train_lenet",
    "lenet_features",
    "mc_logits",
    "standard_logits",
]
