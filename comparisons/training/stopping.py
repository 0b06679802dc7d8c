r"""The stopping rule of a long training run: stop once the loss has stopped improving.

Light (NumPy only), so that settings classes holding one (e.g.
:class:`comparisons.experiments.mauna_loa_settings.MaunaLoaSettings`) load without torch; the
trainer that applies it is :func:`comparisons.training.dropout_regressor.fit_dropout_regressor`
(which re-exports :class:`StoppingRule`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vi_dropout.validation import check_positive_int

__all__ = ["StoppingRule"]


@dataclass(frozen=True)
class StoppingRule:
    r"""Stop training when the loss has stopped improving: "fitted", not a step count.

    The per-step minibatch losses :math:`\ell_1, \ell_2, \dots` are cut into consecutive,
    non-overlapping windows of ``window`` steps from the first step on; window :math:`k` has the
    mean :math:`m_k = \frac1W\sum_{s=(k-1)W+1}^{kW}\ell_s`. After step :math:`kW` with
    :math:`k \ge 2` the rule compares the last window with the best earlier one and stops when

    .. math::
        m_k \;\ge\; b_k - \text{tolerance}\cdot|b_k|, \qquad b_k = \min_{j<k} m_j,

    i.e. when the last window's mean is not lower than the best earlier window's by more than
    ``tolerance`` (relative). It is checked only at multiples of ``window`` and depends on the
    loss history alone, so a resumed run stops at the same step as an uninterrupted one. The step
    budget (``iterations``) stops the run in any case.

    Attributes:
        window: steps per window (``>= 1``); a window should span many epochs so that its mean
            is not dominated by minibatch noise (the Mauna Loa data have 13 minibatches of 128).
        tolerance: relative improvement that still counts as progress (``>= 0``; ``0``: stop
            as soon as a window is not strictly better than the best earlier one).

    Example:
        >>> rule = StoppingRule(window=2, tolerance=0.1)
        >>> rule.should_stop(np.array([4.0, 4.0, 2.0, 2.0]))     # 2 < 4 - 0.4: progress
        False
        >>> rule.should_stop(np.array([4.0, 4.0, 2.0, 2.0, 1.9, 1.9]))   # 1.9 >= 2 - 0.2
        True
    """

    window: int
    tolerance: float = 0.01

    def __post_init__(self):
        check_positive_int(self.window, "window")
        tol = self.tolerance
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not (
                math.isfinite(tol) and tol >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0, got {tol!r}")

    def should_stop(self, losses: np.ndarray) -> bool:
        """Whether training stops after ``len(losses)`` steps with this loss history."""
        n, w = len(losses), int(self.window)
        if n < 2 * w or n % w:
            return False
        means = np.asarray(losses[:n], dtype=np.float64).reshape(-1, w).mean(axis=1)
        best = float(means[:-1].min())
        return not bool(means[-1] < best - float(self.tolerance) * abs(best))
