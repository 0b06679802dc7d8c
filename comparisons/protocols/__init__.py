"""Training protocols shared by the experiments: the MC dropout UCI protocol of the paper."""

from __future__ import annotations

from . import uci
from .uci import *  # noqa: F401,F403

__all__ = [*uci.__all__]
