"""Command line: ``python -m vi_dropout verify [--json PATH] [--quick] [--debug]`` (run by
``vi_dropout/__main__.py``), on the reference problem or, with ``--model FILE.py:FACTORY --data
FILE.npz``, on the user's own network (:mod:`vi_dropout.user_files`; ``--model`` IMPORTS AND
RUNS ``FILE.py``: only pass files you trust).

Also home of the small command-line helpers shared with ``python -m comparisons``
(:mod:`comparisons.cli.types` re-exports them): :func:`writable_file_arg` and
:func:`output_dir_arg` check an output path when the arguments are parsed, before any work,
:func:`run_reporting_errors` turns a user's error into one line on stderr and exit code 2, and
:class:`CLIParser` does the same for argparse's errors (no usage lines).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from vi_dropout.io import atomic_write_text

__all__ = ["main", "build_parser", "run", "check_verify_args", "run_reporting_errors",
           "writable_file_arg", "output_dir_arg", "positive_float_arg", "thetas_arg", "CLIParser",
           "EXIT_USER_ERROR", "EXIT_INTERRUPTED"]

#: exit code of a user's error (bad argument, unusable path): the same as argparse's
EXIT_USER_ERROR = 2
#: exit code after Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130


class CLIParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose error is ONE line on stderr and exit code 2, as every other user's
    error (:func:`run_reporting_errors`): ``error: <message> (see <prog> --help)``, without the
    usage argparse prints first (``--help`` still shows it). The option is not repeated where
    the ``type=`` helpers already name it (``argument --workers: --workers must be ...`` becomes
    ``--workers must be ...``). Its sub-parsers are of the same class (``add_subparsers``), so
    ``python -m comparisons`` (:mod:`comparisons.cli.types` re-exports it) and ``python -m
    vi_dropout`` follow the same rule.

    Example:
        >>> CLIParser(prog="tool").parse_args(["--nope"])  # doctest: +SKIP
        error: unrecognized arguments: --nope (see tool --help)
    """

    def error(self, message):
        head, sep, rest = message.partition(": ")
        if sep and head.startswith("argument ") and rest.startswith(head[len("argument "):]):
            message = rest
        self.exit(EXIT_USER_ERROR, f"error: {_one_line(message)} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse reports a sub-command's unknown options from the top parser:
            # point to the sub-command's --help, where the valid ones are
            parser = _chosen_subparser(self, namespace)
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace


def _chosen_subparser(parser: argparse.ArgumentParser,
                      namespace: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost sub-parser that parsed ``namespace`` (``parser`` itself without one)."""
    while True:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(namespace, actions[0].dest, None) if actions else None
        if not isinstance(name, str) or name not in actions[0].choices:
            return parser
        parser = actions[0].choices[name]


def _one_line(exc: BaseException | str) -> str:
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


def _path_limit(folder: Path, key: str, default: int) -> int:
    try:
        return os.pathconf(folder, key)
    except (OSError, ValueError, AttributeError):
        return default


def _check_name_length(name: str, text: str, path: Path) -> None:
    """Raise ``ArgumentTypeError`` if a part of ``path`` is longer than the file system allows,
    or the whole path is.

    The limits are ``NAME_MAX`` (usually 255 bytes) and ``PATH_MAX`` (usually 4096 bytes) of the
    nearest existing folder; such a name would only fail when the file is written, after the
    work.
    """
    absolute = path.absolute()
    existing = absolute.parent
    while existing.parent != existing:
        with contextlib.suppress(OSError):
            if existing.exists():
                break
        existing = existing.parent
    limit = _path_limit(existing, "PC_NAME_MAX", 255)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise argparse.ArgumentTypeError(
                f"{name}: cannot write a file there: the name {part[:40]!r}... is "
                f"{len(os.fsencode(part))} bytes long, over the file system's limit of {limit}")
    limit = _path_limit(existing, "PC_PATH_MAX", 4096)
    length = len(os.fsencode(str(absolute)))
    if length >= limit:  # PATH_MAX counts the terminating null byte
        raise argparse.ArgumentTypeError(
            f"{name}: cannot write a file there: the path {text[:40]!r}... is {length} bytes "
            f"long (as an absolute path), over the file system's limit of {limit - 1}")


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
        _check_name_length(name, text, path)
        try:
            if path.is_dir():
                raise argparse.ArgumentTypeError(f"{name} must be a file path, got the folder "
                                                 f"{text!r}")
        except OSError as exc:  # e.g. a folder name over the system's limit
            raise argparse.ArgumentTypeError(f"{name}: cannot write {text!r}: "
                                             f"{exc.strerror or exc}") from None
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
        _check_name_length(name, text, path / "_")
        try:
            if path.exists() and not path.is_dir():
                raise argparse.ArgumentTypeError(f"{name} must be a folder, got the existing "
                                                 f"file {text!r}")
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{name}: cannot write {text!r}: "
                                             f"{exc.strerror or exc}") from None
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


def thetas_arg(name: str = "--thetas") -> Callable[[str], tuple[float, ...]]:
    """argparse type: comma-separated finite numbers > 0, at least two, all distinct.

    They are returned sorted from the largest down (strictly decreasing), errors name ``name``.

    Example:
        >>> thetas_arg()("1e-7,1e-5,1e-6")
        (1e-05, 1e-06, 1e-07)
    """

    def parse(text: str) -> tuple[float, ...]:
        values = []
        for part in text.split(","):
            try:
                value = float(part)
            except ValueError:
                value = float("nan")
            if not (value > 0 and value < float("inf")):
                raise argparse.ArgumentTypeError(
                    f"{name} must be comma-separated finite numbers > 0 (e.g. 1e-5,1e-6,1e-7), "
                    f"got {part.strip()!r} in {text!r}")
            values.append(value)
        values.sort(reverse=True)
        repeated = sorted({v for v in values if values.count(v) > 1}, reverse=True)
        if repeated:
            raise argparse.ArgumentTypeError(
                f"{name} must be distinct values, got {', '.join(f'{v:g}' for v in repeated)} "
                f"more than once in {text!r}")
        if len(values) < 2:
            raise argparse.ArgumentTypeError(
                f"{name} needs at least 2 distinct values, got {text!r}; for one value use "
                f"--theta")
        return tuple(values)

    return parse


_VERIFY_DESCRIPTION = """\
Without --model: the ELBO == dropout-loss equivalence report on the package's
reference problem. With --model FILE.py:FACTORY and --data FILE.npz: the same
report on your own network.

WARNING: --model IMPORTS AND RUNS FILE.py: its top-level code executes (as with
`python FILE.py`), then FACTORY() is called. Only pass files you trust.

--data: an .npz archive written by numpy.savez (read with allow_pickle=False):
arrays x and y for forward(self, x); for a forward with several inputs, one
array per parameter plus y, e.g. numpy.savez("data.npz", image=image,
features=features, y=y) for forward(self, image, features). y: N x D targets
(N x 1 for one output) for --likelihood gaussian, N integer class labels for
--likelihood categorical. Every array holds one row per example.
"""

#: options of --model only (their defaults are filled in by run)
_MODEL_DEFAULTS = {"likelihood": "gaussian", "prior_length_scale": 1.0, "tau": 1.0}


def keep_probs_arg(text: str) -> dict[str, float]:
    """argparse type of ``--keep-probs``: ``NAME=KEEP_PROB,...`` -> ``{name: keep_prob}``, each
    keep_prob in ``(0, 1]``, each name once."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        try:
            kp = float(value)
        except ValueError:
            kp = float("nan")
        if not sep or not name or not (0 < kp <= 1):
            raise argparse.ArgumentTypeError(
                f"--keep-probs must be NAME=KEEP_PROB,... with each keep_prob in (0, 1], got "
                f"{part.strip()!r}")
        if name in out:
            raise argparse.ArgumentTypeError(f"--keep-probs names {name!r} twice")
        out[name] = kp
    return out


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m vi_dropout``."""
    parser = CLIParser(prog="python -m vi_dropout")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="the ELBO == dropout-loss equivalence report",
                              description=_VERIFY_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p_verify.add_argument("--json", metavar="PATH", type=writable_file_arg("--json"),
                          help="also write the rows as JSON (its folder is checked first; it "
                               "may not be the --data or --model file)")
    p_verify.add_argument("--quick", action="store_true",
                          help="the same tolerances on less work: fewer Monte Carlo samples "
                               "(reference problem); with --model the Pyro row on 32 examples "
                               "and a 20-step trajectory on 64")
    p_verify.add_argument("--model", metavar="FILE.py:FACTORY",
                          help="verify YOUR network. IMPORTS AND RUNS FILE.py (its top-level "
                               "code executes): only pass files you trust. FACTORY() returns "
                               "the nn.Module (nn.Dropout before nn.Linear, nn.Dropout2d before "
                               "nn.Conv2d); needs --data")
    p_verify.add_argument("--data", metavar="FILE.npz",
                          help="numpy.savez archive: x (or one array per forward parameter) and "
                               "y (N x D targets, or N class labels); see above")
    p_verify.add_argument("--likelihood", choices=["gaussian", "categorical"], default=None,
                          help="of --model (default: gaussian)")
    p_verify.add_argument("--prior-length-scale", type=positive_float_arg("--prior-length-scale"),
                          default=None,
                          help="l of the prior N(0, l^-2) for --model (default: 1)")
    p_verify.add_argument("--tau", type=positive_float_arg("--tau"), default=None,
                          help="Gaussian precision for --model (default: 1)")
    thetas = p_verify.add_mutually_exclusive_group()
    thetas.add_argument("--theta", metavar="THETA", type=positive_float_arg("--theta"),
                        default=None, help="fix the jitters of --model's gradient and value rows to "
                                           "THETA, THETA/10 and THETA/100 (default: search, "
                                           "decade by decade from 1e-4 to 1e-12, for the "
                                           "O(theta) regime of the network)")
    thetas.add_argument("--thetas", metavar="T1,T2,...", type=thetas_arg("--thetas"),
                        default=None, help="fix the jitters of --model's gradient and value rows "
                                           "(at least 2 distinct, in [1e-12, 1e-2]; default: "
                                           "search for the O(theta) regime)")
    p_verify.add_argument("--keep-probs", metavar="NAME=KEEP_PROB,...", type=keep_probs_arg,
                          default=None,
                          help="the dropout map of a --model torch.fx cannot trace: the keep_prob "
                               "of each covered layer by module name (others get 1); the "
                               "family's masks then act in front of the named layers in place of "
                               "the network's own dropout")
    p_verify.add_argument("--disable-uncovered-dropout", action="store_true",
                          help="switch off the --model's dropout layers the MC dropout family "
                               "does not cover, instead of refusing the network")
    p_verify.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p_verify.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show the full traceback of an error instead of one line")
    return parser


def _model_file(spec: str) -> str:
    """The ``FILE.py`` of ``--model FILE.py:FACTORY``."""
    path, sep, _ = spec.rpartition(":")
    return path if sep else spec


def _same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file (real paths through symlinks; hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_verify_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the ``verify`` arguments against each other, before any work.

    The defaults of the ``--model`` options are filled in; returns ``args``.

    Raises:
        ValueError: ``--model`` without ``--data`` (or the reverse), a ``--model`` option
            without ``--model``, ``--tau`` with a categorical likelihood, ``--json`` naming the
            ``--data`` or ``--model`` file (it would overwrite an input).
    """
    if (args.model is None) != (args.data is None):
        raise ValueError("--model and --data go together (without both: the reference problem)")
    given = [opt for opt, value in (("--likelihood", args.likelihood),
                                    ("--prior-length-scale", args.prior_length_scale),
                                    ("--tau", args.tau), ("--theta", args.theta),
                                    ("--thetas", args.thetas), ("--keep-probs", args.keep_probs),
                                    ("--disable-uncovered-dropout",
                                     args.disable_uncovered_dropout or None))
             if value is not None]
    if args.model is None and given:
        raise ValueError(f"{', '.join(given)}: only with --model and --data (the reference "
                         f"problem has its own settings)")
    if args.likelihood == "categorical" and args.tau is not None:
        raise ValueError("--tau is the precision of the Gaussian likelihood: it does not apply "
                         "with --likelihood categorical")
    if args.json is not None and args.model is not None:
        for option, path in (("--data", args.data), ("--model", _model_file(args.model))):
            if _same_file(args.json, path):
                raise ValueError(f"--json {args.json!r} is the {option} file {path!r} (the same "
                                 f"file once links are resolved): it would overwrite an input; "
                                 f"write the report to another file")
    for key, value in _MODEL_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def run(args: argparse.Namespace) -> int:
    """Run the ``verify`` report of parsed ``args``; 0 if every row passed, else 1."""
    check_verify_args(args)  # before torch and Pyro are imported: a user's error comes at once

    from vi_dropout.verify.paper import run_verify
    from vi_dropout.verify.report import format_table

    extra: dict = {}
    if args.model is not None:
        from vi_dropout.user_files import check_data_file, load_data_file, load_model_factory
        from vi_dropout.verify.network import check_thetas, conversion_summary, verify_network
        from vi_dropout.verify.problem import ModuleProblem

        thetas = ((args.theta, args.theta / 10, args.theta / 100) if args.theta is not None
                  else args.thetas)
        if thetas is not None:
            try:
                check_thetas(thetas)  # before the model file runs
            except ValueError as exc:
                option = "--theta (THETA, THETA/10, THETA/100)" if args.theta else "--thetas"
                raise ValueError(f"{option}: {exc}") from None
        check_data_file(args.data)  # before the model file runs
        net = load_model_factory(args.model)
        x, y = load_data_file(args.data, args.likelihood, module=net)
        t0 = time.perf_counter()
        try:
            problem = ModuleProblem(
                net, x, y, likelihood=args.likelihood, prior_length_scale=args.prior_length_scale,
                tau=args.tau, keep_probs=args.keep_probs,
                uncovered_dropout="disable" if args.disable_uncovered_dropout else "refuse")
            extra["conversion"] = conversion_summary(problem)
            rows = verify_network(net, x, y, problem=problem, quick=args.quick, thetas=thetas,
                                  show_progress=not args.no_progress)
        except SystemExit as exc:  # the user's forward exited
            code = "" if exc.code is None else repr(exc.code)
            raise ValueError(f"--model: running the network called sys.exit({code}); its "
                             f"forward must return the outputs, not exit") from None
    else:
        t0 = time.perf_counter()
        rows = run_verify(quick=args.quick, show_progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    print(format_table(rows))
    print(f"({'quick' if args.quick else 'full'} run, {elapsed:.1f} s)")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {"quick": args.quick, "seconds": elapsed, **extra, "rows": rows}, indent=2))
        print(f"rows written to {args.json}")
    return 0 if all(r["passed"] for r in rows) else 1


def main(argv=None) -> int:
    """Parse ``argv`` and run; a user's error is one line on stderr and exit code 2 (``--debug``:
    the traceback), Ctrl-C exit code 130."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: run(args), debug=args.debug)
