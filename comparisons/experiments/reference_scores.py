r"""Every method scored against a saved HMC reference: its own test metrics and how far its
predictive is from the reference's, on the same split, under the same prior where it has one.

For each reference file of :mod:`comparisons.experiments.hmc_reference` (checked with
:func:`~comparisons.reference.reference_file.load_reference`), :func:`run` fits the methods on
the reference's split and compares their Gaussian test predictives
:math:`\mathcal{N}(\mu_n, \sigma_n^2)` (original scale, noise included) with the reference's
:math:`y_n \sim \frac1S\sum_s \mathcal{N}(f_{s,n}, s_y^2/\tau_s)`:

=====================  ============================================================================
method                 how it is fitted (the reference's prior :math:`l` and noise :math:`\tau_s`)
=====================  ============================================================================
``hmc``                the reference itself (its test LL uses the mixture over draws)
``mc_dropout``         the UCI protocol under the same prior
                       (:func:`~comparisons.protocols.uci.fit_mc_dropout_under_prior`; its grid
                       selects the same :math:`\tau` the reference used when that was its source)
``standard_dropout``   the same network with the masks replaced by their means,
                       :math:`\mathcal{N}(\hat y, 1/\tau)`
``concrete_dropout``,  keep_prob (and :math:`\theta` for ``full_elbo``) and :math:`\tau` learned
``full_elbo``          by the ELBO (:mod:`~comparisons.protocols.uci_concrete`) under the prior
                       :math:`\mathcal{N}(0, l^{-2})`
``mfvi``               mean-field Gaussian VI (:mod:`~comparisons.protocols.uci_mfvi`), same prior
``deep_ensemble``      5 networks with Gaussian heads (:mod:`~comparisons.protocols.uci_deep_ensemble`;
                       no prior: the method has none)
``laplace``,           laplace-torch's last-layer / KFAC Laplace at a MAP network trained with the
``laplace_kfac``       prior :math:`\mathcal{N}(0, l^{-2})`; prior precision and noise then tuned by
                       its marginal likelihood (:mod:`~comparisons.protocols.uci_laplace`)
``gp_arccos1_prior``   the arc-cosine GP of the network's prior (weight variance :math:`Q/l^2`, bias
                       :math:`1/l^2`, outputscale :math:`K/l^2`, noise :math:`1/\tau_s`), nothing
                       fitted: the infinite-width limit of the reference's model
``gp_arccos1``         the arc-cosine GP fitted by marginal likelihood (its own prior and noise)
``gp_se``              the squared-exponential GP fitted by marginal likelihood
=====================  ============================================================================

Metrics per method (tidy records ``dataset, method, split, metric, value, note``):
``test_ll``, ``rmse``, ``coverage_95``, ``mean_pred_sd``, ``wall_time_s``; against the
reference (:func:`~comparisons.metrics.distances.summarize_predictive_distances`, reference =
the moment-matched HMC predictive): ``smd_vs_hmc`` (mean difference in HMC sd units),
``var_ratio_vs_hmc`` (geometric mean), ``tv_vs_hmc``, ``w2_vs_hmc`` (units of :math:`s_y`),
``kl_vs_hmc``; calibration against the reference
(:func:`~comparisons.metrics.distances.mixture_interval_mass`): ``hmc_mass_50``,
``hmc_mass_80``, ``hmc_mass_95``, the reference's mass inside the method's central 50/80/95%
intervals, averaged over test points (equal to the level when the method matches HMC). The
reference's convergence is recorded as ``hmc`` metrics ``reference_converged``,
``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail``, ``divergences``; an unconverged reference's
records carry the note ``unconverged reference`` and the report leaves them out of the summary.

Example:
    >>> result = run(ScoreSettings(reference_dir="docs/reference/hmc",
    ...                            datasets=("yacht",)))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gpytorch
import numpy as np
import torch
from scipy.special import logsumexp

from comparisons.datasets.splits import load_split
from comparisons.datasets.toy1d import TOY1D_NAME
from comparisons.datasets.uci import StandardizedSplit, resolve_uci_name, standardize
from comparisons.experiments.choices import SCORED_METHODS
from comparisons.experiments.hmc_reference import reference_path
from comparisons.gp.fit import fit_gp
from comparisons.gp.priors import dropout_prior_hyperparameters
from comparisons.metrics.distances import (
    interval_coverage,
    mixture_interval_mass,
    moment_match_samples,
    summarize_predictive_distances,
)
from comparisons.metrics.gaussian import gaussian_log_likelihood
from comparisons.protocols.uci import fit_mc_dropout_under_prior
from comparisons.reference.reference_file import load_reference
from comparisons.runner.store import ResultsStore, make_cell_id
from vi_dropout.validation import check_nonnegative_int, check_positive, check_positive_int

__all__ = ["REFERENCE_FITTED", "SCORED_METHODS", "UNCONVERGED_NOTE", "Predictive", "ScoreResult", "ScoreSettings",
           "hmc_predictive", "run", "score_cell_id"]

#: the methods this experiment fits itself under the reference's prior and noise (their fits
#: need the reference's manifest: MC dropout's protocol and the GPs)
REFERENCE_FITTED = ("mc_dropout", "standard_dropout", "gp_arccos1_prior", "gp_arccos1", "gp_se")
#: note on every record of an unconverged reference
UNCONVERGED_NOTE = "unconverged reference"
#: central interval levels of the calibration against the reference
LEVELS = (0.5, 0.8, 0.95)


@dataclass(frozen=True)
class ScoreSettings:
    """What to score.

    Attributes:
        reference_dir: the folder of the reference files (``<dir>/<dataset>/split-<k>.nc``).
        datasets: data sets (``"toy1d"`` or UCI names); splits: their splits.
        methods: names of :data:`SCORED_METHODS`, or of methods registered in
            :mod:`comparisons.protocols.registry` with a ``split_predictive`` (a method of
            your own, e.g. ``examples/swag_method.py``).
        epochs_multiplier, num_samples: MC dropout's protocol (x10, T = 1000).
        gp_iterations: L-BFGS iterations of the fitted GPs.
        seed: seed of every fit.
        psis_draws: draws of the MC dropout family for the PSIS of the posterior against it
            (:func:`~comparisons.inference_data.vi_psis.variational_psis`); 0 (default): none.
        psis_thetas: the jitters :math:`\theta` of that family (its exact density needs
            :math:`\theta > 0`).
    """

    reference_dir: str
    datasets: tuple[str, ...] = ("toy1d",)
    splits: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = SCORED_METHODS
    epochs_multiplier: float = 10.0
    num_samples: int = 1000
    gp_iterations: int = 200
    seed: int = 0
    psis_draws: int = 0
    psis_thetas: tuple[float, ...] = (0.1, 0.03, 0.01)

    def __post_init__(self):

        known = REFERENCE_FITTED + _registered_methods()
        unknown = [m for m in self.methods if m not in known]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(
                f"methods must be distinct names of {', '.join(known)} (a method of your own "
                f"needs its --method-file), got {', '.join(self.methods) or 'none'}"
                + (f": {', '.join(unknown)} unknown" if unknown else ""))
        if not self.datasets or not self.splits:
            raise ValueError("ScoreSettings: datasets and splits must not be empty")
        check_positive(self.epochs_multiplier, "epochs_multiplier")
        for name in ("num_samples", "gp_iterations"):
            check_positive_int(getattr(self, name), name)
        from comparisons.inference_data.vi_psis import MIN_DRAWS

        if check_nonnegative_int(self.psis_draws, "psis_draws") and self.psis_draws < MIN_DRAWS:
            raise ValueError(f"psis_draws must be 0 (none) or an integer >= {MIN_DRAWS}, got "
                             f"{self.psis_draws}")
        thetas = tuple(check_positive(t, "psis_thetas") for t in self.psis_thetas)
        if not thetas:
            raise ValueError("psis_thetas must hold at least one theta > 0")
        object.__setattr__(self, "psis_thetas", thetas)


@dataclass
class Predictive:
    """A method's Gaussian test predictive on the original scale (noise included)."""

    method: str
    mean: np.ndarray
    var: np.ndarray
    wall_time_s: float
    info: dict[str, float] = field(default_factory=dict)


