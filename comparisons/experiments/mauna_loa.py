r"""Extrapolating the Mauna Loa CO2 series: the paper's Figure 2 (a-d) plus an arc-cosine GP.

Gal & Ghahramani (2016, Fig. 2) fit the atmospheric CO2 record of Mauna Loa on its earlier part
and predict far beyond its end. Standard dropout (weight averaging) gives one confident curve;
MC dropout gives a predictive distribution whose spread grows away from the data (fast with
ReLU, far less with tanh, whose units saturate); a GP with a squared-exponential (SE) kernel
reverts to its prior mean with the prior's variance.

Data (:func:`load_mauna_loa`): ``statsmodels.datasets.co2`` (weekly averages, March 1958 to
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

(:func:`vi_dropout.training.batched.weight_decay`). One ReLU network serves panels (a) and (c).

Cost (1 torch thread, float32, wall-clock on the project's shared 2-core machine, which gave
the process about half a core): one minibatch step of the 4 x 1024 network takes 0.08-0.13 s,
one MC function draw over the ~2,500 query points 0.37-0.8 s, 100 marginal-likelihood steps of
an exact GP on 800 weeks 14-23 s. The default run (500 steps, T = 50) takes about 3.6 minutes,
2500 steps with T = 100 about 9 minutes. :data:`PAPER_LIKE_CONFIG` documents a paper-size run
(10^6 steps, T = 1000): about 22 hours of training per network at 0.08 s per step.

Example:
    >>> cfg = MaunaLoaConfig(iterations=20, num_samples=5, hidden_layers=1, hidden_units=16,
    ...                      gp_iterations=5, data_stride=8)
    >>> result = run_mauna_loa(cfg)                       # doctest: +SKIP
    >>> fig = plot_mauna_loa(result, plt.figure(figsize=(9, 13)))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import gpytorch
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from comparisons.gp.models import ExactGPModel, fit_exact_gp, gp_predict, make_kernel
from vi_dropout.network import Architecture, get_activation
from vi_dropout.predict import DropoutMLPParams
from vi_dropout.training.batched import DropoutMLP, weight_decay
from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = [
    "DATASET_NAME",
    "METHODS",
    "METHOD_LABELS",
    "MaunaLoaData",
    "MaunaLoaConfig",
    "PAPER_LIKE_CONFIG",
    "MethodPrediction",
    "MaunaLoaResult",
    "load_mauna_loa",
    "train_dropout_regressor",
    "mc_function_draws",
    "run_mauna_loa",
    "records_markdown",
    "plot_mauna_loa_panel",
    "plot_mauna_loa",
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


# ------------------------------------------------------------------------------------- data


def _decimal_year(index: pd.DatetimeIndex) -> np.ndarray:
    start = pd.to_datetime(index.year.astype(str) + "-01-01")
    end = pd.to_datetime((index.year + 1).astype(str) + "-01-01")
    frac = (index - start) / (end - start)
    return np.asarray(index.year, dtype=float) + np.asarray(frac, dtype=float)


@dataclass(frozen=True)
class MaunaLoaData:
    r"""The weekly Mauna Loa CO2 record with its train / held-out cut and standardisation.

    Attributes:
        time: decimal years, strictly increasing, shape ``(n,)``.
        co2: CO2 concentration in ppm (gaps interpolated), ``(n,)``.
        interpolated: ``True`` where ``co2`` was missing and filled, ``(n,)``.
        num_train: the first ``num_train`` weeks are the training data.
        horizon: last time (decimal year) to predict at.
        time_mean, time_std: :math:`\bar t_\text{train}`, :math:`s_{t,\text{train}}`.
        co2_mean, co2_std: :math:`\overline{\text{CO}_2}_\text{train}`,
            :math:`s_{\text{CO}_2,\text{train}}` (ppm; population standard deviations).
        stride: every ``stride``-th week of the record was kept.

    Example:
        >>> data = load_mauna_loa()
        >>> data.num_train, data.num_heldout, round(data.train_end, 2)
        (1599, 685, 1988.86)
    """

    time: np.ndarray
    co2: np.ndarray
    interpolated: np.ndarray
    num_train: int
    horizon: float
    time_mean: float
    time_std: float
    co2_mean: float
    co2_std: float
    stride: int = 1

    @property
    def num_heldout(self) -> int:
        """Number of weeks after the cut (scored, never trained on)."""
        return len(self.time) - self.num_train

    @property
    def train_end(self) -> float:
        """Time of the last training week: the train / extrapolation boundary."""
        return float(self.time[self.num_train - 1])

    @property
    def train_span(self) -> float:
        """Length of the training period in years."""
        return float(self.time[self.num_train - 1] - self.time[0])

    def standardize_time(self, t) -> np.ndarray:
        """:math:`x = (t - \\bar t_\\text{train}) / s_{t,\\text{train}}` for any array of years."""
        return (np.asarray(t, dtype=float) - self.time_mean) / self.time_std

    def standardize_co2(self, c) -> np.ndarray:
        """:math:`y = (c - \\overline{\\text{CO}_2}) / s_{\\text{CO}_2}` for any ppm array."""
        return (np.asarray(c, dtype=float) - self.co2_mean) / self.co2_std

    def co2_from_standardized(self, y) -> np.ndarray:
        """Inverse of :meth:`standardize_co2` (ppm)."""
        return self.co2_mean + self.co2_std * np.asarray(y, dtype=float)

    def xy(self, part: str = "train", dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised ``(x, y)`` tensors of shape ``N x 1`` for ``part`` in
        ``{"train", "heldout", "all"}``."""
        sl = {"train": slice(0, self.num_train), "heldout": slice(self.num_train, None),
              "all": slice(None)}
        if part not in sl:
            raise ValueError(f"part must be one of {sorted(sl)}, got {part!r}")
        t, c = self.time[sl[part]], self.co2[sl[part]]
        x = torch.as_tensor(self.standardize_time(t), dtype=dtype).unsqueeze(-1)
        y = torch.as_tensor(self.standardize_co2(c), dtype=dtype).unsqueeze(-1)
        return x, y

    def prediction_times(self, grid_step: float = 1.0 / 12.0) -> np.ndarray:
        """Query times: every data week, then an even grid of step about ``grid_step`` years from
        the end of the record to :attr:`horizon` (inclusive); strictly increasing, ``(M,)``."""
        grid_step = check_positive(grid_step, "grid_step")
        last = float(self.time[-1])
        if self.horizon <= last:
            return self.time.copy()
        num = max(1, math.ceil((self.horizon - last) / grid_step))
        extra = np.linspace(last, self.horizon, num + 1)[1:]
        return np.concatenate([self.time, extra])


