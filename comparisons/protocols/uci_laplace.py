r"""The Laplace approximation on the standard UCI splits (laplace-torch): a cell of the UCI
summary next to ``mc_dropout``, the learned-rate methods, the GPs and mean-field VI.

Per split: the training split is standardised; a MAP network (one hidden ReLU layer of 50 units,
100 for protein; Glorot-uniform weights, zero biases; no dropout) is trained with Adam (step size
``lr``) in minibatches of 128 for the MC dropout protocol's epochs (base epochs times
``epochs_multiplier``) on the negative log joint per data point,

.. math::
    \frac1N\Big[\sum_i \frac{(y_i - f_\theta(\mathbf x_i))^2}{2\sigma^2} + N\log\sigma
    + \frac{l^2}{2}\|\theta\|^2\Big]

(minibatch estimates): the MC dropout protocol's prior :math:`\mathcal N(0, l^{-2})`,
:math:`l = 10^{-2}`, on every weight and bias, and a Gaussian likelihood whose noise
:math:`\sigma` is LEARNED jointly (Adam, step size ``noise_lr`` on :math:`\log\sigma`).
laplace-torch then fits the Laplace approximation at the MAP and, starting from
:math:`\delta = l^2` and the MAP's :math:`\sigma`, sets the prior precision :math:`\delta` and
the noise :math:`\sigma` by maximising its Laplace log marginal likelihood (Adam on
:math:`\log\delta, \log\sigma`; MacKay 1992)

.. math::
    \log p(\mathcal D \mid \delta, \sigma) \approx \log p(\mathcal D \mid \theta_*, \sigma)
    - \frac{\delta}{2}\|\theta_*\|^2 - \frac12 \log\det\big(\sigma^{-2} \mathbf H
    + \delta \mathbf I\big) + \frac P2 \log \delta,

with :math:`\mathbf H` the generalised Gauss-Newton matrix of the sum of squares over the
:math:`P` parameters of the approximation. Methods:

- ``laplace``: the LAST layer only (its 50 or 100 weights and bias), full Hessian. With a
  Gaussian likelihood this is exactly Bayesian linear regression on the hidden features
  :math:`\phi(\mathbf x)` (and 1): :math:`\Sigma = (\Phi^\top\Phi/\sigma^2 + \delta\mathbf I)^{-1}`.
- ``laplace_kfac``: every weight and bias, Kronecker-factored (KFAC) GGN.

Both share the MAP network of a split (same seed): they differ only in the posterior. The test
predictive is the linearised (GLM) one, :math:`\mathcal N(f_{\theta_*}(\mathbf x),
\mathbf J \Sigma \mathbf J^\top + \sigma^2)`, mapped to the original scale (means
:math:`\bar y + s_y \mu`, variances :math:`s_y^2 v`, so the density includes the Jacobian
:math:`-\log s_y`). Records: ``rmse``, ``test_ll``, ``coverage_95`` (central 95% interval),
``learned_prior_precision`` (:math:`\delta`, on the weights of the standardised problem),
``learned_noise_sd`` (:math:`s_y\sigma`, original scale), ``map_noise_sd`` (the MAP's
:math:`s_y\sigma`), ``log_marglik`` (per training point, standardised targets),
``marglik_steps``, ``steps`` (MAP training), ``laplace_time_s`` (fit, marginal likelihood and
predictive) and ``wall_time_s`` (the whole cell). Everything runs in float64, with laplace-torch's
BackPACK GGN backend (its default, Curvlinops, builds the full Hessian with a float32 identity:
float32 precision) and a fix of its Kronecker scaling while the marginal likelihood is optimised
(see :func:`fit_laplace`).

Time per split (one torch thread, default settings, 2-core CPU): see
``docs/experiments/uci.md`` (section "Laplace"); the MAP training dominates.

laplace-torch is an optional extra (``pip install '.[laplace]'``, or ``make install``); without
it :class:`LaplaceUCISettings` and :func:`run_laplace_uci_cell` raise ``ImportError`` naming it.

References:
    MacKay (1992), "A Practical Bayesian Framework for Backpropagation Networks", Neural
    Computation 4(3);
    Ritter, Botev & Barber (2018), "A Scalable Laplace Approximation for Neural Networks",
    ICLR 2018 (KFAC);
    Daxberger et al. (2021), "Laplace Redux -- Effortless Bayesian Deep Learning", NeurIPS 2021.

Example:
    >>> [c.method for c in laplace_uci_cells(["yacht"], "0-1", LaplaceUCISettings())]
    ['laplace', 'laplace']
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import operator
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from comparisons.datasets.uci import StandardizedSplit, load_uci, standardize
from comparisons.protocols.learned import (
    RegistryPredictive,
    SplitPredictive,
    gaussian_mixture_metrics,
    learned_cells,
    mixture_predictive,
)
from comparisons.protocols.registry import builtin_method
from comparisons.protocols.settings import ProtocolSettings
from comparisons.protocols.uci import protocol_seed
from comparisons.runner.executors import Cell
from vi_dropout.validation import check_positive, check_positive_int

__all__ = [
    "LAPLACE_METHODS",
    "LaplaceUCISettings",
    "laplace_uci_cells",
    "laplace_group_key",
    "run_laplace_uci_cell",
    "split_predictive",
    "laplace_available",
    "import_laplace",
    "train_map_network",
    "fit_laplace",
    "laplace_predictive",
]

#: method ids of this protocol
LAPLACE_METHODS = ("laplace", "laplace_kfac")

#: ``(subset_of_weights, hessian_structure)`` of laplace-torch per method
STRUCTURES = {"laplace": ("last_layer", "full"), "laplace_kfac": ("all", "kron")}

#: offset of the MAP network's seed from :func:`~comparisons.protocols.uci.protocol_seed`
SEED_OFFSET = 900

#: rows per batch when laplace-torch accumulates the Hessian
HESSIAN_BATCH_SIZE = 512

MISSING_LAPLACE = ("the 'laplace' method needs laplace-torch: pip install '.[laplace]' "
                   "(or make install)")


def laplace_available() -> bool:
    """Whether laplace-torch can be found (without importing it: that takes seconds)."""
    if "laplace" in sys.modules:
        return sys.modules["laplace"] is not None
    return importlib.util.find_spec("laplace") is not None


def import_laplace():
    """The ``laplace`` package of laplace-torch (its ``Laplace`` factory and
    ``laplace.curvature.BackPackGGN``).

    Raises:
        ImportError: laplace-torch is missing (:data:`MISSING_LAPLACE`), or installed but does
            not import (e.g. next to a CUDA build of torchvision, which cannot load against the
            CPU torch: ``pip uninstall torchvision``; laplace-torch does not use it).
    """
    try:
        import laplace
        import laplace.curvature
        import laplace.utils.matrix
    except ImportError as exc:
        raise ImportError(f"{MISSING_LAPLACE} ({exc})") from exc
    except RuntimeError as exc:
        raise ImportError(
            f"laplace-torch is installed but does not import ({exc}). If torchvision is a CUDA "
            "build next to a CPU torch (PyPI's wheels are), run `pip uninstall torchvision`: "
            "laplace-torch does not use it (make install does this)") from exc
    return laplace


@contextlib.contextmanager
def _quiet_hooks():
    """Silence BackPACK's harmless "Full backward hook is firing ..." warnings (its hooks on
    the first layer, whose inputs need no gradient)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


