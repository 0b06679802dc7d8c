r"""The report of the Mauna Loa experiment: its table, its figure (one panel per method) and
:func:`write_report`, which writes every output file of
:func:`comparisons.experiments.mauna_loa.run` atomically.

Files written under ``out``:

==========================  ======================================================================
``mauna_loa.png``           one panel per method: data, predictive mean, :math:`\pm 1` and
                            :math:`\pm 2` sd, the train / extrapolation boundary
``report.md``               data, settings, timings and :func:`records_markdown`'s table
``records.csv``             the tidy records ``dataset, method, split, metric, value``
``predictions.npz``         query times, the data, each method's predictive mean and sd (ppm)
==========================  ======================================================================

The result is taken as it comes (a
:class:`~comparisons.experiments.mauna_loa.MaunaLoaResult`): the report does not import the
experiment.

Example:
    >>> result = comparisons.experiments.mauna_loa.run(settings)  # doctest: +SKIP
    >>> paths = write_report(result, "outputs/mauna_loa")         # doctest: +SKIP
    >>> sorted(paths)                                             # doctest: +SKIP
    ['mauna_loa', 'predictions', 'records', 'report']
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from comparisons.datasets.mauna_loa import MaunaLoaData
from comparisons.report.tables import markdown_table
from comparisons.runner.store import atomic_savefig, atomic_write_bytes, atomic_write_text

__all__ = ["records_markdown", "plot_mauna_loa_panel", "plot_mauna_loa", "report_markdown",
           "write_report"]

#: (split, metric, column header) of the table, in column order
TABLE_COLUMNS = (
    ("train", "rmse_ppm", "train RMSE (ppm)"),
    ("heldout", "rmse_ppm", "held-out RMSE (ppm)"),
    ("train", "mean_sd_ppm", "mean sd, train (ppm)"),
    ("heldout", "mean_sd_ppm", "mean sd, held-out (ppm)"),
    ("extrapolation", "mean_sd_ppm", "mean sd, extrapolation (ppm)"),
    ("extrapolation", "sd_at_horizon_ppm", "sd at horizon (ppm)"),
    ("heldout", "coverage_2sd", "held-out within 2 sd"),
    ("heldout", "mean_loglik", "held-out log-lik / week"),
    ("all", "wall_time_s", "wall time (s)"),
)


def _ppm_cell(metric: str, value: float | None) -> str:
    """Three decimals (one from 100 up, and for wall times); ``–`` where not defined."""
    if value is None or not math.isfinite(value):
        return "–"
    if metric == "wall_time_s":
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def records_markdown(records: Sequence[Mapping] | pd.DataFrame) -> str:
    """A Markdown table of the main metrics (:data:`TABLE_COLUMNS`): one row per method, ``–``
    where a metric is not defined (built by :func:`comparisons.report.tables.markdown_table`).

    Args:
        records: tidy records from :func:`comparisons.experiments.mauna_loa.run`.

    Returns:
        The table (no trailing newline).

    Example:
        >>> recs = [{"dataset": "d", "method": "gp_se", "split": "train", "metric": "rmse_ppm",
        ...          "value": 0.5}]
        >>> records_markdown(recs).splitlines()[2].split("|")[2].strip()
        '0.500'
    """
    frame = pd.DataFrame(list(records) if not isinstance(records, pd.DataFrame) else records)
    missing = {"method", "split", "metric", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"records lack the column(s) {sorted(missing)}")
    lookup = {(r.method, r.split, r.metric): r.value for r in frame.itertuples()}
    columns = [f"{split}/{metric}" for split, metric, _ in TABLE_COLUMNS]

    def cell(method: str, column: str) -> str:
        split, metric = column.split("/", 1)
        return _ppm_cell(metric, lookup.get((method, split, metric)))

    return "\n".join(markdown_table(list(dict.fromkeys(frame["method"])), columns, cell,
                                    labels=[label for _, _, label in TABLE_COLUMNS]))


def report_markdown(result, threads: int | None = None) -> str:
    """The text of ``report.md``: data, settings, wall time, the table and its units.

    Args:
        result: from :func:`comparisons.experiments.mauna_loa.run`.
        threads: torch threads to report (default: ``torch.get_num_threads()``).
    """
    import torch

    cfg, data = result.settings, result.data
    threads = torch.get_num_threads() if threads is None else threads
    step_s = [p.info["seconds_per_step"] for p in result.predictions.values()
              if "seconds_per_step" in p.info]
    lines = [
        "# Mauna Loa CO2: extrapolation with dropout networks and GPs",
        "",
        f"- data: statsmodels co2, weekly (stride {data.stride}), {len(data.time)} weeks, "
        f"{int(data.interpolated.sum())} interpolated; training {data.time[0]:.2f}-"
        f"{data.train_end:.2f} ({data.num_train} weeks, train_fraction {cfg.train_fraction:g}), "
        f"held out {data.num_heldout} weeks to {data.time[-1]:.2f}, predicted to "
        f"{data.horizon:.2f} (extrapolation {cfg.extrapolation:g} x the training span)",
        f"- networks: {cfg.hidden_layers} x {cfg.hidden_units}, drop_rate {cfg.drop_rate:g} "
        f"(keep_prob {cfg.keep_prob:g}) on every hidden layer, input not dropped, "
        f"{cfg.iterations} Adam steps (lr {cfg.lr:g}, batch {cfg.batch_size}), tau {cfg.tau:g}, "
        f"T = {cfg.num_samples} function draws, {cfg.net_dtype}, seed {cfg.seed}",
        f"- GPs: exact, {cfg.gp_iterations} Adam steps (lr {cfg.gp_lr:g}) on the marginal "
        f"likelihood, conditioned on one training week in {cfg.gp_stride}",
        f"- torch threads {threads}; wall time {result.wall_time_s:.1f} s"
        + (f"; {np.mean(step_s):.4f} s per training step" if step_s else ""),
        "",
        records_markdown(result.records),
        "",
        "Units: ppm; sd includes the observation noise (1/tau for MC dropout, the fitted noise "
        "for the GPs); 'extrapolation' = query times after the last training week.",
    ]
    return "\n".join(lines)


def _predictions_npz(result) -> bytes:
    arrays = {"time": result.data.prediction_times(result.settings.grid_step),
              "data_time": result.data.time, "data_co2": result.data.co2}
    for name, pred in result.predictions.items():
        arrays[f"{name}_mean"] = pred.mean
        if pred.sd is not None:
            arrays[f"{name}_sd"] = pred.sd
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def write_report(result, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``mauna_loa.png``, ``report.md``, ``records.csv`` and ``predictions.npz`` under
    ``out`` (each atomically, :mod:`comparisons.runner.store`).

    Args:
        result: from :func:`comparisons.experiments.mauna_loa.run`.
        out: the output folder (created if needed).

    Returns:
        ``{file stem: path}`` of every file written.
    """
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_mauna_loa(result, Figure(figsize=(9, 2.4 * len(result.predictions) + 0.6)))
    return {
        "mauna_loa": atomic_savefig(fig, out / "mauna_loa.png", dpi=90),
        "report": atomic_write_text(out / "report.md", report_markdown(result) + "\n"),
        "records": atomic_write_text(out / "records.csv",
                                     result.records_frame().to_csv(index=False)),
        "predictions": atomic_write_bytes(out / "predictions.npz", _predictions_npz(result)),
    }


