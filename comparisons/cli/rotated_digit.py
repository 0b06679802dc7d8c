"""``python -m comparisons rotated-digit``: train a dropout LeNet, run the rotated-digit experiment
(Figure 4 of Gal & Ghahramani, 2016) and the calibration comparison, write figures and tables.

Wiring (in ``comparisons/cli/main.py``)::

    from comparisons.cli.rotated_digit import add_parser as add_rotated_digit_parser
    from comparisons.cli.rotated_digit import run as run_rotated_digit
    ...
    add_rotated_digit_parser(sub)
    ...
    if args.command == "rotated-digit":
        return run_rotated_digit(args)

Outputs under ``--out DIR`` (every file written atomically: temporary file, fsync, rename):

=============================  =================================================================
``rotated_digit.png``          images, softmax input/output scatters, entropy / MI / variation
                               ratio vs angle (MC dropout and standard dropout)
``reliability_diagram.png``    reliability diagram of MC vs standard dropout on the test split
``rotated_digit.csv``          tidy records ``dataset, method, angle, metric, value``
``calibration.csv``            tidy records ``dataset, method, metric, value`` (accuracy, ECE, NLL)
``summary.md``                 settings, wall times, the calibration and rotated-digit tables
=============================  =================================================================

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="python -m comparisons")
    >>> add_parser(parser.add_subparsers(dest="command"))  # doctest: +ELLIPSIS
    ArgumentParser(prog='python -m comparisons rotated-digit', ...)
    >>> args = parser.parse_args(["rotated-digit", "--out", "/tmp/rd", "--epochs", "1"])
    >>> run(args)  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from comparisons.cli.types import (
    add_keep_prob_argument,
    add_out_argument,
    add_threads_argument,
    drop_rate_from_keep_prob,
    float_in,
    int_at_least,
    positive_float,
)

__all__ = ["DEFAULTS", "add_parser", "run"]

#: Default settings of the subcommand (also used in the docs).
DEFAULTS = {
    "epochs": 100,
    "num_samples": 100,
    "seed": 0,
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 5e-4,
    "keep_prob": 0.5,
    "digit": 1,
    "digit_index": 0,
    "num_bins": 10,
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``rotated-digit`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Returns:
        The new sub-parser (its ``handler`` default is :func:`run`).
    """
    d = DEFAULTS
    p = subparsers.add_parser(
        "rotated-digit",
        help="dropout LeNet: rotated-digit uncertainty (paper Fig. 4) and calibration",
        description="Train a LeNet with dropout before its last layer on scikit-learn's 8x8 "
                    "digits (or MNIST IDX files), then compare MC dropout with standard dropout "
                    "on a rotated test digit and on the calibration of the test split.")
    add_out_argument(p)
    p.add_argument("--epochs", type=int_at_least("--epochs", 1, "training epochs"),
                   default=d["epochs"], help=f"training epochs (default {d['epochs']})")
    p.add_argument("--num-samples", type=int_at_least("--num-samples", 1,
                                                      "T, MC dropout samples per image"),
                   default=d["num_samples"],
                   help=f"T, MC dropout samples per image (default {d['num_samples']})")
    p.add_argument("--mnist-path", default=None,
                   help="folder with MNIST IDX files (train-images-idx3-ubyte, "
                        "train-labels-idx1-ubyte, optional t10k-*, each optionally .gz); "
                        "default: scikit-learn's bundled 8x8 digits")
    p.add_argument("--seed", type=int_at_least("--seed", 0, "random seed"), default=d["seed"],
                   help="seed of the split, the initial weights, the training and the MC masks")
    p.add_argument("--batch-size", type=int_at_least("--batch-size", 1, "minibatch size"),
                   default=d["batch_size"], help=f"minibatch size (default {d['batch_size']})")
    p.add_argument("--lr", type=positive_float("--lr"), default=d["lr"],
                   help=f"Adam learning rate (default {d['lr']:g})")
    p.add_argument("--weight-decay", type=float_in("--weight-decay", 0), default=d["weight_decay"],
                   help=f"torch weight_decay (Caffe LeNet: 5e-4; default {d['weight_decay']:g})")
    add_keep_prob_argument(p, d["keep_prob"], "keep probability of the last hidden layer's units")
    p.add_argument("--digit", type=int, default=d["digit"], choices=range(10), metavar="0-9",
                   help="class of the rotated test image (default 1)")
    p.add_argument("--digit-index", type=int_at_least("--digit-index", 0, "which test image"),
                   default=d["digit_index"],
                   help="which test image of that class (0 = the first)")
    p.add_argument("--num-bins", type=int_at_least("--num-bins", 1, "ECE bins"),
                   default=d["num_bins"], help="equal-width bins of the ECE / reliability diagram")
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.set_defaults(handler=run)
    return p