@dataclass
class ScoreResult:
    """What :func:`run` returns: tidy ``records`` and, per (data set, split), the reference's
    manifest (``references``) and every method's test :class:`Predictive` (``predictives``,
    ``"hmc"`` the reference's moment-matched one), e.g. for plotting them side by side."""

    records: list[dict[str, Any]]
    references: dict[tuple[str, int], dict[str, Any]]
    settings: ScoreSettings
    wall_time_s: float
    predictives: dict[tuple[str, int], dict[str, Predictive]] = field(default_factory=dict)


def hmc_predictive(idata, manifest: dict[str, Any]) -> tuple[np.ndarray, float]:
    """The reference's draws of ``f`` (``S x N``, all chains, original scale) and its noise
    variance on the original scale, :math:`s_y^2/\\tau_s`."""
    f = np.asarray(idata.posterior["f"].values, dtype=np.float64)
    f = f.reshape(-1, *f.shape[2:])
    if f.ndim == 3:  # chain x draw x obs x 1
        f = f[..., 0]
    return f, float(manifest["y_std"]) ** 2 / float(manifest["tau_standardized"])


def _mixture_test_ll(f: np.ndarray, noise_var: float, y: np.ndarray) -> float:
    """Mean over test points of :math:`\\log\\frac1S\\sum_s\\mathcal{N}(y_n; f_{s,n}, \\sigma^2)`."""
    ll = gaussian_log_likelihood(f, np.full_like(f, noise_var), np.broadcast_to(y, f.shape))
    return float(np.mean(logsumexp(ll, axis=0) - math.log(f.shape[0])))


