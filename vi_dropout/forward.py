r"""Forward passes of a user's network under the MC dropout family, one weight draw PER EXAMPLE
(per token for a linear layer applied to ``B x T x Q`` inputs).

For a covered linear layer with input :math:`\mathbf{h}_n`, mask :math:`\mathbf{z}_n` on its
input units and weights
:math:`\mathbf{W}_n = \mathbf{M}\operatorname{diag}(\mathbf{z}_n) + \theta\mathbf{E}_n`,
:math:`\mathbf{b}_n = \mathbf{m}_b + \theta\mathbf{e}_n`, every output is Gaussian given the input
(local reparameterisation, exact in distribution):

.. math::
    \mathbf{W}_n\mathbf{h}_n + \mathbf{b}_n \sim \mathcal{N}\big(\mathbf{M}(\mathbf{z}_n \odot
    \mathbf{h}_n) + \mathbf{m}_b,\; \theta^2(\lVert\mathbf{h}_n\rVert^2 + 1)\,\mathbf{I}\big).

On an input with leading dimensions (``B x T x Q``, tokens) ``nn.Dropout`` draws one mask per
element, i.e. per token, so the mask has the input's full shape and :math:`n` runs over tokens:
one weight draw per token, variance :math:`\theta^2(\lVert\mathbf{h}_{n,t}\rVert^2 + 1)`.

For a convolution with :math:`g` groups the mask is one gate per input channel
(``B x C x 1 x 1``, ``B x C x 1`` for ``nn.Conv1d``) and every output location is Gaussian with
mean the convolution of the masked input (``groups = g``) and variance :math:`\theta^2(s + 1)`,
:math:`s` the sum of :math:`h^2` over the location's receptive field in the input channels of the
output channel's group (a convolution of :math:`h^2` with a ones kernel and ``groups = g``).
With ``theta = 0`` this is exactly the dropout network in the paper's convention (no
:math:`1/\pi` rescaling), with the given masks.

The network runs as the user wrote it (:func:`~vi_dropout.conversion.dropout_free_copy`: no
dropout acts in it), only the covered layers' forwards are replaced while it runs. Inputs ``x``
are a tensor, a tuple of tensors (positional arguments) or a dict (keyword arguments), batch
first (:mod:`vi_dropout.inputs`).

Example:
    >>> from vi_dropout.conversion import dropout_free_copy, find_covered_layers
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Dropout(0.5),
    ...                           torch.nn.Linear(4, 1))
    >>> layers = find_covered_layers(net)
    >>> means = [c.means_from_module(net.get_submodule(c.name).weight.detach()) for c in layers]
    >>> biases = [net.get_submodule(c.name).bias.detach() for c in layers]
    >>> masks = draw_masks(layers, 5, torch.Generator().manual_seed(0))
    >>> out = module_forward(dropout_free_copy(net), layers, means, biases, torch.randn(5, 2),
    ...                      masks=masks, theta=0.0)
    >>> out.shape
    torch.Size([5, 1])
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vi_dropout.conversion import CoveredLayer, DropoutOff, is_dropout_free
from vi_dropout.inputs import Inputs, batch_size, call, check_inputs, describe
from vi_dropout.validation import check_positive_int, check_real

__all__ = ["draw_masks", "mask_shape", "covered_input_shapes", "covered_layer_shapes",
           "module_forward", "run_module", "check_output"]


def mask_shape(layer: CoveredLayer, batch: int,
               input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """The mask shape of ``layer`` for a batch of ``batch``: the input's full shape
    ``B x ... x Q`` (``input_shape``, one mask per token) or ``B x Q`` for a linear layer,
    ``B x C x 1 x 1`` (``B x C x 1``) for a 2-d (1-d) convolution."""
    if layer.kind == "linear":
        return (batch, layer.num_cols) if input_shape is None else tuple(input_shape)
    return (batch, layer.num_cols) + (1,) * (len(layer.weight_shape) - 2)


def _check_input_shapes(layers, batch: int, input_shapes) -> list:
    if input_shapes is None:
        return [None] * len(layers)
    shapes = list(input_shapes)
    if len(shapes) != len(layers):
        raise ValueError(f"input_shapes must have one entry per covered layer ({len(layers)}), "
                         f"got {len(shapes)}")
    for i, (layer, shape) in enumerate(zip(layers, shapes)):
        shape = tuple(int(v) for v in shape)
        col = -1 if layer.kind == "linear" else 1
        if len(shape) < 2 or shape[0] != batch or shape[col] != layer.num_cols:
            want = ("B x ... x Q" if layer.kind == "linear" else "B x C x ...")
            raise ValueError(
                f"input_shapes[{i}] (layer {layer.name!r}) must be {want} with B = {batch} and "
                f"{'Q' if layer.kind == 'linear' else 'C'} = {layer.num_cols}, got {shape}")
        shapes[i] = shape
    return shapes


def draw_masks(layers: Sequence[CoveredLayer], batch: int,
               generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32,
               input_shapes: Sequence[Sequence[int]] | None = None) -> list[torch.Tensor]:
    """Bernoulli(keep_prob) masks on each covered layer's input units, drawn in layer order from
    ``generator``: ``B x Q`` for a linear layer (``B x ... x Q``, the layer input's shape, when
    ``input_shapes`` is given: one mask per token), ``B x C x 1 x 1`` (``B x C x 1``) for a 2-d
    (1-d) convolution. A layer with ``keep_prob = 1`` gets ones (and draws nothing).

    The draw is ``torch.empty(shape, dtype=dtype).bernoulli_(keep_prob)``, which is what
    ``nn.Dropout`` / ``nn.Dropout1d`` / ``nn.Dropout2d`` draw on the CPU: with the same
    generator state, dtype and shape the masks are theirs, element for element.

    Args:
        layers: the covered layers.
        batch: ``B``.
        generator: the random stream (torch's global one when ``None``).
        dtype: the masks' dtype (it selects the random stream, as in ``nn.Dropout``).
        input_shapes: optional per-layer input shapes (:func:`covered_input_shapes`).
    """
    batch = check_positive_int(batch, "batch")
    shapes = _check_input_shapes(layers, batch, input_shapes)
    masks = []
    for layer, shape in zip(layers, shapes):
        shape = mask_shape(layer, batch, shape)
        if layer.keep_prob == 1.0:
            masks.append(torch.ones(shape, dtype=dtype))
        else:
            masks.append(torch.empty(shape, dtype=dtype).bernoulli_(float(layer.keep_prob),
                                                                      generator=generator))
    return masks


def run_module(module: nn.Module, x: Inputs, params: dict[str, torch.Tensor] | None = None):
    """``module(x)`` in the form of ``x`` (:func:`vi_dropout.inputs.call`), with the tensors
    ``params`` in place of the module's own (``torch.func.functional_call``) when given; a
    failure of the network on these inputs becomes a ``ValueError`` naming the input shapes."""
    try:
        if params is None:
            return call(module, x)
        if isinstance(x, torch.Tensor):
            args, kwargs = (x,), None
        elif isinstance(x, Mapping):
            args, kwargs = (), dict(x)
        else:
            args, kwargs = tuple(x), None
        return torch.func.functional_call(module, params, args, kwargs)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"x ({describe(x)}) does not go through the module "
                         f"{type(module).__name__}: {first}") from exc


@torch.no_grad()
def _probe(module: nn.Module, layers: Sequence[CoveredLayer], x: Inputs):
    """Per covered layer ``(input shape, output shape)`` for the inputs ``x`` (one forward in
    evaluation mode, no gradients, training flags restored)."""
    x = check_inputs(x, "x", finite=False)
    batch = batch_size(x)
    inputs: dict[str, list] = {}
    outputs: dict[str, tuple] = {}

    def pre(name):
        def hook(mod, args, kwargs):
            h = args[0] if args else next(iter(kwargs.values()))
            inputs.setdefault(name, []).append(tuple(h.shape))
        return hook

    def post(name):
        def hook(mod, args, out):
            outputs[name] = tuple(out.shape)
        return hook

    hooks = []
    for layer in layers:
        sub = module.get_submodule(layer.name)
        hooks.append(sub.register_forward_pre_hook(pre(layer.name), with_kwargs=True))
        hooks.append(sub.register_forward_hook(post(layer.name)))
    flags = {m: m.training for m in module.modules()}
    try:
        module.eval()
        run_module(module, x)
    finally:
        for h in hooks:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    result = []
    for layer in layers:
        seen = inputs.get(layer.name, [])
        if len(seen) != 1:
            raise ValueError(f"layer {layer.name!r} is called {len(seen)} times when the module "
                             f"runs on x ({describe(x)}); the family needs each covered layer "
                             f"called once")
        shape = seen[0]
        if len(shape) < 2 or shape[0] != batch:
            raise ValueError(
                f"layer {layer.name!r} receives an input of shape {shape} for a batch of {batch}: "
                f"per-example weight draws need the batch dimension first (e.g. B x T x D rather "
                f"than (B*T) x D)")
        result.append((shape, outputs[layer.name]))
    return result


def covered_layer_shapes(module: nn.Module, layers: Sequence[CoveredLayer],
                         x: Inputs) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each covered layer's ``(input shape, output shape)`` (both ``B x ...``) when ``module``
    runs on ``x``: one forward with hooks, in evaluation mode and without gradients (the
    training flags are restored).

    Raises:
        ValueError: a layer is not called exactly once, or its input does not keep the batch
            dimension first; ``x`` does not go through the module.
    """
    return _probe(module, layers, x)


def covered_input_shapes(module: nn.Module, layers: Sequence[CoveredLayer],
                         x: Inputs) -> list[tuple[int, ...]]:
    """Each covered layer's input shape (``B x ...``) when ``module`` runs on ``x``, for
    :func:`draw_masks`'s ``input_shapes`` (see :func:`covered_layer_shapes`)."""
    return [shape for shape, _ in _probe(module, layers, x)]


def _check_layer_input(layer: CoveredLayer, h: torch.Tensor) -> torch.Tensor:
    """``h`` if it has the layer's input units (channels), a ValueError otherwise."""
    col = -1 if layer.kind == "linear" else 1
    if h.dim() < 2 or h.shape[col] != layer.num_cols:
        what = "input units (last dimension)" if col == -1 else "input channels (dimension 1)"
        raise ValueError(f"layer {layer.name!r} takes {layer.num_cols} {what}, but receives an "
                         f"input of shape {tuple(h.shape)}: the inputs do not fit the network")
    return h


def _fit_mask(layer: CoveredLayer, mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``mask`` as a factor for the layer input ``h``, or a ValueError saying what it needs."""
    mask = mask.to(dtype=h.dtype, device=h.device)
    _check_layer_input(layer, h)
    if layer.kind == "linear":
        if mask.shape == h.shape:
            return mask
        if (h.dim() > 2 and mask.dim() == 2 and mask.shape == (h.shape[0], h.shape[-1])
                and bool((mask == 1).all())):
            return mask.reshape(h.shape[0], *([1] * (h.dim() - 2)), h.shape[-1])
        raise ValueError(
            f"layer {layer.name!r}: its input has shape {tuple(h.shape)}, so its mask must have "
            f"that shape (one mask per token, as nn.Dropout draws them), got {tuple(mask.shape)}; "
            f"draw them with draw_masks(..., input_shapes=covered_input_shapes(module, "
            f"layers, x))")
    want = (h.shape[0], h.shape[1]) + (1,) * (h.dim() - 2)
    if tuple(mask.shape) != want:
        raise ValueError(f"layer {layer.name!r}: its input has shape {tuple(h.shape)}, so its "
                         f"mask must be one gate per input channel, shape {want}, got "
                         f"{tuple(mask.shape)}")
    return mask


# the torch function mode stack (what torch.overrides' own mode handling uses); without it the
# layers simply run under DropoutOff
_len_mode_stack = getattr(torch._C, "_len_torch_function_stack", None)
_mode_at = getattr(torch._C, "_get_function_stack_at", None)
_pop_mode = getattr(torch._C, "_pop_torch_function_stack", None)
_push_mode = getattr(torch._C, "_push_on_torch_function_stack", None)
_MODE_STACK = None not in (_len_mode_stack, _mode_at, _pop_mode, _push_mode)


def _top_dropout_off() -> DropoutOff | None:
    """The :class:`~vi_dropout.conversion.DropoutOff` mode on top of the torch function mode
    stack (the dropout-free copy enters it for every call), ``None`` when the top mode is
    another one or there is none."""
    if _MODE_STACK:
        depth = _len_mode_stack()
        if depth:
            mode = _mode_at(depth - 1)
            if type(mode) is DropoutOff:
                return mode
    return None


def _layer_forward(layer: CoveredLayer, module: nn.Module, weight: torch.Tensor,
                   bias: torch.Tensor | None, mask: torch.Tensor | None, theta: float,
                   noise: torch.Tensor | None, generator: torch.Generator | None):
    def forward(h: torch.Tensor) -> torch.Tensor:
        # the layer's own operations call no dropout, so DropoutOff (on top of the mode stack
        # while the dropout-free copy runs) would pass every one of them through unchanged: it
        # is popped for their duration, which saves a Python __torch_function__ call per
        # operation (and per shape or dtype read); any mode under it still sees them
        mode = _top_dropout_off()
        if mode is None:
            return compute(h)
        _pop_mode()
        try:
            return compute(h)
        finally:
            _push_mode(mode)

    def compute(h: torch.Tensor) -> torch.Tensor:
        # no mask (None): h itself, as a mask of ones gives it (h * 1 == h, grad * 1 == grad)
        hm = _check_layer_input(layer, h) if mask is None else h * _fit_mask(layer, mask, h)
        sq = None
        if layer.kind == "linear":
            mean = F.linear(hm, weight, bias)
            if theta:
                sq = h.square().sum(-1, keepdim=True)
        else:
            if module.padding_mode != "zeros":
                raise ValueError(f"layer {layer.name!r}: padding_mode {module.padding_mode!r} "
                                 f"is not supported (zeros only)")
            conv = F.conv2d if layer.kind == "conv2d" else F.conv1d
            kw = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
            g = layer.groups
            mean = conv(hm, weight, bias, groups=g, **kw)
            if theta:
                # per output location: the sum of h^2 over the receptive field in the group's
                # input channels (B x g x ...), the same for the out/g channels of a group
                ones = torch.ones((g, *weight.shape[1:]), dtype=h.dtype, device=h.device)
                sq = conv(h.square(), ones, None, groups=g, **kw)
                if g > 1:
                    sq = sq.repeat_interleave(layer.out_features // g, dim=1)
        if not theta:
            return mean
        var = sq + 1.0 if bias is not None else sq
        eps = noise if noise is not None else torch.randn(
            mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
        if eps.shape != mean.shape:
            raise ValueError(f"layer {layer.name!r}: noise must have shape {tuple(mean.shape)}, "
                             f"got {tuple(eps.shape)}")
        return mean + theta * var.sqrt() * eps

    return forward


_MISSING = object()


@contextlib.contextmanager
def _patched(module: nn.Module, forwards: Sequence[tuple[nn.Module, object]]):
    """Replace ``sub.forward`` by ``fn`` for every ``(sub, fn)`` while the block runs (an
    instance attribute, as ``sub.forward = fn`` sets it; restored afterwards)."""
    originals = []
    try:
        for sub, fn in forwards:
            originals.append((sub, sub.__dict__.get("forward", _MISSING)))
            sub.__dict__["forward"] = fn
        yield module
    finally:
        for sub, fn in reversed(originals):
            if fn is _MISSING:
                sub.__dict__.pop("forward", None)
            else:
                sub.__dict__["forward"] = fn


def module_forward(module: nn.Module, layers: Sequence[CoveredLayer],
                   means: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                   x: Inputs, *, masks: Sequence[torch.Tensor | None], theta: float = 0.0,
                   noise: Sequence[torch.Tensor] | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Run ``module`` with one weight draw per example (per token) in every covered layer.

    Args:
        module: a dropout-free copy of the user's network
            (:func:`~vi_dropout.conversion.dropout_free_copy`; anything else is refused, since
            its own dropout would act on top of the masks).
        layers: its covered layers (:func:`~vi_dropout.conversion.find_covered_layers`).
        means: per layer the means :math:`\mathbf{M}` as ``K x Q`` columns (the paper's convention).
        biases: per layer the bias means (``None`` for a layer without bias).
        x: a minibatch the module takes: a tensor ``B x ...``, a tuple of tensors (positional
            arguments) or a dict of tensors (keyword arguments), batch first.
        masks: per layer ``B x Q`` (linear; ``B x ... x Q``, the input's shape, on token inputs)
            or ``B x C x 1 x 1`` / ``B x C x 1`` (conv) masks (:func:`draw_masks`), or
            ``None`` for a layer whose input is not masked (what a mask of ones gives, without
            the multiplication).
        theta: :math:`\theta \ge 0`; 0 gives the dropout network itself.
        noise: optional per-layer standard normals shaped like each layer's output (common random
            numbers); drawn from ``generator`` in layer-call order when omitted.

    Returns:
        The module's output for the minibatch.
    """
    if not (len(layers) == len(means) == len(biases) == len(masks)):
        raise ValueError(f"layers, means, biases and masks must have one entry per covered layer "
                         f"({len(layers)}), got {len(means)}, {len(biases)} and {len(masks)}")
    if noise is not None and len(noise) != len(layers):
        raise ValueError(f"noise must have one entry per covered layer ({len(layers)}), got "
                         f"{len(noise)}")
    if not is_dropout_free(module):
        raise ValueError(f"module must be a dropout-free copy of the network "
                         f"(vi_dropout.conversion.dropout_free_copy(module)), got a "
                         f"{type(module).__name__} whose own dropout would act on top of the "
                         f"masks")
    theta = check_real(theta, "theta", finite=False)
    if not theta >= 0.0:
        raise ValueError(f"theta must be >= 0, got {theta!r}")
    x = check_inputs(x, "x", finite=False)
    batch = batch_size(x)
    forwards = {}
    for i, layer in enumerate(layers):
        mask = masks[i]
        if mask is not None and (mask.dim() < 2 or mask.shape[0] != batch):
            rows = mask.shape[0] if mask.dim() else 0
            raise ValueError(f"masks[{i}] has {rows} rows but x has {batch}")
        weight = layer.from_columns(means[i])
        sub = _submodule(module, layer.name)
        # one entry per layer name (a later layer of the same name wins, as before)
        forwards[layer.name] = (sub, _layer_forward(
            layer, sub, weight, biases[i], mask, theta, None if noise is None else noise[i],
            generator))
    with _patched(module, list(forwards.values())):
        return run_module(module, x)


def _submodule(module: nn.Module, name: str) -> nn.Module:
    """``module.get_submodule(name)``, walking the registered submodules directly (the covered
    layers' names come from ``named_modules``); ``get_submodule`` itself for anything else."""
    sub = module
    try:
        for atom in name.split("."):
            sub = sub._modules[atom]
    except (KeyError, AttributeError, TypeError):
        return module.get_submodule(name)
    if not isinstance(sub, nn.Module):
        return module.get_submodule(name)
    return sub


def check_output(out: torch.Tensor, batch: int, likelihood: str) -> None:
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        what = "B x D outputs" if likelihood == "gaussian" else "B x C logits"
        raise ValueError(f"the module's output has shape {shape} for a batch of {batch}: the "
                         f"per-example ELBO needs {what}")
