"""A user's mistake on the command line ends with ONE line on stderr and exit code 2, no traceback
(``--debug`` shows it), before any work starts where it can be checked; Ctrl-C is one line and
exit code 130. An argparse error is that one line too (no usage before it): ``error: <message>
(see <prog> --help)``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comparisons.cli import main as cli
from comparisons.datasets.uci import UCI_DATASETS
from comparisons.protocols.uci import MCDropoutUCISettings, parse_splits, uci_cells, uci_splits

main = cli.main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def paths(tmp_path):
    """``{out}``: a folder that does not exist yet; ``{file}``: an existing file; ``{long}``: a
    path whose last name is 300 bytes (over NAME_MAX); ``{deep}``: one of 4,500 bytes in names of
    250 (over PATH_MAX)."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    return {"out": str(tmp_path / "out"), "file": str(afile),
            "long": str(tmp_path / ("a" * 300)),
            "deep": str(tmp_path.joinpath(*["d" * 250] * 18))}


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
    """The one line on stderr, ``error: ...``; argparse's ends pointing to the ``--help`` of the
    (sub)command refusing it, without the usage before it."""
    assert "Traceback" not in err and "usage:" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("error: "), err
    if from_argparse:
        assert re.search(r" \(see python -m (comparisons|vi_dropout)( [a-z-]+)? --help\)$",
                         err.rstrip("\n")), err
    return err.rstrip("\n")


#: (argv, a piece of the error line); ``{out}`` and ``{file}`` come from the ``paths`` fixture
ARGPARSE_ERRORS = [
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
    # names over the file system's limits: refused when parsed, not an OSError after the work
    (["uci", "--dataset", "yacht", "--out", "{long}"],
     "--out: cannot write a file there: the name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'... "
     "is 300 bytes long, over the file system's limit of 255"),
    (["mauna-loa", "--out", "{out}", "--checkpoint-dir", "{long}/x"], "is 300 bytes long"),
    (["hmc-reference", "--out", "{out}", "--cache-dir", "{long}"],
     "--cache-dir: cannot write a file there: the name"),
    (["reference-scores", "--reference", str(ROOT / "docs/reference/hmc"), "--out", "{out}",
      "--cache-dir", "{long}"],
     "--cache-dir: cannot write a file there"),
    # a --reference that is no folder: named when parsed (it was "the manifest
    # <reference>/toy1d/split-00.nc.manifest.json is missing" once the run started)
    (["reference-scores", "--reference", "{out}", "--out", "{out}"],
     "--reference must be the folder of the reference files (written by hmc-reference), got "),
    (["reference-scores", "--reference", "{file}", "--out", "{out}"], "(a file)"),
    (["pitfalls", "--out", "{deep}"], "(as an absolute path), over the file system's limit of"),
]


@pytest.mark.parametrize("argv, expected", ARGPARSE_ERRORS,
                         ids=[" ".join(a[:1] + a[2:4])[:60] for a, _ in ARGPARSE_ERRORS])
def test_argparse_errors_are_one_line(argv, expected, paths, capsys):
    code, err, from_argparse = _call(_fill(argv, paths), capsys)
    assert code == 2 and from_argparse
    assert expected in _assert_one_error_line(err, from_argparse)
    assert not Path(paths["out"]).exists()  # nothing was started