def _fit_dropout(raw, std, manifest, s: ScoreSettings) -> list[Predictive]:
    t0 = time.perf_counter()
    drop, protocol = fit_mc_dropout_under_prior(
        raw, manifest["prior_length_scale"], float(std.y_std),
        epochs_multiplier=s.epochs_multiplier, num_samples=s.num_samples, seed=s.seed)
    wall = time.perf_counter() - t0
    info = {"dropout_rate": float(drop.dropout_rate), "tau": float(drop.tau),
            "keras_length_scale": float(protocol.prior_length_scale)}
    sd_mean = drop.standard_mean
    psis = _dropout_psis(drop, raw, std, manifest, s) if s.psis_draws else {}
    return [Predictive("mc_dropout", drop.mean, drop.var, wall, dict(info, **psis)),
            Predictive("standard_dropout", sd_mean, np.full_like(sd_mean, 1.0 / drop.tau), wall,
                       dict(info))]


def _dropout_psis(drop, raw, std, manifest, s: ScoreSettings) -> dict[str, float]:
    r"""PSIS of the posterior of the protocol's network under the reference's prior
    :math:`l` and noise :math:`\tau_s`, given the standardised training data, against the MC
    dropout family at the trained network's means (:math:`\mathbf{M} = \mathbf{W}'/\pi`, the
    selected keep_prob on every layer), for each :math:`\theta` of ``psis_thetas``:
    ``psis_k[theta=...]`` and ``psis_ess[theta=...]``, and the PSIS-LOO of the training data
    from the same draws: ``psis_loo_posterior[theta=...]`` (arviz-stats'
    ``loo_approximate_posterior``, reweighted to the posterior), its number of points with an
    unreliable :math:`\hat k` ``psis_loo_posterior_k_bad[theta=...]``, and ``psis_loo_q[theta=...]``
    (plain PSIS-LOO, taking :math:`q` for the posterior) with its ``psis_loo_q_k_bad[theta=...]``."""
    from comparisons.inference_data.loo import unreliable_points
    from comparisons.inference_data.vi_psis import variational_psis
    from vi_dropout.guides import DropoutGuide
    from vi_dropout.models import BayesianMLP
    from vi_dropout.network import Architecture

    widths = (drop.weights[0].shape[1], *(w.shape[0] for w in drop.weights))
    arch = Architecture(widths, "relu")  # the protocol's network
    model = BayesianMLP(arch, float(manifest["prior_length_scale"]),
                        float(manifest["tau_standardized"]), keep_prob=drop.keep_prob)
    means = [w.detach().double() / drop.keep_prob for w in drop.weights]
    biases = [b.detach().double() for b in drop.biases]
    x = torch.as_tensor(np.asarray(std.x_train), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(std.y_train), dtype=torch.float64).reshape(len(x), -1)
    out = {}
    for theta in s.psis_thetas:
        guide = DropoutGuide(model, theta, init_weights=means, init_biases=biases)
        psis = variational_psis(model, guide, x, y, num_draws=s.psis_draws, seed=s.seed,
                                loo=True)
        n_bad, _, _ = unreliable_points(psis.loo)
        out[f"psis_k[theta={theta:g}]"] = psis.pareto_k
        out[f"psis_ess[theta={theta:g}]"] = psis.ess
        out[f"psis_loo_posterior[theta={theta:g}]"] = psis.loo.elpd
        out[f"psis_loo_posterior_k_bad[theta={theta:g}]"] = n_bad
        out[f"psis_loo_q[theta={theta:g}]"] = psis.loo_of_q.elpd
        out[f"psis_loo_q_k_bad[theta={theta:g}]"] = unreliable_points(psis.loo_of_q)[0]
    return out


