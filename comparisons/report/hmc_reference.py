"""The summary table of HMC reference files: one row per reference, read from the manifests
that :func:`~comparisons.experiments.hmc_reference.write_reference` wrote.

Example:
    >>> write_summary(["docs/reference/hmc/yacht/split-00.nc"],
    ...               "docs/reference/hmc/summary.csv")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from comparisons.reference.reference_file import manifest_path
from comparisons.report.tables import format_value, markdown_table
from comparisons.runner.store import atomic_write_text

__all__ = ["SUMMARY_COLUMNS", "summary_frame", "write_summary"]

#: columns of ``summary.csv``, in order
SUMMARY_COLUMNS = (
    "dataset", "split", "converged", "max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences",
    "num_test_points", "draws_total", "draws_kept", "tau_standardized", "prior_length_scale",
    "backend", "chains", "warmup", "samples", "grad_evals_per_draw", "tree_depth_cap_share",
    "draws_to_converge_per_chain", "chain_time_to_converge_s", "wall_time_nuts_s",
    "chains_from_cache", "wall_time_s", "size_bytes", "file", "reasons")


def _row(path: Path) -> dict:
    manifest = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    conv, sampler = manifest["convergence"], manifest["sampler"]
    return {
        "dataset": manifest["dataset"], "split": manifest["split"],
        "converged": conv["converged"], "max_r_hat": conv["max_r_hat"],
        "min_ess_bulk": conv["min_ess_bulk"], "min_ess_tail": conv["min_ess_tail"],
        "divergences": conv["divergences"], "num_test_points": conv["num_test_points"],
        "draws_total": conv["num_chains"] * conv["num_draws"],
        "draws_kept": manifest["draws_kept"], "tau_standardized": manifest["tau_standardized"],
        "prior_length_scale": manifest["prior_length_scale"], "backend": sampler["backend"],
        "chains": sampler["num_chains"], "warmup": sampler["num_warmup"],
        "samples": sampler["num_samples"], "grad_evals_per_draw": manifest["grad_evals_per_draw"],
        "tree_depth_cap_share": manifest["tree_depth_cap_share"],
        "draws_to_converge_per_chain": manifest["draws_to_converge_per_chain"],
        "chain_time_to_converge_s": manifest["chain_time_to_converge_s"],
        "wall_time_nuts_s": manifest["wall_time_nuts_s"],
        "chains_from_cache": int(sum(manifest["chains_from_cache"])),
        "wall_time_s": manifest["wall_time_s"],
        "size_bytes": manifest["size_bytes"], "file": str(path),
        "reasons": "; ".join(conv["reasons"]),
    }


def summary_frame(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per reference file (its manifest's convergence summary, noise and cost), in the
    order given; columns :data:`SUMMARY_COLUMNS`."""
    return pd.DataFrame([_row(Path(p)) for p in paths], columns=list(SUMMARY_COLUMNS))


def write_summary(paths: Sequence[str | Path], csv_path: str | Path) -> Path:
    """Write :func:`summary_frame` as ``csv_path`` and a Markdown table beside it (``.md``),
    both atomically; returns the CSV path. A NUTS wall time whose chains came (partly) from the
    chain cache says so: it is not the time the chains took."""
    frame = summary_frame(paths)
    csv_path = Path(csv_path)
    atomic_write_text(csv_path, frame.to_csv(index=False))
    shown = ["converged", "max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences",
             "tau_standardized", "grad_evals_per_draw", "draws_to_converge_per_chain",
             "chain_time_to_converge_s", "wall_time_nuts_s", "size_bytes"]
    rows = [f"{r.dataset} split {r.split}" for r in frame.itertuples()]
    if len(set(rows)) < len(rows):  # the same data set and split in two files: name the files
        rows = [f"{row} ({file})" for row, file in zip(rows, frame["file"], strict=True)]

    by_label = dict(zip(rows, frame.to_dict("records"), strict=True))

    def cell(row_label, column):
        row = by_label[row_label]
        value = row[column]
        if column == "converged":
            return "yes" if bool(value) else "**no**"
        if column in ("min_ess_bulk", "min_ess_tail", "grad_evals_per_draw",
                      "chain_time_to_converge_s", "wall_time_nuts_s") and pd.notna(value):
            text = f"{float(value):,.0f}"
            if column == "wall_time_nuts_s" and row["chains_from_cache"]:
                text += (f" ({int(row['chains_from_cache'])} of {int(row['chains'])} chains "
                         "from the cache)")
            return text
        return str(value) if isinstance(value, str) or column == "divergences" \
            else format_value(value)

    atomic_write_text(csv_path.with_suffix(".md"),
                      "# HMC references\n\n"
                      + "\n".join(markdown_table(rows, shown, cell, row_header="reference"))
                      + "\n")
    return csv_path