@contextlib.contextmanager
def _differentiable_kron_scaling(lib):
    """laplace-torch 0.3 scales the Kronecker factors by :math:`\\sigma^{-2}` with
    ``math.pow`` (``laplace/utils/matrix.py``), which turns the factor into a float: the
    gradient of the log marginal likelihood in :math:`\\sigma` then misses the log-determinant
    term (measured: autograd 0 where finite differences give 21). Use ``**`` meanwhile."""
    matrix = lib.utils.matrix
    saved = matrix.pow
    matrix.pow = operator.pow
    try:
        yield
    finally:
        matrix.pow = saved


@dataclass(frozen=True)
class LaplaceUCISettings(ProtocolSettings):
    """Settings of the Laplace approximation on UCI (all recorded with every cell).

    Attributes:
        epochs_multiplier: base epochs (40; 20 for protein) times this, as the MC dropout
            protocol.
        prior_length_scale: :math:`l` of the MAP training's prior :math:`\\mathcal N(0, l^{-2})`
            (and the starting prior precision :math:`l^2` of the marginal likelihood).
        batch_size: minibatch rows of the MAP training.
        seed: base seed (per split: ``protocol_seed + 900``).
        lr, noise_lr: Adam step sizes of the weights and of :math:`\\log\\sigma`.
        initial_noise_sd: :math:`\\sigma` at the start of the MAP training (standardised scale).
        marglik_steps: at most this many Adam steps on the log marginal likelihood (0: keep
            :math:`\\delta = l^2` and the MAP's :math:`\\sigma`).
        marglik_lr: their step size (on :math:`\\log\\delta, \\log\\sigma`).
        marglik_tol: stop when both gradients of the negative log marginal likelihood per data
            point are below this.
        predict_batch_size: test rows per GLM predictive call (laplace-torch's Jacobians need
            memory that grows faster than linearly in the batch: all 4,573 protein test rows at
            once with ``laplace_kfac`` took over 20 GB).

    Raises:
        ImportError: laplace-torch is not installed (:data:`MISSING_LAPLACE`).
    """

    epochs_multiplier: float = 10
    prior_length_scale: float = 1e-2
    batch_size: int = 128
    seed: int = 0
    lr: float = 1e-3
    noise_lr: float = 1e-2
    initial_noise_sd: float = 1.0
    marglik_steps: int = 1000
    marglik_lr: float = 0.1
    marglik_tol: float = 1e-9
    predict_batch_size: int = 128

    def __post_init__(self):
        super().__post_init__()
        for name in ("lr", "noise_lr", "initial_noise_sd", "marglik_lr",
                     "marglik_tol"):
            check_positive(getattr(self, name), name)
        check_positive_int(self.predict_batch_size, "predict_batch_size")
        if (isinstance(self.marglik_steps, bool) or not isinstance(self.marglik_steps, int)
                or self.marglik_steps < 0):
            raise ValueError(f"marglik_steps must be an integer >= 0, got {self.marglik_steps!r}")
        if not laplace_available():
            raise ImportError(MISSING_LAPLACE)