def _fit_gp(method: str, raw, std, manifest, s: ScoreSettings) -> Predictive:
    t0 = time.perf_counter()
    prior = None
    if method == "gp_arccos1_prior":
        prior = dropout_prior_hyperparameters(manifest["prior_length_scale"],
                                              manifest["tau_standardized"], 1.0,
                                              int(raw.n_features), int(raw.n_hidden))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
        fit = fit_gp(method, std.x_train, std.y_train, iterations=s.gp_iterations,
                     seed=s.seed + int(raw.split), prior=prior)
        m, v = fit.predict(std.x_test)
    y_std = float(std.y_std)
    return Predictive(method, float(std.y_mean) + y_std * m, y_std**2 * v,
                      time.perf_counter() - t0,
                      {f"hp_{k}": float(val) for k, val in fit.hyperparameters.items()})


def _registered_methods() -> tuple[str, ...]:
    """The registered methods with a split predictive that this experiment does not fit itself
    (the learned and baseline protocols, and methods of your own)."""
    from comparisons.protocols.registry import predictive_method_ids

    return predictive_method_ids(exclude=REFERENCE_FITTED)


def _fit_registered(method: str, raw, std, manifest, s: ScoreSettings) -> Predictive:
    """A registered method on this split, through its registry entry's split predictive, under
    the reference's prior length-scale (``RunSettings.prior_length_scale``)."""
    from comparisons.protocols.registry import RunSettings, get_method

    t0 = time.perf_counter()
    mean, var = get_method(method).split_predictive(raw, RunSettings(
        epochs_multiplier=s.epochs_multiplier, num_samples=s.num_samples, seed=s.seed,
        prior_length_scale=float(manifest["prior_length_scale"])))
    return Predictive(method, np.asarray(mean, np.float64), np.asarray(var, np.float64),
                      time.perf_counter() - t0)


def _predictives(raw, std, manifest, s: ScoreSettings) -> list[Predictive]:
    out: list[Predictive] = []
    if {"mc_dropout", "standard_dropout"} & set(s.methods):
        out += [p for p in _fit_dropout(raw, std, manifest, s) if p.method in s.methods]
    fitters: dict[str, Callable[..., Predictive]] = {
        m: _fit_gp for m in ("gp_arccos1_prior", "gp_arccos1", "gp_se")}
    fitters |= {m: _fit_registered for m in s.methods if m not in REFERENCE_FITTED}
    out += [fitters[m](m, raw, std, manifest, s) for m in s.methods if m in fitters]
    return out


def _load(dataset: str, split: int, s: ScoreSettings):
    name = TOY1D_NAME if dataset.lower() == TOY1D_NAME else resolve_uci_name(dataset)
    path = reference_path(s.reference_dir, name, split)
    idata, manifest = load_reference(path, expect={"dataset": name, "split": int(split)})
    return path, idata, dict(manifest, file=str(path))


#: the layout of the PSIS records in a cell (2: with the PSIS-LOO per theta; 3: the plain one
#: finite where the tail fit fails; 4: with the plain one's count of unreliable points)
PSIS_RECORDS_VERSION = 4


def score_cell_id(manifest: dict[str, Any], settings: ScoreSettings) -> str:
    """The results-store cell of one reference's scores: its data set and split, the SHA-256 of
    its file and of its manifest (a manifest is checked against its file when loaded, so an
    edited one never reaches the cache) and every setting that changes a score (not the folder, data sets or splits), so
    a changed reference or other settings are scored again."""
    config = {k: v for k, v in asdict(settings).items()
              if k not in ("reference_dir", "datasets", "splits")}
    if not settings.psis_draws:  # cells made before the PSIS option keep their ids
        config.pop("psis_draws")
        config.pop("psis_thetas")
    else:  # cells of an earlier layout are scored again
        config["psis_records"] = PSIS_RECORDS_VERSION
    config["reference_sha256"] = manifest["sha256"]
    config["manifest_sha256"] = manifest["manifest_sha256"]  # what the file claims to be
    return make_cell_id(manifest["dataset"], int(manifest["split"]), config)


