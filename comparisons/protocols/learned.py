r"""What the UCI protocols that fit ONE network per split by its ELBO share
(:mod:`comparisons.protocols.uci_concrete`, :mod:`comparisons.protocols.uci_mfvi`; the deep
ensembles of :mod:`comparisons.protocols.uci_deep_ensemble` reuse them too): their cells,
the key that groups the pending splits of one (data set, method, settings) into one batched fit,
the group runner with its failure isolation and bookkeeping, the test metrics of MC samples
at a learned precision, and those of a uniform mixture of Gaussians
(:func:`gaussian_mixture_metrics`).

Every cell of a group records the same numbers as when run alone (each split's network draws
from its own generator); a network whose fit failed, or whose metrics are not finite, fails ITS
cell only (a :class:`~comparisons.runner.executors.CellError` naming the data set, split and
method); ``wall_time_s`` is the group's time divided by the group size (recorded with
``group_size``).

Example:
    >>> from comparisons.protocols.uci_mfvi import MFVIUCISettings
    >>> [c.split for c in learned_cells(["yacht"], "0-1", MFVIUCISettings(), "mfvi", ("mfvi",))]
    [0, 1]
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from comparisons.datasets.uci import StandardizedSplit, UCISplit, load_uci
from comparisons.metrics.distances import interval_coverage, moment_match_samples
from comparisons.protocols.uci import uci_splits
from comparisons.runner.executors import Cell, CellError, CellGroup
from vi_dropout.summaries import regression_summary

__all__ = [
    "learned_cells",
    "settings_group_key",
    "original_scale_tau",
    "predictive_metrics",
    "last_epoch_loss",
    "run_learned_cells",
    "gaussian_mixture_log_density",
    "gaussian_mixture_metrics",
    "SplitPredictive",
    "samples_predictive",
    "mixture_predictive",
    "fit_split_predictive",
    "RegistryPredictive",
]

#: ``fit(raws, config, method) -> (failures, score, predict)``: fit one network per split of
#: ``raws`` (one batched computation); ``failures[e]`` is ``None`` or why network ``e`` failed,
#: ``score(e)`` the metrics of network ``e`` and ``predict(e)`` its :class:`SplitPredictive`
GroupFit = Callable[[list, object, str], tuple[Sequence, Callable[[int], dict],
                                               Callable[[int], "SplitPredictive"]]]


@dataclass
class SplitPredictive:
    """A method's Gaussian test predictive on the ORIGINAL scale, noise included (moment-matched
    where the predictive is a mixture): ``mean`` and ``var``, ``(n_test,)`` float64."""

    mean: np.ndarray
    var: np.ndarray


def samples_predictive(samples: torch.Tensor, std: StandardizedSplit,
                       tau: float) -> SplitPredictive:
    r"""The moment-matched predictive of MC samples ``T x N x 1`` of :math:`f` on the
    standardised scale with precision ``tau`` on the ORIGINAL scale:
    :math:`\mu = \bar y + s_y\overline{f_t}`, :math:`\sigma^2 = \tau^{-1} + s_y^2
    \widehat{\operatorname{Var}}(f_t)`."""
    y_mean, y_std = _target_scale(std)
    mean, var = moment_match_samples(samples.double()[..., 0], noise_var=1.0 / tau,
                                     y_mean=y_mean, y_std=y_std)
    return SplitPredictive(np.asarray(mean), np.asarray(var))


def mixture_predictive(means: torch.Tensor, variances: torch.Tensor,
                       std: StandardizedSplit) -> SplitPredictive:
    r"""The moment-matched predictive of a uniform mixture of Gaussians ``M x N x 1`` on the
    standardised scale (see :func:`gaussian_mixture_metrics`), on the ORIGINAL scale."""
    y_mean, y_std = _target_scale(std)
    means, variances = means.double()[..., 0], variances.double()[..., 0]
    mean, var = moment_match_samples(means.numpy(), noise_var=(y_std**2 * variances).mean(0)
                                     .numpy(), y_mean=y_mean, y_std=y_std)
    return SplitPredictive(np.asarray(mean), np.asarray(var))


def fit_split_predictive(raw: UCISplit, config, method: str, fit: GroupFit) -> SplitPredictive:
    """Fit ``method`` of a learned protocol on one split (as :func:`run_learned_cells` does, same
    seeds) and return its :class:`SplitPredictive`; a failed fit raises ``RuntimeError`` naming
    the data set, split and method."""
    torch.manual_seed(config.seed)
    failures, _, predict = fit([raw], config, method)
    if failures[0] is not None:
        raise RuntimeError(f"{raw.name} split {raw.split} ({method}): {failures[0]}")
    return predict(0)


class RegistryPredictive:
    """The registry's ``split_predictive`` of a learned protocol's method: the protocol's
    ``split_predictive(raw, config, method)`` with the settings the run gives (its
    :class:`~comparisons.protocols.registry.RunSettings` fields that the protocol's settings
    have: epochs multiplier, samples, seed, prior length-scale; the others at the protocol's
    defaults). A picklable callable, so registered entries cross process boundaries.

    Args:
        method: the method id.
        settings_type: the protocol's settings dataclass.
        predictive: ``(raw, config, method) -> SplitPredictive``.
    """

    #: the run's settings a protocol takes over when it has them
    FIELDS = ("epochs_multiplier", "num_samples", "seed", "prior_length_scale")

    def __init__(self, method: str, settings_type: type, predictive: Callable):
        self.method, self.settings_type, self.predictive = method, settings_type, predictive

    def config(self, settings):
        """The protocol's settings for the run's ``settings``."""
        names = {f.name for f in fields(self.settings_type)}
        return self.settings_type(**{k: getattr(settings, k) for k in self.FIELDS
                                     if k in names and getattr(settings, k) is not None})

    def __call__(self, raw: UCISplit, settings) -> tuple[np.ndarray, np.ndarray]:
        pred = self.predictive(raw, self.config(settings), self.method)
        return pred.mean, pred.var


def learned_cells(datasets: Sequence[str], splits: str, config, method: str,
                  methods: Sequence[str]) -> list[Cell]:
    """One cell per (data set, split) of :func:`~comparisons.protocols.uci.uci_splits` for
    ``method`` (one of ``methods``), its settings the dataclass ``config``."""
    if method not in methods:
        raise ValueError(f"method must be one of {list(methods)}, got {method!r}")
    return [Cell(name, split, method, asdict(config))
            for name, chosen in uci_splits(list(datasets), splits).items() for split in chosen]


def settings_group_key(cell: Cell, methods: Sequence[str]):
    """The :func:`~comparisons.runner.executors.run_cells` ``group_by`` key of a protocol with
    ``methods``: cells with the same data set, method and settings train together; cells of
    other methods get ``None`` (they run alone)."""
    if getattr(cell, "method", None) not in methods:
        return None
    return (cell.dataset, cell.method, tuple(sorted(dict(cell.config).items())))


def _target_scale(std: StandardizedSplit) -> tuple[float, float]:
    """``(y_mean, y_std)`` of the standardisation, as floats."""
    y_mean = float(np.asarray(std.y_mean, dtype=np.float64).reshape(-1)[0])
    y_std = float(np.asarray(std.y_std, dtype=np.float64).reshape(-1)[0])
    return y_mean, y_std


def original_scale_tau(tau: float, std: StandardizedSplit) -> float:
    r"""A precision learned on the standardised targets, on the original scale:
    :math:`\tau / s_y^2`."""
    return float(tau) / _target_scale(std)[1] ** 2


def predictive_metrics(samples: torch.Tensor, raw: UCISplit, std: StandardizedSplit, tau: float,
                       standard: torch.Tensor | None = None) -> dict[str, float]:
    r"""Test metrics of MC samples of :math:`f` on the standardised scale with observation
    precision ``tau`` on the ORIGINAL scale (:func:`original_scale_tau`).

    ``rmse`` (of the MC mean), ``rmse_standard`` (of ``standard``, when given), ``test_ll``
    (:func:`vi_dropout.summaries.regression_summary`) and ``coverage_95`` (central 95% interval of
    the moment-matched Gaussian, :math:`\sigma^2 = \tau^{-1} + \operatorname{Var}_t`).

    Args:
        samples: ``T x N x 1`` on the standardised scale (float64).
        raw: the split (its ``y_test`` on the original scale); std: its standardisation.
        tau: :math:`\tau` on the original scale.
        standard: optional ``N x 1`` point prediction on the standardised scale.
    """
    y_mean, y_std = _target_scale(std)
    y = torch.tensor(raw.y_test, dtype=torch.float64)
    summary = regression_summary(samples, y, tau, y_mean, y_std, standard)
    pred = samples_predictive(samples, std, tau)
    out = {"rmse": float(summary.rmse)}
    if standard is not None:
        out["rmse_standard"] = float(summary.rmse_standard)
    out["test_ll"] = float(summary.mean_log_likelihood)
    out["coverage_95"] = float(interval_coverage(pred.mean, pred.var, raw.y_test[:, 0]))
    return out


def last_epoch_loss(losses: torch.Tensor, num_rows: int, batch_size: int, steps: int) -> float:
    """The loss per data point: the mean of the last epoch's steps (``losses`` of one network,
    ``steps``) divided by the ``num_rows`` training rows."""
    per_epoch = min(steps, math.ceil(num_rows / batch_size))
    return float(losses[-per_epoch:].mean()) / num_rows


def _check_finite_metrics(raw: UCISplit, metrics: dict[str, float]) -> None:
    for k, v in metrics.items():
        if not math.isfinite(v):
            raise RuntimeError(f"{raw.name} split {raw.split}: metric {k} is not finite ({v})")


def run_learned_cells(work: Cell | CellGroup, *, methods: Sequence[str], config_type: type,
                      fit: GroupFit,
                      record_fields: Sequence[str] = ("epochs_multiplier", "num_samples")):
    """Run one cell or a group of one (data set, method, settings) of a learned-hyper-parameter
    protocol: load the splits, ``fit`` them in one batched computation and score each.

    Args:
        work: a :class:`~comparisons.runner.executors.Cell` or a
            :class:`~comparisons.runner.executors.CellGroup`.
        methods: the protocol's method ids (the group must hold one of them).
        config_type: the protocol's settings dataclass (built from the cells' ``config``; it
            has ``seed`` and the ``record_fields``).
        fit: ``fit(raws, config, method) -> (failures, score, predict)`` (see :data:`GroupFit`).
        record_fields: the settings written into every record (columns next to ``dataset``,
            ``method`` and ``split``).

    Returns:
        A cell: its records (raises ``RuntimeError`` if it failed). A group: one entry per cell,
        its records or a :class:`~comparisons.runner.executors.CellError`.
    """
    group = isinstance(work, CellGroup)
    cells = list(work.cells) if group else [work]
    keys = {settings_group_key(c, methods) for c in cells}
    if len(keys) != 1 or None in keys:
        raise ValueError("a group must hold cells of one data set, method and settings of this "
                         f"protocol ({list(methods)}), got {len(keys)} kinds")
    config = config_type(**dict(cells[0].config))
    method = cells[0].method
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    raws = [load_uci(c.dataset, c.split) for c in cells]
    failures, score, _ = fit(raws, config, method)
    out: list = []
    for e, (raw, cell) in enumerate(zip(raws, cells)):
        base = {"dataset": cell.dataset, "method": method, "split": cell.split,
                **{f: getattr(config, f) for f in record_fields}}
        if failures[e] is not None:
            out.append(CellError(f"FitFailed: {cell.dataset} split {cell.split} ({method}): "
                                 f"{failures[e]}"))
            continue
        try:
            metrics = score(e)
            _check_finite_metrics(raw, metrics)
        except (RuntimeError, ValueError) as exc:
            out.append(CellError(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        metrics = metrics | {"group_size": float(len(cells))}
        out.append([dict(base, metric=k, value=v) for k, v in metrics.items()])
    wall = (time.perf_counter() - t0) / len(cells)
    for entry in out:
        if not isinstance(entry, CellError):
            entry.append(dict(entry[0], metric="wall_time_s", value=wall))
    if not group:
        if isinstance(out[0], CellError):
            raise RuntimeError(out[0].error)
        return out[0]
    return out


def gaussian_mixture_log_density(y: torch.Tensor, means: torch.Tensor,
                                 variances: torch.Tensor) -> torch.Tensor:
    r"""Log-density of a uniform mixture of ``M`` Gaussians, exactly (log-mean-exp):

    .. math::
        \log p(y) = \operatorname{logsumexp}_m \Big(-\frac12 \log(2\pi\sigma^2_m)
        - \frac{(y - \mu_m)^2}{2\sigma^2_m}\Big) - \log M.

    Args:
        y: points, ``...`` (e.g. ``N``).
        means, variances: :math:`\mu_m`, :math:`\sigma^2_m > 0`, ``M x ...``.

    Returns:
        ``...``: one log-density per point.

    Example:
        >>> means, variances = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [4.0]])
        >>> round(float(gaussian_mixture_log_density(torch.tensor([0.0]), means, variances)), 4)
        -1.3472
    """
    logp = -0.5 * (torch.log(2 * math.pi * variances) + (y - means).square() / variances)
    return torch.logsumexp(logp, dim=0) - math.log(means.shape[0])


def gaussian_mixture_metrics(means: torch.Tensor, variances: torch.Tensor, raw: UCISplit,
                             std: StandardizedSplit) -> dict[str, float]:
    r"""Test metrics of a uniform mixture of ``M`` Gaussians predicted on the standardised scale
    (a deep ensemble's members), on the ORIGINAL scale.

    Each member is mapped back, :math:`\tilde\mu_m = \bar y + s_y \mu_m`,
    :math:`\tilde\sigma^2_m = s_y^2 \sigma^2_m` (so the density includes the Jacobian
    :math:`-\log s_y` of the standardisation); ``test_ll`` is the mean over the test points of
    the EXACT mixture log-density (:func:`gaussian_mixture_log_density`); ``rmse`` is that of the
    mixture mean and ``coverage_95`` that of the central 95% interval of the moment-matched
    Gaussian (:func:`~comparisons.metrics.distances.moment_match_samples`)

    .. math::
        \mu_* = \frac1M \sum_m \tilde\mu_m, \qquad
        \sigma^2_* = \frac1M \sum_m \tilde\sigma^2_m + \frac1M \sum_m (\tilde\mu_m - \mu_*)^2.

    Args:
        means, variances: ``M x N x 1`` on the standardised scale.
        raw: the split (its ``y_test`` on the original scale); std: its standardisation.
    """
    y_mean, y_std = _target_scale(std)
    pred = mixture_predictive(means, variances, std)
    means, variances = means.double()[..., 0], variances.double()[..., 0]
    y = torch.tensor(raw.y_test[:, 0], dtype=torch.float64)
    mu_o, var_o = y_mean + y_std * means, y_std**2 * variances
    return {
        "rmse": float(np.sqrt(np.mean((raw.y_test[:, 0] - pred.mean) ** 2))),
        "test_ll": float(gaussian_mixture_log_density(y, mu_o, var_o).mean()),
        "coverage_95": float(interval_coverage(pred.mean, pred.var, raw.y_test[:, 0])),
    }
