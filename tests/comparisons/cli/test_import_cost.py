"""Parsing the command line is light: ``--help`` and a bad argument of every subcommand are
answered without importing torch, ArviZ, Pyro, GPyTorch, JAX or Ray (they load in ``run``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "arviz", "pyro", "gpytorch", "jax", "ray")

_PROBE = """
import argparse, importlib, sys
from comparisons.cli.main import SUBCOMMAND_MODULES
from comparisons.cli.types import CLIParser
HEAVY = {heavy!r}
def loaded():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))
for name in {names!r}:
    parser = CLIParser(prog="python -m comparisons")
    importlib.import_module(SUBCOMMAND_MODULES[name]).add_parser(parser.add_subparsers(dest="c"))
    for argv in ([name, "--bad"], [name, "--help"]):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pass
    if loaded():
        print(f"{{name}} pulled in {{', '.join(loaded())}}", file=sys.stderr)
        sys.exit(1)
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_parsing_each_subcommand_loads_no_heavy_module():
    from comparisons.cli.main import SUBCOMMAND_MODULES

    out = _run(_PROBE.format(heavy=HEAVY, names=list(SUBCOMMAND_MODULES)))
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [["--help"], ["uci", "--bad"]], ids=" ".join)
def test_the_entry_point_answers_help_and_errors_without_heavy_modules(argv):
    """``python -m comparisons --help`` builds every subcommand's parser; ``uci --bad`` is a user
    error (one line, exit 2): through :func:`comparisons.cli.main.main`, neither loads torch."""
    code = f"""
import sys
from comparisons.cli.main import main
try:
    code = main({argv!r})
except SystemExit as exit:
    code = exit.code
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
if loaded:
    print(f"python -m comparisons {" ".join(argv)} pulled in {{', '.join(loaded)}}",
          file=sys.stderr)
    sys.exit(1)
print(f"exit {{code}}")
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1]
    assert out.stdout.strip().splitlines()[-1] == ("exit 0" if argv == ["--help"] else "exit 2")


def test_vi_dropout_verify_errors_and_help_load_no_heavy_module():
    code = f"""
import sys
from vi_dropout.cli import main
for argv in (["verify", "--bad"], ["verify", "--help"], ["--help"], ["verify", "--tau", "0"],
             ["verify", "--model", "m.py:f"]):
    try:
        main(argv)
    except SystemExit:
        pass
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
if loaded:
    print(f"vi_dropout verify pulled in {{', '.join(loaded)}}", file=sys.stderr)
    sys.exit(1)
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1]
