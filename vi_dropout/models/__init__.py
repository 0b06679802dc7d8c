"""Pyro models of MC dropout: :class:`ModuleBNN` for any ``torch.nn.Module`` and
:class:`BayesianMLP`, the same model on the paper's :class:`MLP`."""

from vi_dropout.models.bnn import ModuleBNN
from vi_dropout.models.mlp import MLP, BayesianMLP

__all__ = ["ModuleBNN", "BayesianMLP", "MLP"]
