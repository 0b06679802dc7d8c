r"""Exact GPs on the standard UCI splits, as cells of the UCI summary next to the MC dropout
protocol (:mod:`comparisons.protocols.uci`).

Per (data set, split): standardise the training split, fit ``gp_arccos1`` and ``gp_se`` by
marginal likelihood (:func:`comparisons.gp.fit.fit_gp`, Cholesky at every size), predict the
test targets and record ``rmse``, ``test_ll``, ``coverage_95`` and ``wall_time_s`` on the original
scale (:func:`predictive_metrics`), named like the MC dropout metrics.

Example:
    >>> [c.method for c in gp_uci_cells(["yacht"], "0-1", GPUCISettings())]
    ['gp', 'gp']
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import gpytorch
import numpy as np
import torch

from comparisons.datasets.uci import load_uci, resolve_uci_name, standardize, uci_info
from comparisons.gp.fit import FITTED_GP_METHODS, OPTIMIZERS, fit_gp
from comparisons.metrics.distances import interval_coverage
from comparisons.metrics.gaussian import gaussian_log_likelihood
from comparisons.protocols.registry import builtin_method
from comparisons.protocols.uci import parse_splits
from comparisons.runner.executors import Cell
from vi_dropout.validation import check_positive, check_positive_int

__all__ = ["GPUCISettings", "gp_uci_cells", "run_gp_uci_cell", "predictive_metrics"]


def predictive_metrics(mean, var, y, wall) -> dict[str, float]:
    r"""Accuracy and calibration of a Gaussian predictive :math:`\mathcal N(\mu_i, \sigma_i^2)`
    on the original scale.

    .. math::
        \text{rmse} = \sqrt{\overline{(y_i - \mu_i)^2}}, \quad
        \text{test\_ll} = \overline{\log \mathcal N(y_i; \mu_i, \sigma_i^2)}, \quad
        \text{coverage\_95} = \overline{[\,|y_i - \mu_i| \le 1.96\,\sigma_i\,]}

    Args:
        mean, var: predictive means and variances (noise included), ``(n,)``.
        y: targets, ``(n,)``.
        wall: seconds spent (recorded as ``wall_time_s``).

    Returns:
        ``rmse``, ``test_ll``, ``coverage_95``, ``mean_pred_sd`` and ``wall_time_s``.

    Example:
        >>> m = predictive_metrics(np.zeros(2), np.ones(2), np.array([1.0, -1.0]), 0.5)
        >>> m["rmse"], m["coverage_95"]
        (1.0, 1.0)
    """
    ll = gaussian_log_likelihood(*(torch.tensor(np.asarray(a, dtype=np.float64))
                                   for a in (mean, var, y)))
    return {
        "rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
        "test_ll": float(ll.mean()),
        "coverage_95": interval_coverage(mean, var, y, level=0.95),
        "mean_pred_sd": float(np.mean(np.sqrt(var))),
        "wall_time_s": float(wall),
    }


@dataclass(frozen=True)
class GPUCISettings:
    """Settings of :func:`run_gp_uci_cell` (recorded with every result).

    Attributes:
        gp_iterations: L-BFGS iterations (or Adam steps) on the exact marginal likelihood.
        gp_optimizer: ``"lbfgs"`` or ``"adam"`` (see :func:`comparisons.gp.fit.fit_gp`).
        gp_lr: Adam learning rate.
        methods: fitted GP methods (subset of :data:`FITTED_GP_METHODS`).
        max_train_size: refuse larger training sets (the exact posterior needs a dense
            ``N x N`` Cholesky factor: 1.2 GB in float64 at 12,000 points).
        max_fit_size: fit the hyper-parameters on a seeded random subset of this many
            training points when ``N`` is larger, then condition exactly on all ``N`` (see
            :func:`comparisons.gp.fit.fit_gp`); the records carry ``fit_subset_size``.
    """

    gp_iterations: int = 200
    gp_optimizer: str = "lbfgs"
    gp_lr: float = 0.1
    methods: tuple[str, ...] = FITTED_GP_METHODS
    max_train_size: int = 12_000
    max_fit_size: int = 3_000

    def __post_init__(self):
        check_positive_int(self.gp_iterations, "gp_iterations")
        check_positive(self.gp_lr, "gp_lr")
        if self.gp_optimizer not in OPTIMIZERS:
            raise ValueError(f"gp_optimizer must be one of {list(OPTIMIZERS)}, got "
                             f"{self.gp_optimizer!r}")
        check_positive_int(self.max_train_size, "max_train_size")
        check_positive_int(self.max_fit_size, "max_fit_size")
        bad = [m for m in self.methods if m not in FITTED_GP_METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {list(FITTED_GP_METHODS)}, "
                             f"got {list(self.methods)}")
        object.__setattr__(self, "methods", tuple(self.methods))


def gp_uci_cells(datasets: Sequence[str], splits: str, config: GPUCISettings) -> list[Cell]:
    """One :class:`~comparisons.runner.executors.Cell` (method ``"gp"``) per (data set, split), for
    :func:`comparisons.runner.executors.run_cells` with :func:`run_gp_uci_cell`.

    Example:
        >>> [c.cell_id for c in gp_uci_cells(["yacht"], "0-1", GPUCISettings())][0][:18]
        'yacht/gp/split-00/'
    """
    cells = []
    for name in datasets:
        name = resolve_uci_name(name)
        for split in parse_splits(splits, uci_info(name).n_splits):
            cells.append(Cell(name, split, "gp", asdict(config)))
    return cells


def run_gp_uci_cell(cell: Cell) -> list[dict]:
    """Fit the marginal-likelihood GPs (``gp_arccos1``, ``gp_se``) on one UCI (data set, split)
    and return tidy records for the UCI summary table.

    Metrics per method, named like the MC dropout ones: ``rmse``, ``test_ll`` (Gaussian
    predictive on the original scale), ``coverage_95``, ``wall_time_s`` (fit + predict); the
    records also carry ``gp_iterations``. Standardisation, initial values and fitting are those
    of :func:`comparisons.experiments.gp_vs_dropout.run`, so the numbers agree.

    Time (defaults: L-BFGS, up to 200 iterations, float64 Cholesky, one torch thread; measured on
    split 0 through ``python -m comparisons gp-vs-dropout``, fit + predict per method, arc-cosine / SE): yacht
    (N = 277) 2 / 3 s, bostonHousing (455) 5 / 8 s, energy (691) 7 / 29 s, concrete (927)
    12 / 7 s, wine-quality-red (1439) 32 / 119 s (there the SE fit degenerates: L-BFGS hits a
    non-positive-definite matrix and falls back to 200 Adam steps; see below). Above
    ``max_fit_size`` (3000) training rows the hyper-parameters are fitted on a random subset and
    the posterior conditions on all rows: kin8nm, power-plant and naval (7,400-10,700 rows) took
    46-173 s per method and split (one worker, loaded box). Protein exceeds the default
    ``max_train_size`` (12,000) and is refused.

    Caveat: wine-quality-red contains exact duplicate (x, y) rows (172 groups in the training
    rows of split 0; 51 of its 160 test rows repeat a training row). The exact marginal
    likelihood is then unbounded as the noise goes to 0, and the SE GP's fit drives the noise to
    its floor (1e-6): its test log-likelihood rewards memorised duplicates.

    Args:
        cell: a :class:`~comparisons.runner.executors.Cell` from :func:`gp_uci_cells` (its ``config`` is a
            :class:`GPUCISettings` as a dict).

    Returns:
        list of record dicts.

    Example:
        >>> cell = gp_uci_cells(["yacht"], "0", GPUCISettings(gp_iterations=5))[0]
        >>> sorted({(r["method"], r["metric"]) for r in run_gp_uci_cell(cell)})[:4]
        [('gp_arccos1', 'coverage_95'), ('gp_arccos1', 'rmse'), ('gp_arccos1', 'test_ll'), ('gp_arccos1', 'wall_time_s')]
    """
    config = GPUCISettings(**dict(cell.config))
    raw = load_uci(cell.dataset, cell.split)
    n = raw.x_train.shape[0]
    if n > config.max_train_size:
        raise ValueError(f"{raw.name} split {raw.split} has N={n} training rows > max_train_size="
                         f"{config.max_train_size}: an exact GP needs O(N^3) per step; raise "
                         f"max_train_size if you mean it")
    std = standardize(raw)
    y_test = np.asarray(raw.y_test, dtype=np.float64)[:, 0]
    records = []
    for method in config.methods:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
            fit = fit_gp(method, std.x_train, std.y_train, iterations=config.gp_iterations,
                         lr=config.gp_lr, optimizer=config.gp_optimizer,
                         max_fit_size=config.max_fit_size, seed=raw.split)
            m_std, v_std = fit.predict(std.x_test)
        wall = time.perf_counter() - t0
        mean, var = std.y_mean + std.y_std * m_std, std.y_std**2 * v_std
        metrics = predictive_metrics(mean, var, y_test, wall)
        metrics.pop("mean_pred_sd")
        for k, v in metrics.items():
            if not math.isfinite(v):
                raise RuntimeError(f"{raw.name} split {raw.split}: {method} {k} is not finite")
            records.append({"dataset": raw.name, "method": method, "split": raw.split,
                            "metric": k, "value": float(v),
                            "gp_iterations": config.gp_iterations,
                            "gp_optimizer": config.gp_optimizer,
                            "fit_subset_size": int(fit.hyperparameters["fit_subset_size"])})
    return records


# ------------------------------------------------------------------ the registry entry
def _registry_cells(datasets, splits, settings) -> list[Cell]:
    from comparisons.protocols.uci import uci_splits

    config = GPUCISettings(max_fit_size=settings.gp_max_fit_size)
    cells = []
    for name, chosen in uci_splits(list(datasets), splits).items():
        cells += gp_uci_cells([name], ",".join(map(str, chosen)), config)
    return cells


METHOD = builtin_method(
    "gp", _registry_cells, run_gp_uci_cell, label="exact GPs (arc-cosine, SE; fitted)",
    color="tab:orange", record_methods=FITTED_GP_METHODS,
    help="gp (exact arc-cosine and SE GPs fitted by marginal likelihood, training sets up to "
         "12,000 rows)")
