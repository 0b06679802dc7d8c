r"""Bring your own network: find where dropout acts in a :class:`torch.nn.Module` and describe the
weights that the MC dropout family covers.

A layer is *covered* when the family of Gal & Ghahramani puts :class:`DropoutNormal` on its weight:

* ``nn.Linear`` (weight ``out x in``): a column is one input unit; ``nn.Dropout`` in front of it
  (possibly through ``nn.Flatten``, ``flatten``, ``view`` or ``reshape``) drops whole columns.
* ``nn.Conv2d`` (weight ``out x in x kh x kw``): a "column" is every weight attached to one input
  channel, i.e. the columns of the ``(out * kh * kw) x in`` matrix
  :func:`CoveredLayer.to_columns` makes; ``nn.Dropout2d`` in front of it drops whole channels.

Every ``nn.Linear`` and ``nn.Conv2d`` is covered; one without dropout in front gets
``keep_prob = 1`` (a Gaussian around its mean). Elementwise ``nn.Dropout`` in front of a
convolution would need one weight draw per output location (Gal & Ghahramani's Bayesian CNN) and
is refused with that reason; dropout in front of any other layer is refused, naming the layer.
Parameters of other layers (e.g. BatchNorm) are not covered: they stay point estimates.

Where dropout sits is read from the real call graph (``torch.fx`` symbolic tracing), so modules
with a custom ``forward`` work when they are traceable; otherwise pass the map explicitly
(``keep_probs={layer name: keep_prob}``, layers not named get 1).

``torch.nn.Dropout`` rescales kept units by :math:`1/\pi`; the seed's family does not. The same
function with the same masks has module weights :math:`\mathbf{W}' = \pi\mathbf{M}`
(:func:`vi_dropout.objectives.to_inverted_dropout`): :meth:`CoveredLayer.means_from_module`
and :meth:`CoveredLayer.module_weight` map between the two exactly.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(8, 1))
    >>> [(c.name, c.keep_prob) for c in find_covered_layers(net)]
    [('0', 1.0), ('3', 0.9)]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from .validation import check_keep_prob

__all__ = ["CoveredLayer", "find_covered_layers", "dropout_free_copy", "COVERED_TYPES"]

#: layer types whose weight the family covers
COVERED_TYPES = (nn.Linear, nn.Conv2d)
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)
#: operations that only reshape: dropout before them still drops the next layer's input units
_SHAPE_METHODS = {"flatten", "view", "reshape", "contiguous"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape}


@dataclass(frozen=True)
class CoveredLayer:
    r"""One covered layer: where it is, its kind, its keep probability and its weight's shape.

    Attributes:
        name: the module path (``module.get_submodule(name)``).
        kind: ``"linear"`` or ``"conv2d"``.
        keep_prob: :math:`\pi \in (0, 1]`, the probability that an input unit / channel is kept.
        weight_shape: the module's weight shape (``out x in`` or ``out x in x kh x kw``).
        has_bias: whether the layer has a bias.
        dropout: the path of the dropout module in front of it (``None``: none or explicit map).
    """

    name: str
    kind: str
    keep_prob: float
    weight_shape: tuple[int, ...]
    has_bias: bool
    dropout: str | None = None

    @property
    def num_cols(self) -> int:
        """:math:`Q`: input units (linear) or input channels (conv)."""
        return self.weight_shape[1]

    @property
    def num_rows(self) -> int:
        """:math:`K`: the length of a column (``out``, or ``out * kh * kw`` for a conv)."""
        return math.prod(self.weight_shape) // self.weight_shape[1]

    def to_columns(self, weight: torch.Tensor) -> torch.Tensor:
        """The module-layout weight (``... x out x in [x kh x kw]``) as ``... x K x Q`` columns."""
        if self.kind == "linear":
            return weight
        lead = weight.shape[:-4]
        w = weight.movedim(-3, -1)  # ... x out x kh x kw x in
        return w.reshape(*lead, self.num_rows, self.num_cols)

    def from_columns(self, columns: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_columns`."""
        if self.kind == "linear":
            return columns
        lead = columns.shape[:-2]
        out, inp, kh, kw = self.weight_shape
        return columns.reshape(*lead, out, kh, kw, inp).movedim(-1, -3)

    def means_from_module(self, weight: torch.Tensor) -> torch.Tensor:
        r"""Seed-convention means :math:`\mathbf{M} = \mathbf{W}'/\pi` as ``K x Q`` columns."""
        return self.to_columns(weight) / self.keep_prob

    def module_weight(self, means: torch.Tensor) -> torch.Tensor:
        r"""The module's weight :math:`\mathbf{W}' = \pi\mathbf{M}` from ``K x Q`` means."""
        return self.from_columns(means * self.keep_prob)


def _dropout_keep_prob(module: nn.Module) -> float:
    return check_keep_prob(1.0 - float(module.p), "keep_prob (1 - the dropout's p)")


def _source_through_reshapes(node: torch.fx.Node) -> torch.fx.Node:
    while True:
        if node.op == "call_method" and node.target in _SHAPE_METHODS:
            node = node.args[0]
        elif node.op == "call_function" and node.target in _SHAPE_FUNCTIONS:
            node = node.args[0]
        else:
            return node


