r"""Posterior diagnostics of MC dropout, standard dropout, an exact GP and an HMC reference on one
split: PSIS-LOO, ``az.compare``, LOO-PIT, posterior predictive checks, and how far each method's
test predictive is from HMC's.

:func:`run` fits, on ONE split (the 1-D toy of :mod:`comparisons.datasets.toy1d` or a UCI
set), four methods and builds for each an ``DataTree`` on the TRAINING data (for PSIS-LOO,
``az.compare``, LOO-PIT and PPC) and one on the TEST data (for the test metrics):

====================  ===========================================================================
method                what it is
====================  ===========================================================================
``mc_dropout``        the protocol's network (:func:`~comparisons.protocols.uci.fit_mc_dropout`:
                      grid search over (dropout rate, tau), retraining); ``T`` passes of
                      :func:`~vi_dropout.predict.mc_predict` (``inverted=True``, the selected
                      ``keep_prob`` on every layer), via
                      :func:`~comparisons.inference_data.io_mc_dropout.from_mc_dropout`
``standard_dropout``  the same network with the masks replaced by their means
                      (:func:`~vi_dropout.predict.standard_dropout_predict`), predictive
                      :math:`\mathcal{N}(\hat y, 1/\tau)`. A point estimate: no posterior draws,
                      hence no LOO / compare / PPC (reported as ``n/a (no posterior)``)
``gp_arccos1``        ``ScaleKernel(arc-cosine order 1)`` fitted by marginal likelihood
                      (:func:`~comparisons.gp.fit.fit_gp`), via
                      :func:`~comparisons.inference_data.io_exact_gp.from_exact_gp` (independent per-point
                      draws of the latent marginals); with a shared prior (below) it is
                      replaced by ``gp_arccos1_prior``, the same kernel with the
                      hyper-parameters FIXED by that prior and the selected noise (nothing
                      fitted)
``hmc``               NUTS (:func:`~comparisons.reference.nuts.run_nuts`) on the same architecture
                      (one hidden ReLU layer of the protocol's width) with the dropout model's
                      prior and noise (below), on the standardised training data (optionally a
                      random subset of at most ``hmc_max_train`` rows), via
                      :meth:`~comparisons.reference.nuts.NUTSResult.to_datatree`
====================  ===========================================================================

HMC's prior and noise. The protocol (Keras objective, ``l = 1e-2``, standardised targets, ``tau``
on the original scale) corresponds to the derivation's prior length-scale and precision on the
standardised scale (:func:`~comparisons.gp.priors.dropout_prior_gp_hyperparameters`)

.. math::
    l_\text{eff} = \frac{l\,p\,s_y}{\sqrt 2}, \qquad \tau_s = \tau\,s_y^2,

so the NUTS target is :math:`\mathbf{W}_i, \mathbf{b}_i \sim \mathcal{N}(0, l_\text{eff}^{-2})`,
:math:`y^\text{std}_n \sim \mathcal{N}(f(\mathbf{x}_n), \tau_s^{-1})`: the posterior that MC
dropout approximates. With ``l = 1e-2`` this prior is almost flat (prior sd
:math:`1/l_\text{eff} \approx 140` per weight on the toy), which makes the posterior hard to
sample (tree depth 10 is common); ``hmc_prior_length_scale`` overrides :math:`l_\text{eff}`
(documented in the records as ``hmc_prior_length_scale``) for HMC alone. The chains start from
:math:`\mathcal{N}(0, 1)` weights (``init_scale = l_eff`` in ``run_nuts``' units) rather than
from the prior, whose draws would give outputs of order :math:`10^4`.

One shared prior for every method. ``DiagnoseSettings.prior_length_scale`` (CLI
``--prior-length-scale``) sets :math:`l_\text{eff}` itself, on the standardised scale, for all
methods at once:

* MC dropout: the protocol's Keras :math:`l` follows from :math:`l_\text{eff} = l p s_y/\sqrt 2`.
  As the protocol has one :math:`l` for its whole grid while :math:`p` varies over it, the grid
  search runs with :math:`l = \sqrt 2\, l_\text{eff}/s_y` (exact for :math:`p = 1`, so each grid
  point's prior length-scale is :math:`p\,l_\text{eff}`, within the grid's :math:`p \ge 0.9`
  of it on the toy and UCI grids), and the selected (dropout rate, tau) is then retrained on the
  full training split with the exact :math:`l = \sqrt 2\, l_\text{eff}/(p s_y)`: the network
  that is evaluated has weight decay :math:`l^2 p/(2N\tau)` for exactly this prior;
* the GP: ``gp_arccos1_prior``, the arc-cosine kernel of that prior
  (:func:`~comparisons.gp.priors.dropout_prior_gp_hyperparameters`: weight variance
  :math:`Q/l_\text{eff}^2`, bias variance and per-unit output variance :math:`1/l_\text{eff}^2`,
  noise :math:`1/\tau_s` with the tau MC dropout selected), no fitting. It has no output-bias
  term (a constant :math:`l_\text{eff}^{-2}` that the network's output bias adds);
* HMC: :math:`\mathcal{N}(0, l_\text{eff}^{-2})` on every weight and bias, noise
  :math:`\tau_s`.

The Keras objective puts no penalty on the biases, so MC dropout's biases keep an (improper)
flat prior whatever :math:`l`; the GP and HMC use :math:`\mathcal{N}(0, l_\text{eff}^{-2})`.

Metrics (tidy records ``{dataset, method, split, metric, value, note}``, original target
scale):

* on the training data: ``elpd_loo``, ``elpd_loo_se``, ``p_loo`` and ``pareto_k_bad`` (points with
  Pareto :math:`\hat k` above ArviZ's threshold) from
  :func:`~comparisons.inference_data.loo.checked_loo`; ``rank``, ``elpd_diff``, ``dse`` and
  ``weight`` (stacking) from ``az.compare`` over the methods with draws;
* on the test data: ``test_ll`` (draw-based methods: the mixture estimate
  :math:`\frac1M\sum_n[\operatorname{logsumexp}_s \log p(y_n\mid f_s) - \log S]`; the GP and
  standard dropout: their Gaussian predictive), ``coverage_95`` and ``rmse`` of the
  moment-matched Gaussian :math:`\mathcal{N}(\mu_n, \sigma_n^2)` (noise included), and
  ``mean_pred_sd``;
* when HMC ran, for every method the distance of its test predictive from HMC's
  (:func:`~comparisons.metrics.distances.summarize_predictive_distances`): ``smd``,
  ``var_ratio``, ``w2`` (in units of :math:`s_y`), ``tv`` (and ``kl``);
* HMC's convergence (:func:`~comparisons.reference.nuts.hmc_summary` on ``f`` at the training
  inputs): ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail``, ``num_divergent``, ``min_bfmi``;
  its problems are in ``note`` and in :attr:`DiagnoseResult.warnings`.

A metric that does not apply is a record with ``value`` NaN and a ``note`` that says why
(``n/a (no posterior)``, ``n/a (too few draws: ...)``), never a silent NaN.

The report (``report.md``, ``records.csv``, figures, NetCDF files) is written by
:func:`comparisons.report.diagnose.write_report`; nothing here writes files.

Example:
    >>> result = run(DiagnoseSettings(dataset="toy1d", split=0, epochs_multiplier=0.05,
    ...     num_samples=200, max_grid=1, hmc_warmup=50, hmc_samples=50, hmc_chains=2,
    ...     hmc_processes=1, hmc_max_tree_depth=5))  # doctest: +SKIP
    >>> write_report(result, "outputs/diagnose/toy1d")  # doctest: +SKIP

Why one module of this size: one experiment on one split: the four methods are fitted on the
same data and compared by LOO, az.compare and their distances from HMC.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import arviz as az
import gpytorch
import numpy as np
import torch
import xarray as xr
from scipy.special import logsumexp

from comparisons.datasets.splits import load_split
from comparisons.datasets.toy1d import TOY1D_NAME
from comparisons.datasets.uci import StandardizedSplit, standardize
from comparisons.gp.fit import fit_gp
from comparisons.gp.priors import dropout_prior_gp_hyperparameters
from comparisons.inference_data.io_exact_gp import from_exact_gp
from comparisons.inference_data.io_mc_dropout import from_mc_dropout
from comparisons.inference_data.loo import (
    LOOReliabilityWarning,
    checked_loo,
    unreliable_points,
)
from comparisons.metrics.distances import (
    interval_coverage,
    moment_match_samples,
    summarize_predictive_distances,
)
from comparisons.metrics.gaussian import gaussian_log_likelihood
from comparisons.protocols.uci import (
    MCDropoutUCISettings,
    fit_mc_dropout,
    fit_mc_dropout_under_prior,
)
from comparisons.reference.nuts import HMCDiagnosticsWarning, hmc_summary, run_nuts
from vi_dropout.predict import mc_predict, standard_dropout_predict

__all__ = [
    "DIAGNOSE_METHODS",
    "DRAW_METHODS",
    "NO_POSTERIOR",
    "DiagnoseResult",
    "DiagnoseSettings",
    "DiagnoseWarning",
    "MethodOutput",
    "compare_methods",
    "run",
]

#: every method, in table order (with a shared prior ``gp_arccos1_prior`` replaces ``gp_arccos1``)
DIAGNOSE_METHODS = ("mc_dropout", "standard_dropout", "gp_arccos1", "hmc")
#: the methods with posterior draws (PSIS-LOO, compare, PPC, LOO-PIT)
DRAW_METHODS = ("mc_dropout", "gp_arccos1", "hmc")
NO_POSTERIOR = "n/a (no posterior)"


class DiagnoseWarning(UserWarning):
    """A diagnostic of :func:`run` was skipped or is unreliable (too few draws for LOO,
    a method left out of ``az.compare``)."""


def _pos_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _pos_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DiagnoseSettings:
    """Settings of :func:`run` (all recorded in :attr:`DiagnoseResult.settings`).

    Attributes:
        dataset: ``"toy1d"`` or a UCI name / alias.
        split: UCI split index, or the toy's data seed (``>= 0``).
        epochs_multiplier: the protocol's epochs multiplier (base epochs 1000 on the toy, 40 UCI).
        num_samples: ``T``, MC dropout passes (train and test), ``>= 1``; PSIS-LOO needs
            ``>= min_loo_draws``.
        max_grid: only the first grid points of the protocol (smoke runs); ``None``: all.
        seed: seed of the protocol, the MC streams, the GP draws and HMC.
        toy_num_train: training points of the toy.
        gp_iterations: L-BFGS iterations of the GP fit.
        gp_num_draws: draws of the GP's latent marginals per point.
        min_loo_draws: fewest draws (chains x draws) for PSIS-LOO; fewer: LOO skipped with a
            :class:`DiagnoseWarning` and an ``n/a`` record.
        hmc: run the HMC reference (``False``: skip it, and the distances).
        hmc_chains, hmc_warmup, hmc_samples: NUTS chains, warmup and kept iterations per chain.
        hmc_max_train: condition HMC on a random subset (seeded) of at most this many training
            rows (``None``: all). HMC is then left out of ``az.compare`` (other observations).
        hmc_processes: worker processes for the chains (1: in this process).
        hmc_max_tree_depth: NUTS maximum tree depth (``2^depth - 1`` gradients per iteration at
            most).
        hmc_prior_length_scale: prior length-scale of HMC alone on the standardised scale;
            ``None``: the dropout model's :math:`l_\\text{eff}` (see the module docstring).
        prior_length_scale: ONE prior length-scale :math:`l_\\text{eff}` (standardised scale)
            for every method: MC dropout's weight decay, the GP's fixed hyper-parameters
            (``gp_arccos1_prior`` instead of the fitted ``gp_arccos1``) and HMC's prior (see the
            module docstring); ``None``: the protocol's ``l = 1e-2``, the fitted GP and HMC with
            the matched :math:`l_\\text{eff}` (or ``hmc_prior_length_scale``). Excludes
            ``hmc_prior_length_scale``.
        hmc_target_accept_prob: NUTS target acceptance.
        methods: registered methods (:mod:`comparisons.protocols.registry`, built-in or of your
            own, with a split predictive) to diagnose beside the four: their Gaussian test
            predictive joins the test metrics and the distances from HMC; without posterior
            draws they have no LOO, compare or PPC (``n/a (no posterior)``). They fit with the
            run's epochs multiplier, samples and seed, and ``prior_length_scale`` when set.

    Example:
        >>> DiagnoseSettings(dataset="yacht", split=3, hmc=False).split
        3
    """

    dataset: str = TOY1D_NAME
    split: int = 0
    epochs_multiplier: float = 10.0
    num_samples: int = 1000
    max_grid: int | None = None
    seed: int = 0
    toy_num_train: int = 200
    gp_iterations: int = 200
    gp_num_draws: int = 1000
    min_loo_draws: int = 100
    hmc: bool = True
    hmc_chains: int = 4
    hmc_warmup: int = 300
    hmc_samples: int = 300
    hmc_max_train: int | None = None
    hmc_processes: int = 2
    hmc_max_tree_depth: int = 10
    hmc_prior_length_scale: float | None = None
    hmc_target_accept_prob: float = 0.8
    prior_length_scale: float | None = None
    methods: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.dataset, str):
            raise ValueError(f"dataset must be 'toy1d' or a UCI name, got {self.dataset!r}")
        _pos_int(self.split, "split", 0)
        _pos_float(self.epochs_multiplier, "epochs_multiplier")
        _pos_int(self.num_samples, "num_samples")
        if self.max_grid is not None:
            _pos_int(self.max_grid, "max_grid")
        _pos_int(self.seed, "seed", 0)
        for name in ("toy_num_train", "gp_iterations", "gp_num_draws", "min_loo_draws",
                     "hmc_chains", "hmc_samples", "hmc_processes", "hmc_max_tree_depth"):
            _pos_int(getattr(self, name), name)
        _pos_int(self.hmc_warmup, "hmc_warmup", 0)
        if self.hmc_max_train is not None:
            _pos_int(self.hmc_max_train, "hmc_max_train", 2)
        if self.hmc_prior_length_scale is not None:
            _pos_float(self.hmc_prior_length_scale, "hmc_prior_length_scale")
        if self.prior_length_scale is not None:
            _pos_float(self.prior_length_scale, "prior_length_scale")
            if self.hmc_prior_length_scale is not None:
                raise ValueError(
                    f"prior_length_scale (shared by all methods, {self.prior_length_scale!r}) and "
                    f"hmc_prior_length_scale (HMC only, {self.hmc_prior_length_scale!r}) exclude "
                    f"each other; set one")
        if not 0 < float(self.hmc_target_accept_prob) < 1:
            raise ValueError(f"hmc_target_accept_prob must be in (0, 1), got "
                             f"{self.hmc_target_accept_prob!r}")
        if not isinstance(self.hmc, bool):
            raise ValueError(f"hmc must be True or False, got {self.hmc!r}")
        object.__setattr__(self, "methods", _registered_methods(self.methods))


@dataclass(eq=False)
class MethodOutput:
    """One method's outputs on the split.

    Attributes:
        method: a name of :data:`DIAGNOSE_METHODS` or a registered method.
        idata_train, idata_test: ``DataTree`` at the training / test inputs (``None`` for
            standard dropout, which has no draws).
        mean, var: moment-matched Gaussian test predictive, original scale, ``(n_test,)``.
        test_ll: mean test log-likelihood (see the module docstring).
        wall_time_s: fitting and prediction (HMC: of this call, so chains loaded from the
            cache cost nothing; ``info["chain_wall_time_sum_s"]`` has their own times).
        loo: ``ELPDData`` of :func:`~comparisons.inference_data.loo.checked_loo` (``None`` when
            skipped).
        loo_note: why ``loo`` is missing (``""`` when present).
        info: extra numbers (hyper-parameters, HMC timings, ...).
    """

    method: str
    idata_train: xr.DataTree | None
    idata_test: xr.DataTree | None
    mean: np.ndarray
    var: np.ndarray
    test_ll: float
    wall_time_s: float
    loo: Any = None
    loo_note: str = ""
    info: dict = field(default_factory=dict)


@dataclass(eq=False)
class DiagnoseResult:
    """Everything :func:`run` computed: tidy records, the test predictives (arrays) and every
    method's ``DataTree``.

    Attributes:
        dataset, split: the split.
        data: the standardised split (``Toy1DData`` or ``StandardizedSplit``).
        y_test: test targets, original scale, ``(n_test,)``.
        methods: ``{method: MethodOutput}`` in table order.
        comparison: the ``az.compare`` table (``None`` if fewer than two methods had LOO).
        hmc_table: ``hmc_summary`` of HMC's ``f`` at the training inputs (``None`` without HMC).
        records: tidy records (see the module docstring).
        warnings: text of every surfaced warning (Pareto k, HMC diagnostics, skipped LOO).
        settings: the settings as a dict (plus the HMC prior actually used).
        wall_time_s: the whole run.
    """

    dataset: str
    split: int
    data: Any
    y_test: np.ndarray
    methods: dict[str, MethodOutput]
    comparison: Any
    hmc_table: Any
    records: list[dict]
    warnings: list[str]
    settings: dict
    wall_time_s: float


# ------------------------------------------------------------------------------- helpers
def _lppd(idata: xr.DataTree) -> float:
    """Mean over points of :math:`\\operatorname{logsumexp}_s \\log p(y_n|f_s) - \\log S`."""
    ll = idata.log_likelihood["y"].values  # chain x draw x obs
    ll = ll.reshape(-1, ll.shape[-1])
    return float(np.mean(logsumexp(ll, axis=0) - math.log(ll.shape[0])))


def _f_draws(idata: xr.DataTree) -> np.ndarray:
    """``S x N`` latent draws (original scale) of ``posterior["f"]``."""
    f = idata.posterior["f"].values
    return f.reshape(-1, f.shape[-1])


def _gaussian_test_ll(mean: np.ndarray, var: np.ndarray, y: np.ndarray) -> float:
    """Mean Gaussian test log-likelihood (original scale)."""
    return float(gaussian_log_likelihood(
        *(torch.tensor(np.array(a)) for a in (mean, var, y))).mean())


def _run_loo(idata: xr.DataTree, method: str, min_draws: int, caught: list[str]):
    n_draws = int(idata.log_likelihood.sizes["chain"] * idata.log_likelihood.sizes["draw"])
    if n_draws < min_draws:
        note = f"n/a (too few draws: {n_draws} < {min_draws})"
        msg = (f"{method}: PSIS-LOO skipped, {n_draws} draws < min_loo_draws={min_draws}; "
               f"increase the number of draws")
        warnings.warn(msg, DiagnoseWarning, stacklevel=4)
        caught.append(msg)
        return None, note
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            loo = checked_loo(idata, min_draws=min_draws)
        except ValueError as err:  # PSIS undefined (e.g. a stuck HMC chain)
            msg = f"{method}: PSIS-LOO skipped: {err}"
            caught.append(msg)
            loo = None
    if loo is None:
        warnings.warn(msg, DiagnoseWarning, stacklevel=4)
        return None, "n/a (PSIS-LOO undefined: the draws' log-likelihood does not vary)"
    for w in rec:
        if issubclass(w.category, LOOReliabilityWarning):
            caught.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loo, ""


def compare_methods(loos: Mapping[str, Any], idatas: Mapping[str, xr.DataTree]):
    """``az.compare`` (PSIS-LOO, stacking weights) over methods evaluated on the SAME
    observations.

    Args:
        loos: ``{method: ELPDData}`` (pointwise, e.g. from
            :func:`~comparisons.inference_data.loo.checked_loo`).
        idatas: ``{method: InferenceData}`` the ``loos`` came from (training data).

    Returns:
        arviz-stats' comparison ``DataFrame``, unrounded (columns ``rank``, ``elpd_diff``,
        ``dse``, ``p_worse``, ``diag_diff``, ``diag_elpd``, ``p``, ``elpd``, ``se``,
        ``weight``).

    Raises:
        ValueError: fewer than two methods, a method missing from ``idatas``, or methods with
            different numbers of observations or different observed ``y``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = from_mc_dropout(rng.normal(size=(200, 5, 1)), np.zeros((5, 1)), tau=1.0)
        >>> b = from_mc_dropout(0.1 * rng.normal(size=(200, 5, 1)), np.zeros((5, 1)), tau=1.0)
        >>> cmp = compare_methods({"a": checked_loo(a), "b": checked_loo(b)}, {"a": a, "b": b})
        >>> cmp.index[0]
        'b'
    """
    if len(loos) < 2:
        raise ValueError(f"compare_methods: az.compare needs at least 2 methods, got "
                         f"{list(loos)}")
    missing = [m for m in loos if m not in idatas]
    if missing:
        raise ValueError(f"compare_methods: no InferenceData for {missing}")
    counts = {m: int(idatas[m].observed_data["y"].shape[0]) for m in loos}
    if len(set(counts.values())) > 1:
        raise ValueError(f"compare_methods: the methods were evaluated on different numbers of "
                         f"observations {counts}; az.compare needs the same data for every "
                         f"method")
    first = next(iter(loos))
    y0 = idatas[first].observed_data["y"].values
    for m in loos:
        if not np.array_equal(idatas[m].observed_data["y"].values, y0):
            raise ValueError(f"compare_methods: the observed y of {m!r} differ from those of "
                             f"{first!r}; az.compare needs the same data for every method")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return az.compare(dict(loos), method="stacking", round_to="none")


# ------------------------------------------------------------------------------ the steps
@dataclass
class _Split:
    """The split as every step needs it: original-scale targets (1-D for the metrics, ``N x 1``
    for the converters, which refuse a 1-D ``y``) and standardised inputs."""

    name: str
    split: int
    raw: Any
    data: Any
    std: Any
    y_mean: float
    y_std: float
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray

    @property
    def attrs(self) -> dict[str, Any]:
        return {"dataset": self.name, "split": self.split}


def _load(s: DiagnoseSettings) -> _Split:
    name, raw, data = load_split(s.dataset, s.split, toy_num_train=s.toy_num_train)
    std = data if isinstance(data, StandardizedSplit) else standardize(raw)
    return _Split(
        name, int(s.split), raw, data, std, float(std.y_mean), float(std.y_std),
        x_train=np.asarray(std.x_train, dtype=np.float64),
        x_test=np.asarray(std.x_test, dtype=np.float64),
        y_train=np.array(raw.y_train, dtype=np.float64)[:, 0],  # writable copies
        y_test=np.array(raw.y_test, dtype=np.float64)[:, 0])


def _fit_dropout(s: DiagnoseSettings, d: _Split, say: Callable[[str], None], progress: bool
                 ) -> tuple[dict[str, MethodOutput], MCDropoutUCISettings, dict]:
    """MC dropout and standard dropout (one network); returns them, the protocol of the network
    that is evaluated and its dropout prior's GP hyper-parameters."""
    shared = s.prior_length_scale is not None
    protocol_kw = dict(epochs_multiplier=s.epochs_multiplier, num_samples=s.num_samples,
                       seed=s.seed, max_grid=s.max_grid)
    t0 = time.perf_counter()
    if shared:  # grid search exact at keep_prob 1, retraining exact (module docstring)
        say(f"[mc_dropout] protocol: epochs x{s.epochs_multiplier:g}, T = {s.num_samples}, "
            f"shared prior l_eff = {s.prior_length_scale:g}")
        drop, protocol = fit_mc_dropout_under_prior(d.raw, s.prior_length_scale, d.y_std,
                                                    progress=progress, **protocol_kw)
        say(f"[mc_dropout] retrained dropout rate {drop.dropout_rate}, tau {drop.tau} with "
            f"l = {protocol.prior_length_scale:.4g}")
    else:
        protocol = MCDropoutUCISettings(**protocol_kw)
        say(f"[mc_dropout] protocol: epochs x{s.epochs_multiplier:g}, T = {s.num_samples}, "
            f"l = {protocol.prior_length_scale:.4g}")
        drop = fit_mc_dropout(d.raw, protocol, progress=progress)
    kp, tau = drop.keep_prob, float(drop.tau)
    prior = dropout_prior_gp_hyperparameters(protocol.prior_length_scale, kp, tau, d.y_std,
                                             d.raw.n_features, d.raw.n_hidden)
    ws = [w.double() for w in drop.weights]
    bs = [b.double() for b in drop.biases]
    gen = torch.Generator().manual_seed(s.seed * 1_000_003 + d.split * 1_000 + 777)
    with torch.no_grad():
        s_train = mc_predict(torch.as_tensor(d.x_train), ws, bs, kp, s.num_samples,
                             inverted=True, generator=gen).numpy()
        s_test = mc_predict(torch.as_tensor(d.x_test), ws, bs, kp, s.num_samples, inverted=True,
                            generator=gen).numpy()
        std_test = standard_dropout_predict(torch.as_tensor(d.x_test), ws, bs, kp,
                                            inverted=True).numpy()[:, 0]
    attrs = dict(d.attrs, keep_prob=kp)
    id_train = from_mc_dropout(s_train, d.y_train[:, None], tau, d.x_train, y_mean=d.y_mean,
                               y_std=d.y_std, seed=s.seed, attrs=attrs)
    id_test = from_mc_dropout(s_test, d.y_test[:, None], tau, d.x_test, y_mean=d.y_mean,
                              y_std=d.y_std, seed=s.seed + 1, attrs=attrs)
    mean, var = moment_match_samples(s_test[..., 0], noise_var=1.0 / tau, y_mean=d.y_mean,
                                     y_std=d.y_std)
    wall = time.perf_counter() - t0
    info = {"keep_prob": kp, "tau": tau,
            "prior_length_scale_keras": protocol.prior_length_scale,
            "effective_length_scale": prior["effective_length_scale"]}
    sd_mean = d.y_mean + d.y_std * std_test
    sd_var = np.full_like(sd_mean, 1.0 / tau)
    outputs = {
        "mc_dropout": MethodOutput("mc_dropout", id_train, id_test, mean, var, _lppd(id_test),
                                   wall, info=info),
        "standard_dropout": MethodOutput(
            "standard_dropout", None, None, sd_mean, sd_var,
            _gaussian_test_ll(sd_mean, sd_var, d.y_test), wall, loo_note=NO_POSTERIOR,
            info=dict(info)),
    }
    return outputs, protocol, prior