#: errors found once the run starts (before any work): exit code 2, one line ``error: ...``
RUN_ERRORS = [
    (["mauna-loa", "--out", "{out}", "--hidden-units", "8", "--hidden-layers", "1",
      "--num-samples", "10000000"],
     "--num-samples 10000000 (function draws at 2,494 prediction times) needs about"),
    (["uci", "--dataset", "nope", "--out", "{out}"],
     "--dataset: unknown UCI data set 'nope'; valid names: bostonHousing"),
    (["uci", "--dataset", "yacht", "--methods", "hmc", "--out", "{out}"],
     "--methods: unknown method 'hmc'; registered: mc_dropout"),
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
    cells = uci_cells(["protein"], "0-19", MCDropoutUCISettings())
    assert [c.split for c in cells] == [0, 1, 2, 3, 4]
    assert {c.dataset for c in cells} == {"protein-tertiary-structure"}
    every = uci_splits(list(UCI_DATASETS), "0-19")
    assert sum(map(len, every.values())) == 165 and len(every["yacht"]) == 20
    # a listed split runs on the data sets that have it
    assert uci_splits(["yacht", "protein"], "7") == {"yacht": [7]}
    assert uci_splits(["yacht", "protein"], "3-7") == {"yacht": [3, 4, 5, 6, 7],
                                                       "protein-tertiary-structure": [3, 4]}
    with pytest.raises(ValueError, match="'5-2' is empty"):
        uci_cells(["yacht"], "5-2", MCDropoutUCISettings())
    with pytest.raises(ValueError, match="splits 20 do not exist"):
        uci_cells(["yacht"], "20", MCDropoutUCISettings())


# --------------------------------------------------------------------- through a real process

def _process(*argv, env: dict | None = None):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=None if env is None else {**os.environ, **env})
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("argv, expected, from_argparse", [
    (["-m", "comparisons", "uci", "--dataset", "yacht", "--splits", "5-2", "--out", "{out}"],
     "'5-2' is empty", True),
    (["-m", "comparisons", "uci", "--dataset", "protein", "--splits", "7", "--out", "{out}"],
     "splits 7 do not exist", False),
    (["-m", "vi_dropout", "verify", "--json", "{file}/x.json"], "is a file, not a folder", True),
    # one line, no usage, pointing to the sub-command's --help (the other subcommands' argparse
    # errors are checked in-process above: each process here costs seconds of imports)
    (["-m", "vi_dropout", "verify", "--bad"],
     "error: unrecognized arguments: --bad (see python -m vi_dropout verify --help)", True),
])
def test_through_a_process(argv, expected, from_argparse, paths):
    proc, _ = _process(*_fill(argv, paths))
    assert proc.returncode == 2, proc.stderr
    assert expected in _assert_one_error_line(proc.stderr, from_argparse)
    assert not Path(paths["out"]).exists()


def test_network_too_large_for_memory_is_one_line(paths):
    """An allocator RuntimeError (or the OS killing the run) before: now refused up front."""
    proc, seconds = _process("-m", "comparisons", "mauna-loa", "--out", paths["out"],
                             "--hidden-units", "100000000")
    assert proc.returncode == 2, proc.stderr
    line = _assert_one_error_line(proc.stderr, False)
    assert line.startswith(
        "error: --hidden-units 100000000 with --hidden-layers 4 (float32: "
        "30,000,000,600,000,001 parameters per network) needs about 426 PiB of memory, more "
        "than the "), line
    assert line.endswith(" of RAM on this machine; use fewer --hidden-units or --hidden-layers")
    assert not Path(paths["out"]).exists() and seconds < 30


def test_ray_address_that_does_not_answer_fails_within_seconds(paths):
    """``ray.init`` retried for minutes, repeating warnings; the address is probed first."""
    pytest.importorskip("ray")
    proc, seconds = _process("-m", "comparisons", "uci", "--dataset", "yacht", "--splits", "0",
                             "--executor", "ray", "--address", "127.0.0.1:1", "--out",
                             paths["out"], "--no-progress")
    assert proc.returncode == 2, proc.stderr
    line = _assert_one_error_line(proc.stderr, False)
    assert line.startswith("error: Ray address '127.0.0.1:1': nothing answers at 127.0.0.1:1 ("), line
    assert not Path(paths["out"]).exists() and seconds < 30


def test_ray_address_probe():
    import socket

    from comparisons.runner.executors import check_ray_address

    for address in (None, "auto", "local"):
        check_ray_address(address)  # left to Ray
    import threading

    def serve(server, reply):  # answer each connection's first bytes with ``reply``
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(reply)

    grpc_settings = bytes([0, 0, 0x18, 4, 0, 0, 0, 0, 0])  # what a Ray GCS answers (HTTP/2)
    for reply, ok in ((grpc_settings, True), (b"<!DOCTYPE html>", False), (b"", False)):
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            thread = threading.Thread(target=serve, args=(server, reply), daemon=True)
            thread.start()
            for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
                if ok:
                    check_ray_address(address)
                else:  # a web server or a dashboard: ray.init retried for 10+ minutes
                    with pytest.raises(ValueError, match="something answers at 127.0.0.1:"
                                                         f"{port}, but not a Ray cluster"):
                        check_ray_address(address, timeout=2)
            thread.join(5)
    with pytest.raises(ValueError, match=r"'ray://127.0.0.1:1': nothing answers at 127.0.0.1:1"):
        check_ray_address("ray://127.0.0.1:1", timeout=2)
    with pytest.raises(ValueError, match="the port must be in 1..65535, got 70000"):
        check_ray_address("127.0.0.1:70000")