def laplace_uci_cells(datasets: Sequence[str], splits: str, config: LaplaceUCISettings,
                      method: str = "laplace") -> list[Cell]:
    """One cell per (data set, split) of :func:`~comparisons.protocols.uci.uci_splits` for
    ``method`` (one of :data:`LAPLACE_METHODS`)."""
    return learned_cells(datasets, splits, config, method, LAPLACE_METHODS)


def laplace_group_key(cell: Cell):
    """The :func:`~comparisons.runner.executors.run_cells` ``group_by`` key: ``None`` (every
    split runs alone)."""
    return None


def train_map_network(x: torch.Tensor, y: torch.Tensor, n_hidden: int, *, epochs: int,
                      config: LaplaceUCISettings, seed: int) -> tuple[nn.Sequential, float]:
    r"""The MAP network and its learned noise: Adam on the minibatch negative log joint per
    data point (see the module docstring) with a Gaussian likelihood and the prior
    :math:`\mathcal N(0, l^{-2})` on every weight and bias.

    Args:
        x: ``N x Q`` standardised inputs; y: ``N x 1`` standardised targets (float64).
        n_hidden: hidden ReLU units.
        epochs: passes over the data (minibatches of ``config.batch_size``, reshuffled).
        config: the settings; seed: initialisation and shuffling.

    Returns:
        ``(network, sigma)``: an ``nn.Sequential`` (Linear, ReLU, Linear) in float64 and the
        learned noise standard deviation on the standardised scale.

    Raises:
        RuntimeError: the objective turned non-finite.
    """
    gen = torch.Generator().manual_seed(seed)
    n, q = x.shape
    net = nn.Sequential(nn.Linear(q, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 1)).double()
    for layer in (net[0], net[2]):
        nn.init.xavier_uniform_(layer.weight, generator=gen)
        nn.init.zeros_(layer.bias)
    log_sd = torch.tensor(math.log(config.initial_noise_sd), dtype=torch.float64,
                          requires_grad=True)
    opt = torch.optim.Adam([{"params": list(net.parameters()), "lr": config.lr},
                            {"params": [log_sd], "lr": config.noise_lr}])
    decay = 0.5 * config.prior_length_scale**2 / n
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(config.batch_size):
            resid = y[idx] - net(x[idx])
            loss = (0.5 * resid.square().mean() * torch.exp(-2 * log_sd) + log_sd
                    + decay * sum(p.square().sum() for p in net.parameters()))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"the MAP training's objective is not finite "
                               f"({float(loss.detach())})")
    return net, float(log_sd.detach().exp())


