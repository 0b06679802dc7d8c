"""Local and Ray executors: end to end, failure isolation, identical results."""

from __future__ import annotations

import json
import math

import pytest

from comparisons.executors import Cell, LocalExecutor, RayExecutor, cell_id_of, run_cells
from comparisons.results_store import ResultsStore


def dummy_cell_fn(cell):
    """Deterministic 'experiment': two metrics per cell; NaN loss when config asks for it."""
    if cell.config.get("nan_at") == cell.split:
        loss = float("nan")
        if math.isnan(loss):
            raise FloatingPointError(f"NaN training loss on split {cell.split}")
    base = 0.5 * cell.split + cell.config.get("offset", 0.0)
    return [
        {"dataset": cell.dataset, "method": cell.method, "split": cell.split,
         "metric": "rmse", "value": 1.0 + base, "config": dict(cell.config)},
        {"dataset": cell.dataset, "method": cell.method, "split": cell.split,
         "metric": "test_ll", "value": -1.0 - base, "config": dict(cell.config)},
    ]


def _cells(n=4, **config):
    return [Cell("yacht", k, "dummy", dict(config)) for k in range(n)] + [
        Cell("energy", k, "dummy", dict(config, offset=10.0)) for k in range(2)]


def _comparable(store):
    df = store.load_records().drop(columns=["wall_time_s"])
    return df.sort_values(["cell_id", "metric"]).reset_index(drop=True)


def test_local_executor_end_to_end(tmp_path, capsys):
    store = ResultsStore(tmp_path)
    cells = _cells()
    summary = run_cells(cells, dummy_cell_fn, store, LocalExecutor(num_workers=1), progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (6, 0, 0)
    df = store.load_records()
    assert len(df) == 12 and (df["wall_time_s"] >= 0).all()
    rmse = df[(df.dataset == "energy") & (df.metric == "rmse")].sort_values("split")
    assert rmse["value"].tolist() == [11.0, 11.5]
    assert store.done_cells() == {c.cell_id for c in cells}
    assert store.failures() == []
    capsys.readouterr()
    again = run_cells(cells, dummy_cell_fn, store, LocalExecutor(), progress=True)
    assert (again.done, again.skipped) == (0, 6)
    assert "cells" in capsys.readouterr().err  # tqdm progress bar over cells


def test_process_pool_matches_in_process(tmp_path):
    a, b = ResultsStore(tmp_path / "a"), ResultsStore(tmp_path / "b")
    run_cells(_cells(), dummy_cell_fn, a, LocalExecutor(1), progress=False)
    s = run_cells(_cells(), dummy_cell_fn, b, LocalExecutor(num_workers=2), progress=False)
    assert s.done == 6
    assert _comparable(a).equals(_comparable(b))


def test_failure_isolation(tmp_path):
    store = ResultsStore(tmp_path)
    cells = _cells(nan_at=2)
    summary = run_cells(cells, dummy_cell_fn, store, LocalExecutor(), progress=False)
    bad = Cell("yacht", 2, "dummy", {"nan_at": 2}).cell_id
    assert (summary.done, summary.failed) == (5, 1) and summary.failed_cells == (bad,)
    assert len(store.load_records()) == 10 and not store.is_done(bad)
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert [f["cell_id"] for f in failures] == [bad]
    assert failures[0]["error"] == "FloatingPointError: NaN training loss on split 2"
    assert "dummy_cell_fn" in failures[0]["traceback"]

    # a re-run retries only the failed cell; once it succeeds the failure is cleared
    def fixed(cell):
        return dummy_cell_fn(Cell(cell.dataset, cell.split, cell.method, {}))

    second = run_cells(cells, fixed, store, LocalExecutor(), progress=False)
    assert (second.done, second.skipped, second.failed) == (1, 5, 0)
    assert json.loads((tmp_path / "failures.json").read_text()) == []
    assert len(store.load_records()) == 12


def test_invalid_records_are_failures(tmp_path):
    store = ResultsStore(tmp_path)
    cells = [{"cell_id": "ok"}, {"cell_id": "bad"}]

    def fn(cell):
        if cell["cell_id"] == "bad":
            return [{"dataset": "d", "value": 1.0}]
        return [{"dataset": "d", "method": "m", "split": 0, "metric": "x", "value": 1.0}]

    summary = run_cells(cells, fn, store, progress=False)
    assert (summary.done, summary.failed, summary.failed_cells) == (1, 1, ("bad",))
    assert "lacks required field" in store.failures()[0]["error"]
    with pytest.raises(ValueError, match="duplicated cell ids"):
        run_cells(cells + cells, fn, store, progress=False)
    with pytest.raises(TypeError, match="cell_id"):
        cell_id_of(object())


def test_ray_executor_local_instance_matches_local(tmp_path, monkeypatch):
    try:
        import ray
    except ImportError as exc:
        pytest.fail(f"Ray is not installed (pip install .[distributed]): {exc}")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    if ray.is_initialized():
        ray.shutdown()
    executor = RayExecutor(num_cpus=1, init_kwargs={
        "include_dashboard": False,
        "_node_ip_address": "127.0.0.1",
        "object_store_memory": 80 * 1024 * 1024,
        "log_to_driver": False,
    })
    cells = _cells(nan_at=1)
    local, remote = ResultsStore(tmp_path / "local"), ResultsStore(tmp_path / "ray")
    s_local = run_cells(cells, dummy_cell_fn, local, LocalExecutor(), progress=False)
    try:
        s_ray = run_cells(cells, dummy_cell_fn, remote, executor, progress=False)
    except Exception as exc:  # noqa: BLE001 - turn an environment problem into a clear failure
        pytest.fail(f"Ray could not start or run a local instance (num_cpus=1, 127.0.0.1): "
                    f"{type(exc).__name__}: {exc}")
    assert not ray.is_initialized()  # the executor shut down the instance it started
    # nan_at=1 fails split 1 of both data sets
    assert (s_ray.done, s_ray.skipped, s_ray.failed) == (s_local.done, 0, 2) == (4, 0, 2)
    assert s_ray.failed_cells == s_local.failed_cells
    assert len(remote.load_records()) == 8
    assert _comparable(local).equals(_comparable(remote))
    assert [f["error"] for f in remote.failures()] == [f["error"] for f in local.failures()]


def _threads_cell(cell):
    import torch

    return [{"dataset": cell.dataset, "method": cell.method, "split": cell.split,
             "metric": "threads", "value": float(torch.get_num_threads())}]


def test_local_executor_sets_torch_threads_and_restores_them():
    import torch

    before = torch.get_num_threads()
    outcomes = list(LocalExecutor(threads_per_worker=1).run(_threads_cell, [Cell("d", 0, "m")]))
    assert outcomes[0].records[0]["value"] == 1.0
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads_per_worker must be a positive integer"):
        LocalExecutor(threads_per_worker=0)
