"""Benchmark: plain nn.Module training loop vs :func:`vi_dropout.training.batched.train_batched`.

Boston housing, 13 -> 50 -> 1 ReLU, the paper's grid (dropout rates x tau values) x all splits,
Keras 2.2 defaults (Adam 1e-3, batch 128, L2 l^2 keep_prob / (2 N tau), l = 1e-2).

(a) a few nets trained one by one with a plain ``nn.Sequential`` + ``nn.Dropout`` +
    ``torch.optim.Adam`` loop (torch's default threads);
(b) the whole grid with ``train_batched``, split over ``--processes`` worker processes with one
    thread each (and, for reference, in this process alone with ``--single-too``).

Usage::

    python benchmarks/bench_train.py            # 400 epochs, full grid
    python benchmarks/bench_train.py --quick    # tiny smoke run (2 epochs, 1 split, 1 process)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparisons.datasets.uci import load_uci, standardize, uci_info  # noqa: E402
from vi_dropout.infer.elbo import weight_decay  # noqa: E402
from vi_dropout.predict import standard_dropout_predict  # noqa: E402
from vi_dropout.training import train_batched  # noqa: E402


def _load(name: str, split: int):
    """Standardised train/test arrays of one split, from the package's own copy of the data."""
    sp = load_uci(name, split)
    st = standardize(sp)
    return st.x_train, st.y_train, st.x_test, sp.y_test, float(st.y_mean), float(st.y_std)


