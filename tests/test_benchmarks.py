"""The benchmark scripts run end to end on their --quick settings, as a user runs them
(``python benchmarks/NAME.py --quick``). Timings are not checked here: they only mean something on
a quiet machine; the scripts print ratios measured side by side."""

from __future__ import annotations

import json

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


def test_bench_hmc_quick_mode_compares_both_backends(tmp_path):
    # Pyro's and NumPyro's NUTS on Boston side by side (10 + 10 iterations at tree depth 3)
    pytest.importorskip("numpyro")
    out_json = tmp_path / "hmc.json"
    out = run_benchmark_quick("bench_hmc", "--part", "backends", "--out", str(out_json),
                              "--cache-dir", str(tmp_path / "cache"), timeout=600)
    assert "side by side" in out and f"written: {out_json}" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith(("grad_evals_per_second ", "seconds_per_draw_per_chain "))}
    for key in ("grad_evals_per_second", "seconds_per_draw_per_chain"):
        pyro, numpyro, ratio = (float(v) for v in rows[key])
        assert pyro > 0 and numpyro > 0
        assert abs(ratio - numpyro / pyro) <= 0.01 * ratio + 0.005  # printed to 4 digits
    record = json.loads(out_json.read_text())
    assert record["max_tree_depth"] == 3 and record["num_samples"] == 10
    assert set(record["runs"]) == {"potential", "numpyro"}
    for run in record["runs"].values():
        assert run["grad_evals_per_draw"] <= 2**3 - 1  # the quick mode's tree-depth cap


def test_bench_your_network_quick_mode_prints_its_ratios_and_verify_times():
    out = run_benchmark_quick("bench_your_network")
    assert "pyro.optim.Adam (ms)" in out and "JointAdam (ms)" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines()
            if line.startswith("| mnist_net | 8 |") or line.startswith("| bn_residual | 32 |")]
    assert len(rows) == 2
    for row in rows:  # plain, SVI + pyro Adam, ratio, SVI + JointAdam, ratio, native, ratio
        plain, per, per_ratio, joint, joint_ratio = (float(c.strip(" x")) for c in row[2:7])
        assert plain > 0 and abs(per_ratio - per / plain) <= 0.01 * per_ratio + 0.01
        assert abs(joint_ratio - joint / plain) <= 0.01 * joint_ratio + 0.01
    assert "| bn_residual | 24 |" in out and "/ " in out


def test_limit_table_quick_mode_prints_the_work_the_limit_and_the_measured_time():
    out = run_benchmark_quick("limit_table")
    assert "GFLOP/s on 2 thread(s)" in out and "|---|" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| yacht ")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0]]
    n, q, h, grid, epochs = (float(c) for c in cells[1:6])
    assert (n, q, h, grid, epochs) == (277, 6, 50, 12, 4000)  # yacht's split 0, x100
    limit, measured, ratio = (float(c) for c in cells[8:11])
    assert limit > 0 and measured > 0 and abs(ratio - measured / limit) <= 1e-3 * ratio


def test_bench_compiled_train_quick_mode_compares_torch_and_jax():
    """Both trainers on the same 24 networks; their mean test RMSEs must agree (the same model
    and optimiser, other random streams)."""
    out = run_benchmark_quick("bench_compiled_train")
    assert "| torch train_batched, this process, 1 thread |" in out
    assert "| JAX jit(vmap(scan)), 1 process" in out
    assert "mean test RMSE agree within 3 standard errors: True" in out


def test_bench_install_reads_the_makefiles_warm_imports():
    """``bench_install.py --part bytecode`` times what ``make install`` runs: the Python line of
    the Makefile's WARM_IMPORTS (not run here: it imports the whole stack)."""
    import importlib.util

    from tests.common import REPO

    spec = importlib.util.spec_from_file_location("bench_install",
                                                  REPO / "benchmarks" / "bench_install.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    line = bench.makefile_warm_imports()
    compile(line, "WARM_IMPORTS", "exec")  # one valid Python line
    assert "\\" not in line and "\n" not in line
    for name in ("torch._dynamo", "vi_dropout", "comparisons", "walk_packages", "__main__"):
        assert name in line
    assert '-c "$(WARM_IMPORTS)"' in (REPO / "Makefile").read_text()
