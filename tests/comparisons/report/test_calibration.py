"""The reliability diagram (comparisons.report.calibration): one bar group per method, counts,
mean-confidence ticks, the diagonal and each method's ECE in the legend."""

from __future__ import annotations

import matplotlib.pyplot as plt  # tests/conftest.py selects the Agg backend

from comparisons.report.calibration import plot_reliability_diagram
from comparisons.report.styles import method_color
from tests.common import CALIBRATION_LABELS, CALIBRATION_PROBS

PROBS, LABELS = CALIBRATION_PROBS, CALIBRATION_LABELS


def test_reliability_diagram_draws_each_method():
    fig, ax = plt.subplots()
    try:
        out = plot_reliability_diagram({"a": PROBS, "b": PROBS.flip(-1)}, LABELS, ax, num_bins=4)
        assert out is ax
        # method a fills 3 bins; b = reversed columns: confidences .9 .8 .6 .7 .4 .5, same bins
        assert len(ax.patches) == 3 + 3
        heights = sorted(round(p.get_height(), 6) for p in ax.patches[:3])
        assert heights == [0.5, 0.5, 1.0]
        assert [t.get_text() for t in ax.texts] == ["2"] * 6  # examples per bar
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "a (ECE 0.250)" in texts and "perfect calibration" in texts
    finally:
        plt.close(fig)


def test_reliability_diagram_uses_the_method_styles():
    fig, ax = plt.subplots()
    try:
        plot_reliability_diagram({"mc_dropout": PROBS}, LABELS, ax, num_bins=4)
        from matplotlib.colors import to_rgba
        assert ax.patches[0].get_facecolor()[:3] == to_rgba(method_color("mc_dropout"))[:3]
        assert any(t.get_text().startswith("MC dropout (ECE") for t in ax.get_legend().get_texts())
    finally:
        plt.close(fig)
