"""The ``gp-vs-dropout`` subcommand of ``python -m comparisons``: MC dropout vs exact GPs on one
split (:func:`comparisons.experiments.gp_vs_dropout.run_gp_vs_dropout`).

Wiring into :mod:`comparisons.cli.main` (two lines in ``main``)::

    from comparisons.cli import gp_vs_dropout as cli_gp_vs_dropout
    cli_gp_vs_dropout.add_parser(sub)               # after the "uci" parser
    ...
    if args.command == "gp-vs-dropout":
        return cli_gp_vs_dropout.run(args)

Usage::

    python -m comparisons gp-vs-dropout --dataset toy1d --out docs/gp_vs_dropout/toy1d
    python -m comparisons gp-vs-dropout --dataset concrete --split 0 --out runs/gp/concrete

Outputs under ``--out``: ``table.md`` (settings, the tables of
:func:`~comparisons.experiments.gp_vs_dropout.records_markdown`, wall times), ``records.csv``,
``records.json`` (tidy records, written atomically) and, for ``toy1d``, ``toy1d.png``
(MC dropout vs every GP, one panel each).

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
import io
import json
import os
import time
from pathlib import Path

from comparisons.cli.types import (
    add_out_argument,
    add_seed_argument,
    add_threads_argument,
    int_at_least,
    positive_float,
    toy_or_uci_dataset,
)

__all__ = ["add_parser", "run", "COMMAND"]

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


def _save_figure(result, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from comparisons.experiments.gp_vs_dropout import plot_toy1d_comparison

    gps = [m for m in result.predictions if m != "mc_dropout"]
    ncols = 2 if len(gps) > 1 else 1
    nrows = (len(gps) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 3.6 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    for ax, method in zip(axes.flat, gps):
        plot_toy1d_comparison(result, ax, method)
    for ax in list(axes.flat)[len(gps):]:
        ax.set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    # a 128-colour palette PNG: about 3x smaller, visually the same (flat colours and bands)
    from PIL import Image

    small = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors=128).save(small, format="PNG", optimize=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(small.getvalue())
    os.replace(tmp, path)
    return path


def run(args: argparse.Namespace) -> int:
    """Run the comparison described by ``args`` (from :func:`add_parser`), write the outputs,
    print the table and the output paths.

    Returns:
        0 on success (errors propagate as exceptions; a bad argument raises ``ValueError``).
    """
    import pandas as pd
    import torch

    from comparisons.experiments.gp_vs_dropout import records_markdown, run_gp_vs_dropout
    from comparisons.runner.store import atomic_write_text

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    result = run_gp_vs_dropout(
        args.dataset, args.split, epochs_multiplier=args.epochs_multiplier,
        num_samples=args.num_samples, gp_iterations=args.gp_iterations,
        gp_optimizer=args.gp_optimizer, gp_lr=args.gp_lr, max_grid=args.max_grid,
        seed=args.seed, toy_num_train=args.toy_num_train,
        random_features=not args.no_random_features, progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    drop = result.dropout
    settings = (f"epochs x{args.epochs_multiplier:g}, T = {args.num_samples}, "
                f"max grid {args.max_grid or 'all'}; selected dropout rate {drop.dropout_rate:g}, "
                f"tau {drop.tau:g}; GPs: {args.gp_optimizer}, up to {args.gp_iterations} "
                f"iterations, float64 Cholesky; {args.threads} torch thread(s)")
    n_train = result.data.x_train.shape[0]
    n_test = result.data.x_test.shape[0]
    lines = [f"# MC dropout vs exact GPs: {result.dataset}, split {result.split}", "",
             f"N_train = {n_train}, N_test = {n_test}; {settings}.", "",
             records_markdown(result.records), "",
             f"total wall time {elapsed:.1f} s (MC dropout {drop.wall_time_s:.1f} s)"]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write_text(out / "table.md", text + "\n")]
    df = pd.DataFrame(result.records)
    paths.append(atomic_write_text(out / "records.csv", df.to_csv(index=False)))
    paths.append(atomic_write_text(out / "records.json",
                                   json.dumps(result.records, indent=1) + "\n"))
    if result.dataset == "toy1d":
        paths.append(_save_figure(result, out / "toy1d.png"))
    print(text)
    print("outputs: " + ", ".join(str(p) for p in paths))
    return 0