def load_mauna_loa(
    train_fraction: float = 0.7, extrapolation: float = 1.0, stride: int = 1
) -> MaunaLoaData:
    r"""Load ``statsmodels.datasets.co2`` (offline), fill its gaps, cut and standardise it.

    Missing weeks are filled by linear interpolation in time
    (``Series.interpolate(method="time")``); the record has no missing first or last week.
    After interpolation every ``stride``-th week is kept (``stride = 1``: all 2284). The first
    ``round(train_fraction * n)`` weeks are the training data; the standardisation uses their
    mean and (population) standard deviation only.

    Args:
        train_fraction: share of the weeks used for training, in (0, 1); at least 2 weeks must
            fall on each side of the cut.
        extrapolation: the prediction horizon is the last training time plus
            ``extrapolation`` times the training span (``> 0``).
        stride: keep every ``stride``-th week (``>= 1``).

    Returns:
        :class:`MaunaLoaData`.

    Example:
        >>> d = load_mauna_loa(train_fraction=0.7, extrapolation=1.0)
        >>> len(d.time), int(d.interpolated.sum()), round(d.horizon, 2)
        (2284, 59, 2019.49)
    """
    train_fraction = float(train_fraction)
    if not (0.0 < train_fraction < 1.0):
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    extrapolation = check_positive(extrapolation, "extrapolation")
    stride = check_positive_int(stride, "stride")
    from statsmodels.datasets import co2 as co2_dataset

    series = co2_dataset.load_pandas().data["co2"].astype(float)
    missing = series.isna().to_numpy()
    filled = series.interpolate(method="time", limit_direction="both")
    time_years = _decimal_year(series.index)[::stride]
    values = filled.to_numpy(dtype=float)[::stride]
    missing = missing[::stride]
    n = len(values)
    num_train = int(round(train_fraction * n))
    if num_train < 2 or n - num_train < 2:
        raise ValueError(
            f"train_fraction={train_fraction} with {n} weeks (stride {stride}) leaves "
            f"{num_train} training and {n - num_train} held-out weeks; need >= 2 of each"
        )
    t_tr, c_tr = time_years[:num_train], values[:num_train]
    span = float(t_tr[-1] - t_tr[0])
    return MaunaLoaData(
        time=time_years,
        co2=values,
        interpolated=missing,
        num_train=num_train,
        horizon=float(t_tr[-1] + extrapolation * span),
        time_mean=float(t_tr.mean()),
        time_std=float(t_tr.std()),
        co2_mean=float(c_tr.mean()),
        co2_std=float(c_tr.std()),
        stride=stride,
    )


