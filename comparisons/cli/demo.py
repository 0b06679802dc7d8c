"""``python -m comparisons demo``: the main job behind ``make demo``, small enough for 5 minutes.

Runs, one after another, each at a small setting and each into its own folder under ``--out``:

1. ``verify``: the ELBO == dropout-loss equivalence report (``python -m vi_dropout verify --quick``);
2. ``gp-vs-dropout``: MC dropout against exact GPs on the toy 1-D data (table + figure; epochs x1,
   T = 1,000, 50 GP iterations: about 13 s);
3. ``uci``: the MC dropout UCI protocol on Yacht, 2 splits, epochs x10, T = 10,000;
4. ``rotated-digit``: the dropout LeNet on the 8x8 digits (rotated "1" + calibration);
5. ``mauna-loa``: the CO2 extrapolation figure with a small network (2 x 256 units, 300 steps).

then prints one table (step, status, seconds) and the path of every file written. ``--smoke``
shrinks every step further (used by the tests). A step that fails is reported and the others still
run; the exit status is 1 if any step failed.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from pathlib import Path

from comparisons.cli.types import CLIParser, add_out_argument

__all__ = ["add_parser", "run", "demo_steps", "steps_arg", "STEP_NAMES"]


STEP_NAMES = ("verify", "gp-vs-dropout", "uci", "rotated-digit", "mauna-loa")


def steps_arg(text: str) -> list[str]:
    """argparse type: a comma list of demo steps (each one of :data:`STEP_NAMES`)."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STEP_NAMES]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"--steps must be a comma list of demo steps ({', '.join(STEP_NAMES)}), got "
            f"{text!r}")
    return wanted


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand to ``subparsers``."""
    p = subparsers.add_parser("demo", help="the main job: every experiment at a small setting "
                                            "(under 5 minutes on 2 cores)")
    add_out_argument(p, required=False, default="outputs/demo",
                     help="output directory (default outputs/demo)")
    p.add_argument("--smoke", action="store_true", help="tiny settings (tests)")
    p.add_argument("--steps", type=steps_arg, default=None,
                   help="comma list of demo steps to run (default: all): " + ",".join(STEP_NAMES))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)
    return p


def run_argv(argv: list[str]) -> int:
    """Run one subcommand of ``python -m comparisons`` from its own module (``argv[0]`` names
    it), without error reporting: exceptions propagate, so one failed step is reported and
    Ctrl-C stops the whole demo. The demo does not import :mod:`comparisons.cli.main` (which
    imports the demo): its steps parse with the subcommand's own parser."""
    module = importlib.import_module(f"comparisons.cli.{argv[0].replace('-', '_')}")
    parser = CLIParser(prog="python -m comparisons")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    return int(module.run(parser.parse_args(argv)))


def demo_steps(out: Path, smoke: bool, progress: bool) -> dict[str, Callable[[], int]]:
    """The demo's steps as ``name -> callable returning an exit status`` (errors propagate)."""
    from vi_dropout.cli import build_parser as vi_parser
    from vi_dropout.cli import run as vi_run

    quiet = [] if progress else ["--no-progress"]

    def verify() -> int:
        args = vi_parser().parse_args(["verify", "--quick", "--json",
                                       str(out / "verify" / "verify.json"), *quiet])
        return vi_run(args)

    def gp_vs_dropout() -> int:
        args = ["gp-vs-dropout", "--dataset", "toy1d", "--out", str(out / "gp-vs-dropout")]
        args += ["--toy-num-train", "40", "--epochs-multiplier", "0.01", "--num-samples", "50",
                 "--gp-iterations", "3", "--max-grid", "1", "--no-random-features"] if smoke else \
                ["--epochs-multiplier", "1", "--num-samples", "1000", "--gp-iterations", "50"]
        return run_argv(args + quiet)

    def uci() -> int:
        args = ["uci", "--dataset", "yacht", "--splits", "0-1", "--out", str(out / "uci")]
        args += ["--epochs-multiplier", "0.25", "--num-samples", "50"] if smoke else \
                ["--epochs-multiplier", "10", "--num-samples", "10000"]
        return run_argv(args + quiet)

    def rotated_digit() -> int:
        args = ["rotated-digit", "--out", str(out / "rotated-digit")]
        args += ["--epochs", "1", "--num-samples", "4"] if smoke else \
                ["--epochs", "30", "--num-samples", "100"]
        return run_argv(args + quiet)

    def mauna_loa() -> int:
        # --resume: a second demo reuses the finished networks (a run without it refuses to
        # replace a finished checkpoint)
        args = ["mauna-loa", "--out", str(out / "mauna-loa"), "--resume"]
        args += ["--iterations", "2", "--num-samples", "3", "--hidden-layers", "1",
                 "--hidden-units", "16"] if smoke else \
                ["--iterations", "300", "--num-samples", "30", "--hidden-layers", "2",
                 "--hidden-units", "256"]
        return run_argv(args + quiet)

    steps = {"verify": verify, "gp-vs-dropout": gp_vs_dropout, "uci": uci,
             "rotated-digit": rotated_digit, "mauna-loa": mauna_loa}
    if smoke:
        # The quick verify report takes about a minute: the tests run it elsewhere.
        steps.pop("verify")
    return steps


def run(args) -> int:
    """Run the demo steps; print a summary table and every output path."""
    from comparisons.runner.folder_lock import FolderLock

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = demo_steps(out, smoke=args.smoke, progress=not args.no_progress)
    if args.steps:
        steps = {k: v for k, v in steps.items() if k in args.steps}
    rows = []
    t_all = time.perf_counter()
    with FolderLock(out):  # a second demo into OUT is refused at once, not step by step
        for name, step in steps.items():
            print(f"\n=== demo step: {name} ===", flush=True)
            t0 = time.perf_counter()
            try:
                status = int(step())
                error = ""
            except Exception as exc:  # noqa: BLE001 - one failed step must not hide the others
                status, error = 1, f"{type(exc).__name__}: {exc}"
            rows.append((name, "ok" if status == 0 else f"FAILED {error}".strip(),
                         time.perf_counter() - t0))
    total = time.perf_counter() - t_all
    print("\n## demo summary\n")
    print("| step | status | seconds |")
    print("|---|---|---|")
    for name, status, sec in rows:
        print(f"| {name} | {status} | {sec:.1f} |")
    print(f"| total | | {total:.1f} |")
    print("\noutputs:")
    for path in sorted(p for p in out.rglob("*") if p.is_file() and "cells" not in p.parts):
        print(f"  {path}")
    return 0 if all(status == "ok" for _, status, _ in rows) else 1
