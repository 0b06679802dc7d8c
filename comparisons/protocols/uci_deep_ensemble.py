r"""Deep ensembles on the standard UCI splits (Lakshminarayanan, Pritzel & Blundell 2017): ``M``
networks with a mean and a variance output each, trained on the Gaussian negative
log-likelihood, combined as a uniform mixture. A cell of the UCI summary next to ``mc_dropout``,
the learned-rate methods, ``mfvi`` and the GPs.

Method ``deep_ensemble``. Per split: the training split is standardised (inputs and targets, as
in the MC dropout protocol); ``M = ensemble_size`` networks (one hidden ReLU layer of 50 units,
100 for protein; two outputs, :math:`\mu` and :math:`\sigma^2 = \operatorname{softplus}(r) +
10^{-6}`) are trained with :func:`vi_dropout.training.batched.train_batched`
(``loss="gaussian_nll"``, no dropout, no weight decay by default) for ``epochs`` epochs (40, the
paper's, on every data set), in minibatches of ``batch_size`` with Adam
(:math:`\beta = (0.9, 0.999)`, :math:`\epsilon_\text{Adam} = 10^{-7}`). The step size is chosen
per split on validation data (:func:`select_step_sizes`): the ensemble is trained on the first
80% of the training rows at each step size of ``lrs`` (0.1, 0.01, 0.001) and the one with the
highest mean mixture log-density on the last 20% is kept; then the ensemble is retrained on all
training rows at that step size. Each member has its own generator (seed
``protocol_seed + 900 + m``, the same at every step size): its own Glorot-uniform
initialisation and its own shuffles, the paper's only sources of diversity (no bagging). With
``adversarial_epsilon`` set, every minibatch also trains on its fast-gradient-sign perturbation
:math:`\mathbf{x} + \boldsymbol\epsilon \odot \operatorname{sign}(\nabla_\mathbf{x}\ell)` with
:math:`\epsilon_q` = ``adversarial_epsilon`` times the range of the (standardised) training
inputs of column :math:`q` (the paper: 0.01).

Predictive: the uniform mixture :math:`\frac1M \sum_m \mathcal{N}(\mu_m(\mathbf{x}),
\sigma^2_m(\mathbf{x}))` mapped to the original target scale. ``test_ll`` is the mean EXACT
mixture log-density (log-mean-exp of the members' densities, the Jacobian of the target
standardisation included); ``rmse`` is that of the mixture mean; ``coverage_95`` that of the
central 95% interval of the moment-matched Gaussian
(:func:`comparisons.protocols.learned.gaussian_mixture_metrics`). Records: ``rmse``,
``test_ll``, ``coverage_95``, ``ensemble_size``, ``adversarial`` (1 with FGSM, else 0),
``epochs``, ``lr`` (the chosen step size), ``validation_ll_lr_<lr>`` (the validation score of
each step size that did not diverge), ``final_loss`` (the members' mean last-epoch training loss
per data point, standardised scale), ``group_size`` and ``wall_time_s``.

All members of all pending splits of one data set train as ONE batched computation (splits x
step sizes x members networks for the validation fits, splits x members for the final ones); every member draws from its own generator, so a split's numbers do not
depend on the group (:func:`comparisons.protocols.learned.run_learned_cells`). A member whose
training loss turns non-finite fails ITS split's cell (the message names the data set, split
and member); the other splits are kept.

The paper's UCI settings (Sections 2.2.1, 3.1, 3.3 and Appendix A.1): one hidden layer of 50
ReLU units (100 for protein and Year), 40 epochs, ``M = 5``, batch size 100, Adam with a fixed
step size of 0.1 ("unless otherwise specified", Section 3.1), the variance floor 1e-6,
:math:`\epsilon` = 0.01 times the training range of each input column, Torch's default
initialisation; adversarial training "does not significantly help on these benchmarks" (ML-5+AT
results are not reported). The defaults here follow them except:

- the step size: the paper states 0.1 for every data set; here it is chosen per split on
  validation data among 0.1, 0.01 and 0.001 (``lrs``; ``lrs=(0.1,)`` gives the paper's fixed
  setting). With 0.1 on every split our members land far from the paper's Table 1 on some data
  sets (Boston RMSE 12.8 +- 3.4 against their 3.28, 10 splits), so the paper's value is kept as
  a candidate but not imposed.
- Glorot-uniform weights and zero biases (the Keras convention of
  :func:`~vi_dropout.training.batched.train_batched`) instead of Torch's default
  initialisation; float32.
- adversarial training is off (``adversarial_epsilon=None``; ``0.01`` turns on the paper's).

References:
    Lakshminarayanan, Pritzel & Blundell (2017), "Simple and Scalable Predictive Uncertainty
    Estimation using Deep Ensembles", NeurIPS 2017 (arXiv:1612.01474);
    Goodfellow, Shlens & Szegedy (2015), "Explaining and Harnessing Adversarial Examples", ICLR.

Example:
    >>> [c.method for c in deep_ensemble_uci_cells(["yacht"], "0-1", DeepEnsembleUCISettings())]
    ['deep_ensemble', 'deep_ensemble']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from comparisons.datasets.uci import StandardizedSplit, standardize, validation_split
from comparisons.protocols.learned import (
    RegistryPredictive,
    SplitPredictive,
    fit_split_predictive,
    gaussian_mixture_metrics,
    learned_cells,
    mixture_predictive,
    run_learned_cells,
    settings_group_key,
)
from comparisons.protocols.registry import builtin_method
from comparisons.protocols.settings import ProtocolSettings
from comparisons.protocols.uci import protocol_seed
from comparisons.runner.executors import Cell, CellGroup
from vi_dropout.network import mlp_forward
from vi_dropout.training import train_batched
from vi_dropout.training.common import check_weight_decay, gaussian_head
from vi_dropout.validation import check_positive, check_positive_int

__all__ = [
    "DEEP_ENSEMBLE_METHOD",
    "DEEP_ENSEMBLE_UCI_METHODS",
    "DeepEnsembleUCISettings",
    "deep_ensemble_uci_cells",
    "deep_ensemble_group_key",
    "run_deep_ensemble_uci_cells",
    "adversarial_steps",
    "select_step_sizes",
    "split_predictive",
]

#: the method id of this protocol
DEEP_ENSEMBLE_METHOD = "deep_ensemble"

#: method ids of this protocol
DEEP_ENSEMBLE_UCI_METHODS = (DEEP_ENSEMBLE_METHOD,)

#: offset of member ``m``'s seed from :func:`~comparisons.protocols.uci.protocol_seed` (plus ``m``)
SEED_OFFSET = 900

#: the settings written into every record (the epochs and step size are metrics)
RECORD_FIELDS = ()


@dataclass(frozen=True)
class DeepEnsembleUCISettings(ProtocolSettings):
    """Settings of deep ensembles on UCI (all recorded with every cell's id).

    Attributes:
        ensemble_size: :math:`M \\ge 1`, networks per split (the paper: 5).
        epochs: training epochs of every member, every data set (the paper: 40).
        batch_size: minibatch rows (the paper: 100).
        lrs: Adam step sizes to choose from per split on validation data (the highest mean
            mixture log-density on the held-out ``validation_fraction`` of the training rows);
            one value skips the validation fits. Default: the paper's 0.1 and two smaller ones.
        validation_fraction: share of the training rows held out to choose the step size (the
            last rows, as the MC dropout protocol's grid search).
        adversarial_epsilon: ``None`` (no adversarial training, the default) or the FGSM step
            as a fraction of each input column's training range (the paper: 0.01).
        weight_decay: L2 coefficient :math:`\\lambda` on the weights (the paper: none).
        seed: base seed (member ``m`` of a split: ``protocol_seed + 900 + m``).
        dtype: ``"float32"`` or ``"float64"``.
    """

    ensemble_size: int = 5
    epochs: int = 40
    batch_size: int = 100
    lrs: tuple[float, ...] = (0.1, 0.01, 0.001)
    validation_fraction: float = 0.2
    adversarial_epsilon: float | None = None
    weight_decay: float = 0.0
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        super().__post_init__()
        check_positive_int(self.ensemble_size, "ensemble_size")
        check_positive_int(self.epochs, "epochs")
        if isinstance(self.lrs, (str, bytes)) or not isinstance(self.lrs, Sequence):
            raise ValueError(f"lrs must be a sequence of positive step sizes, got {self.lrs!r}")
        object.__setattr__(self, "lrs", tuple(self.lrs))  # a list after a JSON round trip
        if not self.lrs or len(set(self.lrs)) != len(self.lrs):
            raise ValueError(f"lrs must hold distinct positive step sizes, got {list(self.lrs)}")
        for lr in self.lrs:
            check_positive(lr, "lrs")
        if not 0.0 < check_positive(self.validation_fraction, "validation_fraction") < 1.0:
            raise ValueError("validation_fraction must lie in (0, 1), got "
                             f"{self.validation_fraction!r}")
        check_weight_decay(self.weight_decay, "weight_decay")
        if self.adversarial_epsilon is not None:
            check_positive(self.adversarial_epsilon, "adversarial_epsilon")


def deep_ensemble_uci_cells(datasets: Sequence[str], splits: str,
                            config: DeepEnsembleUCISettings) -> list[Cell]:
    """One cell per (data set, split) of :func:`~comparisons.protocols.uci.uci_splits`."""
    return learned_cells(datasets, splits, config, DEEP_ENSEMBLE_METHOD,
                         DEEP_ENSEMBLE_UCI_METHODS)


def deep_ensemble_group_key(cell: Cell):
    """The :func:`~comparisons.runner.executors.run_cells` ``group_by`` key: cells of this
    protocol with the same data set and settings train together; others get ``None``."""
    return settings_group_key(cell, DEEP_ENSEMBLE_UCI_METHODS)


def adversarial_steps(std: StandardizedSplit, fraction: float) -> np.ndarray:
    r"""The FGSM step of each input column: ``fraction`` times the range of the standardised
    training inputs, :math:`\epsilon_q = f\,(\max_n x_{nq} - \min_n x_{nq})` (the paper's
    :math:`\epsilon`, 1% of the range for :math:`f = 0.01`).

    Example:
        >>> from comparisons.datasets.uci import load_uci
        >>> adversarial_steps(standardize(load_uci("yacht", 0)), 0.01).shape
        (6,)
    """
    return fraction * (std.x_train.max(axis=0) - std.x_train.min(axis=0))


def _member_failure(diverged_epoch: torch.Tensor, members: range, M: int) -> str | None:
    """``None``, or which members of one split diverged (named, 0-based) and when."""
    bad = [(m, int(diverged_epoch[e])) for m, e in enumerate(members) if diverged_epoch[e] >= 0]
    if not bad:
        return None
    return "; ".join(f"member {m} of {M} (0-based) diverged at epoch {ep} (non-finite training "
                     "loss)" for m, ep in bad)


def _train_members(raws, lrs_per_split, config: DeepEnsembleUCISettings):
    """One batched fit of ``M`` members per (split, step size): ``raws[e]`` is trained once for
    each step size in ``lrs_per_split[e]``; networks in the order split, step size, member.
    Returns the standardised splits and the fit."""
    dtype, M = getattr(torch, config.dtype), config.ensemble_size
    stds = [standardize(raw) for raw in raws]
    copies = [len(lrs) * M for lrs in lrs_per_split]

    def stacked(arrays):
        return torch.cat([torch.tensor(a, dtype=dtype).expand(k, *a.shape)
                          for a, k in zip(arrays, copies)])

    x, y = stacked([s.x_train for s in stds]), stacked([s.y_train for s in stds])
    adv = None
    if config.adversarial_epsilon is not None:
        adv = stacked([adversarial_steps(s, config.adversarial_epsilon) for s in stds])
    seeds = [protocol_seed(config, raw.split) + SEED_OFFSET + m
             for raw, lrs in zip(raws, lrs_per_split) for _ in lrs for m in range(M)]
    lr = [a for lrs in lrs_per_split for a in lrs for _ in range(M)]
    fit = train_batched(x, y, 1.0, config.weight_decay, seeds, hidden=(raws[0].n_hidden,),
                        epochs=config.epochs, batch_size=config.batch_size,
                        lr=lr if len(set(lr)) > 1 else lr[0], loss="gaussian_nll",
                        adversarial_epsilon=adv)
    return stds, fit


def _members_mixture(fit, members: slice, std: StandardizedSplit):
    """The members' Gaussian heads on ``std``'s test rows: ``M x N x 1`` means and variances
    (float64, standardised scale)."""
    x_test = torch.tensor(std.x_test, dtype=fit.weights[0].dtype)
    out = mlp_forward(x_test, [w[members] for w in fit.weights], [b[members] for b in fit.biases])
    return gaussian_head(out.double())


def select_step_sizes(raws, config: DeepEnsembleUCISettings) -> list[dict]:
    """Choose each split's step size on validation data: train the ensemble on the first
    ``1 - validation_fraction`` of the training rows at every step size of ``config.lrs`` (one
    batched computation for all splits) and keep the one with the highest mean mixture
    log-density on the held-out rows (:func:`~comparisons.datasets.uci.validation_split`, the MC
    dropout protocol's hold-out). A step size whose members diverge is not chosen.

    Returns:
        Per split: ``{"lr": chosen or None (every step size diverged), "validation_ll":
        {lr: mean log-density or -inf}}``.
    """
    M, lrs = config.ensemble_size, list(config.lrs)
    vals = [validation_split(raw, config.validation_fraction) for raw in raws]
    stds, fit = _train_members(vals, [lrs] * len(raws), config)
    out = []
    for e, (val, std) in enumerate(zip(vals, stds)):
        scores = {}
        for k, lr in enumerate(lrs):
            first = (e * len(lrs) + k) * M
            ll = -math.inf
            if not bool((fit.diverged_epoch[first:first + M] >= 0).any()):
                means, variances = _members_mixture(fit, slice(first, first + M), std)
                ll = gaussian_mixture_metrics(means, variances, val, std)["test_ll"]
                ll = ll if math.isfinite(ll) else -math.inf
            scores[lr] = ll
        best = max(lrs, key=lambda a: scores[a])  # first of the best on ties
        out.append({"lr": best if scores[best] > -math.inf else None, "validation_ll": scores})
    return out


def _fit_and_score(raws, config: DeepEnsembleUCISettings, method: str):
    """:data:`~comparisons.protocols.learned.GroupFit` of this protocol: the step size of each
    split on validation data (when ``config.lrs`` holds more than one), then one batched fit of
    all members of the splits ``raws`` at their step sizes, and the records of each split."""
    M = config.ensemble_size
    chosen = ([{"lr": config.lrs[0], "validation_ll": {}}] * len(raws) if len(config.lrs) == 1
              else select_step_sizes(raws, config))
    failures: list[str | None] = [None] * len(raws)
    kept = []
    for e, c in enumerate(chosen):
        if c["lr"] is None:
            failures[e] = ("every step size diverged on the validation rows "
                           f"(lrs {list(config.lrs)})")
        else:
            kept.append(e)
    if not kept:
        return failures, None, None
    stds, fit = _train_members([raws[e] for e in kept], [[chosen[e]["lr"]] for e in kept], config)
    position = {e: j for j, e in enumerate(kept)}
    for e, j in position.items():
        failures[e] = _member_failure(fit.diverged_epoch, range(j * M, (j + 1) * M), M)

    def score(e: int) -> dict[str, float]:
        j = position[e]
        members = slice(j * M, (j + 1) * M)
        means, variances = _members_mixture(fit, members, stds[j])
        validation = {f"validation_ll_lr_{lr:g}": v
                      for lr, v in chosen[e]["validation_ll"].items() if math.isfinite(v)}
        return gaussian_mixture_metrics(means, variances, raws[e], stds[j]) | {
            "ensemble_size": float(M),
            "adversarial": float(config.adversarial_epsilon is not None),
            "epochs": float(config.epochs),
            "lr": float(chosen[e]["lr"]),
            **validation,
            "final_loss": float(fit.losses[members, -1].double().mean()),
        }

    def predict(e: int) -> SplitPredictive:
        j = position[e]
        means, variances = _members_mixture(fit, slice(j * M, (j + 1) * M), stds[j])
        return mixture_predictive(means, variances, stds[j])

    return failures, score, predict


def split_predictive(raw, config: DeepEnsembleUCISettings,
                     method: str = DEEP_ENSEMBLE_METHOD) -> SplitPredictive:
    """Train the ensemble on one split as the cells do (step size chosen on validation rows,
    same seeds) and return the moment-matched test predictive of its mixture, original scale."""
    if method not in DEEP_ENSEMBLE_UCI_METHODS:
        raise ValueError(f"method must be one of {list(DEEP_ENSEMBLE_UCI_METHODS)}, got "
                         f"{method!r}")
    return fit_split_predictive(raw, config, method, _fit_and_score)


def run_deep_ensemble_uci_cells(work: Cell | CellGroup):
    """Run cells of this protocol: one :class:`~comparisons.runner.executors.Cell` (returns its
    records) or a :class:`~comparisons.runner.executors.CellGroup` of one (data set, settings)
    (returns one entry per cell: its records, or a
    :class:`~comparisons.runner.executors.CellError` naming the data set, split and member of an
    ensemble that failed).

    Example:
        >>> cells = deep_ensemble_uci_cells(["yacht"], "0-1", DeepEnsembleUCISettings(
        ...     ensemble_size=2, epochs=2, lrs=(0.01,)))
        >>> out = run_deep_ensemble_uci_cells(CellGroup(tuple(cells)))
        >>> [sorted({r["split"] for r in recs}) for recs in out]
        [[0], [1]]
    """
    return run_learned_cells(work, methods=DEEP_ENSEMBLE_UCI_METHODS,
                             config_type=DeepEnsembleUCISettings, fit=_fit_and_score,
                             record_fields=RECORD_FIELDS)


# ------------------------------------------------------------------ the registry entry
def _registry_cells(datasets, splits, settings) -> list[Cell]:
    config = DeepEnsembleUCISettings(ensemble_size=settings.ensemble_size,
                                   epochs=settings.ensemble_epochs, lrs=settings.ensemble_lrs,
                                   adversarial_epsilon=settings.adversarial_epsilon,
                                   seed=settings.seed)
    return deep_ensemble_uci_cells(list(datasets), splits, config)


def _registry_group_key(cell, settings):
    return deep_ensemble_group_key(cell)


METHOD = builtin_method(
    DEEP_ENSEMBLE_METHOD, _registry_cells, run_deep_ensemble_uci_cells,
    group_key=_registry_group_key,
    split_predictive=RegistryPredictive(DEEP_ENSEMBLE_METHOD, DeepEnsembleUCISettings,
                                        split_predictive),
    help="deep_ensemble (networks with mean and variance outputs trained on the Gaussian NLL, "
         "the uniform mixture)")