def _registered_methods(methods) -> tuple[str, ...]:
    """``methods`` as a tuple of distinct registered method ids with a split predictive, none
    of the four built into the run; else ``ValueError`` naming them."""
    from comparisons.protocols.registry import predictive_method_ids

    if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
        raise ValueError(f"methods must be a sequence of method ids, got {methods!r}")
    methods = tuple(methods)
    ok = predictive_method_ids(exclude=DIAGNOSE_METHODS)
    for m in methods:
        why = ("is one of the four methods diagnose always fits" if m in DIAGNOSE_METHODS
               else "is given twice" if methods.count(m) > 1 else None if m in ok
               else "is not a registered method with a split predictive (a method of your own "
                    "needs its --method-file)")
        if why:
            raise ValueError(f"methods: {m!r} {why}; the registered methods with a split "
                             f"predictive are {', '.join(ok) or 'none'}")
    return methods


def _fit_registered(s: DiagnoseSettings, d: _Split, method: str,
                    say: Callable[[str], None]) -> MethodOutput:
    """A registered method's Gaussian test predictive on the split (no draws)."""
    from comparisons.protocols.registry import RunSettings, get_method

    say(f"[{method}] the registry's split predictive")
    t0 = time.perf_counter()
    mean, var = get_method(method).split_predictive(d.raw, RunSettings(
        epochs_multiplier=s.epochs_multiplier, num_samples=s.num_samples, seed=s.seed,
        prior_length_scale=s.prior_length_scale))
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    var = np.asarray(var, dtype=np.float64).reshape(-1)
    return MethodOutput(method, None, None, mean, var, _gaussian_test_ll(mean, var, d.y_test),
                        time.perf_counter() - t0, loo_note=NO_POSTERIOR)


