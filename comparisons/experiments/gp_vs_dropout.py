r"""MC dropout vs exact GPs on the same split: accuracy, calibration, and how far apart the two
predictive distributions are, point by point.

On one split (the 1-D toy of :mod:`comparisons.datasets.toy1d` or a UCI set) :func:`run`

1. runs the MC dropout UCI protocol (:func:`comparisons.protocols.uci.fit_mc_dropout`: grid search over
   (dropout rate, tau) by validation log-likelihood, retraining on the full training split, ``T``
   MC samples; same seeds, so the dropout numbers equal ``run_uci_cell``'s);
2. fits exact GPs on the standardised training data (:func:`comparisons.gp.fit.fit_gp`, float64,
   Cholesky):

   ====================  =====================================================================
   method                kernel and hyper-parameters
   ====================  =====================================================================
   ``gp_arccos1_prior``  arc-cosine order 1 with the hyper-parameters of the trained dropout
                         network's prior (:func:`~comparisons.gp.priors.dropout_prior_gp_hyperparameters`), **no**
                         fitting: the GP that MC dropout approximates (Gal & Ghahramani 2016)
   ``gp_rf_prior``       the same prior with ``num_hidden`` random ReLU features (the
                         finite-width network prior; exact second moment), no fitting; optional
   ``gp_arccos1``        ``ScaleKernel(arc-cosine order 1)``, constant mean, variances and
                         noise fitted by marginal likelihood
   ``gp_se``             ``ScaleKernel(RBF)`` with one length-scale per input (ARD), constant
                         mean, fitted by marginal likelihood
   ====================  =====================================================================

3. reports per method RMSE, test log-likelihood (original target scale; MC dropout's is the
   paper's MC mixture estimate, ``test_ll_gaussian`` its moment-matched Gaussian one), the
   coverage of the central 95% Gaussian interval and the mean predictive sd; and per GP the
   distances between MC dropout's moment-matched Gaussian predictive :math:`\mathcal{N}(\mu_d,
   \sigma_d^2)` and the GP's :math:`\mathcal{N}(\mu_g, \sigma_g^2)` (both include observation
   noise), averaged over test points (:func:`comparisons.metrics.distances.summarize_predictive_distances`):

   .. math::
       \text{smd} = \overline{|\mu_d - \mu_g| / \sigma_g}, \quad
       \text{var\_ratio} = \exp\overline{\log(\sigma_d^2/\sigma_g^2)}, \quad
       \text{kl} = \overline{\mathrm{KL}(\mathcal{N}_d\|\mathcal{N}_g)}, \quad
       \text{w2} = \overline{W_2}/s_y, \quad
       \text{tv} = \overline{\mathrm{TV}}

   (:math:`s_y` the training-target sd, so ``w2`` is in units of it). On the toy the distances are
   also given per region of the test grid (``kl[extrapolation]`` etc.: ``train``, ``gap``,
   ``extrapolation``).

Records are tidy dicts ``{dataset, method, split, metric, value, epochs_multiplier, num_samples,
gp_iterations, gp_optimizer}`` (:mod:`comparisons.runner.store`); nothing is written here: the
files are :func:`comparisons.report.gp_vs_dropout.write_report`'s.

Example:
    >>> settings = GPvsDropoutSettings("toy1d", epochs_multiplier=0.01, num_samples=100,
    ...                                gp_iterations=5, max_grid=1)
    >>> result = run(settings)  # doctest: +SKIP
    >>> print(report_markdown(result))  # doctest: +SKIP (comparisons.report.gp_vs_dropout)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import gpytorch
import numpy as np
import torch

from comparisons.datasets.splits import load_split
from comparisons.datasets.toy1d import TOY1D_NAME
from comparisons.datasets.uci import StandardizedSplit, resolve_uci_name, standardize
from comparisons.gp.fit import (
    FITTED_GP_METHODS,
    GP_METHODS,
    OPTIMIZERS,
    PRIOR_GP_METHODS,
    GPFit,
    fit_gp,
)
from comparisons.gp.priors import dropout_prior_gp_hyperparameters
from comparisons.metrics.distances import summarize_predictive_distances
from comparisons.protocols.uci import DropoutFit, MCDropoutUCISettings, fit_mc_dropout
from comparisons.protocols.uci_gp import predictive_metrics
from comparisons.report.gp_vs_dropout import (
    DROPOUT_METHOD,
    TOY_REGIONS,
)
from vi_dropout.validation import check_positive, check_positive_int

__all__ = [
    "GP_METHODS",
    "FITTED_GP_METHODS",
    "PRIOR_GP_METHODS",
    "DROPOUT_METHOD",
    "TOY_REGIONS",
    "GPvsDropoutSettings",
    "GPvsDropoutResult",
    "run",
]


@dataclass(frozen=True)
class GPvsDropoutSettings:
    """Settings of one comparison (checked when made).

    Attributes:
        dataset: ``"toy1d"`` or a UCI name / alias.
        split: UCI split index, or the toy's data seed.
        epochs_multiplier, num_samples, max_grid, seed: the MC dropout protocol
            (:class:`comparisons.protocols.uci.MCDropoutUCISettings`; defaults as ``python -m comparisons
            uci``).
        gp_iterations, gp_optimizer, gp_lr: fitting of the marginal-likelihood GPs (L-BFGS
            iterations or Adam steps; see :func:`comparisons.gp.fit.fit_gp`).
        toy_num_train: training points of the toy.
        random_features: also run ``gp_rf_prior`` (``num_hidden`` random ReLU features).
        methods: GP methods to run (default: all of :data:`GP_METHODS`, less ``gp_rf_prior``
            when ``random_features`` is False); a tuple after checking.

    Example:
        >>> GPvsDropoutSettings("toy1d", random_features=False).methods
        ('gp_arccos1_prior', 'gp_arccos1', 'gp_se')
    """

    dataset: str = TOY1D_NAME
    split: int = 0
    epochs_multiplier: float = 10.0
    num_samples: int = 10_000
    gp_iterations: int = 200
    gp_optimizer: str = "lbfgs"
    gp_lr: float = 0.1
    max_grid: int | None = None
    seed: int = 0
    toy_num_train: int = 200
    random_features: bool = True
    methods: Sequence[str] | None = None

    def __post_init__(self):
        if not isinstance(self.dataset, str):
            raise ValueError(f"dataset must be 'toy1d' or a UCI name, got {self.dataset!r}")
        methods = self.methods
        if methods is None:
            methods = [m for m in GP_METHODS if self.random_features or m != "gp_rf_prior"]
        unknown = [m for m in methods if m not in GP_METHODS]
        if unknown:
            raise ValueError(f"methods must be a subset of {list(GP_METHODS)}, got unknown "
                             f"{unknown}")
        object.__setattr__(self, "methods", tuple(methods))
        object.__setattr__(self, "gp_iterations",
                           check_positive_int(self.gp_iterations, "gp_iterations"))
        object.__setattr__(self, "gp_lr", check_positive(self.gp_lr, "gp_lr"))
        if self.gp_optimizer not in OPTIMIZERS:
            raise ValueError(f"gp_optimizer must be one of {list(OPTIMIZERS)}, got "
                             f"{self.gp_optimizer!r}")
        _ = self.protocol  # checks the protocol settings
        if self.dataset.lower() != TOY1D_NAME:
            resolve_uci_name(self.dataset)

    @property
    def protocol(self) -> MCDropoutUCISettings:
        """The MC dropout protocol of these settings."""
        return MCDropoutUCISettings(epochs_multiplier=self.epochs_multiplier,
                           num_samples=self.num_samples, seed=self.seed, max_grid=self.max_grid)

    def record_fields(self) -> dict:
        """The settings every record carries."""
        return {"epochs_multiplier": float(self.epochs_multiplier),
                "num_samples": int(self.num_samples), "gp_iterations": self.gp_iterations,
                "gp_optimizer": self.gp_optimizer}


@dataclass(eq=False)
class GPvsDropoutResult:
    """Everything :func:`run` computed.

    Attributes:
        dataset: ``"toy1d"`` or the canonical UCI name.
        split: split index (the data seed for the toy).
        data: the standardised split (:class:`~comparisons.datasets.toy1d.Toy1DData` for the toy,
            else :class:`~comparisons.datasets.uci.StandardizedSplit`).
        dropout: the :class:`~comparisons.protocols.uci.DropoutFit`.
        gps: ``{method: GPFit}``.
        predictions: ``{method: (mean, var)}`` at the test inputs, original scale, ``(n_test,)``
            float64 (MC dropout's moment-matched).
        records: the tidy records (dicts with ``dataset, method, split, metric, value`` and the
            settings of :meth:`GPvsDropoutSettings.record_fields`).
        settings: the :class:`GPvsDropoutSettings` used.
        wall_time_s: the whole run.
        num_threads: torch threads during the run.
    """

    dataset: str
    split: int
    data: object
    dropout: DropoutFit
    gps: dict[str, GPFit]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]
    records: list[dict]
    settings: GPvsDropoutSettings
    wall_time_s: float = 0.0
    num_threads: int = field(default_factory=torch.get_num_threads)


def _dropout_metrics(drop: DropoutFit, y_test: np.ndarray) -> dict[str, float]:
    """MC dropout's metrics: ``test_ll`` is the paper's MC mixture estimate, ``test_ll_gaussian``
    the moment-matched Gaussian's."""
    metrics = predictive_metrics(drop.mean, drop.var, y_test, drop.wall_time_s)
    metrics["test_ll_gaussian"] = metrics["test_ll"]
    metrics["test_ll"] = float(drop.summary.mean_log_likelihood)
    metrics.update(rmse_standard=float(drop.summary.rmse_standard),
                   best_dropout_rate=drop.dropout_rate, best_tau=drop.tau,
                   diverged_grid_points=float(drop.diverged_grid_points))
    return metrics


def _distance_metrics(drop: DropoutFit, mean, var, y_std: float, regions: dict
                      ) -> dict[str, float]:
    """Distances of MC dropout's predictive from one GP's, overall and per toy region."""
    metrics = summarize_predictive_distances(drop.mean, drop.var, mean, var, scale=y_std)
    for region, mask in regions.items():
        if mask.any():
            d = summarize_predictive_distances(drop.mean, drop.var, mean, var, scale=y_std,
                                               mask=mask)
            metrics.update({f"{k}[{region}]": v for k, v in d.items()})
    return metrics


def _fit_one_gp(method: str, settings: GPvsDropoutSettings, std, prior: dict, num_hidden: int,
                progress: bool) -> tuple[GPFit, np.ndarray, np.ndarray, float]:
    """Fit (or fix) one GP and predict the test inputs: ``(fit, mean, var, wall)`` on the
    standardised scale."""
    if progress:
        how = ("fixed dropout-prior hyper-parameters" if method in PRIOR_GP_METHODS else
               f"marginal likelihood, {settings.gp_optimizer}, up to {settings.gp_iterations} "
               f"iterations")
        print(f"[{method}] {how}", flush=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
        fit = fit_gp(method, std.x_train, std.y_train, iterations=settings.gp_iterations,
                     lr=settings.gp_lr, optimizer=settings.gp_optimizer, prior=prior,
                     num_features=num_hidden, seed=settings.protocol.seed + settings.split)
        m_std, v_std = fit.predict(std.x_test)
    return fit, m_std, v_std, time.perf_counter() - t0


def _check_finite(records: list[dict], name: str, split: int) -> None:
    for rec in records:
        if not math.isfinite(rec["value"]):
            raise RuntimeError(f"{name} split {split}: {rec['method']} {rec['metric']} is not "
                               f"finite ({rec['value']})")


def run(settings: GPvsDropoutSettings, *, progress: bool = False) -> GPvsDropoutResult:
    r"""MC dropout (UCI protocol) vs exact GPs on one split; see the module docstring.

    Args:
        settings: the :class:`GPvsDropoutSettings`.
        progress: print the stages.

    Returns:
        :class:`GPvsDropoutResult`; ``records`` holds, for ``mc_dropout`` and every GP,
        ``rmse``, ``test_ll``, ``coverage_95``, ``mean_pred_sd``, ``wall_time_s`` (MC dropout
        also ``test_ll_gaussian``, ``rmse_standard``, ``best_dropout_rate``, ``best_tau``,
        ``diverged_grid_points``), and for every GP the distances ``smd``, ``var_ratio``, ``kl``,
        ``w2``, ``tv`` (toy: also per region, e.g. ``kl[gap]``) and its hyper-parameters
        (``hp_*``).

    Timing (defaults, one torch thread on a 2-core CPU, measured for split 0): toy1d
    25-50 s, yacht 10 s, bostonHousing 24 s, energy 45 s, concrete 47 s, wine-quality-red 170 s
    (see ``docs/gp_vs_dropout``); the exact GPs cost :math:`O(N^3)` per marginal-likelihood
    evaluation, so sets with more than a few thousand rows are impractical.

    Example:
        >>> r = run(GPvsDropoutSettings("toy1d", epochs_multiplier=0.01, num_samples=50,
        ...                             gp_iterations=2, max_grid=1))  # doctest: +SKIP
        >>> sorted({rec["method"] for rec in r.records})  # doctest: +SKIP
        ['gp_arccos1', 'gp_arccos1_prior', 'gp_rf_prior', 'gp_se', 'mc_dropout']
    """
    t_start = time.perf_counter()
    split = int(settings.split)
    protocol = settings.protocol
    name, raw, data = load_split(settings.dataset, split, toy_num_train=settings.toy_num_train)
    std = data if isinstance(data, StandardizedSplit) else standardize(raw)
    y_test = np.asarray(raw.y_test, dtype=np.float64)[:, 0]
    y_mean, y_std = float(std.y_mean), float(std.y_std)
    base = {"dataset": name, "split": split, **settings.record_fields()}
    records: list[dict] = []

    def add(method, metrics):
        records.extend(dict(base, method=method, metric=k, value=float(v))
                       for k, v in metrics.items())

    drop = fit_mc_dropout(raw, protocol, progress=progress)
    predictions = {DROPOUT_METHOD: (drop.mean, drop.var)}
    add(DROPOUT_METHOD, _dropout_metrics(drop, y_test))
    prior = dropout_prior_gp_hyperparameters(protocol.prior_length_scale, drop.keep_prob,
                                             drop.tau, y_std, raw.n_features, raw.n_hidden)
    regions = {r: data.region_mask(r) for r in TOY_REGIONS} if name == TOY1D_NAME else {}
    gps: dict[str, GPFit] = {}
    for method in settings.methods:
        fit, m_std, v_std, wall = _fit_one_gp(method, settings, std, prior, raw.n_hidden,
                                              progress)
        mean, var = y_mean + y_std * m_std, y_std**2 * v_std
        gps[method] = fit
        predictions[method] = (mean, var)
        metrics = predictive_metrics(mean, var, y_test, wall)
        metrics.update(_distance_metrics(drop, mean, var, y_std, regions))
        metrics.update({f"hp_{k}": v for k, v in fit.hyperparameters.items()})
        add(method, metrics)
    _check_finite(records, name, split)
    return GPvsDropoutResult(name, split, data, drop, gps, predictions, records, settings,
                             wall_time_s=time.perf_counter() - t_start)
