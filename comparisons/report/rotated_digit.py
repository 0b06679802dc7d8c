"""The report of the rotated-digit experiment: the Figure-4 style panel, the reliability
diagram, the tables and :func:`write_report`, which writes every output file of
:func:`comparisons.experiments.rotated_digit.run` atomically.

Files written under ``out``:

=============================  =================================================================
``rotated_digit.png``          images, softmax input/output scatters, entropy / MI / variation
                               ratio vs angle (MC dropout and standard dropout)
``reliability_diagram.png``    reliability diagram of MC vs standard dropout on the test split
``records.csv``                tidy records ``dataset, method, split, metric, value``: split =
                               the angle for the per-angle metrics, empty for the calibration
                               metrics (accuracy, ECE, NLL on the whole test split)
``report.md``                  settings, wall times, the calibration and rotated-digit tables
``rotated_digit_pyro.png``     only for ``path="pyro"``: the same panel for the LeNet trained
                               through the per-example ELBO (the reliability diagram and the
                               tables then hold both networks, and report.md the agreement)
=============================  =================================================================

Every plot takes an ``ax`` (or a figure for the whole panel) and returns it.

Example:
    >>> result = comparisons.experiments.rotated_digit.run(settings)  # doctest: +SKIP
    >>> sorted(write_report(result, "outputs/rotated_digit"))         # doctest: +SKIP
    ['records', 'reliability_diagram', 'report', 'rotated_digit']
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from comparisons.metrics.calibration import reliability_bins
from comparisons.report.calibration import plot_reliability_diagram
from comparisons.runner.store import atomic_savefig, atomic_write_text

__all__ = [
    "rotated_digit_table",
    "path_comparison_table",
    "frame_markdown",
    "report_markdown",
    "write_report",
    "plot_rotated_images",
    "plot_softmax_scatter",
    "plot_uncertainty_vs_angle",
    "plot_rotated_digit_figure",
]


def frame_markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A DataFrame as a Markdown table (floats as ``floatfmt``, ``nan`` where missing).

    Example:
        >>> frame_markdown(pd.DataFrame({"a": [0.5]})).splitlines()[2]
        '| 0.5000 |'
    """
    def fmt(v):
        if isinstance(v, float):
            return "nan" if math.isnan(v) else format(v, floatfmt)
        return str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |",
             "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |"
              for row in df.itertuples(index=False, name=None)]
    return "\n".join(lines)


def report_markdown(result) -> str:
    """The text of ``report.md`` for a
    :class:`~comparisons.experiments.rotated_digit.RotatedDigitResult`."""
    import torch

    s, data, hist = result.settings, result.data, result.history
    probs = result.test_probs
    cal_df = (pd.DataFrame(result.calibration)
              .pivot(index="method", columns="metric", values="value")
              .loc[list(result.test_logits)].reset_index())
    cal_df = cal_df[["method", "accuracy", "ece", "nll"]].rename(
        columns={"ece": f"ECE ({s.num_bins} bins)", "nll": "NLL (nats)"})
    counts = {m: reliability_bins(p, data.y_test, s.num_bins).counts.tolist()
              for m, p in probs.items()}
    table = rotated_digit_table(result.sweep)
    table["angle_deg"] = [f"{a:g}" for a in table["angle_deg"]]
    lines = [
        f"# Dropout LeNet: rotated digit and calibration ({result.dataset})",
        "",
        f"- data: {data.description}",
        f"- model: LeNet conv(5x5,20)-ReLU-pool-conv(5x5,50)-ReLU-pool-FC500-ReLU-"
        f"Dropout(keep_prob={s.keep_prob:g})-FC{data.num_classes}, {data.image_size}x"
        f"{data.image_size} inputs",
        f"- training: Adam lr={s.lr:g}, weight_decay={s.weight_decay:g}, batch "
        f"{s.batch_size}, {s.epochs} epochs, seed {s.seed}; final training loss "
        f"{hist.epoch_losses[-1]:.4f}",
        f"- MC dropout: T = {s.num_samples} samples (masks of the last layer only; the conv "
        f"body is deterministic); rotated image: test row {result.row} (digit {s.digit}, "
        f"occurrence {s.digit_index})",
        f"- wall time: training {hist.wall_time_s:.1f} s, prediction {result.predict_time_s:.1f} "
        f"s, total {result.wall_time_s:.1f} s (torch threads: {torch.get_num_threads()})",
        "",
        f"## Calibration on the test split ({len(data.y_test)} images)",
        "",
        frame_markdown(cal_df),
        "",
        "Examples per confidence bin (low to high): "
        + "; ".join(f"{m} {c}" for m, c in counts.items()),
        "",
        f"## Rotated digit {s.digit} (entropies and MI in nats)",
        "",
        frame_markdown(table, ".3f"),
    ]
    if result.pyro_sweep is not None:
        lines += _pyro_markdown(result)
    return "\n".join(lines)


