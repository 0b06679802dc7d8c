r"""The report of the Mauna Loa experiment: its table, its figure (one panel per method) and
:func:`write_report`, which writes every output file of
:func:`comparisons.experiments.mauna_loa.run` atomically.

Files written under ``out``:

==========================  ======================================================================
``mauna_loa.png``           one panel per method: data, predictive mean, :math:`\pm 1` and
                            :math:`\pm 2` sd, the train / extrapolation boundary
``report.md``               data, settings, timings and :func:`records_markdown`'s table
``records.csv``             the tidy records ``dataset, method, split, metric, value``
``fit.csv``                 tidy records of the fit on the training weeks and of how each
                            network's training ended (steps, stopping rule, seasonal cycle), with
                            the ``device`` that produced each number
``losses.csv``              each network's training loss curve (per step, or block means of
                            consecutive steps when there are more than :data:`MAX_LOSS_ROWS`)
``losses.png``              the loss curves (:func:`plot_loss_curves`)
``predictions.npz``         query times, the data, each method's predictive mean and sd (ppm)
==========================  ======================================================================

``fit.csv`` is kept apart from ``records.csv`` so that the records of a run stay comparable
with those of earlier runs (``tests/test_frozen_records.py`` compares them with the frozen
records: bit for bit on the machine that froze them).

The result is taken as it comes (a
:class:`~comparisons.experiments.mauna_loa.MaunaLoaResult`): the report does not import the
experiment.

Example:
    >>> result = comparisons.experiments.mauna_loa.run(settings)  # doctest: +SKIP
    >>> paths = write_report(result, "outputs/mauna_loa")         # doctest: +SKIP
    >>> sorted(paths)                                             # doctest: +SKIP
    ['fit', 'loss_curves', 'losses', 'mauna_loa', 'predictions', 'records', 'report']
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
from comparisons.report.tables import markdown_table, records_frame
from comparisons.runner.store import atomic_savefig, atomic_write_bytes, atomic_write_text

__all__ = ["records_markdown", "comparison_markdown", "fit_markdown",
           "loss_curves_frame", "plot_loss_curves", "plot_mauna_loa_panel", "plot_mauna_loa",
           "report_markdown", "write_report"]

#: at most this many rows per network in ``losses.csv`` (longer runs: block means)
MAX_LOSS_ROWS = 5000

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
    frame = records_frame(records, "records")
    lookup = {(r.method, r.split, r.metric): r.value for r in frame.itertuples()}
    return _metrics_table({m: (m,) for m in dict.fromkeys(frame["method"])}, lookup, "method")


def _metrics_table(rows: Mapping[str, tuple], lookup: Mapping[tuple, float],
                   row_header: str) -> str:
    """The :data:`TABLE_COLUMNS` table: row label -> the key prefix of its values in
    ``lookup`` (keyed ``(*prefix, split, metric)``)."""
    columns = [f"{split}/{metric}" for split, metric, _ in TABLE_COLUMNS]

    def cell(row: str, column: str) -> str:
        split, metric = column.split("/", 1)
        return _ppm_cell(metric, lookup.get((*rows[row], split, metric)))

    return "\n".join(markdown_table(list(rows), columns, cell, row_header=row_header,
                                    labels=[label for _, _, label in TABLE_COLUMNS]))


def comparison_markdown(runs: Mapping[str, Sequence[Mapping] | pd.DataFrame]) -> str:
    """A Markdown table of the main metrics (:data:`TABLE_COLUMNS`) of several runs side by side:
    one row per method and run, the methods in the order they first appear, each method's runs in
    the order given; ``–`` where a run lacks a metric or a method.

    Args:
        runs: run label -> its tidy records (e.g. ``{"this run": result.records,
            "2,500 steps": pd.read_csv("docs/mauna_loa/records.csv")}``).

    Returns:
        The table (no trailing newline).

    Example:
        >>> a = [{"method": "gp_se", "split": "train", "metric": "rmse_ppm", "value": 0.5}]
        >>> b = [{"method": "gp_se", "split": "train", "metric": "rmse_ppm", "value": 0.7}]
        >>> [line.split("|")[1:3] for line in comparison_markdown({"new": a, "old": b})
        ...  .splitlines()[2:]]
        [[' gp_se (new) ', ' 0.500 '], [' gp_se (old) ', ' 0.700 ']]
    """
    if not runs:
        raise ValueError("runs must name at least one run, got none")
    lookup, methods = {}, {}
    for label, records in runs.items():
        for r in records_frame(records, f"the records of run {label!r}").itertuples():
            lookup[(r.method, label, r.split, r.metric)] = r.value
            methods.setdefault(r.method, None)
    rows = {f"{m} ({label})": (m, label) for m in methods for label in runs}
    return _metrics_table(rows, lookup, "method (run)")


#: (metric, column header) of the training / fit table, in column order
FIT_COLUMNS = (
    ("device", "device"),
    ("steps", "steps"),
    ("stopped_by_rule", "stopped by"),
    ("resumed_from_step", "resumed from step"),
    ("seconds_per_step", "ms / step"),
    ("train_rmse_ppm", "train RMSE (ppm)"),
    ("seasonal_amplitude_ppm", "annual residual (ppm)"),
    ("seasonal_amplitude_fraction", "of the data's annual"),
    ("seasonal_power_ratio_to_gp_se", "annual power / GP SE's"),
    ("seasonal_resolved", "seasons resolved"),
)

FIT_NOTE = (
    "Annual residual: amplitude of the 1-year cycle left in the residual (data - predictive "
    "mean) on the training weeks, by least squares with a quadratic trend removed; 'of the "
    "data's': that amplitude over the data's own annual amplitude; 'seasons resolved': at most "
    "a quarter of the data's annual amplitude left. 'ms / step': the training time of this run "
    "per step on the device named (a resumed run counts the steps since the resume; a network "
    "resumed at its end, which took no step, shows its whole history's)."
)


def fit_markdown(fit_records: Sequence[Mapping] | pd.DataFrame) -> str:
    """A Markdown table of the training and fit records (:data:`FIT_COLUMNS`): per method the
    device, the steps, what stopped the training, the train RMSE and the seasonal check; ``–``
    where not defined (the GPs are not trained by steps).

    Args:
        fit_records: ``result.fit_records`` of :func:`comparisons.experiments.mauna_loa.run`
            (tidy, with a ``device`` field).

    Returns:
        The table (no trailing newline).

    Example:
        >>> recs = [{"method": "gp_se", "split": "train", "metric": "seasonal_resolved",
        ...          "value": 1.0, "device": "cpu"}]
        >>> fit_markdown(recs).splitlines()[2].split("|")[-2].strip()
        'yes'
    """
    frame = records_frame(fit_records, "fit records", ("method", "metric", "value"))
    lookup = {(r.method, r.metric): r.value for r in frame.itertuples()}
    devices = ({} if "device" not in frame else
               {m: ", ".join(sorted(set(g["device"].astype(str))))
                for m, g in frame.groupby("method", sort=False)})

    def cell(method: str, metric: str) -> str:
        if metric == "device":
            return devices.get(method, "–")
        value = lookup.get((method, metric))
        if value is None or not math.isfinite(value):
            return "–"
        if metric == "steps" or metric == "resumed_from_step":
            return f"{int(value)}"
        if metric == "stopped_by_rule":
            return "stopping rule" if value else "step budget"
        if metric == "seasonal_resolved":
            return "yes" if value else "no"
        if metric == "seconds_per_step":
            return f"{1000 * value:.1f}"
        return f"{value:.3g}" if metric.endswith(("fraction", "gp_se")) else f"{value:.3f}"

    return "\n".join(markdown_table(list(dict.fromkeys(frame["method"])),
                                    [m for m, _ in FIT_COLUMNS], cell,
                                    labels=[label for _, label in FIT_COLUMNS]))


def report_markdown(result, threads: int | None = None,
                    compare: Mapping[str, Sequence[Mapping] | pd.DataFrame] | None = None) -> str:
    """The text of ``report.md``: data, settings, wall time, the table and its units, and with
    ``compare`` the table beside earlier runs' (:func:`comparison_markdown`).

    Args:
        result: from :func:`comparisons.experiments.mauna_loa.run`.
        threads: torch threads to report (default: ``torch.get_num_threads()``).
        compare: label -> the records of an earlier run (e.g. its ``records.csv``), shown
            beside this run's; the label ``"this run"`` is taken.
    """
    import torch

    cfg, data = result.settings, result.data
    threads = torch.get_num_threads() if threads is None else threads
    adam = "fused Adam" if getattr(cfg, "fused_adam", False) else "Adam"
    training = getattr(result, "training", {}) or {}
    devices = sorted({t["device_name"] for t in training.values()})
    timing = ("" if not training else "; training: " + ", ".join(  # GPs alone: no training
        f"{act} {t['steps']} steps in {t['train_time_s']:.1f} s" for act, t in training.items())
        + " (every run of a resumed network counted)")
    stop = ("no stopping rule" if getattr(cfg, "stop_window", None) is None else
            f"stopping rule: window {cfg.stop_window} steps, tolerance {cfg.stop_tolerance:g}")
    lines = [
        "# Mauna Loa CO2: extrapolation with dropout networks and GPs",
        "",
        f"- data: statsmodels co2, weekly (stride {data.stride}), {len(data.time)} weeks, "
        f"{int(data.interpolated.sum())} interpolated; training {data.time[0]:.2f}-"
        f"{data.train_end:.2f} ({data.num_train} weeks, train_fraction {cfg.train_fraction:g}), "
        f"held out {data.num_heldout} weeks to {data.time[-1]:.2f}, predicted to "
        f"{data.horizon:.2f} (extrapolation {cfg.extrapolation:g} x the training span)",
        f"- networks: {cfg.hidden_layers} x {cfg.hidden_units}, keep_prob {cfg.keep_prob:g} "
        f"on every hidden layer, input not dropped, "
        f"at most {cfg.iterations} {adam} steps (lr {cfg.lr:g}, batch {cfg.batch_size}; {stop}), "
        f"tau {cfg.tau:g}, T = {cfg.num_samples} function draws, {cfg.net_dtype}, seed "
        f"{cfg.seed}; trained and drawn on {', '.join(devices) or 'cpu'}",
        f"- GPs: exact, {cfg.gp_iterations} Adam steps (lr {cfg.gp_lr:g}) on the marginal "
        f"likelihood, conditioned on one training week in {cfg.gp_stride}",
        f"- torch threads {threads}; wall time {result.wall_time_s:.1f} s{timing}",
        "",
        records_markdown(result.records),
        "",
        "Units: ppm; sd includes the observation noise (1/tau for MC dropout, the fitted noise "
        "for the GPs); 'extrapolation' = query times after the last training week.",
    ]
    fit_records = getattr(result, "fit_records", None)
    if fit_records:
        lines += ["", "## Training and the fit of the training weeks", "",
                  fit_markdown(fit_records), "", FIT_NOTE]
    if compare:
        if "this run" in compare:
            raise ValueError("compare: the label 'this run' is taken by this run's records")
        lines += ["", "## Beside " + ", ".join(compare), "",
                  comparison_markdown({"this run": result.records, **compare})]
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


def write_report(result, out: str | os.PathLike,
                 compare: Mapping[str, Sequence[Mapping] | pd.DataFrame] | None = None
                 ) -> dict[str, Path]:
    """Write ``mauna_loa.png``, ``report.md``, ``records.csv``, ``predictions.npz`` and, when
    the result has them, ``fit.csv``, ``losses.csv`` and ``losses.png`` under ``out`` (each
    atomically, :mod:`comparisons.runner.store`).

    Args:
        result: from :func:`comparisons.experiments.mauna_loa.run`.
        out: the output folder (created if needed).
        compare: earlier runs' records shown beside this run's in ``report.md`` (see
            :func:`report_markdown`).

    Returns:
        ``{file stem: path}`` of every file written.
    """
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_mauna_loa(result, Figure(figsize=(9, 2.4 * len(result.predictions) + 0.6)))
    paths = {
        "mauna_loa": atomic_savefig(fig, out / "mauna_loa.png", dpi=90),
        "report": atomic_write_text(out / "report.md",
                                    report_markdown(result, compare=compare) + "\n"),
        "records": atomic_write_text(out / "records.csv",
                                     result.records_frame().to_csv(index=False)),
        "predictions": atomic_write_bytes(out / "predictions.npz", _predictions_npz(result)),
    }
    fit_records = getattr(result, "fit_records", None)
    if fit_records:
        paths["fit"] = atomic_write_text(out / "fit.csv",
                                         pd.DataFrame(fit_records).to_csv(index=False))
    losses = getattr(result, "losses", None)
    if losses:
        paths["losses"] = atomic_write_text(out / "losses.csv",
                                            loss_curves_frame(losses).to_csv(index=False))
        fig = Figure(figsize=(7, 3.6))
        ax = plot_loss_curves(fig.add_subplot(), losses)
        ax.set_title("training loss per step (minibatch, penalty included)", fontsize="medium",
                     loc="left")
        fig.tight_layout()
        paths["loss_curves"] = atomic_savefig(fig, out / "losses.png", dpi=90)
    return paths


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
            f"{result.data.horizon:.1f}\nnets {cfg.hidden_layers} x {cfg.hidden_units}, "
            f"keep_prob {cfg.keep_prob:g}, {_steps_text(result)} steps, T = {cfg.num_samples}",
            fontsize="medium",
        )
        returned.tight_layout()
    return returned



def _steps_text(result) -> str:
    """The networks' step counts (``"2500"``, or ``"relu 8000, tanh 12000"`` when they differ),
    the budget when the result says nothing of its training."""
    training = getattr(result, "training", {}) or {}
    steps = {act: t["steps"] for act, t in training.items()}
    if not steps:
        return str(result.settings.iterations)
    if len(set(steps.values())) == 1:
        return str(next(iter(steps.values())))
    return ", ".join(f"{act} {n}" for act, n in steps.items())


def loss_curves_frame(losses: Mapping[str, np.ndarray], max_rows: int = MAX_LOSS_ROWS
                      ) -> pd.DataFrame:
    """The loss curves as a table: one row per step, or per block of ``ceil(steps / max_rows)``
    consecutive steps when a network took more than ``max_rows`` steps.

    Args:
        losses: ``{network: per-step losses}`` (e.g. ``result.losses``).
        max_rows: at most this many rows per network.

    Returns:
        Columns ``network, first_step, last_step, loss_mean, loss_min, loss_max`` (steps count
        from 1; with one step per row the three losses are equal).

    Example:
        >>> loss_curves_frame({"relu": np.array([3.0, 2.0, 1.0])}, max_rows=2).loss_mean.tolist()
        [2.5, 1.0]
    """
    frames = []
    for name, values in losses.items():
        v = np.asarray(values, dtype=np.float64)
        block = max(1, math.ceil(len(v) / max_rows))
        starts = np.arange(0, len(v), block)
        frames.append(pd.DataFrame({
            "network": name, "first_step": starts + 1,
            "last_step": np.minimum(starts + block, len(v)),
            "loss_mean": np.add.reduceat(v, starts) / np.diff(np.append(starts, len(v))),
            "loss_min": np.minimum.reduceat(v, starts), "loss_max": np.maximum.reduceat(v, starts),
        }) if len(v) else pd.DataFrame(columns=["network", "first_step", "last_step",
                                                "loss_mean", "loss_min", "loss_max"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_loss_curves(ax, losses: Mapping[str, np.ndarray], *, max_points: int = 1000):
    """Training loss against step, one line per network, both axes logarithmic.

    Long runs are drawn as block means of ``ceil(steps / max_points)`` consecutive steps (the
    minibatch noise of single steps hides the trend), with the range of each block shaded.

    Args:
        ax: a matplotlib ``Axes`` (drawn on and returned).
        losses: ``{network: per-step losses}`` (e.g. ``result.losses``).
        max_points: at most this many points per line.

    Returns:
        ``ax``.

    Example:
        >>> plot_loss_curves(ax, result.losses)  # doctest: +SKIP
    """
    colours = {"relu": "tab:blue", "tanh": "tab:orange"}
    for name, values in losses.items():
        frame = loss_curves_frame({name: values}, max_rows=max_points)
        if frame.empty:
            continue
        step = (frame["first_step"] + frame["last_step"]) / 2
        colour = colours.get(name)
        block = int(frame["last_step"].iloc[0] - frame["first_step"].iloc[0] + 1)
        label = name if block == 1 else f"{name} (means of {block} steps)"
        ax.plot(step, frame["loss_mean"], color=colour, lw=1.0, label=label)
        if block > 1:
            ax.fill_between(step, frame["loss_min"], frame["loss_max"], color=colour, alpha=0.15,
                            lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if losses:
        ax.legend(fontsize="small")
    return ax
