"""``python -m comparisons diagnose``: posterior diagnostics of MC dropout, standard dropout, the
arc-cosine GP and an HMC reference on one split (:mod:`comparisons.experiments.diagnose`).

Parses the arguments into :class:`~comparisons.experiments.diagnose.DiagnoseSettings`, runs
:func:`~comparisons.experiments.diagnose.run` and writes into ``--out`` with
:func:`~comparisons.report.diagnose.write_report` (all atomically):

* ``report.md`` (Markdown tables and the surfaced warnings) and ``records.csv`` (tidy: dataset,
  method, split, metric, value, note);
* ``<method>_train.nc`` and ``<method>_test.nc``: each method's ``DataTree`` (NetCDF; reload
  with ``az.from_netcdf``), for the methods with draws;
* ``ppc.png`` and ``loo_pit.png`` (one panel per method with draws) and, on the toy,
  ``bands.png`` (every method's test predictive mean ± 2 sd);
* ``nuts-cache/``: the NUTS chains (a re-run with the same settings reuses them).

Example::

    python -m comparisons diagnose --dataset toy1d --out outputs/diagnose/toy1d \\
        --epochs-multiplier 10 --num-samples 1000 --hmc-chains 4 --hmc-warmup 300 \\
        --hmc-samples 300
    # one shared, less diffuse prior for every method (prior sd 1 per weight):
    python -m comparisons diagnose --dataset toy1d --out outputs/diagnose/toy1d_l1 \\
        --prior-length-scale 1 --hmc-chains 4 --hmc-warmup 300 --hmc-samples 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comparisons.cli.types import (
    add_out_argument,
    add_seed_argument,
    add_smoke_argument,
    add_threads_argument,
    int_at_least,
    positive_float,
    toy_or_uci_dataset,
)

__all__ = ["SMOKE", "add_parser", "run", "settings_from_args"]

#: settings of ``--smoke`` (seconds; for checking the plumbing only)
SMOKE = {"epochs_multiplier": 0.02, "num_samples": 200, "max_grid": 1, "gp_iterations": 20,
         "gp_num_draws": 200, "hmc_chains": 2, "hmc_warmup": 30, "hmc_samples": 50,
         "hmc_processes": 1, "hmc_max_tree_depth": 4}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``diagnose`` subcommand to ``subparsers`` (sets ``func`` and ``handler`` to
    :func:`run`)."""
    p = subparsers.add_parser(
        "diagnose", help="PSIS-LOO, az.compare, LOO-PIT, PPC and distances from an HMC reference "
                         "for MC dropout, standard dropout and the arc-cosine GP (one split)")
    p.add_argument("--dataset", type=toy_or_uci_dataset, default="toy1d",
                   help="toy1d or a UCI name (default toy1d)")
    p.add_argument("--split", type=int_at_least("--split", 0), default=0,
                   help="UCI split, or the toy's data seed (default 0)")
    add_out_argument(p)
    p.add_argument("--epochs-multiplier", type=positive_float("--epochs-multiplier"),
                   default=10.0, help="the protocol's epochs multiplier (default 10)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=1000,
                   help="T, MC dropout passes (>= 1; PSIS-LOO needs >= 100; default 1000)")
    p.add_argument("--max-grid", type=int_at_least("--max-grid"), default=None,
                   help="only the first grid points of the protocol (smoke runs)")
    p.add_argument("--hmc", action=argparse.BooleanOptionalAction, default=True,
                   help="run the NUTS reference (--no-hmc skips it and the distances)")
    p.add_argument("--hmc-chains", type=int_at_least("--hmc-chains"), default=4)
    p.add_argument("--hmc-warmup", type=int_at_least("--hmc-warmup", 0), default=300)
    p.add_argument("--hmc-samples", type=int_at_least("--hmc-samples"), default=300)
    p.add_argument("--hmc-max-train", type=int_at_least("--hmc-max-train", 2), default=None,
                   help="condition HMC on a random subset of at most this many training rows "
                        "(HMC is then left out of az.compare)")
    p.add_argument("--hmc-processes", type=int_at_least("--hmc-processes"), default=2,
                   help="processes for the chains (default 2)")
    p.add_argument("--hmc-max-tree-depth", type=int_at_least("--hmc-max-tree-depth"),
                   default=10)
    prior = p.add_mutually_exclusive_group()
    prior.add_argument("--hmc-prior-length-scale",
                       type=positive_float("--hmc-prior-length-scale"), default=None,
                       help="override the dropout-matched prior length-scale l_eff for HMC only")
    prior.add_argument("--prior-length-scale", type=positive_float("--prior-length-scale"),
                       default=None,
                       help="ONE prior length-scale l_eff (standardised scale, prior sd 1/l per "
                            "weight) for every method: MC dropout's weight decay, the GP's fixed "
                            "hyper-parameters (gp_arccos1_prior instead of the fitted GP) and "
                            "HMC (default: the protocol's l = 1e-2 and the fitted GP)")
    p.add_argument("--methods", type=_methods_arg, default=(), metavar="ID,ID",
                   help="registered methods with a split predictive (e.g. mfvi, concrete_dropout, "
                        "deep_ensemble, or one of your own that --method-file registers) "
                        "diagnosed beside the four: test metrics and distances from HMC")
    p.add_argument("--method-file", action="append", default=[], metavar="FILE.py",
                   help="a Python file that registers a method of your own (see "
                        "docs/your_method.md); repeatable")
    add_seed_argument(p)
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true")
    add_smoke_argument(p, SMOKE)
    p.set_defaults(func=run, handler=run)
    return p