def _fit_gp_method(s: DiagnoseSettings, d: _Split, prior: dict,
                   say: Callable[[str], None]) -> MethodOutput:
    """The arc-cosine GP: fitted (``gp_arccos1``), or fixed by the shared prior
    (``gp_arccos1_prior``)."""
    shared = s.prior_length_scale is not None
    gp_method = "gp_arccos1_prior" if shared else "gp_arccos1"
    say(f"[{gp_method}] " + ("hyper-parameters of the shared prior" if shared else
                             f"marginal likelihood, up to {s.gp_iterations} L-BFGS iterations"))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
        # evaluating the GP at its own training inputs is intended here (LOO on training data)
        warnings.simplefilter("ignore", gpytorch.utils.warnings.GPInputWarning)
        gp = fit_gp(gp_method, d.x_train, d.std.y_train, iterations=s.gp_iterations,
                    seed=s.seed + d.split, prior=prior if shared else None)
        m_std, v_std = gp.predict(d.x_test)
        gp_attrs = dict(d.attrs, method=gp_method)
        gp_train = from_exact_gp(gp.model, gp.likelihood, d.x_train, d.y_train[:, None],
                                 s.gp_num_draws, y_mean=d.y_mean, y_std=d.y_std, seed=s.seed,
                                 attrs=gp_attrs)
        gp_test = from_exact_gp(gp.model, gp.likelihood, d.x_test, d.y_test[:, None],
                                s.gp_num_draws, y_mean=d.y_mean, y_std=d.y_std,
                                seed=s.seed + 1, attrs=gp_attrs)
    gp_mean, gp_var = d.y_mean + d.y_std * m_std, d.y_std**2 * v_std
    return MethodOutput(gp_method, gp_train, gp_test, gp_mean, gp_var,
                        _gaussian_test_ll(gp_mean, gp_var, d.y_test), time.perf_counter() - t0,
                        info={f"hp_{k}": v for k, v in gp.hyperparameters.items()})