# --------------------------------------------------------------------------------- plotting


def _default_ylim(data: MaunaLoaData) -> tuple[float, float]:
    lo, hi = float(data.co2.min()), float(data.co2.max())
    rng = hi - lo
    return lo - 0.6 * rng, hi + 1.0 * rng


def plot_mauna_loa_panel(ax, data: MaunaLoaData, prediction, *,
                         ylim: tuple[float, float] | None = None, legend: bool = False):
    r"""One panel: data, predictive mean, :math:`\pm 1` and :math:`\pm 2` sd bands, boundary.

    The training weeks are drawn in red, the held-out weeks in grey, the predictive mean in
    blue with shaded :math:`\pm 2` sd (light) and :math:`\pm 1` sd (darker) bands when the
    method has a predictive sd, and the train / extrapolation boundary as a dashed blue line
    (as in the paper's Figure 2).

    Args:
        ax: a matplotlib ``Axes`` (drawn on and returned).
        data: the :class:`MaunaLoaData`.
        prediction: one :class:`~comparisons.experiments.mauna_loa.MethodPrediction`.
        ylim: y-limits in ppm (default: the data range, widened to leave room for the bands).
        legend: draw a legend.

    Returns:
        ``ax``.
    """
    n_tr = data.num_train
    t, mu = prediction.time, prediction.mean
    if prediction.sd is not None:
        sd = prediction.sd
        ax.fill_between(t, mu - 2 * sd, mu + 2 * sd, color="tab:blue", alpha=0.18, lw=0,
                        label=r"$\pm 2$ sd")
        ax.fill_between(t, mu - sd, mu + sd, color="tab:blue", alpha=0.35, lw=0,
                        label=r"$\pm 1$ sd")
    ax.plot(data.time[:n_tr], data.co2[:n_tr], color="tab:red", lw=0.8, label="training data")
    ax.plot(data.time[n_tr:], data.co2[n_tr:], color="0.45", lw=0.8, label="held-out data")
    ax.plot(t, mu, color="tab:blue", lw=1.0, label="predictive mean")
    ax.axvline(data.train_end, color="tab:blue", ls="--", lw=1.0, label="end of training data")
    ax.set_xlim(float(t[0]), float(t[-1]))
    ax.set_ylim(*(ylim if ylim is not None else _default_ylim(data)))
    ax.set_title(prediction.label, fontsize="medium", loc="left")
    ax.set_ylabel(r"CO$_2$ (ppm)")
    if legend:
        ax.legend(loc="upper left", fontsize="small", ncol=3)
    return ax


