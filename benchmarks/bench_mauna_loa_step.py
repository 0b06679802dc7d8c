"""Benchmark: where one training step of the Mauna Loa network goes, and what two processes buy.

The network of Figure 2 (4 hidden layers of 1024 units, drop rate 0.2, the first layer's input
not dropped) on the Mauna Loa training weeks (1599, batch 128), trained as
:func:`comparisons.training.dropout_regressor.fit_dropout_regressor` trains it.

(a) One step split into its phases, timed one by one (``--steps`` steps after 2 warm-up steps,
    median ms), for float32 / float64 x 1 / 2 torch threads, and float32 with Adam's fused
    kernel (``--fused-adam``: other rounding, so other numbers than the default's):

    - ``masks``: the minibatch's row indices (a ``randperm`` per epoch) and its Bernoulli block
      of masks, ``B x (1 + 4 x 1024)`` draws;
    - ``forward``: the masked forward pass and the loss with its L2 penalty (3 products of
      ``128 x 1024`` by ``1024 x 1024``);
    - ``backward``: autograd (twice the forward's products);
    - ``optimizer``: ``zero_grad`` and Adam's update of 3.15 M parameters.

(b) Whole training steps of the ReLU and the tanh network (``fit_dropout_regressor``, float32):
    one after the other in one process with 1 thread (the default before) and with 2 threads,
    and side by side in two processes with 1 thread each (``run(..., workers=2)``), with Adam's
    default and fused kernel. Reported:
    ms per step of the pair (the time of the training loops over the steps taken; for two
    processes the slower one's), the speed-up against the first row, and the wall time with
    the processes' start.

Timings on a shared machine move with its load (print ``uptime`` beside them); the ratios
measured side by side in one run are the numbers to quote. With ``--device cuda`` (a GPU) the
phases are timed with ``torch.cuda.synchronize()`` and (b) runs on the GPU.

Usage::

    python benchmarks/bench_mauna_loa_step.py              # 4 x 1024, 15-20 steps per setting
    python benchmarks/bench_mauna_loa_step.py --quick      # 1 x 64, 3 steps, (b) without the
                                                           # default-Adam two-process row
    python benchmarks/bench_mauna_loa_step.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comparisons.datasets.mauna_loa import load_mauna_loa  # noqa: E402
from comparisons.experiments.mauna_loa import MaunaLoaSettings, train_networks  # noqa: E402
from comparisons.training.dropout_regressor import (  # noqa: E402
    EpochBatches,
    initial_network,
    regularised_mse,
    resolve_device,
)
from vi_dropout.infer.elbo import weight_decay  # noqa: E402
from vi_dropout.network import Architecture  # noqa: E402

PHASES = ("masks", "forward", "backward", "optimizer")


def _phase_times(x, y, cfg: MaunaLoaSettings, reg: float, steps: int, dev: torch.device,
                 fused: bool = False) -> dict[str, float]:
    """Median ms of each phase of a step over ``steps`` steps (after 2 warm-up steps)."""
    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    widths = Architecture((1, *cfg.hidden, 1), "relu").widths
    kps = cfg.layer_keep_probs
    g = torch.Generator().manual_seed(0)
    net = initial_network(widths, kps, "relu", g, x.dtype).to(dev)
    if dev.type != "cpu":
        g = torch.Generator(device=dev).manual_seed(0)
    x, y = x.to(dev), y.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-7, fused=True if fused else None)
    col_keep = torch.tensor([kp for kp, w in zip(kps, widths[:-1]) for _ in range(w)],
                            dtype=x.dtype, device=dev)
    batches = EpochBatches(x.shape[0], cfg.batch_size, g)
    times = {p: [] for p in PHASES}
    for step in range(steps + 2):
        sync()
        t0 = time.perf_counter()
        idx = batches.next()
        z = torch.bernoulli(col_keep.expand(len(idx), -1), generator=g)
        sync()
        t1 = time.perf_counter()
        loss = regularised_mse(net, net(x[idx], z), y[idx], reg)
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t3 = time.perf_counter()
        opt.step()
        sync()
        t4 = time.perf_counter()
        if step >= 2:
            for p, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[p].append(1000 * dt)
    return {p: statistics.median(v) for p, v in times.items()}


def _pair_times(cfg: MaunaLoaSettings, data, workers: int, threads: int) -> tuple[float, float]:
    """(ms per step of the pair of networks, wall seconds with the processes' start)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        fits = train_networks(data, cfg, ("mc_dropout_relu", "mc_dropout_tanh"),
                              workers=workers)
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous)
    loops = [f.call_time_s for f in fits.values()]
    loop_s = max(loops) if workers == 2 else sum(loops)
    return 1000 * loop_s / cfg.iterations, wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per setting in (a)")
    parser.add_argument("--pair-steps", type=int, default=20,
                        help="steps per network in (b)")
    parser.add_argument("--quick", action="store_true",
                        help="1 x 64 units, 3 steps, one two-process row: smoke run")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    dev = resolve_device(args.device)
    layers, units = (1, 64) if args.quick else (4, 1024)
    steps, pair_steps = (3, 5) if args.quick else (args.steps, args.pair_steps)
    data = load_mauna_loa()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"# Mauna Loa training step: {layers} x {units} units, batch 128, {data.num_train} "
          f"training weeks, device {name}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")

    print(f"## (a) one step by phase (median ms over {steps} steps)\n")
    print("| dtype | threads | Adam | masks | forward | backward | optimizer | step | "
          "matmuls share |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = MaunaLoaSettings(hidden_layers=layers, hidden_units=units)
    reg = weight_decay(base.prior_length_scale, base.keep_prob, data.num_train, base.tau)
    previous = torch.get_num_threads()
    steps_ms = {}
    settings = [("float32", 1, False), ("float32", 2, False), ("float64", 1, False),
                ("float64", 2, False), ("float32", 1, True)]
    for dtype, threads, fused in settings:
        x, y = data.xy("train", dtype=getattr(torch, dtype))
        torch.set_num_threads(threads)
        t = _phase_times(x, y, base, reg, steps, dev, fused)
        total = sum(t.values())
        steps_ms[dtype, threads, fused] = total
        print(f"| {dtype} | {threads} | {'fused' if fused else 'default'} | {t['masks']:.2f} | "
              f"{t['forward']:.2f} | {t['backward']:.2f} | {t['optimizer']:.2f} | {total:.2f} | "
              f"{(t['forward'] + t['backward']) / total:.0%} |")
    torch.set_num_threads(previous)
    ref = steps_ms["float64", 1, False]
    print("\nspeed-up against float64, 1 thread: "
          + ", ".join(f"{d} x {n} thread(s){', fused Adam' if f else ''} {ref / ms:.2f}x"
                      for (d, n, f), ms in steps_ms.items()))

    print(f"\n## (b) ReLU and tanh networks, {pair_steps} steps each (float32, {args.device})\n")
    print("| networks | processes x threads | Adam | ms per step (pair) | speed-up | "
          "wall s (with start) |")
    print("|---|---|---|---|---|---|")
    rows = [("one after the other", 1, 1, False), ("one after the other", 1, 2, False),
            ("side by side", 2, 1, False), ("one after the other", 1, 1, True),
            ("side by side", 2, 1, True)]
    if args.quick:  # a smoke run: one two-process row (its pool start is most of the run)
        rows.remove(("side by side", 2, 1, False))
    first = None
    for label, workers, threads, fused in rows:
        cfg = MaunaLoaSettings(hidden_layers=layers, hidden_units=units, iterations=pair_steps,
                               device=args.device, fused_adam=fused)
        ms, wall = _pair_times(cfg, data, workers, threads)
        first = first or ms
        print(f"| {label} | {workers} x {threads} | {'fused' if fused else 'default'} | "
              f"{ms:.1f} | {first / ms:.2f}x | {wall:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
