"""Plain PyTorch networks used by the experiments (the dropout LeNet and its trainer)."""

from __future__ import annotations

from comparisons.networks.lenet import (
    LeNet,
    TrainHistory,
    lenet_features,
    run_minibatch_epochs,
    standard_logits,
    train_lenet,
)

__all__ = [
    "LeNet",
    "TrainHistory",
    "train_lenet",
    "run_minibatch_epochs",
    "lenet_features",
    "standard_logits",
]
