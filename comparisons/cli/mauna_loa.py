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
panels), ``report.md`` (settings, tables, timings), ``records.csv`` (tidy records), ``fit.csv``
(steps, stopping, train RMSE, seasonal check, device), ``losses.csv`` and ``losses.png`` (loss
curves) and ``predictions.npz`` (query times, predictive means and sds in ppm); every file is
written atomically.

Long runs: the networks are checkpointed every ``--checkpoint-every`` seconds (default 300) and
at the end, under ``--checkpoint-dir`` (default ``<out>/checkpoints``); the same command with
``--resume`` continues them bit for bit (a larger ``--iterations`` extends a finished run;
other network settings are refused, naming them). ``--stop-window W --stop-tolerance R`` stop a
network once its loss stops improving
(:class:`~comparisons.training.stopping.StoppingRule`), ``--iterations`` being the step
budget. ``--workers 2`` trains the ReLU and the tanh network side by side in two processes
(``--threads`` torch threads each), ``--device cuda`` on a GPU (CPU and CUDA runs draw different
random numbers; the report names the device of every number). ``--compare-records
LABEL=CSV`` puts an earlier run's table beside this run's in ``report.md``.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="python -m comparisons")
    >>> sub = parser.add_subparsers(dest="command", required=True)
    >>> _ = add_parser(sub)
    >>> args = parser.parse_args(["mauna-loa", "--out", "/tmp/ml", "--iterations", "20"])
    >>> run(args)  # doctest: +SKIP
    0
    >>> args = parser.parse_args(["mauna-loa", "--out", "/tmp/ml", "--iterations", "1000000",
    ...                           "--stop-window", "20000", "--workers", "2", "--resume"])
