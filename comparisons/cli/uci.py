"""The ``uci`` subcommand of ``python -m comparisons``: the MC dropout protocol
(:mod:`comparisons.protocols.uci`) and optionally exact GPs (:mod:`comparisons.protocols.uci_gp`)
on the standard UCI splits, one resumable cell per (data set, split, method).

Parses the arguments into cells, runs them with
:func:`comparisons.runner.executors.run_cells` into a
:class:`~comparisons.runner.store.ResultsStore` under ``--out`` and writes the report with
:func:`comparisons.report.uci.write_uci_report`: ``report.md`` (mean ± SE per data set and
method), ``test_ll_per_split.png``, ``records.csv`` / ``records.json`` and ``cells/``.

Usage::

    python -m comparisons uci --dataset yacht --splits 0-19 --out docs/uci/x10
    python -m comparisons uci --dataset all --methods mc_dropout,gp --workers 2 --out runs/uci

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_parser(parser.add_subparsers(dest="command"))  # doctest: +ELLIPSIS
    ArgumentParser(...)
    >>> parser.parse_args(["uci", "--dataset", "yacht", "--out", "/tmp/u"]).methods
    ['mc_dropout']
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from comparisons.cli.types import (
    add_out_argument,
    add_seed_argument,
    int_at_least,
    positive_float,
)

__all__ = ["add_parser", "run", "uci_run_cells", "run_settings", "UCIGroupKey", "CellDispatch",
           "COMMAND"]

COMMAND = "uci"


class CellDispatch:
    """Picklable ``cell -> records``: the registered runner of the cell's method (looked up by
    id where the cell runs, after loading the run's method and data files there too)."""

    def __init__(self, method_files=(), data_files=()):
        self.method_files = tuple(str(f) for f in method_files)
        self.data_files = tuple(str(f) for f in data_files)

    def __call__(self, cell):
        from comparisons.datasets.own_data import load_dataset_file
        from comparisons.protocols.registry import get_method, load_method_file

        for path in self.data_files:  # a worker process: the user's data sets registered
            load_dataset_file(path)
        for path in self.method_files:  # and the user's methods
            load_method_file(path)
        method = cell.cells[0].method if hasattr(cell, "cells") else cell.method
        return get_method(method).run_cell(cell)


def run_settings(args: argparse.Namespace):
    """The :class:`~comparisons.protocols.registry.RunSettings` of parsed ``args``."""
    from comparisons.protocols.registry import RunSettings

    return RunSettings(epochs_multiplier=args.epochs_multiplier, num_samples=args.num_samples,
                       seed=args.seed, max_grid=args.max_grid,
                       gp_max_fit_size=args.gp_max_fit_size, group_splits=args.group_splits,
                       temperature=args.temperature, ensemble_size=args.ensemble_size,
                       ensemble_epochs=args.ensemble_epochs, ensemble_lrs=args.ensemble_lrs,
                       adversarial_epsilon=args.adversarial_epsilon)


def checked_methods(args: argparse.Namespace) -> list:
    """The registered methods of ``--methods`` (after ``--method-file``), each available here.

    Raises:
        ValueError: an unknown method id, or one whose optional extra is missing (one line).
    """
    from comparisons.protocols.registry import get_method, load_method_file, method_ids

    for path in getattr(args, "method_file", None) or ():
        load_method_file(path)
    unknown = [m for m in args.methods if m not in method_ids()]
    if unknown:
        raise ValueError(f"--methods: unknown method {', '.join(map(repr, unknown))}; "
                         f"registered: {', '.join(method_ids())} (a method of your own: "
                         "--method-file FILE.py that calls register_method)")
    methods = [get_method(m) for m in args.methods]
    for method in methods:
        why = method.unavailable()
        if why:
            raise ValueError(f"--methods {method.id}: {why}")
    return methods


def uci_run_cells(args: argparse.Namespace):
    """The cells of parsed ``args`` and their runner: ``(cells, CellDispatch)``, the methods in
    the order of ``--methods`` (so a long run can put the cells it needs first)."""
    from comparisons.datasets.uci import UCI_DATASETS, check_uci_archives

    load_data_files(args)
    methods = checked_methods(args)
    datasets = list(UCI_DATASETS) if args.dataset == "all" else args.dataset.split(",")
    datasets = [_resolved(name) for name in datasets]
    check_uci_archives(datasets)  # a missing or corrupt archive: one line before any work
    settings = run_settings(args)
    cells = [cell for method in methods for cell in method.make_cells(datasets, args.splits,
                                                                      settings)]
    return cells, CellDispatch(getattr(args, "method_file", None) or (),
                               getattr(args, "data_file", None) or ())


