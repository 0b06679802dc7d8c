"""The plotting helpers draw on the given ax, return it, and draw what the data say."""

import matplotlib.pyplot as plt  # the backend is Agg (tests/conftest.py)
import numpy as np
import pytest

import vi_dropout.plotting as plotting
from vi_dropout.plotting import (
    kl_records_from_rows,
    plot_dropout_normal_density,
    plot_gradient_vs_theta,
    plot_kl_gap,
    plot_value_offset,
)
from vi_dropout.verify.paper import check_kl
from vi_dropout.verify.report import format_table


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


THETAS = np.array([1e-1, 1e-3, 1e-5])


def _grad_diffs():
    """Per-parameter relative differences c * theta (as GradientDifferences gives them)."""
    return {"layers.0.weight": 2.0 * THETAS, "layers.0.bias": 3.0 * THETAS}


def _grad_rows():
    rows = []
    for theta in (1e-1, 1e-3, 1e-5):
        for name, c in (("layers.0.weight", 2.0), ("layers.0.bias", 3.0)):
            rows.append({"check": "gradient", "setting": f"theta={theta:g} {name}",
                         "value": c * theta, "tolerance": "", "passed": True, "detail": ""})
    rows.append({"check": "gradient", "setting": "log-log slope (theta <= 1e-3, all params)",
                 "value": 1.0, "tolerance": "", "passed": True, "detail": ""})
    rows.append({"check": "value", "setting": "theta=0.1", "value": 0.0, "tolerance": "",
                 "passed": True, "detail": ""})
    return rows


def test_all_is_complete():
    public = {n for n in dir(plotting) if n.startswith(("plot_", "kl_records"))}
    assert set(plotting.__all__) == public
    assert all(callable(getattr(plotting, n)) for n in plotting.__all__)


def test_density_one_line_per_theta_and_integrates_to_one(ax):
    x = np.linspace(-2, 3, 4001)
    out = plot_dropout_normal_density(ax, thetas=(0.05, 0.1, 0.3), loc=1.0, keep_prob=0.8, x=x)
    assert out is ax
    lines = ax.get_lines()
    assert len(lines) == 3
    for line in lines:
        xs, ys = line.get_data()
        assert len(xs) == len(x)
        assert np.trapezoid(ys, xs) == pytest.approx(1.0, abs=1e-3)
    # the kept spike (at m = 1) is pi / (1 - pi) = 4 times the dropped one (at 0)
    xs, ys = lines[0].get_data()
    assert ys[np.argmin(abs(xs - 1.0))] / ys[np.argmin(abs(xs))] == pytest.approx(4.0, rel=1e-3)


def test_gradient_plot_one_line_per_param_plus_reference(ax):
    thetas, diffs = THETAS, _grad_diffs()
    out = plot_gradient_vs_theta(thetas, diffs, ax)
    assert out is ax
    lines = ax.get_lines()
    assert len(lines) == len(diffs) + 1
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert all(len(line.get_xdata()) == 3 for line in lines)
    ref = lines[-1]
    xs, ys = np.asarray(ref.get_xdata()), np.asarray(ref.get_ydata())
    slope = np.polyfit(np.log(xs), np.log(ys), 1)[0]
    assert slope == pytest.approx(1.0)
    # anchored at the largest difference at the smallest theta
    assert ys[np.argmin(xs)] == pytest.approx(3e-5)


def test_gradient_plot_without_reference(ax):
    thetas, diffs = THETAS, _grad_diffs()
    plot_gradient_vs_theta(thetas, diffs, ax, reference_slope=None)
    assert len(ax.get_lines()) == len(diffs)


def test_value_offset_plot(ax):
    thetas = np.array([1e-1, 1e-3, 1e-6])
    predicted = -np.log(thetas)
    out = plot_value_offset(thetas, predicted + 1e-3, predicted, ax)
    assert out is ax
    lines = ax.get_lines()
    assert len(lines) == 2
    assert ax.get_xscale() == "log"
    # sorted by theta, the offset decreases as theta grows
    ys = np.asarray(lines[0].get_ydata())
    assert np.all(np.diff(ys) < 0)
    assert len(lines[1].get_xdata()) == 3


def test_kl_rows_parse_and_plot(ax):
    rows = check_kl(widths=(1, 4, 16), thetas=(1e-1,), keep_probs=(0.5, 0.9), num_cols=3,
                    num_samples=500, gap_samples=200)
    assert "passed" in format_table(rows)
    recs = kl_records_from_rows(rows)
    assert len(recs) == 6
    assert {r["K"] for r in recs} == {1, 4, 16}
    assert {r["keep_prob"] for r in recs} == {0.5, 0.9}
    for r, row in zip(recs, [r for r in rows if r["setting"].startswith("K=")]):
        # the row's value is MC - Prop.1 - gap, up to the rounding of the printed detail
        assert r["mc"] - r["prop1"] - r["gap"] == pytest.approx(row["value"], abs=2e-3)
    out = plot_kl_gap(rows, ax)
    assert out is ax
    # one gap line per (theta, keep_prob) plus the zero line; one errorbar set per group
    gap_lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("gap")]
    assert len(gap_lines) == 2
    assert all(len(ln.get_xdata()) == 3 for ln in gap_lines)
    assert len(ax.containers) == 2
    assert ax.get_xscale() == "log"


def test_kl_rows_parse_rejects_rows_without_widths():
    with pytest.raises(ValueError, match="no per-width"):
        kl_records_from_rows(_grad_rows())
