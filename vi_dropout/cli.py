"""Command line: ``python -m vi_dropout verify [--json PATH] [--quick] [--debug]`` (run by
``vi_dropout/__main__.py``).

Also home of the small command-line helpers shared with ``python -m comparisons``
(:mod:`comparisons.cli.types` re-exports them): :func:`writable_file_arg` and
:func:`output_dir_arg` check an output path when the arguments are parsed, before any work, and
:func:`run_reporting_errors` turns a user's error into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .io import atomic_write_text

__all__ = ["main", "build_parser", "run", "run_reporting_errors", "writable_file_arg",
           "output_dir_arg", "CLIParser", "EXIT_USER_ERROR", "EXIT_INTERRUPTED"]

#: exit code of a user's error (bad argument, unusable path): the same as argparse's
EXIT_USER_ERROR = 2
#: exit code after Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130


class CLIParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors do not repeat the option: the ``type=`` helpers already
    name it (``argument --workers: --workers must be ...`` becomes ``--workers must be ...``).
    Its sub-parsers are of the same class."""

    def error(self, message):
        head, sep, rest = message.partition(": ")
        if sep and head.startswith("argument ") and rest.startswith(head[len("argument "):]):
            message = rest
        super().error(message)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def run_reporting_errors(fn: Callable[[], int], *, debug: bool = False) -> int:
    """Call ``fn()`` and return its exit code; a user's error becomes one line on stderr.

    ``ValueError`` (a bad argument, as the API raises them) and ``OSError`` (an unusable path)
    print ``error: <message>`` and return 2; ``KeyboardInterrupt`` prints its message (or
    ``interrupted``) and returns 130. With ``debug`` they propagate (full traceback). Other
    exceptions are bugs and always propagate.

    Example:
        >>> def bad():
        ...     raise ValueError("--num-samples must be >= 1, got 0")
        >>> run_reporting_errors(bad)  # prints "error: --num-samples must be >= 1, got 0"
        2
    """
    try:
        return int(fn())
    except KeyboardInterrupt as exc:
        if debug:
            raise
        print(_one_line(exc) or "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _check_creatable(name: str, text: str, folder: Path) -> None:
    """Raise ``ArgumentTypeError`` unless ``folder`` exists as a writable folder or can be
    created (its nearest existing ancestor is a writable folder)."""
    try:
        existing = folder.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise argparse.ArgumentTypeError(
                f"{name}: cannot write {text!r}: {str(existing)!r} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(
                f"{name}: cannot write {text!r}: folder {str(existing)!r} is not writable")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{name}: cannot write {text!r}: {exc}") from None


def writable_file_arg(name: str) -> Callable[[str], str]:
    """argparse type: the path of a file to write later. Checked at once: not a folder, and its
    folder exists writable or can be created. Returns the text unchanged.

    Example:
        >>> writable_file_arg("--json")("out/report.json")
        'out/report.json'
    """

    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"{name} must be a file path, got ''")
        path = Path(text)
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{name} must be a file path, got the folder "
                                             f"{text!r}")
        _check_creatable(name, text, path.parent)
        return text

    return parse


def output_dir_arg(name: str = "--out") -> Callable[[str], str]:
    """argparse type: an output folder. Checked at once: not an existing file, and it exists
    writable or can be created. Returns the text unchanged.

    Example:
        >>> output_dir_arg()("outputs/run1")
        'outputs/run1'
    """

    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"{name} must be a folder path, got ''")
        path = Path(text)
        if path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{name} must be a folder, got the existing file "
                                             f"{text!r}")
        _check_creatable(name, text, path)
        return text

    return parse


def positive_float_arg(name: str) -> Callable[[str], float]:
    """argparse type: a finite number > 0, errors naming the option."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > 0 and value < float("inf")):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m vi_dropout``."""
    parser = CLIParser(prog="python -m vi_dropout")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="the ELBO == dropout-loss equivalence report")
    p_verify.add_argument("--json", metavar="PATH", type=writable_file_arg("--json"),
                          help="also write the rows as JSON (its folder is checked first)")
    p_verify.add_argument("--quick", action="store_true",
                          help="fewer Monte Carlo samples (same tolerances), under 2 minutes")
    p_verify.add_argument("--model", metavar="FILE.py:FACTORY",
                          help="verify YOUR network: FACTORY() returns the nn.Module (nn.Dropout "
                               "before nn.Linear, nn.Dropout2d before nn.Conv2d); needs --data")
    p_verify.add_argument("--data", metavar="FILE.npz",
                          help="arrays x (inputs) and y (N x D targets, or N class indices)")
    p_verify.add_argument("--likelihood", choices=["gaussian", "categorical"], default="gaussian",
                          help="of --model (default: gaussian)")
    p_verify.add_argument("--prior-length-scale", type=positive_float_arg("--prior-length-scale"),
                          default=1.0, help="l of the prior N(0, l^-2) for --model (default: 1)")
    p_verify.add_argument("--tau", type=positive_float_arg("--tau"), default=1.0,
                          help="Gaussian precision for --model (default: 1)")
    p_verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p_verify.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show the full traceback of an error instead of one line")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the ``verify`` report of parsed ``args``; 0 if every row passed, else 1."""
    from .verify import format_table, run_verify

    if (args.model is None) != (args.data is None):
        raise ValueError("--model and --data go together (without both: the reference problem)")
    if args.model is not None:
        from .verify_network import load_data_file, load_model_factory, verify_network

        net = load_model_factory(args.model)
        x, y = load_data_file(args.data, args.likelihood)
        t0 = time.perf_counter()
        rows = verify_network(net, x, y, likelihood=args.likelihood,
                              prior_length_scale=args.prior_length_scale, tau=args.tau,
                              quick=args.quick, show_progress=not args.no_progress)
    else:
        t0 = time.perf_counter()
        rows = run_verify(quick=args.quick, show_progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    print(format_table(rows))
    print(f"({'quick' if args.quick else 'full'} run, {elapsed:.1f} s)")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {"quick": args.quick, "seconds": elapsed, "rows": rows}, indent=2))
        print(f"rows written to {args.json}")
    return 0 if all(r["passed"] for r in rows) else 1


def main(argv=None) -> int:
    """Parse ``argv`` and run; a user's error is one line on stderr and exit code 2 (``--debug``:
    the traceback), Ctrl-C exit code 130."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), debug=args.debug)