def _methods_arg(text: str) -> tuple[str, ...]:
    """``--methods``: comma-separated method ids (checked against the registry when the run
    starts, after ``--method-file``)."""
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    if not methods:
        raise argparse.ArgumentTypeError(f"--methods must list method ids, got {text!r}")
    return methods


def settings_from_args(args):
    """The :class:`~comparisons.experiments.diagnose.DiagnoseSettings` of parsed arguments
    (``--smoke`` overrides with :data:`SMOKE`)."""
    from comparisons.experiments.diagnose import DiagnoseSettings

    kwargs = {"dataset": args.dataset, "split": args.split,
              "epochs_multiplier": args.epochs_multiplier, "num_samples": args.num_samples,
              "max_grid": args.max_grid, "seed": args.seed, "hmc": args.hmc,
              "hmc_chains": args.hmc_chains, "hmc_warmup": args.hmc_warmup,
              "hmc_samples": args.hmc_samples, "hmc_max_train": args.hmc_max_train,
              "hmc_processes": args.hmc_processes, "hmc_max_tree_depth": args.hmc_max_tree_depth,
              "hmc_prior_length_scale": args.hmc_prior_length_scale,
              "prior_length_scale": args.prior_length_scale, "methods": args.methods}
    if args.smoke:
        kwargs.update(SMOKE)
    return DiagnoseSettings(**kwargs)


def run(args) -> int:
    """Parse -> :class:`~comparisons.experiments.diagnose.DiagnoseSettings` ->
    :func:`~comparisons.experiments.diagnose.run` ->
    :func:`~comparisons.report.diagnose.write_report`; print the report and the output paths.
    Returns 0."""
    import torch

    from comparisons.experiments import diagnose
    from comparisons.protocols.registry import load_method_file
    from comparisons.report.diagnose import write_report
    from comparisons.runner.folder_lock import FolderLock

    torch.set_num_threads(args.threads)
    for path in args.method_file:
        load_method_file(path)
    out = Path(args.out)
    with FolderLock(out):  # one run at a time in OUT (its NUTS cache included)
        result = diagnose.run(settings_from_args(args), cache_dir=out / "nuts-cache",
                              progress=not args.no_progress)
        paths = write_report(result, out)
    print(paths["report"].read_text(encoding="utf-8"))
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return 0
