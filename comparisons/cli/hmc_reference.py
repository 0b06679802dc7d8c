"""``python -m comparisons hmc-reference``: converged NUTS references of the predictive at the
test inputs, one checked file per data set and split
(:mod:`comparisons.experiments.hmc_reference`).

For every ``--dataset`` (comma list; ``small`` = toy1d and the five small UCI sets) and
``--splits``, runs :func:`~comparisons.experiments.hmc_reference.run` and writes
``OUT/<dataset>/split-<k>.nc`` with its ``.manifest.json`` (compressed NetCDF, SHA-256,
settings, R-hat/ESS summary) and ``OUT/summary.csv`` (one row per reference file under
``OUT``, this run's and earlier ones: convergence, noise, sampler cost). A reference whose file
already exists with the same settings is kept (the command resumes); finished NUTS chains are cached in ``--cache-dir``, so an interrupted
data set resumes too. An unconverged reference is written with ``converged = False`` and the
command exits 1 after writing everything.

Example::

    python -m comparisons hmc-reference --dataset small --splits 0 --out docs/reference/hmc
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comparisons.cli.types import (
    add_out_argument,
    add_seed_argument,
    add_smoke_argument,
    add_threads_argument,
    float_in,
    int_at_least,
    output_dir_arg,
    positive_float,
    toy_or_uci_dataset,
)

__all__ = ["SMALL", "SMOKE", "add_parser", "datasets_arg", "run", "settings_from_args",
           "splits_arg"]

#: ``--dataset small``: the toy and the five small UCI sets
SMALL = ("toy1d", "boston", "concrete", "energy", "wine", "yacht")
#: settings of ``--smoke`` (seconds; for checking the plumbing only)
SMOKE = {"chains": 2, "warmup": 30, "samples": 40, "max_tree_depth": 3,
         "epochs_multiplier": 0.02, "processes": 1, "toy_num_train": 30}


def datasets_arg(text: str) -> tuple[str, ...]:
    """argparse type of ``--dataset``: ``small`` (:data:`SMALL`) or a comma list of distinct
    toy1d / UCI names."""
    names = SMALL if text.strip() == "small" else tuple(n.strip() for n in text.split(","))
    if not names or len(set(names)) != len(names) or not all(names):
        raise argparse.ArgumentTypeError(
            f"--dataset must be 'small' or a comma list of distinct names, got {text!r}")
    for name in names:
        toy_or_uci_dataset(name)
    return names


def splits_arg(text: str) -> tuple[int, ...]:
    """argparse type of ``--splits``: ``0``, ``0-4``, ``0,3`` -> sorted distinct indices."""
    from comparisons.datasets.split_specs import split_items

    try:
        items = split_items(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--splits: {exc}") from None
    if not items:
        raise argparse.ArgumentTypeError("--splits: list the splits (e.g. 0 or 0-4), not 'all'")
    return tuple(sorted({s for _, lo, hi, _ in items for s in range(lo, hi + 1)}))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``hmc-reference`` subcommand (sets ``func`` and ``handler`` to :func:`run`)."""
    from comparisons.experiments.choices import REFERENCE_BACKENDS

    p = subparsers.add_parser(
        "hmc-reference", help="converged NUTS references (predictive at the test inputs) under "
                              "the shared proper prior, saved as checked NetCDF files")
    p.add_argument("--dataset", type=datasets_arg, default=SMALL,
                   help="'small' (toy1d + Boston, Concrete, Energy, Wine, Yacht; default) or a "
                        "comma list of toy1d / UCI names")
    p.add_argument("--splits", type=splits_arg, default=(0,),
                   help="splits, e.g. 0 or 0-4 or 0,3 (default 0)")
    add_out_argument(p)
    p.add_argument("--cache-dir", type=output_dir_arg("--cache-dir"), default=None,
                   help="NUTS chain cache, reused by a re-run (default "
                        "outputs/hmc-reference-cache)")
    p.add_argument("--prior-length-scale", type=positive_float("--prior-length-scale"),
                   default=1.0, help="l of the shared prior N(0, l^-2), standardised scale "
                                     "(default 1)")
    p.add_argument("--tau-standardized", type=positive_float("--tau-standardized"),
                   default=None, help="noise precision on the standardised scale (default: "
                                      "MC dropout's grid choice under the same prior)")
    p.add_argument("--epochs-multiplier", type=positive_float("--epochs-multiplier"),
                   default=10.0, help="epochs of that grid search (default x10)")
    p.add_argument("--chains", type=int_at_least("--chains", 2), default=4)
    p.add_argument("--warmup", type=int_at_least("--warmup", 0), default=1000)
    p.add_argument("--samples", type=int_at_least("--samples"), default=1000)
    p.add_argument("--backend", choices=REFERENCE_BACKENDS, default="numpyro",
                   help="NUTS back-end (default numpyro: the jax extra; potential: Pyro)")
    p.add_argument("--max-tree-depth", type=int_at_least("--max-tree-depth"), default=10)
    p.add_argument("--target-accept-prob", type=float_in("--target-accept-prob", 0.0, 1.0,
                                                          low_inclusive=False,
                                                          high_inclusive=False),
                   default=0.8, help="NUTS step-size adaptation target in (0, 1) (default 0.8; "
                                     "higher: smaller steps, fewer divergences)")
    p.add_argument("--dense-mass", action="store_true",
                   help="adapt a dense mass matrix (all posterior covariances) instead of a "
                        "diagonal one")
    p.add_argument("--processes", type=int_at_least("--processes"), default=2)
    p.add_argument("--max-draws", type=int_at_least("--max-draws"), default=4000,
                   help="draws kept in each file, all chains (default 4000)")
    add_seed_argument(p)
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--replace", action="store_true",
                   help="replace reference files under --out that were made with other "
                        "settings (default: refuse them; damaged files are always remade)")
    add_smoke_argument(p, SMOKE)
    p.set_defaults(func=run, handler=run)
    return p


