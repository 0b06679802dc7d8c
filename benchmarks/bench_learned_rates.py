"""Benchmark: wall time per split of the MC dropout grid search against one learned-rate fit.

For each data set, the same splits, one process and one thread, measured side by side in this
run (methods interleaved split by split, so a change in machine load hits all of them):

(a) ``mc_dropout``: the UCI protocol's cell (12 grid networks trained at once on 80% of the
    training rows, each scored with ``T`` samples on the validation rows, the best retrained on
    the full training split, test prediction), :func:`comparisons.protocols.uci.run_uci_cell`;
(b) ``concrete_dropout`` and ``full_elbo``: one split alone (a group of one), and the splits of
    the data set as ONE group (their shared time divided by the number of splits), as
    ``python -m comparisons uci`` runs them, :func:`comparisons.protocols.uci_concrete.
    run_concrete_uci_cells`.

Usage::

    python benchmarks/bench_learned_rates.py                      # Boston and kin8nm, x10
    python benchmarks/bench_learned_rates.py --quick                # Boston only, 2 splits
    python benchmarks/bench_learned_rates.py --datasets yacht --splits 3 --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparisons.protocols.uci import MCDropoutUCISettings, run_uci_cell, uci_cells  # noqa: E402
from comparisons.protocols.uci_concrete import (  # noqa: E402
    ConcreteUCISettings,
    concrete_uci_cells,
    run_concrete_uci_cells,
)
from comparisons.runner.executors import CellGroup  # noqa: E402


def _timed(fn, work) -> float:
    t0 = time.perf_counter()
    fn(work)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=None,
                        help="comma-separated data sets (default: bostonHousing,kin8nm; "
                             "with --quick: bostonHousing)")
    parser.add_argument("--splits", type=int, default=4, help="splits per data set (default 4)")
    parser.add_argument("--epochs-multiplier", type=float, default=10.0)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (a smoke run): epochs x0.05, T = 20, at most 2 splits, "
                             "bostonHousing only unless --datasets is given")
    args = parser.parse_args(argv)
    if args.datasets is None:
        args.datasets = "bostonHousing" if args.quick else "bostonHousing,kin8nm"
    if args.quick:
        args.epochs_multiplier, args.num_samples, args.splits = 0.05, 20, min(args.splits, 2)
    torch.set_num_threads(1)
    spec = f"0-{args.splits - 1}"
    protocol = MCDropoutUCISettings(epochs_multiplier=args.epochs_multiplier,
                           num_samples=args.num_samples)
    config = ConcreteUCISettings(epochs_multiplier=args.epochs_multiplier,
                               num_samples=args.num_samples)
    print(f"wall time per split (s), epochs x{args.epochs_multiplier:g}, T = {args.num_samples}, "
          f"{args.splits} splits, 1 process x 1 thread")
    print()
    print("| data set | mc_dropout (grid of 12) | concrete_dropout alone | concrete_dropout "
          "in a group | full_elbo alone | full_elbo in a group | speed-up grid / concrete "
          "group | speed-up grid / full_elbo group |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        grid = uci_cells([name], spec, protocol)
        learned = {m: concrete_uci_cells([name], spec, config, m)
                   for m in ("concrete_dropout", "full_elbo")}
        t_grid, t_alone = [], {m: [] for m in learned}
        for k, cell in enumerate(grid):  # interleaved split by split
            t_grid.append(_timed(run_uci_cell, cell))
            for m, cells in learned.items():
                t_alone[m].append(_timed(run_concrete_uci_cells, cells[k]))
        t_group = {m: _timed(run_concrete_uci_cells, CellGroup(tuple(cells))) / len(cells)
                   for m, cells in learned.items()}
        g = sum(t_grid) / len(t_grid)
        a = {m: sum(v) / len(v) for m, v in t_alone.items()}
        print(f"| {name} | {g:.2f} | {a['concrete_dropout']:.2f} | "
              f"{t_group['concrete_dropout']:.2f} | {a['full_elbo']:.2f} | "
              f"{t_group['full_elbo']:.2f} | {g / t_group['concrete_dropout']:.1f}x | "
              f"{g / t_group['full_elbo']:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
