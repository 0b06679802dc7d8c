"""Training dropout networks: many at once (:func:`train_batched`) and one by one with autograd
(:func:`train_sequential`, the reference)."""

from .batched import (  # noqa: F401
    DropoutMLP,
    TrainResult,
    train_batched,
    train_sequential,
    weight_decay,
)

__all__ = ["TrainResult", "weight_decay", "train_sequential", "train_batched", "DropoutMLP"]
