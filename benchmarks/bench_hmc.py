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

* ``backends``: Pyro's NUTS (``backend="potential"``, ``jit_compile=True``, the default) against
  NumPyro's NUTS (``backend="numpyro"``, JAX on the CPU) on one problem: Boston split 0, 13-50-1
  ReLU, the shared proper prior ``l = 1`` and ``tau_s`` (default 8.70, the noise MC dropout
  selected on Boston split 0 in ``docs/diagnose/boston``), 4 chains in 2 processes (one thread
  each), the same seeds, initial values and sampler settings. Measured per backend: gradient
  evaluations per second (warmup and sampling), bulk ESS per second of ``f`` at the 51 test
  inputs (worst and median point, per second of chain time), and the time to R-hat <= 1.01 with
  bulk and tail ESS >= 400 at every test point (the first prefix of the chains, in steps of 50
  draws, that passes, charged warmup + that share of the sampling time); the ratios
  NumPyro / Pyro are printed side by side. ``--converge-samples`` runs NumPyro longer for the
  time to convergence when the common run is too short.

* ``dropout-prior``: what a reference under the dropout-matched prior would cost, measured with
  the NumPyro backend on Yacht split 0 (the ``diagnose`` run's prior ``l_eff = 0.1058`` and
  ``tau_s = 171.2``, i.e. the protocol's ``l = 1e-2``): 4 chains x (``--warmup`` +
  ``--samples``) in 2 processes; worst-point bulk / tail ESS per draw of ``f`` at the test
  inputs, R-hat, and the draws and chain time that ESS 400 would need at that rate.

Usage::

    python benchmarks/bench_hmc.py --part toy --out outputs/hmc_toy.json
    python benchmarks/bench_hmc.py --part boston --out outputs/hmc_boston.json
    python benchmarks/bench_hmc.py --part backends --warmup 500 --samples 500 \
        --converge-samples 3000 --out outputs/hmc_backends.json
    python benchmarks/bench_hmc.py --part dropout-prior --warmup 500 --samples 500 \
        --out outputs/hmc_dropout_prior.json
    python benchmarks/bench_hmc.py --part backends --quick --out /tmp/hmc_quick.json  # smoke
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
from comparisons.reference.reference_file import convergence_summary, draws_to_converge


def _summaries(result) -> dict:
    idata = result.to_datatree()
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


def _time_to_converged(result, x_test, y_test, step: int = 50) -> dict:
    """First prefix of the chains (multiples of ``step`` draws) whose f at the test inputs
    passes the reference gate (R-hat <= 1.01, bulk and tail ESS >= 400, no divergences), with
    the chain time it cost: warmup plus that share of the sampling time (mean over chains)."""
    idata = result.to_datatree(x=x_test, y=y_test)
    n = result.num_samples
    warm = float(np.mean(result.chain_wall_times_s - result.chain_sampling_times_s))
    per_draw = float(np.mean(result.chain_sampling_times_s)) / n
    full = convergence_summary(idata)
    out = {"draws_per_chain": n, "full_run": {
        "max_r_hat": float(np.max(full.r_hat)), "min_ess_bulk": float(np.min(full.ess_bulk)),
        "median_ess_bulk": float(np.median(full.ess_bulk)),
        "min_ess_tail": float(np.min(full.ess_tail)), "divergences": full.divergences,
        "reasons": full.reasons}}
    k = draws_to_converge(idata, step=step)
    if k is None:
        out.update(converged_at_draws=None, chain_time_to_converged_s=None,
                   wall_time_to_converged_2_processes_s=None,
                   chain_time_of_run_s=warm + n * per_draw)
    else:
        out.update(converged_at_draws=k, chain_time_to_converged_s=warm + k * per_draw,
                   wall_time_to_converged_2_processes_s=(warm + k * per_draw)
                   * result.num_chains / 2)
    return out


