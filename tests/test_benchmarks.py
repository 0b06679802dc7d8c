"""The benchmark scripts run end to end on their --quick settings, as a user runs them
(``python benchmarks/NAME.py --quick``). Timings are not checked here: they only mean something on
a quiet machine; the scripts print ratios measured side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["bench_mc_predict", "bench_train", "bench_gp",
                                  "bench_learned_rates"])
def test_benchmark_quick_mode_prints_its_table(name):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--quick"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "|---|" in proc.stdout
    assert "speed-up" in proc.stdout or "ratio dense / low-rank" in proc.stdout


def test_bench_per_example_quick_mode_prints_its_ratios():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_per_example.py"),
                           "--quick"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "|---|" in proc.stdout
    assert "ratio Trace_ELBO / per-example" in proc.stdout
    assert "ratio SVI per-example / plain" in proc.stdout
