"""Command line of the comparisons, ``python -m comparisons <subcommand> ...``: the parser
assembled from :data:`SUBCOMMAND_MODULES` and the dispatch to their ``run``.

Example:
    >>> parser, modules = build_parser()
    >>> parser.parse_args(["uci", "--dataset", "yacht", "--out", "/tmp/u"]).command
    'uci'
"""

from __future__ import annotations

import argparse
import importlib
import sys

from comparisons.cli.types import (
    CLIParser,
    run_reporting_errors,
)

__all__ = ["main", "build_parser", "dispatch", "SUBCOMMAND_MODULES"]

DEBUG_HELP = "show the full traceback of an error instead of one line"

#: Every subcommand lives in its own module with ``add_parser(subparsers)`` and
#: ``run(args) -> int``; imported when the parser is built, so they import heavy things lazily.
SUBCOMMAND_MODULES = {
    "uci": "comparisons.cli.uci",
    "gp-vs-dropout": "comparisons.cli.gp_vs_dropout",
    "rotated-digit": "comparisons.cli.rotated_digit",
    "pitfalls": "comparisons.cli.pitfalls",
    "diagnose": "comparisons.cli.diagnose",
    "mauna-loa": "comparisons.cli.mauna_loa",
    "demo": "comparisons.cli.demo",
    "uci-table": "comparisons.cli.uci_table",
    "hmc-reference": "comparisons.cli.hmc_reference",
    "reference-scores": "comparisons.cli.reference_scores",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser of ``python -m comparisons`` and the subcommand modules by name."""
    parser = CLIParser(prog="python -m comparisons")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {name: importlib.import_module(mod) for name, mod in SUBCOMMAND_MODULES.items()}
    for module in modules.values():
        module.add_parser(sub)
    for subparser in sub.choices.values():  # --debug also after the subcommand
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help=DEBUG_HELP)
    return parser, modules


def dispatch(args: argparse.Namespace, modules: dict) -> int:
    """Run the subcommand of parsed ``args``; errors propagate (see :func:`main`)."""
    return int(modules[args.command].run(args))


def main(argv=None) -> int:
    """``python -m comparisons``: parse ``argv`` and run the subcommand.

    Returns the exit code: 0, 1 if some part of the run failed (e.g. a failed cell), 2 for a
    user's error (one ``error: ...`` line on stderr, an argparse error's ending in ``(see ...
    --help)``; with ``--debug`` the traceback instead), 130 after Ctrl-C.
    """
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    return run_reporting_errors(lambda: dispatch(args, modules), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
