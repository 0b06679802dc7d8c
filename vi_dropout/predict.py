r"""Monte Carlo (MC) dropout prediction: the one predictor, for weight lists or a module (their
summaries: :mod:`vi_dropout.summaries`).

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

Function draws (``shared_masks=True``): draw :math:`t` uses ONE mask per layer for all ``N``
inputs, :math:`z_{i,t,a}` without an input index, so each draw is a whole function
:math:`f^{\hat{\mathbf{W}}_t}(\mathbf{x}_{1:N})` (smooth curves; at each single input the same
law as with independent masks). Stream: per chunk of ``T_chunk`` draws and per layer with
``keep_prob_i < 1``, in layer order, one ``torch.bernoulli`` of a ``T_chunk x 1 x in_i`` block of
``keep_prob_i`` from ``generator`` (layers with ``keep_prob_i = 1`` draw nothing). Here the
chunking does change the samples: the same ``max_rows`` gives the same draws.

Modules: in place of the weight lists, :func:`mc_predict` takes a :class:`torch.nn.Module` that
holds its own :class:`torch.nn.Dropout` layers (inverted dropout). It runs in eval mode (so
BatchNorm and the like use their running statistics) with every ``nn.Dropout`` replaced by the
mask :math:`\lfloor u + \text{keep\_prob} \rfloor / \text{keep\_prob}`,
:math:`u \sim U[0, 1)` from ``generator``: the law of a training-mode pass. The ``T_chunk``
passes of a chunk run as one batch of ``T_chunk x N`` inputs (sample-major), each dropout layer
drawing, in call order, one uniform block of the shape of its input (``T_chunk x 1 x ...`` with
shared masks); with one dropout layer the chunking does not change the samples, with several the
same ``max_rows`` gives the same samples. A module in the last-layer form (``features``,
``dropout``, ``head`` and ``keep_prob`` attributes, ``forward(x) = head(dropout(features(x)))``,
its only dropout before the ``nn.Linear`` head, e.g. :class:`comparisons.networks.lenet.LeNet`)
gets the same masks from the same stream, but its deterministic part
:math:`\mathbf{h}(\mathbf{x})` is computed once (in batches of :data:`MODULE_FEATURE_BATCH`
rows) and only the ``T`` masked products with the head are formed: one pass plus ``T`` small
matrix products.

Why one module of this size: the one predictor: its two input forms (weight lists, a module) and
two mask laws (per example, shared) share the chunking and the random streams documented above,
which the committed results depend on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from vi_dropout.drop_stream import layer_drop_streams
from vi_dropout.network import get_activation
from vi_dropout.validation import (
    check_bool,
    check_dtype,
    check_finite,
    check_has_rows,
    check_keep_prob,
    check_positive_int,
    per_layer,
)

__all__ = [
    "MODULE_FEATURE_BATCH",
    "DropoutMLPParams",
    "mc_predict",
    "standard_dropout_predict",
]

#: rows of ``x`` per pass of the deterministic part of a last-layer-form module (see the module
#: docstring); a bound on memory that does not change the numbers of the committed runs
MODULE_FEATURE_BATCH = 2048


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
        """:func:`mc_predict` with these parameters (``kwargs``: ``shared_masks``, ``generator``,
        ``max_rows``, ``progress``)."""
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
        largest = max((float(w.detach().abs().max()) for w in weights if w.numel()),
                      default=0.0)
        raise ValueError(
            f"{fn} produced {int(bad.sum())} of {out.numel()} outputs that are NaN or inf although "
            f"x, weights and biases are finite: the activations overflow {out.dtype} (largest "
            f"|weights| entry {largest:.3g}); check the weights, rescale the inputs or use float64"
        )
    return out


def mc_predict(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor] | nn.Module,
    biases: Sequence[torch.Tensor] | None = None,
    keep_probs: Sequence[float] | float | None = None,
    T: int | None = None,
    *,
    activation: str = "relu",
    inverted: bool = False,
    shared_masks: bool = False,
    generator: torch.Generator | None = None,
    max_rows: int = 16384,
    progress: bool = False,
) -> torch.Tensor:
    r"""Draw ``T`` stochastic forward passes of a dropout network in one vectorised computation.

    For weight lists (a dropout MLP):

    .. math::
        \hat{\mathbf{y}}_t = \mathbf{W}_L s_L \operatorname{diag}(\mathbf{z}_{L,t})
        \sigma(\cdots \sigma(\mathbf{W}_1 s_1 \operatorname{diag}(\mathbf{z}_{1,t}) \mathbf{x}
        + \mathbf{b}_1) \cdots) + \mathbf{b}_L, \quad t = 1, \dots, T,

    with independent masks :math:`z_{i,t,n,a} \sim \text{Bernoulli}(\text{keep\_prob}_i)` per
    sample, example and unit, drawn sparsely (see the module docstring for the exact random
    stream) and :math:`s_i = 1/\text{keep\_prob}_i` if ``inverted`` else 1. With
    ``shared_masks`` the mask has no example index, :math:`z_{i,t,a}`: every input of sample
    :math:`t` sees the same masks, and the ``T`` samples are function draws
    :math:`f^{\hat{\mathbf{W}}_t}(\mathbf{x}_{1:N})`.

    For a :class:`torch.nn.Module` (``mc_predict(x, module, T=T)``): ``T`` passes of the module
    with its own :class:`torch.nn.Dropout` layers active and everything else in eval mode
    (see the module docstring: masks from ``generator``, a last-layer-dropout module such as
    :class:`comparisons.networks.lenet.LeNet` computes its deterministic part once). The module's
    modes are restored afterwards.

    Args:
        x: inputs :math:`\mathbf{x}`: for weight lists ``... x N x Q`` with ``N >= 1`` (leading
            dims broadcast with the weights'; ``N x Q`` with ``shared_masks``); for a module
            ``N x ...`` (its batch first). Of the weights' (module's) dtype: a float32 ``x``
            into float64 weights, or the other way, is refused, never cast.
        weights: :math:`\mathbf{W}_i`, per layer ``... x out x in``, one floating dtype (no
            leading dims with ``shared_masks``); or a :class:`torch.nn.Module` holding its own
            ``nn.Dropout`` layers (then ``biases`` and ``keep_probs`` stay ``None`` and
            ``activation`` / ``inverted`` at their defaults: the module has them).
        biases: :math:`\mathbf{b}_i`, per layer ``... x out``.
        keep_probs: :math:`\text{keep\_prob}_i` in (0, 1], a number or one per layer.
        T: number of MC samples (``>= 1``; a keyword for a module).
        activation: hidden activation :math:`\sigma`.
        inverted: scale kept units by :math:`1/\text{keep\_prob}` (Keras / ``nn.Dropout`` nets).
        shared_masks: one mask per sample (and layer) shared by all inputs: function draws
            instead of independent draws per input.
        generator: source of the random numbers (``None``: torch's global generator; on the
            device of ``x``).
        max_rows: rows (``T_chunk x ... x N``) per vectorised pass; bounds memory and keeps the
            working set in cache.
        progress: show a tqdm bar over chunks.

    Returns:
        ``T x ... x N x D`` samples :math:`\hat{\mathbf{y}}_t` (``T x N x ...`` outputs of a
        module).

    Raises:
        ValueError: a bad argument (named, with what was expected and what came), a module
            without ``nn.Dropout`` layers or with another kind of dropout layer, or outputs that
            overflow to inf / NaN.

    Example:
        >>> w = [torch.ones(3, 2, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)]
        >>> b = [torch.zeros(3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
        >>> x = torch.ones(5, 2, dtype=torch.float64)
        >>> mc_predict(x, w, b, keep_probs=1.0, T=4)[:, 0, 0]
        tensor([6., 6., 6., 6.], dtype=torch.float64)
        >>> draws = mc_predict(x, w, b, keep_probs=0.5, T=4, shared_masks=True)
        >>> bool((draws == draws[:, :1]).all())  # equal inputs, one mask per draw: equal outputs
        True
        >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 1))
        >>> mc_predict(torch.ones(5, 2), net, T=4).shape
        torch.Size([4, 5, 1])
    """
    T = check_positive_int(T, "T")
    max_rows = check_positive_int(max_rows, "max_rows")
    inverted, progress = check_bool(inverted, "inverted"), check_bool(progress, "progress")
    shared_masks = check_bool(shared_masks, "shared_masks")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__} ({generator!r})")
    if isinstance(weights, nn.Module):
        for name, value in (("biases", biases), ("keep_probs", keep_probs)):
            if value is not None:
                raise ValueError(f"{name} must be None when weights is a torch.nn.Module (it "
                                 f"holds its own parameters and dropout), got {value!r}")
        for name, value, default in (("activation", activation, "relu"),
                                     ("inverted", inverted, False)):
            if value != default:
                raise ValueError(f"{name} must stay {default!r} when weights is a "
                                 f"torch.nn.Module (its forward defines it), got {value!r}")
        return _mc_predict_module(x, weights, T, shared_masks=shared_masks,
                                  generator=generator, max_rows=max_rows, progress=progress)
    kps = _check_net(x, weights, biases, keep_probs)
    act = get_activation(activation)
    if shared_masks:
        return _shared_mask_draws(x, weights, biases, kps, T, act=act, inverted=inverted,
                                  generator=generator, max_rows=max_rows, progress=progress)
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


def _shared_mask_draws(x, weights, biases, kps, T, *, act, inverted, generator, max_rows,
                       progress) -> torch.Tensor:
    """:func:`mc_predict` with ``shared_masks``: the stream of the module docstring (one dense
    ``T_chunk x 1 x in_i`` Bernoulli block per chunk and dropped layer), kept units scaled in
    the mask (not in the weights), one batched product per layer."""
    if x.dim() != 2 or any(w.dim() != 2 for w in weights) or any(b.dim() != 1 for b in biases):
        raise ValueError(
            f"shared_masks=True needs x of shape N x Q and weights (out x in) and biases (out) "
            f"without leading dims, got x {tuple(x.shape)}, weights "
            f"{[tuple(w.shape) for w in weights]} and biases {[tuple(b.shape) for b in biases]}"
        )
    scales = [1.0 / kp if inverted else 1.0 for kp in kps]
    n, q = x.shape
    t_chunk = max(1, min(T, max_rows // n))
    out = None
    for t0 in tqdm(range(0, T, t_chunk), disable=not progress, desc="mc_predict", leave=False):
        tc = min(t_chunk, T - t0)
        h = x.unsqueeze(0).expand(tc, n, q)
        for i, (w, b, kp, sc) in enumerate(zip(weights, biases, kps, scales)):
            if i > 0:
                h = act(h)
            if kp < 1.0:
                probs = torch.full((tc, 1, w.shape[1]), kp, dtype=h.dtype, device=h.device)
                h = h * (torch.bernoulli(probs, generator=generator) * sc)
            h = torch.baddbmm(b.expand(tc, 1, -1), h, w.T.expand(tc, -1, -1))
        if out is None:
            out = torch.empty((T, n, h.shape[-1]), dtype=h.dtype, device=h.device)
        out[t0 : t0 + tc] = h
    return _check_finite_output(out, weights, "mc_predict")


def _module_dropouts(module: nn.Module) -> dict[nn.Dropout, float]:
    """The ``nn.Dropout`` layers of ``module`` with their keep_prob ``1 - p``; refuses a module
    without any, one with another kind of dropout layer (``Dropout2d``, ``AlphaDropout``, ...,
    whose masks are not elementwise) and ``p = 1`` (keep_prob 0)."""
    found = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Dropout):
            found[m] = check_keep_prob(1.0 - m.p, f"keep_prob of {name or 'the module'} "
                                                  f"(1 - its p)")
        elif isinstance(m, nn.modules.dropout._DropoutNd):
            raise ValueError(
                f"weights: {name or 'the module'} is a {type(m).__name__}; mc_predict samples "
                f"the masks of torch.nn.Dropout layers only")
    if not found:
        raise ValueError(
            f"weights must be a sequence of tensors or a torch.nn.Module with torch.nn.Dropout "
            f"modules, got a {type(module).__name__} without any: mc_predict samples the masks "
            f"of nn.Dropout modules only (for functional dropout, F.dropout in forward, use "
            f"pyro.infer.Predictive with vi_dropout.ModuleBNN and its DropoutGuide)")
    return found


def _last_layer_form(module: nn.Module, dropouts: dict) -> float | None:
    """``module.keep_prob`` if ``module`` is in the last-layer form of the module docstring
    (``features``, ``dropout`` as its only ``nn.Dropout``, an ``nn.Linear`` ``head`` with a
    bias and a ``keep_prob`` equal to ``1 - dropout.p``), else ``None``."""
    head, drop = getattr(module, "head", None), getattr(module, "dropout", None)
    kp = getattr(module, "keep_prob", None)
    if not (isinstance(head, nn.Linear) and head.bias is not None
            and callable(getattr(module, "features", None)) and list(dropouts) == [drop]
            and isinstance(kp, float)):
        return None
    if abs(kp - dropouts[drop]) > 1e-12:
        raise ValueError(f"weights: the module's keep_prob {kp!r} is not 1 - dropout.p "
                         f"({dropouts[drop]!r})")
    return kp


def _mc_predict_module(x, module: nn.Module, T: int, *, shared_masks, generator, max_rows,
                       progress) -> torch.Tensor:
    """:func:`mc_predict` for a module (see the module docstring)."""
    check_finite(x, "x")
    if x.dim() < 1:
        raise ValueError("x must have shape N x ... (the module's batch first), got a 0-D tensor")
    check_has_rows(x.shape[0], "x", x.shape)
    params = list(module.parameters())
    for name, p in module.named_parameters():
        check_finite(p.detach(), f"the module's parameter {name}")
    dtype = next((p.dtype for p in params if p.is_floating_point()), x.dtype)
    if x.is_floating_point():  # integer inputs (class or token ids) are the module's business
        check_dtype(x, "x", dtype, "the module's parameters")
    dropouts = _module_dropouts(module)
    kp = _last_layer_form(module, dropouts)
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            if kp is not None:
                out = _last_layer_draws(x, module, kp, T, shared_masks=shared_masks,
                                        generator=generator, max_rows=max_rows,
                                        progress=progress)
            else:
                out = _module_draws(x, module, dropouts, T, shared_masks=shared_masks,
                                    generator=generator, max_rows=max_rows, progress=progress)
    finally:
        for m, mode in modes:
            m.training = mode
    return _check_finite_output(out, params, "mc_predict")


def _last_layer_draws(x, module, kp: float, T: int, *, shared_masks, generator, max_rows,
                      progress) -> torch.Tensor:
    r"""``T x N x C`` draws of a last-layer-form module in eval mode:
    :math:`\mathbf{W}(\mathbf{z}_t \odot \mathbf{h}) / \text{keep\_prob} + \mathbf{b}` with
    :math:`\mathbf{h}` computed once and the masks from one ``T_chunk x N x H`` (shared:
    ``T_chunk x 1 x H``) uniform block per chunk."""
    h = torch.cat([module.features(x[s : s + MODULE_FEATURE_BATCH])
                   for s in range(0, x.shape[0], MODULE_FEATURE_BATCH)])
    if h.dim() != 2 or h.shape[0] != x.shape[0]:
        raise ValueError(f"weights: the module's features(x) must be N x H ({x.shape[0]} rows), "
                         f"got shape {tuple(h.shape)}")
    n, hid = h.shape
    w_t = (module.head.weight / kp).t().to(h.dtype)  # hidden x C
    b = module.head.bias.to(h.dtype)
    out = h.new_empty(T, n, w_t.shape[1])
    t_chunk = max(1, min(T, max_rows // n))
    for t0 in tqdm(range(0, T, t_chunk), disable=not progress, desc="mc_predict", leave=False):
        tc = min(t_chunk, T - t0)
        u = torch.rand((tc, 1 if shared_masks else n, hid), generator=generator,
                       dtype=h.dtype, device=h.device)
        masked = u.add_(kp).floor_().mul_(h) if not shared_masks else u.add_(kp).floor_() * h
        out[t0 : t0 + tc] = torch.addmm(b, masked.reshape(-1, hid), w_t).reshape(tc, n, -1)
    return out


def _module_draws(x, module, dropouts: dict, T: int, *, shared_masks, generator, max_rows,
                  progress) -> torch.Tensor:
    """``T x N x ...`` draws of a module in eval mode, each ``nn.Dropout`` replaced (through a
    forward hook) by a mask drawn from ``generator``; ``T_chunk`` passes per batch."""
    n = x.shape[0]
    state = {"tc": 1}

    def resample(layer, inputs, output):
        kp, h = dropouts[layer], inputs[0]
        if kp == 1.0:
            return h
        tc = state["tc"]
        if h.dim() == 0 or h.shape[0] != tc * n:
            raise ValueError(
                f"weights: the input of a dropout layer must have the module's batch first "
                f"({tc * n} rows for {tc} passes of {n} inputs), got shape {tuple(h.shape)}")
        rows = h.reshape(tc, n, *h.shape[1:])
        u = torch.rand((tc, 1 if shared_masks else n, *h.shape[1:]), generator=generator,
                       dtype=h.dtype, device=h.device)
        return (u.add_(kp).floor_() * rows).div_(kp).reshape(h.shape)

    hooks = [layer.register_forward_hook(resample) for layer in dropouts]
    try:
        out = None
        t_chunk = max(1, min(T, max_rows // n))
        for t0 in tqdm(range(0, T, t_chunk), disable=not progress, desc="mc_predict",
                       leave=False):
            tc = state["tc"] = min(t_chunk, T - t0)
            try:
                y = module(x.expand(tc, *x.shape).reshape(tc * n, *x.shape[1:]))
            except (RuntimeError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ValueError(f"x of shape {tuple(x.shape)} does not go through the module "
                                 f"{type(module).__name__}: {first}") from exc
            if y.shape[0] != tc * n:
                raise ValueError(f"weights: the module must map N x ... inputs to N x ... "
                                 f"outputs (one row per input), got {tc * n} rows in and "
                                 f"{tuple(y.shape)} out")
            if out is None:
                out = y.new_empty(T, n, *y.shape[1:])
            out[t0 : t0 + tc] = y.reshape(tc, n, *y.shape[1:])
    finally:
        for hook in hooks:
            hook.remove()
    return out


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