def _score_split(dataset: str, split: int, s: ScoreSettings, path, idata, manifest
                 ) -> tuple[list[dict], dict[str, Predictive]]:
    name, raw, data = load_split(dataset, split,
                              toy_num_train=int(manifest["settings"]["toy_num_train"]))
    std = data if isinstance(data, StandardizedSplit) else standardize(raw)
    y = np.asarray(raw.y_test, dtype=np.float64)[:, 0]
    f, noise_var = hmc_predictive(idata, manifest)
    if f.shape[1] != y.shape[0]:
        raise ValueError(f"{path}: the reference has {f.shape[1]} test points, the split "
                         f"{y.shape[0]}: not this split's reference")
    ref_mean, ref_var = moment_match_samples(f, noise_var=noise_var)
    conv = manifest["convergence"]
    note = "" if conv["converged"] else UNCONVERGED_NOTE
    records: list[dict] = []

    def add(method, metric, value):
        records.append({"dataset": name, "method": method, "split": int(split), "metric": metric,
                        "value": float(value), "note": note})

    y_std = float(manifest["y_std"])
    add("hmc", "test_ll", _mixture_test_ll(f, noise_var, y))
    add("hmc", "rmse", math.sqrt(float(np.mean((y - ref_mean) ** 2))))
    add("hmc", "coverage_95", interval_coverage(ref_mean, ref_var, y))
    add("hmc", "mean_pred_sd", float(np.mean(np.sqrt(ref_var))))
    add("hmc", "reference_converged", float(conv["converged"]))
    for key in ("max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences"):
        add("hmc", key, float("nan") if conv[key] is None else conv[key])
    predictives = {"hmc": Predictive("hmc", ref_mean, ref_var,
                                     float(manifest.get("wall_time_s", float("nan"))))}
    for pred in _predictives(raw, std, manifest, s):
        predictives[pred.method] = pred
        ll = gaussian_log_likelihood(pred.mean, pred.var, y)
        add(pred.method, "test_ll", float(np.mean(ll)))
        add(pred.method, "rmse", math.sqrt(float(np.mean((y - pred.mean) ** 2))))
        add(pred.method, "coverage_95", interval_coverage(pred.mean, pred.var, y))
        add(pred.method, "mean_pred_sd", float(np.mean(np.sqrt(pred.var))))
        add(pred.method, "wall_time_s", pred.wall_time_s)
        for key, value in pred.info.items():
            if key.startswith("psis_"):
                add(pred.method, key, value)
        dist = summarize_predictive_distances(pred.mean, pred.var, ref_mean, ref_var,
                                              scale=y_std)
        for metric in ("smd", "var_ratio", "tv", "w2", "kl"):
            add(pred.method, f"{metric}_vs_hmc", dist[metric])
        for level in LEVELS:
            mass = mixture_interval_mass(pred.mean, pred.var, f, noise_var, level)
            add(pred.method, f"hmc_mass_{round(100 * level)}", float(np.mean(mass)))
    return records, predictives


def run(settings: ScoreSettings, store: ResultsStore | None = None) -> ScoreResult:
    """Score the methods against the reference of every (data set, split) of ``settings``.

    Args:
        settings: :class:`ScoreSettings`.
        store: a :class:`~comparisons.runner.store.ResultsStore` that makes the run resumable:
            each reference's records are written there as one cell (:func:`score_cell_id`) and
            a re-run reads them back instead of fitting again (their ``predictives`` are then
            absent from the result). ``None``: fit everything.

    Raises:
        ReferenceFileError: a missing or changed reference file; ReferenceMismatch: a file of
            another data set or split (both from
            :func:`~comparisons.reference.reference_file.load_reference`).
    """
    if not isinstance(settings, ScoreSettings):
        raise ValueError(f"settings must be a ScoreSettings, got {type(settings).__name__}")
    t0 = time.perf_counter()
    records: list[dict] = []
    references: dict[tuple[str, int], dict] = {}
    predictives: dict[tuple[str, int], dict[str, Predictive]] = {}
    stored = None
    for dataset in settings.datasets:
        for split in settings.splits:
            path, idata, manifest = _load(dataset, split, settings)
            key = (manifest["dataset"], int(split))
            references[key] = manifest
            cell = None if store is None else score_cell_id(manifest, settings)
            if cell is not None and store.is_done(cell):
                if stored is None:  # read the store once, when the first done cell needs it
                    stored = store.load_records()
                done = stored[stored.cell_id == cell].drop(columns="cell_id")
                records += [{k: v for k, v in row.items() if k == "value" or not _missing(v)}
                            for row in done.to_dict("records")]
                continue
            recs, preds = _score_split(dataset, split, settings, path, idata, manifest)
            if cell is not None:
                store.write_cell(cell, recs)
            records += recs
            predictives[key] = preds
    return ScoreResult(records, references, settings, time.perf_counter() - t0, predictives)


def _missing(value) -> bool:
    """A field the cell's records do not have (pandas fills it with NaN when tabulating)."""
    return isinstance(value, float) and math.isnan(value)
