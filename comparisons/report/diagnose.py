r"""The report of one posterior-diagnostics run (:mod:`comparisons.experiments.diagnose`):
Markdown tables, figures and the files.

:func:`write_report` writes, under ``out`` and each atomically
(:mod:`comparisons.runner.store`):

=========================  ==================================================================
``<method>_train.nc``,     each method's ``DataTree`` at the training / test inputs
``<method>_test.nc``       (NetCDF; reload with ``az.from_netcdf``, a ``DataTree``), methods with draws only
``ppc.png``                :func:`plot_ppc`, one panel per method with draws
``loo_pit.png``            :func:`plot_loo_pit`, one panel per method with draws
``bands.png``              toy only: :func:`plot_predictive_bands`
``records.csv``            the tidy records (``dataset, method, split, metric, value, note``)
``report.md``              the settings, :func:`diagnose_markdown`'s tables and the warnings
=========================  ==================================================================

``result`` is a :class:`~comparisons.experiments.diagnose.DiagnoseResult` everywhere here.
ArviZ is imported by the functions that use it, so ``import comparisons.report`` stays light.

Example:
    >>> recs = [{"method": "standard_dropout", "metric": "elpd_loo", "value": float("nan"),
    ...          "note": "n/a (no posterior)"}]
    >>> diagnose_markdown(recs).splitlines()[4]
    '| standard_dropout | n/a (no posterior) |  |  |  |  |  |  |  |'
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from comparisons.datasets.toy1d import TOY1D_NAME
from comparisons.inference_data.base import CHAIN_DIM, DRAW_DIM
from comparisons.inference_data.netcdf import write_datatree
from comparisons.report.plot_collection import plot_collection_on
from comparisons.report.plots import finish_toy_axes, plot_predictive_band, toy_ylim
from comparisons.report.styles import method_label
from comparisons.report.tables import format_value, markdown_table
from comparisons.runner.store import atomic_savefig, atomic_write_text
from vi_dropout.validation import check_positive

__all__ = [
    "TABLE_ORDER",
    "diagnose_markdown",
    "plot_loo_pit",
    "plot_ppc",
    "predictive_subset",
    "plot_predictive_bands",
    "report_markdown",
    "write_report",
]

#: the rows of every table, in this order (methods not listed follow in record order)
TABLE_ORDER = ("mc_dropout", "standard_dropout", "gp_arccos1", "gp_arccos1_prior", "hmc")
#: HMC's convergence and cost columns, in table order
_HMC_COLUMNS = ("max_r_hat", "min_ess_bulk", "min_ess_tail", "num_divergent", "min_bfmi",
                "grad_evals_per_draw", "prior_length_scale", "tau_standardized", "num_train",
                "chains_from_cache", "chain_wall_time_sum_s")


# ------------------------------------------------------------------------------- tables
def _section(values: Mapping, notes: Mapping, methods: Sequence[str], cols: Sequence[str],
             labels: Sequence[str] | None = None) -> list[str]:
    """One table: a missing cell is empty, a non-finite value with a note shows the note."""
    def cell(m: str, c: str) -> str:
        if (m, c) not in values:
            return ""
        v, note = values[(m, c)], notes.get((m, c), "")
        return note if not math.isfinite(v) and note else format_value(v)

    return markdown_table(methods, cols, cell, labels=labels)


def diagnose_markdown(records: Sequence[Mapping[str, Any]], warnings_text: Sequence[str] = ()
                      ) -> str:
    """Markdown tables of one run: LOO and compare, test metrics, distances from HMC, HMC's
    diagnostics, and the surfaced warnings.

    Args:
        records: the run's tidy records (one data set and split).
        warnings_text: :attr:`~comparisons.experiments.diagnose.DiagnoseResult.warnings`.

    Returns:
        Markdown text (no trailing newline); an ``n/a`` metric shows its note.

    Example:
        >>> recs = [{"method": "hmc", "metric": "test_ll", "value": -1.25, "note": ""}]
        >>> diagnose_markdown(recs).splitlines()[-1]
        '| hmc | -1.250 |  |  |  |  |'
    """
    values = {(r["method"], r["metric"]): float(r["value"]) for r in records}
    notes = {(r["method"], r["metric"]): r.get("note", "") or "" for r in records}
    methods = [m for m in TABLE_ORDER if any(k[0] == m for k in values)]
    methods += [m for m in dict.fromkeys(r["method"] for r in records) if m not in methods]
    lines = ["PSIS-LOO on the training data and az.compare (stacking weights):", ""]
    lines += _section(values, notes, methods,
                      ["elpd_loo", "elpd_loo_se", "p_loo", "pareto_k_bad", "rank", "elpd_diff",
                       "dse", "weight"],
                      ["elpd_loo", "SE", "p_loo", "Pareto k bad", "rank", "elpd_diff",
                       "dSE", "weight"])
    lines += ["", "Test data (original scale; coverage of the central 95% Gaussian interval):",
              ""]
    lines += _section(values, notes, methods,
                      ["test_ll", "coverage_95", "rmse", "mean_pred_sd", "wall_time_s"],
                      ["test LL", "95% coverage", "RMSE", "mean pred. sd", "wall time (s)"])
    if ("standard_dropout", "test_ll") in values and ("mc_dropout", "test_ll") in values:
        lines += ["", "standard_dropout is mc_dropout's network (same training, same wall time) "
                  "predicting with the masks' means; its predictive is N(prediction, 1/tau)."]
    if any(k[1] == "smd_vs_hmc" for k in values):
        lines += _hmc_sections(values, notes, methods)
    if warnings_text:
        lines += ["", "Warnings surfaced during the run:", ""]
        lines += [f"- {w}" for w in warnings_text]
    return "\n".join(lines)


def _hmc_sections(values: Mapping, notes: Mapping, methods: Sequence[str]) -> list[str]:
    """The distances from HMC (overall and per toy region) and HMC's convergence table."""
    lines = ["", "Distance of each test predictive (moment-matched Gaussian) from HMC's "
             "(mean over test points; var_ratio: geometric mean of var / var_hmc; W2 in "
             "units of the training-target sd):", ""]
    lines += _section(values, notes, methods,
                      [f"{d}_vs_hmc" for d in ("smd", "var_ratio", "kl", "w2", "tv")],
                      ["smd", "var_ratio", "KL", "W2 / s_y", "TV"])
    regions = [r for r in ("train", "gap", "extrapolation")
               if ("hmc", f"tv_vs_hmc[{r}]") in values]
    if regions:
        lines += ["", "The same per region of the test grid (toy):", ""]
        cols = [f"{d}_vs_hmc[{r}]" for d in ("smd", "var_ratio", "tv") for r in regions]
        lines += _section(values, notes, methods, cols,
                          [f"{d}[{r}]" for d in ("smd", "var_ratio", "TV") for r in regions])
    cols = [c for c in _HMC_COLUMNS if ("hmc", c) in values]
    lines += ["", "HMC convergence (hmc_summary of f at the training inputs; "
              "chain_wall_time_sum_s: the chains' own warmup + sampling time when they were "
              "computed, also when loaded from the cache):", ""]
    lines += _section(values, {}, ["hmc"], cols)
    problems = notes.get(("hmc", "max_r_hat"), "")
    lines += ["", "HMC diagnostics: " + (problems if problems else "no problems flagged")]
    return lines


