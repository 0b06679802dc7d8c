r"""Pitfall 2, non-concentration (Osband 2016): the epistemic variance of MC dropout does not shrink
with the data, the GP's and HMC's do; the learned-rate curves (Concrete dropout, the full ELBO)
beside them."""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from comparisons.experiments.pitfalls.settings import (
    CONCRETE_THETA,
    DEFAULT_HMC,
    FULL_ELBO_INITIAL_THETA,
    LEARNED_RATE_INITIAL_KEEP_PROB,
    LEARNED_RATE_INITIAL_TAU,
    LEARNED_RATE_LR,
    LEARNED_RATE_METHODS,
    LEARNED_RATE_SEED_OFFSET,
    LEARNED_RATE_TEMPERATURE,
    LearnedRateFitWarning,
    PitfallHMCSettings,
    PitfallSettings,
    record,
)
from comparisons.experiments.pitfalls.toy import (
    gp_latent,
    hmc_latent,
    toy_problem,
    train_mc_dropout,
)
from comparisons.reference.nuts import HMCDiagnosticsWarning
from vi_dropout.infer.concrete import fit_concrete
from vi_dropout.network import local_reparam_forward
from vi_dropout.predict import mc_predict
from vi_dropout.validation import check_keep_prob, check_positive_int

__all__ = ["learned_rate_records", "non_concentration_records", "failed_parameter"]


def _hmc_records(data, tau, settings: PitfallSettings, hmc: PitfallHMCSettings, cache_dir,
                 regions) -> list[dict]:
    """The ``hmc`` records of one training set (see :func:`non_concentration_records`)."""
    n = int(data.x_train.shape[0])
    inside, outside = regions
    t0 = time.perf_counter()
    f, res, table = hmc_latent(data, tau, settings, hmc, cache_dir)
    hvar = f.reshape(-1, f.shape[-1]).var(0, ddof=1)
    diag = table.attrs["diagnostics"]
    if diag["problems"]:
        warnings.warn(
            f"non-concentration, hmc at N = {n}: not a usable reference: "
            + "; ".join(diag["problems"]), HMCDiagnosticsWarning, stacklevel=3)
    return [
        record("hmc", n, "epistemic_variance_train", hvar[inside].mean()),
        record("hmc", n, "epistemic_variance_extrapolation", hvar[outside].mean()),
        record("hmc", n, "wall_time_s", time.perf_counter() - t0),
        record("hmc", n, "hmc_max_rhat_f", diag["max_r_hat"]),
        record("hmc", n, "hmc_min_ess_bulk_f", diag["min_ess_bulk"]),
        record("hmc", n, "hmc_min_ess_tail_f", diag["min_ess_tail"]),
        record("hmc", n, "hmc_num_divergent", diag["num_divergent"]),
        record("hmc", n, "hmc_grad_evals_per_draw", res.grad_evals_per_draw),
        record("hmc", n, "hmc_chain_wall_time_sum_s", float(np.sum(res.chain_wall_times_s))),
    ]


def failed_parameter(message: str) -> str:
    """The learned parameter a :func:`~vi_dropout.infer.concrete.fit_concrete` error names, in the
    records' words (``keep_prob_input``, ``keep_prob_hidden``, ``theta``, ``tau``)."""
    match = re.match(r"keep_probs\[(\d+)\]|(tau|theta)\b", message)
    if match is None:
        return "the negative ELBO" if "non-finite" in message else "unknown parameter"
    if match.group(1) is not None:
        layer = int(match.group(1))
        return {0: "keep_prob_input", 1: "keep_prob_hidden"}.get(layer, f"keep_prob_{layer}")
    return match.group(2)


