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
  :func:`comparisons.gp.models.fit_exact_gp`), conditioned on every ``gp_stride``-th training
  week (default 2: 800 weeks).
- ``mc_dropout_relu`` (c) and ``mc_dropout_tanh`` (d): ``T`` function draws
  :math:`\hat y_t = f^{\hat{\mathbf{W}}_t}`, one dropout mask per layer and draw shared by all
  query points (:func:`mc_function_draws`; same marginals as
  :func:`vi_dropout.predict.mc_predict`, smooth curves), predictive mean and variance

  .. math::
      \mathbb{E}[y^*] \approx \frac1T\sum_t \hat y_t, \qquad
      \operatorname{Var}[y^*] \approx \tau^{-1} + \frac1T\sum_t \hat y_t^2 - \mathbb{E}[y^*]^2.

- ``gp_arccos1`` (e): exact GP with the first-order arc-cosine kernel (the covariance of an
  infinitely wide one-hidden-layer ReLU network, :class:`comparisons.ArcCosineKernel`) in a
  ``ScaleKernel``, hyper-parameters by marginal likelihood.

Networks (the paper's): ``hidden_layers = 4`` hidden layers of ``hidden_units = 1024`` units,
``drop_rate = 0.2`` (``keep_prob = 0.8``) on the input of every weight layer except the first
(the 1-D time input is not dropped: a dropped time stamp would read as :math:`x = 0`; set
``input_keep_prob`` to change this). They are trained Keras-style (inverted dropout, Glorot
weights, Adam with lr 1e-3, minibatches of 128 reshuffled every epoch) on

.. math::
    \frac{1}{|\mathcal{B}|}\sum_{n \in \mathcal{B}} (y_n - \hat y_n)^2
    + \lambda \sum_i \|\mathbf{W}_i\|_F^2, \qquad
    \lambda = \frac{l^2\, \text{keep\_prob}}{2 N \tau}

(:func:`vi_dropout.training.weight_decay`). One ReLU network serves panels (a) and (c).

Cost (1 torch thread, float32, wall-clock on a 2-core CPU, which gave
the process about half a core): one minibatch step of the 4 x 1024 network takes 0.08-0.13 s,
one MC function draw over the ~2,500 query points 0.37-0.8 s, 100 marginal-likelihood steps of
an exact GP on 800 weeks 14-23 s. The default run (500 steps, T = 50) takes about 3.6 minutes,
2500 steps with T = 100 about 9 minutes. :data:`PAPER_LIKE_SETTINGS` documents a paper-size run
(10^6 steps, T = 1000): about 22 hours of training per network at 0.08 s per step.

No file is written here: :func:`comparisons.report.mauna_loa.write_report` writes the figure,
the table and the records of a :class:`MaunaLoaResult`.

Example:
    >>> settings = MaunaLoaSettings(iterations=20, num_samples=5, hidden_layers=1,
    ...                             hidden_units=16, gp_iterations=5, data_stride=8)
    >>> result = run(settings)                       # doctest: +SKIP
    >>> write_report(result, "outputs/mauna_loa")    # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import gpytorch
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from comparisons.datasets.mauna_loa import MaunaLoaData, load_mauna_loa
from comparisons.gp.fit import exact_cholesky, fit_exact_gp, gp_predict
from comparisons.gp.models import ExactGPModel, make_kernel
from comparisons.metrics.gaussian import gaussian_log_likelihood
from vi_dropout.network import Architecture, get_activation
from vi_dropout.predict import DropoutMLPParams
from vi_dropout.training import DropoutMLP, weight_decay
from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = [
    "DATASET_NAME",
    "METHODS",
    "METHOD_LABELS",
    "MaunaLoaSettings",
    "PAPER_LIKE_SETTINGS",
    "MethodPrediction",
    "MaunaLoaResult",
    "train_dropout_regressor",
    "mc_function_draws",
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

_NET_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MaunaLoaSettings:
    r"""Settings of :func:`run` (validated on construction): the networks (panels a, c, d), the
    GPs (panels b, e), the data and the outputs.

    Attributes:
        iterations: minibatch steps per network (``>= 1``; small default, see
            :data:`PAPER_LIKE_SETTINGS`).
        num_samples: ``T``, MC dropout function draws (``>= 1``; see :func:`mc_function_draws`).
        hidden_layers, hidden_units: depth and width (the paper: 4 and 1024).
        drop_rate: probability of DROPPING a hidden unit, in [0, 1); ``keep_prob = 1 -
            drop_rate``.
        input_keep_prob: keep probability of the 1-D time input (default 1: not dropped).
        batch_size, lr: minibatch size and Adam learning rate.
        tau: model precision :math:`\tau` on the standardised scale (adds :math:`1/\tau` to the
            MC predictive variance and sets :math:`\lambda` together with ``prior_length_scale``).
        prior_length_scale: :math:`l` in :math:`\lambda = l^2\,\text{keep\_prob} / (2N\tau)`.
        net_dtype: ``"float32"`` (about 2x faster on a CPU) or ``"float64"``.
        gp_iterations, gp_lr: Adam steps and learning rate on the exact marginal likelihood.
        gp_stride: the GPs condition on every ``gp_stride``-th training week (the exact GP costs
            :math:`O(N^3)` per step: 800 points take ~0.15 s, 1600 points ~1.2 s on one busy
            thread).
        gp_init_noise: initial noise variance (standardised scale).
        se_init_lengthscales: the SE fit starts from the one of these lengthscales with the
            highest initial marginal likelihood (the likelihood surface has a long-lengthscale
            "trend + noise" mode and a short-lengthscale mode that also fits the seasons).
        train_fraction, extrapolation, data_stride: see
            :func:`comparisons.datasets.mauna_loa.load_mauna_loa`.
        grid_step: spacing in years of the query grid beyond the end of the record.
        seed: one seed for everything (network ``i`` uses ``seed + i``).
    """

    iterations: int = 500
    num_samples: int = 50
    hidden_layers: int = 4
    hidden_units: int = 1024
    drop_rate: float = 0.2
    input_keep_prob: float = 1.0
    batch_size: int = 128
    lr: float = 1e-3
    tau: float = 100.0
    prior_length_scale: float = 1.0
    net_dtype: str = "float32"
    gp_iterations: int = 100
    gp_lr: float = 0.05
    gp_stride: int = 2
    gp_init_noise: float = 1e-2
    se_init_lengthscales: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    train_fraction: float = 0.7
    extrapolation: float = 1.0
    data_stride: int = 1
    grid_step: float = 1.0 / 12.0
    seed: int = 0

    def __post_init__(self):
        for name in ("iterations", "num_samples", "hidden_layers", "hidden_units", "batch_size",
                     "gp_iterations", "gp_stride", "data_stride"):
            check_positive_int(getattr(self, name), name)
        dr = self.drop_rate
        if isinstance(dr, bool) or not isinstance(dr, int | float) or not (0.0 <= dr < 1.0):
            raise ValueError(
                f"drop_rate must lie in [0, 1) (the probability that a unit is DROPPED; "
                f"keep_prob = 1 - drop_rate), got {dr!r}"
            )
        check_keep_prob(self.input_keep_prob, "input_keep_prob")
        for name in ("lr", "tau", "prior_length_scale", "gp_lr", "gp_init_noise", "extrapolation",
                     "grid_step"):
            check_positive(getattr(self, name), name)
        if self.net_dtype not in _NET_DTYPES:
            raise ValueError(f"net_dtype must be one of {sorted(_NET_DTYPES)}, got {self.net_dtype!r}")
        lengthscales = tuple(self.se_init_lengthscales)
        if not lengthscales:
            raise ValueError("se_init_lengthscales must hold at least one lengthscale, got ()")
        for i, ls in enumerate(lengthscales):
            check_positive(ls, f"se_init_lengthscales[{i}]")
        object.__setattr__(self, "se_init_lengthscales", lengthscales)
        if not (0.0 < float(self.train_fraction) < 1.0):
            raise ValueError(f"train_fraction must lie in (0, 1), got {self.train_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def keep_prob(self) -> float:
        """Probability that a hidden unit is KEPT, ``1 - drop_rate``."""
        return 1.0 - float(self.drop_rate)

    @property
    def layer_keep_probs(self) -> tuple[float, ...]:
        """Keep probability of each weight layer's input: ``input_keep_prob`` for the first,
        ``keep_prob`` for the others (``hidden_layers + 1`` entries)."""
        return (float(self.input_keep_prob),) + (self.keep_prob,) * self.hidden_layers

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden widths, ``(hidden_units,) * hidden_layers``."""
        return (int(self.hidden_units),) * int(self.hidden_layers)


#: The paper-size run: 4 x 1024 units, drop rate 0.2, T = 1000 and 10^6 minibatch steps (our
#: order-of-magnitude reading of a long Caffe run, not the paper's exact solver settings; Adam
#: is used here), GPs on all training weeks. About 0.08 s per step on one CPU thread: ~22 h of
#: training per network, ~2 days in all.
PAPER_LIKE_SETTINGS = MaunaLoaSettings(iterations=1_000_000, num_samples=1000, gp_stride=1,
                                       gp_iterations=200)


# ---------------------------------------------------------------------------------- network


def train_dropout_regressor(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    hidden: Sequence[int],
    activation: str,
    keep_probs: Sequence[float],
    reg: float,
    iterations: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[DropoutMLPParams, np.ndarray]:
    r"""Train one dropout MLP for exactly ``iterations`` minibatch steps (Keras-style).

    Minimises :math:`\frac{1}{|\mathcal{B}|D}\sum_{n\in\mathcal{B}}\|\mathbf{y}_n -
    \hat{\mathbf{y}}_n\|^2 + \lambda\sum_i\|\mathbf{W}_i\|_F^2` with inverted dropout on every
    layer's input (:class:`vi_dropout.training.DropoutMLP`), Glorot-uniform weights and
    zero biases, Adam (``eps=1e-7``), minibatches drawn in order from a fresh permutation of the
    data every epoch (the last one of an epoch may be smaller). A plain module with autograd:
    for a 4 x 1024 network the matrix products dominate, and it ran as fast as
    :func:`vi_dropout.train_batched` with one network (0.08-0.09 s per step each, float32, one
    thread) while allowing an exact step count.

    It shares the model and the loss of :func:`vi_dropout.training.train_sequential` but not its
    loop: that trainer runs whole epochs and takes each epoch's masks from per-layer drop
    streams (only the dropped positions are drawn), while this one stops after exactly
    ``iterations`` steps and draws one dense Bernoulli block per step, input column included.
    The two random-number streams differ, so the numbers of this experiment come from this one.

    Random numbers: ``g = torch.Generator().manual_seed(seed)`` draws the initial weights
    (:meth:`~vi_dropout.network.Architecture.init_params`), then per epoch a permutation and
    per step one Bernoulli block of masks.

    Args:
        x: inputs ``N x Q`` (its dtype is the network's).
        y: targets ``N x D``.
        hidden: hidden widths; activation: their activation.
        keep_probs: keep probability of each weight layer's input (``len(hidden) + 1`` values).
        reg: :math:`\lambda \ge 0`.
        iterations: minibatch steps ``>= 1``.
        batch_size, lr: minibatch size and Adam learning rate.
        seed: the generator's seed.
        progress: tqdm bar over steps.

    Returns:
        ``(params, losses)``: :class:`~vi_dropout.predict.DropoutMLPParams` with
        ``inverted=True`` and the per-step minibatch losses, ``(iterations,)``.

    Raises:
        FloatingPointError: the loss became NaN or infinite (the step is reported).

    Example:
        >>> x = torch.linspace(-1, 1, 32).unsqueeze(-1); y = torch.sin(3 * x)
        >>> params, losses = train_dropout_regressor(x, y, hidden=(16,), activation="tanh",
        ...     keep_probs=(1.0, 0.9), reg=0.0, iterations=5)
        >>> params.mc_predict(x, T=3).shape, losses.shape
        (torch.Size([3, 32, 1]), (5,))
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be N x Q and N x D, got {tuple(x.shape)}, {tuple(y.shape)}")
    iterations = check_positive_int(iterations, "iterations")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    reg = float(reg)
    if not (math.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
    widths = Architecture((x.shape[1], *tuple(hidden), y.shape[1]), activation).widths
    if len(keep_probs) != len(widths) - 1:
        raise ValueError(
            f"keep_probs must hold one value per weight layer ({len(widths) - 1}), got "
            f"{len(keep_probs)}: {list(keep_probs)!r}"
        )
    kps = tuple(check_keep_prob(k, f"keep_probs[{i}]") for i, k in enumerate(keep_probs))
    dtype = x.dtype
    y = y.to(dtype)
    g = torch.Generator().manual_seed(int(seed))
    net = _initial_network(widths, kps, activation, g, dtype)
    opt = torch.optim.Adam(net.parameters(), lr=lr, eps=1e-7)
    col_keep = torch.tensor([kp for kp, w in zip(kps, widths[:-1]) for _ in range(w)], dtype=dtype)
    losses = np.empty(iterations)
    batches = _minibatches(x.shape[0], batch_size, g)
    for it in tqdm(range(iterations), disable=not progress, desc=f"train {activation}",
                   leave=False):
        idx = next(batches)
        z = torch.bernoulli(col_keep.expand(len(idx), -1), generator=g)
        loss = _regularised_mse(net, net(x[idx], z), y[idx], reg)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training diverged at step {it}: loss {float(loss)} (try a smaller lr)"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[it] = loss.item()
    params = DropoutMLPParams(
        tuple(lin.weight.detach().clone() for lin in net.linears),
        tuple(lin.bias.detach().clone() for lin in net.linears),
        keep_probs=kps,
        activation=activation,
        inverted=True,
    )
    return params, losses


def _initial_network(widths, keep_probs, activation, generator, dtype) -> DropoutMLP:
    """A :class:`DropoutMLP` holding :meth:`Architecture.init_params`' weights (drawn from
    ``generator``: Glorot-uniform weights, zero biases)."""
    ws, bs = Architecture(widths, activation).init_params(generator=generator, dtype=dtype)
    net = DropoutMLP(widths, keep_probs, activation).to(dtype)
    with torch.no_grad():
        for lin, w, b in zip(net.linears, ws, bs):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    return net


def _minibatches(num_data: int, batch_size: int, generator: torch.Generator):
    """Endless row indices of minibatches: a fresh ``torch.randperm`` at the start of every
    epoch (drawn lazily, just before the epoch's first minibatch), cut in order into pieces of
    ``batch_size`` (the last piece of an epoch may be smaller)."""
    while True:
        perm = torch.randperm(num_data, generator=generator)
        for pos in range(0, num_data, batch_size):
            yield perm[pos : pos + batch_size]


def _regularised_mse(net: DropoutMLP, out: torch.Tensor, y: torch.Tensor, reg: float):
    r""":math:`\frac{1}{|\mathcal{B}|D}\sum\|\mathbf{y}_n - \hat{\mathbf{y}}_n\|^2 + \lambda
    \sum_i\|\mathbf{W}_i\|_F^2` (the penalty is left out, not added as 0, when ``reg == 0``)."""
    loss = torch.nn.functional.mse_loss(out, y)
    if reg > 0:
        loss = loss + reg * sum(lin.weight.square().sum() for lin in net.linears)
    return loss


def mc_function_draws(
    params: DropoutMLPParams,
    x: torch.Tensor,
    T: int,
    *,
    generator: torch.Generator | None = None,
    max_rows: int = 16384,
    progress: bool = False,
) -> torch.Tensor:
    r"""``T`` MC dropout function draws: each draw uses ONE set of masks for all query points.

    Draw :math:`t` samples :math:`\hat{\mathbf{W}}_t \sim q(\mathbf{W})`, i.e. per layer one
    mask :math:`\mathbf{z}_{i,t} \sim \text{Bernoulli}(\text{keep\_prob}_i)^{Q_i}` shared by
    all ``M`` inputs, and evaluates the whole curve :math:`f^{\hat{\mathbf{W}}_t}(\mathbf{x}_{1:M})`:

    .. math::
        \hat{\mathbf{y}}_t = \mathbf{W}_L s_L \operatorname{diag}(\mathbf{z}_{L,t})
        \sigma(\cdots \sigma(\mathbf{W}_1 s_1 \operatorname{diag}(\mathbf{z}_{1,t})
        \mathbf{x} + \mathbf{b}_1) \cdots) + \mathbf{b}_L,

    with :math:`s_i = 1/\text{keep\_prob}_i` for inverted-dropout parameters, else 1. At each
    single input the draws have the same law as :func:`vi_dropout.predict.mc_predict`'s (which
    draws fresh masks per input), so predictive means and variances estimate the same
    quantities; here the draws are whole functions, so a plotted mean or band is smooth in
    :math:`x` (its Monte Carlo error is correlated along the curve instead of jagged).

    Args:
        params: a :class:`~vi_dropout.predict.DropoutMLPParams` without ensemble dims.
        x: query inputs ``M x Q``.
        T: number of draws ``>= 1``.
        generator: source of the masks (``torch.bernoulli``, layer by layer, chunk by chunk).
        max_rows: bound on ``T_chunk x M`` rows per vectorised pass.
        progress: tqdm bar over chunks.

    Returns:
        ``T x M x D``.

    Example:
        >>> from vi_dropout.network import Architecture, get_activation
        >>> ws, bs = Architecture((1, 8, 1)).init_params(torch.Generator().manual_seed(0))
        >>> p = DropoutMLPParams(ws, bs, keep_probs=(1.0, 0.8), inverted=True)
        >>> mc_function_draws(p, torch.zeros(5, 1, dtype=torch.float64), T=3).shape
        torch.Size([3, 5, 1])
    """
    T = check_positive_int(T, "T")
    max_rows = check_positive_int(max_rows, "max_rows")
    if x.dim() != 2 or any(w.dim() != 2 for w in params.weights):
        raise ValueError(
            f"x must be M x Q and the weights plain matrices, got x {tuple(x.shape)} and "
            f"weights {[tuple(w.shape) for w in params.weights]}"
        )
    if x.shape[1] != params.weights[0].shape[1]:
        raise ValueError(
            f"x has {x.shape[1]} features but weights[0] has shape {tuple(params.weights[0].shape)}"
        )
    act = get_activation(params.activation)
    scales = [1.0 / kp if params.inverted else 1.0 for kp in params.keep_probs]
    M = x.shape[0]
    t_chunk = max(1, min(T, max_rows // max(1, M)))
    out = None
    starts = range(0, T, t_chunk)
    for t0 in tqdm(starts, disable=not progress, desc="mc draws", leave=False):
        tc = min(t_chunk, T - t0)
        h = x.unsqueeze(0).expand(tc, M, x.shape[1])
        for i, (w, b, kp, sc) in enumerate(zip(params.weights, params.biases,
                                                   params.keep_probs, scales)):
            if i > 0:
                h = act(h)
            if kp < 1.0:
                probs = torch.full((tc, 1, w.shape[1]), kp, dtype=h.dtype)
                h = h * (torch.bernoulli(probs, generator=generator) * sc)
            h = torch.baddbmm(b.expand(tc, 1, -1), h, w.T.expand(tc, -1, -1))
        if out is None:
            out = torch.empty((T, M, h.shape[-1]), dtype=h.dtype)
        out[t0 : t0 + tc] = h
    return out


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
    """

    data: MaunaLoaData
    settings: MaunaLoaSettings
    predictions: dict[str, MethodPrediction]
    records: list[dict]
    wall_time_s: float

    def records_frame(self) -> pd.DataFrame:
        """The records as a DataFrame."""
        return pd.DataFrame(self.records)


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

    Args:
        settings: :class:`MaunaLoaSettings` (default: ``MaunaLoaSettings()``).
        methods: a subset of :data:`METHODS`.
        data: pre-loaded data (default:
            :func:`~comparisons.datasets.mauna_loa.load_mauna_loa` with the settings' cut).
        progress: tqdm bars.
        log: optional callable receiving one line per finished step (e.g. ``print``).

    Returns:
        :class:`MaunaLoaResult` (predictions in :data:`METHODS` order).

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
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    if data is None:
        data = load_mauna_loa(cfg.train_fraction, cfg.extrapolation, cfg.data_stride)
    times = data.prediction_times(cfg.grid_step)
    x_query64 = torch.as_tensor(data.standardize_time(times)).unsqueeze(-1)
    preds = _network_predictions(data, times, x_query64, cfg, methods, progress, say)
    preds.update(_gp_predictions(data, times, x_query64, cfg, methods, progress, say))
    ordered = {m: preds[m] for m in METHODS if m in preds}
    records = [r for p in ordered.values() for r in _method_records(data, p)]
    return MaunaLoaResult(data, cfg, ordered, records, time.perf_counter() - t_start)


def _network_predictions(data, times, x_query64, cfg: MaunaLoaSettings, methods, progress,
                         say) -> dict[str, MethodPrediction]:
    """Train the ReLU and the tanh network (each only if one of its methods is wanted) and
    predict with standard and MC dropout at ``times``."""
    preds = {}
    dtype = _NET_DTYPES[cfg.net_dtype]
    x_tr, y_tr = data.xy("train", dtype=dtype)
    x_query = x_query64.to(dtype)
    reg = weight_decay(cfg.prior_length_scale, cfg.keep_prob, data.num_train, cfg.tau)
    nets = [("relu", ("standard_dropout_relu", "mc_dropout_relu")), ("tanh", ("mc_dropout_tanh",))]
    for i, (activation, uses) in enumerate(nets):
        wanted = [m for m in uses if m in methods]
        if not wanted:
            continue
        t0 = time.perf_counter()
        params, losses = train_dropout_regressor(
            x_tr, y_tr, hidden=cfg.hidden, activation=activation,
            keep_probs=cfg.layer_keep_probs, reg=reg, iterations=cfg.iterations,
            batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed + i, progress=progress,
        )
        train_time = time.perf_counter() - t0
        tail = losses[-max(1, len(losses) // 10):].mean()
        say(f"{activation} network {cfg.hidden}: {cfg.iterations} steps in {train_time:.1f} s "
            f"({train_time / cfg.iterations:.4f} s/step), last-10% loss {tail:.4g}")
        base_info = {"train_time_s": train_time, "final_train_loss": float(tail),
                     "seconds_per_step": train_time / cfg.iterations, "weight_decay": reg}
        for method in wanted:
            t1 = time.perf_counter()
            if method.startswith("standard"):
                with torch.no_grad():
                    out = params.standard_predict(x_query)[:, 0].double().numpy()
                mean, sd, model_sd = out, None, None
            else:
                gen = torch.Generator().manual_seed(cfg.seed + 1000 + i)
                mean, sd, model_sd = _mc_moments(params, x_query, cfg, gen, progress)
            pred_time = time.perf_counter() - t1
            info = dict(base_info, predict_time_s=pred_time, wall_time_s=train_time + pred_time)
            preds[method] = _prediction(data, method, times, mean, sd, model_sd, info)
            say(f"{method}: predicted {len(times)} points in {pred_time:.1f} s")
    return preds


def _mc_moments(params, x_query, cfg: MaunaLoaSettings, generator, progress):
    r"""MC dropout mean, predictive sd :math:`\sqrt{\hat\sigma^2 + 1/\tau}` and model sd
    :math:`\hat\sigma` (standardised scale) from ``cfg.num_samples`` function draws."""
    with torch.no_grad():
        samples = mc_function_draws(params, x_query, cfg.num_samples, generator=generator,
                                    progress=progress)[..., 0].double()
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