def load_data_files(args: argparse.Namespace) -> dict[str, str]:
    """Register the data sets of ``--data-file``; returns ``{name: SHA-256 of its file}`` of
    those the run uses (recorded in the folder's settings: a changed file is not mixed with
    the old one's results)."""
    from comparisons.datasets.own_data import load_dataset_file
    from comparisons.datasets.uci import own_datasets

    names = [load_dataset_file(path) for path in getattr(args, "data_file", None) or ()]
    return {name: sha for name, sha in own_datasets().items() if name in names}


def _resolved(name: str) -> str:
    from comparisons.datasets.uci import resolve_uci_name

    try:
        return resolve_uci_name(name)
    except ValueError as exc:
        raise ValueError(f"--dataset: {exc} (a data set of your own: --data-file FILE)") \
            from None


class UCIGroupKey:
    """The ``group_by`` key of :func:`~comparisons.runner.executors.run_cells` (picklable): the
    registered ``group_key`` of the cell's method (MC dropout: chunks of ``group_splits`` splits
    of a data set, none when 1; the learned-rate protocol, mean-field VI and deep ensembles: the
    splits of one data set and settings as one batched fit); ``None`` (alone) for the others."""

    def __init__(self, settings=None):
        from comparisons.protocols.registry import RunSettings

        self.settings = settings if settings is not None else RunSettings()

    def __call__(self, cell):
        from comparisons.protocols.registry import get_method

        method = get_method(cell.method)
        return None if method.group_key is None else method.group_key(cell, self.settings)


def _protocol(args):
    from comparisons.protocols.uci import MCDropoutUCISettings

    return MCDropoutUCISettings(epochs_multiplier=args.epochs_multiplier, num_samples=args.num_samples,
                       seed=args.seed, max_grid=args.max_grid)


def _executor(args):
    from comparisons.runner.executors import LocalExecutor, RayExecutor

    if args.executor == "ray":
        return RayExecutor(address=args.address, num_cpus=args.workers)
    return LocalExecutor(num_workers=args.workers or 1, threads_per_worker=args.threads)


def _this_run_records(records, args, out: Path):
    """The records of this run's settings (a cell id ends in the hash of its settings; the folder
    may hold others after --allow-settings-change) and the note on the others, if any."""
    from comparisons.protocols.registry import get_method, method_ids

    if not len(records):
        return records, []
    # the config hash does not depend on the data set or split: probe every registered method
    # once, so that cells of other methods added to the folder (same settings) show together
    settings = run_settings(args)
    probe = []
    for method_id in method_ids():
        method = get_method(method_id)
        if method.unavailable() is None:
            probe += method.make_cells(["yacht"], "0", settings)
    hashes = {cell.cell_id.rsplit("/", 1)[-1] for cell in probe}
    mine = records["cell_id"].str.rsplit("/", n=1).str[-1].isin(hashes)
    note = []
    if not mine.all():
        other = records.loc[~mine, "cell_id"].nunique()
        note = [f"({other} cells of other settings in {out} are in records.csv, not in "
                "this table.)", ""]
    return records[mine], note


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the cells of ``args`` into ``--out``, write the report, print it and the
    output paths.

    Returns:
        0, or 1 if some cell failed (see ``failures.json``).
    """
    from comparisons.report.uci import write_uci_report
    from comparisons.runner.executors import run_cells
    from comparisons.runner.store import ResultsStore

    cells, dispatch = uci_run_cells(args)
    own_data = load_data_files(args)
    out = Path(args.out)
    # the settings that change the numbers: the store refuses to mix results of other settings
    # into the folder unless --allow-settings-change (data sets and splits may grow freely)
    settings = {"epochs_multiplier": args.epochs_multiplier, "num_samples": args.num_samples,
                "seed": args.seed, "max_grid": args.max_grid,
                "gp_max_fit_size": args.gp_max_fit_size}
    # recorded when not the default, so folders made before these options stay resumable
    for name, default in (("group_splits", 1), ("temperature", 0.1), ("ensemble_size", 5),
                          ("ensemble_epochs", 40),
                          ("ensemble_lrs", (0.1, 0.01, 0.001)), ("adversarial_epsilon", None)):
        value = getattr(args, name)
        if value != default:  # as JSON reads it back (a tuple comes back a list)
            settings[name] = list(value) if isinstance(value, tuple) else value
    executor = _executor(args)  # a Ray --address that does not answer: before the folder is made
    if own_data:  # a data set of your own: its file's SHA-256 (recorded only then, so folders
        settings["data_files"] = own_data  # of the standard data sets stay resumable)
    store = ResultsStore(out, settings=settings,
                         allow_settings_change=args.allow_settings_change)
    t0 = time.perf_counter()
    with store.lock():  # held through the export and the report, not only the cells
        summary = run_cells(cells, dispatch, store, executor,
                            progress=not args.no_progress, group_by=UCIGroupKey(run_settings(args)))
        elapsed = time.perf_counter() - t0
        exported = store.export()
        records, note = _this_run_records(store.load_records(), args, out)
        footer = [f"cells: {summary.done} done, {summary.skipped} skipped (already finished), "
                  f"{summary.failed} failed; this run {elapsed:.1f} s"]
        if summary.failed:
            footer.append("failed cells (see failures.json): "
                          + ", ".join(summary.failed_cells))
        paths = write_uci_report(
            records, out, title=f"UCI splits, epochs x{args.epochs_multiplier:g}, T = "
            f"{args.num_samples}: every method run into this folder",
            preamble=note, footer=footer)
    print(paths["report"].read_text(encoding="utf-8"), end="")
    print(f"outputs: {paths['report']}, {', '.join(str(p) for p in exported.values())}")
    return 1 if summary.failed else 0


def _methods_arg(text: str) -> list[str]:
    """``--methods``: a comma list of method ids (checked against the registry when the run
    starts, after ``--method-file`` registered the user's methods)."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise argparse.ArgumentTypeError(f"--methods must be a comma list of method ids, got "
                                         f"{text!r}")
    return list(dict.fromkeys(methods))