# ------------------------------------------------------------------------------ figures
def _draw_output(result, method: str):
    """``result.methods[method]`` if that method has posterior draws; else ``ValueError``."""
    methods = getattr(result, "methods", None)
    if not isinstance(methods, Mapping) or not hasattr(result, "dataset"):
        raise ValueError(f"result must be a DiagnoseResult, got {type(result).__name__}")
    if method not in methods:
        raise ValueError(f"method must be one of {list(methods)}, got {method!r}")
    out = methods[method]
    if out.idata_train is None:
        raise ValueError(f"method {method!r} has no posterior draws ({out.loo_note}); choose one "
                         f"of {[m for m, o in methods.items() if o.idata_train is not None]}")
    return out


def predictive_subset(tree: xr.DataTree, num_samples: int, seed: int = 0) -> xr.DataTree:
    """``posterior_predictive`` (``num_samples`` draws picked at random without replacement,
    as one chain) and ``observed_data`` of ``tree``: what a predictive check draws.

    Example:
        >>> predictive_subset(tree, 50).posterior_predictive.sizes["draw"]  # doctest: +SKIP
        50
    """
    pp = tree.posterior_predictive.to_dataset().stack(sample=(CHAIN_DIM, DRAW_DIM))
    n = int(pp.sizes["sample"])
    pick = np.sort(np.random.default_rng(seed).choice(n, min(int(num_samples), n), replace=False))
    sub = (pp.isel(sample=pick).drop_vars(["sample", CHAIN_DIM, DRAW_DIM])
           .rename(sample=DRAW_DIM).expand_dims({CHAIN_DIM: 1})
           .transpose(CHAIN_DIM, DRAW_DIM, ...)
           .assign_coords({CHAIN_DIM: [0], DRAW_DIM: np.arange(len(pick))}))
    return xr.DataTree.from_dict({"posterior_predictive": sub,
                                  "observed_data": tree.observed_data.to_dataset()})


