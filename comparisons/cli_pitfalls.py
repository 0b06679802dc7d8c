"""``python -m comparisons pitfalls``: the three pitfalls of MC dropout, as tables and figures.

Writes into ``--out``: ``improper_kl.png``, ``non_concentration.png``,
``keep_prob_sensitivity.png``, ``records.csv`` (tidy), ``pitfalls.md`` (tables); prints the
tables and the output paths. See :mod:`comparisons.pitfalls`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ._cli_types import int_at_least

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
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--steps", type=int_at_least("--steps"), default=4000,
                   help="Adam steps per network (default 4000)")
    p.add_argument("--num-samples", type=int_at_least("--num-samples"), default=1000,
                   help="T, MC dropout samples (default 1000)")
    p.add_argument("--sizes", type=_int_list, default=[10, 30, 100, 300, 1000, 3000],
                   help="training-set sizes of the non-concentration experiment")
    p.add_argument("--keep-prob", type=float, default=0.9,
                   help="keep_prob of the non-concentration experiment (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .pitfalls import (
        PitfallSettings,
        improper_kl_records,
        keep_prob_sensitivity,
        non_concentration_records,
        plot_improper_kl,
        plot_keep_prob_sensitivity,
        plot_non_concentration,
    )
    from .results_store import atomic_savefig, atomic_write_text

    out = Path(args.out)
    settings = PitfallSettings(steps=args.steps, num_samples=args.num_samples, seed=args.seed)
    t0 = time.perf_counter()
    kl = improper_kl_records()
    t_kl = time.perf_counter() - t0
    t0 = time.perf_counter()
    nc = non_concentration_records(args.sizes, keep_prob=args.keep_prob, settings=settings,
                                   progress=not args.no_progress)
    t_nc = time.perf_counter() - t0
    t0 = time.perf_counter()
    kps = keep_prob_sensitivity(settings=settings)
    t_kp = time.perf_counter() - t0

    paths = []
    for name, draw in (("improper_kl.png", lambda ax: plot_improper_kl(kl, ax)),
                       ("non_concentration.png", lambda ax: plot_non_concentration(nc, ax)),
                       ("keep_prob_sensitivity.png",
                        lambda ax: plot_keep_prob_sensitivity(kps, ax))):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        draw(ax)
        fig.tight_layout()
        paths.append(atomic_savefig(fig, out / name, dpi=100))
        plt.close(fig)
    records = pd.DataFrame(kl + nc + kps.records)
    paths.append(atomic_write_text(out / "records.csv", records.to_csv(index=False)))
    df_nc = pd.DataFrame(nc)
    text = "\n".join([
        "# Pitfalls of MC dropout (toy data unless stated)", "",
        f"Settings: {settings}; non-concentration keep_prob {args.keep_prob}.", "",
        f"## 1. Improper KL (equivalence-report problem, float64; {t_kl:.1f} s)", "",
        _table(pd.DataFrame(kl), ["split"]).replace("| split |", "| theta |", 1), "",
        f"## 2. Non-concentration ({t_nc:.1f} s)", "",
        _table(df_nc[df_nc.metric != "wall_time_s"], ["method", "split"]).replace(
            "| method | split |", "| method | N |", 1), "",
        f"## 3. keep_prob sensitivity ({t_kp:.1f} s; predictive sd, original scale)", "",
        _table(pd.DataFrame(kps.records), ["method", "split"]).replace(
            "| method | split |", "| method | keep_prob |", 1), "",
    ])
    paths.append(atomic_write_text(out / "pitfalls.md", text))
    print(text)
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths))
    return 0
