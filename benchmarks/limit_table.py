"""The limit of the x100 UCI protocol on this CPU: the floating-point work of one cell of each
data set, the time it would take at the measured matrix-multiply rate, and the measured cell
time of the committed x100 runs beside it.

One cell (one split) of the MC dropout protocol (:mod:`comparisons.protocols.uci`) trains the
grid's ``E`` networks (dropout rates x taus) on the 80% fitting rows, scores each on the 20%
validation rows with ``T`` MC passes, retrains the selected one on all training rows and predicts
the test rows with ``T`` passes. A network ``Q -> H -> 1`` costs ``2 (QH + H)`` flops per row
forward and about twice that backward, so

    training   6 * epochs * (E * n_fit + n_train) * (QH + H)
    prediction 2 * T * (E * n_val + n_test) * (QH + H)

(epochs = the data set's base epochs x 100; masks, the optimiser and data movement are not
counted: they are the gap this table shows). The rate is the best of float32 matrix products of
sizes 256..2048 on the threads given (``--threads``), measured in this run.

Usage:
    python benchmarks/limit_table.py                 # every data set of the committed x100 runs
    python benchmarks/limit_table.py --quick         # two data sets, a short rate measurement
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comparisons.datasets.uci import load_uci, uci_info  # noqa: E402

RECORDS = [ROOT / "docs" / "uci" / "x100" / "records.csv",
           ROOT / "docs" / "uci" / "mc_x100_large" / "records.csv"]


def matmul_rate(sizes=(256, 512, 1024, 2048), repeats: int = 5) -> float:
    """The best float32 GFLOP/s of square matrix products on the current threads."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm up
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9)
    return best


def cell_flops(name: str, multiplier: float, num_samples: int) -> dict:
    """The work of one x``multiplier`` cell of ``name`` (split 0's sizes)."""
    raw = load_uci(name, 0)
    info = uci_info(name)
    n_train, n_test = len(raw.y_train), len(raw.y_test)
    n_val = int(round(0.2 * n_train))
    n_fit = n_train - n_val
    q, h = int(info.n_features), int(raw.n_hidden)
    grid = len(raw.dropout_rates) * len(raw.tau_values)
    epochs = max(1, int(round(raw.n_epochs * multiplier)))
    per_row = q * h + h
    train = 6.0 * epochs * (grid * n_fit + n_train) * per_row
    predict = 2.0 * num_samples * (grid * n_val + n_test) * per_row
    return {"dataset": name, "N": n_train, "Q": q, "H": h, "grid": grid, "epochs": epochs,
            "train_gflop": train / 1e9, "predict_gflop": predict / 1e9}


def measured_cell_seconds() -> pd.Series:
    """Mean cell wall time per data set of the committed x100 runs."""
    frames = [pd.read_csv(p) for p in RECORDS if p.is_file()]
    df = pd.concat(frames)
    df = df[(df.metric == "wall_time_s") & (df.epochs_multiplier == 100.0)]
    return df.groupby("dataset").value.mean()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="two small data sets and a short rate measurement (seconds)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    measured = measured_cell_seconds()
    names = ["yacht", "bostonHousing"] if args.quick else list(measured.index)
    rate = matmul_rate(sizes=(256, 512) if args.quick else (256, 512, 1024, 2048),
                       repeats=2 if args.quick else 5)
    print(f"float32 matrix product: {rate:.1f} GFLOP/s on {args.threads} thread(s)")
    rows = []
    for name in names:
        r = cell_flops(name, 100.0, 10_000)
        total = r["train_gflop"] + r["predict_gflop"]
        r["limit_s"] = total / rate
        r["measured_s"] = float(measured.get(name, float("nan")))
        r["measured_over_limit"] = r["measured_s"] / r["limit_s"]
        rows.append(r)
    table = pd.DataFrame(rows)
    cols = ["dataset", "N", "Q", "H", "grid", "epochs", "train_gflop", "predict_gflop",
            "limit_s", "measured_s", "measured_over_limit"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for _, row in table[cols].iterrows():
        cells = [str(row[c]) if isinstance(row[c], str) else f"{row[c]:.4g}" for c in cols]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
