"""Crash safety, resumption and export of the results store."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

import comparisons.runner.store as rs
from comparisons.runner.executors import Cell, LocalExecutor, run_cells
from comparisons.runner.store import ResultsStore, make_cell_id


def _records(dataset, split, value, config=None):
    return [
        {"dataset": dataset, "method": "mc", "split": split, "metric": "rmse", "value": value,
         "config": config or {"p": 0.05}},
        {"dataset": dataset, "method": "mc", "split": split, "metric": "test_ll",
         "value": -value, "epochs_multiplier": 1},
    ]


def test_write_and_load(tmp_path):
    store = ResultsStore(tmp_path / "run")
    cid = make_cell_id("yacht", 0, {"p": 0.05}, method="mc")
    assert not store.is_done(cid)
    path = store.write_cell(cid, _records("yacht", 0, 1.5))
    assert store.is_done(cid) and path.parent == tmp_path / "run" / "cells"
    df = store.load_records()
    assert len(df) == 2 and set(df["metric"]) == {"rmse", "test_ll"}
    assert (df["cell_id"] == cid).all()
    assert df.loc[df.metric == "rmse", "config"].iloc[0] == {"p": 0.05}
    assert store.done_cells() == {cid}
    with pytest.raises(FileExistsError):
        store.write_cell(cid, _records("yacht", 0, 9.9))
    assert store.load_records().loc[lambda d: d.metric == "rmse", "value"].item() == 1.5


def test_cell_ids_stable_and_distinct():
    a = make_cell_id("yacht", 1, {"p": 0.1, "tau": 0.5})
    assert a == make_cell_id("yacht", 1, {"tau": 0.5, "p": 0.1})
    assert a != make_cell_id("yacht", 1, {"p": 0.1, "tau": 0.75})
    assert a != make_cell_id("yacht", 2, {"p": 0.1, "tau": 0.5})


def test_invalid_records_rejected(tmp_path):
    store = ResultsStore(tmp_path)
    with pytest.raises(ValueError, match="metric"):
        store.write_cell("c", [{"dataset": "d", "method": "m", "split": 0, "value": 1.0}])
    with pytest.raises(TypeError, match="real number"):
        store.write_cell("c", [{"dataset": "d", "method": "m", "split": 0, "metric": "x",
                                "value": "1.0"}])
    assert not store.is_done("c")


def test_crash_between_temp_write_and_replace_leaves_no_cell(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)

    def crash(src, dst):
        raise KeyboardInterrupt("killed before os.replace")

    monkeypatch.setattr(rs.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_cell("cell-a", _records("d", 0, 1.0))
    monkeypatch.undo()
    assert not store.is_done("cell-a")
    assert store.load_records().empty
    assert list(store.cells_dir.glob("*.json")) == []
    # the temp file was cleaned up; a stale one from a hard kill would be ignored
    assert store.stale_temp_files() == []
    (store.cells_dir / ".tmp-orphan.part").write_text('{"cell_id": "x", "records": [')
    assert store.load_records().empty and len(store.stale_temp_files()) == 1
    assert store.remove_stale_temp_files() == 1
    store.write_cell("cell-a", _records("d", 0, 1.0))
    assert len(store.load_records()) == 2


def test_atomic_write_fsyncs_and_replaces(tmp_path, monkeypatch):
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(rs.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(rs.os, "replace",
                        lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    target = tmp_path / "x.json"
    rs.atomic_write_text(target, "{}")
    assert target.read_text() == "{}" and synced
    (src, dst), = replaced
    assert os.path.dirname(src) == str(tmp_path) and dst == target


def _cell_fn_interrupting(cell):
    if cell.split == 3 and cell.config.get("interrupt"):
        raise KeyboardInterrupt
    return _records(cell.dataset, cell.split, float(cell.split))


def test_resume_after_interrupted_run(tmp_path):
    store = ResultsStore(tmp_path)
    cells_a = [Cell("yacht", k, "mc", {"interrupt": True}) for k in range(6)]
    with pytest.raises(KeyboardInterrupt):
        run_cells(cells_a, _cell_fn_interrupting, store, LocalExecutor(), progress=False)
    assert len(store.done_cells()) == 3  # cells 0, 1, 2 survived the interruption
    assert sorted(store.load_records()["split"].unique()) == [0, 1, 2]

    # resume: same ids, so the three finished cells are skipped
    calls = []

    def fn(cell):
        calls.append(cell.split)
        return _records(cell.dataset, cell.split, float(cell.split))

    summary = run_cells(cells_a, fn, store, LocalExecutor(), progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (3, 3, 0)
    assert calls == [3, 4, 5]
    df = store.load_records()
    assert len(store.done_cells()) == 6 and len(df) == 12
    assert not df.duplicated(["cell_id", "metric"]).any()
    again = run_cells(cells_a, fn, store, LocalExecutor(), progress=False)
    assert (again.done, again.skipped) == (0, 6) and len(store.load_records()) == 12


def test_export(tmp_path):
    store = ResultsStore(tmp_path / "run")
    store.write_cell("a", _records("yacht", 0, 1.0))
    store.write_cell("b", _records("energy", 1, float("nan")))
    paths = store.export()
    assert paths["csv"] == tmp_path / "run" / "records.csv"
    csv = pd.read_csv(paths["csv"])
    assert len(csv) == 4 and {"dataset", "method", "split", "metric", "value"} <= set(csv)
    assert json.loads(csv.loc[csv.cell_id == "a", "config"].dropna().iloc[0]) == {"p": 0.05}
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert len(data) == 4 and data[0]["cell_id"] == "a"
    assert [r["value"] for r in data if r["cell_id"] == "b"] == [None, None]
    other = store.export(tmp_path / "elsewhere")
    assert other["json"].exists() and other["csv"].read_text() == paths["csv"].read_text()
    assert not list((tmp_path / "run").glob(".tmp-*"))
