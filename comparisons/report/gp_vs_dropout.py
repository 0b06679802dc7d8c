r"""The report of one MC dropout vs exact GPs comparison
(:mod:`comparisons.experiments.gp_vs_dropout`): Markdown tables, the toy figure and the files.

:func:`write_report` writes, under ``out`` and each atomically
(:mod:`comparisons.runner.store`):

=================  =================================================================
``report.md``      the settings, :func:`records_markdown`'s tables and the wall times
``records.csv``    the tidy records (``dataset, method, split, metric, value`` + settings)
``records.json``   the same records as JSON
``toy1d.png``      toy only: MC dropout vs every GP, one panel each
                   (:func:`plot_toy1d_comparison`)
=================  =================================================================

Example:
    >>> recs = [{"dataset": "d", "method": "mc_dropout", "split": 0, "metric": "rmse",
    ...          "value": 1.5}]
    >>> records_markdown(recs).splitlines()[2]
    '| mc_dropout | 1.500 | – | – | – | – |'
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from comparisons.datasets.toy1d import TOY1D_NAME
from comparisons.metrics.distances import DISTANCE_METRICS
from comparisons.report.plots import finish_toy_axes, plot_predictive_band, toy_ylim
from comparisons.report.styles import method_label
from comparisons.report.tables import format_value, markdown_table
from comparisons.runner.store import atomic_write_bytes, atomic_write_text
from vi_dropout.validation import check_positive

__all__ = ["DROPOUT_METHOD", "PERFORMANCE_METRICS", "TOY_REGIONS", "records_markdown", "report_markdown", "plot_toy1d_comparison", "save_toy1d_figure",
           "write_report"]

DROPOUT_METHOD = "mc_dropout"
PERFORMANCE_METRICS = ("rmse", "test_ll", "coverage_95", "mean_pred_sd", "wall_time_s")
#: regions of the toy's test grid with their own distances (``kl[gap]`` etc.)
TOY_REGIONS = ("train", "gap", "extrapolation")


def records_markdown(records: Sequence[dict]) -> str:
    """Markdown tables of one comparison: accuracy / calibration per method, the distances of MC
    dropout's predictive from every GP's, and (toy) the distances per region.

    Args:
        records: the run's tidy records (one data set and split).

    Returns:
        Markdown text (no trailing newline); numbers by
        :func:`~comparisons.report.tables.format_value`.

    Example:
        >>> recs = [{"dataset": "d", "method": "mc_dropout", "split": 0, "metric": "rmse",
        ...          "value": 1.0}]
        >>> records_markdown(recs).splitlines()[0]
        '| method | rmse | test_ll | coverage_95 | mean_pred_sd | wall_time_s |'
    """
    values = {(r["method"], r["metric"]): float(r["value"]) for r in records}
    methods = list(dict.fromkeys(r["method"] for r in records))
    gps = [m for m in methods if m != DROPOUT_METHOD]

    def cell(method, metric):
        return format_value(values.get((method, metric)))

    lines = markdown_table(methods, PERFORMANCE_METRICS, cell)
    if gps and any((gps[0], d) in values for d in DISTANCE_METRICS):
        lines += ["", "Distance of MC dropout's moment-matched predictive from each GP's "
                  "(mean over test points; var_ratio: geometric mean of var_dropout / var_gp; "
                  "w2 in units of the training-target sd):", ""]
        lines += markdown_table(gps, list(DISTANCE_METRICS), cell)
        regions = [r for r in TOY_REGIONS if (gps[0], f"kl[{r}]") in values]
        if regions:
            cols = [f"{d}[{r}]" for d in ("smd", "var_ratio", "kl") for r in regions]
            lines += ["", "Per region of the test grid:", ""]
            lines += markdown_table(gps, cols, cell)
    return "\n".join(lines)


def report_markdown(result) -> str:
    """The whole ``report.md`` of a result: title, data sizes, settings, the tables of
    :func:`records_markdown` and the wall times (no trailing newline).

    Args:
        result: a :class:`~comparisons.experiments.gp_vs_dropout.GPvsDropoutResult`.
    """
    s, drop = result.settings, result.dropout
    settings = (f"epochs x{s.epochs_multiplier:g}, T = {s.num_samples}, "
                f"max grid {s.max_grid or 'all'}; selected dropout rate {drop.dropout_rate:g}, "
                f"tau {drop.tau:g}; GPs: {s.gp_optimizer}, up to {s.gp_iterations} "
                f"iterations, float64 Cholesky; {result.num_threads} torch thread(s)")
    n_train, n_test = result.data.x_train.shape[0], result.data.x_test.shape[0]
    return "\n".join([
        f"# MC dropout vs exact GPs: {result.dataset}, split {result.split}", "",
        f"N_train = {n_train}, N_test = {n_test}; {settings}.", "",
        records_markdown(result.records), "",
        f"total wall time {result.wall_time_s:.1f} s (MC dropout {drop.wall_time_s:.1f} s)"])


def plot_toy1d_comparison(result, ax, gp_method: str = "gp_arccos1",
                          num_sd: float = 2.0, ylim: tuple[float, float] | None = None):
    """Draw the toy data, MC dropout's and one GP's predictive means with ``±num_sd`` sd bands,
    the true function, and shade the gap and the extrapolation regions.

    Args:
        result: a toy1d :class:`~comparisons.experiments.gp_vs_dropout.GPvsDropoutResult`.
        ax: a matplotlib ``Axes``.
        gp_method: the GP to draw next to MC dropout (a key of ``result.predictions``).
        num_sd: half-width of the bands in predictive standard deviations.
        ylim: y-limits (default: the true function's range plus half of it on each side, so a
            huge prior band does not flatten the picture).

    Returns:
        ``ax`` (two mean lines, two bands, the true function, the data, the shaded regions).

    Example:
        >>> fig, ax = plt.subplots()  # doctest: +SKIP
        >>> plot_toy1d_comparison(result, ax, "gp_arccos1_prior")  # doctest: +SKIP
    """
    if result.dataset != TOY1D_NAME:
        raise ValueError(f"plot_toy1d_comparison needs a toy1d result, got {result.dataset!r}")
    if gp_method not in result.predictions:
        raise ValueError(f"gp_method must be one of {sorted(result.predictions)}, got "
                         f"{gp_method!r}")
    num_sd = check_positive(num_sd, "num_sd")
    data = result.data
    x = data.x_test_raw
    lo_t, hi_t = data.train_bounds
    for (_, a), (b, _) in zip(data.train_intervals[:-1], data.train_intervals[1:]):
        ax.axvspan(a, b, color="0.85", alpha=0.6, lw=0, label="gap")
    ax.axvspan(x[0], lo_t, color="0.93", lw=0, label="extrapolation")
    ax.axvspan(hi_t, x[-1], color="0.93", lw=0)
    if ylim is None:
        ylim = toy_ylim(data)
    for method in (DROPOUT_METHOD, gp_method):
        mean, var = result.predictions[method]
        plot_predictive_band(ax, x, mean, var, method, ylim, num_sd=num_sd,
                             label=f"{method_label(method)} mean ± {num_sd:g} sd")
    return finish_toy_axes(ax, data, x, ylim, f"MC dropout vs {method_label(gp_method)}")


def save_toy1d_figure(result, path: str | Path) -> Path:
    """Draw MC dropout vs every GP of a toy result (one panel each, :func:`plot_toy1d_comparison`)
    and write it atomically as a 128-colour palette PNG (about 3x smaller than RGB, visually the
    same for flat colours and bands).

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    gps = [m for m in result.predictions if m != DROPOUT_METHOD]
    ncols = 2 if len(gps) > 1 else 1
    nrows = (len(gps) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 3.6 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    for ax, method in zip(axes.flat, gps):
        plot_toy1d_comparison(result, ax, method)
    for ax in list(axes.flat)[len(gps):]:
        ax.set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    small = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors=128).save(small, format="PNG", optimize=True)
    return atomic_write_bytes(path, small.getvalue())


def write_report(result, out: str | Path) -> dict[str, Path]:
    """Write the report of one comparison under ``out`` (created if needed), every file
    atomically.

    Args:
        result: a :class:`~comparisons.experiments.gp_vs_dropout.GPvsDropoutResult`.
        out: the output folder.

    Returns:
        ``{"report": report.md, "records_csv": records.csv, "records_json": records.json}`` plus
        ``"figure": toy1d.png`` for the toy, in the order written.

    Example:
        >>> paths = write_report(result, "runs/gp/toy1d")  # doctest: +SKIP
        >>> paths["report"].name  # doctest: +SKIP
        'report.md'
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": atomic_write_text(out / "report.md", report_markdown(result) + "\n"),
        "records_csv": atomic_write_text(out / "records.csv",
                                         pd.DataFrame(result.records).to_csv(index=False)),
        "records_json": atomic_write_text(out / "records.json",
                                          json.dumps(result.records, indent=1) + "\n"),
    }
    if result.dataset == TOY1D_NAME:
        paths["figure"] = save_toy1d_figure(result, out / "toy1d.png")
    return paths
