"""Distributions of the MC dropout variational family."""

from vi_dropout.distributions.dropout_normal import DropoutNormal, open_closed_unit_interval

__all__ = ["DropoutNormal", "open_closed_unit_interval"]
