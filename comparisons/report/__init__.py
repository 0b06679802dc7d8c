"""Reports: record tables, plots (one colour and one label per method), the reliability diagram
and the UCI summary; each experiment's ``write_report`` is in its own module
(:mod:`~comparisons.report.gp_vs_dropout`, :mod:`~comparisons.report.diagnose`,
:mod:`~comparisons.report.pitfalls`, :mod:`~comparisons.report.mauna_loa`,
:mod:`~comparisons.report.rotated_digit`), imported where used."""

from __future__ import annotations

from . import calibration, plots, styles, tables, uci
from .calibration import *  # noqa: F401,F403
from .plots import *  # noqa: F401,F403
from .styles import *  # noqa: F401,F403
from .tables import *  # noqa: F401,F403
from .uci import *  # noqa: F401,F403

__all__ = [*calibration.__all__, *plots.__all__, *styles.__all__, *tables.__all__, *uci.__all__]
