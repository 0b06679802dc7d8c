"""Every subcommand that writes results refuses at once, in one line with exit 2, while another
run holds its output folder (comparisons/runner/folder_lock.py), and leaves the folder as it was.
The lock is held here by a FolderLock object, as a second process holding it would (flock locks
of two open files exclude each other in one process as across processes:
tests/comparisons/runner/test_store_integrity.py runs the two-process case)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from comparisons.cli.main import SUBCOMMAND_MODULES, main
from comparisons.runner.folder_lock import FolderLock

ROOT = Path(__file__).resolve().parents[3]

#: the smallest command line of each subcommand that writes into ``{out}``
ARGV = {
    "uci": ["uci", "--dataset", "yacht", "--splits", "0", "--out", "{out}"],
    "gp-vs-dropout": ["gp-vs-dropout", "--dataset", "toy1d", "--out", "{out}"],
    "rotated-digit": ["rotated-digit", "--out", "{out}"],
    "pitfalls": ["pitfalls", "--out", "{out}"],
    "diagnose": ["diagnose", "--out", "{out}"],
    "mauna-loa": ["mauna-loa", "--out", "{out}"],
    "demo": ["demo", "--smoke", "--out", "{out}"],
    "uci-table": ["uci-table", "--records", str(ROOT / "docs" / "uci" / "x100" / "records.csv"),
                  "--out", "{out}"],
    "hmc-reference": ["hmc-reference", "--dataset", "yacht", "--out", "{out}"],
    "reference-scores": ["reference-scores", "--reference",
                         str(ROOT / "docs" / "reference" / "hmc"), "--dataset", "yacht",
                         "--out", "{out}"],
}


def test_every_subcommand_is_listed():
    assert set(ARGV) == set(SUBCOMMAND_MODULES)


@pytest.mark.parametrize("command", sorted(ARGV))
def test_a_busy_output_folder_is_refused_at_once(command, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier run's file")
    argv = [a.format(out=out) for a in ARGV[command]]
    t0 = time.perf_counter()
    with FolderLock(out):
        code = main(argv)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: results folder {out} is in use by "
                                                   "another run (pid "), err
    assert seconds < 20  # refused before any training or sampling
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
