"""Benchmark: one weight draw per example (PerExampleDropoutELBO) vs one per minibatch (Trace_ELBO).

On a small MLP and a small CNN (``nn.Dropout`` / ``nn.Dropout2d`` in the user's module, converted
with ``ModuleBNN`` / ``DropoutGuide``) and the same synthetic regression data:

(a) the variance of the gradient estimator of the guide's means at fixed parameters (trace of
    the covariance over ``--reps`` repetitions) for ``Trace_ELBO`` (one weight draw per
    minibatch, Monte Carlo KL), the per-example machinery with ONE mask per minibatch (analytic
    KL: isolates the effect of the masks) and ``PerExampleDropoutELBO`` (one draw per example);
(b) the time of one ``SVI`` step with ``PerExampleDropoutELBO`` (and with ``Trace_ELBO``; and
    of Pyro's PyTorch-native loop: ``PerExampleDropoutELBO()(model, guide)`` as a module with one
    ``torch.optim.Adam``, where ``SVI`` keeps one optimiser per parameter) vs one
    plain training step of the same network with its own ``nn.Dropout`` and
    ``torch.optim.Adam`` (MSE + the prior's weight decay), measured interleaved, medians.

Usage::

    python benchmarks/bench_per_example.py            # 200 repetitions, 300 timed steps
    python benchmarks/bench_per_example.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vi_dropout.forward import draw_masks  # noqa: E402
from vi_dropout.guides import DropoutGuide  # noqa: E402
from vi_dropout.infer.elbo import weight_decay  # noqa: E402
from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO  # noqa: E402
from vi_dropout.models import ModuleBNN  # noqa: E402


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 64),
                         nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 1))


def make_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Dropout2d(0.1), nn.Conv2d(8, 16, 3),
                         nn.ReLU(), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16 * 8 * 8, 32),
                         nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))


def make_data(kind: str, n: int, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, dtype=dtype, generator=g) if kind == "MLP" else torch.randn(
        n, 1, 12, 12, dtype=dtype, generator=g)
    flat = x.flatten(1)
    w = torch.randn(flat.shape[1], 1, dtype=dtype, generator=g) / flat.shape[1] ** 0.5
    y = torch.sin(3 * flat @ w) + 0.1 * torch.randn(n, 1, dtype=dtype, generator=g)
    return x, y


def _grads(guide) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in guide.parameters()])


def gradient_variance(model, guide, x, y, num_data, reps, estimator) -> float:
    """Trace of the covariance of the gradient of the guide's means over ``reps`` draws."""
    grads = []
    for _ in range(reps):
        for p in guide.parameters():
            p.grad = None
        estimator(x, y, num_data)
        grads.append(_grads(guide))
    return float(torch.stack(grads).var(0).sum())