def fit_laplace(net: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, *,
                prior_precision: float, noise_sd: float, config: LaplaceUCISettings):
    r"""laplace-torch's approximation of ``method`` at the network's weights, then the prior
    precision :math:`\delta` and noise :math:`\sigma` by its log marginal likelihood.

    Adam (step size ``config.marglik_lr``) on :math:`(\log\delta, \log\sigma)` of the negative
    log marginal likelihood per data point, from ``prior_precision`` and ``noise_sd``, for at
    most ``config.marglik_steps`` steps (stops when both gradients are below
    ``config.marglik_tol``). laplace-torch 0.3 scales Kronecker factors by :math:`\sigma^{-2}`
    with ``math.pow``, losing the log-determinant's gradient in :math:`\sigma`; ``**`` is
    swapped in during these steps (:func:`_differentiable_kron_scaling`).

    Args:
        net: the MAP network (float64); x: ``N x Q``, y: ``N x 1`` (standardised).
        method: one of :data:`LAPLACE_METHODS` (see :data:`STRUCTURES`).
        prior_precision, noise_sd: the starting :math:`\delta` and :math:`\sigma`.
        config: the settings.

    Returns:
        ``(la, steps)``: the fitted laplace-torch object (at the optimised :math:`\delta` and
        :math:`\sigma`) and the number of marginal-likelihood steps taken.

    Raises:
        ImportError: laplace-torch is missing; RuntimeError: the marginal likelihood is not
        finite.
    """
    lib = import_laplace()
    subset, structure = STRUCTURES[method]
    la = lib.Laplace(net, "regression", subset_of_weights=subset, hessian_structure=structure,
                     sigma_noise=float(noise_sd), prior_precision=float(prior_precision),
                     backend=lib.curvature.BackPackGGN)
    with _quiet_hooks():
        la.fit(DataLoader(TensorDataset(x, y), batch_size=HESSIAN_BATCH_SIZE))
    log_prec = torch.tensor(math.log(prior_precision), dtype=torch.float64, requires_grad=True)
    log_sd = torch.tensor(math.log(noise_sd), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([log_prec, log_sd], lr=config.marglik_lr)
    steps = 0
    while steps < config.marglik_steps:
        opt.zero_grad()
        with _differentiable_kron_scaling(lib):
            loss = -la.log_marginal_likelihood(log_prec.exp(), log_sd.exp()) / x.shape[0]
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"the log marginal likelihood is not finite "
                               f"({-float(loss.detach())}) at "
                               f"prior precision {float(log_prec.exp()):.3g}, noise sd "
                               f"{float(log_sd.exp()):.3g}")
        loss.backward()
        if max(abs(float(log_prec.grad)), abs(float(log_sd.grad))) < config.marglik_tol:
            break
        opt.step()
        steps += 1
    la.prior_precision = log_prec.detach().exp()
    la.sigma_noise = log_sd.detach().exp()
    return la, steps


