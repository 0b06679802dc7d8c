"""Training dropout networks: many at once (:func:`train_batched`) and one by one with autograd
(:func:`train_sequential`, the reference); see :mod:`vi_dropout.training.common` for the maths and
the random-number contract they share."""

from .batched import train_batched
from .common import TrainResult, weight_decay
from .sequential import DropoutMLP, train_sequential

__all__ = ["TrainResult", "weight_decay", "train_sequential", "train_batched", "DropoutMLP"]