def time_steps(steps, fns) -> list[float]:
    """Median seconds per call of each function, calls interleaved (same machine state)."""
    times = [[] for _ in fns]
    for _ in range(steps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def run_net(kind, make, a, dtype, ls, tau):
    """(a) and (b) for one network: ``((kind, variances...), (kind, times...))``."""
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    net = make().to(dtype)
    x_all, y_all = make_data(kind, a.num_data, dtype)
    x, y = x_all[: a.batch], y_all[: a.batch]
    model = ModuleBNN(net, prior_length_scale=ls, tau=tau)
    guide = DropoutGuide(model, theta=a.theta)
    per_example = PerExampleDropoutELBO(num_masks_seed=0)
    trace_elbo = Trace_ELBO()
    shared_gen = torch.Generator().manual_seed(1)

    def shared_masks(xb, yb, n):
        masks = [m.expand(xb.shape[0], *m.shape[1:]) for m in
                 draw_masks(model.layers, 1, shared_gen, xb.dtype)]
        per_example.differentiable_loss(model, guide, xb, yb, num_data=n,
                                        masks=masks).backward()

    v_trace = gradient_variance(model, guide, x, y, a.num_data, a.reps,
                                lambda xb, yb, n: trace_elbo.loss_and_grads(
                                    model, guide, xb, yb, num_data=n))
    v_shared = gradient_variance(model, guide, x, y, a.num_data, a.reps, shared_masks)
    v_per = gradient_variance(model, guide, x, y, a.num_data, a.reps,
                              lambda xb, yb, n: per_example.loss_and_grads(
                                  model, guide, xb, yb, num_data=n))
    var_row = (kind, v_trace, v_shared, v_per)

    # (b) one step each, on the same minibatches
    svi_per = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), per_example)
    svi_trace = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), trace_elbo)
    plain = make().to(dtype).train()
    covered = [plain.get_submodule(c.name) for c in model.layers]
    decays = [weight_decay(ls, c.keep_prob, a.num_data, tau) / c.keep_prob**2
              for c in model.layers]  # the prior's decay on inverted-dropout weights
    opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    perm = torch.randperm(a.num_data)
    state = {"i": 0}

    def batch():
        s = (state["i"] * a.batch) % a.num_data
        state["i"] += 1
        idx = perm[s: s + a.batch]
        return x_all[idx], y_all[idx]

    def plain_step():
        xb, yb = batch()
        loss = 0.5 * (plain(xb) - yb).square().sum(-1).mean()
        for layer, lam in zip(covered, decays):
            loss = loss + lam * layer.weight.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def per_step():
        xb, yb = batch()
        svi_per.step(xb, yb, num_data=a.num_data)

    # Pyro's PyTorch-native loop: the ELBO as a module, one torch.optim.Adam for everything
    loss_module = per_example(model, guide)
    native_opt = torch.optim.Adam(loss_module.parameters(), lr=1e-3)

    def native_step():
        xb, yb = batch()
        loss = loss_module(xb, yb, num_data=a.num_data)
        native_opt.zero_grad()
        loss.backward()
        native_opt.step()

    def trace_step():
        xb, yb = batch()
        svi_trace.step(xb, yb, num_data=a.num_data)

    fns = [plain_step, per_step, native_step, trace_step]
    time_steps(2 if a.quick else 5, fns)  # warm-up
    return var_row, (kind, *time_steps(a.steps, fns))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200, help="gradient draws per estimator")
    ap.add_argument("--steps", type=int, default=300, help="timed steps per method")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--num-data", type=int, default=1024)
    ap.add_argument("--theta", type=float, default=1e-2, help="theta of the guide")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--quick", action="store_true",
                    help="tiny run: 4 repetitions, 3 steps after 2 warm-up steps")
    a = ap.parse_args(argv)
    if a.quick:
        a.reps, a.steps = 4, 3
    dtype = getattr(torch, a.dtype)
    ls, tau = 1e-2, 10.0
    rows = [run_net(kind, make, a, dtype, ls, tau)
            for kind, make in (("MLP", make_mlp), ("CNN", make_cnn))]
    var_rows, time_rows = [r[0] for r in rows], [r[1] for r in rows]

    print(f"\nregression, N = {a.num_data}, batch {a.batch}, theta = {a.theta:g}, l = {ls:g}, "
          f"tau = {tau:g}, {a.dtype}, {torch.get_num_threads()} threads; "
          f"MLP 8 -> 64 -> 64 -> 1, CNN 1x12x12 -> conv 8 -> Dropout2d -> conv 16 -> "
          f"Dropout -> 32 -> Dropout -> 1\n")
    print(f"(a) variance of the gradient of the guide's means (trace of the covariance over "
          f"{a.reps} draws, fixed parameters)\n")
    print("| net | Trace_ELBO (one draw per minibatch) | one mask per minibatch, analytic KL | "
          "PerExampleDropoutELBO | ratio Trace_ELBO / per-example | ratio shared masks / "
          "per-example |")
    print("|---|---|---|---|---|---|")
    for kind, vt, vs, vp in var_rows:
        print(f"| {kind} | {vt:.4g} | {vs:.4g} | {vp:.4g} | {vt / vp:.1f}x | {vs / vp:.1f}x |")
    print(f"\n(b) one training step (median of {a.steps}, interleaved)\n")
    print("| net | plain nn.Dropout + Adam (ms) | SVI + PerExampleDropoutELBO (ms) | "
          "PerExampleDropoutELBO as a module + torch.optim.Adam (ms) | SVI + Trace_ELBO (ms) | "
          "ratio SVI per-example / plain | ratio module per-example / plain | "
          "ratio SVI Trace_ELBO / plain |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, tp, te, tn, tt in time_rows:
        print(f"| {kind} | {1e3 * tp:.3f} | {1e3 * te:.3f} | {1e3 * tn:.3f} | {1e3 * tt:.3f} | "
              f"{te / tp:.2f}x | {tn / tp:.2f}x | {tt / tp:.2f}x |")


if __name__ == "__main__":
    main()