def plot_mauna_loa(result, axes=None, *, ylim: tuple[float, float] | None = None):
    """All panels of a :class:`~comparisons.experiments.mauna_loa.MaunaLoaResult`, one method
    per ``Axes``.

    Args:
        result: from :func:`comparisons.experiments.mauna_loa.run`.
        axes: a matplotlib ``Figure`` (one column of subplots is added to it), or a sequence /
            array of at least ``len(result.predictions)`` ``Axes`` (extra ones are hidden), or
            ``None`` (a new figure).
        ylim: common y-limits in ppm (default: see :func:`plot_mauna_loa_panel`).

    Returns:
        What was passed as ``axes`` (the new ``Figure`` when ``None``).

    Example:
        >>> fig = plot_mauna_loa(result, Figure(figsize=(9, 13)))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    preds = list(result.predictions.values())
    if not preds:
        raise ValueError("result holds no predictions to plot")
    returned = axes
    if axes is None:
        returned = axes = plt.figure(figsize=(9, 2.6 * len(preds)))
    if isinstance(axes, Figure):
        axs = list(np.ravel(axes.subplots(len(preds), 1, sharex=True)))
    else:
        axs = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axs) < len(preds):
            raise ValueError(
                f"axes must hold at least {len(preds)} Axes (one per method), got {len(axs)}"
            )
    for i, (ax, pred) in enumerate(zip(axs, preds)):
        plot_mauna_loa_panel(ax, result.data, pred, ylim=ylim, legend=(i == 0))
    for ax in axs[len(preds):]:
        ax.set_visible(False)
    axs[len(preds) - 1].set_xlabel("year")
    if isinstance(returned, Figure):
        cfg = result.settings
        returned.suptitle(
            f"Mauna Loa CO$_2$: trained up to {result.data.train_end:.1f}, predicted to "
            f"{result.data.horizon:.1f}; nets {cfg.hidden_layers} x {cfg.hidden_units}, "
            f"drop_rate {cfg.drop_rate:g}, {cfg.iterations} steps, T = {cfg.num_samples}",
            fontsize="medium",
        )
        returned.tight_layout()
    return returned

