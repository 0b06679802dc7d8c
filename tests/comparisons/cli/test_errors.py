"""A user's mistake on the command line ends with ONE line on stderr and exit code 2, no traceback
(``--debug`` shows it), before any work starts where it can be checked; Ctrl-C is one line and
exit code 130."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from comparisons.cli import main as cli
from comparisons.datasets.uci import UCI_DATASETS
from comparisons.protocols.uci import UCIProtocol, parse_splits, uci_cells, uci_splits

main = cli.main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def paths(tmp_path):
    """``{out}``: a folder that does not exist yet; ``{file}``: an existing file."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    return {"out": str(tmp_path / "out"), "file": str(afile)}


def _fill(argv, paths):
    return [a.format(**paths) for a in argv]


def _call(argv, capsys):
    """``(exit code, stderr, from_argparse)`` of ``main(argv)``."""
    try:
        code, from_argparse = main(argv), False
    except SystemExit as exc:
        code, from_argparse = exc.code, True
    return code, capsys.readouterr().err, from_argparse


def _assert_one_error_line(err: str, from_argparse: bool) -> str:
    """The error line; argparse prints its usage (possibly wrapped) first."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if from_argparse:
        assert lines[0].startswith("usage: ")
        assert all(line.startswith(" ") for line in lines[1:-1]), err  # usage continuation
        assert ": error: " in lines[-1] and all(": error: " not in x for x in lines[:-1]), err
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[-1]


#: (argv, a piece of the error line); ``{out}`` and ``{file}`` come from the ``paths`` fixture
ARGPARSE_ERRORS = [
    (["uci", "--dataset", "nope", "--out", "{out}"], "unknown UCI data set 'nope'"),
    (["uci", "--out", "{out}"], "the following arguments are required: --dataset"),
    (["uci", "--dataset", "yacht", "--splits", "5-2", "--out", "{out}"], "'5-2' is empty"),
    (["uci", "--dataset", "yacht", "--splits", "x", "--out", "{out}"], "splits must look like"),
    (["uci", "--dataset", "yacht", "--workers", "0", "--out", "{out}"],
     "--workers must be an integer >= 1, got '0'"),
    (["uci", "--dataset", "yacht", "--epochs-multiplier", "0", "--out", "{out}"],
     "--epochs-multiplier must be a finite number > 0, got '0'"),
    (["uci", "--dataset", "yacht", "--num-samples", "0", "--out", "{out}"],
     "--num-samples must be an integer >= 1, got '0'"),
    (["uci", "--dataset", "yacht", "--threads", "0", "--out", "{out}"],
     "--threads must be an integer >= 1, got '0'"),
    (["uci", "--dataset", "yacht", "--methods", "hmc", "--out", "{out}"], "--methods"),
    (["uci", "--dataset", "yacht", "--out", "{file}"], "--out must be a folder, got the existing"),
    (["mauna-loa", "--out", "{out}", "--keep-prob", "0"],
     "--keep-prob must be a finite number in (0, 1]"),
    (["mauna-loa", "--out", "{out}", "--keep-prob", "1.5"], "got '1.5'"),
    (["mauna-loa", "--out", "{out}", "--drop-rate", "0.2"], "unrecognized arguments: --drop-rate"),
    (["mauna-loa", "--out", "{out}", "--train-fraction", "1"], "--train-fraction"),
    (["mauna-loa", "--out", "{out}", "--threads", "0"], "--threads must be an integer >= 1"),
    (["rotated-digit", "--out", "{out}", "--keep-prob", "nan"], "--keep-prob"),
    (["rotated-digit", "--out", "{out}", "--threads", "0"], "--threads must be an integer >= 1"),
    (["rotated-digit", "--out", "{file}/sub"], "is a file, not a folder"),
    (["pitfalls", "--out", "{out}", "--keep-prob", "0"], "--keep-prob"),
    (["pitfalls", "--out", "{out}", "--iterations", "0"], "--iterations must be an integer >= 1"),
    (["pitfalls", "--out", "{out}", "--steps", "50"], "unrecognized arguments: --steps"),
    (["pitfalls", "--out", "{out}", "--threads", "0"], "--threads must be an integer >= 1"),
    (["gp-vs-dropout", "--out", "{out}", "--dataset", "nope"], "unknown UCI data set 'nope'"),
    (["gp-vs-dropout", "--out", "{out}", "--threads", "0"], "--threads must be an integer >= 1"),
    (["gp-vs-dropout", "--out", "{out}", "--split", "-1"], "--split must be an integer >= 0"),
    (["diagnose", "--out", "{out}", "--threads", "0"], "--threads must be an integer >= 1"),
    (["diagnose", "--out", "{out}", "--dataset", "nope"], "unknown UCI data set 'nope'"),
    (["demo", "--steps", "nope", "--out", "{out}"], "gp-vs-dropout, uci, rotated-digit"),
    (["demo", "--out", "{file}"], "--out must be a folder"),
]


@pytest.mark.parametrize("argv, expected", ARGPARSE_ERRORS,
                         ids=[" ".join(a[:1] + a[2:4]) for a, _ in ARGPARSE_ERRORS])
def test_argparse_errors_are_usage_and_one_line(argv, expected, paths, capsys):
    code, err, from_argparse = _call(_fill(argv, paths), capsys)
    assert code == 2 and from_argparse
    assert expected in _assert_one_error_line(err, from_argparse)
    assert not Path(paths["out"]).exists()  # nothing was started


#: errors found once the run starts (before any work): exit code 2, one line ``error: ...``
RUN_ERRORS = [
    (["uci", "--dataset", "protein", "--splits", "7", "--out", "{out}"],
     "splits 7 do not exist in any selected data set (available: protein-tertiary-structure "
     "0..4)"),
    (["uci", "--dataset", "yacht,concrete", "--splits", "0,25-30", "--out", "{out}"],
     "splits 25-30 do not exist"),
    (["gp-vs-dropout", "--dataset", "yacht", "--split", "99", "--out", "{out}", "--no-progress"],
     "split 99 out of range for yacht"),
    (["rotated-digit", "--digit-index", "9999", "--out", "{out}", "--no-progress"],
     "--digit-index 9999: index must be <"),
]


@pytest.mark.parametrize("argv, expected", RUN_ERRORS, ids=[a[0] for a, _ in RUN_ERRORS])
def test_run_errors_are_one_line(argv, expected, paths, capsys):
    t0 = time.perf_counter()
    code, err, from_argparse = _call(_fill(argv, paths), capsys)
    assert code == 2 and not from_argparse
    assert expected in _assert_one_error_line(err, from_argparse)
    assert time.perf_counter() - t0 < 20  # found before the training


def test_debug_shows_the_traceback(paths, capsys):
    argv = ["uci", "--dataset", "protein", "--splits", "7", "--out", paths["out"]]
    with pytest.raises(ValueError, match="splits 7 do not exist"):
        main(["--debug", *argv])
    with pytest.raises(ValueError, match="splits 7 do not exist"):
        main([*argv, "--debug"])  # also after the subcommand


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, paths, capsys):
    def interrupted(args, modules):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "dispatch", interrupted)
    assert main(["mauna-loa", "--out", paths["out"]]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_interrupted_uci_run_says_how_to_resume(monkeypatch, paths, capsys):
    from comparisons.runner import executors
    from comparisons.runner.executors import RunInterrupted

    exc = RunInterrupted(finished=0, total=1, done_before=0, out=paths["out"])
    message = str(exc)
    assert "re-run the same command to resume" in message

    def run_cells(*args, **kwargs):
        raise exc

    monkeypatch.setattr(executors, "run_cells", run_cells)
    assert main(["uci", "--dataset", "yacht", "--splits", "0", "--out", paths["out"],
                 "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == message and "Traceback" not in err


def test_uci_refuses_to_mix_settings(paths, capsys):
    tiny = ["uci", "--dataset", "yacht", "--splits", "0", "--out", paths["out"], "--max-grid", "1",
            "--epochs-multiplier", "0.05", "--no-progress"]
    assert main([*tiny, "--num-samples", "20"]) == 0
    capsys.readouterr()
    code, err, from_argparse = _call([*tiny, "--num-samples", "30"], capsys)
    assert code == 2
    line = _assert_one_error_line(err, from_argparse)
    assert "--allow-settings-change" in line or "num_samples" in line
    assert main([*tiny, "--num-samples", "30", "--allow-settings-change"]) == 0
    summary = (Path(paths["out"]) / "report.md").read_text()
    assert "T = 30" in summary and "1 cells of other settings" in summary


# ------------------------------------------------------------------ splits clipped per data set

def test_default_splits_are_clipped_per_data_set():
    assert parse_splits("0-19", 5, clip_ranges=True) == [0, 1, 2, 3, 4]
    cells = uci_cells(["protein"], "0-19", UCIProtocol())
    assert [c.split for c in cells] == [0, 1, 2, 3, 4]
    assert {c.dataset for c in cells} == {"protein-tertiary-structure"}
    every = uci_splits(list(UCI_DATASETS), "0-19")
    assert sum(map(len, every.values())) == 165 and len(every["yacht"]) == 20
    # a listed split runs on the data sets that have it
    assert uci_splits(["yacht", "protein"], "7") == {"yacht": [7]}
    assert uci_splits(["yacht", "protein"], "3-7") == {"yacht": [3, 4, 5, 6, 7],
                                                       "protein-tertiary-structure": [3, 4]}
    with pytest.raises(ValueError, match="'5-2' is empty"):
        uci_cells(["yacht"], "5-2", UCIProtocol())
    with pytest.raises(ValueError, match="splits 20 do not exist"):
        uci_cells(["yacht"], "20", UCIProtocol())


# --------------------------------------------------------------------- through a real process

def _process(*argv):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("argv, expected, from_argparse", [
    (["-m", "comparisons", "uci", "--dataset", "yacht", "--splits", "5-2", "--out", "{out}"],
     "'5-2' is empty", True),
    (["-m", "comparisons", "uci", "--dataset", "protein", "--splits", "7", "--out", "{out}"],
     "splits 7 do not exist", False),
    (["-m", "vi_dropout", "verify", "--json", "{file}/x.json"], "is a file, not a folder", True),
])
def test_through_a_process(argv, expected, from_argparse, paths):
    proc, _ = _process(*_fill(argv, paths))
    assert proc.returncode == 2, proc.stderr
    assert expected in _assert_one_error_line(proc.stderr, from_argparse)


def test_debug_through_a_process(paths):
    proc, _ = _process("-m", "comparisons", "--debug", "uci", "--dataset", "protein", "--splits",
                       "7", "--out", paths["out"])
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "ValueError: splits 7 do not exist" in proc.stderr