def _hmc_rows(s: DiagnoseSettings, d: _Split) -> np.ndarray:
    """The training rows HMC is conditioned on (a seeded subset with ``hmc_max_train``)."""
    n = d.x_train.shape[0]
    if s.hmc_max_train is not None and s.hmc_max_train < n:
        return np.sort(np.random.default_rng(s.seed + d.split).choice(
            n, s.hmc_max_train, replace=False))
    return np.arange(n)


def _fit_hmc(s: DiagnoseSettings, d: _Split, l_hmc: float, tau_hmc: float, rows: np.ndarray,
             cache_dir, say: Callable[[str], None], caught: list[str]):
    """NUTS on ``rows`` of the training data; returns its :class:`MethodOutput` and the
    ``hmc_summary`` of ``f`` at those inputs (its problems are added to ``caught``)."""
    say(f"[hmc] NUTS {s.hmc_chains} chains x ({s.hmc_warmup} warmup + {s.hmc_samples}) on "
        f"{rows.size} rows, l = {l_hmc:.4g}, tau_s = {tau_hmc:.4g}")
    t0 = time.perf_counter()
    res = run_nuts(d.x_train[rows], np.asarray(d.std.y_train, dtype=np.float64)[rows],
                   hidden=(d.raw.n_hidden,), prior_length_scale=l_hmc, tau=tau_hmc,
                   num_chains=s.hmc_chains, num_warmup=s.hmc_warmup,
                   num_samples=s.hmc_samples, cache_dir=cache_dir,
                   num_processes=s.hmc_processes, seed=s.seed,
                   max_tree_depth=s.hmc_max_tree_depth,
                   target_accept_prob=s.hmc_target_accept_prob, init_scale=l_hmc)
    h_train = res.to_datatree(y=d.y_train[:, None][rows], y_mean=d.y_mean, y_std=d.y_std,
                                    seed=s.seed, attrs=d.attrs)
    h_test = res.to_datatree(x=d.x_test, y=d.y_test[:, None], y_mean=d.y_mean,
                                   y_std=d.y_std, seed=s.seed + 1, attrs=d.attrs)
    h_mean, h_var = moment_match_samples(_f_draws(h_test), noise_var=d.y_std**2 / tau_hmc)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        hmc_table = hmc_summary(h_train, var_names=["f"])
    for w in rec:
        if issubclass(w.category, HMCDiagnosticsWarning):
            caught.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    info = {"prior_length_scale": l_hmc, "tau_standardized": tau_hmc, "num_train": int(rows.size),
            "wall_time_nuts_s": res.wall_time_s,
            "grad_evals_per_draw": res.grad_evals_per_draw,
            "chains_from_cache": float(sum(res.from_cache)),
            "chain_wall_time_sum_s": float(np.sum(res.chain_wall_times_s)),
            **{k: v for k, v in hmc_table.attrs["diagnostics"].items()
               if k in ("max_r_hat", "min_ess_bulk", "min_ess_tail", "num_divergent",
                        "min_bfmi")}}
    return MethodOutput("hmc", h_train, h_test, h_mean, h_var, _lppd(h_test),
                        time.perf_counter() - t0, info=info), hmc_table


