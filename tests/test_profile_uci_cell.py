"""``benchmarks/profile_uci_cell.py`` runs end to end on its --quick settings, as a user runs it
(``python benchmarks/profile_uci_cell.py --quick``), like the other benchmark scripts in
``tests/test_benchmarks.py``. Timings are not compared with anything (they only mean something on
a quiet machine): the test checks that every phase, profile group and ratio is printed and
positive."""

from __future__ import annotations

import re

from tests.common import run_benchmark_quick

PHASES = ("load + split + standardise", "grid training (12 nets, batched)",
          "validation scoring (12 nets x T)", "retraining (1 net, full split)",
          "test prediction (T)")


def _row(out: str, label: str) -> list[str]:
    """The cells of the first markdown table row whose first cell is ``label``."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in the output:\n{out[-3000:]}")


def _numbers(cells: list[str]) -> list[float]:
    return [float(m) for c in cells for m in re.findall(r"^-?\d+(?:\.\d+)?(?:e-?\d+)?", c)]


def test_profile_uci_cell_quick_mode_prints_phases_profile_and_ratios():
    out = run_benchmark_quick("profile_uci_cell")
    for section in ("## 1. Phases of one cell", "EXTRAPOLATION", "## 2. Inside the grid training",
                    "## 3. Candidate speed-ups", "torch.profiler"):
        assert section in out
    # section 1: every phase with a positive time at x_m; training phases also at 2m, ratio > 0
    for phase in PHASES:
        nums = _numbers(_row(out, phase)[1:])
        assert nums and nums[0] > 0, (phase, nums)
        assert all(v >= 0 for v in nums)
    for phase in (PHASES[1], PHASES[3]):
        cells = _row(out, phase)
        assert float(cells[3]) > 0 and float(cells[4]) > 0
    cell = _numbers(_row(out, "**cell**")[1:])
    assert cell[0] > 0
    # the nine-set extrapolation has a row per data set and a positive total
    for ds in ("bostonHousing", "kin8nm", "protein-tertiary-structure", "yacht"):
        assert _numbers(_row(out, ds)[-1:])[0] > 0
    assert "all nine" in out
    # section 2: the grouped profile
    for group in ("forward", "backward", "Adam update", "mask/random generation",
                  "minibatch gather/shuffle", "Python overhead"):
        assert float(_row(out, group)[2]) >= 0
    # section 3: ratios of the variants, all positive
    labels = ["float64", "minibatch 256", "minibatch 512", "max_grid=6 (first 6 grid points)",
              "2 splits' networks in one train_batched call (time / 2)"]
    for label in labels:
        cells = _row(out, label)
        assert float(cells[3]) > 0, (label, cells)
        assert float(cells[-1]) > 0, (label, cells)
    val = next(line for line in out.splitlines() if line.startswith("| validation scoring with"))
    assert float(val.split("|")[4]) > 0
