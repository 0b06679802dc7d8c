"""Guides (variational families) over the models of :mod:`vi_dropout.models`, as
``pyro.infer.autoguide`` keeps its own: :class:`DropoutGuide`, the MC dropout family."""

from vi_dropout.guides.dropout_guide import DropoutGuide

__all__ = ["DropoutGuide"]