def _loo_and_compare(outputs: dict[str, MethodOutput], min_draws: int, n_hmc: int, n_train: int,
                     caught: list[str]) -> tuple[Any, dict[str, str]]:
    """PSIS-LOO of every method with draws (stored on its output) and ``az.compare`` over those
    fitted to the same observations; returns the comparison and why methods are left out."""
    for m, out in outputs.items():
        if out.idata_train is not None:
            out.loo, out.loo_note = _run_loo(out.idata_train, m, min_draws, caught)
    with_loo = {m: o.loo for m, o in outputs.items() if o.loo is not None}
    compare_notes: dict[str, str] = {}
    if "hmc" in with_loo and n_hmc != n_train:
        compare_notes["hmc"] = f"n/a (HMC conditioned on {n_hmc} of {n_train} training rows)"
        msg = f"hmc left out of az.compare: {compare_notes['hmc'][5:-1]}"
        warnings.warn(msg, DiagnoseWarning, stacklevel=3)
        caught.append(msg)
        with_loo.pop("hmc")
    comparison = None
    if len(with_loo) >= 2:
        comparison = compare_methods(with_loo, {m: outputs[m].idata_train for m in with_loo})
    return comparison, compare_notes


# ---------------------------------------------------------------------------------- run
def run(settings: DiagnoseSettings | None = None, *,
        cache_dir: str | os.PathLike | None = None, progress: bool = False) -> DiagnoseResult:
    r"""Fit the four methods on one split and diagnose them (see the module docstring).

    Args:
        settings: :class:`DiagnoseSettings` (default: defaults, the toy's split 0).
        cache_dir: NUTS chain cache (e.g. ``OUT/nuts-cache``); ``None``: no cache.
        progress: print the stages.

    Returns:
        :class:`DiagnoseResult`.

    Raises:
        ValueError: bad arguments; non-finite draws (from the converters); RuntimeError if the
            protocol's training diverged.

    Timing (toy1d, one torch thread on the loaded 2-core box): the protocol dominates at
    epochs x10 (about a minute); HMC with the dropout prior needs up to ``2^10`` gradients per
    iteration (about 0.3-0.5 s per iteration per chain with 200 points).

    Example:
        >>> r = run(DiagnoseSettings(dataset="toy1d", epochs_multiplier=0.05, num_samples=200,
        ...                          max_grid=1, hmc=False))  # doctest: +SKIP
        >>> r.methods["standard_dropout"].loo_note  # doctest: +SKIP
        'n/a (no posterior)'
    """
    s = DiagnoseSettings() if settings is None else settings
    if not isinstance(s, DiagnoseSettings):
        raise ValueError(f"settings must be a DiagnoseSettings, got {type(s).__name__}")
    t_start = time.perf_counter()

    def say(msg):
        if progress:
            print(msg, flush=True)

    d = _load(s)
    caught: list[str] = []
    outputs, protocol, prior = _fit_dropout(s, d, say, progress)
    gp_out = _fit_gp_method(s, d, prior, say)
    outputs[gp_out.method] = gp_out
    for method in s.methods:
        outputs[method] = _fit_registered(s, d, method, say)
    l_hmc = (prior["effective_length_scale"] if s.hmc_prior_length_scale is None
             else float(s.hmc_prior_length_scale))
    tau_hmc = prior["tau_standardized"]
    hmc_table = None
    n_hmc = d.x_train.shape[0]
    if s.hmc:
        rows = _hmc_rows(s, d)
        n_hmc = int(rows.size)
        outputs["hmc"], hmc_table = _fit_hmc(s, d, l_hmc, tau_hmc, rows, cache_dir, say, caught)
    comparison, compare_notes = _loo_and_compare(outputs, s.min_loo_draws, n_hmc,
                                                 d.x_train.shape[0], caught)
    regions = {}
    if d.name == TOY1D_NAME:
        regions = {r: d.data.region_mask(r) for r in ("train", "gap", "extrapolation")}
    records = _records(d.name, d.split, outputs, comparison, compare_notes, d.y_test, d.y_std,
                       hmc_table, regions)
    run_settings = dict(asdict(s), hmc_prior_length_scale_used=l_hmc, hmc_tau_standardized=tau_hmc,
                        hmc_num_train=n_hmc,
                        mc_dropout_prior_length_scale_keras=protocol.prior_length_scale,
                        mc_dropout_effective_length_scale=prior["effective_length_scale"])
    return DiagnoseResult(d.name, d.split, d.data, d.y_test, outputs, comparison, hmc_table,
                          records, caught, run_settings, time.perf_counter() - t_start)


