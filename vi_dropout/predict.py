r"""Monte Carlo (MC) dropout prediction and its regression / classification summaries.

A dropout MLP (see :mod:`vi_dropout.network`) is evaluated :math:`T` times with fresh Bernoulli
masks on every layer's input,

.. math::
    \hat{\mathbf{y}}_t = f^{\hat{\mathbf{W}}_t}(\mathbf{x}), \qquad
    \hat{\mathbf{W}}_{i,t} = \mathbf{W}_i \operatorname{diag}(\mathbf{z}_{i,t}) \, s_i, \qquad
    z_{i,t,a} \sim \operatorname{Bernoulli}(\text{keep\_prob}_i),

with :math:`s_i = 1` in the paper's convention (``inverted=False``) and
:math:`s_i = 1 / \text{keep\_prob}_i` for Keras / :class:`torch.nn.Dropout` style nets
(``inverted=True``). The :math:`T` passes run as ONE vectorised computation, chunked over
:math:`T` so that each pass holds about ``max_rows`` rows (``T_chunk x N``).

Random-number stream (what makes results reproducible, and what a Python loop must do to get the
same samples): first one seed per layer is drawn from ``generator``
(``torch.randint(2**62, (L,))``); layer ``i`` then owns a
:class:`~vi_dropout.drop_stream.DropStream` with rate ``1 - keep_prob_i`` on its own generator,
whose flat positions run over the layer-``i`` masks of all samples in order (sample ``t`` owns
positions ``t * R * in_i ... (t + 1) * R * in_i - 1``, ``R = prod(... x N)``, row-major over
``... x N x in_i``). A stream does not depend on how it is cut, so the chunking over ``T`` (and a
loop of single passes taking ``R * in_i`` positions per layer) gives the same samples. Drawing only
the drops (about ``1 - keep_prob`` uniforms per mask entry) and zeroing them in place is what makes
the vectorised pass fast on a CPU: with dense uniforms, random numbers and elementwise mask passes cost
several times the matrix products of a 50-unit network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .drop_stream import layer_drop_streams
from .network import get_activation
from .validation import (
    check_bool,
    check_dtype,
    check_finite,
    check_has_rows,
    check_keep_prob,
    check_positive,
    check_positive_int,
    check_real,
    check_targets,
    per_layer,
)

__all__ = [
    "DropoutMLPParams",
    "mc_predict",
    "standard_dropout_predict",
    "RegressionSummary",
    "regression_summary",
    "ClassificationSummary",
    "classification_summary",
]


@dataclass(frozen=True)
class DropoutMLPParams:
    r"""Parameters of a dropout MLP: everything :func:`mc_predict` needs, in one object.

    Attributes:
        weights: per layer ``... x out x in`` (leading ensemble dims allowed, shared by all layers).
        biases: per layer ``... x out``.
        keep_probs: per layer, the probability that a unit of that layer's INPUT is kept
            (a single number is broadcast to all layers).
        activation: hidden activation name (see :data:`vi_dropout.network.ACTIVATIONS`).
        inverted: ``True`` for nets trained with inverted dropout (kept units scaled by
            :math:`1/\text{keep\_prob}`, Keras / ``nn.Dropout``), ``False`` for the paper's
            convention (no rescaling).

    Example:
        >>> from vi_dropout.network import Architecture
        >>> ws, bs = Architecture((13, 50, 1)).init_params(torch.Generator().manual_seed(0))
        >>> params = DropoutMLPParams(ws, bs, keep_probs=0.95, inverted=True)
        >>> params.mc_predict(torch.randn(4, 13, dtype=torch.float64), T=8).shape
        torch.Size([8, 4, 1])
    """

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    keep_probs: tuple[float, ...] | float
    activation: str = "relu"
    inverted: bool = False

    def __post_init__(self):
        weights, biases = tuple(self.weights), tuple(self.biases)
        if len(weights) != len(biases) or not weights:
            raise ValueError(
                f"weights and biases must have one entry per layer (>= 1), got {len(weights)} "
                f"and {len(biases)}"
            )
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "biases", biases)
        object.__setattr__(
            self, "keep_probs", per_layer(self.keep_probs, len(weights), "keep_probs", check_keep_prob)
        )
        get_activation(self.activation)

    def mc_predict(self, x: torch.Tensor, T: int, **kwargs) -> torch.Tensor:
        """:func:`mc_predict` with these parameters (``kwargs``: ``generator``, ``max_rows``, ...)."""
        return mc_predict(
            x, self.weights, self.biases, self.keep_probs, T,
            activation=self.activation, inverted=self.inverted, **kwargs,
        )

    def standard_predict(self, x: torch.Tensor) -> torch.Tensor:
        """:func:`standard_dropout_predict` with these parameters."""
        return standard_dropout_predict(
            x, self.weights, self.biases, self.keep_probs,
            activation=self.activation, inverted=self.inverted,
        )


def _check_net(x, weights, biases, keep_probs):
    """Check the inputs ``x`` (``... x N x Q``, at least one row, the weights' dtype) and the
    network (one weight and bias per layer, finite, one dtype, chained widths); returns the
    checked keep_probs."""
    check_finite(x, "x")
    if x.dim() < 2:
        raise ValueError(
            f"x must have shape ... x N x Q (N x Q for N points), got a {x.dim()}-D tensor of "
            f"shape {tuple(x.shape)}: pass x.reshape(1, -1) for one point"
        )
    check_has_rows(math.prod(x.shape[:-1]), "x", x.shape)
    for name, seq in (("weights", weights), ("biases", biases)):
        if isinstance(seq, torch.Tensor) or not isinstance(seq, Sequence):
            raise ValueError(f"{name} must be a sequence of tensors (one per layer), got "
                             f"{type(seq).__name__}")
    if len(weights) != len(biases) or not weights:
        raise ValueError(
            f"weights and biases must have one entry per layer (>= 1), got {len(weights)} "
            f"and {len(biases)}"
        )
    for i, (w, b) in enumerate(zip(weights, biases)):
        check_finite(w, f"weights[{i}]")
        check_finite(b, f"biases[{i}]")
    dtype = weights[0].dtype
    if not dtype.is_floating_point:
        raise ValueError(f"weights[0] must be a floating-point tensor, got dtype {dtype}")
    for i, (w, b) in enumerate(zip(weights, biases)):
        check_dtype(w, f"weights[{i}]", dtype, "weights[0]")
        check_dtype(b, f"biases[{i}]", dtype, "the weights")
    check_dtype(x, "x", dtype, "the weights")
    kps = per_layer(keep_probs, len(weights), "keep_probs", check_keep_prob)
    h = x.shape[-1]
    for i, w in enumerate(weights):
        if w.shape[-1] != h:
            raise ValueError(
                f"layer {i}: input has {h} features but weights[{i}] has shape {tuple(w.shape)} "
                f"(expected ... x out x {h})"
            )
        h = w.shape[-2]
    return kps


def _check_finite_output(out: torch.Tensor, weights, fn: str) -> torch.Tensor:
    """Refuse an overflowed prediction: finite inputs and weights can still give inf / NaN."""
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        largest = max(float(w.detach().abs().max()) for w in weights)
        raise ValueError(
            f"{fn} produced {int(bad.sum())} of {out.numel()} outputs that are NaN or inf although "
            f"x, weights and biases are finite: the activations overflow {out.dtype} (largest "
            f"|weights| entry {largest:.3g}); check the weights, rescale the inputs or use float64"
        )
    return out


def mc_predict(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    keep_probs: Sequence[float] | float,
    T: int,
    *,
    activation: str = "relu",
    inverted: bool = False,
    generator: torch.Generator | None = None,
    max_rows: int = 16384,
    progress: bool = False,
) -> torch.Tensor:
    r"""Draw ``T`` stochastic forward passes of a dropout MLP in one vectorised computation.

    .. math::
        \hat{\mathbf{y}}_t = \mathbf{W}_L s_L \operatorname{diag}(\mathbf{z}_{L,t})
        \sigma(\cdots \sigma(\mathbf{W}_1 s_1 \operatorname{diag}(\mathbf{z}_{1,t}) \mathbf{x}
        + \mathbf{b}_1) \cdots) + \mathbf{b}_L, \quad t = 1, \dots, T,

    with independent masks :math:`z_{i,t,n,a} \sim \text{Bernoulli}(\text{keep\_prob}_i)` per
    sample, example and unit, drawn sparsely (see the module docstring for the exact random
    stream) and :math:`s_i = 1/\text{keep\_prob}_i` if ``inverted`` else 1.

    Args:
        x: inputs :math:`\mathbf{x}`, ``... x N x Q`` with ``N >= 1`` (leading dims broadcast
            with the weights'), of the weights' dtype (a float32 ``x`` into float64 weights, or
            the other way, is refused, never cast).
        weights: :math:`\mathbf{W}_i`, per layer ``... x out x in``, one floating dtype.
        biases: :math:`\mathbf{b}_i`, per layer ``... x out``.
        keep_probs: :math:`\text{keep\_prob}_i` in (0, 1], a number or one per layer.
        T: number of MC samples (``>= 1``).
        activation: hidden activation :math:`\sigma`.
        inverted: scale kept units by :math:`1/\text{keep\_prob}` (Keras / ``nn.Dropout`` nets).
        generator: source of the uniforms (``None``: torch's global generator).
        max_rows: rows (``T_chunk x ... x N``) per vectorised pass; bounds memory and keeps the
            working set in cache.
        progress: show a tqdm bar over chunks.

    Returns:
        ``T x ... x N x D`` samples :math:`\hat{\mathbf{y}}_t`.

    Example:
        >>> w = [torch.ones(3, 2, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)]
        >>> b = [torch.zeros(3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
        >>> x = torch.ones(5, 2, dtype=torch.float64)
        >>> mc_predict(x, w, b, keep_probs=1.0, T=4)[:, 0, 0]
        tensor([6., 6., 6., 6.], dtype=torch.float64)
    """
    T = check_positive_int(T, "T")
    max_rows = check_positive_int(max_rows, "max_rows")
    inverted, progress = check_bool(inverted, "inverted"), check_bool(progress, "progress")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__} ({generator!r})")
    kps = _check_net(x, weights, biases, keep_probs)
    act = get_activation(activation)
    weights = [w / kp if inverted and kp != 1.0 else w for w, kp in zip(weights, kps)]
    widths = [w.shape[-1] for w in weights]
    offsets = [0]
    for wd in widths:
        offsets.append(offsets[-1] + wd)
    batch_shape = torch.broadcast_shapes(
        x.shape[:-1], *(w.shape[:-2] + (1,) for w in weights), *(b.shape[:-1] + (1,) for b in biases)
    )
    plain = all(w.dim() == 2 for w in weights) and all(b.dim() == 1 for b in biases)
    rows_per_sample = max(1, math.prod(batch_shape))
    t_chunk = max(1, min(T, max_rows // rows_per_sample))
    dtype = x.dtype  # the weights' and biases' too (checked: nothing is cast)
    xb = x.expand(*batch_shape, x.shape[-1])
    wts = [w.transpose(-1, -2) for w in weights]
    streams = layer_drop_streams(kps, generator)
    out = None
    starts = range(0, T, t_chunk)
    for t0 in tqdm(starts, disable=not progress, desc="mc_predict", leave=False):
        tc = min(t_chunk, T - t0)
        h = torch.empty((tc, *xb.shape), dtype=dtype, device=x.device)
        h.copy_(xb)  # a fresh buffer: the drops are written into it in place
        for i, (wt, b) in enumerate(zip(wts, biases)):
            if i > 0:
                h = act(h) if activation != "relu" else h.relu_()
            drops = streams[i].take(h.numel())
            if drops.numel():
                h.view(-1).index_fill_(0, drops.to(x.device), 0.0)
            if plain:
                h = torch.addmm(b, h.reshape(-1, h.shape[-1]), wt).reshape(*h.shape[:-1], -1)
            else:
                h = h @ wt + b.unsqueeze(-2)
        if out is None:
            out = torch.empty((T, *h.shape[1:]), dtype=h.dtype, device=h.device)
        out[t0 : t0 + tc] = h
    return _check_finite_output(out, weights, "mc_predict")


def standard_dropout_predict(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    keep_probs: Sequence[float] | float,
    *,
    activation: str = "relu",
    inverted: bool = False,
) -> torch.Tensor:
    r"""Standard dropout ("weight averaging") prediction: the masks replaced by their means.

    .. math::
        \hat{\mathbf{y}} = \mathbf{W}_L c_L \sigma(\cdots \sigma(\mathbf{W}_1 c_1 \mathbf{x}
        + \mathbf{b}_1) \cdots) + \mathbf{b}_L,

    with :math:`c_i = \text{keep\_prob}_i` in the paper's convention (``inverted=False``) and
    :math:`c_i = 1` for inverted dropout (there :math:`E[z/\text{keep\_prob}] = 1`).

    Args:
        x: ``... x N x Q`` (``N >= 1``, the weights' dtype); weights ``... x out x in``; biases
            ``... x out``.
        keep_probs: a number or one per layer, in (0, 1].
        activation: hidden activation; inverted: the training convention.

    Returns:
        ``... x N x D``.

    Example:
        >>> w = [torch.ones(1, 2, dtype=torch.float64)]
        >>> b = [torch.zeros(1, dtype=torch.float64)]
        >>> standard_dropout_predict(torch.ones(1, 2, dtype=torch.float64), w, b, 0.5)
        tensor([[1.]], dtype=torch.float64)
    """
    kps = _check_net(x, weights, biases, keep_probs)
    act = get_activation(activation)
    h = x
    for i, (w, b, kp) in enumerate(zip(weights, biases, kps)):
        if i > 0:
            h = act(h)
        if not inverted:
            w = w * kp
        h = h @ w.transpose(-1, -2) + b.unsqueeze(-2)
    return _check_finite_output(h, weights, "standard_dropout_predict")


@dataclass(frozen=True)
class RegressionSummary:
    """Per-point and aggregate MC dropout regression metrics, all on the ORIGINAL target scale.

    Attributes:
        mean: predictive mean, ``... x N x D``.
        variance: predictive variance ``1/tau + sample variance``, ``... x N x D``.
        log_likelihood: per-point test log-likelihood, ``... x N``.
        mean_log_likelihood: its mean over points, ``...``.
        rmse: RMSE of the MC mean, ``...``.
        rmse_standard: RMSE of the standard-dropout prediction (``None`` if not given), ``...``.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    log_likelihood: torch.Tensor
    mean_log_likelihood: torch.Tensor
    rmse: torch.Tensor
    rmse_standard: torch.Tensor | None


def _check_like_predictions(t: torch.Tensor, name: str, shape: torch.Size) -> None:
    """``t`` must be ``... x N x D`` and broadcast to the predictions' ``... x N x D`` unchanged."""
    check_targets(t, name, num_rows=shape[-2], num_outputs=shape[-1])
    try:
        ok = torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (or its trailing N x D), got {tuple(t.shape)}"
        )


def regression_summary(
    samples: torch.Tensor,
    y: torch.Tensor,
    tau: float,
    y_mean: float | torch.Tensor = 0.0,
    y_std: float | torch.Tensor = 1.0,
    standard_prediction: torch.Tensor | None = None,
) -> RegressionSummary:
    r"""Predictive mean, variance, test log-likelihood and RMSEs from MC dropout samples.

    Samples come from a model trained on standardised targets; they are mapped back with
    :math:`\tilde{y}_t = \bar{y} + s_y \hat{y}_t` and then

    .. math::
        \mu = \frac{1}{T}\sum_t \tilde{y}_t, \qquad
        \sigma^2 = \tau^{-1} + \frac{1}{T}\sum_t \tilde{y}_t^2 - \mu^2,

    .. math::
        \log p(\mathbf{y}) \approx \operatorname{logsumexp}_t\Big(-\frac{\tau}{2}
        \|\mathbf{y} - \tilde{\mathbf{y}}_t\|^2\Big) - \log T
        - \frac{D}{2}\log 2\pi + \frac{D}{2}\log\tau

    (the paper's formula, ``D = 1`` for scalar targets), and
    :math:`\mathrm{RMSE} = \sqrt{\operatorname{mean}_{n,d}(y - \mu)^2}`.

    Args:
        samples: :math:`\hat{y}_t` on the standardised scale, ``T x ... x N x D``.
        y: test targets on the original scale, ``... x N x D`` (``N x 1`` for one output; a
            1-D ``y`` is refused rather than broadcast against every sample).
        tau: model precision :math:`\tau` on the original scale (as in the paper's grid).
        y_mean: :math:`\bar{y}`, the training-target mean used for standardising.
        y_std: :math:`s_y > 0`, the training-target standard deviation.
        standard_prediction: optional standard-dropout prediction (standardised scale,
            ``... x N x D``), for ``rmse_standard``.

    Returns:
        :class:`RegressionSummary` (sample variance uses :math:`1/T`, as in the paper).

    Example:
        >>> s = torch.zeros(10, 3, 1, dtype=torch.float64)
        >>> r = regression_summary(s, torch.zeros(3, 1, dtype=torch.float64), tau=1.0)
        >>> r.variance.flatten().tolist(), round(float(r.mean_log_likelihood), 4)
        ([1.0, 1.0, 1.0], -0.9189)
    """
    check_finite(samples, "samples")
    if samples.dim() < 3:
        raise ValueError(f"samples must have shape T x ... x N x D, got {tuple(samples.shape)}")
    _check_like_predictions(y, "y", samples.shape[1:])
    check_positive_int(samples.shape[0], "T")
    tau = check_positive(tau, "tau")
    if isinstance(y_std, torch.Tensor):
        check_finite(y_std, "y_std")
        if not bool((y_std > 0).all()):
            raise ValueError(f"y_std must be > 0, got {y_std!r}")
    else:
        y_std = check_positive(y_std, "y_std")
    if isinstance(y_mean, torch.Tensor):
        check_finite(y_mean, "y_mean")
    else:
        check_real(y_mean, "y_mean")
    T = samples.shape[0]
    D = samples.shape[-1]
    orig = y_mean + y_std * samples
    mean = orig.mean(0)
    variance = 1.0 / tau + orig.var(0, correction=0)
    sq = (y - orig).square().sum(-1)
    ll = (
        torch.logsumexp(-0.5 * tau * sq, dim=0)
        - math.log(T)
        - 0.5 * D * math.log(2 * math.pi)
        + 0.5 * D * math.log(tau)
    )
    rmse = (y - mean).square().mean((-1, -2)).sqrt()
    rmse_std = None
    if standard_prediction is not None:
        check_finite(standard_prediction, "standard_prediction")
        _check_like_predictions(standard_prediction, "standard_prediction", samples.shape[1:])
        std_orig = y_mean + y_std * standard_prediction
        rmse_std = (y - std_orig).square().mean((-1, -2)).sqrt()
    return RegressionSummary(mean, variance, ll, ll.mean(-1), rmse, rmse_std)


@dataclass(frozen=True)
class ClassificationSummary:
    """MC dropout classification summaries (entropies in nats).

    Attributes:
        probs: MC-averaged softmax, ``... x N x C``.
        predictive_entropy: entropy of ``probs``, ``... x N``.
        mutual_information: BALD score, ``... x N``.
        variation_ratio: 1 - fraction of samples voting for the modal class, ``... x N``.
    """

    probs: torch.Tensor
    predictive_entropy: torch.Tensor
    mutual_information: torch.Tensor
    variation_ratio: torch.Tensor


def classification_summary(logit_samples: torch.Tensor) -> ClassificationSummary:
    r"""MC-averaged softmax, predictive entropy, mutual information (BALD) and variation ratio.

    With :math:`p_{t,c} = \operatorname{softmax}(\text{logits}_t)_c`,
    :math:`\bar{p}_c = \frac{1}{T}\sum_t p_{t,c}` and :math:`0 \log 0 = 0`:

    .. math::
        H = -\sum_c \bar{p}_c \log \bar{p}_c, \qquad
        \mathrm{MI} = H - \frac{1}{T}\sum_t \Big(-\sum_c p_{t,c}\log p_{t,c}\Big), \qquad
        \mathrm{VR} = 1 - \frac{\max_c \#\{t : \arg\max_{c'} p_{t,c'} = c\}}{T}.

    Args:
        logit_samples: ``T x ... x N x C`` logits (e.g. from :func:`mc_predict`).

    Returns:
        :class:`ClassificationSummary`.

    Example:
        >>> s = classification_summary(torch.zeros(4, 1, 2, dtype=torch.float64))
        >>> round(float(s.predictive_entropy), 4), float(s.mutual_information)
        (0.6931, 0.0)
    """
    check_finite(logit_samples, "logit_samples")
    if logit_samples.dim() < 2:
        raise ValueError(
            f"logit_samples must have shape T x ... x N x C, got {tuple(logit_samples.shape)}"
        )
    T = check_positive_int(logit_samples.shape[0], "T")
    logp = torch.log_softmax(logit_samples, dim=-1)
    p = logp.exp()
    probs = p.mean(0)
    predictive_entropy = -torch.special.xlogy(probs, probs).sum(-1)
    expected_entropy = -(p * logp).sum(-1).mean(0)
    mutual_information = (predictive_entropy - expected_entropy).clamp_min(0.0)
    votes = logit_samples.argmax(-1).movedim(0, -1)
    counts = torch.zeros(probs.shape, dtype=probs.dtype, device=probs.device)
    counts.scatter_add_(-1, votes, torch.ones_like(votes, dtype=probs.dtype))
    variation_ratio = 1.0 - counts.amax(-1) / T
    return ClassificationSummary(probs, predictive_entropy, mutual_information, variation_ratio)
