"""``python -m comparisons demo`` on its smoke setting (one step, to keep the suite fast; every
step's own subcommand is tested at tiny sizes in its own test file)."""

from __future__ import annotations

import pytest

from comparisons.cli.demo import STEP_NAMES, demo_steps
from comparisons.cli.main import main


def test_demo_uci_step_writes_outputs_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--steps", "uci", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| uci | ok |" in text and "## demo summary" in text
    assert (out / "uci" / "report.md").is_file()
    assert str(out / "uci" / "records.csv") in text  # every output path is printed


def test_demo_steps_are_known_and_bad_step_is_named(tmp_path, capsys):
    full = demo_steps(tmp_path, smoke=False, progress=False)
    assert list(full) == list(STEP_NAMES)  # every step named in the help runs
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--smoke", "--steps", "nope", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--steps must be a comma list of demo steps (verify, gp-vs-dropout, uci, " \
           "rotated-digit, mauna-loa), got 'nope'" in err


def test_demo_gp_vs_dropout_step_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--steps", "gp-vs-dropout", "--out", str(out),
                 "--no-progress"]) == 0
    assert "| gp-vs-dropout | ok |" in capsys.readouterr().out
    assert (out / "gp-vs-dropout" / "report.md").is_file()