"""

from __future__ import annotations

import argparse
import contextlib

from comparisons.cli.types import (
    add_keep_prob_argument,
    add_out_argument,
    add_seed_argument,
    add_threads_argument,
    check_fits_in_memory,
    float_in,
    int_at_least,
    output_dir_arg,
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
    from comparisons.experiments.mauna_loa_settings import MaunaLoaSettings

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
    p.add_argument("--net-dtype", choices=("float32", "float64"), default=d.net_dtype,
                   help=f"the networks' dtype (default {d.net_dtype})")
    p.add_argument("--fused-adam", action="store_true",
                   help="Adam's fused kernel: the optimizer step about 4x cheaper on a CPU, its "
                        "rounding (hence the numbers) differs from the default's")
    p.add_argument("--stop-window", type=int_at_least("--stop-window"), default=None,
                   help="stop a network once the mean loss of its last window of this many steps "
                        "is not lower than the best earlier window's by more than "
                        "--stop-tolerance (relative); --iterations stays the step budget "
                        "(default: no stopping rule)")
    p.add_argument("--stop-tolerance", default=None,
                   type=float_in("--stop-tolerance", 0, None, meaning="a relative improvement"),
                   help=f"relative improvement that still counts as progress (default "
                        f"{d.stop_tolerance:g}; needs --stop-window)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=d.device,
                   help="train the networks and draw their MC samples on the CPU or a CUDA GPU "
                        f"(default {d.device}; the GPs stay on the CPU)")
    p.add_argument("--workers", type=_workers_arg, default=1,
                   help="1: train the ReLU and the tanh network one after the other; 2: side by "
                        "side in two processes, --threads threads each (default 1)")
    p.add_argument("--checkpoint-dir", type=output_dir_arg("--checkpoint-dir"), default=None,
                   help="folder of the networks' checkpoints (default: OUT/checkpoints)")
    p.add_argument("--checkpoint-every", type=positive_float("--checkpoint-every"),
                   default=300.0, help="seconds between checkpoints (default 300)")
    p.add_argument("--resume", action="store_true",
                   help="continue each network from its checkpoint (bit for bit); a network "
                        "without one starts afresh")
    p.add_argument("--compare-records", metavar="LABEL=CSV", action="append", default=[],
                   type=_compare_records_arg,
                   help="an earlier run's records.csv, shown beside this run's in report.md "
                        "under LABEL (repeatable), e.g. '2500 steps=docs/mauna_loa/records.csv'")
    add_seed_argument(p, d.seed)
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _compare_records_arg(text: str):
    """argparse type of ``--compare-records``: ``LABEL=CSV`` -> ``(label, records frame)``, the
    file read and checked here, so that a bad one stops the command before any work."""
    from comparisons.report.tables import records_frame
    from comparisons.runner.records_file import read_records

    label, sep, path = text.partition("=")
    label, path = label.strip(), path.strip()
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(
            f"--compare-records must be LABEL=CSV (e.g. '2500 steps=docs/mauna_loa/records.csv'),"
            f" got {text!r}")
    if label == "this run":
        raise argparse.ArgumentTypeError(
            "--compare-records: the label 'this run' is taken by this run's records; choose "
            "another")
    try:  # the one rule for reading records back (truncation, finite values, duplicates)
        frame = read_records(path)
    except (OSError, ValueError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise argparse.ArgumentTypeError(f"--compare-records {label}: {why}") from None
    try:
        return label, records_frame(frame, f"--compare-records {label}: the records in {path}")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _workers_arg(text: str) -> int:
    """argparse type of ``--workers``: 1 or 2."""
    if text.strip() not in ("1", "2"):
        raise argparse.ArgumentTypeError(
            f"--workers must be 1 or 2 (one process per network), got {text!r}")
    return int(text)


def settings_from_args(args: argparse.Namespace):
    """Build the :class:`~comparisons.experiments.mauna_loa.MaunaLoaSettings` of parsed arguments
    (its validation raises ``ValueError`` naming the bad argument)."""
    from comparisons.experiments.mauna_loa_settings import MaunaLoaSettings

    d = MaunaLoaSettings()
    window = getattr(args, "stop_window", None)
    tolerance = getattr(args, "stop_tolerance", None)
    if tolerance is not None and window is None:
        raise ValueError(f"--stop-tolerance {tolerance:g} needs --stop-window (the number of "
                         "steps whose mean loss is compared)")
    settings = MaunaLoaSettings(
        iterations=args.iterations,
        net_dtype=getattr(args, "net_dtype", d.net_dtype),
        fused_adam=bool(getattr(args, "fused_adam", False)),
        stop_window=window,
        stop_tolerance=d.stop_tolerance if tolerance is None else tolerance,
        device=getattr(args, "device", d.device),
        num_samples=args.num_samples,
        hidden_layers=args.hidden_layers,
        hidden_units=args.hidden_units,
        keep_prob=args.keep_prob,
        tau=args.tau,
        gp_iterations=args.gp_iterations,
        gp_stride=args.gp_stride,
        data_stride=args.data_stride,
        train_fraction=args.train_fraction,
        extrapolation=args.extrapolation,
        seed=args.seed,
    )
    _check_network_memory(settings, at_once=getattr(args, "workers", 1))
    return settings


#: rows of one vectorised pass of the MC draws (``mc_predict``'s ``max_rows``)
_MC_ROWS = 16384


def _check_network_memory(s, at_once: int = 1) -> None:
    """Refuse, before any work, networks that cannot fit in the memory of their device: one line
    naming the need (a lower estimate: weights, gradients and Adam's two moments, plus one
    minibatch's and one MC pass's activations, times the ``at_once`` networks trained side by
    side) instead of an allocator error or an OS kill."""
    width = 4 if s.net_dtype == "float32" else 8
    sizes = (1, *s.hidden, 1)
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    hidden = sum(s.hidden)
    need = at_once * width * (4 * params + 3 * s.batch_size * hidden + 2 * _MC_ROWS * max(s.hidden))
    check_fits_in_memory(
        need, f"--hidden-units {s.hidden_units} with --hidden-layers {s.hidden_layers} "
              f"({s.net_dtype}: {params:,} parameters per network"
              f"{', 2 networks at once (--workers 2)' if at_once > 1 else ''})",
        "use fewer --hidden-units or --hidden-layers", device=s.device)
    # the T function draws at every prediction time are kept (float64 on the CPU, with the
    # copies of their summaries): refuse a T that could only fail after the training
    from comparisons.datasets.mauna_loa import load_mauna_loa

    times = load_mauna_loa(s.train_fraction, s.extrapolation, s.data_stride).prediction_times(
        s.grid_step)
    check_fits_in_memory(
        3 * 8 * s.num_samples * len(times),
        f"--num-samples {s.num_samples} (function draws at {len(times):,} prediction times)",
        "use a smaller --num-samples")


def run(args: argparse.Namespace) -> int:
    """Run the experiment of parsed ``args``, write the outputs, print the report and the paths;
    returns 0.

    Raises:
        ValueError: a bad setting (e.g. ``iterations < 1`` when ``args`` did not come from the
            parser), naming the argument, the expected range and the value; ``--device cuda``
            where CUDA is not available; a checkpoint that cannot be resumed (written with other
            settings, naming them; damaged, naming the file; an unfinished one without
            ``--resume``); a ``--compare-records`` label given twice.
    """
    from pathlib import Path

    import torch

    from comparisons.experiments.mauna_loa import run as run_experiment
    from comparisons.report.mauna_loa import write_report
    from comparisons.runner.folder_lock import FolderLock
    from comparisons.training.dropout_regressor import resolve_device
    from vi_dropout.validation import check_positive_int

    settings = settings_from_args(args)
    compare = getattr(args, "compare_records", None) or []
    labels = [label for label, _ in compare]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--compare-records: each LABEL at most once, got {labels}")
    if settings.device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"--device {settings.device}: CUDA is not available on this machine "
                         f"(torch.cuda.is_available() is False, torch {torch.__version__}); use "
                         "--device cpu")
    resolve_device(settings.device)
    torch.set_num_threads(check_positive_int(getattr(args, "threads", 1), "threads"))
    checkpoint_dir = getattr(args, "checkpoint_dir", None) or Path(args.out) / "checkpoints"
    every = getattr(args, "checkpoint_every", 300.0)
    with contextlib.ExitStack() as held:
        # one run at a time in OUT and in the checkpoint folder: a second run is refused at
        # once instead of training the same networks and mixing their checkpoints and logs
        # (one lock when both name one folder, whichever way: relative, absolute, a link)
        for folder in dict.fromkeys(p.resolve() for p in (Path(args.out), Path(checkpoint_dir))):
            held.enter_context(FolderLock(folder))
        try:
            result = run_experiment(settings, progress=not args.no_progress, log=print,
                                    workers=getattr(args, "workers", 1),
                                    checkpoint_dir=checkpoint_dir, checkpoint_every=every,
                                    resume=getattr(args, "resume", False))
        except KeyboardInterrupt:
            if not any(Path(checkpoint_dir).glob("*.ckpt")):
                raise KeyboardInterrupt(
                    "interrupted before the first checkpoint: nothing to resume; the same "
                    "command starts again") from None
            raise KeyboardInterrupt(
                f"interrupted: the networks' checkpoints in {checkpoint_dir} hold their state of "
                f"at most {every:g} s ago; the same command with --resume continues from them"
            ) from None
        paths = write_report(result, args.out, compare=dict(compare))
    print(paths["report"].read_text(), end="")
    print("outputs: " + ", ".join(str(p) for p in paths.values()))
    checkpoints = [t["checkpoint"] for t in result.training.values() if t["checkpoint"]]
    if checkpoints:
        print("checkpoints (--resume continues them): " + ", ".join(checkpoints))
    return 0
