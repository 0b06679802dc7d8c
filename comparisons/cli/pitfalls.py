"""``python -m comparisons pitfalls``: the three pitfalls of MC dropout, as tables and figures.

Writes into ``--out``: ``improper_kl.png``, ``non_concentration.png`` (training and
extrapolation regions), ``keep_prob_sensitivity.png``, ``records.csv`` (tidy), ``pitfalls.md``
(tables, HMC's diagnostics and the surfaced warnings) and ``nuts-cache/`` (the NUTS chains of the
non-concentration experiment; a re-run with the same settings reuses them); prints the tables and
the output paths. See :mod:`comparisons.experiments.pitfalls`.

Example (the committed run; HMC for N <= 300, about 40 min on the shared 2-core box):
    python -m comparisons pitfalls --out docs/pitfalls --hmc-chains 4 --hmc-warmup 300 \
        --hmc-samples 300 --hmc-processes 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from comparisons.cli.types import (
    add_keep_prob_argument,
    add_out_argument,
    add_seed_argument,
    add_threads_argument,
    int_at_least,
)

__all__ = ["add_parser", "run"]


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"--sizes must be a comma list of integers >= 1 (e.g. 10,100,1000), got {text!r}")
    return values


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``pitfalls`` subcommand to ``subparsers``."""
    p = subparsers.add_parser("pitfalls", help="improper KL, non-concentration and keep_prob "
                                                "sensitivity of MC dropout (toy data)")
    add_out_argument(p)
    p.add_argument("--iterations", type=int_at_least("--iterations"), default=4000,
                   help="Adam steps per network (default 4000)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=1000,
                   help="T, MC dropout samples (default 1000)")
    p.add_argument("--sizes", type=_int_list, default=[10, 30, 100, 300, 1000, 3000],
                   help="training-set sizes of the non-concentration experiment")
    add_keep_prob_argument(p, 0.9, "keep_prob of the non-concentration experiment")
    p.add_argument("--hmc", action=argparse.BooleanOptionalAction, default=True,
                   help="NUTS reference curve in the non-concentration experiment (--no-hmc: "
                        "MC dropout and the GP only)")
    p.add_argument("--hmc-max-train", type=int_at_least("--hmc-max-train"), default=300,
                   help="run HMC for the sizes N <= this (default 300)")
    p.add_argument("--hmc-chains", type=int_at_least("--hmc-chains"), default=4)
    p.add_argument("--hmc-warmup", type=int_at_least("--hmc-warmup", 0), default=300)
    p.add_argument("--hmc-samples", type=int_at_least("--hmc-samples"), default=300)
    p.add_argument("--hmc-processes", type=int_at_least("--hmc-processes"), default=2,
                   help="processes for the chains (default 2)")
    p.add_argument("--hmc-max-tree-depth", type=int_at_least("--hmc-max-tree-depth"),
                   default=10)
    add_seed_argument(p)
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)
    return p


def _table(df, index, columns="metric"):
    pivot = df.pivot_table(index=index, columns=columns, values="value", aggfunc="first")
    lines = ["| " + " | ".join([*index, *map(str, pivot.columns)]) + " |",
             "|" + "---|" * (len(index) + len(pivot.columns))]
    for key, row in pivot.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join([*map(str, key), *(f"{v:.4g}" for v in row)]) + " |")
    return "\n".join(lines)


