"""Cost of NUTS reference posteriors for the dropout comparisons (a measurement, not a test).

Two parts, each written to a JSON file (numbers quoted in ``docs/hmc/measurements.md``):

* ``toy``: 1-D regression, 40 points, 1 -> 50 -> 1 ReLU network, prior N(0, 1) (l = 1),
  tau = 10, 4 chains x (500 warmup + 500 draws) in 2 spawned processes: wall time, draws/s,
  max R-hat and min ESS in weight space and in function space (f at the 40 inputs), tree depth,
  step size, gradient evaluations per draw, divergences, E-BFMI.
* ``boston``: Boston housing split 0 (455 x 13, standardised), 13 -> 50 -> 1 ReLU, l = 1 and
  tau = 0.15 * y_std^2 (tau = 0.15 on the original scale, inside the MC dropout grid); one chain
  of 50 warmup + 50 draws: seconds per draw, leapfrog steps per draw, milliseconds per gradient
  evaluation and the extrapolated cost of 4 chains x (1000 warmup + 1000 draws).

Usage::

    python benchmarks/bench_hmc.py --part toy --out outputs/hmc_toy.json
    python benchmarks/bench_hmc.py --part boston --out outputs/hmc_boston.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np
import torch

from comparisons.datasets.uci import load_uci, standardize
from comparisons.reference.nuts import HMCDiagnosticsWarning, hmc_summary, run_nuts


def _summaries(result) -> dict:
    idata = result.to_inference_data()
    out = {}
    for name, var_names in (("weights", [k for k in result.samples]), ("f", ["f"])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", HMCDiagnosticsWarning)
            table = hmc_summary(idata, var_names=var_names)
        diag = dict(table.attrs["diagnostics"])
        diag["warning"] = [str(w.message) for w in caught
                           if issubclass(w.category, HMCDiagnosticsWarning)]
        out[name] = diag
    return out


def _stats(result) -> dict:
    s = result.sample_stats
    return {
        "wall_time_s": result.wall_time_s,
        "draws_per_second": result.draws_per_second,
        "chain_wall_times_s": result.chain_wall_times_s.tolist(),
        "chain_sampling_times_s": result.chain_sampling_times_s.tolist(),
        "seconds_per_draw_per_chain": result.seconds_per_draw,
        "grad_evals_per_draw": result.grad_evals_per_draw,
        "grad_evals_per_draw_by_chain": s["n_steps"].mean(1).tolist(),
        "warmup_grad_evals": result.warmup_grad_evals.tolist(),
        "ms_per_grad_eval_sampling": 1e3 * float(np.sum(result.chain_sampling_times_s))
        / float(s["n_steps"].sum()),
        "mean_tree_depth": float(s["tree_depth"].mean()),
        "max_tree_depth_hits": float((s["tree_depth"] >= result.settings["max_tree_depth"]).mean()),
        "step_size_by_chain": s["step_size"][:, -1].tolist(),
        "mean_acceptance_rate": float(np.nanmean(s["acceptance_rate"])),
        "divergences": int(s["diverging"].sum()),
        "from_cache": list(result.from_cache),
    }


def toy(args) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-2, 2, 40, dtype=torch.float64)[:, None]
    y = torch.sin(3 * x) + 10 ** -0.5 * torch.randn(40, 1, generator=g, dtype=torch.float64)
    result = run_nuts(x, y, hidden=(50,), activation="relu", prior_length_scale=1.0, tau=10.0,
                      num_chains=4, num_warmup=args.warmup, num_samples=args.samples,
                      num_processes=2, cache_dir=args.cache_dir, seed=0, jit_compile=True)
    return {"problem": "toy 1-D, N=40, 1-50-1 relu, l=1, tau=10", **_stats(result),
            "diagnostics": _summaries(result)}


def boston(args) -> dict:
    z = standardize(load_uci("boston", 0))
    tau = 0.15 * z.y_std**2
    result = run_nuts(z.x_train, z.y_train, hidden=(50,), activation="relu",
                      prior_length_scale=args.length_scale, tau=tau, num_chains=1,
                      num_warmup=args.warmup, num_samples=args.samples, num_processes=1,
                      cache_dir=args.cache_dir, seed=0, jit_compile=True)
    st = _stats(result)
    ms = st["ms_per_grad_eval_sampling"]
    # extrapolation: 4 chains x (1000 warmup + 1000 draws) at the measured steps per iteration
    # (warmup iterations counted at the sampling-phase rate) and at the max tree depth
    iters = 4 * 2000
    steps_measured = st["grad_evals_per_draw"]
    steps_cap = 2 ** result.settings["max_tree_depth"] - 1
    return {
        "problem": f"boston split 0, N=455, 13-50-1 relu, l={args.length_scale}, "
                   f"tau_std={tau:.3f} (0.15 on the original scale)",
        **st,
        "extrapolation_4x(1000+1000)": {
            "cpu_hours_at_measured_steps": iters * steps_measured * ms / 1e3 / 3600,
            "cpu_hours_at_max_tree_depth": iters * steps_cap * ms / 1e3 / 3600,
            "wall_hours_2_processes_measured": iters * steps_measured * ms / 1e3 / 3600 / 2,
        },
        "diagnostics": _summaries(result),
    }


def overhead(args) -> dict:
    """Bare cost of one potential + gradient evaluation (eager and torch.jit.trace'd) for the
    toy and the Boston problem, to compare with the NUTS milliseconds per leapfrog step."""
    from pyro.ops.integrator import potential_grad

    from comparisons.reference.nuts import bnn_potential, jit_potential
    from vi_dropout.network import Architecture

    z = standardize(load_uci("boston", 0))
    g = torch.Generator().manual_seed(0)
    problems = {
        "toy (N=40, 1-50-1)": (torch.linspace(-2, 2, 40, dtype=torch.float64)[:, None],
                               torch.zeros(40, 1, dtype=torch.float64), 10.0),
        "boston (N=455, 13-50-1)": (torch.as_tensor(z.x_train), torch.as_tensor(z.y_train),
                                    0.15 * z.y_std**2),
    }
    out = {}
    for name, (x, y, tau) in problems.items():
        arch = Architecture((x.shape[1], 50, 1), "relu")
        params = {}
        for i, (o, q) in enumerate(arch.layer_shapes):
            params[f"layers.{i}.weight"] = torch.randn(o, q, generator=g, dtype=torch.float64)
            params[f"layers.{i}.bias"] = torch.randn(o, generator=g, dtype=torch.float64)
        pot = bnn_potential(x, y, arch, 1.0, tau)
        row = {}
        for label, fn in (("eager", pot), ("jit", jit_potential(pot, arch, params))):
            for _ in range(50):
                potential_grad(fn, params)
            reps = 1000
            t0 = time.perf_counter()
            for _ in range(reps):
                potential_grad(fn, params)
            row[f"ms_per_grad_{label}"] = 1e3 * (time.perf_counter() - t0) / reps
        out[name] = row
    # NUTS milliseconds per leapfrog step on the toy problem right after (same machine load)
    x, y = problems["toy (N=40, 1-50-1)"][:2]
    y = torch.sin(3 * x) + 10 ** -0.5 * torch.randn(40, 1, generator=g, dtype=torch.float64)
    res = run_nuts(x, y, hidden=(50,), tau=10.0, num_chains=1, num_warmup=20, num_samples=20,
                   num_processes=1, jit_compile=True, seed=1)
    steps = res.sample_stats["n_steps"].sum() + res.warmup_grad_evals.sum()
    out["toy short NUTS run (20 + 20)"] = {
        "ms_per_leapfrog_step": 1e3 * float(res.chain_wall_times_s[0]) / float(steps),
        "grad_evals": int(steps)}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["toy", "boston", "overhead"], required=True)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--length-scale", type=float, default=1.0)
    parser.add_argument("--cache-dir", default="outputs/hmc_cache")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    default = 500 if args.part == "toy" else 50
    args.warmup = default if args.warmup is None else args.warmup
    args.samples = default if args.samples is None else args.samples
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    record = {"toy": toy, "boston": boston, "overhead": overhead}[args.part](args)
    record.update({"load_average_before": load0, "load_average_after": os.getloadavg(),
                   "total_script_s": time.perf_counter() - t0, "cpu_count": os.cpu_count(),
                   "machine": platform.platform(), "torch": torch.__version__,
                   "num_warmup": args.warmup, "num_samples": args.samples})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, default=float)
    print(json.dumps(record, indent=1, default=float))


if __name__ == "__main__":
    main()
