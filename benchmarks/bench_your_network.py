"""Benchmark: bringing your own network, on networks written the ordinary way (examples/).

(a) one training step of ``SVI`` with ``PerExampleDropoutELBO`` (one weight draw per example,
    the full ELBO), with Pyro's ``pyro.optim.Adam`` (one optimiser per parameter) and with
    ``vi_dropout.infer.optim.JointAdam`` (one ``torch.optim.Adam`` for all of them), against one plain training step of the same network with its own dropout
    and ``torch.optim.Adam`` (the loss plus the prior's weight decay), on the PyTorch MNIST
    example network (``examples/mnist_net.py``, real MNIST digits, batch 64) and on a
    BatchNorm + residual regressor (``examples/bn_residual.py``, Boston housing, batch 32);
    float32, calls interleaved, medians; the ratio is what the full ELBO costs over dropout.
    Also timed: the same ELBO in Pyro's PyTorch-native loop (``PerExampleDropoutELBO()(model,
    guide)`` as a module and ONE ``torch.optim.Adam``, as ``benchmarks/bench_per_example.py``
    does), which leaves out what ``SVI`` adds (a trace of the parameter sites, one optimiser
    per parameter, ``zero_grads``);
(b) the wall time of the equivalence report ``verify_network(..., quick=True)`` on the MNIST
    example network with 200 examples (``python -m vi_dropout verify --model
    examples/mnist_net.py:make --data ... --quick`` without the file reading), and on the other
    example networks.

Part (a) runs torch on ONE thread (``torch.set_num_threads(1)``; ``--threads`` to change it): on
a shared machine with two threads the small BatchNorm network's steps became erratic (OpenMP
threads waiting for a busy core made a 1 ms step take up to 300 ms), and its ops are far too
small to gain from a second thread anyway; the ratios are what part (a) is for. Part (b) runs
with torch's default number of threads.

Usage::

    python benchmarks/bench_your_network.py            # 200 timed steps, every network verified
    python benchmarks/bench_your_network.py --part a --steps 100   # the step times only
    python benchmarks/bench_your_network.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_per_example import time_steps  # noqa: E402  (the same interleaved timer)

from tests.common import example_problem  # noqa: E402
from vi_dropout.guides import DropoutGuide  # noqa: E402
from vi_dropout.infer.elbo import weight_decay  # noqa: E402
from vi_dropout.infer.optim import JointAdam  # noqa: E402
from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO  # noqa: E402
from vi_dropout.models import ModuleBNN  # noqa: E402
from vi_dropout.verify.network import verify_network  # noqa: E402
from vi_dropout.verify.problem import ModuleProblem  # noqa: E402


def step_times(name: str, batch: int, steps: int, num_data: int,
               warmup: int = 3) -> tuple[float, float, float, float]:
    """Median seconds of a plain dropout + Adam step, of an SVI step with the per-example ELBO
    and ``pyro.optim.Adam``, of the same with ``JointAdam`` and of a step of the same ELBO in
    Pyro's PyTorch-native loop, on the same minibatches of ``examples/<name>.py``'s data."""
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    net, x_all, y_all, lik = example_problem(name, num_data)
    tau, ls = 1.0, 1.0
    model = ModuleBNN(net, prior_length_scale=ls, tau=tau, likelihood=lik)
    guide = DropoutGuide(model, theta=1e-3)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), PerExampleDropoutELBO(num_masks_seed=0))
    # the same with one optimiser for all parameters: the same model and guide (Pyro names a
    # PyroModule's parameters in the one param store, so a copy would share them anyway); the
    # two SVI objects take turns on the same parameters, each with its own optimiser state
    joint_svi = SVI(model, guide, JointAdam({"lr": 1e-3}), PerExampleDropoutELBO(num_masks_seed=2))
    plain, *_ = example_problem(name, 2)
    plain.train()
    covered = [plain.get_submodule(c.name) for c in model.layers]
    decays = [weight_decay(ls, c.keep_prob, num_data, tau) / c.keep_prob**2
              for c in model.layers]
    opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    perm = torch.randperm(num_data)
    state = {"i": 0}

    def minibatch():
        s = (state["i"] * batch) % (num_data - batch + 1)
        state["i"] += 1
        idx = perm[s: s + batch]
        return x_all[idx], y_all[idx]

    def plain_step():
        xb, yb = minibatch()
        out = plain(xb)
        if lik == "gaussian":
            loss = 0.5 * (out - yb).square().sum(-1).mean()
        else:
            loss = torch.nn.functional.cross_entropy(out, yb)
        for layer, lam in zip(covered, decays):
            loss = loss + lam * layer.weight.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def svi_step():
        xb, yb = minibatch()
        svi.step(xb, yb, num_data=num_data)

    def joint_step():
        xb, yb = minibatch()
        joint_svi.step(xb, yb, num_data=num_data)

    # Pyro's PyTorch-native loop: the ELBO as a module, one torch.optim.Adam for everything (its
    # own copy of the model and guide, so that the SVI step's parameters are not touched; the
    # SVI step registers its parameters in the param store first, so SVI keeps training them)
    native_net, *_ = example_problem(name, 2)
    native_model = ModuleBNN(native_net, prior_length_scale=ls, tau=tau, likelihood=lik)
    native_guide = DropoutGuide(native_model, theta=1e-3)
    loss_module = PerExampleDropoutELBO(num_masks_seed=1)(native_model, native_guide)
    native_opt = torch.optim.Adam(loss_module.parameters(), lr=1e-3)

    def native_step():
        xb, yb = minibatch()
        loss = loss_module(xb, yb, num_data=num_data)
        native_opt.zero_grad()
        loss.backward()
        native_opt.step()

    fns = [plain_step, svi_step, joint_step, native_step]
    time_steps(warmup, fns)  # warm-up
    return tuple(time_steps(steps, fns))


def verify_time(name: str, num_examples: int) -> tuple[float, int, int]:
    """Seconds of the quick report on ``examples/<name>.py`` and its passed / total rows."""
    net, x, y, lik = example_problem(name, num_examples)
    t0 = time.perf_counter()
    kwargs = {"uncovered_dropout": "disable"} if name in ("lstm_classifier",
                                                          "attention_classifier") else {}
    rows = verify_network(None, None, None, quick=True,
                          problem=ModuleProblem(net, x, y, likelihood=lik, **kwargs))
    return time.perf_counter() - t0, sum(r["passed"] for r in rows), len(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run: 2 timed steps after 2 warm-up steps, small data, "
                             "(b) on bn_residual only")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per network")
    parser.add_argument("--part", choices=["a", "b", "ab"], default="ab",
                        help="run part (a) the step times, (b) the verify times, or both")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for part (a) (default 1)")
    a = parser.parse_args(argv)
    steps = 2 if a.quick else a.steps
    print(f"torch {torch.__version__}")
    if "a" in a.part:
        default_threads = torch.get_num_threads()
        torch.set_num_threads(a.threads)
        try:
            part_a(a, steps)
        finally:
            torch.set_num_threads(default_threads)
    if "b" in a.part:
        part_b(a)


def part_a(a, steps):
    print(f"\n(a) one training step, float32 (median of {steps}, interleaved, "
          f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})\n")
    print("| network | batch | plain dropout + Adam (ms) | SVI + PerExampleDropoutELBO, "
          "pyro.optim.Adam (ms) | ratio / plain | SVI + PerExampleDropoutELBO, JointAdam (ms) | "
          "ratio / plain | native loop, one Adam (ms) | ratio / plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, batch, n in (("mnist_net", 64 if not a.quick else 8, 256 if not a.quick else 70),
                           ("bn_residual", 32, 256 if not a.quick else 40)):
        plain, per, joint, native = step_times(name, batch, steps, n, warmup=2 if a.quick else 3)
        print(f"| {name} | {batch} | {1e3 * plain:.2f} | {1e3 * per:.2f} | {per / plain:.2f}x | "
              f"{1e3 * joint:.2f} | {joint / plain:.2f}x | {1e3 * native:.2f} | "
              f"{native / plain:.2f}x |")


def part_b(a):
    print(f"\n(b) verify_network(..., quick=True), float64, {torch.get_num_threads()} threads\n")
    print("| network | examples | seconds | rows passed |")
    print("|---|---|---|---|")
    names = (["bn_residual"] if a.quick else
             ["mnist_net", "bn_residual", "mobilenet_style", "two_input", "dropout2d_cnn",
              "sequential_mlp", "functional_dropout", "token_mlp", "lstm_classifier",
              "attention_classifier"])
    for name in names:
        n = 24 if a.quick else 200
        seconds, passed, total = verify_time(name, n)
        print(f"| {name} | {n} | {seconds:.1f} | {passed} / {total} |")


if __name__ == "__main__":
    main()
