"""Benchmark: the batched torch trainer against the whole training loop compiled with JAX.

The MC dropout UCI protocol trains, per data set, the grid (dropout rates x tau values) of
13 -> 50 -> 1 ReLU networks on every split with Keras 2.2's defaults (Adam 1e-3, eps 1e-7,
batch 128 with the last partial batch, L2 ``reg * (|W1|^2 + |W2|^2)``, dropout on the inputs and
the hidden layer). ``docs/benchmarks.md`` ("The limit of the x100 UCI protocol") measured the
torch trainer 29-112x above the matrix-product limit: the time goes to per-step dispatch.

Side by side, in one run, on the same networks (every split x rate x tau of the data set):

(a) :func:`vi_dropout.training.train_batched`: the project's trainer (hand-written backward,
    sparse drop stream), the whole grid in ``--processes`` worker processes of one torch thread;
(b) the same model and optimiser as ONE compiled JAX program: ``jit(vmap(train))`` over the
    networks, ``lax.scan`` over epochs and over the minibatches of an epoch, the masks from
    ``jax.random`` (another random stream than (a): the results agree in distribution, not draw
    for draw), compiled once (its compile time is printed apart).

A third row times (b) without the dropout masks: what the rest of the step costs (the masks
are ``jax.random.bernoulli`` draws, threefry counters, one 32-bit word per mask entry).

Both are checked by the mean test RMSE of standard dropout over all networks (original scale),
which must agree within the spread over networks. The ratio printed is (a)'s wall time over
(b)'s run time, both for the whole grid.

Usage::

    python benchmarks/bench_compiled_train.py               # Boston, 400 epochs, all splits
    python benchmarks/bench_compiled_train.py --quick       # tiny smoke run
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparisons.datasets.uci import load_uci, standardize, uci_info  # noqa: E402
from vi_dropout.infer.elbo import weight_decay  # noqa: E402
from vi_dropout.predict import standard_dropout_predict  # noqa: E402
from vi_dropout.training import train_batched  # noqa: E402


def _grid(dataset: str, n_splits: int):
    """Every (split, rate, tau) network: its standardised data, keep_prob and L2 factor."""
    info = uci_info(dataset)
    xs, ys, kps, regs, tests = [], [], [], [], []
    for k in range(n_splits):
        sp = load_uci(dataset, k)
        st = standardize(sp)
        for rate in info.dropout_rates:
            for tau in info.tau_values:
                kp = 1.0 - rate
                xs.append(np.asarray(st.x_train, np.float32))
                ys.append(np.asarray(st.y_train, np.float32))
                kps.append(kp)
                regs.append(weight_decay(1e-2, kp, len(st.x_train), tau))
                tests.append((np.asarray(st.x_test, np.float32), np.asarray(sp.y_test),
                              float(st.y_mean), float(st.y_std)))
    if len({x.shape[0] for x in xs}) != 1:
        raise SystemExit("splits have different training sizes; pick a data set with equal ones")
    return np.stack(xs), np.stack(ys), np.array(kps, np.float32), np.array(regs, np.float32), tests


def _rmse(tests, weights, biases, kps) -> np.ndarray:
    out = []
    for e, (x_te, y_te, ym, ysd) in enumerate(tests):
        w = [torch.as_tensor(np.asarray(v[e])) for v in weights]
        b = [torch.as_tensor(np.asarray(v[e])) for v in biases]
        pred = standard_dropout_predict(torch.as_tensor(x_te), w, b, float(kps[e]),
                                        inverted=True).numpy()
        out.append(math.sqrt(float(np.mean((ym + ysd * pred - y_te) ** 2))))
    return np.array(out)


# --------------------------------------------------------------------------- (a) torch
def _worker_init():
    torch.set_num_threads(1)


def _train_chunk(args):
    x, y, kps, regs, seeds, epochs = args
    r = train_batched(torch.as_tensor(x), torch.as_tensor(y), list(kps), list(regs), seeds,
                      epochs=epochs)
    return [w.numpy() for w in r.weights], [b.numpy() for b in r.biases]


def _noop(_):
    return torch.get_num_threads()


def run_torch(x, y, kps, regs, epochs: int, processes: int):
    if processes <= 1:  # in this process, one thread
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t0 = time.perf_counter()
            weights, biases = _train_chunk((x, y, kps, regs, list(range(len(x))), epochs))
            return weights, biases, time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
    chunks = np.array_split(np.arange(len(x)), processes)
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_init) as pool:
        list(pool.map(_noop, range(processes)))
        t0 = time.perf_counter()
        results = list(pool.map(_train_chunk, [(x[c], y[c], kps[c], regs[c], [int(i) for i in c],
                                                epochs) for c in chunks]))
        wall = time.perf_counter() - t0
    weights = [np.concatenate([r[0][i] for r in results]) for i in range(2)]
    biases = [np.concatenate([r[1][i] for r in results]) for i in range(2)]
    return weights, biases, wall


# ---------------------------------------------------------------------------- (b) JAX
def make_jax_trainer(n: int, q: int, hidden: int, epochs: int, batch: int = 128,
                     masks: str | bool = True, max_drop_rate: float = 0.1):
    """``jit(vmap(train))``: ``train(x, y, keep_prob, reg, key)`` of one network, vmapped.

    ``masks``: ``True`` (dense ``jax.random.bernoulli``), ``"sparse"`` (only the dropped
    positions, from geometric gaps, as the torch trainer's drop stream: ``K`` uniforms per step
    for the step's ``batch x (q + hidden)`` entries, ``K`` = the mean number of drops at
    ``max_drop_rate`` + 8.5 sd + 16, so that more drops than ``K`` in one step has probability
    below 1e-16) or ``False`` (no masks: not the protocol, the floor of the rest)."""
    entries = batch * (q + hidden)
    mean_drops = max_drop_rate * entries
    k_gaps = int(math.ceil(mean_drops + 8.5 * math.sqrt(mean_drops * (1 - max_drop_rate)) + 16))
    import jax
    import jax.numpy as jnp

    steps = math.ceil(n / batch)
    pad = steps * batch - n
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7

    def init(key):
        k1, k2 = jax.random.split(key)
        lim1, lim2 = math.sqrt(6.0 / (q + hidden)), math.sqrt(6.0 / (hidden + 1))
        return (jax.random.uniform(k1, (q, hidden), jnp.float32, -lim1, lim1),
                jnp.zeros(hidden, jnp.float32),
                jax.random.uniform(k2, (hidden, 1), jnp.float32, -lim2, lim2),
                jnp.zeros(1, jnp.float32))

    def loss(params, xb, yb, wb, key, kp, reg):
        w1, c1, w2, c2 = params
        if masks == "sparse":
            u = jax.random.uniform(key, (k_gaps,), jnp.float32, minval=1e-38, maxval=1.0)
            gaps = jnp.floor(jnp.log(u) / jnp.log1p(-(1.0 - kp)))
            where = (jnp.cumsum(gaps + 1.0) - 1.0).astype(jnp.int32)
            keep = jnp.ones(entries, jnp.float32).at[where].set(0.0, mode="drop") / kp
            keep = keep.reshape(batch, q + hidden)
            xb, m2 = xb * keep[:, :q], keep[:, q:]
        elif masks:
            ka, kb = jax.random.split(key)
            xb = xb * jax.random.bernoulli(ka, kp, xb.shape).astype(jnp.float32) / kp
            m2 = jax.random.bernoulli(kb, kp, (xb.shape[0], hidden)).astype(jnp.float32) / kp
        else:
            m2 = 1.0
        h = jax.nn.relu(xb @ w1 + c1) * m2
        err = (h @ w2 + c2)[:, 0] - yb
        return jnp.sum(wb * err**2) / jnp.sum(wb) + reg * (jnp.sum(w1**2) + jnp.sum(w2**2))

    grad = jax.grad(loss)

    def train(x, y, kp, reg, key):
        kinit, ktrain = jax.random.split(key)
        params = init(kinit)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

        def epoch(carry, key):
            kperm, kdrop = jax.random.split(key)
            order = jnp.concatenate([jax.random.permutation(kperm, n),
                                     jnp.zeros(pad, jnp.int32)])
            valid = jnp.concatenate([jnp.ones(n, jnp.float32), jnp.zeros(pad, jnp.float32)])
            order, valid = order.reshape(steps, batch), valid.reshape(steps, batch)
            keys = jax.random.split(kdrop, steps)

            def step(carry, inputs):
                params, m, v, t = carry
                idx, wb, k = inputs
                g = grad(params, x[idx], y[idx, 0], wb, k, kp, reg)
                t = t + 1
                m = jax.tree_util.tree_map(lambda a, b: b1 * a + (1 - b1) * b, m, g)
                v = jax.tree_util.tree_map(lambda a, b: b2 * a + (1 - b2) * b * b, v, g)
                scale = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
                params = jax.tree_util.tree_map(
                    lambda p, a, b: p - scale * a / (jnp.sqrt(b) + eps), params, m, v)
                return (params, m, v, t), None

            carry, _ = jax.lax.scan(step, carry, (order, valid, keys))
            return carry, None

        carry = (params, zeros, zeros, jnp.float32(0.0))
        carry, _ = jax.lax.scan(epoch, carry, jax.random.split(ktrain, epochs))
        return carry[0]

    return jax.jit(jax.vmap(train))


def run_jax(x, y, kps, regs, epochs: int, hidden: int = 50, masks: str | bool = True):
    import jax

    trainer = make_jax_trainer(x.shape[1], x.shape[2], hidden, epochs, masks=masks,
                               max_drop_rate=float(1.0 - kps.min()))
    keys = jax.random.split(jax.random.PRNGKey(0), len(x))
    t0 = time.perf_counter()
    compiled = trainer.lower(x, y, kps, regs, keys).compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    w1, c1, w2, c2 = jax.block_until_ready(compiled(x, y, kps, regs, keys))
    wall = time.perf_counter() - t0
    weights = [np.swapaxes(np.asarray(w1), 1, 2), np.swapaxes(np.asarray(w2), 1, 2)]
    return weights, [np.asarray(c1), np.asarray(c2)], wall, t_compile


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="bostonHousing")
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--splits", type=int, default=None, help="number of splits (default: all)")
    ap.add_argument("--processes", type=int, default=2, help="torch worker processes")
    ap.add_argument("--no-floor", action="store_true",
                    help="leave out the JAX run without masks (one compile less)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny run: 5 epochs, 2 splits, no floor row, torch in this process")
    a = ap.parse_args(argv)
    if a.quick:
        a.epochs, a.splits, a.no_floor, a.processes = 5, 2, True, 1
    info = uci_info(a.dataset)
    n_splits = min(info.n_splits, a.splits or info.n_splits)
    x, y, kps, regs, tests = _grid(a.dataset, n_splits)
    e = len(x)
    w_t, b_t, wall_t = run_torch(x, y, kps, regs, a.epochs, a.processes)
    w_j, b_j, wall_j, compile_j = run_jax(x, y, kps, regs, a.epochs)
    w_s, b_s, wall_s, compile_s = run_jax(x, y, kps, regs, a.epochs, masks="sparse")
    wall_n = None if a.no_floor else run_jax(x, y, kps, regs, a.epochs, masks=False)[2]
    r_t, r_j = _rmse(tests, w_t, b_t, kps), _rmse(tests, w_j, b_j, kps)
    r_s = _rmse(tests, w_s, b_s, kps)
    print(f"\n{a.dataset}: {n_splits} splits x {len(info.dropout_rates)} dropout rates x "
          f"{len(info.tau_values)} taus = {e} nets, N = {x.shape[1]}, {x.shape[2]} -> 50 -> 1, "
          f"{a.epochs} epochs, float32\n")
    print("| trainer | wall (s) | s / net | speed-up (torch wall / this) | test RMSE, mean (sd) |")
    print("|---|---|---|---|---|")
    where = f"{a.processes} proc x 1 thread" if a.processes > 1 else "this process, 1 thread"
    print(f"| torch train_batched, {where} | {wall_t:.2f} | "
          f"{wall_t / e:.4f} | 1.0x | {r_t.mean():.3f} ({r_t.std():.3f}) |")
    print(f"| JAX jit(vmap(scan)), 1 process (compile {compile_j:.1f} s apart) | {wall_j:.2f} | "
          f"{wall_j / e:.4f} | {wall_t / wall_j:.1f}x | {r_j.mean():.3f} ({r_j.std():.3f}) |")
    print(f"| JAX, sparse masks (geometric gaps, compile {compile_s:.1f} s apart) | {wall_s:.2f} | "
          f"{wall_s / e:.4f} | {wall_t / wall_s:.1f}x | {r_s.mean():.3f} ({r_s.std():.3f}) |")
    if wall_n is not None:
        print(f"| JAX, the same without dropout masks (not the protocol: the floor of the "
              f"rest) | {wall_n:.2f} | {wall_n / e:.4f} | {wall_t / wall_n:.1f}x | - |")
    agree = abs(r_t.mean() - r_j.mean()) <= 3 * math.hypot(r_t.std(), r_j.std()) / math.sqrt(e)
    print(f"\nmean test RMSE agree within 3 standard errors: {agree}")


if __name__ == "__main__":
    main()