def _pyro_markdown(result) -> list[str]:
    """The ``path="pyro"`` sections of ``report.md``."""
    s, ph = result.settings, result.pyro_history
    agree = (pd.DataFrame(list(result.agreement))
             .pivot(index="method", columns="metric", values="value").reset_index())
    agree["agree"] = ["yes" if v else "no" for v in agree["agree"]]
    agree = agree[["method", "accuracy_diff", "accuracy_diff_se", "nll_diff", "nll_diff_se",
                   "agree"]]
    table = rotated_digit_table(result.pyro_sweep)
    table["angle_deg"] = [f"{a:g}" for a in table["angle_deg"]]
    comp = path_comparison_table(result.sweep, result.pyro_sweep)
    comp["angle_deg"] = [f"{a:g}" for a in comp["angle_deg"]]
    l_used = math.sqrt(ph.weight_decay * ph.num_data)
    how = ("the default l = sqrt(weight_decay * N)" if s.prior_length_scale is None
           else "as given")
    return [
        "",
        "## The same LeNet trained through the per-example ELBO (path \"pyro\")",
        "",
        f"- conversion: `vi_dropout.conversion.find_covered_layers` covers the two convolutions "
        f"and the two linear layers (keep_prob 1, 1, 1, {s.keep_prob:g}); the same initial "
        f"weights as the plain network",
        f"- objective: `vi_dropout.infer.per_example_elbo.PerExampleDropoutELBO` on "
        f"`vi_dropout.models.ModuleBNN` and `DropoutGuide` (categorical likelihood, one "
        f"weight draw per example), theta = {s.theta:g}, prior length scale l = "
        f"{l_used:.4g} ({how}; implied weight decay l^2/N = {ph.weight_decay:.3g} on the "
        f"keep_prob-1 layers), N = {ph.num_data}",
        f"- training: `pyro.infer.SVI` with `pyro.optim.Adam` on the means and bias means, "
        f"lr={s.lr:g}, batch {s.batch_size} (num_data = N), {s.epochs} epochs, seed {s.seed}; "
        f"final loss per training image (cross-entropy plus implied weight decay) "
        f"{ph.epoch_losses[-1]:.4f}; {ph.wall_time_s:.1f} s",
        "- prediction: the means loaded back into the module (W' = keep_prob * M), then the "
        "same MC dropout (T = "
        f"{s.num_samples}) and standard dropout as the plain network (the theta -> 0 limit)",
        "",
        "### Do the two paths agree? (pyro minus plain, test split)",
        "",
        "Per test image the paired difference of correctness and of -log p(y); they agree when "
        "|mean difference| <= 2 standard errors of those paired differences (the standard "
        "error holds the test-set sampling and the T-sample Monte Carlo error, not the "
        "randomness of the two trainings).",
        "",
        frame_markdown(agree),
        "",
        f"### Rotated digit {s.digit}, both paths (MC dropout; probabilities +- their MC "
        f"standard error over the T samples)",
        "",
        frame_markdown(comp, ".3f"),
        "",
        f"### Rotated digit {s.digit}, per-example ELBO network (entropies and MI in nats)",
        "",
        frame_markdown(table, ".3f"),
    ]


