r"""Learned dropout rates on the standard UCI splits: Concrete dropout and the full ELBO, one fit
per split instead of the MC dropout protocol's 12-point grid search.

Methods (cells of the UCI summary next to ``mc_dropout`` and the GPs):

- ``concrete_dropout``: keep_prob per layer (input and hidden) and a homoscedastic
  :math:`\tau` learned by maximising the ELBO through relaxed Bernoulli masks, in the
  :math:`\theta \to 0` limit (no jitter noise; the KL without its diverging :math:`\theta`
  terms) — the objective of Gal, Hron & Kendall (2017).
- ``full_elbo``: the same with :math:`\theta` learned too (the variational family as written,
  jitter noise by local reparameterisation), so every term of the ELBO is optimised.

Per split, as the MC dropout protocol but without a validation split (nothing is selected): the
training split is standardised, the network (one hidden ReLU layer of 50 units, 100 for protein;
Glorot-uniform means, zero biases) is fitted with :func:`vi_dropout.infer.concrete.fit_concrete` for
the protocol's epochs (base epochs times ``epochs_multiplier``) in minibatches of 128 (Adam:
step size ``lr`` for the means, ``hyper_lr`` for the keep_prob logits, :math:`\log\tau` and
:math:`\log\theta`), the prior is :math:`\mathcal N(0, l^{-2})` with the protocol's
:math:`l = 10^{-2}` on the standardised inputs, the temperature is 0.1. The test predictive uses
EXACT Bernoulli masks at the learned keep_probs (``T = 10,000``) and the learned :math:`\tau`
mapped to the original scale (:math:`\tau / s_y^2`); records: ``rmse``, ``rmse_standard``
(weight averaging at the learned keep_probs), ``test_ll``, ``coverage_95`` (moment-matched
Gaussian interval), the learned ``learned_keep_prob_input``, ``learned_keep_prob_hidden``,
``learned_tau`` (original scale), ``learned_theta`` (``full_elbo``), ``final_loss`` (per data
point, the mean over the last epoch) and ``wall_time_s``.

All splits of a data set have the same number of training rows, so the pending splits of one
(data set, method) are trained as ONE batched computation (a
:class:`~comparisons.runner.executors.CellGroup`). Every split's network draws from its own
generator, so its numbers do not depend on which splits were computed with it; its
``wall_time_s`` is the group's time divided by the group size (recorded with ``group_size``).
A keep_prob that runs to 1 (or 0) is clamped at ``1 - 2e-6`` (projected Adam, ``at_bound="clamp"``:
on the larger data sets the ELBO's maximiser is "no dropout", a boundary solution) and the cell
records ``keep_prob_at_bound_input`` / ``_hidden`` = 1. A network whose :math:`\tau` or
:math:`\theta` runs to a bound or whose objective turns NaN fails ITS cell (the message names
the data set, split and parameter); the others are kept.

References:
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.

Example:
    >>> [c.method for c in concrete_uci_cells(["yacht"], "0-1", ConcreteUCISettings(), "full_elbo")]
    ['full_elbo', 'full_elbo']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from comparisons.datasets.uci import standardize
from comparisons.protocols.learned import (
    RegistryPredictive,
    SplitPredictive,
    fit_split_predictive,
    last_epoch_loss,
    learned_cells,
    original_scale_tau,
    predictive_metrics,
    run_learned_cells,
    samples_predictive,
    settings_group_key,
)
from comparisons.protocols.registry import builtin_method
from comparisons.protocols.settings import TrainingSettings
from comparisons.protocols.uci import protocol_seed
from comparisons.runner.executors import Cell, CellGroup
from vi_dropout.infer.concrete import KEEP_PROB_CLAMP, fit_concrete
from vi_dropout.predict import standard_dropout_predict
from vi_dropout.validation import check_positive

__all__ = [
    "CONCRETE_UCI_METHODS",
    "ConcreteUCISettings",
    "concrete_uci_cells",
    "concrete_group_key",
    "run_concrete_uci_cells",
    "split_predictive",
]

#: method ids of this protocol
CONCRETE_UCI_METHODS = ("concrete_dropout", "full_elbo")

#: offset of the fit's seed from :func:`~comparisons.protocols.uci.protocol_seed` (the test MC
#: samples use one more)
SEED_OFFSET = 700


@dataclass(frozen=True)
class ConcreteUCISettings(TrainingSettings):
    """Settings of the learned-rate methods on UCI (all recorded with every cell): the shared
    :class:`~comparisons.protocols.settings.TrainingSettings` (per split the seed is
    ``protocol_seed + 700``, test samples ``+ 701``) and

    Attributes:
        temperature: Concrete temperature :math:`t > 0` (0.1 as in Gal, Hron & Kendall).
        initial_keep_prob: initial keep_prob of every layer, in (0, 1).
        initial_scale: initial :math:`\\theta` of ``full_elbo``.
        initial_tau: initial :math:`\\tau` on the standardised scale.
        lr, hyper_lr: Adam step sizes of the means and of the learned hyper-parameters.
    """

    temperature: float = 0.1
    initial_keep_prob: float = 0.9
    # named initial_scale, not initial_theta: the name is hashed into committed cell ids
    initial_scale: float = 1e-2
    initial_tau: float = 1.0
    lr: float = 1e-3
    hyper_lr: float = 1e-2

    def __post_init__(self):
        super().__post_init__()
        check_positive(self.temperature, "temperature")
        if not 0.0 < float(self.initial_keep_prob) < 1.0:
            raise ValueError(f"initial_keep_prob must lie in the open interval (0, 1), got "
                             f"{self.initial_keep_prob!r}")
        for name in ("initial_scale", "initial_tau", "lr", "hyper_lr"):
            check_positive(getattr(self, name), name)


def concrete_uci_cells(datasets: Sequence[str], splits: str, config: ConcreteUCISettings,
                       method: str) -> list[Cell]:
    """One cell per (data set, split) of :func:`~comparisons.protocols.uci.uci_splits` for
    ``method`` (``"concrete_dropout"`` or ``"full_elbo"``)."""
    return learned_cells(datasets, splits, config, method, CONCRETE_UCI_METHODS)


def concrete_group_key(cell: Cell):
    """The :func:`~comparisons.runner.executors.run_cells` ``group_by`` key: cells of this
    protocol with the same data set, method and settings train together; others run alone."""
    return settings_group_key(cell, CONCRETE_UCI_METHODS)


def _fit_group(raws, config: ConcreteUCISettings, method: str, dtype):
    """Fit one network per split of ``raws`` (one batched computation)."""
    stds = [standardize(raw) for raw in raws]
    x = torch.stack([torch.tensor(s.x_train, dtype=dtype) for s in stds])
    y = torch.stack([torch.tensor(s.y_train, dtype=dtype) for s in stds])
    n = x.shape[1]
    epochs = max(1, int(round(raws[0].n_epochs * config.epochs_multiplier)))
    steps = epochs * math.ceil(n / config.batch_size)
    seeds = [protocol_seed(config, raw.split) + SEED_OFFSET for raw in raws]
    fit = fit_concrete(
        x, y, (raws[0].n_hidden,), keep_probs=config.initial_keep_prob,
        theta=config.initial_scale if method == "full_elbo" else None, tau=config.initial_tau,
        prior_length_scale=config.prior_length_scale, steps=steps, lr=config.lr,
        hyper_lr=config.hyper_lr, batch_size=config.batch_size, temperature=config.temperature,
        seed=seeds, check_every=100, at_bound="clamp")
    return stds, fit, steps, seeds


def _test_samples(std, fit, e: int, config: ConcreteUCISettings, seed: int):
    """``(x_test, samples T x N x 1, tau on the original scale)`` of network ``e``."""
    x = torch.tensor(std.x_test, dtype=getattr(torch, config.dtype))
    gen = torch.Generator().manual_seed(seed + 1)
    samples = fit.objective.predict(x, config.num_samples, network=e, generator=gen).double()
    return x, samples, original_scale_tau(float(fit.tau[e]), std)


def _split_records(raw, std, fit, e: int, config: ConcreteUCISettings, method: str, seed: int,
                   steps: int) -> dict[str, float]:
    """Test metrics and learned parameters of network ``e`` (split ``raw.split``)."""
    x, samples, tau = _test_samples(std, fit, e, config, seed)
    kps = [float(kp[e]) for kp in fit.keep_probs]
    ws, bs = [w[e] for w in fit.weights], [b[e] for b in fit.biases]
    standard = standard_dropout_predict(x, ws, bs, kps, inverted=False).double()
    metrics = predictive_metrics(samples, raw, std, tau, standard) | {
        "learned_keep_prob_input": kps[0], "learned_keep_prob_hidden": kps[1],
        # 1 where the keep_prob sits at the clamp 1 - 2e-6 (or 2e-6): the ELBO wants no dropout
        "keep_prob_at_bound_input": float(min(kps[0], 1 - kps[0]) < 2 * KEEP_PROB_CLAMP),
        "keep_prob_at_bound_hidden": float(min(kps[1], 1 - kps[1]) < 2 * KEEP_PROB_CLAMP),
        "learned_tau": tau,
        "final_loss": last_epoch_loss(fit.losses[:, e], std.x_train.shape[0],
                                      config.batch_size, steps),
        "steps": float(steps),
    }
    if method == "full_elbo":
        metrics["learned_theta"] = float(fit.theta[e])
    return metrics


def _fit_and_score(raws, config: ConcreteUCISettings, method: str):
    """:data:`~comparisons.protocols.learned.GroupFit` of this protocol."""
    stds, fit, steps, seeds = _fit_group(raws, config, method, getattr(torch, config.dtype))

    def score(e: int) -> dict[str, float]:
        return _split_records(raws[e], stds[e], fit, e, config, method, seeds[e], steps)

    def predict(e: int) -> SplitPredictive:
        _, samples, tau = _test_samples(stds[e], fit, e, config, seeds[e])
        return samples_predictive(samples, stds[e], tau)

    return fit.failures, score, predict


def split_predictive(raw, config: ConcreteUCISettings, method: str) -> SplitPredictive:
    """Fit ``method`` (``concrete_dropout`` or ``full_elbo``) on one split as the cells do (same
    seeds) and return its moment-matched test predictive on the original scale."""
    if method not in CONCRETE_UCI_METHODS:
        raise ValueError(f"method must be one of {list(CONCRETE_UCI_METHODS)}, got {method!r}")
    return fit_split_predictive(raw, config, method, _fit_and_score)


def run_concrete_uci_cells(work: Cell | CellGroup):
    """Run cells of this protocol: one :class:`~comparisons.runner.executors.Cell` (returns its
    records) or a :class:`~comparisons.runner.executors.CellGroup` of one (data set, method,
    settings) (returns one entry per cell: its records, or a
    :class:`~comparisons.runner.executors.CellError` naming the data set, split and parameter of
    a fit that failed).

    Example:
        >>> cells = concrete_uci_cells(["yacht"], "0-1", ConcreteUCISettings(
        ...     epochs_multiplier=0.05, num_samples=10), "concrete_dropout")
        >>> out = run_concrete_uci_cells(CellGroup(tuple(cells)))
        >>> [sorted({r["split"] for r in recs}) for recs in out]
        [[0], [1]]
    """
    return run_learned_cells(work, methods=CONCRETE_UCI_METHODS, config_type=ConcreteUCISettings,
                             fit=_fit_and_score)


# ------------------------------------------------------------------ the registry entries
class _RegistryCells:
    def __init__(self, method: str):
        self.method = method

    def __call__(self, datasets, splits, settings) -> list[Cell]:
        config = ConcreteUCISettings(num_samples=settings.num_samples,
                                   temperature=settings.temperature,
                                   epochs_multiplier=settings.epochs_multiplier, seed=settings.seed)
        return concrete_uci_cells(list(datasets), splits, config, self.method)


def _registry_group_key(cell, settings):
    return concrete_group_key(cell)


METHODS = tuple(
    builtin_method(method, _RegistryCells(method), run_concrete_uci_cells,
                   group_key=_registry_group_key, help=help,
                   split_predictive=RegistryPredictive(method, ConcreteUCISettings,
                                                       split_predictive))
    for method, help in (
        ("concrete_dropout", "concrete_dropout (keep_prob per layer and tau learned by the ELBO "
                             "through relaxed masks, theta -> 0)"),
        ("full_elbo", "full_elbo (keep_prob, theta and tau learned)")))