def _backend_run(backend: str, z, tau: float, args, num_samples: int) -> dict:
    result = run_nuts(z.x_train, z.y_train, hidden=(50,), activation="relu",
                      prior_length_scale=args.length_scale, tau=tau, num_chains=args.chains,
                      num_warmup=args.warmup, num_samples=num_samples,
                      num_processes=args.processes,
                      cache_dir=args.cache_dir, seed=0, jit_compile=True, backend=backend,
                      max_tree_depth=args.max_tree_depth)
    s = result.sample_stats
    chain_time = float(np.sum(result.chain_wall_times_s))
    sampling_time = float(np.sum(result.chain_sampling_times_s))
    grads = float(s["n_steps"].sum() + result.warmup_grad_evals.sum())
    idata = result.to_datatree(x=z.x_test, y=z.y_test)
    report = convergence_summary(idata)
    return {
        "backend": backend, **_stats(result),
        "grad_evals_per_second": grads / chain_time,
        "grad_evals_per_second_sampling": float(s["n_steps"].sum()) / sampling_time,
        "f_test_min_ess_bulk_per_chain_second": float(np.min(report.ess_bulk)) / sampling_time,
        "f_test_median_ess_bulk_per_chain_second": float(np.median(report.ess_bulk))
        / sampling_time,
        "convergence": _time_to_converged(result, z.x_test, z.y_test),
    }


def backends(args) -> dict:
    """Pyro's NUTS against NumPyro's NUTS on Boston split 0 (see the module docstring)."""
    z = standardize(load_uci("boston", 0))
    tau = args.tau
    runs = {b: _backend_run(b, z, tau, args, args.samples) for b in ("potential", "numpyro")}
    out = {"problem": f"boston split 0, N=455, 13-50-1 relu, l={args.length_scale}, "
                      f"tau_s={tau:.4g}, {args.chains} chains x ({args.warmup} + "
                      f"{args.samples}), {args.processes} process(es)", "runs": runs}
    if args.converge_samples and runs["numpyro"]["convergence"]["converged_at_draws"] is None:
        long = _backend_run("numpyro", z, tau, args, args.converge_samples)
        out["numpyro_long"] = long
    pyro_run, jax_run = runs["potential"], runs["numpyro"]
    ratios = {k: jax_run[k] / pyro_run[k] for k in (
        "grad_evals_per_second", "grad_evals_per_second_sampling",
        "f_test_min_ess_bulk_per_chain_second", "f_test_median_ess_bulk_per_chain_second")}
    ratios["seconds_per_draw_per_chain (pyro / numpyro)"] = (pyro_run["seconds_per_draw_per_chain"]
                                                             / jax_run["seconds_per_draw_per_chain"])
    out["ratios_numpyro_over_pyro"] = ratios
    print("\nside by side (" + out["problem"] + ")")
    print(f"{'quantity':48s} {'pyro':>12s} {'numpyro':>12s} {'ratio':>8s}")
    for key in ("grad_evals_per_second", "grad_evals_per_second_sampling",
                "seconds_per_draw_per_chain", "grad_evals_per_draw",
                "f_test_min_ess_bulk_per_chain_second", "f_test_median_ess_bulk_per_chain_second"):
        a, b = pyro_run[key], jax_run[key]
        print(f"{key:48s} {a:12.4g} {b:12.4g} {b / a:8.2f}")
    for name, run in (("pyro", pyro_run), ("numpyro", jax_run),
                      ("numpyro (long)", out.get("numpyro_long"))):
        if run is None:
            continue
        c = run["convergence"]
        at = c["converged_at_draws"]
        print(f"{name}: time to R-hat <= 1.01 and ESS >= 400 at every test point: "
              + (f"{c['chain_time_to_converged_s']:.0f} chain-s at {at} draws per chain"
                 if at else f"not within {c['draws_per_chain']} draws per chain "
                 f"(max R-hat {c['full_run']['max_r_hat']:.3f}, min bulk ESS "
                 f"{c['full_run']['min_ess_bulk']:.0f})"))
    return out