def laplace_predictive(la, x: torch.Tensor, batch_size: int = 128
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The GLM (linearised) predictive of the function: mean :math:`f_{\theta_*}(\mathbf x)`
    and variance :math:`\mathbf J(\mathbf x)\Sigma\mathbf J(\mathbf x)^\top` (noise NOT
    included), in batches of ``batch_size`` rows.

    Args:
        la: a fitted laplace-torch regression approximation; x: ``N x Q``.

    Returns:
        ``(mean, var)``, each ``N``.
    """
    means, variances = [], []
    for chunk in x.split(batch_size):
        with _quiet_hooks():
            f_mu, f_var = la(chunk, pred_type="glm")
        means.append(f_mu.reshape(-1))
        variances.append(f_var.reshape(-1))
    return torch.cat(means), torch.cat(variances)


@dataclass(frozen=True)
class _SplitFit:
    """One split's MAP network, Laplace fit and test predictive (standardised scale)."""

    la: Any  # the fitted laplace-torch approximation
    std: StandardizedSplit
    x: torch.Tensor  # standardised training inputs, N x Q
    mean: torch.Tensor  # f at the test inputs, N_test
    f_var: torch.Tensor  # GLM variance of f there (noise not included), N_test
    noise_sd: float  # learned noise sd (standardised)
    map_sd: float  # the MAP training's noise sd (standardised)
    marglik_steps: int
    epochs: int
    t_laplace: float  # perf_counter() when the Laplace fit began
    where: str  # "<data set> split <k> (<method>)" for error messages

    @property
    def predictive_var(self) -> torch.Tensor:
        """The test predictive's variance: GLM variance plus noise."""
        return self.f_var + self.noise_sd**2


def _fit_split(raw, config: LaplaceUCISettings, method: str) -> _SplitFit:
    """MAP network, Laplace fit and test predictive (standardised scale) of one split."""
    std = standardize(raw)
    x, y, x_test = (torch.tensor(a, dtype=torch.float64)
                    for a in (std.x_train, std.y_train, std.x_test))
    epochs = max(1, int(round(raw.n_epochs * config.epochs_multiplier)))
    where = f"{raw.name} split {raw.split} ({method})"
    try:
        net, map_sd = train_map_network(
            x, y, raw.n_hidden, epochs=epochs, config=config,
            seed=protocol_seed(config, raw.split) + SEED_OFFSET)
        t1 = time.perf_counter()
        la, marglik_steps = fit_laplace(net, x, y, method,
                                        prior_precision=config.prior_length_scale**2,
                                        noise_sd=map_sd, config=config)
        mean, f_var = laplace_predictive(la, x_test, config.predict_batch_size)
    except RuntimeError as exc:
        raise RuntimeError(f"{where}: {exc}") from exc
    return _SplitFit(la=la, std=std, x=x, mean=mean, f_var=f_var,
                     noise_sd=float(la.sigma_noise), map_sd=map_sd,
                     marglik_steps=marglik_steps, epochs=epochs, t_laplace=t1, where=where)


def split_predictive(raw, config: LaplaceUCISettings, method: str) -> SplitPredictive:
    """Fit ``method`` (``laplace`` or ``laplace_kfac``) on one split as the cells do (same seeds)
    and return its Gaussian test predictive (GLM variance + noise) on the original scale."""
    if method not in LAPLACE_METHODS:
        raise ValueError(f"method must be one of {list(LAPLACE_METHODS)}, got {method!r}")
    import_laplace()
    fit = _fit_split(raw, config, method)
    return mixture_predictive(fit.mean[None, :, None], fit.predictive_var[None, :, None],
                              fit.std)


def run_laplace_uci_cell(cell: Cell) -> list[dict]:
    """Run one cell of this protocol (see the module docstring) and return its records.

    Args:
        cell: a :class:`~comparisons.runner.executors.Cell` from :func:`laplace_uci_cells`.

    Returns:
        Tidy records (``dataset``, ``method``, ``split``, ``epochs_multiplier``, ``metric``,
        ``value``).

    Raises:
        ImportError: laplace-torch is missing; ValueError: not a cell of this protocol;
        RuntimeError: a fit or a metric is not finite (naming data set, split and method).

    Example:
        >>> cell = laplace_uci_cells(["yacht"], "0", LaplaceUCISettings(epochs_multiplier=0.05))[0]
        >>> sorted({r["metric"] for r in run_laplace_uci_cell(cell)})[:3]
        ['coverage_95', 'laplace_time_s', 'learned_noise_sd']
    """
    if cell.method not in LAPLACE_METHODS:
        raise ValueError(f"method must be one of {list(LAPLACE_METHODS)}, got {cell.method!r}")
    config = LaplaceUCISettings(**dict(cell.config))
    import_laplace()  # once per process (seconds): not part of the cell's time
    t0 = time.perf_counter()
    raw = load_uci(cell.dataset, cell.split)
    fit = _fit_split(raw, config, cell.method)
    y_std = float(fit.std.y_std)
    try:
        # one Gaussian per test point: a mixture of M = 1
        metrics = gaussian_mixture_metrics(fit.mean[None, :, None],
                                           fit.predictive_var[None, :, None], raw, fit.std)
        with torch.no_grad():
            log_marglik = float(fit.la.log_marginal_likelihood()) / fit.x.shape[0]
    except RuntimeError as exc:
        raise RuntimeError(f"{fit.where}: {exc}") from exc
    metrics |= {
        "learned_prior_precision": float(fit.la.prior_precision.reshape(-1)[0]),
        "learned_noise_sd": fit.noise_sd * y_std,
        "map_noise_sd": fit.map_sd * y_std,
        "log_marglik": log_marglik,
        "marglik_steps": float(fit.marglik_steps),
        "steps": float(fit.epochs * math.ceil(fit.x.shape[0] / config.batch_size)),
        "laplace_time_s": time.perf_counter() - fit.t_laplace,
    }
    for k, v in metrics.items():
        if not math.isfinite(v):
            raise RuntimeError(f"{fit.where}: metric {k} is not finite ({v})")
    metrics["wall_time_s"] = time.perf_counter() - t0
    base = {"dataset": raw.name, "method": cell.method, "split": raw.split,
            "epochs_multiplier": config.epochs_multiplier}
    return [dict(base, metric=k, value=float(v)) for k, v in metrics.items()]


# ------------------------------------------------------------------ the registry entries
class _RegistryCells:
    def __init__(self, method: str):
        self.method = method

    def __call__(self, datasets, splits, settings) -> list[Cell]:
        config = LaplaceUCISettings(epochs_multiplier=settings.epochs_multiplier,
                                  seed=settings.seed)
        return laplace_uci_cells(list(datasets), splits, config, self.method)


def _missing_laplace() -> str | None:
    return None if laplace_available() else MISSING_LAPLACE


METHODS = tuple(
    builtin_method(method, _RegistryCells(method), run_laplace_uci_cell,
                   requires=_missing_laplace, help=help,
                   split_predictive=RegistryPredictive(method, LaplaceUCISettings,
                                                       split_predictive))
    for method, help in (
        ("laplace", "laplace (laplace-torch on the MAP network: last layer; extra "
                    "'.[laplace]')"),
        ("laplace_kfac", "laplace_kfac (laplace-torch: the whole network with KFAC; extra "
                         "'.[laplace]')")))
