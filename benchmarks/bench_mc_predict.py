"""Benchmark: vectorised, chunked :func:`vi_dropout.predict.mc_predict` vs Python loops of T passes.

UCI test sets (default: Boston 51 rows, Concrete 103, kin8nm 819, Protein 4573; split 0), a
Q -> 50 -> 1 ReLU net with Glorot-uniform weights, keep_prob 0.9 / 0.95 / 0.99 / 0.995 (the
UCI grid's drop rates), inverted dropout, T = 10,000, one torch thread for every method.

Two loops, both timed: what a user writes (an ``nn.Sequential`` with ``nn.Dropout`` in train
mode called T times under ``torch.no_grad``) and a lean functional loop (``torch.bernoulli``
masks and ``mlp_forward``). The speed-up is against the FASTER of the two, per row; the last
line sums every row's time (the speed-up of a whole protocol that predicts on all these sets).

Usage::

    python benchmarks/bench_mc_predict.py
    python benchmarks/bench_mc_predict.py --datasets kin8nm --keep-probs 0.9
    python benchmarks/bench_mc_predict.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparisons.datasets.uci import load_uci, standardize  # noqa: E402
from vi_dropout.network import Architecture, mlp_forward  # noqa: E402
from vi_dropout.predict import mc_predict  # noqa: E402


def _load_uci_test(name: str, split: int) -> np.ndarray:
    """The standardised test inputs of one UCI split (the package's own copy of the data)."""
    return standardize(load_uci(name, split)).x_test


def _loop(x, ws, bs, keep_prob, T, generator, progress):
    """The naive reference: T forward passes, fresh Bernoulli masks each time."""
    out = []
    for _ in tqdm(range(T), disable=not progress, desc="loop", leave=False):
        masks = [
            torch.bernoulli(torch.full((x.shape[0], w.shape[1]), keep_prob, dtype=x.dtype),
                            generator=generator) / keep_prob
            for w in ws
        ]
        out.append(mlp_forward(x, ws, bs, "relu", masks))
    return torch.stack(out)


def _module_loop(x, ws, bs, keep_prob, T, progress):
    """What a user writes: an nn.Module with nn.Dropout in train mode, called T times."""
    q, h = ws[0].shape[1], ws[0].shape[0]
    net = nn.Sequential(nn.Dropout(1 - keep_prob), nn.Linear(q, h), nn.ReLU(),
                        nn.Dropout(1 - keep_prob), nn.Linear(h, ws[1].shape[0])).to(x.dtype)
    with torch.no_grad():
        net[1].weight.copy_(ws[0]), net[1].bias.copy_(bs[0])
        net[4].weight.copy_(ws[1]), net[4].bias.copy_(bs[1])
        net.train()
        return torch.stack([net(x) for _ in tqdm(range(T), disable=not progress, desc="module",
                                                 leave=False)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="bostonHousing,concrete,kin8nm,protein-tertiary-structure",
                    help="comma list of UCI data sets (split 0 test inputs)")
    ap.add_argument("--T", type=int, default=10_000)
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--keep-probs", default="0.9,0.95,0.99,0.995",
                    help="comma list: one row per keep_prob (the UCI grid's drop rates are "
                         "0.005-0.1)")
    ap.add_argument("--max-rows", type=int, default=16384)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for BOTH methods (1: no oversubscription on shared cores)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--quick", action="store_true", help="T = 200, one repeat, Boston only")
    a = ap.parse_args(argv)
    if a.quick:
        a.T, a.repeats, a.datasets = 200, 1, "bostonHousing"
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    keep_probs = [float(v) for v in a.keep_probs.split(",")]

    def best(f):
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            r = f()
            times.append(time.perf_counter() - t0)
        return min(times), r

    print(f"\nsplit 0 test sets, Q -> {a.hidden} -> 1 ReLU, inverted dropout, T = {a.T}, {a.dtype}, "
          f"{torch.get_num_threads()} thread(s), best of {a.repeats}; all methods timed side by "
          f"side in this run\n")
    print("| data set | N | keep_prob | nn.Module loop (s) | functional loop (s) | mc_predict (s) | "
          "speed-up | max abs diff of MC means |")
    print("|---|---|---|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for name in a.datasets.split(","):
        x = torch.tensor(_load_uci_test(name, 0), dtype=dtype)
        arch = Architecture((x.shape[1], a.hidden, 1))
        ws, bs = arch.init_params(generator=torch.Generator().manual_seed(0), dtype=dtype)
        bs = [0.1 * torch.randn(b.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
              for b in bs]
        # Warm-up (first-call allocations and dispatch caches) outside the timings.
        _module_loop(x, ws, bs, keep_probs[0], 10, False)
        _loop(x, ws, bs, keep_probs[0], 10, torch.Generator().manual_seed(0), False)
        mc_predict(x, ws, bs, keep_probs[0], 10, inverted=True)
        set_totals = [0.0, 0.0]
        for kp in keep_probs:
            torch.manual_seed(0)
            t_mod, _ = best(lambda kp=kp, x=x, ws=ws, bs=bs: _module_loop(x, ws, bs, kp, a.T, a.progress))
            t_loop, s_loop = best(lambda kp=kp, x=x, ws=ws, bs=bs: _loop(x, ws, bs, kp, a.T,
                                                torch.Generator().manual_seed(0), a.progress))
            t_vec, s_vec = best(lambda kp=kp, x=x, ws=ws, bs=bs: mc_predict(x, ws, bs, kp, a.T, inverted=True,
                                                   generator=torch.Generator().manual_seed(0),
                                                   max_rows=a.max_rows, progress=a.progress))
            gap = float((s_loop.mean(0) - s_vec.mean(0)).abs().max())
            faster = min(t_mod, t_loop)
            totals[0] += faster
            totals[1] += t_vec
            set_totals[0] += faster
            set_totals[1] += t_vec
            print(f"| {name} | {x.shape[0]} | {kp} | {t_mod:.3f} | {t_loop:.3f} | {t_vec:.3f} | "
                  f"{faster / t_vec:.1f}x | {gap:.1e} |")
        if len(keep_probs) > 1:
            print(f"| {name}, these keep_probs summed | {x.shape[0]} | | | {set_totals[0]:.3f} "
                  f"(faster loop) | {set_totals[1]:.3f} | {set_totals[0] / set_totals[1]:.1f}x | |")
    print(f"| **all rows** | | | | {totals[0]:.3f} (faster loop) | {totals[1]:.3f} | "
          f"{totals[0] / totals[1]:.1f}x | |")
    print("\nmc_predict draws only the dropped positions (vi_dropout.drop_stream) in chunks of"
          f"\n{a.max_rows} rows; the loops draw dense Bernoulli masks. Different random streams: the"
          "\nMC means differ by MC error only.")


if __name__ == "__main__":
    main()
