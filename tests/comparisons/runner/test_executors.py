"""Local and Ray executors: end to end, failure isolation, identical results."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from comparisons.runner.executors import (
    Cell,
    LocalExecutor,
    RayExecutor,
    RunInterrupted,
    cell_id_of,
    run_cells,
)
from comparisons.runner.store import ResultsFolderBusy, ResultsStore

REPO = Path(__file__).resolve().parents[3]


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
    other = 2 if before == 1 else 1  # the suite runs on one thread (tests/conftest.py)
    outcomes = list(LocalExecutor(threads_per_worker=other).run(_threads_cell,
                                                                [Cell("d", 0, "m")]))
    assert outcomes[0].records[0]["value"] == float(other)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads_per_worker must be a positive integer"):
        LocalExecutor(threads_per_worker=0)


# ---------------------------------------------------------------------------- interruption
def _stopping_fn(stop_at):
    def fn(cell):
        if cell.split == stop_at:
            raise KeyboardInterrupt
        return dummy_cell_fn(cell)
    return fn


def test_keyboard_interrupt_becomes_one_line_run_interrupted(tmp_path):
    store = ResultsStore(tmp_path)
    cells = [Cell("yacht", k, "dummy", {}) for k in range(6)]
    with pytest.raises(RunInterrupted) as info:
        run_cells(cells, _stopping_fn(3), store, LocalExecutor(), progress=False)
    assert str(info.value) == (f"interrupted: 3 of 6 cells finished (0 already done before "
                               f"this run) in {tmp_path}; re-run the same command to resume")
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.finished, info.value.total, info.value.done_before) == (3, 6, 0)
    with pytest.raises(RunInterrupted, match=r"^interrupted: 5 of 6 cells finished \(3 already"):
        run_cells(cells, _stopping_fn(5), store, LocalExecutor(), progress=False)
    assert len(store.done_cells()) == 5
    assert run_cells(cells, dummy_cell_fn, store, progress=False).done == 1


_POOL_RUN = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    def cell_fn(cell):
        # written whole or not at all: the test reads these while the cells run
        tmp = Path(cell["piddir"], f".cell-{cell['split']}.tmp")
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, Path(cell["piddir"], f"cell-{cell['split']}.pid"))
        if cell["split"] > 0:
            time.sleep(120)
        return [{"dataset": "d", "method": "m", "split": cell["split"], "metric": "x",
                 "value": 1.0}]

    if __name__ == "__main__":
        import signal
        # a shell starts background jobs with SIGINT ignored, and children inherit that:
        # restore Python's own handler, as in a terminal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from comparisons.runner.executors import LocalExecutor, RunInterrupted, run_cells
        from comparisons.runner.store import ResultsStore

        out, piddir = sys.argv[1], sys.argv[2]
        cells = [{"cell_id": f"c{k}", "split": k, "piddir": piddir} for k in range(4)]
        try:
            # "fork" starts the workers at once (the default "spawn" re-imports torch in each,
            # seconds on a busy machine); the initializer that ties them to the parent is the same
            run_cells(cells, cell_fn, ResultsStore(out),
                      LocalExecutor(num_workers=2, mp_context="fork"), progress=False)
        except RunInterrupted as exc:
            print(exc, flush=True)
            sys.exit(130)
""")


def _alive(pid):
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _start_pool_run(tmp_path):
    """A parent process running 4 cells on 2 workers: cell 0 is quick, the others hang.

    Returns the parent and the worker pids once both workers hang in a cell (cell 0 done).
    """
    script, piddir, out = tmp_path / "pool_run.py", tmp_path / "pids", tmp_path / "out"
    script.write_text(_POOL_RUN)
    piddir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, str(script), str(out), str(piddir)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # its own process group, as in a shell
    deadline = time.monotonic() + 90
    store = ResultsStore(out)
    while len(list(piddir.glob("cell-[123].pid"))) < 2 or not store.is_done("c0"):
        if parent.poll() is not None or time.monotonic() > deadline:
            parent.kill()
            pytest.fail(f"the pool run did not start: {parent.communicate()}")
        time.sleep(0.05)
    pids = {int(p.read_text()) for p in piddir.glob("cell-*.pid")}
    assert len(pids) == 2 and parent.pid not in pids
    assert all(_alive(pid) for pid in pids)
    return parent, pids


