r"""Matplotlib helpers for the equivalence report (used by ``notebooks/01_elbo_equals_dropout``).

Every ``plot_*`` function takes a matplotlib ``ax``, draws on it and returns it; none creates a
figure or calls ``show``. The ``*_from_rows`` parsers turn the tidy rows of
:mod:`vi_dropout.verify.paper` back into arrays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vi_dropout.distributions import DropoutNormal

__all__ = [
    "kl_records_from_rows",
    "plot_dropout_normal_density",
    "plot_gradient_vs_theta",
    "plot_value_offset",
    "plot_kl_gap",
]

_THETA_NAME = re.compile(r"^theta=(?P<theta>\S+) (?P<name>\S+)$")
_KL_SETTING = re.compile(r"^K=(?P<k>\d+) theta=(?P<theta>\S+) keep_prob=(?P<kp>\S+)$")
_KL_DETAIL = re.compile(
    r"MC (?P<mc>\S+) ± (?P<mc_se>\S+); Prop\.1 (?P<p1>\S+); gap (?P<gap>\S+) ± (?P<gap_se>\S+)")


def kl_records_from_rows(rows: Sequence[Mapping]) -> list[dict]:
    """Parse the per-width rows of :func:`~vi_dropout.verify.paper.check_kl` into records
    ``{K, theta, keep_prob, mc, mc_se, prop1, gap, gap_se}`` (summary rows are ignored)."""
    out = []
    for r in rows:
        if r.get("check") != "kl":
            continue
        ms, md = _KL_SETTING.match(r["setting"]), _KL_DETAIL.search(r.get("detail", ""))
        if ms is None or md is None:
            continue
        out.append({"K": int(ms["k"]), "theta": float(ms["theta"]), "keep_prob": float(ms["kp"]),
                    "mc": float(md["mc"]), "mc_se": float(md["mc_se"]),
                    "prop1": float(md["p1"]), "gap": float(md["gap"]),
                    "gap_se": float(md["gap_se"])})
    if not out:
        raise ValueError("no per-width KL rows found")
    return out


def plot_dropout_normal_density(ax, thetas=(0.05, 0.1, 0.3), loc: float = 1.0,
                                keep_prob: float = 0.8, x=None):
    r"""The 1-D (``K = Q = 1``) density of :class:`~vi_dropout.distributions.DropoutNormal`,
    :math:`\pi\,\mathcal{N}(w; m, \theta^2) + (1-\pi)\,\mathcal{N}(w; 0, \theta^2)`, one line per
    ``theta`` (exact ``log_prob``, exponentiated)."""
    if x is None:
        pad = 4 * max(thetas)
        x = np.linspace(min(0.0, loc) - pad, max(0.0, loc) + pad, 801)
    xs = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(-1, 1, 1)
    for theta in thetas:
        q = DropoutNormal(torch.tensor([[float(loc)]], dtype=torch.float64), keep_prob, theta)
        dens = q.log_prob(xs).exp().numpy()
        ax.plot(np.asarray(x), dens, label=rf"$\theta={theta:g}$")
    ax.set_xlabel("$w$")
    ax.set_ylabel("$q(w)$")
    ax.set_title(rf"DropoutNormal, $m={loc:g}$, keep_prob $\pi={keep_prob:g}$")
    ax.legend()
    return ax


def plot_gradient_vs_theta(thetas, diffs: Mapping[str, Sequence[float]], ax,
                           reference_slope: float | None = 1.0):
    r"""Relative gradient difference vs :math:`\theta` on log-log axes: one line per parameter
    in ``diffs`` (``{name: values aligned with thetas}``) plus, unless ``reference_slope`` is
    None, a dashed reference line :math:`\propto \theta^{\text{slope}}` through the largest
    difference at the smallest :math:`\theta`."""
    thetas = np.asarray(thetas, dtype=float)
    for name, vals in diffs.items():
        ax.loglog(thetas, np.asarray(vals, dtype=float), marker="o", label=name)
    if reference_slope is not None:
        i = int(np.argmin(thetas))
        anchor = max(float(np.asarray(v, dtype=float)[i]) for v in diffs.values())
        ref = anchor * (thetas / thetas[i]) ** reference_slope
        ax.loglog(thetas, ref, "k--", label=rf"slope {reference_slope:g}")
    ax.set_xlabel(r"$\theta$")
    ax.set_ylabel(r"$\|\nabla(-\mathrm{ELBO}/N\tau) - \nabla\mathcal{L}\| / \|\nabla\mathcal{L}\|$")
    ax.set_title("gradient difference vs $\\theta$")
    ax.legend(fontsize="small")
    return ax


def plot_value_offset(thetas, offsets, predicted, ax):
    r"""The measured :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\text{dropout}}` (markers) and
    the predicted constant (line) vs :math:`\theta` on a log x-axis: both grow like
    :math:`-\log\theta`."""
    thetas = np.asarray(thetas, dtype=float)
    order = np.argsort(thetas)
    ax.semilogx(thetas[order], np.asarray(predicted, dtype=float)[order], "-",
                label="predicted constant")
    ax.semilogx(thetas[order], np.asarray(offsets, dtype=float)[order], "o",
                label=r"$-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\mathrm{dropout}}$")
    ax.set_xlabel(r"$\theta$")
    ax.set_ylabel("offset")
    ax.set_title(r"value offset grows like $-\log\theta$")
    ax.legend(fontsize="small")
    return ax


def plot_kl_gap(rows: Sequence[Mapping], ax):
    r"""KL gap vs width ``K`` (log x-axis) from :func:`~vi_dropout.verify.paper.check_kl` rows: for each
    (theta, keep_prob), the Monte Carlo exact KL minus Proposition 1 with :math:`\pm 2` SE error
    bars (markers) and the gap estimate with its :math:`\pm 2` SE band (line)."""
    recs = kl_records_from_rows(rows)
    groups: dict[tuple[float, float], list[dict]] = {}
    for r in recs:
        groups.setdefault((r["theta"], r["keep_prob"]), []).append(r)
    for (theta, kp), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["K"])
        k = np.array([r["K"] for r in rs], dtype=float)
        diff = np.array([r["mc"] - r["prop1"] for r in rs])
        se = np.array([r["mc_se"] for r in rs])
        gap = np.array([r["gap"] for r in rs])
        gse = np.array([r["gap_se"] for r in rs])
        line, = ax.plot(k, gap, "-", label=rf"gap, $\theta={theta:g}$, $\pi={kp:g}$")
        ax.fill_between(k, gap - 2 * gse, gap + 2 * gse, color=line.get_color(), alpha=0.2)
        ax.errorbar(k, diff, yerr=2 * se, fmt="o", color=line.get_color(), capsize=3,
                    label=rf"MC $-$ Prop.1, $\theta={theta:g}$, $\pi={kp:g}$")
    ax.set_xscale("log", base=2)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("width $K$ (rows)")
    ax.set_ylabel("KL(q||p) $-$ Prop.1 (nats)")
    ax.set_title("KL gap vs width")
    ax.legend(fontsize="x-small")
    return ax
