"""Command line of the Mauna Loa CO2 extrapolation: ``python -m comparisons mauna-loa ...``.

Wiring (in :mod:`comparisons.cli.main`)::

    from comparisons.cli import mauna_loa as cli_mauna_loa
    cli_mauna_loa.add_parser(sub)            # after sub = parser.add_subparsers(...)
    ...
    if args.command == "mauna-loa":
        return cli_mauna_loa.run(args)

Parses the arguments into a :class:`~comparisons.experiments.mauna_loa.MaunaLoaSettings`, runs
:func:`comparisons.experiments.mauna_loa.run` and writes the outputs with
:func:`comparisons.report.mauna_loa.write_report` under ``--out``: ``mauna_loa.png`` (five
panels), ``report.md`` (settings, table, timings), ``records.csv`` (tidy records) and
``predictions.npz`` (query times, predictive means and sds in ppm); every file is written
atomically.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="python -m comparisons")
    >>> sub = parser.add_subparsers(dest="command", required=True)
    >>> _ = add_parser(sub)
    >>> args = parser.parse_args(["mauna-loa", "--out", "/tmp/ml", "--iterations", "20"])
    >>> run(args)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse

from comparisons.cli.types import (
    add_keep_prob_argument,
    add_out_argument,
    add_seed_argument,
    add_threads_argument,
    drop_rate_from_keep_prob,
    float_in,
    int_at_least,
    positive_float,
)

__all__ = ["COMMAND", "add_parser", "run"]

COMMAND = "mauna-loa"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``mauna-loa`` subcommand to ``subparsers`` (from ``add_subparsers``) and return it.

    Defaults are those of :class:`comparisons.experiments.mauna_loa.MaunaLoaSettings` (a run of a
    few minutes on one thread); the paper-size run
    (:data:`~comparisons.experiments.mauna_loa.PAPER_LIKE_SETTINGS`) is
    ``--iterations 1000000 --num-samples 1000 --gp-stride 1 --gp-iterations 200``.
    """
    from comparisons.experiments.mauna_loa import MaunaLoaSettings

    d = MaunaLoaSettings()
    p = subparsers.add_parser(
        COMMAND,
        help="Figure 2 of Gal & Ghahramani: extrapolating the Mauna Loa CO2 record",
        description="Standard dropout, MC dropout (ReLU, tanh) and exact GPs (SE, arc-cosine) "
                    "fitted on the early part of the Mauna Loa CO2 record and extrapolated.",
    )
    add_out_argument(p)
    p.add_argument("--iterations", type=int_at_least("--iterations"), default=d.iterations,
                   help=f"minibatch steps per network (default {d.iterations}; paper-like: "
                        "1000000)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=d.num_samples,
                   help=f"T, MC dropout function draws (default {d.num_samples})")
    p.add_argument("--hidden-layers", type=int_at_least("--hidden-layers"),
                   default=d.hidden_layers, help=f"default {d.hidden_layers}")
    p.add_argument("--hidden-units", type=int_at_least("--hidden-units"),
                   default=d.hidden_units, help=f"default {d.hidden_units}")
    add_keep_prob_argument(p, d.keep_prob, "keep probability of every hidden unit")
    p.add_argument("--tau", type=positive_float("--tau"), default=d.tau,
                   help=f"model precision on the standardised scale (default {d.tau:g})")
    p.add_argument("--gp-iterations", type=int_at_least("--gp-iterations"),
                   default=d.gp_iterations, help=f"default {d.gp_iterations}")
    p.add_argument("--gp-stride", type=int_at_least("--gp-stride"), default=d.gp_stride,
                   help="GPs condition on every k-th training week (default "
                        f"{d.gp_stride})")
    p.add_argument("--data-stride", type=int_at_least("--data-stride"), default=d.data_stride,
                   help="keep every k-th week of the record (default 1: all)")
    p.add_argument("--train-fraction", default=d.train_fraction,
                   type=float_in("--train-fraction", 0, 1, low_inclusive=False,
                                 high_inclusive=False),
                   help=f"fraction of the record used for training (default "
                        f"{d.train_fraction:g})")
    p.add_argument("--extrapolation", type=positive_float("--extrapolation"),
                   default=d.extrapolation,
                   help="horizon = end of training + this x the training span (default "
                        f"{d.extrapolation:g})")
    add_seed_argument(p, d.seed)
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def settings_from_args(args: argparse.Namespace):
    """Build the :class:`~comparisons.experiments.mauna_loa.MaunaLoaSettings` of parsed arguments
    (its validation raises ``ValueError`` naming the bad argument)."""
    from comparisons.experiments.mauna_loa import MaunaLoaSettings

    return MaunaLoaSettings(
        iterations=args.iterations,
        num_samples=args.num_samples,
        hidden_layers=args.hidden_layers,
        hidden_units=args.hidden_units,
        drop_rate=drop_rate_from_keep_prob(args.keep_prob),
        tau=args.tau,
        gp_iterations=args.gp_iterations,
        gp_stride=args.gp_stride,
        data_stride=args.data_stride,
        train_fraction=args.train_fraction,
        extrapolation=args.extrapolation,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Run the experiment of parsed ``args``, write the outputs, print the report and the paths;
    returns 0.

    Raises:
        ValueError: a bad setting (e.g. ``iterations < 1`` when ``args`` did not come from the
            parser), naming the argument, the expected range and the value.
    """
    import torch

    from comparisons.experiments.mauna_loa import run as run_experiment
    from comparisons.report.mauna_loa import write_report
    from vi_dropout.validation import check_positive_int

    settings = settings_from_args(args)
    torch.set_num_threads(check_positive_int(getattr(args, "threads", 1), "threads"))
    result = run_experiment(settings, progress=not args.no_progress, log=print)
    paths = write_report(result, args.out)
    print(paths["report"].read_text(), end="")
    print("outputs: " + ", ".join(str(p) for p in paths.values()))
    return 0
