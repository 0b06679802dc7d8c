"""Data sets: the UCI regression sets with their standard splits (packaged), the 1-D toy problem,
the 8x8 digits / MNIST and the Mauna Loa CO2 record; ``load_split`` loads either the toy or a UCI
split by name."""

from __future__ import annotations

from . import digits, mauna_loa, splits, toy1d, uci
from .digits import *  # noqa: F401,F403
from .mauna_loa import *  # noqa: F401,F403
from .splits import *  # noqa: F401,F403
from .toy1d import *  # noqa: F401,F403
from .uci import *  # noqa: F401,F403

__all__ = [*digits.__all__, *mauna_loa.__all__, *splits.__all__, *toy1d.__all__, *uci.__all__]