def plot_ppc(result, method: str, ax, num_pp_samples: int = 50):
    """arviz-plots' ``plot_ppc_dist`` (KDE of the observed ``y`` against ``num_pp_samples``
    posterior-predictive draws, :func:`predictive_subset`) of ``method`` at the training
    inputs, drawn into ``ax``.

    Args:
        result: a ``DiagnoseResult``; method: a method with draws.
        ax: matplotlib ``Axes``; num_pp_samples: predictive draws to overlay.

    Returns:
        ``ax``.

    Example:
        >>> plot_ppc(result, "mc_dropout", ax)  # doctest: +SKIP
    """
    import arviz_plots as azp

    out = _draw_output(result, method)
    small = predictive_subset(out.idata_train, num_pp_samples)
    drawn = small.posterior_predictive.to_dataset().stack(sample=(CHAIN_DIM, DRAW_DIM))
    azp.plot_ppc_dist(small, kind="kde", num_samples=int(small.posterior_predictive.sizes["draw"]),
                      plot_collection=plot_collection_on(ax, drawn,
                                                         aes={"overlay_ppc": ["sample"]}))
    ax.set_title(f"{result.dataset}: PPC, {method_label(method)} (training data)")
    return ax


def plot_loo_pit(result, method: str, ax):
    """arviz-plots' ``plot_loo_pit`` of ``method`` at the training inputs, drawn into ``ax``:
    the ECDF of the PSIS-LOO probability integral transform minus the uniform one, with the
    p-value of arviz-stats' uniformity test (``method="pot_c"``, level 0.01); a calibrated
    LOO predictive gives uniform PIT values. Where arviz-stats cannot smooth the weights (too
    few draws, or draws whose largest ratios tie: the LOO table says which), the panel says so
    instead.

    Returns:
        ``ax``.

    Example:
        >>> plot_loo_pit(result, "hmc", ax)  # doctest: +SKIP
    """
    import arviz_plots as azp

    out = _draw_output(result, method)
    title = f"{result.dataset}: LOO-PIT, {method_label(method)}"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", UserWarning)
            azp.plot_loo_pit(out.idata_train, method="pot_c",
                             plot_collection=plot_collection_on(ax, out.idata_train))
    except ValueError as err:  # arviz-stats' PSIS refused these draws
        ax.cla()
        reason = out.loo_note or f"n/a (arviz-stats: {err})"
        ax.text(0.5, 0.5, f"LOO-PIT {reason}", ha="center", va="center", wrap=True,
                transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(title)
    return ax


def plot_predictive_bands(result, ax, num_sd: float = 2.0,
                          methods: Sequence[str] | None = None):
    r"""Test predictive means :math:`\mu \pm` ``num_sd`` :math:`\sigma` of every method over
    ``x`` on the toy, with the training intervals shaded, the data and the true function.

    Args:
        result: a toy1d ``DiagnoseResult``.
        ax: matplotlib ``Axes``.
        num_sd: half-width of the bands in predictive sds.
        methods: which methods (default: all).

    Returns:
        ``ax``.

    Example:
        >>> plot_predictive_bands(result, ax)  # doctest: +SKIP
    """
    if result.dataset != TOY1D_NAME:
        raise ValueError(f"plot_predictive_bands needs a toy1d result, got {result.dataset!r}")
    num_sd = check_positive(num_sd, "num_sd")
    methods = list(result.methods) if methods is None else list(methods)
    bad = [m for m in methods if m not in result.methods]
    if bad:
        raise ValueError(f"methods must be among {list(result.methods)}, got unknown {bad}")
    data = result.data
    x = data.x_test_raw
    for i, (a, b) in enumerate(data.train_intervals):
        ax.axvspan(a, b, color="0.9", lw=0, label="training intervals" if i == 0 else None)
    ylim = toy_ylim(data)
    for m in methods:
        out = result.methods[m]
        plot_predictive_band(ax, x, out.mean, out.var, m, ylim, num_sd=num_sd, alpha=0.15,
                             lw=1.5, edges=True)
    return finish_toy_axes(ax, data, x, ylim, f"{result.dataset}: test predictive of every method")


# -------------------------------------------------------------------------------- files
def _save_panels(result, draw, methods: Sequence[str], path: Path) -> Path:
    """One panel per method drawn by ``draw(result, method, ax)``, saved atomically (a bare
    ``Figure``: no pyplot state, whatever the backend)."""
    fig = Figure(figsize=(4.2 * len(methods), 3.6))
    axes = fig.subplots(1, len(methods), squeeze=False)
    for ax, method in zip(axes[0], methods):
        draw(result, method, ax)
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=90)