def _save_figure(fig, path: Path) -> Path:
    """Save ``fig`` as PNG atomically (temporary file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else format(v, floatfmt)
        return str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |"
              for row in df.itertuples(index=False, name=None)]
    return "\n".join(lines)


def _check_args(args) -> None:
    """Checks that also hold when ``args`` was built by hand rather than by the parser."""
    for name, minimum in (("num_samples", 1), ("epochs", 1), ("batch_size", 1), ("num_bins", 1)):
        v = getattr(args, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be an integer >= {minimum}, got {v!r}")
    if not (0.0 < float(args.keep_prob) <= 1.0):
        raise ValueError(f"--keep-prob must lie in (0, 1] (probability that a unit is KEPT), "
                         f"got {args.keep_prob!r}")
    if not (float(args.lr) > 0 and math.isfinite(float(args.lr))):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr!r}")
    if not (float(args.weight_decay) >= 0 and math.isfinite(float(args.weight_decay))):
        raise ValueError(f"--weight-decay must be a finite number >= 0, got {args.weight_decay!r}")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand with parsed ``args``; returns the exit code (0 on success).

    Raises:
        ValueError: invalid settings (e.g. ``num_samples < 1``), corrupt MNIST files.
        FileNotFoundError: ``--mnist-path`` or one of its files is missing.
    """
    import torch
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing left open

    from comparisons.datasets.digits import load_digits_split, load_mnist_split
    from comparisons.experiments.rotated_digit import (
        plot_rotated_digit_figure,
        rotated_digit_table,
        run_rotated_digit,
        select_digit,
    )
    from comparisons.metrics.calibration import (
        calibration_records,
        plot_reliability_diagram,
        predictive_probs,
        reliability_bins,
    )
    from comparisons.networks.lenet import LeNet, mc_logits, standard_logits, train_lenet
    from comparisons.runner.store import atomic_write_text

    _check_args(args)
    t_start = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress

    if args.mnist_path:
        data, dataset = load_mnist_split(args.mnist_path, seed=args.seed), "mnist"
    else:
        data, dataset = load_digits_split(seed=args.seed), "digits"
    try:  # before the training: --digit-index must name a test image of --digit
        image, row = select_digit(data.x_test, data.y_test, args.digit, args.digit_index)
    except ValueError as exc:
        raise ValueError(f"--digit-index {args.digit_index}: {exc}") from None
    drop_rate = drop_rate_from_keep_prob(args.keep_prob)
    net = LeNet(data.image_size, data.num_classes, drop_rate=drop_rate, seed=args.seed)
    hist = train_lenet(net, data.x_train, data.y_train, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       seed=args.seed, progress=progress)

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed + 1)
    logits_mc = mc_logits(net, data.x_test, args.num_samples, generator=gen, progress=progress)
    logits_std = standard_logits(net, data.x_test)
    logits = {"mc_dropout": logits_mc, "standard_dropout": logits_std}
    cal = calibration_records(logits, data.y_test, dataset, args.num_bins)
    res = run_rotated_digit(net, image, num_samples=args.num_samples, seed=args.seed,
                            digit=args.digit, dataset=dataset)
    rot = res.records
    t_predict = time.perf_counter() - t0

    fig = plot_rotated_digit_figure(res, Figure(figsize=(12, 10)))
    fig_path = _save_figure(fig, out / "rotated_digit.png")
    probs = {m: predictive_probs(v) for m, v in logits.items()}
    fig = Figure(figsize=(6, 5))
    plot_reliability_diagram(probs, data.y_test, fig.add_subplot(), num_bins=args.num_bins)
    fig.tight_layout()
    rel_path = _save_figure(fig, out / "reliability_diagram.png")

    rot_csv = atomic_write_text(out / "rotated_digit.csv", pd.DataFrame(rot).to_csv(index=False))
    cal_csv = atomic_write_text(out / "calibration.csv", pd.DataFrame(cal).to_csv(index=False))

    cal_df = (pd.DataFrame(cal).pivot(index="method", columns="metric", values="value")
              .loc[list(logits)].reset_index())
    cal_df = cal_df[["method", "accuracy", "ece", "nll"]].rename(
        columns={"ece": f"ECE ({args.num_bins} bins)", "nll": "NLL (nats)"})
    counts = {m: reliability_bins(p, data.y_test, args.num_bins).counts.tolist()
              for m, p in probs.items()}
    table = rotated_digit_table(res)
    table["angle_deg"] = [f"{a:g}" for a in table["angle_deg"]]
    total = time.perf_counter() - t_start
    lines = [
        f"# Dropout LeNet: rotated digit and calibration ({dataset})",
        "",
        f"- data: {data.description}",
        f"- model: LeNet conv(5x5,20)-ReLU-pool-conv(5x5,50)-ReLU-pool-FC500-ReLU-"
        f"Dropout(drop_rate={drop_rate:g})-FC{data.num_classes}, {data.image_size}x"
        f"{data.image_size} inputs",
        f"- training: Adam lr={args.lr:g}, weight_decay={args.weight_decay:g}, batch "
        f"{args.batch_size}, {args.epochs} epochs, seed {args.seed}; final training loss "
        f"{hist.epoch_losses[-1]:.4f}",
        f"- MC dropout: T = {args.num_samples} samples (masks of the last layer only; the conv "
        f"body is deterministic); rotated image: test row {row} (digit {args.digit}, occurrence "
        f"{args.digit_index})",
        f"- wall time: training {hist.wall_time_s:.1f} s, prediction {t_predict:.1f} s, total "
        f"{total:.1f} s (torch threads: {torch.get_num_threads()})",
        "",
        f"## Calibration on the test split ({len(data.y_test)} images)",
        "",
        _markdown(cal_df),
        "",
        "Examples per confidence bin (low to high): "
        + "; ".join(f"{m} {c}" for m, c in counts.items()),
        "",
        f"## Rotated digit {args.digit} (entropies and MI in nats)",
        "",
        _markdown(table, ".3f"),
    ]
    text = "\n".join(lines)
    md_path = atomic_write_text(out / "summary.md", text + "\n")
    print(text)
    print("\noutputs:")
    for p in (fig_path, rel_path, rot_csv, cal_csv, md_path):
        print(f"  {p}")
    return 0