def run(args) -> int:
    """Run the three experiments; write figures, records and tables."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch

    from comparisons.experiments.pitfalls import (
        PitfallHMCSettings,
        PitfallSettings,
        improper_kl_records,
        keep_prob_sensitivity,
        non_concentration_records,
        plot_improper_kl,
        plot_keep_prob_sensitivity,
        plot_non_concentration,
    )
    from comparisons.reference.nuts import HMCDiagnosticsWarning
    from comparisons.runner.store import atomic_savefig, atomic_write_text

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    settings = PitfallSettings(steps=args.iterations, num_samples=args.num_samples, seed=args.seed)
    hmc = None
    if args.hmc:
        hmc = PitfallHMCSettings(max_train=args.hmc_max_train, chains=args.hmc_chains,
                                 warmup=args.hmc_warmup, samples=args.hmc_samples,
                                 processes=args.hmc_processes,
                                 max_tree_depth=args.hmc_max_tree_depth)
    t0 = time.perf_counter()
    kl = improper_kl_records()
    t_kl = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HMCDiagnosticsWarning)
        nc = non_concentration_records(args.sizes, keep_prob=args.keep_prob, settings=settings,
                                       progress=not args.no_progress, hmc=hmc,
                                       cache_dir=out / "nuts-cache")
    hmc_warnings = []
    for w in caught:
        if issubclass(w.category, HMCDiagnosticsWarning):
            hmc_warnings.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    t_nc = time.perf_counter() - t0
    t0 = time.perf_counter()
    kps = keep_prob_sensitivity(settings=settings)
    t_kp = time.perf_counter() - t0

    paths = []
    for name, draw in (("improper_kl.png", lambda ax: plot_improper_kl(kl, ax)),
                       ("non_concentration.png", None),
                       ("keep_prob_sensitivity.png",
                        lambda ax: plot_keep_prob_sensitivity(kps, ax))):
        if draw is None:  # the two regions side by side
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
            plot_non_concentration(nc, axes[0], "train")
            plot_non_concentration(nc, axes[1], "extrapolation")
        else:
            fig, ax = plt.subplots(figsize=(7, 4.2))
            draw(ax)
        fig.tight_layout()
        paths.append(atomic_savefig(fig, out / name, dpi=100))
        plt.close(fig)
    records = pd.DataFrame(kl + nc + kps.records)
    paths.append(atomic_write_text(out / "records.csv", records.to_csv(index=False)))
    df_nc = pd.DataFrame(nc)
    variance = df_nc.metric.str.startswith("epistemic_variance")
    hmc_text = ["HMC: off (--no-hmc)."]
    if hmc is not None:
        hmc_text = [
            f"HMC: {hmc}; prior N(0, {settings.prior_length_scale:g}^-2) on every weight and bias "
            f"and the toy's noise precision, as the GP. Diagnostics (hmc_summary of f at the "
            f"test inputs; wall_time_s: this run, hmc_chain_wall_time_sum_s: the chains' own "
            f"time, also when loaded from the cache):", ""]
        if (df_nc.method == "hmc").any():
            hmc_text += [_table(df_nc[(df_nc.method == "hmc") & ~variance], ["split"]).replace(
                "| split |", "| N |", 1), ""]
        hmc_text += ["HMC warnings: " + ("none" if not hmc_warnings else "")]
        hmc_text += [f"- {w}" for w in hmc_warnings]
    walls = df_nc[df_nc.metric == "wall_time_s"].pivot_table(
        index="split", columns="method", values="value", aggfunc="first")
    text = "\n".join([
        "# Pitfalls of MC dropout (toy data unless stated)", "",
        f"Settings: {settings}; non-concentration keep_prob {args.keep_prob}.", "",
        f"## 1. Improper KL (equivalence-report problem, float64; {t_kl:.1f} s)", "",
        _table(pd.DataFrame(kl), ["split"]).replace("| split |", "| theta |", 1), "",
        f"## 2. Non-concentration ({t_nc:.1f} s)", "",
        "Epistemic variance (standardised scale), mean over the test points in the region:", "",
        _table(df_nc[variance], ["method", "split"]).replace(
            "| method | split |", "| method | N |", 1), "",
        "Wall time per N (s): " + "; ".join(
            f"N={int(n)}: " + ", ".join(f"{m} {v:.1f}" for m, v in row.items() if v == v)
            for n, row in walls.iterrows()) + ".", "",
        *hmc_text, "",
        f"## 3. keep_prob sensitivity ({t_kp:.1f} s; predictive sd, original scale)", "",
        _table(pd.DataFrame(kps.records), ["method", "split"]).replace(
            "| method | split |", "| method | keep_prob |", 1), "",
    ])
    paths.append(atomic_write_text(out / "pitfalls.md", text))
    print(text)
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths))
    return 0
