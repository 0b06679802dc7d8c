"""``python -m comparisons pitfalls``: the three pitfalls of MC dropout, as tables and figures.

Parses the arguments into a :class:`~comparisons.experiments.pitfalls.PitfallSettings`, runs
:func:`comparisons.experiments.pitfalls.run` and writes with
:func:`comparisons.report.pitfalls.write_report` into ``--out``: ``improper_kl.png``,
``non_concentration.png`` (training and extrapolation regions), ``learned_keep_prob.png`` (with
the learned-rate methods, ``--learned-rates``, the default), ``keep_prob_sensitivity.png``,
``records.csv`` (tidy), ``report.md`` (tables, HMC's diagnostics and the surfaced warnings), plus
``nuts-cache/`` (the NUTS chains of the non-concentration experiment; a re-run with the same
settings reuses them); prints the report and the output paths.

The committed run (the defaults, N up to 10,000, HMC for N <= 300; 1 h 53 min on a 2-core CPU
with another experiment beside it, HMC all but about 8 min of it)::

    python -m comparisons pitfalls --out docs/pitfalls
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comparisons.cli.types import (
    add_keep_prob_argument,
    add_out_argument,
    add_seed_argument,
    add_threads_argument,
    int_at_least,
)

__all__ = ["add_parser", "run"]


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"--sizes must be a comma list of integers >= 1 (e.g. 10,100,1000), got {text!r}")
    return values


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``pitfalls`` subcommand to ``subparsers``."""
    p = subparsers.add_parser("pitfalls", help="improper KL, non-concentration and keep_prob "
                                                "sensitivity of MC dropout (toy data)")
    add_out_argument(p)
    p.add_argument("--iterations", type=int_at_least("--iterations"), default=4000,
                   help="Adam steps per network (default 4000; minibatches for fixed-rate MC "
                        "dropout, full batch for the learned-rate fits)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=1000,
                   help="T, MC dropout samples (default 1000)")
    p.add_argument("--sizes", type=_int_list, default=[10, 30, 100, 300, 1000, 3000, 10000],
                   help="training-set sizes of the non-concentration experiment (default "
                        "10,30,100,300,1000,3000,10000)")
    add_keep_prob_argument(p, 0.9, "keep_prob of the non-concentration experiment")
    p.add_argument("--hmc", action=argparse.BooleanOptionalAction, default=True,
                   help="NUTS reference curve in the non-concentration experiment (--no-hmc: "
                        "MC dropout and the GP only)")
    p.add_argument("--learned-rates", action=argparse.BooleanOptionalAction, default=True,
                   help="learned-rate curves in the non-concentration experiment: Concrete "
                        "dropout and the full ELBO, --iterations full-batch Adam steps each "
                        "(--no-learned-rates: without them)")
    p.add_argument("--hmc-max-train", type=int_at_least("--hmc-max-train"), default=300,
                   help="run HMC for the sizes N <= this (default 300)")
    p.add_argument("--hmc-chains", type=int_at_least("--hmc-chains"), default=4)
    p.add_argument("--hmc-warmup", type=int_at_least("--hmc-warmup", 0), default=300)
    p.add_argument("--hmc-samples", type=int_at_least("--hmc-samples"), default=300)
    p.add_argument("--hmc-processes", type=int_at_least("--hmc-processes"), default=2,
                   help="processes for the chains (default 2)")
    p.add_argument("--hmc-max-tree-depth", type=int_at_least("--hmc-max-tree-depth"),
                   default=10)
    add_seed_argument(p)
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)
    return p


def settings_from_args(args: argparse.Namespace):
    """The :class:`~comparisons.experiments.pitfalls.PitfallSettings` of parsed arguments (its
    validation raises ``ValueError`` naming the bad setting)."""
    from comparisons.experiments.pitfalls import PitfallHMCSettings, PitfallSettings

    hmc = None
    if args.hmc:
        hmc = PitfallHMCSettings(max_train=args.hmc_max_train, chains=args.hmc_chains,
                                 warmup=args.hmc_warmup, samples=args.hmc_samples,
                                 processes=args.hmc_processes,
                                 max_tree_depth=args.hmc_max_tree_depth)
    return PitfallSettings(steps=args.iterations, num_samples=args.num_samples, seed=args.seed,
                           sizes=tuple(args.sizes), keep_prob=args.keep_prob, hmc=hmc,
                           learned_rates=args.learned_rates)


def run(args) -> int:
    """Run the three experiments; write figures, records and the report; print the report and
    the paths."""
    import torch

    from comparisons.experiments.pitfalls import run as run_experiment
    from comparisons.report.pitfalls import write_report
    from comparisons.runner.folder_lock import FolderLock

    settings = settings_from_args(args)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    with FolderLock(out):  # one run at a time in OUT (its NUTS cache included)
        result = run_experiment(settings, progress=not args.no_progress,
                                cache_dir=out / "nuts-cache")
        paths = write_report(result, out)
    print(paths["report"].read_text())
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return 0
