"""``python -m comparisons pitfalls``: the ``--learned-rates`` switch and the new default sizes
(parsing only: nothing is trained here)."""

from __future__ import annotations

import argparse

import pytest

from comparisons.cli import pitfalls as pitfalls_cli
from comparisons.cli.main import main


def _settings(argv):
    parser = argparse.ArgumentParser()
    pitfalls_cli.add_parser(parser.add_subparsers())
    return pitfalls_cli.settings_from_args(parser.parse_args(["pitfalls", *argv]))


def test_learned_rates_flag_sets_the_switch(tmp_path):
    out = ["--out", str(tmp_path / "o")]
    assert _settings(out).learned_rates is True
    assert _settings([*out, "--no-learned-rates"]).learned_rates is False
    assert _settings([*out, "--learned-rates"]).learned_rates is True
    assert _settings(out).sizes == (10, 30, 100, 300, 1000, 3000, 10000)


def test_help_shows_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["pitfalls", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--learned-rates, --no-learned-rates" in text
    assert "10,30,100,300,1000,3000,10000" in text


@pytest.mark.parametrize("argv, expected", [
    (["--learned-rates=no"], "--learned-rates/--no-learned-rates: ignored explicit argument"),
    (["--no-learned-rates", "1"], "unrecognized arguments: 1"),
    (["--sizes", "10,x"], "--sizes must be a comma list of integers >= 1"),
])
def test_bad_flag_is_one_line_and_exit_2(argv, expected, tmp_path, capsys):
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        main(["pitfalls", "--out", str(out), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err  # one line, no usage
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert lines[0].endswith(" (see python -m comparisons pitfalls --help)")
    assert not out.exists()  # nothing was started