def _save_bands(result, path: Path) -> Path:
    fig = Figure(figsize=(8, 4.5))
    plot_predictive_bands(result, fig.subplots())
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=100)


def report_markdown(result, outputs_s: float) -> str:
    """``report.md``: title, settings (dataset and split are in the title), wall times, then
    :func:`diagnose_markdown` of the records and warnings (trailing newline).

    Args:
        result: a ``DiagnoseResult``.
        outputs_s: seconds spent writing the other outputs (NetCDF, figures).

    Example:
        >>> report_markdown(result, 2.0).splitlines()[0]  # doctest: +SKIP
        '# Posterior diagnostics: toy1d, split 0'
    """
    shown = {k: v for k, v in result.settings.items() if k not in ("dataset", "split")}
    header = [f"# Posterior diagnostics: {result.dataset}, split {result.split}", "",
              "Settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()), "",
              f"Wall time: {result.wall_time_s:.1f} s for the methods, "
              f"{result.wall_time_s + outputs_s:.1f} s with the outputs.", ""]
    return "\n".join(header) + diagnose_markdown(result.records, result.warnings) + "\n"


def write_report(result, out: str | os.PathLike) -> dict[str, Path]:
    """Write the report of one run under ``out`` (created if needed), every file atomically
    (the table in the module docstring).

    Args:
        result: a :class:`~comparisons.experiments.diagnose.DiagnoseResult`.
        out: the output folder.

    Returns:
        ``{"<method>_train": ..., "<method>_test": ...}`` (NetCDF, methods with draws), then
        ``"ppc"``, ``"loo_pit"``, ``"bands"`` (toy only), ``"records_csv"`` and ``"report"``,
        in the order written.

    Example:
        >>> paths = write_report(result, "outputs/diagnose/toy1d")  # doctest: +SKIP
        >>> paths["report"].name  # doctest: +SKIP
        'report.md'
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths: dict[str, Path] = {}
    for method, mo in result.methods.items():
        for part, idata in (("train", mo.idata_train), ("test", mo.idata_test)):
            if idata is not None:
                paths[f"{method}_{part}"] = write_datatree(idata, out / f"{method}_{part}.nc")
    draw_methods = [m for m, mo in result.methods.items() if mo.idata_train is not None]
    paths["ppc"] = _save_panels(result, plot_ppc, draw_methods, out / "ppc.png")
    paths["loo_pit"] = _save_panels(result, plot_loo_pit, draw_methods, out / "loo_pit.png")
    if result.dataset == TOY1D_NAME:
        paths["bands"] = _save_bands(result, out / "bands.png")
    outputs_s = time.perf_counter() - t0
    paths["records_csv"] = atomic_write_text(out / "records.csv",
                                             pd.DataFrame(result.records).to_csv(index=False))
    paths["report"] = atomic_write_text(out / "report.md", report_markdown(result, outputs_s))
    return paths
