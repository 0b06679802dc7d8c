"""``python -m comparisons mauna-loa``: the long-training options (checkpoints, ``--resume``,
the stopping rule, ``--device``, ``--workers``, ``--fused-adam``), their one-line errors and a
resume through the command line that gives the numbers of one uninterrupted run (< 30 s)."""

from __future__ import annotations

import re
import warnings

import pandas as pd
import pytest
import torch

from comparisons.cli.main import build_parser, main
from comparisons.cli.mauna_loa import settings_from_args
from comparisons.training.checkpoint import (
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")

#: a tiny run: 1 x 8 units, every 16th week, 3 GP steps
TINY = ["--num-samples", "4", "--hidden-layers", "1", "--hidden-units", "8", "--gp-iterations",
        "3", "--data-stride", "16", "--no-progress"]


def _main(argv, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    return code, capsys.readouterr()


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _untimed(frame: pd.DataFrame) -> pd.DataFrame:
    keep = ~frame["metric"].str.contains("time|wall|seconds")
    return frame[keep].reset_index(drop=True)


def test_defaults_and_flags_reach_the_settings():
    parser, _ = build_parser()
    args = parser.parse_args(["mauna-loa", "--out", "x"])
    cfg = settings_from_args(args)
    assert (cfg.stop_window, cfg.device, cfg.fused_adam) == (None, "cpu", False)
    assert (args.workers, args.resume, args.checkpoint_every, args.checkpoint_dir) == \
        (1, False, 300.0, None)
    args = parser.parse_args(["mauna-loa", "--out", "x", "--stop-window", "500",
                              "--stop-tolerance", "0.002", "--workers", "2", "--resume",
                              "--checkpoint-every", "60", "--checkpoint-dir", "ck",
                              "--fused-adam", "--net-dtype", "float64", "--iterations", "9000"])
    cfg = settings_from_args(args)
    assert cfg.stopping_rule.window == 500 and cfg.stopping_rule.tolerance == 0.002
    assert (cfg.iterations, cfg.fused_adam, cfg.net_dtype) == (9000, True, "float64")
    assert (args.workers, args.resume, args.checkpoint_every, args.checkpoint_dir) == \
        (2, True, 60.0, "ck")


@pytest.mark.parametrize("flag, value, message", [
    ("--workers", "3", "--workers must be 1 or 2 (one process per network), got '3'"),
    ("--workers", "0", "--workers must be 1 or 2"),
    ("--stop-window", "0", "--stop-window must be an integer >= 1, got '0'"),
    ("--stop-tolerance", "-1", "--stop-tolerance must be a finite number >= 0"),
    ("--checkpoint-every", "0", "--checkpoint-every must be a finite number > 0, got '0'"),
    ("--device", "tpu", "invalid choice: 'tpu'"),
])
def test_bad_values_stop_at_parse_time(flag, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["mauna-loa", "--out", str(tmp_path), flag, value])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_user_errors_are_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "o"
    code, cap = _main(["mauna-loa", "--out", str(out), "--stop-tolerance", "0.1", *TINY], capsys)
    assert code == 2
    assert "--stop-tolerance 0.1 needs --stop-window" in _one_error_line(cap.err)
    if not torch.cuda.is_available():
        code, cap = _main(["mauna-loa", "--out", str(out), "--device", "cuda", *TINY], capsys)
        assert code == 2
        line = _one_error_line(cap.err)
        assert "--device cuda: CUDA is not available on this machine" in line
        assert "use --device cpu" in line
    assert not out.exists()  # nothing written


def test_resume_through_the_cli_gives_the_uninterrupted_numbers(tmp_path, capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    code, _ = _main(["mauna-loa", "--out", str(whole), "--iterations", "14", *TINY], capsys)
    assert code == 0
    code, _ = _main(["mauna-loa", "--out", str(split), "--iterations", "6", *TINY], capsys)
    assert code == 0
    code, cap = _main(["mauna-loa", "--out", str(split), "--iterations", "14", "--resume", *TINY],
                      capsys)
    assert code == 0
    assert "resumed from step 6" in cap.out and "checkpoints (--resume continues them)" in cap.out
    for name in ("records.csv", "losses.csv"):
        a, b = pd.read_csv(whole / name), pd.read_csv(split / name)
        if name == "records.csv":
            a, b = _untimed(a), _untimed(b)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    fit = pd.read_csv(split / "fit.csv").set_index(["method", "metric"])["value"]
    assert fit["mc_dropout_relu", "resumed_from_step"] == 6
    assert fit["mc_dropout_relu", "steps"] == 14
    text = (split / "report.md").read_text()
    assert "| mc_dropout_tanh | cpu | 14 | step budget | 6 |" in text
    # the header's training time counts both runs of each network
    secs = {act: fit[f"mc_dropout_{act}", "train_time_s"] for act in ("relu", "tanh")}
    assert (f"training: relu 14 steps in {secs['relu']:.1f} s, tanh 14 steps in "
            f"{secs['tanh']:.1f} s (every run of a resumed network counted)") in text

    # a budget below the checkpoint's step: refused (it used to run and mislabel the report)
    before = (split / "report.md").read_text()
    code, cap = _main(["mauna-loa", "--out", str(split), "--iterations", "10", "--resume",
                       *TINY], capsys)
    assert code == 2
    assert ("--iterations 10: checkpoint " in _one_error_line(cap.err)
            and "is already at step 14, past that budget" in cap.err)
    assert (split / "report.md").read_text() == before
    # a second run while one holds OUT (or its checkpoint folder) is refused at once
    from comparisons.runner.folder_lock import FolderLock

    for busy in (split, split / "checkpoints"):
        with FolderLock(busy):
            code, cap = _main(["mauna-loa", "--out", str(split), "--iterations", "14",
                               "--resume", *TINY], capsys)
        assert code == 2 and "is in use by another run" in _one_error_line(cap.err)

    # other network settings: refused, naming them, in one line
    code, cap = _main(["mauna-loa", "--out", str(split), "--iterations", "20", "--resume",
                       "--seed", "1", *TINY], capsys)
    assert code == 2
    line = _one_error_line(cap.err)
    assert "relu.ckpt was written with other settings (seed: 0 in the checkpoint, 1 now" in line

    # a finished run's checkpoint is not replaced by a fresh run without --resume (it was,
    # silently: hours of training lost), nor is an unfinished one
    relu_bytes = (split / "checkpoints" / "relu.ckpt").read_bytes()
    code, cap = _main(["mauna-loa", "--out", str(split), "--iterations", "20", *TINY], capsys)
    assert code == 2
    assert re.search(r"relu.ckpt holds a finished run \(step 14\): --resume reuses it",
                     _one_error_line(cap.err))
    assert (split / "checkpoints" / "relu.ckpt").read_bytes() == relu_bytes
    ckpt = split / "checkpoints" / "tanh.ckpt"
    meta = read_checkpoint_meta(ckpt)
    save_checkpoint(ckpt, load_checkpoint(ckpt), meta=dict(meta, finished=False))
    (split / "checkpoints" / "relu.ckpt").rename(split / "relu.ckpt.kept")
    code, cap = _main(["mauna-loa", "--out", str(split), "--iterations", "20", *TINY], capsys)
    assert code == 2
    assert re.search(r"tanh.ckpt holds an unfinished run \(step 14 of 14\): resume it "
                     r"\(--resume\)", _one_error_line(cap.err))
    (split / "relu.ckpt.kept").rename(split / "checkpoints" / "relu.ckpt")

    # a damaged checkpoint is named; the ReLU network is not trained before it is found
    ckpt.write_bytes(ckpt.read_bytes()[:-7])
    relu_meta = read_checkpoint_meta(split / "checkpoints" / "relu.ckpt")
    code, cap = _main(["mauna-loa", "--out", str(split), "--iterations", "20", "--resume", *TINY],
                      capsys)
    assert code == 2
    assert f"checkpoint {ckpt} is damaged" in _one_error_line(cap.err)
    assert read_checkpoint_meta(split / "checkpoints" / "relu.ckpt") == relu_meta


def test_stopping_rule_and_checkpoint_dir_through_the_cli(tmp_path, capsys):
    out, ck = tmp_path / "o", tmp_path / "elsewhere"
    code, cap = _main(["mauna-loa", "--out", str(out), "--iterations", "400", "--stop-window",
                       "5", "--stop-tolerance", "0.5", "--checkpoint-dir", str(ck),
                       "--checkpoint-every", "1000", *TINY], capsys)
    assert code == 0 and "stopped by the stopping rule" in cap.out
    assert {p.name for p in ck.iterdir()} == {"relu.ckpt", "tanh.ckpt"}
    assert not (out / "checkpoints").exists()
    fit = pd.read_csv(out / "fit.csv").set_index(["method", "metric"])["value"]
    steps = fit["mc_dropout_relu", "steps"]
    assert fit["mc_dropout_relu", "stopped_by_rule"] == 1 and steps < 400 and steps % 5 == 0
    assert read_checkpoint_meta(ck / "relu.ckpt")["stopped_by"] == "stopping_rule"
    text = (out / "report.md").read_text()
    assert "stopping rule: window 5 steps, tolerance 0.5" in text


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import comparisons.experiments.mauna_loa as experiment

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run", interrupted)
    # before the first checkpoint: nothing to resume (it used to promise checkpoints)
    code, cap = _main(["mauna-loa", "--out", str(tmp_path), *TINY], capsys)
    assert code == 130
    assert cap.err.strip() == ("interrupted before the first checkpoint: nothing to resume; the "
                               "same command starts again")
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    (tmp_path / "checkpoints" / "relu.ckpt").write_bytes(b"a checkpoint")
    code, cap = _main(["mauna-loa", "--out", str(tmp_path), *TINY], capsys)
    assert code == 130
    assert cap.err.strip() == (f"interrupted: the networks' checkpoints in "
                               f"{tmp_path / 'checkpoints'} hold their state of at most 300 s "
                               "ago; the same command with --resume continues from them")


def test_compare_records_puts_an_earlier_run_beside_this_one(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    code, _ = _main(["mauna-loa", "--out", str(first), "--iterations", "4", *TINY], capsys)
    assert code == 0
    code, cap = _main(["mauna-loa", "--out", str(second), "--iterations", "8",
                       "--compare-records", f"4 steps={first / 'records.csv'}", *TINY], capsys)
    assert code == 0
    text = (second / "report.md").read_text()
    assert "## Beside 4 steps" in text and "| method (run) |" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| mc_dropout_relu (")}
    assert set(rows) == {"mc_dropout_relu (this run)", "mc_dropout_relu (4 steps)"}
    old = pd.read_csv(first / "records.csv").set_index(["method", "split", "metric"])["value"]
    new = pd.read_csv(second / "records.csv").set_index(["method", "split", "metric"])["value"]
    rmse = ("mc_dropout_relu", "train", "rmse_ppm")
    assert f"| {old[rmse]:.3f} |" in rows["mc_dropout_relu (4 steps)"]
    assert f"| {new[rmse]:.3f} |" in rows["mc_dropout_relu (this run)"]
    assert old[rmse] != new[rmse]


@pytest.mark.parametrize("value, message", [
    ("no-label.csv", "--compare-records must be LABEL=CSV"),
    ("this run={csv}", "the label 'this run' is taken"),
    ("old={missing}", "--compare-records old: records file {missing} does not exist"),
    ("old={bad}", "line 1: lacks column(s) ['dataset', 'method', 'split'] of a records file"),
])
def test_bad_compare_records_stop_at_parse_time(value, message, tmp_path, capsys):
    csv, bad = tmp_path / "r.csv", tmp_path / "bad.csv"
    csv.write_text("dataset,method,split,metric,value\nmauna_loa,gp_se,train,rmse_ppm,0.5\n")
    bad.write_text("metric,value\nrmse_ppm,0.5\n")
    arg = value.format(csv=csv, missing=tmp_path / "none.csv", bad=bad)
    message = message.format(missing=tmp_path / "none.csv")
    with pytest.raises(SystemExit) as exc:
        main(["mauna-loa", "--out", str(tmp_path / "o"), "--compare-records", arg])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_compare_label_given_twice_is_one_line_before_any_work(tmp_path, capsys):
    csv = tmp_path / "r.csv"
    csv.write_text("dataset,method,split,metric,value\nmauna_loa,gp_se,train,rmse_ppm,0.5\n")
    out = tmp_path / "o"
    code, cap = _main(["mauna-loa", "--out", str(out), "--compare-records", f"a={csv}",
                       "--compare-records", f"a={csv}", *TINY], capsys)
    assert code == 2
    assert "--compare-records: each LABEL at most once, got ['a', 'a']" in _one_error_line(cap.err)
    assert not out.exists()


def test_checkpoint_dir_naming_out_another_way_is_one_folder(tmp_path, capsys, monkeypatch):
    """--checkpoint-dir equal to --out written another way (relative vs absolute) locked the
    run out of its own folder ("in use by another run", its own pid)."""
    monkeypatch.chdir(tmp_path)
    code, cap = _main(["mauna-loa", "--out", "ml", "--checkpoint-dir", str(tmp_path / "ml"),
                       "--iterations", "4", *TINY], capsys)
    assert code == 0, cap.err
    assert (tmp_path / "ml" / "relu.ckpt").is_file()

