"""``python -m comparisons reference-scores``: every method scored against the saved HMC
references (:mod:`comparisons.experiments.reference_scores`).

Reads ``--reference DIR`` (written by ``hmc-reference``; each file's checksum and data set are
checked), fits the methods on each reference's split and writes ``records.csv``, ``report.md``
(one table per reference, a summary over the converged ones) and ``tv_vs_hmc.png`` into
``--out`` with :func:`~comparisons.report.reference_scores.write_report`. Each reference's
records are also kept in a results store under ``--cache-dir`` (one cell per reference file and
settings), so a re-run, or one with a data set added, fits only what is new or changed.

Example::

    python -m comparisons reference-scores --reference docs/reference/hmc \\
        --dataset small --out docs/reference/scores
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from comparisons.cli.hmc_reference import SMALL, datasets_arg, splits_arg
from comparisons.cli.types import (
    add_out_argument,
    add_seed_argument,
    add_smoke_argument,
    add_threads_argument,
    int_at_least,
    output_dir_arg,
    positive_float,
)

__all__ = ["SMOKE", "add_parser", "run", "settings_from_args"]

#: settings of ``--smoke`` (seconds; for checking the plumbing only)
SMOKE = {"epochs_multiplier": 0.02, "num_samples": 50, "gp_iterations": 5}


def _methods_arg(text: str) -> tuple[str, ...]:
    """``--methods``: distinct method names (checked against the built-in ones and the registry
    when the run starts, after ``--method-file``); ``hmc`` is the reference, always scored."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names) or "hmc" in names:
        raise argparse.ArgumentTypeError(
            f"--methods must be distinct method names other than hmc (the reference, always "
            f"included), got {text!r}")
    return names


def thetas_list_arg(text: str) -> tuple[float, ...]:
    """``--psis-thetas``: comma-separated distinct numbers > 0."""
    items = [v.strip() for v in text.split(",")]
    try:
        values = tuple(float(v) for v in items)
    except ValueError:
        values = ()
    if (not values or not all(0 < v < float("inf") for v in values)
            or len(set(values)) != len(values)):
        raise argparse.ArgumentTypeError(f"--psis-thetas must be a comma list of distinct "
                                         f"numbers > 0, got {text!r}")
    return values


def psis_draws_arg(text: str) -> int:
    """``--psis-draws``: 0 (none) or at least the PSIS minimum."""
    from comparisons.inference_data.vi_psis import MIN_DRAWS

    try:
        value = int(text)
    except ValueError:
        value = -1
    if value != 0 and value < MIN_DRAWS:
        raise argparse.ArgumentTypeError(f"--psis-draws must be 0 (none) or an integer >= "
                                         f"{MIN_DRAWS}, got {text!r}")
    return value