# ------------------------------------------------------------------------------ records
def _records(name, split, outputs, comparison, compare_notes, y_test, y_std, hmc_table,
             regions):
    records: list[dict] = []

    def add(method, metric, value, note=""):
        value = float("nan") if value is None else float(value)
        if not math.isfinite(value) and not note:
            raise RuntimeError(f"{name} split {split}: {method} {metric} is not finite "
                               f"({value}) and has no note saying why")
        records.append({"dataset": name, "method": method, "split": split, "metric": metric,
                        "value": value, "note": note})

    for m, out in outputs.items():
        if out.loo is not None:
            add(m, "elpd_loo", out.loo.elpd)
            add(m, "elpd_loo_se", out.loo.se)
            add(m, "p_loo", out.loo.p)
            n_bad, n_points, good_k = unreliable_points(out.loo)
            add(m, "pareto_k_bad", n_bad,
                f"{n_bad} of {n_points} points with k > {good_k:.2f} or not finite"
                if n_bad else "")
        else:
            for metric in ("elpd_loo", "elpd_loo_se", "p_loo", "pareto_k_bad"):
                add(m, metric, None, out.loo_note)
        if comparison is not None and m in comparison.index:
            row = comparison.loc[m]
            for metric, col in (("rank", "rank"), ("elpd_diff", "elpd_diff"), ("dse", "dse"),
                                ("weight", "weight")):
                add(m, metric, row[col])
        else:
            note = (out.loo_note or compare_notes.get(m)
                    or "n/a (fewer than two methods with LOO)")
            for metric in ("rank", "elpd_diff", "dse", "weight"):
                add(m, metric, None, note)
        add(m, "test_ll", out.test_ll)
        add(m, "coverage_95", interval_coverage(out.mean, out.var, y_test, level=0.95))
        add(m, "rmse", float(np.sqrt(np.mean((y_test - out.mean) ** 2))))
        add(m, "mean_pred_sd", float(np.mean(np.sqrt(out.var))))
        add(m, "wall_time_s", out.wall_time_s)
    if "hmc" in outputs:
        ref = outputs["hmc"]
        for m, out in outputs.items():
            d = summarize_predictive_distances(out.mean, out.var, ref.mean, ref.var, scale=y_std)
            for metric in ("smd", "var_ratio", "kl", "w2", "tv"):
                add(m, f"{metric}_vs_hmc", d[metric])
            for region, mask in regions.items():
                if mask.any():
                    d = summarize_predictive_distances(out.mean, out.var, ref.mean, ref.var,
                                                       scale=y_std, mask=mask)
                    for metric in ("smd", "var_ratio", "tv"):
                        add(m, f"{metric}_vs_hmc[{region}]", d[metric])
        diag = hmc_table.attrs["diagnostics"]
        problems = "; ".join(diag["problems"])
        for metric in ("max_r_hat", "min_ess_bulk", "min_ess_tail", "num_divergent"):
            add("hmc", metric, diag[metric], problems)
        if diag["min_bfmi"] is not None:
            add("hmc", "min_bfmi", diag["min_bfmi"])
        for k in ("grad_evals_per_draw", "prior_length_scale", "tau_standardized", "num_train",
                  "chains_from_cache", "chain_wall_time_sum_s"):
            add("hmc", k, ref.info[k])
    return records