def _commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def dropout_prior(args) -> dict:
    """NumPyro NUTS on Yacht split 0 under the dropout-matched prior (see the module docstring)."""
    z = standardize(load_uci("yacht", 0))
    length, tau = 0.1057747505495398, 171.23198429472558  # docs/diagnose/yacht/records.csv
    result = run_nuts(z.x_train, z.y_train, hidden=(50,), activation="relu",
                      prior_length_scale=length, tau=tau, num_chains=4,
                      num_warmup=args.warmup, num_samples=args.samples, num_processes=2,
                      cache_dir=args.cache_dir, seed=0, init_scale=length, backend="numpyro")
    report = convergence_summary(result.to_datatree(x=z.x_test, y=z.y_test))
    draws = result.num_chains * result.num_samples
    per_draw = {k: float(np.min(getattr(report, k))) / draws for k in ("ess_bulk", "ess_tail")}
    need = 400 / min(per_draw.values())
    sec_per_draw = float(np.mean(result.chain_sampling_times_s)) / result.num_samples
    return {"problem": f"yacht split 0, dropout-matched prior l_eff={length:.4g}, "
                       f"tau_s={tau:.4g}, 4 chains x ({args.warmup} + {args.samples})",
            **_stats(result), "max_r_hat_f_test": float(np.max(report.r_hat)),
            "min_ess_bulk_f_test": float(np.min(report.ess_bulk)),
            "min_ess_tail_f_test": float(np.min(report.ess_tail)),
            "worst_ess_per_draw": per_draw, "draws_for_ess_400": need,
            "chain_hours_for_ess_400": need * sec_per_draw / 3600,
            "reasons": report.reasons}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["toy", "boston", "overhead", "backends",
                                           "dropout-prior"], required=True)
    parser.add_argument("--tau", type=float, default=8.700885477599325,
                        help="tau_s of --part backends (default: Boston split 0's, from "
                             "docs/diagnose/boston)")
    parser.add_argument("--converge-samples", type=int, default=0,
                        help="--part backends: draws per chain of a longer NumPyro run when the "
                             "common run does not converge (0: none)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--length-scale", type=float, default=1.0)
    parser.add_argument("--max-tree-depth", type=int, default=10,
                        help="--part backends: NUTS max tree depth of both backends (default 10)")
    parser.add_argument("--cache-dir", default="outputs/hmc_cache")
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run of --part backends (2 chains of 10 + 10 iterations at "
                             "tree depth 3, in this process; seconds): checks the plumbing, its "
                             "numbers mean nothing")
    args = parser.parse_args(argv)
    if args.quick:
        if args.part != "backends":
            parser.error(f"--quick is for --part backends, got --part {args.part}")
        args.warmup, args.samples, args.max_tree_depth, args.converge_samples = 10, 10, 3, 0
    # the full runs: 4 chains in 2 worker processes; the smoke run: 2 chains in this process
    args.chains, args.processes = (2, 1) if args.quick else (4, 2)
    default = 500 if args.part == "toy" else 50
    args.warmup = default if args.warmup is None else args.warmup
    args.samples = default if args.samples is None else args.samples
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    record = {"toy": toy, "boston": boston, "overhead": overhead, "backends": backends,
              "dropout-prior": dropout_prior}[args.part](args)
    record.update({"load_average_before": load0, "load_average_after": os.getloadavg(),
                   "total_script_s": time.perf_counter() - t0, "cpu_count": os.cpu_count(),
                   "machine": platform.platform(), "torch": torch.__version__,
                   "commit": _commit(),
                   "num_warmup": args.warmup, "num_samples": args.samples,
                   "max_tree_depth": args.max_tree_depth})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, default=float)
    if args.part == "backends":
        print(f"written: {args.out}")
    else:
        print(json.dumps(record, indent=1, default=float))


if __name__ == "__main__":
    main()