def _jitter_samples(x: torch.Tensor, weights, biases, keep_probs: Sequence[float], theta: float,
                    num_samples: int, generator: torch.Generator,
                    max_rows: int = 16384) -> torch.Tensor:
    r"""``T x M`` draws of :math:`f(x_*)` under the full variational family: EXACT Bernoulli masks
    at ``keep_probs`` and the jitter :math:`\theta` by local reparameterisation (the exact
    marginal at each test point; the paper's convention, kept units not rescaled).

    .. math::
        \mathbf{W}_{i,t} = \mathbf{M}_i \operatorname{diag}(\mathbf{z}_{i,t})
        + \theta\mathbf{E}_{i,t}, \quad z \sim \operatorname{Bernoulli}(\pi_i),\quad
        E \sim \mathcal{N}(0, 1)

    Args:
        x: ``M x Q`` test inputs; weights, biases: the means (``out x in``, ``out``) per layer.
        keep_probs: :math:`\pi_i` per layer; theta: :math:`\theta`.
        num_samples: :math:`T`; generator: the source of the masks and the noise.
        max_rows: samples x points per vectorised pass.
    """
    m = x.shape[0]
    chunk = max(1, max_rows // m)
    out = []
    for start in range(0, num_samples, chunk):
        t = min(chunk, num_samples - start)
        masks = [(torch.rand(t, m, w.shape[1], dtype=x.dtype, generator=generator) < kp)
                 .to(x.dtype) for w, kp in zip(weights, keep_probs)]
        noise = [torch.randn(t, m, w.shape[0], dtype=x.dtype, generator=generator)
                 for w in weights]
        out.append(local_reparam_forward(x, list(weights), list(biases), masks, theta, "relu",
                                         noise)[..., 0])
    return torch.cat(out)


def learned_rate_records(data, method: str, settings: PitfallSettings | None = None,
                         regions=None) -> list[dict]:
    r"""Fit one learned-rate network on ``data`` and return its non-concentration records.

    :func:`vi_dropout.infer.concrete.fit_concrete` on the full batch (``settings.steps`` Adam steps of
    size :data:`LEARNED_RATE_LR` on every parameter, relaxed masks at temperature
    :data:`LEARNED_RATE_TEMPERATURE`, one draw per example and step) of the per-example negative
    ELBO with the Proposition-1 KL and the prior :math:`\mathcal{N}(0, l^{-2})` of the GP and
    HMC (``l = settings.prior_length_scale``), in the paper's convention (the means are the weights,
    kept units are not rescaled). Both layers' keep_probs start at 0.9 and :math:`\tau` at 1:

    * ``concrete_dropout``: keep_probs and :math:`\tau` learned, :math:`\theta` FIXED at
      :data:`CONCRETE_THETA` (``1e-6``, the :math:`\theta \to 0` limit of Concrete dropout,
      ``learn_theta=False``; its jitter noise is negligible and left out of the predictions);
    * ``full_elbo``: keep_probs, :math:`\theta` (from :data:`FULL_ELBO_INITIAL_THETA`) and
      :math:`\tau` learned.

    The epistemic variance is that of :math:`f(x_*)` over ``settings.num_samples`` draws with
    EXACT Bernoulli masks at the learned keep_probs
    (:func:`vi_dropout.predict.mc_predict`, ``inverted=False``); for ``full_elbo`` the jitter
    :math:`\theta` is included by local reparameterisation, and the masks-only variance is
    recorded beside it (``epistemic_variance_masks_only_*``) to show its share.

    .. math::
        \widehat{\operatorname{Var}}(x_*) = \frac{1}{T-1}\sum_t (f_t(x_*) - \bar f(x_*))^2,
        \qquad f_t = f(x_*;\ \mathbf{M}\operatorname{diag}(\mathbf{z}_t) + \theta\mathbf{E}_t)

    Args:
        data: a :class:`~comparisons.datasets.toy1d.Toy1DData` (standardised arrays).
        method: ``"concrete_dropout"`` or ``"full_elbo"``.
        settings: :class:`PitfallSettings` (``hidden``, ``prior_length_scale``, ``steps``,
            ``num_samples``, ``seed``).
        regions: ``(train, extrapolation)`` boolean masks over the test points (default:
            ``data.region_mask``).

    Returns:
        records ``(toy1d, method, split = N, metric, value)``: ``epistemic_variance_train``,
        ``epistemic_variance_extrapolation``, ``learned_keep_prob_input``,
        ``learned_keep_prob_hidden``, ``learned_tau`` (standardised scale), ``final_loss`` (the
        negative ELBO per data point, mean over the last 10% of the steps), ``wall_time_s``; for
        ``full_elbo`` also ``learned_theta`` and ``epistemic_variance_masks_only_{train,
        extrapolation}``. A failed fit (``fit_concrete`` raises ``ValueError`` when a keep_prob
        runs to within 1e-6 of 0 or 1 or a parameter becomes NaN or leaves its range) issues a
        :class:`LearnedRateFitWarning` naming :math:`N`, the method and the parameter, and
        returns ``[]``.

    Example:
        >>> data, _ = toy_problem(20, 0)                                              # doctest: +SKIP
        >>> recs = learned_rate_records(data, "full_elbo", PitfallSettings(steps=50))  # doctest: +SKIP
    """
    settings = settings or PitfallSettings()
    if method not in LEARNED_RATE_METHODS:
        raise ValueError(f"method must be one of {', '.join(LEARNED_RATE_METHODS)}, got "
                         f"{method!r}")
    inside, outside = regions or (data.region_mask("train"), data.region_mask("extrapolation"))
    x = torch.tensor(data.x_train, dtype=torch.float64)
    y = torch.tensor(data.y_train, dtype=torch.float64)
    n = int(x.shape[0])
    full = method == "full_elbo"
    seed = settings.seed * 1000 + LEARNED_RATE_SEED_OFFSET + LEARNED_RATE_METHODS.index(method)
    t0 = time.perf_counter()
    try:
        fit = fit_concrete(
            x, y, (settings.hidden,), keep_probs=LEARNED_RATE_INITIAL_KEEP_PROB,
            theta=FULL_ELBO_INITIAL_THETA if full else CONCRETE_THETA,
            tau=LEARNED_RATE_INITIAL_TAU, prior_length_scale=settings.prior_length_scale,
            learn_theta=full, learn_tau=True, steps=settings.steps, lr=LEARNED_RATE_LR,
            temperature=LEARNED_RATE_TEMPERATURE, seed=seed)
        kps = [float(kp) for kp in fit.keep_probs]
        xt = torch.tensor(data.x_test, dtype=torch.float64)
        gen = torch.Generator().manual_seed(seed + 1)
        var_masks = mc_predict(xt, fit.weights, fit.biases, kps, settings.num_samples,
                               inverted=False, generator=gen)[..., 0].var(0).numpy()
        var = var_masks
        if full:
            var = _jitter_samples(xt, fit.weights, fit.biases, kps, float(fit.theta),
                                  settings.num_samples, gen).var(0).numpy()
        if not (np.isfinite(var).all() and np.isfinite(var_masks).all()):
            raise ValueError("the predictive variance is not finite")
    except ValueError as err:
        warnings.warn(f"non-concentration, {method} at N = {n}: the fit failed "
                      f"({failed_parameter(str(err))}): {err}; its records are left out, the "
                      "other methods' are kept", LearnedRateFitWarning, stacklevel=3)
        return []
    tail = fit.losses[-max(1, len(fit.losses) // 10):]
    records = [
        record(method, n, "epistemic_variance_train", var[inside].mean()),
        record(method, n, "epistemic_variance_extrapolation", var[outside].mean()),
        record(method, n, "learned_keep_prob_input", kps[0]),
        record(method, n, "learned_keep_prob_hidden", kps[1]),
        record(method, n, "learned_tau", float(fit.tau)),
        record(method, n, "final_loss", float(tail.mean()) / n),
    ]
    if full:
        records += [
            record(method, n, "learned_theta", float(fit.theta)),
            record(method, n, "epistemic_variance_masks_only_train", var_masks[inside].mean()),
            record(method, n, "epistemic_variance_masks_only_extrapolation",
                    var_masks[outside].mean()),
        ]
    return records + [record(method, n, "wall_time_s", time.perf_counter() - t0)]


def non_concentration_records(
    num_train: Sequence[int] = (10, 30, 100, 300, 1000, 3000, 10000),
    keep_prob: float = 0.9,
    settings: PitfallSettings | None = None,
    gp_max_train: int = 10000,
    progress: bool = False,
    hmc: PitfallHMCSettings | None = DEFAULT_HMC,
    cache_dir: str | os.PathLike | None = None,
    learned_rates: bool = True,
) -> list[dict]:
    r"""Epistemic predictive variance vs training-set size: MC dropout with a fixed rate, the
    exact GP, HMC and the two learned-rate methods.

    For each :math:`N` a fresh toy data set (same seed family) is drawn, one network with fixed
    ``keep_prob`` is trained (the prior-derived weight decay :math:`\propto 1/N`, as the derivation
    prescribes), and the epistemic variance is averaged over the test points inside the training
    intervals (``train``) and outside all of them (``extrapolation``):

    .. math::
        \widehat{\operatorname{Var}}_\text{MC}(x_*) = \frac{1}{T-1}\sum_t
        (\hat y_t(x_*) - \bar y(x_*))^2, \quad
        \operatorname{Var}_\text{GP}[f(x_*) \mid \mathcal{D}], \quad
        \widehat{\operatorname{Var}}_\text{HMC}(x_*) = \frac{1}{S-1}\sum_s
        (f_s(x_*) - \bar f(x_*))^2,

    on the standardised scale (no :math:`\tau^{-1}`). All share one model: the 1-50-1 ReLU
    network with :math:`\mathcal{N}(0, l^{-2})` on every weight and bias (``l =
    settings.prior_length_scale``) and Gaussian noise of precision :math:`\tau` (the toy's true
    one; the learned-rate methods learn theirs). The GP is that prior's arc-cosine kernel
    (:func:`~comparisons.gp.priors.dropout_prior_hyperparameters`; it leaves out the output bias,
    a constant :math:`l^{-2}` in the prior covariance, against an outputscale of
    :math:`K l^{-2} = 50\,l^{-2}`); HMC is NUTS (:func:`~comparisons.reference.nuts.run_nuts`) on
    the finite network itself, the :math:`S` = chains :math:`\times` draws being the posterior
    draws of its weights and :math:`f_s` the network output (no noise). MC dropout's masks are
    the approximation, not the model. The GP's variance shrinks roughly like :math:`1/N`;
    fixed-rate dropout's levels off. ``concrete_dropout`` and ``full_elbo``
    (:func:`learned_rate_records`) learn the keep_probs (and :math:`\tau`, and for the second
    :math:`\theta`) on the same data with the same prior.

    Args:
        num_train: training-set sizes :math:`N`.
        keep_prob: MC dropout's fixed keep probability.
        settings: :class:`PitfallSettings` (network, prior, training, seed).
        gp_max_train: the GP is skipped above this many points (:math:`O(N^3)` time,
            :math:`O(N^2)` memory: about 50 s and 5 GB at :math:`N` = 10,000 on one CPU thread).
        progress: a progress bar over the sizes.
        hmc: :class:`PitfallHMCSettings` (HMC runs for :math:`N \le` ``hmc.max_train``);
            ``None``: no HMC.
        cache_dir: NUTS chain cache (e.g. ``OUT/nuts-cache``; ``None``: no cache).
        learned_rates: also the ``concrete_dropout`` and ``full_elbo`` curves.

    Returns:
        records ``(dataset, method, split = N, metric, value)``: ``epistemic_variance_train``,
        ``epistemic_variance_extrapolation`` and ``wall_time_s`` per method (``mc_dropout``,
        ``gp_arccos1_prior``, ``hmc``, ``concrete_dropout``, ``full_elbo``) and :math:`N`; for
        ``hmc`` also ``hmc_max_rhat_f``, ``hmc_min_ess_bulk_f``, ``hmc_min_ess_tail_f``
        (:func:`hmc_summary` of :math:`f` at the test inputs), ``hmc_num_divergent``,
        ``hmc_grad_evals_per_draw`` and ``hmc_chain_wall_time_sum_s`` (the chains' own warmup +
        sampling time, also when they come from the cache; ``wall_time_s`` is this call's); for
        the learned-rate methods the learned parameters of :func:`learned_rate_records`. When
        HMC's draws fail :func:`hmc_summary`'s checks an
        :class:`~comparisons.reference.nuts.HMCDiagnosticsWarning` naming :math:`N` is issued; a
        failed learned-rate fit issues a :class:`LearnedRateFitWarning` and only its records
        are missing.

    Example:
        >>> recs = non_concentration_records((10, 100), hmc=PitfallHMCSettings(
        ...     max_train=10, chains=2, warmup=20, samples=20, processes=1))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    settings = settings or PitfallSettings()
    keep_prob = check_keep_prob(keep_prob)
    sizes = [check_positive_int(n, "num_train[i]") for n in num_train]
    if hmc is not None and not isinstance(hmc, PitfallHMCSettings):
        raise ValueError(f"hmc must be a PitfallHMCSettings or None, got {type(hmc).__name__}")
    if not isinstance(learned_rates, bool):
        raise ValueError(f"learned_rates must be True or False, got {learned_rates!r}")
    records = []
    for n in tqdm(sizes, desc="non-concentration", disable=not progress, leave=False):
        data, tau = toy_problem(n, settings.seed)
        regions = inside, outside = data.region_mask("train"), data.region_mask("extrapolation")
        t0 = time.perf_counter()
        s = train_mc_dropout(data, tau, [keep_prob], settings, settings.seed)[0]
        var = s.var(0).numpy()
        records += [
            record("mc_dropout", n, "epistemic_variance_train", var[inside].mean()),
            record("mc_dropout", n, "epistemic_variance_extrapolation", var[outside].mean()),
            record("mc_dropout", n, "wall_time_s", time.perf_counter() - t0),
        ]
        if n <= gp_max_train:
            t0 = time.perf_counter()
            _, gvar = gp_latent(data, tau, settings, keep_prob)
            gvar = gvar.clamp_min(0).numpy()
            gp = "gp_arccos1_prior"  # the arc-cosine GP of the network's prior, nothing fitted
            records += [
                record(gp, n, "epistemic_variance_train", gvar[inside].mean()),
                record(gp, n, "epistemic_variance_extrapolation", gvar[outside].mean()),
                record(gp, n, "wall_time_s", time.perf_counter() - t0),
            ]
        if hmc is not None and n <= hmc.max_train:
            records += _hmc_records(data, tau, settings, hmc, cache_dir, regions)
        if learned_rates:  # own generators: the streams above are untouched
            for method in LEARNED_RATE_METHODS:
                records += learned_rate_records(data, method, settings, regions)
    return records
