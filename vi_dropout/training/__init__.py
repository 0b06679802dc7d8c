"""Training dropout networks: many at once (:func:`train_batched`) and one by one with autograd
(:func:`train_sequential`, the reference); see :mod:`vi_dropout.training.common` for the maths and
the random-number contract they share."""

from vi_dropout.training.batched import train_batched
from vi_dropout.training.common import TrainResult
from vi_dropout.training.sequential import DropoutMLP, train_sequential

__all__ = ["TrainResult", "train_sequential", "train_batched", "DropoutMLP"]
