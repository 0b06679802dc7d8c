"""Benchmark: vectorised, chunked :func:`vi_dropout.predict.mc_predict` vs a Python loop of T passes.

A UCI test set (default kin8nm split 0: 819 rows x 8 inputs), a 8 -> 50 -> 1 ReLU net with
Glorot-uniform "trained-looking" weights, keep_prob 0.95, inverted dropout, T = 10,000.

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

from vi_dropout.network import Architecture, mlp_forward  # noqa: E402
from vi_dropout.predict import mc_predict  # noqa: E402


def _load_uci_test(data_dir: Path, name: str, split: int):
    """Private raw-file reader (to be replaced by ``comparisons.uci_datasets`` at merge)."""
    folder = Path(data_dir) / name
    data = np.loadtxt(folder / "data.txt")
    feat = np.loadtxt(folder / "index_features.txt", dtype=int)
    tr = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
    te = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
    x = data[:, feat]
    m, s = x[tr].mean(0), x[tr].std(0)
    s[s == 0] = 1.0
    return (x[te] - m) / s


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
    ap.add_argument("--data-dir", type=Path, default=REPO / ".." / "shared" / "data" / "uci")
    ap.add_argument("--dataset", default="kin8nm")
    ap.add_argument("--T", type=int, default=10_000)
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--keep-prob", type=float, default=0.95)
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
    x = torch.tensor(_load_uci_test(a.data_dir, a.dataset, 0), dtype=dtype)
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

    t_loop, s_loop = best(lambda: _loop(x, ws, bs, a.keep_prob, a.T,
                                        torch.Generator().manual_seed(0), a.progress))
    t_vec, s_vec = best(lambda: mc_predict(x, ws, bs, a.keep_prob, a.T, inverted=True,
                                           generator=torch.Generator().manual_seed(0),
                                           max_rows=a.max_rows, progress=a.progress))
    gap = float((s_loop.mean(0) - s_vec.mean(0)).abs().max())
    print(f"\n{a.dataset} split 0 test set: N = {x.shape[0]}, {x.shape[1]} -> {a.hidden} -> 1 ReLU, "
          f"keep_prob {a.keep_prob}, T = {a.T}, {a.dtype}, {torch.get_num_threads()} threads, "
          f"best of {a.repeats}\n")
    print("| method | time (s) | speed-up |")
    print("|---|---|---|")
    print(f"| Python loop of T passes (bernoulli + mlp_forward) | {t_loop:.3f} | 1.0x |")
    print(f"| mc_predict (vectorised, {a.max_rows} rows per chunk) | {t_vec:.3f} | "
          f"{t_loop / t_vec:.1f}x |")
    print(f"\nsanity: max |MC mean(loop) - MC mean(vectorised)| = {gap:.2e} (different random "
          f"streams; should be small)")


if __name__ == "__main__":
    main()