def settings_from_args(args, dataset: str, split: int):
    """The :class:`~comparisons.experiments.hmc_reference.ReferenceSettings` of one data set and
    split (``--smoke`` overrides with :data:`SMOKE`)."""
    from comparisons.experiments.hmc_reference import ReferenceSettings

    kwargs = {"dataset": dataset, "split": split,
              "prior_length_scale": args.prior_length_scale,
              "tau_standardized": args.tau_standardized,
              "epochs_multiplier": args.epochs_multiplier, "chains": args.chains,
              "warmup": args.warmup, "samples": args.samples, "backend": args.backend,
              "max_tree_depth": args.max_tree_depth, "processes": args.processes,
              "target_accept_prob": args.target_accept_prob, "dense_mass": args.dense_mass,
              "seed": args.seed, "max_draws": args.max_draws}
    if args.smoke:
        kwargs.update(SMOKE)
    return ReferenceSettings(**kwargs)


def run(args) -> int:
    """Parse -> settings per data set and split -> :func:`~comparisons.experiments.hmc_reference.run`
    -> :func:`~comparisons.experiments.hmc_reference.write_reference`, then the summary table.
    Returns 0, or 1 when a reference did not converge."""
    import torch

    from comparisons.experiments import hmc_reference as ref
    from comparisons.report.hmc_reference import write_summary
    from comparisons.runner.folder_lock import FolderLock

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    cache = Path(args.cache_dir) if args.cache_dir else Path("outputs/hmc-reference-cache")
    paths = []
    with FolderLock(out):  # one run at a time writes reference files into OUT
        todo = []
        for dataset in args.dataset:  # every existing file checked before any sampling
            for split in args.splits:
                settings = settings_from_args(args, dataset, split)
                existing = ref.existing_reference(out, settings,
                                                  replace_other_settings=args.replace)
                todo.append((settings, existing))
        for settings, existing in todo:
            if existing is not None:
                print(f"kept: {existing} (same settings)", flush=True)
                paths.append(existing)
                continue
            result = ref.run(settings, cache_dir=cache, progress=not args.no_progress)
            path = ref.write_reference(result, out)
            verdict = "converged" if result.report.converged else \
                "NOT converged: " + "; ".join(result.report.reasons)
            print(f"written: {path} ({verdict}; {result.wall_time_s:.0f} s)", flush=True)
            paths.append(path)
        summary = write_summary(ref.reference_files(out), out / "summary.csv")
    print(f"summary: {summary}")
    unconverged = [p for p in paths if not ref.is_converged(p)]
    if unconverged:
        print("not converged: " + ", ".join(str(p) for p in unconverged), file=sys.stderr)
        return 1
    return 0