# ----------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MaunaLoaConfig:
    r"""Settings of :func:`run_mauna_loa` (validated on construction).

    Network (panels a, c, d):
        iterations: minibatch steps per network (``>= 1``; small default, see
            :data:`PAPER_LIKE_CONFIG`).
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

    GPs (panels b, e):
        gp_iterations, gp_lr: Adam steps and learning rate on the exact marginal likelihood.
        gp_stride: the GPs condition on every ``gp_stride``-th training week (the exact GP costs
            :math:`O(N^3)` per step: 800 points take ~0.15 s, 1600 points ~1.2 s on one busy
            thread).
        gp_init_noise: initial noise variance (standardised scale).
        se_init_lengthscales: the SE fit starts from the one of these lengthscales with the
            highest initial marginal likelihood (the likelihood surface has a long-lengthscale
            "trend + noise" mode and a short-lengthscale mode that also fits the seasons).

    Data and outputs:
        train_fraction, extrapolation, data_stride: see :func:`load_mauna_loa`.
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
PAPER_LIKE_CONFIG = MaunaLoaConfig(iterations=1_000_000, num_samples=1000, gp_stride=1,
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
    layer's input (:class:`vi_dropout.training.batched.DropoutMLP`), Glorot-uniform weights and
    zero biases, Adam (``eps=1e-7``), minibatches drawn in order from a fresh permutation of the
    data every epoch (the last one of an epoch may be smaller). A plain module with autograd:
    for a 4 x 1024 network the matrix products dominate, and it ran as fast as
    :func:`vi_dropout.train_batched` with one network (0.08-0.09 s per step each, float32, one
    thread) while allowing an exact step count.

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
    N = x.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    ws, bs = Architecture(widths, activation).init_params(generator=g, dtype=dtype)
    net = DropoutMLP(widths, kps, activation).to(dtype)
    with torch.no_grad():
        for lin, w, b in zip(net.linears, ws, bs):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    opt = torch.optim.Adam(net.parameters(), lr=lr, eps=1e-7)
    col_keep = torch.tensor([kp for kp, w in zip(kps, widths[:-1]) for _ in range(w)], dtype=dtype)
    losses = np.empty(iterations)
    perm, pos = None, N
    for it in tqdm(range(iterations), disable=not progress, desc=f"train {activation}",
                   leave=False):
        if pos >= N:
            perm, pos = torch.randperm(N, generator=g), 0
        idx = perm[pos : pos + batch_size]
        pos += batch_size
        z = torch.bernoulli(col_keep.expand(len(idx), -1), generator=g)
        out = net(x[idx], z)
        loss = torch.nn.functional.mse_loss(out, y[idx])
        if reg > 0:
            loss = loss + reg * sum(lin.weight.square().sum() for lin in net.linears)
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
    """Everything :func:`run_mauna_loa` produced.

    Attributes:
        data: the :class:`MaunaLoaData` used.
        config: the :class:`MaunaLoaConfig` used.
        predictions: ``{method: MethodPrediction}`` in :data:`METHODS` order.
        records: tidy records (``dataset, method, split, metric, value``).
        wall_time_s: total run time.
    """

    data: MaunaLoaData
    config: MaunaLoaConfig
    predictions: dict[str, MethodPrediction]
    records: list[dict]
    wall_time_s: float

    def records_frame(self) -> pd.DataFrame:
        """The records as a DataFrame."""
        return pd.DataFrame(self.records)


def _gaussian_loglik(y, mean, sd):
    return -0.5 * np.log(2 * np.pi * sd**2) - 0.5 * ((y - mean) / sd) ** 2


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
            add(split, "mean_loglik", _gaussian_loglik(data.co2[sl], pred.mean[sl], pred.sd[sl]).mean())
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


def _fit_gp(kernel_name, x_train, y_train, x_query, cfg: MaunaLoaConfig, progress: bool):
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
    with gpytorch.settings.max_cholesky_size(100_000):
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


def run_mauna_loa(
    config: MaunaLoaConfig | None = None,
    *,
    methods: Iterable[str] = METHODS,
    data: MaunaLoaData | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> MaunaLoaResult:
    r"""Fit the models of Figure 2 on the early part of the CO2 record and predict to the horizon.

    Steps: load the data (unless given), train the ReLU network (serves ``standard_dropout_relu``
    and ``mc_dropout_relu``) and the tanh network, predict at
    :meth:`MaunaLoaData.prediction_times` (every data week plus a grid to the horizon), fit both
    GPs, and turn everything into tidy records:

    - per method and ``split`` in ``{"train", "heldout"}``: ``rmse_ppm``; with a predictive sd
      also ``mean_sd_ppm``, ``mean_loglik`` (Gaussian, per week, ppm scale) and ``coverage_2sd``
      (share of weeks within 2 sd); MC dropout adds ``mean_model_sd_ppm`` (without
      :math:`1/\tau`);
    - ``split="extrapolation"`` (query times after the last training week): ``mean_sd_ppm``,
      ``sd_at_horizon_ppm``, ``mean_at_horizon_ppm`` (and ``mean_model_sd_ppm``);
    - ``split="all"``: ``wall_time_s`` (the ReLU network's training time is counted in both
      methods that use it), ``train_time_s``, ``predict_time_s``, ``final_train_loss``, and the
      GPs' fitted hyper-parameters.

    Args:
        config: :class:`MaunaLoaConfig` (default: ``MaunaLoaConfig()``).
        methods: a subset of :data:`METHODS`.
        data: pre-loaded data (default: :func:`load_mauna_loa` with the config's settings).
        progress: tqdm bars.
        log: optional callable receiving one line per finished step (e.g. ``print``).

    Returns:
        :class:`MaunaLoaResult` (predictions in :data:`METHODS` order).

    Example:
        >>> cfg = MaunaLoaConfig(iterations=10, num_samples=4, hidden_layers=1,
        ...                      hidden_units=8, gp_iterations=3, data_stride=16)
        >>> res = run_mauna_loa(cfg, methods=["mc_dropout_tanh", "gp_se"])
        >>> sorted(res.predictions)
        ['gp_se', 'mc_dropout_tanh']
    """
    cfg = MaunaLoaConfig() if config is None else config
    if not isinstance(cfg, MaunaLoaConfig):
        raise ValueError(f"config must be a MaunaLoaConfig, got {type(cfg).__name__}")
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
    preds: dict[str, MethodPrediction] = {}
    ys = data.co2_std

    # Networks -------------------------------------------------------------------------------
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
                with torch.no_grad():
                    samples = mc_function_draws(params, x_query, cfg.num_samples,
                                                generator=gen, progress=progress)[..., 0].double()
                mean = samples.mean(0).numpy()
                model_var = samples.var(0, correction=0).numpy()
                sd = np.sqrt(model_var + 1.0 / cfg.tau)
                model_sd = np.sqrt(model_var)
            pred_time = time.perf_counter() - t1
            info = dict(base_info, predict_time_s=pred_time, wall_time_s=train_time + pred_time)
            preds[method] = MethodPrediction(
                method, METHOD_LABELS[method], times, data.co2_from_standardized(mean),
                None if sd is None else sd * ys, None if model_sd is None else model_sd * ys, info,
            )
            say(f"{method}: predicted {len(times)} points in {pred_time:.1f} s")

    # GPs ------------------------------------------------------------------------------------
    x_gp, y_gp = data.xy("train", dtype=torch.float64)
    x_gp, y_gp = x_gp[:: cfg.gp_stride], y_gp[:: cfg.gp_stride, 0]
    for method, kernel_name in (("gp_se", "se"), ("gp_arccos1", "arccos1")):
        if method not in methods:
            continue
        t0 = time.perf_counter()
        mean, var, info = _fit_gp(kernel_name, x_gp, y_gp, x_query64, cfg, progress)
        info["wall_time_s"] = time.perf_counter() - t0
        preds[method] = MethodPrediction(
            method, METHOD_LABELS[method], times, data.co2_from_standardized(mean),
            np.sqrt(var) * ys, None, info,
        )
        say(f"{method}: fitted on {x_gp.shape[0]} points in {info['wall_time_s']:.1f} s, "
            + ", ".join(f"{k}={v:.4g}" for k, v in info.items() if isinstance(v, float)))

    ordered = {m: preds[m] for m in METHODS if m in preds}
    records = [r for p in ordered.values() for r in _method_records(data, p)]
    return MaunaLoaResult(data, cfg, ordered, records, time.perf_counter() - t_start)


_TABLE_COLUMNS = (
    ("train", "rmse_ppm", "train RMSE (ppm)"),
    ("heldout", "rmse_ppm", "held-out RMSE (ppm)"),
    ("train", "mean_sd_ppm", "mean sd, train (ppm)"),
    ("heldout", "mean_sd_ppm", "mean sd, held-out (ppm)"),
    ("extrapolation", "mean_sd_ppm", "mean sd, extrapolation (ppm)"),
    ("extrapolation", "sd_at_horizon_ppm", "sd at horizon (ppm)"),
    ("heldout", "coverage_2sd", "held-out within 2 sd"),
    ("heldout", "mean_loglik", "held-out log-lik / week"),
    ("all", "wall_time_s", "wall time (s)"),
)


def records_markdown(records: Sequence[Mapping] | pd.DataFrame) -> str:
    """A Markdown table of the main metrics: one row per method (``–`` where not defined).

    Args:
        records: tidy records from :func:`run_mauna_loa`.

    Returns:
        The table (no trailing newline).

    Example:
        >>> recs = [{"dataset": "d", "method": "gp_se", "split": "train", "metric": "rmse_ppm",
        ...          "value": 0.5}]
        >>> records_markdown(recs).splitlines()[2].split("|")[2].strip()
        '0.500'
    """
    frame = pd.DataFrame(list(records) if not isinstance(records, pd.DataFrame) else records)
    missing = {"method", "split", "metric", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"records lack the column(s) {sorted(missing)}")
    lookup = {(r.method, r.split, r.metric): r.value for r in frame.itertuples()}
    header = "| method | " + " | ".join(c[2] for c in _TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(_TABLE_COLUMNS) + 1)]
    for method in dict.fromkeys(frame["method"]):
        cells = []
        for split, metric, _ in _TABLE_COLUMNS:
            v = lookup.get((method, split, metric))
            if v is None or not math.isfinite(v):
                cells.append("–")
            elif metric == "wall_time_s":
                cells.append(f"{v:.1f}")
            else:
                cells.append(f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- plotting


def _default_ylim(data: MaunaLoaData) -> tuple[float, float]:
    lo, hi = float(data.co2.min()), float(data.co2.max())
    rng = hi - lo
    return lo - 0.6 * rng, hi + 1.0 * rng


def plot_mauna_loa_panel(ax, data: MaunaLoaData, prediction: MethodPrediction, *,
                         ylim: tuple[float, float] | None = None, legend: bool = False):
    r"""One panel: data, predictive mean, :math:`\pm 1` and :math:`\pm 2` sd bands, boundary.

    The training weeks are drawn in red, the held-out weeks in grey, the predictive mean in
    blue with shaded :math:`\pm 2` sd (light) and :math:`\pm 1` sd (darker) bands when the
    method has a predictive sd, and the train / extrapolation boundary as a dashed blue line
    (as in the paper's Figure 2).

    Args:
        ax: a matplotlib ``Axes`` (drawn on and returned).
        data: the :class:`MaunaLoaData`.
        prediction: one :class:`MethodPrediction`.
        ylim: y-limits in ppm (default: the data range, widened to leave room for the bands).
        legend: draw a legend.

    Returns:
        ``ax``.
    """
    n_tr = data.num_train
    t, mu = prediction.time, prediction.mean
    if prediction.sd is not None:
        sd = prediction.sd
        ax.fill_between(t, mu - 2 * sd, mu + 2 * sd, color="tab:blue", alpha=0.18, lw=0,
                        label=r"$\pm 2$ sd")
        ax.fill_between(t, mu - sd, mu + sd, color="tab:blue", alpha=0.35, lw=0,
                        label=r"$\pm 1$ sd")
    ax.plot(data.time[:n_tr], data.co2[:n_tr], color="tab:red", lw=0.8, label="training data")
    ax.plot(data.time[n_tr:], data.co2[n_tr:], color="0.45", lw=0.8, label="held-out data")
    ax.plot(t, mu, color="tab:blue", lw=1.0, label="predictive mean")
    ax.axvline(data.train_end, color="tab:blue", ls="--", lw=1.0, label="end of training data")
    ax.set_xlim(float(t[0]), float(t[-1]))
    ax.set_ylim(*(ylim if ylim is not None else _default_ylim(data)))
    ax.set_title(prediction.label, fontsize="medium", loc="left")
    ax.set_ylabel(r"CO$_2$ (ppm)")
    if legend:
        ax.legend(loc="upper left", fontsize="small", ncol=3)
    return ax


def plot_mauna_loa(result: MaunaLoaResult, axes=None, *, ylim: tuple[float, float] | None = None):
    """All panels of a :class:`MaunaLoaResult`, one method per ``Axes``.

    Args:
        result: from :func:`run_mauna_loa`.
        axes: a matplotlib ``Figure`` (one column of subplots is added to it), or a sequence /
            array of at least ``len(result.predictions)`` ``Axes`` (extra ones are hidden), or
            ``None`` (a new figure).
        ylim: common y-limits in ppm (default: see :func:`plot_mauna_loa_panel`).

    Returns:
        What was passed as ``axes`` (the new ``Figure`` when ``None``).

    Example:
        >>> fig = plot_mauna_loa(result, plt.figure(figsize=(9, 13)))  # doctest: +SKIP
        >>> fig.savefig("mauna_loa.png")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    preds = list(result.predictions.values())
    if not preds:
        raise ValueError("result holds no predictions to plot")
    returned = axes
    if axes is None:
        returned = axes = plt.figure(figsize=(9, 2.6 * len(preds)))
    if isinstance(axes, Figure):
        axs = list(np.ravel(axes.subplots(len(preds), 1, sharex=True)))
    else:
        axs = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axs) < len(preds):
            raise ValueError(
                f"axes must hold at least {len(preds)} Axes (one per method), got {len(axs)}"
            )
    for i, (ax, pred) in enumerate(zip(axs, preds)):
        plot_mauna_loa_panel(ax, result.data, pred, ylim=ylim, legend=(i == 0))
    for ax in axs[len(preds):]:
        ax.set_visible(False)
    axs[len(preds) - 1].set_xlabel("year")
    if isinstance(returned, Figure):
        cfg = result.config
        returned.suptitle(
            f"Mauna Loa CO$_2$: trained up to {result.data.train_end:.1f}, predicted to "
            f"{result.data.horizon:.1f}; nets {cfg.hidden_layers} x {cfg.hidden_units}, "
            f"drop_rate {cfg.drop_rate:g}, {cfg.iterations} steps, T = {cfg.num_samples}",
            fontsize="medium",
        )
        returned.tight_layout()
    return returned

