"""Command line of the comparisons: ``python -m comparisons uci ...``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from ._cli_types import int_at_least

__all__ = ["main", "SUBCOMMAND_MODULES"]

#: Subcommands that live in their own module: each module has ``add_parser(subparsers)`` and
#: ``run(args) -> int``. Imported when the parser is built, so they import heavy things lazily.
SUBCOMMAND_MODULES = {
    "gp-vs-dropout": "comparisons.cli_gp_vs_dropout",
    "rotated-digit": "comparisons.cli_rotated_digit",
    "pitfalls": "comparisons.cli_pitfalls",
    "diagnose": "comparisons.cli_diagnose",
    "mauna-loa": "comparisons.cli_mauna_loa",
    "demo": "comparisons.cli_demo",
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

    from .executors import LocalExecutor, RayExecutor, run_cells
    from .results_store import ResultsStore, atomic_write_text
    from .uci_datasets import UCI_DATASETS
    from .uci_protocol import UCIProtocol, run_uci_cell, uci_cells
    from .uci_summary import plot_split_metric, summary_markdown

    datasets = list(UCI_DATASETS) if args.dataset == "all" else args.dataset.split(",")
    protocol = UCIProtocol(epochs_multiplier=args.epochs_multiplier, num_samples=args.num_samples,
                           seed=args.seed, max_grid=args.max_grid)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in ("mc_dropout", "gp")]
    if bad or not methods:
        raise SystemExit(f"--methods must be a comma list of mc_dropout, gp; got {args.methods!r}")
    cells, fns = [], {}
    if "mc_dropout" in methods:
        cells += uci_cells(datasets, args.splits, protocol)
        fns["mc_dropout"] = run_uci_cell
    if "gp" in methods:
        from .gp_vs_dropout import GPUCIConfig, gp_uci_cells, run_gp_uci_cell

        cells += gp_uci_cells(datasets, args.splits,
                              GPUCIConfig(max_fit_size=args.gp_max_fit_size))
        fns["gp"] = run_gp_uci_cell
    if args.executor == "ray":
        executor = RayExecutor(address=args.address, num_cpus=args.workers)
    else:
        executor = LocalExecutor(num_workers=args.workers or 1, threads_per_worker=args.threads)
    out = Path(args.out)
    store = ResultsStore(out)
    t0 = time.perf_counter()
    summary = run_cells(cells, _CellDispatch(fns), store, executor,
                        progress=not args.no_progress)
    elapsed = time.perf_counter() - t0
    paths = store.export()
    records = store.load_records()
    lines = [f"# UCI splits: MC dropout (epochs x{args.epochs_multiplier:g}, "
             f"T = {args.num_samples}) and exact GPs where run", ""]
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comparisons")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("uci", help="the MC dropout protocol on the standard UCI splits")
    p.add_argument("--dataset", default="all", help="a name, a comma list, or 'all'")
    p.add_argument("--splits", default="0-19", help="'0-19', '0,3,5' or 'all' (clipped per data set: "
                   "protein has 5)")
    p.add_argument("--epochs-multiplier", type=float, default=10.0,
                   help="base epochs (40; 20 for protein) times this; the paper used 1, the "
                        "published grid-search results 100")
    p.add_argument("--num-samples", type=int, default=10_000, help="T, MC samples at test time")
    p.add_argument("--max-grid", type=int, default=None,
                   help="only the first grid points (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (re-running resumes)")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local instance)")
    p.add_argument("--workers", type=int, default=None, help="processes (local) or CPUs (ray)")
    p.add_argument("--methods", default="mc_dropout",
                   help="comma list: mc_dropout (the protocol) and/or gp (exact arc-cosine and SE "
                        "GPs fitted by marginal likelihood, training sets up to 12,000 rows)")
    p.add_argument("--gp-max-fit-size", type=int_at_least("--gp-max-fit-size"), default=3000,
                   help="GPs on larger training sets fit their hyper-parameters on a random "
                        "subset of this size, then condition exactly on all rows")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per worker (1: fastest for these small nets)")
    p.add_argument("--no-progress", action="store_true")
    modules = {name: importlib.import_module(mod) for name, mod in SUBCOMMAND_MODULES.items()}
    for module in modules.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "uci":
        if args.dataset == "all" and args.splits == "0-19":
            args.splits = "all"
        return _uci(args)
    if args.command in modules:
        return int(modules[args.command].run(args))
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
