"""The tiny run of every experiment gives, bit for bit, the records frozen in
``tests/data/frozen_records`` (made at commit 7f5bc5c, before ``comparisons/`` was split into
subpackages). Same random streams, same numbers: a refactor that changes a single value fails here.

Timing metrics (``*time*``, ``*wall*``, ``*seconds*``) are left out; everything else is compared
with ``==`` on the float64 values as written (shortest round-trip repr).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from comparisons.cli.main import main

FROZEN = Path(__file__).parent / "data" / "frozen_records"
KEYS = ["dataset", "method", "split", "metric"]

#: the tiny command line of each experiment (``--out`` and ``--no-progress`` are added)
COMMANDS = {
    "uci": ["uci", "--dataset", "yacht", "--splits", "0-1", "--epochs-multiplier", "0.25",
            "--num-samples", "50", "--methods", "mc_dropout,gp"],
    "gp-vs-dropout": ["gp-vs-dropout", "--dataset", "toy1d", "--toy-num-train", "40",
                      "--epochs-multiplier", "0.01", "--num-samples", "50", "--gp-iterations",
                      "3", "--max-grid", "1"],
    "diagnose": ["diagnose", "--dataset", "toy1d", "--smoke"],
    "pitfalls": ["pitfalls", "--iterations", "50", "--num-samples", "20", "--sizes", "10,40",
                 "--hmc-max-train", "10", "--hmc-chains", "2", "--hmc-warmup", "20",
                 "--hmc-samples", "20", "--hmc-processes", "1", "--hmc-max-tree-depth", "5"],
    "mauna-loa": ["mauna-loa", "--iterations", "5", "--num-samples", "4", "--hidden-layers", "1",
                  "--hidden-units", "8", "--keep-prob", "0.8", "--seed", "1",
                  "--gp-iterations", "3", "--data-stride", "16"],
    "rotated-digit": ["rotated-digit", "--epochs", "1", "--num-samples", "4"],
}

#: the record files each experiment writes
RECORD_FILES = {"uci": ["records.csv"], "gp-vs-dropout": ["records.csv"],
                "diagnose": ["records.csv"], "pitfalls": ["records.csv"],
                "mauna-loa": ["mauna_loa_records.csv"],
                "rotated-digit": ["calibration.csv", "rotated_digit.csv"]}


def _read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"split": str})
    if "split" not in df:
        df["split"] = df["angle"].astype(str) if "angle" in df else ""
    return df


def tidy_records(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, keep the five tidy columns, drop timing metrics, sort."""
    df = pd.concat([f[[*KEYS, "value"]] for f in frames])
    df = df[~df.metric.str.contains("time|wall|seconds")].copy()
    df["split"] = df["split"].fillna("").astype(str)
    return df.sort_values(KEYS).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_tiny_run_reproduces_frozen_records(name, tmp_path):
    out = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*COMMANDS[name], "--out", str(out), "--no-progress"]) == 0
    got = tidy_records([_read(out / f) for f in RECORD_FILES[name]])
    frozen = tidy_records([_read(FROZEN / f"{name}.csv")])
    assert len(got) == len(frozen), f"{name}: {len(got)} records, frozen {len(frozen)}"
    assert got[KEYS].equals(frozen[KEYS]), f"{name}: other (dataset, method, split, metric) keys"
    diff = got["value"] != frozen["value"]
    both_nan = got["value"].isna() & frozen["value"].isna()
    changed = got[diff & ~both_nan]
    assert changed.empty, f"{name}: {len(changed)} values changed, e.g.\n{changed.head()}\n" \
                          f"frozen:\n{frozen[diff & ~both_nan].head()}"
