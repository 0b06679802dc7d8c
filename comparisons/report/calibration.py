"""Calibration plots: the reliability diagram of one or more classifiers.

The plot takes an ``ax`` and returns it; each method's colour and label come from
:mod:`comparisons.report.styles`; the bins are :func:`comparisons.metrics.calibration.reliability_bins`.

Example:
    >>> from matplotlib.figure import Figure
    >>> import torch
    >>> ax = Figure().subplots()
    >>> plot_reliability_diagram({"mc_dropout": torch.tensor([[0.8, 0.2]])}, torch.tensor([0]),
    ...                          ax) is ax
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from comparisons.metrics.calibration import reliability_bins
from comparisons.report.styles import method_color, method_label
from vi_dropout.validation import check_positive_int

__all__ = ["plot_reliability_diagram"]


def plot_reliability_diagram(
    probs_by_method: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    ax,
    num_bins: int = 10,
    show_counts: bool = True,
):
    r"""Reliability diagram on ``ax``: per equal-width confidence bin, the accuracy of each method
    as side-by-side bars (with the number of examples on top if ``show_counts``), its mean
    confidence as a black tick, and the diagonal of perfect calibration; the legend gives each
    method's ECE.

    Args:
        probs_by_method: ``{method: N x C probabilities}`` (e.g.
            :func:`~comparisons.metrics.calibration.predictive_probs`); a
            method id (``mc_dropout``, ``standard_dropout``) is drawn with its label and colour
            from :data:`~comparisons.report.styles.METHOD_STYLES`, another name as it is.
        labels: ``N`` integer labels.
        ax: matplotlib axes (drawn on and returned).
        num_bins: ``B >= 1``.

    Returns:
        ``ax``.

    Example:
        >>> from matplotlib.figure import Figure
        >>> _ = plot_reliability_diagram({"mc": torch.tensor([[0.8, 0.2]])}, torch.tensor([0]),
        ...                              Figure().subplots())
    """
    if not probs_by_method:
        raise ValueError("probs_by_method must name at least one method, got an empty mapping")
    num_bins = check_positive_int(num_bins, "num_bins")
    m = len(probs_by_method)
    width = 1.0 / num_bins / m
    for j, (method, probs) in enumerate(probs_by_method.items()):
        rb = reliability_bins(probs, labels, num_bins)
        left = rb.edges[:-1] + j * width
        keep = rb.counts > 0
        bars = ax.bar(left[keep], rb.accuracy[keep], width=width * 0.95, align="edge",
                      alpha=0.75, color=method_color(method),
                      label=f"{method_label(method)} (ECE {rb.ece:.3f})")
        if show_counts:
            ax.bar_label(bars, labels=[str(c) for c in rb.counts[keep]], fontsize="xx-small",
                         padding=1)
        ax.hlines(rb.confidence[keep], left[keep], left[keep] + width * 0.95, colors="k", lw=1.2,
                  label="mean confidence in bin" if j == 0 else None)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence $\\max_c \\bar p_c$")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram ({num_bins} equal-width bins)")
    ax.legend(fontsize="small", loc="upper left")
    return ax