def _trace(module: nn.Module) -> torch.fx.GraphModule:
    try:
        return torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - torch.fx raises many types; say it in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"module {type(module).__name__} cannot be traced by torch.fx ({first}); pass the "
            f"dropout map explicitly: keep_probs={{layer name: keep_prob}}"
        ) from None


def _layers_from_graph(module: nn.Module) -> list[CoveredLayer]:
    graph = _trace(module).graph
    modules = dict(module.named_modules())
    covered, used_dropouts = [], {}
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        target = modules[node.target]
        if isinstance(target, _DROPOUT_TYPES):
            for user in node.users:
                consumer = user
                while (consumer.op == "call_method" and consumer.target in _SHAPE_METHODS) or (
                        consumer.op == "call_function" and consumer.target in _SHAPE_FUNCTIONS) or (
                        consumer.op == "call_module"
                        and isinstance(modules.get(consumer.target), nn.Flatten)):
                    users = list(consumer.users)
                    if len(users) != 1:
                        break
                    consumer = users[0]
                layer = modules.get(consumer.target) if consumer.op == "call_module" else None
                if not isinstance(layer, COVERED_TYPES):
                    what = (f"layer {consumer.target!r} ({type(layer).__name__})"
                            if layer is not None else f"operation {consumer.name!r}")
                    raise ValueError(
                        f"dropout {node.target!r} feeds {what}: the MC dropout family covers "
                        f"nn.Linear (after nn.Dropout) and nn.Conv2d (after nn.Dropout2d) only; "
                        f"move the dropout or pass keep_probs explicitly")
                if isinstance(layer, nn.Conv2d) and not isinstance(target, nn.Dropout2d):
                    raise ValueError(
                        f"elementwise {type(target).__name__} {node.target!r} in front of "
                        f"nn.Conv2d {consumer.target!r} drops single pixels: the variational "
                        f"family then needs one weight draw per output location (Gal & "
                        f"Ghahramani's Bayesian CNN), which is not supported; use nn.Dropout2d "
                        f"(one draw per input channel) in front of the convolution")
                if consumer.target in used_dropouts:
                    raise ValueError(f"layer {consumer.target!r} has two dropouts in front of it")
                used_dropouts[consumer.target] = node.target
        elif isinstance(target, COVERED_TYPES):
            covered.append(node.target)
    layers = []
    for name in dict.fromkeys(covered):
        layer = modules[name]
        dropout = used_dropouts.get(name)
        kp = _dropout_keep_prob(modules[dropout]) if dropout is not None else 1.0
        layers.append(_covered(name, layer, kp, dropout))
    return layers


def _covered(name: str, layer: nn.Module, keep_prob: float, dropout: str | None) -> CoveredLayer:
    kind = "linear" if isinstance(layer, nn.Linear) else "conv2d"
    if kind == "conv2d" and layer.groups != 1:
        raise ValueError(f"nn.Conv2d {name!r} has groups={layer.groups}: only groups=1 is covered")
    return CoveredLayer(name, kind, keep_prob, tuple(layer.weight.shape), layer.bias is not None,
                        dropout)


def find_covered_layers(module: nn.Module,
                        keep_probs: Mapping[str, float] | None = None) -> list[CoveredLayer]:
    """The layers of ``module`` whose weights the MC dropout family covers, in call order.

    Args:
        module: the user's network (its ``nn.Dropout`` / ``nn.Dropout2d`` modules tell where
            dropout acts; read by ``torch.fx`` tracing).
        keep_probs: optional explicit map ``{layer name: keep_prob}``; then no tracing happens,
            every ``nn.Linear`` / ``nn.Conv2d`` is covered (in registration order) and layers not
            named get ``keep_prob = 1``.

    Raises:
        ValueError: no layer to cover; dropout in front of an unsupported layer (named, with the
            reason); an untraceable module without ``keep_probs``; a bad name or keep_prob in
            ``keep_probs``.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if keep_probs is None:
        layers = _layers_from_graph(module)
    else:
        modules = dict(module.named_modules())
        unknown = [n for n in keep_probs if not isinstance(modules.get(n), COVERED_TYPES)]
        if unknown:
            names = [n for n, m in modules.items() if isinstance(m, COVERED_TYPES)]
            raise ValueError(f"keep_probs names {unknown}, which are not nn.Linear / nn.Conv2d "
                             f"layers of the module; its layers are {names}")
        layers = [_covered(n, m, check_keep_prob(keep_probs.get(n, 1.0), f"keep_probs[{n!r}]"),
                           None)
                  for n, m in modules.items() if isinstance(m, COVERED_TYPES)]
    if not layers:
        raise ValueError(f"module {type(module).__name__} has no nn.Linear or nn.Conv2d layer: "
                         f"the MC dropout family has nothing to cover")
    return layers


def dropout_free_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every dropout module replaced by ``nn.Identity`` (the
    family's draws replace them) and everything else as it was, training flags included."""
    clone = copy.deepcopy(module)
    for name, sub in list(clone.named_modules()):
        if isinstance(sub, _DROPOUT_TYPES) and name:
            parent, _, leaf = name.rpartition(".")
            setattr(clone.get_submodule(parent) if parent else clone, leaf, nn.Identity())
    return clone
