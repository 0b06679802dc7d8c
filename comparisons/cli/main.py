"""Command line of the comparisons: ``python -m comparisons uci ...``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from comparisons.cli.types import (
    CLIParser,
    add_out_argument,
    add_seed_argument,
    int_at_least,
    positive_float,
    run_reporting_errors,
)

__all__ = ["main", "build_parser", "dispatch", "run_argv", "SUBCOMMAND_MODULES"]

#: methods of the ``uci`` subcommand
UCI_METHODS = ("mc_dropout", "gp")
DEBUG_HELP = "show the full traceback of an error instead of one line"

#: Subcommands that live in their own module: each module has ``add_parser(subparsers)`` and
#: ``run(args) -> int``. Imported when the parser is built, so they import heavy things lazily.
SUBCOMMAND_MODULES = {
    "gp-vs-dropout": "comparisons.cli.gp_vs_dropout",
    "rotated-digit": "comparisons.cli.rotated_digit",
    "pitfalls": "comparisons.cli.pitfalls",
    "diagnose": "comparisons.cli.diagnose",
    "mauna-loa": "comparisons.cli.mauna_loa",
    "demo": "comparisons.cli.demo",
}


class _CellDispatch:
    """Picklable ``cell -> records``: the runner of the cell's method."""

    def __init__(self, fns):
        self.fns = fns

    def __call__(self, cell):
        return self.fns[cell.method](cell)


def _uci(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from comparisons.datasets.uci import UCI_DATASETS
    from comparisons.protocols.uci import UCIProtocol, run_uci_cell, uci_cells, uci_splits
    from comparisons.report.uci import plot_split_metric, summary_markdown
    from comparisons.runner.executors import LocalExecutor, RayExecutor, run_cells
    from comparisons.runner.store import ResultsStore, atomic_write_text

    datasets = list(UCI_DATASETS) if args.dataset == "all" else args.dataset.split(",")
    protocol = UCIProtocol(epochs_multiplier=args.epochs_multiplier, num_samples=args.num_samples,
                           seed=args.seed, max_grid=args.max_grid)
    methods = args.methods
    cells, fns = [], {}
    if "mc_dropout" in methods:
        cells += uci_cells(datasets, args.splits, protocol)
        fns["mc_dropout"] = run_uci_cell
    if "gp" in methods:
        from comparisons.experiments.gp_vs_dropout import GPUCIConfig, gp_uci_cells, run_gp_uci_cell

        config = GPUCIConfig(max_fit_size=args.gp_max_fit_size)
        for name, chosen in uci_splits(datasets, args.splits).items():
            cells += gp_uci_cells([name], ",".join(map(str, chosen)), config)
        fns["gp"] = run_gp_uci_cell
    if args.executor == "ray":
        executor = RayExecutor(address=args.address, num_cpus=args.workers)
    else:
        executor = LocalExecutor(num_workers=args.workers or 1, threads_per_worker=args.threads)
    out = Path(args.out)
    # the settings that change the numbers: the store refuses to mix results of other settings
    # into the folder unless --allow-settings-change (data sets and splits may grow freely)
    settings = {"epochs_multiplier": args.epochs_multiplier, "num_samples": args.num_samples,
                "seed": args.seed, "max_grid": args.max_grid,
                "gp_max_fit_size": args.gp_max_fit_size}
    store = ResultsStore(out, settings=settings,
                         allow_settings_change=args.allow_settings_change)
    t0 = time.perf_counter()
    summary = run_cells(cells, _CellDispatch(fns), store, executor,
                        progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    paths = store.export()
    records = store.load_records()
    lines = [f"# UCI splits: MC dropout (epochs x{args.epochs_multiplier:g}, "
             f"T = {args.num_samples}) and exact GPs where run", ""]
    if len(records):  # the table and figure show this run's settings only (a cell id ends in
        # the hash of its settings); the folder may hold others after --allow-settings-change
        # the config hash does not depend on the data set or split: probe both methods once,
        # so that GP cells added to a folder of MC dropout cells (same settings) show together
        from comparisons.experiments.gp_vs_dropout import GPUCIConfig, gp_uci_cells

        probe = (uci_cells(["yacht"], "0", protocol)
                 + gp_uci_cells(["yacht"], "0", GPUCIConfig(max_fit_size=args.gp_max_fit_size)))
        hashes = {cell.cell_id.rsplit("/", 1)[-1] for cell in probe}
        mine = records["cell_id"].str.rsplit("/", n=1).str[-1].isin(hashes)
        if not mine.all():
            other = records.loc[~mine, "cell_id"].nunique()
            lines += [f"({other} cells of other settings in {out} are in records.csv, not in "
                      "this table.)", ""]
        records = records[mine]
    if len(records):
        present = set(records["metric"])
        metrics = [m for m in ("rmse", "rmse_standard", "test_ll", "coverage_95", "wall_time_s")
                   if m in present]
        lines.append(summary_markdown(records, metrics=metrics))
        fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * records["dataset"].nunique()))
        plot_split_metric(records, "test_ll", ax, show_mean=True)
        ax.set_title("test log-likelihood per split")
        fig.tight_layout()
        tmp = out / ".tmp-test_ll.png"
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        os.replace(tmp, out / "test_ll_per_split.png")
    lines += ["", f"cells: {summary.done} done, {summary.skipped} skipped (already finished), "
              f"{summary.failed} failed; this run {elapsed:.1f} s"]
    if summary.failed:
        lines.append("failed cells (see failures.json): " + ", ".join(summary.failed_cells))
    text = "\n".join(lines)
    atomic_write_text(out / "summary.md", text + "\n")
    print(text)
    print(f"outputs: {out / 'summary.md'}, {', '.join(str(p) for p in paths.values())}")
    return 1 if summary.failed else 0


