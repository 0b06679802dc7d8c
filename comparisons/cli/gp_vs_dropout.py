"""The ``gp-vs-dropout`` subcommand of ``python -m comparisons``: MC dropout vs exact GPs on one
split. Parses the arguments into a
:class:`~comparisons.experiments.gp_vs_dropout.GPvsDropoutSettings`, runs
:func:`~comparisons.experiments.gp_vs_dropout.run` and writes the report with
:func:`~comparisons.report.gp_vs_dropout.write_report`.

Usage::

    python -m comparisons gp-vs-dropout --dataset toy1d --out docs/gp_vs_dropout/toy1d
    python -m comparisons gp-vs-dropout --dataset concrete --split 0 --out runs/gp/concrete

Outputs under ``--out``: ``report.md`` (settings, tables, wall times), ``records.csv``,
``records.json`` (tidy records) and, for ``toy1d``, ``toy1d.png`` (MC dropout vs every GP, one
panel each), all written atomically.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_parser(parser.add_subparsers(dest="command"))  # doctest: +ELLIPSIS
    ArgumentParser(...)
    >>> args = parser.parse_args(["gp-vs-dropout", "--dataset", "toy1d", "--out", "/tmp/x"])
    >>> args.epochs_multiplier, args.num_samples
    (10.0, 10000)
"""

from __future__ import annotations

import argparse

from comparisons.cli.types import (
    add_out_argument,
    add_seed_argument,
    add_threads_argument,
    int_at_least,
    positive_float,
    toy_or_uci_dataset,
)

__all__ = ["add_parser", "run", "settings_from_args", "COMMAND"]

COMMAND = "gp-vs-dropout"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``gp-vs-dropout`` subcommand to an ``argparse`` subparsers object.

    Args:
        subparsers: the object returned by ``parser.add_subparsers(...)``.

    Returns:
        The new subparser (its ``func`` default is :func:`run`).
    """
    p = subparsers.add_parser(
        COMMAND, help="MC dropout vs exact GPs (arc-cosine with the dropout prior, arc-cosine "
        "and SE by marginal likelihood) on one split",
        description="Train MC dropout with the UCI protocol and fit exact GPs on the same split; "
        "write accuracy, calibration and predictive-distance tables.")
    p.add_argument("--dataset", type=toy_or_uci_dataset, default="toy1d",
                   help="'toy1d' or a UCI data set name / alias (default: toy1d)")
    p.add_argument("--split", type=int_at_least("--split", 0), default=0,
                   help="UCI split index, or the toy's data seed (default: 0)")
    add_out_argument(p)
    p.add_argument("--epochs-multiplier", type=positive_float("--epochs-multiplier"),
                   default=10.0,
                   help="MC dropout epochs = base epochs (UCI 40, toy 1000) times this "
                        "(default: 10, as `python -m comparisons uci`)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=10_000,
                   help="T, MC dropout samples at test time (default: 10000)")
    p.add_argument("--max-grid", type=int_at_least("--max-grid"), default=None,
                   help="only the first grid points of the dropout grid search (smoke runs)")
    p.add_argument("--gp-iterations", type=int_at_least("--gp-iterations"), default=200,
                   help="L-BFGS iterations (or Adam steps) of the fitted GPs (default: 200)")
    p.add_argument("--gp-optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--gp-lr", type=positive_float("--gp-lr"), default=0.1,
                   help="Adam learning rate (adam only; default: 0.1)")
    p.add_argument("--no-random-features", action="store_true",
                   help="skip gp_rf_prior (random-feature GP with the dropout prior)")
    p.add_argument("--toy-num-train", type=int_at_least("--toy-num-train", 10), default=200,
                   help="training points of toy1d (default: 200)")
    add_seed_argument(p, help="seed of the dropout protocol (default: 0)")
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true", help="do not print the stages")
    p.set_defaults(func=run)
    return p


def settings_from_args(args: argparse.Namespace):
    """The :class:`~comparisons.experiments.gp_vs_dropout.GPvsDropoutSettings` of parsed
    ``args``."""
    from comparisons.experiments.gp_vs_dropout import GPvsDropoutSettings

    return GPvsDropoutSettings(
        args.dataset, args.split, epochs_multiplier=args.epochs_multiplier,
        num_samples=args.num_samples, gp_iterations=args.gp_iterations,
        gp_optimizer=args.gp_optimizer, gp_lr=args.gp_lr, max_grid=args.max_grid,
        seed=args.seed, toy_num_train=args.toy_num_train,
        random_features=not args.no_random_features)


def run(args: argparse.Namespace) -> int:
    """Run the comparison described by ``args`` (from :func:`add_parser`), write the report,
    print it and the output paths.

    Returns:
        0 on success (errors propagate as exceptions; a bad argument raises ``ValueError``).
    """
    import torch

    from comparisons.experiments.gp_vs_dropout import run as run_comparison
    from comparisons.report.gp_vs_dropout import write_report
    from comparisons.runner.folder_lock import FolderLock

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    with FolderLock(args.out):  # one run at a time in OUT
        result = run_comparison(settings_from_args(args), progress=not args.no_progress)
        paths = write_report(result, args.out)
    print(paths["report"].read_text(encoding="utf-8"), end="")
    print("outputs: " + ", ".join(str(p) for p in paths.values()))
    return 0
