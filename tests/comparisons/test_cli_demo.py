"""``python -m comparisons demo`` on its smoke setting (one step, to keep the suite fast; every
step's own subcommand is tested at tiny sizes in its own test file)."""

from __future__ import annotations

import pytest

from comparisons.cli import main
from comparisons.cli_demo import STEP_NAMES, demo_steps


def test_demo_uci_step_writes_outputs_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--steps", "uci", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| uci | ok |" in text and "## demo summary" in text
    assert (out / "uci" / "summary.md").is_file()
    assert str(out / "uci" / "records.csv") in text  # every output path is printed


def test_demo_steps_are_known_and_bad_step_is_named(tmp_path):
    full = demo_steps(tmp_path, smoke=False, progress=False)
    assert list(full) == [s for s in STEP_NAMES if s in full] and "verify" in full
    with pytest.raises(ValueError, match=r"--steps: unknown step\(s\) \['nope'\]"):
        main(["demo", "--smoke", "--steps", "nope", "--out", str(tmp_path)])