def _method_file_arg(text: str) -> str:
    path = Path(text)
    if path.suffix != ".py" or not path.is_file():
        raise argparse.ArgumentTypeError(f"--method-file must be an existing .py file, got "
                                         f"{text!r}")
    return str(path)


def _step_sizes_arg(text: str) -> tuple[float, ...]:
    parse = positive_float("--ensemble-lrs")
    values = tuple(parse(v.strip()) for v in text.split(",") if v.strip())
    if not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"--ensemble-lrs must be a comma list of distinct "
                                         f"numbers > 0, got {text!r}")
    return values


def _datasets_arg(text: str) -> str:
    """``--dataset``: ``all`` or a comma list of names (each checked when the run starts, after
    ``--data-file`` registered the user's data sets)."""
    if text.strip() == "all":
        return "all"
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"--dataset must be 'all' or a comma list of data set "
                                         f"names, got {text!r}")
    return ",".join(names)


def _data_file_arg(text: str) -> str:
    path = Path(text)
    if path.suffix.lower() not in (".npz", ".csv") or not path.is_file():
        raise argparse.ArgumentTypeError(f"--data-file must be an existing .npz or .csv file, "
                                         f"got {text!r}")
    return str(path)


def _splits_arg(text: str) -> str:
    from comparisons.datasets.split_specs import split_items

    try:
        split_items(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--splits: {exc}") from None
    return text.strip()


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``uci`` subcommand to an ``argparse`` subparsers object; returns the subparser
    (its ``func`` default is :func:`run`)."""
    from comparisons.datasets.uci import UCI_DATASETS, UCIDataError, uci_info

    try:  # a broken manifest must not break the other subcommands: `uci` reports it when run
        names = ", ".join(f"{n} ({uci_info(n).n_splits} splits)" for n in UCI_DATASETS)
    except UCIDataError:
        names = ", ".join(UCI_DATASETS)
    p = sub.add_parser(
        COMMAND, help="the MC dropout protocol on the standard UCI splits",
        description="The MC dropout protocol (and optionally exact GPs) on the standard UCI "
                    "splits. Every finished (data set, split) cell is saved under --out at once; "
                    "re-running the same command resumes.")
    p.add_argument("--dataset", type=_datasets_arg, required=True,
                   help=f"a name, a comma list or 'all'. Names: {names}; aliases such as boston, "
                        "naval, power, protein, wine are accepted. 'all' runs the nine data sets: "
                        "165 cells, about 26 min wall at the defaults on a 2-core CPU with "
                        "--workers 2")
    p.add_argument("--splits", type=_splits_arg, default="0-19",
                   help="'0-19', '0,3,5' or 'all'; ranges are clipped per data set (protein has "
                        "5 splits), a listed split runs on the data sets that have it "
                        "(default: 0-19)")
    p.add_argument("--epochs-multiplier", type=positive_float("--epochs-multiplier"),
                   default=10.0,
                   help="base epochs (40; 20 for protein) times this; the paper's Table 1 "
                        "used 10, its '10x epochs' and the published grid-search results 100 "
                        "(default: 10)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=10_000,
                   help="T, MC samples at test time (default: 10000)")
    p.add_argument("--max-grid", type=int_at_least("--max-grid"), default=None,
                   help="only the first grid points, for smoke runs (default: the whole grid)")
    add_seed_argument(p, help="seed of the initial weights and the MC masks (default: 0)")
    add_out_argument(p, help="output directory; re-running the same command resumes")
    p.add_argument("--allow-settings-change", action="store_true",
                   help="resume into an --out whose finished cells used other settings "
                        "(epochs multiplier, T, seed, max grid, GP fit size; adding --methods "
                        "or data sets is a normal resume); "
                        "default: refuse, so that results of different settings never mix")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where the cells run (default: local)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--workers", type=int_at_least("--workers"), default=None,
                   help="processes (local) or CPUs (ray) (default: 1 process; ray: every CPU)")
    p.add_argument("--methods", type=_methods_arg, default="mc_dropout",
                   help="comma list of: mc_dropout (the protocol: grid search of dropout rate "
                        "and tau), gp (exact arc-cosine and SE GPs fitted by marginal likelihood, "
                        "training sets up to 12,000 rows), concrete_dropout (keep_prob per layer "
                        "and tau learned by the ELBO through relaxed masks, theta -> 0), "
                        "full_elbo (keep_prob, theta and tau learned), mfvi (mean-field Gaussian "
                        "VI: a mean and a standard deviation per weight and bias, and tau, "
                        "learned by the ELBO), deep_ensemble (networks with mean and variance "
                        "outputs trained on the Gaussian NLL, the uniform mixture), laplace / "
                        "laplace_kfac (laplace-torch on the MAP network: last layer, full "
                        "network with KFAC; extra '.[laplace]'), or a method of your own that "
                        "--method-file registers; cells run in this order (default: mc_dropout)")
    p.add_argument("--data-file", type=_data_file_arg, action="append", default=[],
                   metavar="FILE",
                   help="a regression data set of your own, named after the file's stem for "
                        "--dataset: a .npz (x, y, optional train_K/test_K splits and "
                        "dropout_rates/tau_values grid) or a .csv (header; the target in the "
                        "last column); 20 random 90/10 splits when it has none "
                        "(comparisons.datasets.own_data); repeatable")
    p.add_argument("--method-file", type=_method_file_arg, action="append", default=[],
                   metavar="FILE.py",
                   help="a Python file that registers methods of your own "
                        "(comparisons.protocols.registry.register_method; see "
                        "examples/swag_method.py); it is imported, so it runs; repeatable")
    p.add_argument("--ensemble-size", type=int_at_least("--ensemble-size"), default=5,
                   help="networks per split of deep_ensemble (default: 5, as Lakshminarayanan "
                        "et al. 2017)")
    p.add_argument("--ensemble-epochs", type=int_at_least("--ensemble-epochs"), default=40,
                   help="epochs of every deep_ensemble member on every data set (default: 40, "
                        "the paper's; not scaled by --epochs-multiplier)")
    p.add_argument("--ensemble-lrs", type=_step_sizes_arg, default=(0.1, 0.01, 0.001),
                   help="deep_ensemble: comma list of Adam step sizes, chosen per split on the "
                        "last 20%% of the training rows (default: 0.1,0.01,0.001; one value "
                        "skips the validation fits)")
    p.add_argument("--adversarial-epsilon", type=positive_float("--adversarial-epsilon"),
                   default=None,
                   help="deep_ensemble: adversarial training (fast gradient sign) with this "
                        "step, a fraction of each input's training range (the paper: 0.01; "
                        "default: off)")
    p.add_argument("--temperature", type=positive_float("--temperature"), default=0.1,
                   help="Concrete temperature of concrete_dropout and full_elbo (default: 0.1, "
                        "as in Gal, Hron & Kendall 2017)")
    p.add_argument("--gp-max-fit-size", type=int_at_least("--gp-max-fit-size"), default=3000,
                   help="GPs on larger training sets fit their hyper-parameters on a random "
                        "subset of this size, then condition exactly on all rows (default: 3000)")
    p.add_argument("--group-splits", type=int_at_least("--group-splits"), default=1,
                   help="mc_dropout: train the pending splits of a data set in groups of this "
                        "many (every grid in one batched call; about half the time per split at "
                        "x100 on the 50-unit sets, but float32 rounding then differs from a "
                        "split run alone; default: 1, each split alone)")
    p.add_argument("--threads", type=int_at_least("--threads"), default=1,
                   help="torch threads per worker (default: 1, fastest for these small nets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p
