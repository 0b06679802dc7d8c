"""``python -m comparisons``: every subcommand is registered and reachable through ``main``."""

from __future__ import annotations

import pytest

from comparisons.cli import SUBCOMMAND_MODULES, main


@pytest.mark.parametrize("command", ["uci", *SUBCOMMAND_MODULES])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_unknown_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_rotated_digit_runs_through_main(tmp_path):
    out = tmp_path / "rd"
    assert main(["rotated-digit", "--out", str(out), "--epochs", "1", "--num-samples", "2",
                 "--no-progress"]) == 0
    assert (out / "rotated_digit.png").is_file() and (out / "summary.md").is_file()


def test_uci_methods_option_is_checked(tmp_path):
    with pytest.raises(SystemExit, match="--methods must be a comma list of mc_dropout, gp"):
        main(["uci", "--dataset", "yacht", "--splits", "0", "--methods", "hmc",
              "--out", str(tmp_path)])