def test_ray_not_installed_is_one_line(monkeypatch, paths, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, err, from_argparse = _call(["uci", "--dataset", "yacht", "--splits", "0", "--executor",
                                      "ray", "--out", paths["out"], "--no-progress"], capsys)
    assert code == 2 and not from_argparse
    assert "executor 'ray' needs Ray, which is not installed" in _assert_one_error_line(err, False)
    assert not Path(paths["out"]).exists()


# ------------------------------------------------------- broken packaged UCI data (on a copy)

@pytest.fixture
def uci_copy(tmp_path):
    """A copy of the manifest and of yacht's archive, and the environment pointing the loaders
    at it (the packaged files are never touched)."""
    data = Path(__file__).resolve().parents[3] / "comparisons" / "datasets" / "data"
    copy = tmp_path / "uci-data"
    copy.mkdir()
    for name in ("uci_manifest.json", "yacht.npz"):
        shutil.copy(data / name, copy / name)
    return copy, {"COMPARISONS_UCI_DATA_DIR": str(copy)}


def _corrupt(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def test_corrupt_uci_archive_is_one_line_before_any_work(uci_copy, paths):
    """``uci`` printed only "1 failed ... see failures.json"."""
    copy, env = uci_copy
    _corrupt(copy / "yacht.npz")
    proc, _ = _process("-m", "comparisons", "uci", "--dataset", "yacht", "--splits", "0",
                       "--out", paths["out"], "--no-progress", env=env)
    assert proc.returncode == 2, proc.stderr
    line = _assert_one_error_line(proc.stderr, False)
    assert line.startswith(f"error: UCI archive for yacht is corrupt: {copy / 'yacht.npz'} has "
                           f"SHA-256 "), line
    assert ", expected " in line and "build_uci_archive.py" in line
    assert not Path(paths["out"]).exists()


def _stderr_of(argv, env, in_a_process, monkeypatch, capsys):
    """``(exit code, stderr)`` of ``python -m comparisons *argv`` with ``env``: in a real process,
    or in this one (each process costs seconds of imports, so most cases run here)."""
    if in_a_process:
        proc, _ = _process("-m", "comparisons", *argv, env=env)
        return proc.returncode, proc.stderr
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, err, _ = _call(list(argv), capsys)
    return code, err


def test_corrupt_uci_archive_in_reference_scores_is_one_line(uci_copy, paths, monkeypatch,
                                                             capsys):
    """``reference-scores`` ended in a ``UCIDataError`` traceback."""
    copy, env = uci_copy
    _corrupt(copy / "yacht.npz")
    code, err = _stderr_of(["reference-scores", "--reference", str(ROOT / "docs/reference/hmc"),
                            "--dataset", "yacht", "--out", paths["out"], "--no-cache",
                            "--smoke"], env, False, monkeypatch, capsys)
    assert code == 2, err
    assert "UCI archive for yacht is corrupt" in _assert_one_error_line(err, False)


@pytest.mark.parametrize("manifest, expected, in_a_process", [
    ("{garbled", "is unreadable (JSONDecodeError: ", True),
    ('{"datasets": []}', "is malformed: it must be a JSON object with a 'datasets' object",
     False),
    ('{"datasets": {"yacht": {"file": "yacht.npz"}}}',
     "is malformed: the entry of 'yacht' lacks sha256, rows", False),
    (None, "UCI manifest not found: ", False),
])
def test_broken_uci_manifest_is_one_line_and_spares_other_subcommands(
        uci_copy, paths, manifest, expected, in_a_process, monkeypatch, capsys):
    """A broken manifest broke every subcommand, ``mauna-loa --help`` included (a traceback)."""
    copy, env = uci_copy
    if manifest is None:
        (copy / "uci_manifest.json").unlink()
    else:
        (copy / "uci_manifest.json").write_text(manifest)
    code, err = _stderr_of(["uci", "--dataset", "yacht", "--splits", "0", "--out", paths["out"],
                            "--no-progress"], env, in_a_process, monkeypatch, capsys)
    assert code == 2, err
    line = _assert_one_error_line(err, False)
    assert str(copy / "uci_manifest.json") in line and expected in line, line
    assert not Path(paths["out"]).exists()


@pytest.mark.parametrize("command", ["mauna-loa", "uci", "gp-vs-dropout"])
def test_broken_uci_manifest_spares_the_parser(uci_copy, monkeypatch, capsys, command):
    """Building the parser (every subcommand's ``--help``) does not read the manifest."""
    copy, env = uci_copy
    (copy / "uci_manifest.json").write_text("{garbled")
    monkeypatch.setenv(*env.popitem())
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_debug_through_a_process(paths):
    proc, _ = _process("-m", "comparisons", "--debug", "uci", "--dataset", "protein", "--splits",
                       "7", "--out", paths["out"])
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "ValueError: splits 7 do not exist" in proc.stderr