def _lock_free_within(out, seconds) -> bool:
    """The folder's lock can be taken within ``seconds`` (the kernel drops a dead process's
    flock when its last file descriptor closes, which can lag its exit on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with ResultsStore(out).lock():
                return True
        except ResultsFolderBusy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def _wait_gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_pool_workers_die_with_a_killed_parent(tmp_path):
    parent, pids = _start_pool_run(tmp_path)
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(pids, 5.0) == []
        assert _lock_free_within(tmp_path / "out", 10.0)  # the dead run's lock is free
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_ctrl_c_stops_pool_workers_at_once_and_reports_one_line(tmp_path):
    parent, pids = _start_pool_run(tmp_path)
    try:
        start = time.monotonic()
        os.killpg(parent.pid, signal.SIGINT)  # Ctrl-C reaches the parent and its workers
        stdout, stderr = parent.communicate(timeout=20)
        assert time.monotonic() - start < 10  # the hanging cells were not waited for
        assert _wait_gone(pids, 5.0) == []
    finally:
        parent.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert parent.returncode == 130, stderr
    # cell 0's file is in the store; on a loaded machine the parent may not have counted its
    # result yet when Ctrl-C arrives, so the line says 0 or 1 (the store, not the count, is
    # what a resume reads)
    assert stdout.strip() in {
        f"interrupted: {k} of 4 cells finished (0 already done before this run) in "
        f"{tmp_path / 'out'}; re-run the same command to resume" for k in (0, 1)}
    assert "Traceback" not in stderr
    with ResultsStore(tmp_path / "out").lock():  # the lock went with the run
        assert ResultsStore(tmp_path / "out").done_cells() == {"c0"}


def grouped_cell_fn(work):
    """Cells of one data set computed together; the cell with ``nan_at`` fails on its own; the
    call count per cell goes into the records (must be 1: every cell computed once)."""
    from comparisons.runner.executors import CellError, CellGroup

    cells = work.cells if isinstance(work, CellGroup) else (work,)
    out = []
    for cell in cells:
        if cell.config.get("nan_at") == cell.split:
            out.append(CellError(f"FloatingPointError: NaN on split {cell.split}"))
        else:
            out.append(dummy_cell_fn(cell) + [
                {"dataset": cell.dataset, "method": cell.method, "split": cell.split,
                 "metric": "group_size", "value": float(len(cells))}])
    return out if isinstance(work, CellGroup) else out[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_groups_write_each_cell_and_isolate_a_failed_member(tmp_path, workers):
    # group_by = data set: yacht's 4 cells in one call, energy's 2 in another; the failing
    # member is recorded alone, the others written with the group's time split among them,
    # and a re-run computes only the failed cell (as a group of one)
    store = ResultsStore(tmp_path)
    cells = _cells(nan_at=3)  # only yacht has a split 3
    summary = run_cells(cells, grouped_cell_fn, store, LocalExecutor(workers), progress=False,
                        group_by=lambda c: c.dataset)
    bad = Cell("yacht", 3, "dummy", {"nan_at": 3}).cell_id
    assert (summary.done, summary.failed, summary.failed_cells) == (5, 1, (bad,))
    df = store.load_records()
    sizes = df[df.metric == "group_size"].groupby("dataset")["value"].unique()
    assert list(sizes["yacht"]) == [4.0] and list(sizes["energy"]) == [2.0]
    # the non-grouped reference gives the same metric values for the shared cells
    ref = ResultsStore(tmp_path / "ref")
    run_cells(cells, dummy_cell_fn, ref, progress=False)
    mine = _comparable(store)
    mine = mine[mine.metric != "group_size"].reset_index(drop=True)
    assert mine.equals(_comparable(ref))
    assert [f["cell_id"] for f in store.failures()] == [bad]
    again = run_cells(cells, grouped_cell_fn, store, LocalExecutor(workers), progress=False,
                      group_by=lambda c: c.dataset)
    assert (again.done, again.skipped, again.failed) == (0, 5, 1)


def test_a_group_that_returns_the_wrong_count_fails_every_member(tmp_path):
    store = ResultsStore(tmp_path)
    summary = run_cells(_cells(2), lambda work: [], store, progress=False,
                        group_by=lambda c: c.dataset)
    assert summary.failed == 4
    assert "returned 0 entries for a group of 2 cells" in store.failures()[0]["error"]
    with pytest.raises(ValueError, match="group_by must be a callable"):
        run_cells(_cells(1), dummy_cell_fn, store, progress=False, group_by="dataset")