def _methods_arg(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in UCI_METHODS]
    if bad or not methods:
        raise argparse.ArgumentTypeError(f"--methods must be a comma list of "
                                         f"{', '.join(UCI_METHODS)}, got {text!r}")
    return list(dict.fromkeys(methods))


def _datasets_arg(text: str) -> str:
    from comparisons.datasets.uci import resolve_uci_name

    if text.strip() == "all":
        return "all"
    names = [n.strip() for n in text.split(",")]
    try:
        for name in names:
            resolve_uci_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--dataset must name UCI data sets: {exc}") from None
    return ",".join(names)


def _splits_arg(text: str) -> str:
    from comparisons.protocols.uci import split_items

    try:
        split_items(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--splits: {exc}") from None
    return text.strip()


def _add_uci_parser(sub) -> argparse.ArgumentParser:
    from comparisons.datasets.uci import UCI_DATASETS, uci_info

    names = ", ".join(f"{n} ({uci_info(n).n_splits} splits)" for n in UCI_DATASETS)
    p = sub.add_parser(
        "uci", help="the MC dropout protocol on the standard UCI splits",
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
                   help="base epochs (40; 20 for protein) times this; the paper used 1, the "
                        "published grid-search results 100 (default: 10)")
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
                   help="comma list: mc_dropout (the protocol) and/or gp (exact arc-cosine and SE "
                        "GPs fitted by marginal likelihood, training sets up to 12,000 rows) "
                        "(default: mc_dropout)")
    p.add_argument("--gp-max-fit-size", type=int_at_least("--gp-max-fit-size"), default=3000,
                   help="GPs on larger training sets fit their hyper-parameters on a random "
                        "subset of this size, then condition exactly on all rows (default: 3000)")
    p.add_argument("--threads", type=int_at_least("--threads"), default=1,
                   help="torch threads per worker (default: 1, fastest for these small nets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser of ``python -m comparisons`` and the subcommand modules by name."""
    parser = CLIParser(prog="python -m comparisons")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_uci_parser(sub)
    modules = {name: importlib.import_module(mod) for name, mod in SUBCOMMAND_MODULES.items()}
    for module in modules.values():
        module.add_parser(sub)
    for subparser in sub.choices.values():  # --debug also after the subcommand
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help=DEBUG_HELP)
    return parser, modules


def dispatch(args: argparse.Namespace, modules: dict) -> int:
    """Run the subcommand of parsed ``args``; errors propagate (see :func:`main`)."""
    if args.command == "uci":
        return _uci(args)
    return int(modules[args.command].run(args))


def run_argv(argv) -> int:
    """Parse ``argv`` and run it with no error reporting: exceptions propagate (the ``demo``
    steps use this, so that one failed step is reported and Ctrl-C stops the whole demo)."""
    parser, modules = build_parser()
    return dispatch(parser.parse_args(argv), modules)


def main(argv=None) -> int:
    """``python -m comparisons``: parse ``argv`` and run the subcommand.

    Returns the exit code: 0, 1 if some part of the run failed (e.g. a failed cell), 2 for a
    user's error (argparse's usage and one line, or one ``error: ...`` line on stderr; with
    ``--debug`` the traceback instead), 130 after Ctrl-C.
    """
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    return run_reporting_errors(lambda: dispatch(args, modules), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
