"""Integrity of a results folder: damaged cell files, the folder lock, the settings check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from comparisons.runner.executors import run_cells
from comparisons.runner.store import (
    DamagedCellWarning,
    ResultsFolderBusy,
    ResultsStore,
    SettingsMismatch,
    records_checksum,
)

REPO = Path(__file__).resolve().parents[3]


def _records(cell_id, value=1.0):
    return [{"dataset": "yacht", "method": "mc", "split": int(cell_id[-1]), "metric": m,
             "value": value, "config": {"p": 0.05}} for m in ("rmse", "test_ll")]


def _fn(calls):
    def fn(cell):
        calls.append(cell["cell_id"])
        return _records(cell["cell_id"], float(len(calls)))
    return fn


def _cells(n=3):
    return [{"cell_id": f"cell-{k}"} for k in range(n)]


def _truncate(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data[: len(data) // 2]


def test_cell_files_carry_checksum_and_complete_marker(tmp_path):
    store = ResultsStore(tmp_path)
    path = store.write_cell("cell-0", _records("cell-0"))
    doc = json.loads(path.read_text())
    assert doc["complete"] is True
    assert doc["records_sha256"] == records_checksum(doc["records"])
    assert len(doc["records_sha256"]) == 64 and store.verify_cell_file(path) is None


def test_truncated_cell_is_not_done_skipped_and_named(tmp_path):
    store = ResultsStore(tmp_path)
    for cid in ("cell-0", "cell-1", "cell-2"):
        store.write_cell(cid, _records(cid))
    bad = store.cell_path("cell-1")
    _truncate(bad)
    assert store.is_done("cell-0") and not store.is_done("cell-1")
    assert "JSONDecodeError" in store.verify_cell_file(bad)
    assert list(store.damaged_cells()) == [bad]
    with pytest.warns(DamagedCellWarning, match=rf"1 damaged cell file.*{bad.name}"):
        assert store.done_cells() == {"cell-0", "cell-2"}
    with pytest.warns(DamagedCellWarning, match=bad.name):
        df = store.load_records()
    assert sorted(df["cell_id"].unique()) == ["cell-0", "cell-2"]
    with pytest.warns(DamagedCellWarning, match=str(bad)):
        paths = store.export()
    assert len(pd.read_csv(paths["csv"])) == 4
    assert bad.exists()  # readers never move or delete anything


@pytest.mark.parametrize("damage, reason", [
    (lambda d: d["records"][0].update(value=99.0), "checksum"),
    (lambda d: d.update(complete=False), "not marked complete"),
    (lambda d: d.update(cell_id="cell-9"), "does not match its cell_id"),
    (lambda d: d["records"][0].pop("metric"), "invalid records"),
    (lambda d: d.update(records={"a": 1}), "not a list"),
])
def test_edited_cell_files_are_damaged(tmp_path, damage, reason):
    store = ResultsStore(tmp_path)
    path = store.write_cell("cell-0", _records("cell-0"))
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    assert reason in store.verify_cell_file(path)
    assert not store.is_done("cell-0")
    with pytest.warns(DamagedCellWarning, match=path.name):
        assert store.load_records().empty


def test_cell_file_without_checksum_is_damaged_and_recomputed(tmp_path):
    """An edited value with its records_sha256 removed is not an "old" file: it is damaged,
    moved aside and its cell runs again (nothing in the repository holds checksum-less cells)."""
    store = ResultsStore(tmp_path)
    calls: list[str] = []
    run_cells(_cells(1), _fn(calls), store, progress=False)
    path = store.cell_path("cell-0")
    doc = json.loads(path.read_text())
    true_value = doc["records"][0]["value"]
    doc["records"][0]["value"] = 123.0
    del doc["records_sha256"]
    path.write_text(json.dumps(doc))
    assert "no records_sha256" in store.verify_cell_file(path)
    assert not store.is_done("cell-0")
    with pytest.warns(DamagedCellWarning, match="no records_sha256"):
        summary = run_cells(_cells(1), _fn(calls), store, progress=False)
    assert summary.done == 1 and summary.skipped == 0
    assert (tmp_path / "damaged" / path.name).exists()
    # recomputed (the test's cell function returns its call count), not the edited 123
    assert true_value == 1.0 and store.load_records()["value"].iloc[0] == 2.0


def test_write_cell_moves_a_damaged_file_in_its_way_aside(tmp_path):
    """A truncated cell file where a cell is to be written (e.g. reference-scores' cache) is moved
    to damaged/ and the cell written; a verified one is still refused (append-only)."""
    store = ResultsStore(tmp_path)
    recs = _records("cell-0", 1.0)
    path = store.write_cell("cell-0", recs)
    path.write_text(path.read_text()[:40])
    with pytest.warns(DamagedCellWarning, match="moved to"):
        store.write_cell("cell-0", recs)
    assert store.is_done("cell-0") and (tmp_path / "damaged" / path.name).exists()
    with pytest.raises(FileExistsError, match="already recorded"):
        store.write_cell("cell-0", recs)


def test_run_cells_moves_damaged_files_aside_and_reruns_them(tmp_path):
    store = ResultsStore(tmp_path)
    calls: list[str] = []
    assert run_cells(_cells(), _fn(calls), store, progress=False).done == 3
    bad = store.cell_path("cell-2")
    kept = _truncate(bad)
    with pytest.warns(DamagedCellWarning, match=rf"{bad}: unreadable.*moved to .*damaged"):
        summary = run_cells(_cells(), _fn(calls), store, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (1, 2, 0)
    assert calls == ["cell-0", "cell-1", "cell-2", "cell-2"]
    assert (tmp_path / "damaged" / bad.name).read_bytes() == kept  # nothing lost
    assert store.verify_cell_file(bad) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(store.load_records()) == 6
    # a second damage of the same file keeps both damaged copies
    _truncate(bad)
    with pytest.warns(DamagedCellWarning):
        run_cells(_cells(), _fn(calls), store, progress=False)
    assert sorted(p.name for p in (tmp_path / "damaged").iterdir()) == [bad.name,
                                                                         bad.name + ".1"]


# ---------------------------------------------------------------------------- the lock
def test_lock_excludes_other_stores_and_is_reentrant(tmp_path):
    first, second = ResultsStore(tmp_path), ResultsStore(tmp_path)
    calls: list[str] = []
    with first.lock():
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(ResultsFolderBusy) as info:
            run_cells(_cells(), _fn(calls), second, progress=False)
        assert calls == [] and not second.done_cells()
        message = str(info.value)
        assert message.startswith(f"results folder {tmp_path} is in use by another run "
                                  f"(pid {os.getpid()}, started {holder['started_at']})")
        assert "choose another --out" in message and "\n" not in message
        assert isinstance(info.value, ValueError) and info.value.pid == os.getpid()
        # the holder itself may run cells (re-entrant), and keeps the lock afterwards
        assert run_cells(_cells(), _fn(calls), first, progress=False).done == 3
        with pytest.raises(ResultsFolderBusy):
            second.lock().__enter__()
    assert not (tmp_path / ".lock").exists()  # released and removed
    assert run_cells(_cells(), _fn(calls), second, progress=False).skipped == 3


def test_lock_released_when_run_raises(tmp_path):
    store = ResultsStore(tmp_path)

    def boom(cell):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cells(_cells(), boom, store, progress=False)
    with ResultsStore(tmp_path).lock():  # free again
        pass


_SLOW_RUN = textwrap.dedent("""
    import os, sys, time
    from comparisons.runner.executors import run_cells
    from comparisons.runner.store import ResultsStore

    out, log = sys.argv[1], sys.argv[2]

    def fn(cell):
        with open(log, "a") as fh:
            fh.write(f"{cell['cell_id']} {os.getpid()}\\n")
        time.sleep(0.4)
        return [{"dataset": "d", "method": "m", "split": 0, "metric": "x", "value": 1.0}]

    s = run_cells([{"cell_id": f"cell-{k}"} for k in range(4)], fn, ResultsStore(out),
                  progress=False)
    print(s.done, s.skipped)
""")


def test_concurrent_run_refuses_and_no_cell_runs_twice(tmp_path):
    script, log = tmp_path / "slow_run.py", tmp_path / "calls.log"
    script.write_text(_SLOW_RUN)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(log)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_text()) and proc.poll() is None:
            assert time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.05)
        calls: list[str] = []
        with pytest.raises(ResultsFolderBusy, match=rf"in use by another run \(pid {proc.pid},"):
            run_cells([{"cell_id": f"cell-{k}"} for k in range(4)], _fn(calls),
                      ResultsStore(out), progress=False)
        assert calls == []
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    assert stdout.split() == ["4", "0"]
    again = run_cells([{"cell_id": f"cell-{k}"} for k in range(4)], _fn(calls),
                      ResultsStore(out), progress=False)
    assert (again.done, again.skipped) == (0, 4) and calls == []
    lines = log.read_text().split()[::2]
    assert sorted(lines) == [f"cell-{k}" for k in range(4)]  # each cell computed once


# ---------------------------------------------------------------------------- settings
def test_settings_recorded_then_checked(tmp_path):
    settings = {"epochs_multiplier": 1, "num_samples": 10, "seed": 0, "methods": ["mc"]}
    calls: list[str] = []
    run_cells(_cells(2), _fn(calls), ResultsStore(tmp_path, settings=settings), progress=False)
    doc = json.loads((tmp_path / "settings.json").read_text())
    assert doc["settings"] == settings and len(doc["fingerprint"]) == 64
    assert [h["fingerprint"] for h in doc["history"]] == [doc["fingerprint"]]

    # same settings in another key order (tuple for list): a normal resume, more cells
    same = dict(reversed(list(settings.items())), methods=("mc",))
    assert run_cells(_cells(3), _fn(calls), ResultsStore(tmp_path, settings=same),
                     progress=False).done == 1
    assert json.loads((tmp_path / "settings.json").read_text()) == doc

    changed = dict(settings, epochs_multiplier=10, seed=1)
    changed.pop("num_samples")
    with pytest.raises(SettingsMismatch) as info:
        run_cells(_cells(4), _fn(calls), ResultsStore(tmp_path, settings=changed),
                  progress=False)
    message = str(info.value)
    assert "epochs_multiplier 1 -> 10, num_samples 10 -> <unset>, seed 0 -> 1" in message
    assert "--allow-settings-change" in message and "another --out" in message
    assert "\n" not in message and isinstance(info.value, ValueError)
    assert info.value.changes == {"epochs_multiplier": (1, 10), "num_samples": (10, "<unset>"),
                                  "seed": (0, 1)}
    assert calls == ["cell-0", "cell-1", "cell-2"]  # nothing ran
    assert ResultsStore(tmp_path).check_settings() is None  # no settings: no check

    store = ResultsStore(tmp_path, settings=changed, allow_settings_change=True)
    assert run_cells(_cells(4), _fn(calls), store, progress=False).done == 1
    doc = json.loads((tmp_path / "settings.json").read_text())
    assert doc["settings"] == changed
    assert [h["settings"] for h in doc["history"]] == [settings, changed]
    run_cells(_cells(4), _fn(calls), ResultsStore(tmp_path, settings=changed), progress=False)


def test_unreadable_settings_file(tmp_path):
    (tmp_path / "settings.json").write_text('{"fingerprint": "ab", "sett')
    with pytest.raises(SettingsMismatch, match="cannot read the settings .*settings.json"):
        ResultsStore(tmp_path, settings={"seed": 0}).check_settings()
    store = ResultsStore(tmp_path, settings={"seed": 0}, allow_settings_change=True)
    with pytest.warns(DamagedCellWarning, match="replacing unreadable"):
        assert store.check_settings() == {"seed": 0}
    assert ResultsStore(tmp_path, settings={"seed": 0}).check_settings() == {"seed": 0}


def test_settings_argument_checked():
    with pytest.raises(TypeError, match="settings must be a mapping"):
        ResultsStore("unused", settings=[("seed", 0)])
    with pytest.raises(ValueError, match="settings must be JSON-serialisable"):
        ResultsStore("unused", settings={"fn": object()})


# ---------------------------------------------------------------------------- settings in cells
@pytest.mark.parametrize("tamper", ["delete", "replace"])
def test_cells_witness_their_settings_when_settings_json_is_gone(tmp_path, tamper):
    """settings.json deleted (or overwritten with the new settings): a run with another seed is
    still refused, because every cell file says what it was made with."""
    run_cells(_cells(2), _fn([]), ResultsStore(tmp_path, settings={"seed": 0}), progress=False)
    doc = json.loads(store_cell := ResultsStore(tmp_path).cell_path("cell-0").read_text())
    assert doc["settings"] == {"seed": 0} and len(doc["settings_sha256"]) == 64, store_cell
    settings_json = tmp_path / "settings.json"
    if tamper == "delete":
        settings_json.unlink()
    else:
        ResultsStore(tmp_path / "elsewhere", settings={"seed": 1}).check_settings()
        settings_json.write_text((tmp_path / "elsewhere" / "settings.json").read_text())
    calls: list[str] = []
    other = ResultsStore(tmp_path, settings={"seed": 1})
    with pytest.raises(SettingsMismatch, match=r"holds cells made with other settings \(seed 0 "
                                               r"-> 1; settings.json does not say so"):
        run_cells(_cells(3), _fn(calls), other, progress=False)
    assert calls == [] and len(ResultsStore(tmp_path).load_records()) == 4
    # the same settings resume; the folder's settings.json is written again
    same = ResultsStore(tmp_path, settings={"seed": 0})
    if tamper == "replace":
        same = ResultsStore(tmp_path, settings={"seed": 0}, allow_settings_change=True)
    assert run_cells(_cells(3), _fn(calls), same, progress=False).skipped == 2
    assert json.loads(settings_json.read_text())["settings"] == {"seed": 0}


def test_edited_settings_in_a_cell_make_it_damaged(tmp_path):
    store = ResultsStore(tmp_path, settings={"seed": 0})
    run_cells(_cells(1), _fn([]), store, progress=False)
    path = store.cell_path("cell-0")
    doc = json.loads(path.read_text())
    doc["settings"]["seed"] = 1
    path.write_text(json.dumps(doc))
    assert "settings_sha256" in store.verify_cell_file(path)


def test_a_folder_without_cells_takes_new_settings(tmp_path):
    """A run that failed before its first cell (e.g. Ray did not start) left settings.json: the
    folder holds no results, so other settings are not refused."""
    ResultsStore(tmp_path, settings={"seed": 0}).check_settings()
    assert ResultsStore(tmp_path, settings={"seed": 1}).check_settings() == {"seed": 1}
    run_cells(_cells(1), _fn([]), ResultsStore(tmp_path, settings={"seed": 1}), progress=False)
    with pytest.raises(SettingsMismatch, match="seed 1 -> 2"):
        ResultsStore(tmp_path, settings={"seed": 2}).check_settings()


def test_cells_of_an_older_version_are_vouched_for_by_a_matching_settings_json(tmp_path):
    """Cells written before they carried their settings resume under a settings.json that
    matches, and are refused without one."""
    store = ResultsStore(tmp_path, settings={"seed": 0})
    run_cells(_cells(2), _fn([]), store, progress=False)
    for path in (tmp_path / "cells").glob("*.json"):  # as an older version wrote them
        doc = json.loads(path.read_text())
        del doc["settings"], doc["settings_sha256"]
        path.write_text(json.dumps(doc))
    assert run_cells(_cells(2), _fn([]), ResultsStore(tmp_path, settings={"seed": 0}),
                     progress=False).skipped == 2
    (tmp_path / "settings.json").unlink()
    with pytest.raises(SettingsMismatch, match="written before cells carried them"):
        ResultsStore(tmp_path, settings={"seed": 0}).check_settings()
