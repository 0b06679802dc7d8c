r"""Extrapolating the Mauna Loa CO2 series: the paper's Figure 2 (a-d) plus an arc-cosine GP.

Gal & Ghahramani (2016, Fig. 2) fit the atmospheric CO2 record of Mauna Loa on its earlier part
and predict far beyond its end. Standard dropout (weight averaging) gives one confident curve;
MC dropout gives a predictive distribution whose spread grows away from the data (fast with
ReLU, far less with tanh, whose units saturate); a GP with a squared-exponential (SE) kernel
reverts to its prior mean with the prior's variance.

Data (:func:`comparisons.datasets.mauna_loa.load_mauna_loa`): ``statsmodels.datasets.co2`` (weekly averages, March 1958 to
December 2001, 2284 weeks of which 59 are missing and filled by linear interpolation in time).
Time :math:`t` is in decimal years. The first ``train_fraction`` of the weeks (default 0.7: up
to 1988.86, 1599 weeks) are the training data; inputs and targets are standardised with the
training part's mean and standard deviation,

.. math::
    x = \frac{t - \bar t_\text{train}}{s_{t,\text{train}}}, \qquad
    y = \frac{\text{CO}_2 - \overline{\text{CO}_2}_\text{train}}{s_{\text{CO}_2,\text{train}}},

and predictions run to the horizon :math:`t_\text{end} + \text{extrapolation}\,(t_\text{end} -
t_0)` (default: as far again as the training span, 2019.49). The weeks after the cut (1988.9 to
2001.99) are held out and scored.

Models (:data:`METHODS`, in panel order):

- ``standard_dropout_relu`` (a): the ReLU dropout network evaluated with the masks replaced by
  their expectation (:func:`vi_dropout.predict.standard_dropout_predict`): a point prediction.
- ``gp_se`` (b): exact GP, zero mean, ``ScaleKernel(RBFKernel)``, hyper-parameters by type-II
  maximum likelihood (Adam on the exact marginal likelihood,
  :func:`comparisons.gp.fit.fit_exact_gp`), conditioned on every ``gp_stride``-th training
  week (default 2: 800 weeks).
- ``mc_dropout_relu`` (c) and ``mc_dropout_tanh`` (d): ``T`` function draws
  :math:`\hat y_t = f^{\hat{\mathbf{W}}_t}`, one dropout mask per layer and draw shared by all
  query points (:func:`vi_dropout.predict.mc_predict` with ``shared_masks=True``; the same
  marginals as with independent masks per point, smooth curves), predictive mean and variance

  .. math::
      \mathbb{E}[y^*] \approx \frac1T\sum_t \hat y_t, \qquad
      \operatorname{Var}[y^*] \approx \tau^{-1} + \frac1T\sum_t \hat y_t^2 - \mathbb{E}[y^*]^2.

- ``gp_arccos1`` (e): exact GP with the first-order arc-cosine kernel (the covariance of an
  infinitely wide one-hidden-layer ReLU network, :class:`comparisons.kernels.ArcCosineKernel`) in a
  ``ScaleKernel``, hyper-parameters by marginal likelihood.

Networks (the paper's): ``hidden_layers = 4`` hidden layers of ``hidden_units = 1024`` units,
``keep_prob = 0.8`` (a drop rate of 0.2) on the input of every weight layer except the first
(the 1-D time input is not dropped: a dropped time stamp would read as :math:`x = 0`; set
``input_keep_prob`` to change this). They are trained Keras-style (inverted dropout, Glorot
weights, Adam with lr 1e-3, minibatches of 128 reshuffled every epoch) on

.. math::
    \frac{1}{|\mathcal{B}|}\sum_{n \in \mathcal{B}} (y_n - \hat y_n)^2
    + \lambda \sum_i \|\mathbf{W}_i\|_F^2, \qquad
    \lambda = \frac{l^2\, \text{keep\_prob}}{2 N \tau}

(:func:`vi_dropout.infer.elbo.weight_decay`). One ReLU network serves panels (a) and (c).

Long training (:func:`~comparisons.training.dropout_regressor.fit_dropout_regressor`, in
:mod:`comparisons.training`): each network is trained up to a step budget (``iterations``) or
until it has fitted (:class:`~comparisons.training.stopping.StoppingRule`: the mean
loss of the last window of steps no longer improves on the best earlier window by more than a
relative tolerance); it is checkpointed atomically (weights, Adam's state, the generator's
state, the epoch's permutation and position, the step, the loss history) every few minutes and
at the end, and ``run(..., resume=True)`` continues bit for bit from the checkpoints (``N``
steps in one go equal ``N/2 + N/2`` with a kill in between). The ReLU and the tanh network can
train side by side in two processes (``workers=2``, same numbers, :func:`train_networks`) and
on a GPU (``device="cuda"``; another random stream than the CPU's, see
:func:`~comparisons.training.dropout_regressor.fit_dropout_regressor`). How each method fits
the training weeks goes to ``result.fit_records``: the steps taken, what stopped them, the
device, the train RMSE and whether the seasonal cycle is resolved (:func:`seasonal_records`:
the annual amplitude left in the residual, against the data's and the SE GP's).

Cost (1 torch thread, float32, wall-clock on a 2-core CPU shared with other jobs, load average
3-4): one minibatch step of the 4 x 1024 network takes 0.05-0.13 s, of which the matrix
products (forward and backward) are about 80%, the optimizer (Adam on 3.15 M parameters) 6-16
ms, the masks about 4 ms (``benchmarks/bench_mauna_loa_step.py``; float64 is 1.9x slower, a
second thread per process or a second process gave nothing on the shared machine, Adam's fused
kernel, ``fused_adam=True``, saves about 4-8 ms per step); a checkpoint of that network takes
about 65 ms (38 MB). One MC function draw over the ~2,500 query points takes 0.37-0.8 s, 100
marginal-likelihood steps of an exact GP on 800 weeks 14-23 s. The default run (500 steps,
T = 50) takes about 3.6 minutes, 2500 steps with T = 100 about 9 minutes.
:data:`PAPER_LIKE_SETTINGS` documents a paper-size run (10^6 steps, T = 1000): about 12-22 hours
of training per network at 0.045-0.08 s per step, hence the checkpoints. With the stopping rule
(windows of 20,000 steps, tolerance 0.01; ``make mauna-loa-long``) the committed run stopped at
220,000 steps (ReLU, 8.6 h) and 100,000 steps (tanh, 6.7 h).

No file is written here: :func:`comparisons.report.mauna_loa.write_report` writes the figure,
the table and the records of a :class:`MaunaLoaResult`. The settings
(:class:`~comparisons.experiments.mauna_loa_settings.MaunaLoaSettings`,
:data:`~comparisons.experiments.mauna_loa_settings.PAPER_LIKE_SETTINGS`) live in the light
:mod:`comparisons.experiments.mauna_loa_settings` (no torch), importable from here.

Example:
    >>> settings = MaunaLoaSettings(iterations=20, num_samples=5, hidden_layers=1,
    ...                             hidden_units=16, gp_iterations=5, data_stride=8)
    >>> result = run(settings)                       # doctest: +SKIP
    >>> write_report(result, "outputs/mauna_loa")    # doctest: +SKIP

Why one module of this size: one experiment (Figure 2): the networks and the GPs are fitted on
the same series and their predictions share the seasonal records.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import gpytorch
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from comparisons.datasets.mauna_loa import MaunaLoaData, load_mauna_loa
from comparisons.experiments.mauna_loa_settings import (  # these names stay importable from here
    PAPER_LIKE_SETTINGS,
    MaunaLoaSettings,
)
from comparisons.gp.fit import exact_cholesky, fit_exact_gp, gp_predict
from comparisons.gp.models import ExactGPModel, make_kernel
from comparisons.metrics.gaussian import gaussian_log_likelihood
from comparisons.training.dropout_regressor import (  # these names stay importable from here
    RegressorFit,
    StoppingRule,  # noqa: F401  (importable from here)
    fit_dropout_regressor,
    preflight_dropout_regressor,
    resolve_device,
)
from vi_dropout.infer.elbo import weight_decay
from vi_dropout.predict import DropoutMLPParams
from vi_dropout.validation import check_positive

__all__ = [
    "DATASET_NAME",
    "METHODS",
    "METHOD_LABELS",
    "MaunaLoaSettings",
    "PAPER_LIKE_SETTINGS",
    "NETWORKS",
    "SEASONAL_RESOLVED_FRACTION",
    "MethodPrediction",
    "MaunaLoaResult",
    "annual_amplitude",
    "seasonal_records",
    "train_networks",
    "run",
]

DATASET_NAME = "mauna_loa_co2"

METHODS = ("standard_dropout_relu", "gp_se", "mc_dropout_relu", "mc_dropout_tanh", "gp_arccos1")

METHOD_LABELS = {
    "standard_dropout_relu": "(a) standard dropout, ReLU (weight averaging)",
    "gp_se": "(b) GP, squared-exponential kernel",
    "mc_dropout_relu": "(c) MC dropout, ReLU",
    "mc_dropout_tanh": "(d) MC dropout, tanh",
    "gp_arccos1": "(e) GP, arc-cosine kernel (order 1)",
}

#: the networks, in training order: (activation, methods it serves); network ``i`` uses the
#: seed ``seed + i``
NETWORKS = (("relu", ("standard_dropout_relu", "mc_dropout_relu")),
            ("tanh", ("mc_dropout_tanh",)))

#: the seasonal cycle counts as resolved when the residual on the training weeks keeps at most
#: this fraction of the data's annual amplitude (see :func:`seasonal_records`)
SEASONAL_RESOLVED_FRACTION = 0.25

#: the torch dtype of each :data:`~comparisons.experiments.mauna_loa_settings.NET_DTYPES` name
_NET_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MethodPrediction:
    """Predictions of one method at the query times, on the original scale (years, ppm).

    Attributes:
        method: a name from :data:`METHODS`; label: its panel title.
        time: query times, ``(M,)``.
        mean: predictive mean (ppm), ``(M,)``.
        sd: predictive standard deviation (ppm, observation noise included), ``(M,)``, or
            ``None`` for a point prediction (standard dropout).
        model_sd: the MC dropout sample standard deviation alone (no :math:`1/\\tau`), or
            ``None``.
        info: method details (hyper-parameters, final training loss, timings).
    """

    method: str
    label: str
    time: np.ndarray
    mean: np.ndarray
    sd: np.ndarray | None = None
    model_sd: np.ndarray | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MaunaLoaResult:
    """Everything :func:`run` produced.

    Attributes:
        data: the :class:`~comparisons.datasets.mauna_loa.MaunaLoaData` used.
        settings: the :class:`MaunaLoaSettings` used.
        predictions: ``{method: MethodPrediction}`` in :data:`METHODS` order.
        records: tidy records (``dataset, method, split, metric, value``).
        wall_time_s: total run time.
        fit_records: tidy records of how each method fits the training weeks and how its
            training ended (:func:`seasonal_records` and, per network method, ``steps``,
            ``stopped_by_rule``, ``resumed_from_step``, ``seconds_per_step``,
            ``train_time_s``), each with a ``device`` field naming the device that produced it.
        losses: ``{activation: per-step minibatch losses}`` of each trained network.
        training: ``{activation: {"steps", "stopped_by", "resumed_from", "device",
            "device_name", "train_time_s", "seconds_per_step", "checkpoint"}}``.
    """

    data: MaunaLoaData
    settings: MaunaLoaSettings
    predictions: dict[str, MethodPrediction]
    records: list[dict]
    wall_time_s: float
    fit_records: list[dict] = field(default_factory=list)
    losses: dict[str, np.ndarray] = field(default_factory=dict)
    training: dict[str, dict] = field(default_factory=dict)

    def records_frame(self) -> pd.DataFrame:
        """The records as a DataFrame."""
        return pd.DataFrame(self.records)

    def fit_records_frame(self) -> pd.DataFrame:
        """The fit records as a DataFrame."""
        return pd.DataFrame(self.fit_records)


def _method_records(data: MaunaLoaData, pred: MethodPrediction) -> list[dict]:
    n, n_tr = len(data.time), data.num_train
    rows = []

    def add(split, metric, value):
        rows.append({"dataset": DATASET_NAME, "method": pred.method, "split": split,
                     "metric": metric, "value": float(value)})

    parts = {"train": slice(0, n_tr), "heldout": slice(n_tr, n)}
    for split, sl in parts.items():
        err = data.co2[sl] - pred.mean[sl]
        add(split, "rmse_ppm", np.sqrt(np.mean(err**2)))
        if pred.sd is not None:
            add(split, "mean_sd_ppm", pred.sd[sl].mean())
            loglik = gaussian_log_likelihood(pred.mean[sl], pred.sd[sl] ** 2, data.co2[sl])
            add(split, "mean_loglik", loglik.mean())
            add(split, "coverage_2sd", np.mean(np.abs(err) <= 2 * pred.sd[sl]))
        if pred.model_sd is not None:
            add(split, "mean_model_sd_ppm", pred.model_sd[sl].mean())
    beyond = pred.time > data.train_end
    if pred.sd is not None:
        add("extrapolation", "mean_sd_ppm", pred.sd[beyond].mean())
        add("extrapolation", "sd_at_horizon_ppm", pred.sd[-1])
    if pred.model_sd is not None:
        add("extrapolation", "mean_model_sd_ppm", pred.model_sd[beyond].mean())
    add("extrapolation", "mean_at_horizon_ppm", pred.mean[-1])
    for key, value in pred.info.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            add("all", key, value)
    return rows


def _fit_gp(kernel_name, x_train, y_train, x_query, cfg: MaunaLoaSettings, progress: bool):
    def build(lengthscale):
        lik = gpytorch.likelihoods.GaussianLikelihood().double()
        lik.noise = cfg.gp_init_noise
        if kernel_name == "se":
            kernel = make_kernel("se", 1, lengthscale=lengthscale, outputscale=1.0)
        else:
            kernel = make_kernel(kernel_name, 1, weight_variance=1.0, bias_variance=1.0,
                                 outputscale=1.0)
        model = ExactGPModel(x_train, y_train, lik, kernel.double(), mean="zero").double()
        return model, lik

    info = {}
    with exact_cholesky():
        if kernel_name == "se":
            scores = []
            for ls in cfg.se_init_lengthscales:
                model, lik = build(ls)
                mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
                model.train()
                lik.train()
                with torch.no_grad():
                    scores.append(float(mll(model(x_train), y_train)))
            best = cfg.se_init_lengthscales[int(np.argmax(scores))]
            info["init_lengthscale"] = float(best)
            model, lik = build(best)
        else:
            model, lik = build(None)
        bar = tqdm(total=cfg.gp_iterations, disable=not progress, desc=f"GP {kernel_name}",
                   leave=False)
        history = fit_exact_gp(model, lik, num_iters=cfg.gp_iterations, lr=cfg.gp_lr,
                               callback=lambda it, loss: bar.update(1))
        bar.close()
        mean, var = gp_predict(model, lik, x_query)
    def scalar(t):
        return float(t.detach().reshape(-1)[0])

    info["final_neg_mll_per_point"] = history[-1]
    info["noise"] = scalar(lik.noise)
    info["outputscale"] = scalar(model.covar_module.outputscale)
    base = model.covar_module.base_kernel
    if kernel_name == "se":
        info["lengthscale"] = scalar(base.lengthscale)
    else:
        info["weight_variance"] = scalar(base.weight_variance)
        info["bias_variance"] = scalar(base.bias_variance)
    info["num_conditioning_points"] = int(x_train.shape[0])
    return mean.numpy(), var.numpy(), info


def run(
    settings: MaunaLoaSettings | None = None,
    *,
    methods: Iterable[str] = METHODS,
    data: MaunaLoaData | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    workers: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: float = 300.0,
    resume: bool = False,
) -> MaunaLoaResult:
    r"""Fit the models of Figure 2 on the early part of the CO2 record and predict to the horizon.

    Steps: load the data (unless given), train the ReLU network (serves ``standard_dropout_relu``
    and ``mc_dropout_relu``) and the tanh network, predict at
    :meth:`~comparisons.datasets.mauna_loa.MaunaLoaData.prediction_times` (every data week plus a
    grid to the horizon), fit both GPs, and turn everything into tidy records:

    - per method and ``split`` in ``{"train", "heldout"}``: ``rmse_ppm``; with a predictive sd
      also ``mean_sd_ppm``, ``mean_loglik`` (Gaussian,
      :func:`~comparisons.metrics.gaussian.gaussian_log_likelihood`, per week, ppm scale) and
      ``coverage_2sd`` (share of weeks within 2 sd); MC dropout adds ``mean_model_sd_ppm``
      (without :math:`1/\tau`);
    - ``split="extrapolation"`` (query times after the last training week): ``mean_sd_ppm``,
      ``sd_at_horizon_ppm``, ``mean_at_horizon_ppm`` (and ``mean_model_sd_ppm``);
    - ``split="all"``: ``wall_time_s`` (the ReLU network's training time is counted in both
      methods that use it), ``train_time_s``, ``predict_time_s``, ``final_train_loss``, and the
      GPs' fitted hyper-parameters.

    How each method fits the training weeks and how each network's training ended go to
    ``result.fit_records`` (:func:`seasonal_records`, and ``steps``, ``stopped_by_rule``,
    ``resumed_from_step``, ``seconds_per_step``, ``train_time_s`` per network method), the loss
    curves to ``result.losses``.

    Args:
        settings: :class:`MaunaLoaSettings` (default: ``MaunaLoaSettings()``).
        methods: a subset of :data:`METHODS`.
        data: pre-loaded data (default:
            :func:`~comparisons.datasets.mauna_loa.load_mauna_loa` with the settings' cut).
        progress: tqdm bars.
        log: optional callable receiving one line per finished step (e.g. ``print``).
        workers: 1 trains the networks one after the other in this process; 2 trains the ReLU
            and the tanh network side by side in two processes (spawned, each with this
            process's number of torch threads, no progress bars). Same numbers either way.
        checkpoint_dir: folder of the networks' checkpoints (``relu.ckpt``, ``tanh.ckpt``;
            see :func:`~comparisons.training.dropout_regressor.fit_dropout_regressor`), or
            ``None`` (no checkpoints).
        checkpoint_every: seconds between checkpoints.
        resume: continue each network from its checkpoint where one exists.

    Returns:
        :class:`MaunaLoaResult` (predictions in :data:`METHODS` order).

    Raises:
        ValueError: bad settings or arguments, CUDA asked for but not available, or a
            checkpoint that cannot be resumed (other settings, damaged, or unfinished without
            ``resume``).

    Example:
        >>> settings = MaunaLoaSettings(iterations=10, num_samples=4, hidden_layers=1,
        ...                             hidden_units=8, gp_iterations=3, data_stride=16)
        >>> res = run(settings, methods=["mc_dropout_tanh", "gp_se"])
        >>> sorted(res.predictions)
        ['gp_se', 'mc_dropout_tanh']
    """
    cfg = MaunaLoaSettings() if settings is None else settings
    if not isinstance(cfg, MaunaLoaSettings):
        raise ValueError(f"settings must be a MaunaLoaSettings, got {type(cfg).__name__}")
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {list(METHODS)}, got {methods!r}")
    if isinstance(workers, bool) or workers not in (1, 2):
        raise ValueError(f"workers must be 1 or 2 (one process per network), got {workers!r}")
    check_positive(checkpoint_every, "checkpoint_every")
    resolve_device(cfg.device)  # CUDA asked for but not available: stop before any work
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    if data is None:
        data = load_mauna_loa(cfg.train_fraction, cfg.extrapolation, cfg.data_stride)
    times = data.prediction_times(cfg.grid_step)
    x_query64 = torch.as_tensor(data.standardize_time(times)).unsqueeze(-1)
    fits = train_networks(data, cfg, methods, progress=progress, say=say, workers=workers,
                          checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                          resume=resume)
    preds = _network_predictions(data, times, x_query64, cfg, fits, methods, progress, say)
    preds.update(_gp_predictions(data, times, x_query64, cfg, methods, progress, say))
    ordered = {m: preds[m] for m in METHODS if m in preds}
    records = [r for p in ordered.values() for r in _method_records(data, p)]
    fit_records = _training_records(ordered, fits) + seasonal_records(data, ordered)
    training = {act: {"steps": f.steps, "stopped_by": f.stopped_by,
                      "resumed_from": f.resumed_from, "device": f.device,
                      "device_name": f.device_name, "train_time_s": f.train_time_s,
                      "seconds_per_step": f.seconds_per_step, "checkpoint": f.checkpoint}
                for act, f in fits.items()}
    return MaunaLoaResult(data, cfg, ordered, records, time.perf_counter() - t_start,
                          fit_records, {act: f.losses for act, f in fits.items()}, training)


def train_networks(
    data: MaunaLoaData,
    cfg: MaunaLoaSettings,
    methods: Iterable[str] = METHODS,
    *,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
    workers: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: float = 300.0,
    resume: bool = False,
) -> dict[str, RegressorFit]:
    """Train the ReLU and the tanh network of :data:`NETWORKS` (each only if one of its methods
    is wanted) with :func:`~comparisons.training.dropout_regressor.fit_dropout_regressor`, one
    after the other here or side by side in two processes: the training step of :func:`run`.

    Every network's arguments and checkpoint are checked before any training starts.

    Args:
        data, cfg: the data and the settings.
        methods, progress, workers, checkpoint_dir, checkpoint_every, resume: as for
            :func:`run` (checked there).
        say: receives one line per trained network (default: nothing is said).

    Returns:
        ``{activation: RegressorFit}`` in :data:`NETWORKS` order.
    """
    say = say or (lambda _msg: None)
    methods = list(methods)
    dtype = _NET_DTYPES[cfg.net_dtype]
    x_tr, y_tr = data.xy("train", dtype=dtype)
    reg = weight_decay(cfg.prior_length_scale, cfg.keep_prob, data.num_train, cfg.tau)
    jobs = {}
    for i, (activation, uses) in enumerate(NETWORKS):
        if not any(m in methods for m in uses):
            continue
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{activation}.ckpt"
        jobs[activation] = dict(
            x=x_tr, y=y_tr, hidden=cfg.hidden, activation=activation,
            keep_probs=cfg.layer_keep_probs, reg=reg, iterations=cfg.iterations,
            batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed + i, progress=progress,
            device=cfg.device, fused_adam=cfg.fused_adam, stop=cfg.stopping_rule,
            checkpoint=ckpt, checkpoint_every=checkpoint_every, resume=resume,
        )
        if ckpt is not None and resume and not ckpt.exists():
            say(f"{activation} network: no checkpoint at {ckpt}, starting at step 0")
    for job in jobs.values():  # every checkpoint checked before any training starts
        preflight_dropout_regressor(**job)
    fits = {}
    if workers == 1 or len(jobs) < 2:
        for activation, job in jobs.items():
            fits[activation] = fit_dropout_regressor(**job)
            _say_trained(say, activation, cfg, fits[activation])
        return fits
    from comparisons.runner.executors import LocalExecutor

    names = list(jobs)
    executor = LocalExecutor(num_workers=2, threads_per_worker=torch.get_num_threads())
    for outcome in executor.run(_fit_job, [dict(job, progress=False) for job in jobs.values()]):
        activation = names[outcome.index]
        if not outcome.ok:
            raise RuntimeError(f"training the {activation} network failed in its worker "
                               f"process: {outcome.error}\n{outcome.traceback}")
        result = outcome.records[0]
        if isinstance(result, tuple):  # ("error", kind, message): a user's error, re-raised
            raise (FloatingPointError if result[1] == "FloatingPointError" else ValueError)(
                f"{activation} network: {result[2]}")
        fits[activation] = result
        _say_trained(say, activation, cfg, result)
    return {a: fits[a] for a in names}


def _fit_job(job: dict) -> list:
    """Process-pool entry of :func:`train_networks`: ``[RegressorFit]``, or ``[("error", kind,
    message)]`` for the errors the parent re-raises as ``ValueError`` / ``FloatingPointError``
    (exception objects with extra constructor arguments do not survive pickling)."""
    try:
        return [fit_dropout_regressor(**job)]
    except FloatingPointError as exc:
        return [("error", "FloatingPointError", str(exc))]
    except ValueError as exc:
        return [("error", "ValueError", str(exc))]


def _say_trained(say, activation: str, cfg: MaunaLoaSettings, fit: RegressorFit) -> None:
    tail = fit.losses[-max(1, fit.steps // 10):].mean() if fit.steps else math.nan
    resumed = "" if fit.resumed_from is None else f", resumed from step {fit.resumed_from}"
    say(f"{activation} network {cfg.hidden} on {fit.device_name}: {fit.steps} steps "
        f"(stopped by the {fit.stopped_by.replace('_', ' ')}{resumed}), "
        f"{fit.call_steps} in {fit.call_time_s:.1f} s ({fit.seconds_per_step:.4f} s/step), "
        f"last-10% loss {tail:.4g}")


def _network_predictions(data, times, x_query64, cfg: MaunaLoaSettings, fits, methods,
                         progress, say) -> dict[str, MethodPrediction]:
    """Predict with standard and MC dropout at ``times`` from the trained networks (on the
    settings' device)."""
    preds = {}
    dev = resolve_device(cfg.device)
    x_query = x_query64.to(_NET_DTYPES[cfg.net_dtype]).to(dev)
    reg = weight_decay(cfg.prior_length_scale, cfg.keep_prob, data.num_train, cfg.tau)
    for i, (activation, uses) in enumerate(NETWORKS):
        if activation not in fits:
            continue
        fit = fits[activation]
        p = fit.params
        params = DropoutMLPParams(tuple(w.to(dev) for w in p.weights),
                                  tuple(b.to(dev) for b in p.biases), keep_probs=p.keep_probs,
                                  activation=p.activation, inverted=p.inverted)
        tail = fit.losses[-max(1, fit.steps // 10):].mean()
        base_info = {"train_time_s": fit.train_time_s, "final_train_loss": float(tail),
                     "seconds_per_step": fit.seconds_per_step, "weight_decay": reg,
                     "device": fit.device_name}
        for method in (m for m in uses if m in methods):
            t1 = time.perf_counter()
            if method.startswith("standard"):
                with torch.no_grad():
                    out = params.standard_predict(x_query)[:, 0].double().cpu().numpy()
                mean, sd, model_sd = out, None, None
            else:
                gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1000 + i)
                mean, sd, model_sd = _mc_moments(params, x_query, cfg, gen, progress)
            pred_time = time.perf_counter() - t1
            info = dict(base_info, predict_time_s=pred_time,
                        wall_time_s=fit.train_time_s + pred_time)
            preds[method] = _prediction(data, method, times, mean, sd, model_sd, info)
            say(f"{method}: predicted {len(times)} points in {pred_time:.1f} s")
    return preds


def _training_records(preds: dict[str, MethodPrediction], fits: dict[str, RegressorFit]):
    """Per network method: ``steps``, ``stopped_by_rule`` (1 / 0), ``resumed_from_step`` (0 for
    a fresh start), ``seconds_per_step`` and ``train_time_s`` (every call, resumes included), split ``all``."""
    rows = []
    for activation, uses in NETWORKS:
        fit = fits.get(activation)
        for method in (m for m in uses if m in preds and fit is not None):
            for metric, value in (("steps", fit.steps),
                                  ("stopped_by_rule", fit.stopped_by == "stopping_rule"),
                                  ("resumed_from_step", fit.resumed_from or 0),
                                  ("seconds_per_step", fit.seconds_per_step),
                                  ("train_time_s", fit.train_time_s)):
                rows.append({"dataset": DATASET_NAME, "method": method, "split": "all",
                             "metric": metric, "value": float(value),
                             "device": fit.device_name})
    return rows


def annual_amplitude(time: np.ndarray, values: np.ndarray) -> float:
    r"""Amplitude (in the units of ``values``) of the 1-year cycle in a series sampled at
    ``time`` (decimal years): a least-squares periodogram at exactly one cycle per year, with a
    quadratic trend removed.

    Fits, by least squares,

    .. math::
        v(t) \approx c_0 + c_1 s + c_2 s^2 + a\cos 2\pi t + b\sin 2\pi t, \qquad
        s = \frac{t - \bar t}{\max|t - \bar t|},

    and returns :math:`A = \sqrt{a^2 + b^2}`; the power of the annual component (the variance
    of the sinusoid) is :math:`A^2/2`. The trend terms keep a slow drift (a residual whose
    trend is still misfitted) from leaking into the annual term.

    Args:
        time: sample times in years, ``(N,)`` with ``N >= 5``.
        values: the series, ``(N,)``.

    Returns:
        :math:`A \ge 0`.

    Example:
        >>> t = np.arange(0, 10, 1 / 52)
        >>> round(annual_amplitude(t, 3 * np.sin(2 * np.pi * t + 0.4) + 0.5 * t ** 2), 6)
        3.0
    """
    t = np.asarray(time, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != v.shape or len(t) < 5:
        raise ValueError(f"time and values must be two (N,) arrays with N >= 5, got shapes "
                         f"{t.shape} and {v.shape}")
    c = t - t.mean()
    s = c / max(float(np.abs(c).max()), 1e-300)
    design = np.stack([np.ones_like(s), s, s**2, np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)],
                      axis=1)
    coef, *_ = np.linalg.lstsq(design, v, rcond=None)
    return float(math.hypot(coef[3], coef[4]))


def seasonal_records(data: MaunaLoaData, predictions: dict[str, MethodPrediction]) -> list[dict]:
    r"""Is the seasonal cycle resolved? The annual cycle left in each method's residual on the
    training weeks, against the data's and the SE GP's.

    For each method, the residual :math:`r = \text{CO}_2 - \text{mean}` on the training weeks
    (the predictive mean: MC average for MC dropout, the weight-averaged network for standard
    dropout, the posterior mean for the GPs) and its annual amplitude :math:`A_r`
    (:func:`annual_amplitude`) give the records (split ``"train"``):

    - ``train_rmse_ppm``: :math:`\sqrt{\overline{r^2}}`;
    - ``seasonal_amplitude_ppm``: :math:`A_r`; ``seasonal_amplitude_data_ppm``: the data's own
      annual amplitude :math:`A_y` (the same for every method, for reference);
    - ``seasonal_amplitude_fraction``: :math:`A_r / A_y` (1: the cycle is not fitted at all,
      0: fitted exactly);
    - ``seasonal_resolved``: 1 when :math:`A_r / A_y \le` :data:`SEASONAL_RESOLVED_FRACTION`;
    - ``seasonal_power_ratio_to_gp_se``: :math:`(A_r / A_{r,\text{gp\_se}})^2`, the residual's
      annual power against the SE GP's (when ``gp_se`` is among the predictions).

    Each record carries a ``device`` field: the network's training device, ``"cpu"`` for the
    GPs.

    Args:
        data: the data.
        predictions: ``{method: MethodPrediction}`` (query times starting with the data weeks,
            as :func:`run` makes them).

    Returns:
        Tidy records.
    """
    n_tr = data.num_train
    t, y = data.time[:n_tr], data.co2[:n_tr]
    amp_data = annual_amplitude(t, y)
    residuals = {m: y - p.mean[:n_tr] for m, p in predictions.items()}
    amps = {m: annual_amplitude(t, r) for m, r in residuals.items()}
    rows = []
    for method, r in residuals.items():
        device = predictions[method].info.get("device", "cpu")
        values = {"train_rmse_ppm": float(np.sqrt(np.mean(r**2))),
                  "seasonal_amplitude_ppm": amps[method],
                  "seasonal_amplitude_data_ppm": amp_data,
                  "seasonal_amplitude_fraction": amps[method] / amp_data,
                  "seasonal_resolved": float(amps[method] / amp_data
                                             <= SEASONAL_RESOLVED_FRACTION)}
        if amps.get("gp_se", 0.0) > 0:
            values["seasonal_power_ratio_to_gp_se"] = (amps[method] / amps["gp_se"]) ** 2
        rows += [{"dataset": DATASET_NAME, "method": method, "split": "train", "metric": k,
                  "value": float(v), "device": device} for k, v in values.items()]
    return rows


def _mc_moments(params, x_query, cfg: MaunaLoaSettings, generator, progress):
    r"""MC dropout mean, predictive sd :math:`\sqrt{\hat\sigma^2 + 1/\tau}` and model sd
    :math:`\hat\sigma` (standardised scale) from ``cfg.num_samples`` function draws."""
    with torch.no_grad():
        samples = params.mc_predict(x_query, cfg.num_samples, shared_masks=True,
                                    generator=generator, progress=progress)[..., 0].double().cpu()
    mean = samples.mean(0).numpy()
    model_var = samples.var(0, correction=0).numpy()
    return mean, np.sqrt(model_var + 1.0 / cfg.tau), np.sqrt(model_var)


def _prediction(data, method, times, mean, sd, model_sd, info) -> MethodPrediction:
    """A :class:`MethodPrediction` on the ppm scale from standardised moments."""
    ys = data.co2_std
    return MethodPrediction(
        method, METHOD_LABELS[method], times, data.co2_from_standardized(mean),
        None if sd is None else sd * ys, None if model_sd is None else model_sd * ys, info,
    )


def _gp_predictions(data, times, x_query64, cfg: MaunaLoaSettings, methods, progress,
                    say) -> dict[str, MethodPrediction]:
    """Fit the SE and the arc-cosine GP (those wanted) on every ``gp_stride``-th training week
    and predict at ``times``."""
    preds = {}
    x_gp, y_gp = data.xy("train", dtype=torch.float64)
    x_gp, y_gp = x_gp[:: cfg.gp_stride], y_gp[:: cfg.gp_stride, 0]
    for method, kernel_name in (("gp_se", "se"), ("gp_arccos1", "arccos1")):
        if method not in methods:
            continue
        t0 = time.perf_counter()
        mean, var, info = _fit_gp(kernel_name, x_gp, y_gp, x_query64, cfg, progress)
        info["wall_time_s"] = time.perf_counter() - t0
        preds[method] = _prediction(data, method, times, mean, np.sqrt(var), None, info)
        say(f"{method}: fitted on {x_gp.shape[0]} points in {info['wall_time_s']:.1f} s, "
            + ", ".join(f"{k}={v:.4g}" for k, v in info.items() if isinstance(v, float)))
    return preds
