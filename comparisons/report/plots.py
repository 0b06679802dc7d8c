"""Plots shared by the experiments: predictive bands on the 1-D toy problem.

Every function takes an ``ax`` and returns it; colours and labels come from
:mod:`comparisons.report.styles` (one per method everywhere).
"""

from __future__ import annotations

import numpy as np

from comparisons.datasets.toy1d import Toy1DData
from comparisons.report.styles import method_color, method_label

__all__ = ["toy_ylim", "plot_predictive_band", "finish_toy_axes"]


def toy_ylim(data: Toy1DData) -> tuple[float, float]:
    """The y limits of the toy figures: the true function's range padded by half of it."""
    f_lo, f_hi = float(data.f_test.min()), float(data.f_test.max())
    pad = 0.5 * (f_hi - f_lo)
    return f_lo - pad, f_hi + pad


def plot_predictive_band(ax, x, mean, variance, method: str, ylim, *, num_sd: float = 2.0,
                         alpha: float = 0.2, lw: float = 1.8, label: str | None = None,
                         edges: bool = False):
    r"""Draw :math:`\mu \pm k\sigma` of one method in its colour; returns ``ax``.

    The band and the mean are clipped to one axes-height outside ``ylim``, so that a band of
    :math:`\sigma \sim 10^4` is drawn as "everything" cleanly.

    Args:
        ax: matplotlib axes.
        x: ``N`` inputs; mean, variance: ``N`` predictive moments.
        method: the method id (colour and label).
        ylim: ``(low, high)`` of the axes.
        num_sd: :math:`k`.
        alpha, lw: band transparency and mean line width.
        label: legend label (default ``"<method label> ± k sd"``).
        edges: also draw the band's edges as dotted lines.
    """
    span = ylim[1] - ylim[0]
    sd = np.sqrt(variance)
    color = method_color(method, "tab:cyan")
    lo = np.clip(mean - num_sd * sd, ylim[0] - span, ylim[1] + span)
    hi = np.clip(mean + num_sd * sd, ylim[0] - span, ylim[1] + span)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0)
    ax.plot(x, np.clip(mean, ylim[0] - span, ylim[1] + span), color=color, lw=lw,
            label=label if label is not None else f"{method_label(method)} ± {num_sd:g} sd")
    if edges:
        ax.plot(x, lo, color=color, lw=0.6, ls=":")
        ax.plot(x, hi, color=color, lw=0.6, ls=":")
    return ax


def finish_toy_axes(ax, data: Toy1DData, x: np.ndarray, ylim, title: str):
    """Draw the true function and the training points on a toy predictive plot, set the limits,
    labels, title and legend shared by the toy figures; returns ``ax``.

    Args:
        ax: matplotlib axes holding the methods' bands.
        data: the :class:`Toy1DData` split (``f_test`` and the training points).
        x: the test inputs (``data.x_test[:, 0]``), for the x limits.
        ylim: ``(low, high)`` y limits.
        title: the axes title.
    """
    ax.plot(x, data.f_test, "k--", lw=1, label=r"$f(x) = x \sin x$")
    ax.scatter(data.source.x_train[:, 0], data.source.y_train[:, 0], s=6, color="k", alpha=0.6,
               zorder=3, label="training data")
    ax.set_ylim(*ylim)
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize=6, loc="lower center", ncol=3, framealpha=0.8)
    return ax