def path_comparison_table(plain, pyro, num_se: float = 2.0) -> pd.DataFrame:
    r"""Per angle, the MC dropout predictions of two sweeps side by side: predicted classes, the
    probability of the true digit with its MC standard error
    :math:`\operatorname{sd}_t(p_{t,a,d})/\sqrt{T}`, the mutual information, and whether the
    two probabilities differ by at most ``num_se`` combined standard errors.

    Example:
        >>> net = LeNet(8, seed=0)  # doctest: +SKIP
        >>> a = sweep_rotations(net, torch.rand(1, 8, 8), num_samples=4, digit=1)  # doctest: +SKIP
        >>> path_comparison_table(a, a)["within_2se"].all()  # doctest: +SKIP
        True
    """
    if plain.digit is None or pyro.digit is None:
        raise ValueError("path_comparison_table needs sweeps with a known digit")
    if not np.array_equal(plain.angles_deg, pyro.angles_deg):
        raise ValueError("plain and pyro must be sweeps over the same angles")
    d = plain.digit
    cols = {"angle_deg": plain.angles_deg}
    se = {}
    for name, r in (("plain", plain), ("pyro", pyro)):
        p = r.mc_probs[:, :, d].double()
        t = p.shape[0]
        se[name] = (p.std(0, unbiased=True) / math.sqrt(t)).numpy() if t > 1 else np.zeros(
            p.shape[1])
        cols[f"{name}_pred"] = r.summary.probs.argmax(-1).numpy()
        cols[f"{name}_prob_digit"] = p.mean(0).numpy()
        cols[f"{name}_prob_digit_se"] = se[name]
        cols[f"{name}_mutual_info"] = r.summary.mutual_information.double().numpy()
    diff = np.abs(cols["pyro_prob_digit"] - cols["plain_prob_digit"])
    cols[f"within_{num_se:g}se"] = diff <= num_se * np.sqrt(se["plain"] ** 2 + se["pyro"] ** 2)
    return pd.DataFrame(cols)