def _reference_dir_arg(text: str) -> str:
    """``--reference``: an existing folder (the reference files of ``hmc-reference``; each file
    is checked when the run reads it)."""
    path = Path(text)
    if not path.is_dir():
        what = "a file" if path.exists() else "no such folder"
        raise argparse.ArgumentTypeError(f"--reference must be the folder of the reference files "
                                         f"(written by hmc-reference), got {text!r} ({what})")
    return text


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reference-scores`` subcommand (sets ``func`` and ``handler`` to :func:`run`)."""
    from comparisons.experiments.choices import SCORED_METHODS

    p = subparsers.add_parser(
        "reference-scores", help="score MC dropout, standard dropout and the GPs against the "
                                 "saved HMC references (tables, summary, figure)")
    p.add_argument("--reference", type=_reference_dir_arg, required=True,
                   help="folder of the reference files (written by hmc-reference)")
    p.add_argument("--dataset", type=datasets_arg, default=SMALL,
                   help="'small' (default) or a comma list of toy1d / UCI names")
    p.add_argument("--splits", type=splits_arg, default=(0,), help="splits (default 0)")
    p.add_argument("--methods", type=_methods_arg, default=SCORED_METHODS,
                   help="comma list (default all built-in ones: " + ",".join(SCORED_METHODS)
                        + "), or a method of your own that --method-file registers")
    p.add_argument("--method-file", action="append", default=[], metavar="FILE.py",
                   help="a Python file that registers methods of your own "
                        "(comparisons.protocols.registry.register_method; see "
                        "examples/swag_method.py); it is imported, so it runs; repeatable")
    add_out_argument(p)
    p.add_argument("--epochs-multiplier", type=positive_float("--epochs-multiplier"),
                   default=10.0, help="MC dropout's protocol epochs (default x10)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=1000,
                   help="MC dropout passes T (default 1000)")
    p.add_argument("--gp-iterations", type=int_at_least("--gp-iterations"), default=200)
    p.add_argument("--psis-draws", type=psis_draws_arg, default=0,
                   help="draws of the MC dropout family for the PSIS of the reference's "
                        "posterior against it (Pareto k: did the approximation work?); 0: none")
    p.add_argument("--psis-thetas", type=thetas_list_arg, default=None,
                   help="comma list of the family's jitters theta > 0 for --psis-draws "
                        "(default 0.1,0.03,0.01)")
    p.add_argument("--cache-dir", type=output_dir_arg("--cache-dir"),
                   default="outputs/reference-scores-cache",
                   help="results store of the finished references' records, reused by a re-run "
                        "(default outputs/reference-scores-cache)")
    p.add_argument("--no-cache", action="store_true", help="fit everything, store nothing")
    add_seed_argument(p)
    add_threads_argument(p)
    add_smoke_argument(p, SMOKE)
    p.set_defaults(func=run, handler=run)
    return p


def settings_from_args(args):
    """The :class:`~comparisons.experiments.reference_scores.ScoreSettings` of parsed
    arguments (``--smoke`` overrides with :data:`SMOKE`)."""
    from comparisons.experiments.reference_scores import ScoreSettings

    kwargs = {"reference_dir": args.reference, "datasets": args.dataset, "splits": args.splits,
              "methods": args.methods, "epochs_multiplier": args.epochs_multiplier,
              "num_samples": args.num_samples, "gp_iterations": args.gp_iterations,
              "seed": args.seed, "psis_draws": args.psis_draws}
    if args.psis_thetas is not None:
        if not args.psis_draws:
            raise ValueError("--psis-thetas: only with --psis-draws N (the PSIS draws it sets "
                             "the thetas of)")
        kwargs["psis_thetas"] = args.psis_thetas
    if args.smoke:
        kwargs.update(SMOKE)
    return ScoreSettings(**kwargs)


def run(args) -> int:
    """Parse -> settings -> :func:`~comparisons.experiments.reference_scores.run` ->
    :func:`~comparisons.report.reference_scores.write_report`. Returns 0."""
    import torch

    from comparisons.experiments import reference_scores
    from comparisons.protocols.registry import load_method_file
    from comparisons.report.reference_scores import write_report
    from comparisons.runner.folder_lock import FolderLock
    from comparisons.runner.store import ResultsStore

    torch.set_num_threads(args.threads)
    for path in args.method_file:
        load_method_file(path)
    out = Path(args.out)
    store = None if args.no_cache else ResultsStore(args.cache_dir)
    with contextlib.ExitStack() as held:
        # one run at a time in the report folder and in the cache (the same lock file when
        # they are one folder); the cache's damaged cells are moved aside and scored again
        if store is None or out.resolve() != store.out.resolve():
            held.enter_context(FolderLock(out))
        if store is not None:
            held.enter_context(store.writing())
        result = reference_scores.run(settings_from_args(args), store=store)
        command = "python -m comparisons " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else ""
        paths = write_report(result, out, commands=[command] if command else ())
    print("outputs: " + ", ".join(str(p) for p in paths.values()))
    return 0
