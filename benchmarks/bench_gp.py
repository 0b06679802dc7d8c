"""Time and memory of exact-GP fit + predict: dense arc-cosine kernel vs the low-rank
random-feature kernel.

Each (kernel, N, dtype) row runs in a fresh spawned subprocess limited to 2 torch threads. Peak
memory is the growth of the child's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (resident-set
high-water mark, which includes torch's native allocations, unlike tracemalloc) from just after
the data are created to the end of fit + predict.

Usage::

    python benchmarks/bench_gp.py                     # N = 2000 5000 10000, float32 float64
    python benchmarks/bench_gp.py --quick             # N = 600, 200 test points, float32,
                                                      # 3 Adam steps, 1 thread
    python benchmarks/bench_gp.py --sizes 2000 5000 --dtypes float64 --iters 10
    python benchmarks/bench_gp.py --sizes 3000 --dtypes float64 \
        --solvers cholesky gpytorch-cholesky gpytorch-cg     # the three MLL paths side by side
    python benchmarks/bench_gp.py --sizes 10000 --fit-subset 3000 --iters 100
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

DTYPE_NAMES = ("float32", "float64")


SOLVERS = ("cholesky", "gpytorch-cholesky", "gpytorch-cg")


def _run_row(kernel_name: str, n: int, dtype_name: str, iters: int, n_test: int, q: int,
             num_features: int, threads: int, solver: str = "cholesky",
             fit_subset: int | None = None) -> dict:
    import gpytorch
    import torch

    from comparisons.gp.fit import fit_exact_gp, gp_predict
    from comparisons.gp.models import ExactGPModel, make_kernel

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_test, q, generator=g, dtype=dtype)
    w = torch.randn(q, generator=g, dtype=dtype)
    y = torch.sin(x @ w) + 0.1 * torch.randn(n + n_test, generator=g, dtype=dtype)
    train_x, train_y, test_x = x[:n], y[:n], x[n:]
    kernel = make_kernel(kernel_name, q, weight_variance=2.0, bias_variance=0.5, outputscale=1.0,
                         num_features=num_features, generator=g)
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    fit_x, fit_y = train_x, train_y
    if fit_subset is not None and fit_subset < n:
        idx = torch.randperm(n, generator=g)[:fit_subset]
        fit_x, fit_y = train_x[idx], train_y[idx]
    model = ExactGPModel(fit_x, fit_y, likelihood, kernel).to(dtype)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # "cholesky": this package's CholeskyMarginalLogLikelihood (dense, closed-form gradient) and
    # dense Cholesky prediction; "gpytorch-cholesky": GPyTorch's ExactMarginalLogLikelihood with
    # Cholesky at every N; "gpytorch-cg": GPyTorch's defaults (preconditioned CG + stochastic
    # Lanczos quadrature above 800 points).
    dense = solver in ("cholesky", "gpytorch-cholesky")
    size = n + n_test + 1 if dense else gpytorch.settings.max_cholesky_size.value()
    mll_solver = "cholesky" if solver == "cholesky" else "gpytorch"
    if kernel_name == "random-features":
        mll_solver = "gpytorch"  # low rank: Woodbury through GPyTorch whatever the dense solver
    with gpytorch.settings.max_cholesky_size(size):
        t0 = time.perf_counter()
        losses = fit_exact_gp(model, likelihood, num_iters=iters, lr=0.05, solver=mll_solver)
        if fit_x is not train_x:
            model.set_train_data(train_x, train_y, strict=False)
        t1 = time.perf_counter()
        mean, var = gp_predict(model, likelihood, test_x)
        t2 = time.perf_counter()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    test_y = y[n:]
    rmse = float((mean - test_y).pow(2).mean().sqrt())
    return dict(kernel=kernel_name, n=n, dtype=dtype_name, solver=solver, fit_s=t1 - t0, predict_s=t2 - t1,
                peak_mib=(rss1 - rss0) / 1024.0, loss0=losses[0], loss=losses[-1], rmse=rmse,
                finite=bool(torch.isfinite(var).all()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPE_NAMES, default=list(DTYPE_NAMES))
    parser.add_argument("--iters", type=int, default=10, help="Adam steps on the exact MLL")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--input-dim", type=int, default=8)
    parser.add_argument("--num-features", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=["cholesky"],
                        help="dense-kernel solver(s), one row each: cholesky (this package's "
                             "CholeskyMarginalLogLikelihood), gpytorch-cholesky (GPyTorch's MLL, "
                             "Cholesky at every N), gpytorch-cg (GPyTorch's default: CG / Lanczos "
                             "above 800 points)")
    parser.add_argument("--fit-subset", type=int, default=None,
                        help="fit the hyper-parameters on this many random training points, then "
                             "condition exactly on all N (the 'fit' column includes both)")
    parser.add_argument("--quick", action="store_true",
                        help="N=600 (above the 512 random features), 200 test points, "
                             "float32, 3 Adam steps, 1 torch thread")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dtypes, args.iters, args.n_test, args.threads = [600], ["float32"], 3, \
            200, 1

    ctx = mp.get_context("spawn")
    rows = []
    subset = f"hyper-parameters fitted on {args.fit_subset} random points, then conditioned on " \
             f"all N" if args.fit_subset else "hyper-parameters fitted on all N"
    print(f"# exact GP fit ({args.iters} Adam steps; {subset}) + predict ({args.n_test} test "
          f"points), Q={args.input_dim}, {args.threads} threads; random features "
          f"K={args.num_features}",
          flush=True)
    print("| N | dtype | kernel | solver | fit (s) | predict (s) | total (s) | "
          "peak RSS growth (MiB) | loss -MLL/N first -> last | test RMSE |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for n in args.sizes:
        for dtype_name in args.dtypes:
            runs = [("arccos1", solver) for solver in args.solvers]
            runs.append(("random-features", "low-rank"))
            results = {}
            for kernel_name, solver in runs:
                with ctx.Pool(1) as pool:
                    r = pool.apply(_run_row, (kernel_name, n, dtype_name, args.iters, args.n_test,
                                              args.input_dim, args.num_features, args.threads,
                                              args.solvers[0] if solver == "low-rank" else solver,
                                              args.fit_subset))
                results[(kernel_name, solver)] = r
                rows.append(r)
                print(f"| {n} | {dtype_name} | {kernel_name} | {solver} | {r['fit_s']:.2f} | "
                      f"{r['predict_s']:.2f} | {r['fit_s'] + r['predict_s']:.2f} | "
                      f"{r['peak_mib']:.0f} | {r['loss0']:.4f} -> {r['loss']:.4f} | "
                      f"{r['rmse']:.4f} |", flush=True)
            low = results[("random-features", "low-rank")]
            base = results[("arccos1", args.solvers[0])]
            for solver in args.solvers[1:]:
                r = results[("arccos1", solver)]
                print(f"| {n} | {dtype_name} | ratio {solver} / {args.solvers[0]} | | "
                      f"{r['fit_s'] / base['fit_s']:.1f}x | {r['predict_s'] / base['predict_s']:.1f}x "
                      f"| {(r['fit_s'] + r['predict_s']) / (base['fit_s'] + base['predict_s']):.1f}x "
                      f"| | | |", flush=True)
            for solver in args.solvers:
                dense = results[("arccos1", solver)]
                ratio_t = (dense["fit_s"] + dense["predict_s"]) / (low["fit_s"] + low["predict_s"])
                ratio_m = dense["peak_mib"] / max(low["peak_mib"], 1.0)
                print(f"| {n} | {dtype_name} | ratio dense / low-rank | {solver} | | | "
                      f"{ratio_t:.1f}x | {ratio_m:.1f}x | | |", flush=True)


if __name__ == "__main__":
    main()