def _plain_train(x, y, drop_rate, reg, epochs, seed):
    """What a user writes: nn.Sequential with nn.Dropout, torch.optim.Adam, manual minibatches."""
    torch.manual_seed(seed)
    q = x.shape[1]
    net = nn.Sequential(
        nn.Dropout(drop_rate), nn.Linear(q, 50), nn.ReLU(), nn.Dropout(drop_rate), nn.Linear(50, 1)
    ).to(x.dtype)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        for s in range(0, n, 128):
            idx = perm[s : s + 128]
            loss = nn.functional.mse_loss(net(x[idx]), y[idx]) + reg * (
                net[1].weight.square().sum() + net[4].weight.square().sum()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [net[1].weight.detach(), net[4].weight.detach()], [net[1].bias.detach(), net[4].bias.detach()]


def _worker_init():
    torch.set_num_threads(1)


def _train_chunk(args):
    x, y, kps, regs, seeds, epochs = args
    t0 = time.perf_counter()
    r = train_batched(x, y, kps, regs, seeds, epochs=epochs)
    return r, time.perf_counter() - t0


def _noop(_):
    return torch.get_num_threads()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="bostonHousing")
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--splits", type=int, default=None, help="number of splits (default: all)")
    ap.add_argument("--plain-nets", type=int, default=4, help="nets trained by the plain loop")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--single-too", action="store_true", help="also time batched in-process")
    ap.add_argument("--quick", action="store_true", help="tiny run: 2 epochs, 1 split, 1 plain net, 1 worker process")
    a = ap.parse_args(argv)
    if a.quick:
        a.epochs, a.splits, a.plain_nets, a.processes = 2, 1, 1, 1
    dtype = getattr(torch, a.dtype)
    info = uci_info(a.dataset)
    rates, taus, n_splits = info.dropout_rates, info.tau_values, info.n_splits
    n_splits = min(n_splits, a.splits or n_splits)

    # Build the grid: every (split, rate, tau) is one network with its own data and seed.
    configs, xs, ys, tests = [], [], [], []
    for k in range(n_splits):
        x_tr, y_tr, x_te, y_te, ym, ysd = _load(a.dataset, k)
        tests.append((torch.tensor(x_te, dtype=dtype), torch.tensor(y_te, dtype=dtype), ym, ysd))
        for rate in rates:
            for tau in taus:
                kp = 1.0 - rate
                configs.append((k, rate, tau, kp, weight_decay(1e-2, kp, len(x_tr), tau)))
                xs.append(torch.tensor(x_tr, dtype=dtype))
                ys.append(torch.tensor(y_tr, dtype=dtype))
    E = len(configs)
    if len({x.shape[0] for x in xs}) != 1:
        raise SystemExit("splits have different training sizes; group them (one call per size)")
    X, Y = torch.stack(xs), torch.stack(ys)
    seeds = list(range(E))

    def rmse(idx, w, b):
        k, rate = configs[idx][0], configs[idx][1]
        xte, yte, ym, ysd = tests[k]
        pred = standard_dropout_predict(xte, w, b, 1.0 - rate, inverted=True)
        return float(((ym + ysd * pred - yte) ** 2).mean().sqrt())

    # (a) plain loop, with torch's default threads and with one thread (tiny tensors: often faster).
    n_plain = min(a.plain_nets, E)
    default_threads = torch.get_num_threads()
    plain_times = {}
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        plain_rmse = []
        for i in range(n_plain):
            w, b = _plain_train(X[i], Y[i], configs[i][1], configs[i][4], a.epochs, seed=i)
            plain_rmse.append(rmse(i, w, b))
        plain_times[threads] = (time.perf_counter() - t0) / n_plain
    torch.set_num_threads(default_threads)
    t_plain = min(plain_times.values())  # the speed-up is quoted against the FASTER plain loop

    # (b) batched over processes (pool started and warmed before timing).
    chunks = np.array_split(np.arange(E), a.processes)
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(a.processes, mp_context=ctx, initializer=_worker_init) as pool:
        list(pool.map(_noop, range(a.processes)))
        t0 = time.perf_counter()
        jobs = [
            (X[c], Y[c], [configs[i][3] for i in c], [configs[i][4] for i in c], [seeds[i] for i in c], a.epochs)
            for c in chunks
        ]
        results = list(pool.map(_train_chunk, jobs))
        t_batched_wall = time.perf_counter() - t0
    t_batched = t_batched_wall / E
    batched_rmse = []
    for c, (r, _) in zip(chunks, results):
        for j, i in enumerate(c):
            batched_rmse.append(rmse(i, [w[j] for w in r.weights], [b[j] for b in r.biases]))
    n_div = sum(int(r.diverged.sum()) for r, _ in results)

    rows = [
        (f"plain nn.Module loop (torch.optim.Adam), {th} thread(s)", n_plain, th, 1, tp * n_plain,
         tp, t_plain / tp)
        for th, tp in plain_times.items()
    ] + [
        (f"train_batched, {a.processes} proc x 1 thread", E, 1, a.processes, t_batched_wall,
         t_batched, t_plain / t_batched),
    ]
    if a.single_too:
        t0 = time.perf_counter()
        train_batched(X, Y, [c[3] for c in configs], [c[4] for c in configs], seeds, epochs=a.epochs)
        tw = time.perf_counter() - t0
        rows.append((f"train_batched, 1 proc x {torch.get_num_threads()} threads", E,
                     torch.get_num_threads(), 1, tw, tw / E, t_plain * E / tw))

    print(f"\n{a.dataset}: {n_splits} splits x {len(rates)} dropout rates x {len(taus)} taus = "
          f"{E} nets, N = {X.shape[1]}, 13 -> 50 -> 1, {a.epochs} epochs, {a.dtype}\n")
    print("| method | nets | threads | processes | wall (s) | s / net | speed-up per net "
          "(vs the faster plain loop) |")
    print("|---|---|---|---|---|---|---|")
    for name, n, th, pr, wall, per, sp in rows:
        print(f"| {name} | {n} | {th} | {pr} | {wall:.2f} | {per:.4f} | {sp:.1f}x |")
    print(f"\nsanity: test RMSE (standard dropout, original scale) of the first {n_plain} nets: "
          f"plain {np.mean(plain_rmse):.3f}, batched {np.mean(batched_rmse[:n_plain]):.3f}; "
          f"batched mean over all {E}: {np.mean(batched_rmse):.3f}; diverged: {n_div}")


if __name__ == "__main__":
    main()
