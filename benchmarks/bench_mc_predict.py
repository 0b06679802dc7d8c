"""Benchmark: vectorised, chunked :func:`vi_dropout.predict.mc_predict` vs a Python loop of T passes.

A UCI test set (default kin8nm split 0: 819 rows x 8 inputs), a 8 -> 50 -> 1 ReLU net with
Glorot-uniform weights, keep_prob 0.9 / 0.95 / 0.99 / 0.995, inverted dropout, T = 10,000.

Usage::

    python benchmarks/bench_mc_predict.py
    python benchmarks/bench_mc_predict.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparisons.uci_datasets import load_uci, standardize  # noqa: E402
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="kin8nm")
    ap.add_argument("--T", type=int, default=10_000)
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--keep-probs", default="0.9,0.95,0.99,0.995",
                    help="comma list: one row per keep_prob (the UCI grid's drop rates are "
                         "0.005-0.1)")
    ap.add_argument("--max-rows", type=int, default=16384)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for BOTH methods (1: no oversubscription on shared cores)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--quick", action="store_true", help="T = 200, one repeat")
    a = ap.parse_args(argv)
    if a.quick:
        a.T, a.repeats = 200, 1
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    x = torch.tensor(_load_uci_test(a.dataset, 0), dtype=dtype)
    arch = Architecture((x.shape[1], a.hidden, 1))
    ws, bs = arch.init_params(generator=torch.Generator().manual_seed(0), dtype=dtype)
    bs = [0.1 * torch.randn(b.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
          for b in bs]

    def best(f):
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            r = f()
            times.append(time.perf_counter() - t0)
        return min(times), r

    print(f"\n{a.dataset} split 0 test set: N = {x.shape[0]}, {x.shape[1]} -> {a.hidden} -> 1 ReLU, "
          f"inverted dropout, T = {a.T}, {a.dtype}, {torch.get_num_threads()} threads, "
          f"best of {a.repeats}; both methods timed side by side in this run\n")
    print("| keep_prob | Python loop of T passes (s) | mc_predict (s) | speed-up | "
          "max abs diff of MC means |")
    print("|---|---|---|---|---|")
    for kp in (float(v) for v in a.keep_probs.split(",")):
        t_loop, s_loop = best(lambda kp=kp: _loop(x, ws, bs, kp, a.T,
                                            torch.Generator().manual_seed(0), a.progress))
        t_vec, s_vec = best(lambda kp=kp: mc_predict(x, ws, bs, kp, a.T, inverted=True,
                                               generator=torch.Generator().manual_seed(0),
                                               max_rows=a.max_rows, progress=a.progress))
        gap = float((s_loop.mean(0) - s_vec.mean(0)).abs().max())
        print(f"| {kp} | {t_loop:.3f} | {t_vec:.3f} | {t_loop / t_vec:.1f}x | {gap:.1e} |")
    print("\nThe loop draws dense Bernoulli masks (torch.bernoulli) and runs mlp_forward per sample;"
          "\nmc_predict draws only the dropped positions (vi_dropout.drop_stream) in chunks of"
          f"\n{a.max_rows} rows. The two use different random streams: the MC means differ by MC"
          "\nerror only.")


if __name__ == "__main__":
    main()