def write_report(result, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``rotated_digit.png``, ``reliability_diagram.png``, ``records.csv`` and
    ``report.md`` (and ``rotated_digit_pyro.png`` for ``path="pyro"``) of a :class:`~comparisons.experiments.rotated_digit.RotatedDigitResult` under
    ``out`` (atomically).

    Returns:
        ``{file stem: path}`` of every file written.
    """
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing left open

    out = Path(out)
    fig = plot_rotated_digit_figure(result.sweep, Figure(figsize=(12, 10)))
    paths = {"rotated_digit": atomic_savefig(fig, out / "rotated_digit.png", dpi=100)}
    fig = Figure(figsize=(6, 5))
    plot_reliability_diagram(result.test_probs, result.data.y_test, fig.add_subplot(),
                             num_bins=result.settings.num_bins)
    fig.tight_layout()
    paths["reliability_diagram"] = atomic_savefig(fig, out / "reliability_diagram.png", dpi=100)
    if result.pyro_sweep is not None:
        fig = plot_rotated_digit_figure(result.pyro_sweep, Figure(figsize=(12, 10)))
        fig.suptitle(f"LeNet trained through the per-example ELBO (theta="
                     f"{result.settings.theta:g}), means loaded back: MC dropout "
                     f"(T={result.pyro_sweep.num_samples}) vs standard dropout")
        paths["rotated_digit_pyro"] = atomic_savefig(fig, out / "rotated_digit_pyro.png", dpi=100)
    paths["records"] = atomic_write_text(out / "records.csv",
                                         pd.DataFrame(result.records).to_csv(index=False))
    paths["report"] = atomic_write_text(out / "report.md", report_markdown(result) + "\n")
    return paths


def rotated_digit_table(result) -> pd.DataFrame:
    """One row per angle: MC dropout's prediction, its probability, entropy, MI, variation ratio,
    and standard dropout's prediction, probability and entropy.

    Example:
        >>> net = LeNet(8, seed=0)  # doctest: +SKIP
        >>> res = sweep_rotations(net, torch.rand(1, 8, 8), angles_deg=[0, 30], num_samples=4)  # doctest: +SKIP
        >>> list(rotated_digit_table(res).columns)[:3]  # doctest: +SKIP
        ['angle_deg', 'mc_pred', 'mc_prob']
    """
    s = result.summary
    sp = result.standard_probs
    return pd.DataFrame({
        "angle_deg": result.angles_deg,
        "mc_pred": s.probs.argmax(-1).numpy(),
        "mc_prob": s.probs.amax(-1).double().numpy(),
        "mc_entropy": s.predictive_entropy.double().numpy(),
        "mc_mutual_info": s.mutual_information.double().numpy(),
        "mc_variation_ratio": s.variation_ratio.double().numpy(),
        "std_pred": sp.argmax(-1).numpy(),
        "std_prob": sp.amax(-1).double().numpy(),
        "std_entropy": result.standard_entropy.double().numpy(),
    })


def plot_rotated_images(result, ax):
    """The rotated images side by side (one column per angle, labelled in degrees) on ``ax``."""
    imgs = result.images[:, 0].double().numpy()
    a, h, w = imgs.shape
    strip = np.ones((h, a * (w + 1) - 1))
    for k in range(a):
        strip[:, k * (w + 1): k * (w + 1) + w] = 1.0 - imgs[k]
    ax.imshow(strip, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([k * (w + 1) + (w - 1) / 2 for k in range(a)])
    ax.set_xticklabels([f"{x:g}°" for x in result.angles_deg], fontsize="small")
    ax.set_yticks([])
    title = "rotated test image"
    if result.digit is not None:
        title += f" of the digit {result.digit}"
    ax.set_title(title)
    return ax


def plot_softmax_scatter(result, ax, kind: str = "input",
                         classes: Sequence[int] | None = None, dodge: float = 0.12):
    r"""Scatter of the ``T`` MC dropout softmax inputs (``kind="input"``, logits) or outputs
    (``kind="output"``, probabilities) per angle, one colour per class, with standard dropout's
    single value as a dashed line with crosses in the same colour.

    Args:
        result: from :func:`sweep_rotations`.
        ax: matplotlib axes (returned).
        kind: ``"input"`` or ``"output"``.
        classes: classes to show (default ``result.top_classes``).
        dodge: horizontal offset between classes, as a fraction of the smallest angle step (so
            the clouds do not hide each other; 0 overlays them as in the paper).
    """
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    classes = tuple(result.top_classes if classes is None else classes)
    vals = result.mc_logits if kind == "input" else result.mc_probs
    std = result.standard_logits if kind == "input" else result.standard_probs
    angles = result.angles_deg
    step = float(np.min(np.diff(np.sort(angles)))) if len(angles) > 1 else 1.0
    T = vals.shape[0]
    for j, c in enumerate(classes):
        off = (j - (len(classes) - 1) / 2) * dodge * step
        color = f"C{j}"
        xs = np.repeat(angles[None, :] + off, T, axis=0).ravel()
        ax.scatter(xs, vals[:, :, c].double().numpy().ravel(), s=6, alpha=0.25, color=color,
                   linewidths=0, label=f"class {c} (MC, T={T})")
        ax.plot(angles, std[:, c].double().numpy(), "--x", color=color, lw=1.0, ms=6, mew=1.5,
                label=f"class {c} (standard)")
    ax.set_xlabel("rotation angle (degrees)")
    if kind == "input":
        ax.set_ylabel("softmax input (logit)")
        ax.set_title("softmax input scatter")
    else:
        ax.set_ylabel("softmax output (probability)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title("softmax output scatter")
    ax.legend(fontsize="x-small", ncol=2, markerscale=1.5, loc="best")
    return ax


def plot_uncertainty_vs_angle(result, ax):
    """Predictive entropy, mutual information and variation ratio of MC dropout vs angle, and the
    entropy of standard dropout's softmax (dashed), on ``ax``."""
    s = result.summary
    a = result.angles_deg
    ax.plot(a, s.predictive_entropy.double().numpy(), "-o", label="MC predictive entropy (nats)")
    ax.plot(a, s.mutual_information.double().numpy(), "-s", label="MC mutual information (nats)")
    ax.plot(a, s.variation_ratio.double().numpy(), "-^", label="MC variation ratio")
    ax.plot(a, result.standard_entropy.double().numpy(), "k--x",
            label="standard dropout entropy (nats)")
    ax.axhline(np.log(result.mc_logits.shape[-1]), color="grey", lw=0.6, ls=":",
               label="max entropy log C")
    ax.set_xlabel("rotation angle (degrees)")
    ax.set_ylabel("uncertainty")
    ax.set_title("uncertainty vs rotation")
    ax.legend(fontsize="x-small")
    return ax


def plot_rotated_digit_figure(result, fig):
    """The full Figure-4 style panel on ``fig``: the rotated images on top, the softmax input and
    output scatters, and the uncertainty measures vs angle. Returns ``fig``.

    Example:
        >>> res = sweep_rotations(LeNet(8, seed=0), torch.rand(1, 8, 8), num_samples=5)  # doctest: +SKIP
        >>> fig = plot_rotated_digit_figure(res, Figure(figsize=(12, 9)))  # doctest: +SKIP
        >>> len(fig.axes)  # doctest: +SKIP
        4
    """
    axes = fig.subplot_mosaic([["images", "images"], ["input", "output"], ["unc", "unc"]],
                              height_ratios=[0.9, 3.0, 2.2])
    plot_rotated_images(result, axes["images"])
    plot_softmax_scatter(result, axes["input"], "input")
    plot_softmax_scatter(result, axes["output"], "output")
    plot_uncertainty_vs_angle(result, axes["unc"])
    fig.suptitle(f"Dropout LeNet on a rotated digit: MC dropout (T={result.num_samples}) vs "
                 f"standard dropout")
    fig.tight_layout()
    return fig
