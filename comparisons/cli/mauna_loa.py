"""Command line of the Mauna Loa CO2 extrapolation: ``python -m comparisons mauna-loa ...``.

Wiring (in :mod:`comparisons.cli.main`)::

    from comparisons.cli import mauna_loa as cli_mauna_loa
    cli_mauna_loa.add_parser(sub)            # after sub = parser.add_subparsers(...)
    ...
    if args.command == "mauna-loa":
        return cli_mauna_loa.run(args)

Outputs under ``--out``: ``mauna_loa.png`` (five panels), ``mauna_loa.md`` (settings, table,
timings), ``mauna_loa_records.csv`` (tidy records) and ``mauna_loa_predictions.npz`` (query times,
predictive means and sds in ppm); every file is written atomically.

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
import io
import os
import tempfile
import time
from pathlib import Path

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

    Defaults are those of :class:`comparisons.experiments.mauna_loa.MaunaLoaConfig` (a run of a few
    minutes on one thread); the paper-size run is
    ``--iterations 1000000 --num-samples 1000 --gp-stride 1 --gp-iterations 200``.
    """
    from comparisons.experiments.mauna_loa import MaunaLoaConfig

    d = MaunaLoaConfig()
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


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def config_from_args(args: argparse.Namespace):
    """Build the :class:`~comparisons.experiments.mauna_loa.MaunaLoaConfig` of parsed arguments (its
    validation raises ``ValueError`` naming the bad argument)."""
    from comparisons.experiments.mauna_loa import MaunaLoaConfig

    return MaunaLoaConfig(
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
    """Run the experiment of parsed ``args``, write the outputs, print the summary; returns 0.

    Raises:
        ValueError: a bad setting (e.g. ``iterations < 1`` when ``args`` did not come from the
            parser), naming the argument, the expected range and the value.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from comparisons.experiments.mauna_loa import plot_mauna_loa, records_markdown, run_mauna_loa
    from comparisons.runner.store import atomic_write_text
    from vi_dropout.validation import check_positive_int

    cfg = config_from_args(args)
    threads = check_positive_int(getattr(args, "threads", 1), "threads")
    torch.set_num_threads(threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = run_mauna_loa(cfg, progress=not args.no_progress, log=print)
    elapsed = time.perf_counter() - t0

    fig = plot_mauna_loa(result, plt.figure(figsize=(9, 2.4 * len(result.predictions) + 0.6)))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    png = out / "mauna_loa.png"
    _atomic_bytes(png, buf.getvalue())

    frame = result.records_frame()
    csv = atomic_write_text(out / "mauna_loa_records.csv", frame.to_csv(index=False))
    arrays = {"time": result.data.prediction_times(cfg.grid_step),
              "data_time": result.data.time, "data_co2": result.data.co2}
    for name, pred in result.predictions.items():
        arrays[f"{name}_mean"] = pred.mean
        if pred.sd is not None:
            arrays[f"{name}_sd"] = pred.sd
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    npz = out / "mauna_loa_predictions.npz"
    _atomic_bytes(npz, buf.getvalue())

    data = result.data
    step_s = [p.info["seconds_per_step"] for p in result.predictions.values()
              if "seconds_per_step" in p.info]
    lines = [
        "# Mauna Loa CO2: extrapolation with dropout networks and GPs",
        "",
        f"- data: statsmodels co2, weekly (stride {data.stride}), {len(data.time)} weeks, "
        f"{int(data.interpolated.sum())} interpolated; training {data.time[0]:.2f}-"
        f"{data.train_end:.2f} ({data.num_train} weeks, train_fraction {cfg.train_fraction:g}), "
        f"held out {data.num_heldout} weeks to {data.time[-1]:.2f}, predicted to "
        f"{data.horizon:.2f} (extrapolation {cfg.extrapolation:g} x the training span)",
        f"- networks: {cfg.hidden_layers} x {cfg.hidden_units}, drop_rate {cfg.drop_rate:g} "
        f"(keep_prob {cfg.keep_prob:g}) on every hidden layer, input not dropped, "
        f"{cfg.iterations} Adam steps (lr {cfg.lr:g}, batch {cfg.batch_size}), tau {cfg.tau:g}, "
        f"T = {cfg.num_samples} function draws, {cfg.net_dtype}, seed {cfg.seed}",
        f"- GPs: exact, {cfg.gp_iterations} Adam steps (lr {cfg.gp_lr:g}) on the marginal "
        f"likelihood, conditioned on one training week in {cfg.gp_stride}",
        f"- torch threads {threads}; wall time {elapsed:.1f} s"
        + (f"; {np.mean(step_s):.4f} s per training step" if step_s else ""),
        "",
        records_markdown(frame),
        "",
        "Units: ppm; sd includes the observation noise (1/tau for MC dropout, the fitted noise "
        "for the GPs); 'extrapolation' = query times after the last training week.",
    ]
    text = "\n".join(lines)
    md = atomic_write_text(out / "mauna_loa.md", text + "\n")
    print(text)
    print(f"outputs: {png}, {md}, {csv}, {npz}")
    return 0
