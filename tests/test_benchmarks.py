"""The benchmark scripts run end to end on their --quick settings, as a user runs them
(``python benchmarks/NAME.py --quick``). Timings are not checked here: they only mean something on
a quiet machine; the scripts print ratios measured side by side."""

from __future__ import annotations

import pytest

from tests.common import run_benchmark_quick


@pytest.mark.parametrize("name", ["bench_mc_predict", "bench_train", "bench_gp",
                                  "bench_learned_rates"])
def test_benchmark_quick_mode_prints_its_table(name):
    out = run_benchmark_quick(name)
    assert "|---|" in out
    assert "speed-up" in out or "ratio dense / low-rank" in out


def test_bench_per_example_quick_mode_prints_its_ratios():
    out = run_benchmark_quick("bench_per_example")
    assert "|---|" in out
    assert "ratio Trace_ELBO / per-example" in out
    assert "ratio SVI per-example / plain" in out
