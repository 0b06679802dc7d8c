"""Reports: record tables, plots (one colour and one label per method) and the UCI summary."""

from __future__ import annotations

from . import plots, styles, tables, uci
from .plots import *  # noqa: F401,F403
from .styles import *  # noqa: F401,F403
from .tables import *  # noqa: F401,F403
from .uci import *  # noqa: F401,F403

__all__ = [*plots.__all__, *styles.__all__, *tables.__all__, *uci.__all__]
