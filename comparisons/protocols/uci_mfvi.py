r"""Mean-field Gaussian VI on the standard UCI splits: one fit per split, a cell of the UCI
summary next to ``mc_dropout``, the learned-rate methods and the GPs.

Method ``mfvi``: a factorised Gaussian :math:`q(\mathbf{W}) = \prod_j \mathcal{N}(\mu_j,
\sigma_j^2)` over every weight and bias (:class:`vi_dropout.infer.mean_field.MeanFieldObjective`) and a
homoscedastic :math:`\tau`, learned by maximising the ELBO (local reparameterisation, closed-form
KL) with the MC dropout protocol's prior :math:`\mathcal{N}(0, l^{-2})`, :math:`l = 10^{-2}`, on
the standardised inputs.

Per split, as :mod:`comparisons.protocols.uci_concrete` (no validation split: nothing is
selected): the training split is standardised; the network (one hidden ReLU layer of 50 units,
100 for protein; Glorot-uniform means, zero biases, every :math:`\sigma_j` starting at
``initial_sigma``) is fitted with :func:`vi_dropout.infer.mean_field.fit_mean_field` for the
protocol's epochs (base epochs times ``epochs_multiplier``) in minibatches of 128 (Adam: step
size ``lr`` for the means, ``hyper_lr`` for the softplus parameters :math:`\rho_j` of the scales
and for :math:`\log\tau`). The test predictive draws ``T = 10,000`` samples of :math:`f` per
point (one weight draw per sample and point by local reparameterisation: every point's exact
marginal) with the learned :math:`\tau` mapped to the original scale (:math:`\tau / s_y^2`);
records: ``rmse``, ``rmse_standard`` (the network at the posterior means), ``test_ll``,
``coverage_95`` (moment-matched Gaussian interval), ``learned_tau`` (original scale),
``final_loss`` (per data point, the mean over the last epoch), ``steps``, ``group_size`` and
``wall_time_s``.

The pending splits of one data set train as ONE batched computation
(:func:`comparisons.protocols.learned.run_learned_cells`); every split's network draws from its
own generator, so its numbers do not depend on the group. A network whose :math:`\tau` leaves
``[1e-10, 1e10]`` or whose objective turns non-finite fails ITS cell (named data set, split and
parameter); the others are kept.

References:
    Graves (2011), "Practical Variational Inference for Neural Networks", NeurIPS 2011;
    Blundell et al. (2015), "Weight Uncertainty in Neural Networks", ICML 2015;
    Kingma, Salimans & Welling (2015), "Variational Dropout and the Local Reparameterization
    Trick", NeurIPS 2015.

Example:
    >>> [c.method for c in mfvi_uci_cells(["yacht"], "0-1", MFVIUCISettings())]
    ['mfvi', 'mfvi']
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
from vi_dropout.infer.mean_field import fit_mean_field
from vi_dropout.network import mlp_forward
from vi_dropout.validation import check_positive

__all__ = [
    "MFVI_UCI_METHODS",
    "MFVIUCISettings",
    "mfvi_uci_cells",
    "mfvi_group_key",
    "run_mfvi_uci_cells",
    "split_predictive",
]

#: method ids of this protocol
MFVI_UCI_METHODS = ("mfvi",)

#: offset of the fit's seed from :func:`~comparisons.protocols.uci.protocol_seed` (the test MC
#: samples use one more)
SEED_OFFSET = 800


@dataclass(frozen=True)
class MFVIUCISettings(TrainingSettings):
    """Settings of mean-field Gaussian VI on UCI (all recorded with every cell): the shared
    :class:`~comparisons.protocols.settings.TrainingSettings` (per split the seed is
    ``protocol_seed + 800``, test samples ``+ 801``) and

    Attributes:
        initial_sigma: initial standard deviation of every weight and bias.
        initial_tau: initial :math:`\\tau` on the standardised scale.
        lr, hyper_lr: Adam step sizes of the means and of the scale parameters and
            :math:`\\log\\tau`.
    """

    initial_sigma: float = 1e-3
    initial_tau: float = 1.0
    lr: float = 1e-3
    hyper_lr: float = 1e-2

    def __post_init__(self):
        super().__post_init__()
        for name in ("initial_sigma", "initial_tau", "lr", "hyper_lr"):
            check_positive(getattr(self, name), name)


def mfvi_uci_cells(datasets: Sequence[str], splits: str, config: MFVIUCISettings,
                   method: str = "mfvi") -> list[Cell]:
    """One cell per (data set, split) of :func:`~comparisons.protocols.uci.uci_splits`."""
    return learned_cells(datasets, splits, config, method, MFVI_UCI_METHODS)


def mfvi_group_key(cell: Cell):
    """The :func:`~comparisons.runner.executors.run_cells` ``group_by`` key: cells of this
    protocol with the same data set and settings train together; others get ``None``."""
    return settings_group_key(cell, MFVI_UCI_METHODS)


def _fit_and_score(raws, config: MFVIUCISettings, method: str):
    """:data:`~comparisons.protocols.learned.GroupFit` of this protocol: one batched fit of the
    splits ``raws``, and the records of each."""
    dtype = getattr(torch, config.dtype)
    stds = [standardize(raw) for raw in raws]
    x = torch.stack([torch.tensor(s.x_train, dtype=dtype) for s in stds])
    y = torch.stack([torch.tensor(s.y_train, dtype=dtype) for s in stds])
    n = x.shape[1]
    epochs = max(1, int(round(raws[0].n_epochs * config.epochs_multiplier)))
    steps = epochs * math.ceil(n / config.batch_size)
    seeds = [protocol_seed(config, raw.split) + SEED_OFFSET for raw in raws]
    fit = fit_mean_field(
        x, y, (raws[0].n_hidden,), prior_length_scale=config.prior_length_scale,
        tau=config.initial_tau, initial_sigma=config.initial_sigma, steps=steps, lr=config.lr,
        hyper_lr=config.hyper_lr, batch_size=config.batch_size, seed=seeds, check_every=100)

    def samples(e: int):
        x_test = torch.tensor(stds[e].x_test, dtype=dtype)
        gen = torch.Generator().manual_seed(seeds[e] + 1)
        draws = fit.objective.predict(x_test, config.num_samples, network=e,
                                      generator=gen).double()
        return x_test, draws, original_scale_tau(float(fit.tau[e]), stds[e])

    def score(e: int) -> dict[str, float]:
        x_test, draws, tau = samples(e)
        means = mlp_forward(x_test, [w[e] for w in fit.weights], [b[e] for b in fit.biases])
        return predictive_metrics(draws, raws[e], stds[e], tau, means.double()) | {
            "learned_tau": tau,
            "final_loss": last_epoch_loss(fit.losses[:, e], n, config.batch_size, steps),
            "steps": float(steps),
        }

    def predict(e: int) -> SplitPredictive:
        _, draws, tau = samples(e)
        return samples_predictive(draws, stds[e], tau)

    return fit.failures, score, predict


def split_predictive(raw, config: MFVIUCISettings, method: str = "mfvi") -> SplitPredictive:
    """Fit mean-field VI on one split as the cells do (same seeds) and return its moment-matched
    test predictive on the original scale."""
    if method not in MFVI_UCI_METHODS:
        raise ValueError(f"method must be one of {list(MFVI_UCI_METHODS)}, got {method!r}")
    return fit_split_predictive(raw, config, method, _fit_and_score)


def run_mfvi_uci_cells(work: Cell | CellGroup):
    """Run cells of this protocol: one :class:`~comparisons.runner.executors.Cell` (returns its
    records) or a :class:`~comparisons.runner.executors.CellGroup` of one (data set, settings)
    (returns one entry per cell: its records, or a
    :class:`~comparisons.runner.executors.CellError` naming the data set, split and parameter of
    a fit that failed).

    Example:
        >>> cells = mfvi_uci_cells(["yacht"], "0-1", MFVIUCISettings(epochs_multiplier=0.05,
        ...                                                        num_samples=10))
        >>> out = run_mfvi_uci_cells(CellGroup(tuple(cells)))
        >>> [sorted({r["split"] for r in recs}) for recs in out]
        [[0], [1]]
    """
    return run_learned_cells(work, methods=MFVI_UCI_METHODS, config_type=MFVIUCISettings,
                             fit=_fit_and_score)


# ------------------------------------------------------------------ the registry entry
def _registry_cells(datasets, splits, settings) -> list[Cell]:
    config = MFVIUCISettings(num_samples=settings.num_samples,
                           epochs_multiplier=settings.epochs_multiplier, seed=settings.seed)
    return mfvi_uci_cells(list(datasets), splits, config)


def _registry_group_key(cell, settings):
    return mfvi_group_key(cell)


METHOD = builtin_method(
    "mfvi", _registry_cells, run_mfvi_uci_cells, group_key=_registry_group_key,
    split_predictive=RegistryPredictive("mfvi", MFVIUCISettings, split_predictive),
    help="mfvi (mean-field Gaussian VI: a mean and a standard deviation per weight and bias, "
         "and tau, learned by the ELBO)")
