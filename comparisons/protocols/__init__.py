"""Training protocols shared by the experiments: the MC dropout UCI protocol of the paper
(``uci``) and the exact GPs on the same splits (``uci_gp``)."""

from __future__ import annotations

from . import uci, uci_gp
from .uci import *  # noqa: F401,F403
from .uci_gp import *  # noqa: F401,F403

__all__ = [*uci.__all__, *uci_gp.__all__]
