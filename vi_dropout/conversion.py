r"""Bring your own network: find where dropout acts in a :class:`torch.nn.Module`, describe the
weights that the MC dropout family covers, and account for every dropout.

A layer is *covered* when the family of Gal & Ghahramani puts :class:`DropoutNormal` on its weight:

* ``nn.Linear`` (weight ``out x in``): a column is one input unit; elementwise dropout in front of
  it (``nn.Dropout``, ``F.dropout``, ``torch.dropout``; possibly through ``nn.Flatten``,
  ``flatten``, ``view`` or ``reshape``, and through ``ReLU`` / ``LeakyReLU``, which commute with a
  0/1 mask scaled by :math:`1/\pi`) drops whole columns. On an input with leading dimensions
  (``B x T x in``, tokens) ``nn.Dropout`` draws one mask per token, and the family one weight draw
  per token (:mod:`vi_dropout.forward`).
* ``nn.Conv2d`` / ``nn.Conv1d`` (weight ``out x in/g x k...`` with ``g`` groups): a "column" is
  every weight attached to one input channel. Input channel :math:`c` of group
  :math:`\lfloor c g / \text{in} \rfloor` connects to the ``out/g`` output channels of its group,
  so the columns form the ``K x Q`` matrix with :math:`K = (\text{out}/g)\prod k` and
  :math:`Q = \text{in}` (:meth:`CoveredLayer.to_columns`; depthwise ``g = in`` included). Channel
  dropout in front of it (``nn.Dropout2d`` / ``F.dropout2d`` before ``nn.Conv2d``,
  ``nn.Dropout1d`` / ``F.dropout1d`` before ``nn.Conv1d``, ``torch.feature_dropout`` before
  either) drops whole channels, i.e. whole columns.

Every covered-type layer is covered; one without dropout in front gets ``keep_prob = 1`` (a
Gaussian around its mean). Parameters of other layers (e.g. BatchNorm) are not covered: they stay
point estimates.

Every dropout is accounted for. Where dropout sits is read from the real call graph
(``torch.fx`` symbolic tracing, with the module temporarily in training mode, so that
``F.dropout(h, p, training=self.training)`` reads as active): dropout modules and the functional
forms (``F.dropout``, ``F.dropout1d/2d/3d``, ``F.alpha_dropout``, ``F.feature_alpha_dropout``,
``torch.dropout``, ``torch.feature_dropout``, ``torch.alpha_dropout``, ...; a call with a constant
``training=False`` or ``p = 0`` does nothing and is ignored; ``Tensor`` has no dropout method).
``torch.fx`` does not look inside ``torch.nn`` modules, so the module tree is inspected too:
``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` with ``dropout > 0`` between stacked layers
(``num_layers > 1``; with one layer it never acts),
``nn.MultiheadAttention`` with ``dropout > 0`` (attention weights), and dropout modules inside
``nn.TransformerEncoderLayer`` / ``DecoderLayer`` / ``nn.Transformer``. Dropout that is not in
front of a covered layer (those, dropout on the network's output, before any other operation,
alpha dropout, a dropout whose output goes to several places) is *uncovered*: the family has no
counterpart for it. It is REFUSED by name (``uncovered_dropout="refuse"``, the default) or, only
when asked (``uncovered_dropout="disable"``), switched off in the Bayesian model and listed
(:attr:`Conversion.disabled`, :class:`DisabledDropout`): the model is then the network WITHOUT
that dropout, and says so.

Modules ``torch.fx`` cannot trace need the map ``keep_probs={layer name: keep_prob}`` (layers not
named get 1): the map is then the user's statement of where dropout acts; the module tree is
still inspected for the recurrent / attention / transformer dropout above.

``torch.nn.Dropout`` rescales kept units by :math:`1/\pi`; the paper's family does not. The same
function with the same masks has module weights :math:`\mathbf{W}' = \pi\mathbf{M}`
(:func:`vi_dropout.infer.elbo.to_inverted_dropout`): :meth:`CoveredLayer.means_from_module`
and :meth:`CoveredLayer.module_weight` map between the two exactly.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(8, 1))
    >>> [(c.name, c.keep_prob) for c in find_covered_layers(net)]
    [('0', 1.0), ('3', 0.9)]

Why one module of this size: one analysis of a network: the traced call graph, the covered
layers and every dropout accounted for, and the dropout-free copy that depends on that analysis.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from vi_dropout.validation import check_keep_prob

__all__ = ["CoveredLayer", "DisabledDropout", "Conversion", "convert_module",
           "find_covered_layers", "dropout_free_copy", "is_dropout_free", "without_disabled_dropout",
           "DropoutOff", "COVERED_TYPES",
           "UNCOVERED_DROPOUT_CHOICES"]

#: layer types whose weight the family covers
COVERED_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
#: the values of ``uncovered_dropout``
UNCOVERED_DROPOUT_CHOICES = ("refuse", "disable")

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)
#: dropout module type -> what it drops
_MODULE_KINDS = {nn.Dropout: "elementwise", nn.Dropout1d: "channel1d", nn.Dropout2d: "channel2d",
                 nn.Dropout3d: "channel3d", nn.AlphaDropout: "alpha",
                 nn.FeatureAlphaDropout: "alpha"}


class _Functional(NamedTuple):
    label: str
    kind: str
    training_name: str
    training_default: bool | None  # None: a required argument


#: functional dropouts: target -> (label, what it drops, name of the training flag, its default)
_FUNCTIONAL = {
    F.dropout: _Functional("F.dropout", "elementwise", "training", True),
    F.dropout1d: _Functional("F.dropout1d", "channel1d", "training", True),
    F.dropout2d: _Functional("F.dropout2d", "channel2d", "training", True),
    F.dropout3d: _Functional("F.dropout3d", "channel3d", "training", True),
    F.alpha_dropout: _Functional("F.alpha_dropout", "alpha", "training", False),
    F.feature_alpha_dropout: _Functional("F.feature_alpha_dropout", "alpha", "training", False),
    torch.dropout: _Functional("torch.dropout", "elementwise", "train", None),
    torch.dropout_: _Functional("torch.dropout_", "elementwise", "train", None),
    torch.feature_dropout: _Functional("torch.feature_dropout", "channel", "train", None),
    torch.feature_dropout_: _Functional("torch.feature_dropout_", "channel", "train", None),
    torch.alpha_dropout: _Functional("torch.alpha_dropout", "alpha", "train", None),
    torch.alpha_dropout_: _Functional("torch.alpha_dropout_", "alpha", "train", None),
    torch.feature_alpha_dropout: _Functional("torch.feature_alpha_dropout", "alpha", "train",
                                             None),
    torch.feature_alpha_dropout_: _Functional("torch.feature_alpha_dropout_", "alpha", "train",
                                              None),
}
#: attention with its own dropout: target -> (label, position of dropout_p, training flag name)
_ATTENTION = {F.scaled_dot_product_attention: ("F.scaled_dot_product_attention", 4, None),
              F.multi_head_attention_forward: ("F.multi_head_attention_forward", 10, "training")}
#: operations that only reshape (and ``nn.Flatten`` / ``nn.Identity`` modules): dropout before
#: them still drops the next layer's input units
_SHAPE_METHODS = {"flatten", "view", "reshape", "contiguous"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
#: positively homogeneous activations, f(c h) = c f(h) for c >= 0: a 0/1 mask scaled by
#: 1/keep_prob passes through them unchanged, so dropout in front of them still drops the next
#: layer's input units
_HOMOGENEOUS_MODULES = (nn.ReLU, nn.LeakyReLU)
_HOMOGENEOUS_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.leaky_relu}
_HOMOGENEOUS_METHODS = {"relu"}
#: which dropout kinds cover which layer kinds
_COVERS = {"linear": {"elementwise"}, "conv1d": {"channel1d", "channel"},
           "conv2d": {"channel2d", "channel"}}
_ADVICE = {"linear": "nn.Dropout (F.dropout)", "conv1d": "nn.Dropout1d (F.dropout1d)",
           "conv2d": "nn.Dropout2d (F.dropout2d)"}
_TYPE_NAMES = {"linear": "nn.Linear", "conv1d": "nn.Conv1d", "conv2d": "nn.Conv2d"}


@dataclass(frozen=True)
class CoveredLayer:
    r"""One covered layer: where it is, its kind, its keep probability and its weight's shape.

    Attributes:
        name: the module path (``module.get_submodule(name)``).
        kind: ``"linear"``, ``"conv1d"`` or ``"conv2d"``.
        keep_prob: :math:`\pi \in (0, 1]`, the probability that an input unit / channel is kept.
        weight_shape: the module's weight shape (``out x in`` or ``out x in/g x k...``).
        has_bias: whether the layer has a bias.
        dropout: the path of the dropout MODULE in front of it (``None``: none, a functional
            dropout, or the explicit map).
        groups: :math:`g`, the convolution's groups (1 for a linear layer).
        dropout_call: the functional dropout in front of it (e.g. ``"dropout_1 in
            Net.forward"``), ``None`` otherwise.
    """

    name: str
    kind: str
    keep_prob: float
    weight_shape: tuple[int, ...]
    has_bias: bool
    dropout: str | None = None
    groups: int = 1
    dropout_call: str | None = None

    @property
    def num_cols(self) -> int:
        """:math:`Q`: input units (linear) or input channels (conv, all groups)."""
        return self.weight_shape[1] * self.groups

    @property
    def num_rows(self) -> int:
        """:math:`K`: the length of a column (``out``, or ``out/g * prod(kernel)`` for a conv)."""
        return math.prod(self.weight_shape) // self.weight_shape[1] // self.groups

    @property
    def out_features(self) -> int:
        """Output units / channels (the bias size)."""
        return self.weight_shape[0]

    def to_columns(self, weight: torch.Tensor) -> torch.Tensor:
        r"""The module-layout weight (``... x out x in/g x k...``) as ``... x K x Q`` columns.

        Row :math:`(o', \kappa)` of column :math:`c` holds the weight from input channel
        :math:`c` (group :math:`j = \lfloor c / (\text{in}/g) \rfloor`) to output channel
        :math:`j\,\text{out}/g + o'` at kernel position :math:`\kappa`; weights between channels
        of different groups do not exist and have no row."""
        if self.kind == "linear":
            return weight
        nk = len(self.weight_shape) - 2
        lead = weight.shape[:weight.dim() - nk - 2]
        out, ig, *kernel = self.weight_shape
        g = self.groups
        w = weight.reshape(*lead, g, out // g, ig, *kernel)  # ... x g x og x ig x k...
        n = len(lead)
        # -> ... x og x k... x g x ig
        perm = (*range(n), n + 1, *range(n + 3, n + 3 + nk), n, n + 2)
        return w.permute(perm).reshape(*lead, self.num_rows, self.num_cols)

    def from_columns(self, columns: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_columns`: ``... x K x Q`` -> ``... x out x in/g x k...``."""
        if self.kind == "linear":
            return columns
        nk = len(self.weight_shape) - 2
        lead = columns.shape[:-2]
        out, ig, *kernel = self.weight_shape
        g = self.groups
        w = columns.reshape(*lead, out // g, *kernel, g, ig)  # ... x og x k... x g x ig
        n = len(lead)
        # -> ... x g x og x ig x k...
        perm = (*range(n), n + nk + 1, n, n + nk + 2, *range(n + 1, n + 1 + nk))
        return w.permute(perm).reshape(*lead, *self.weight_shape)

    def means_from_module(self, weight: torch.Tensor) -> torch.Tensor:
        r"""Seed-convention means :math:`\mathbf{M} = \mathbf{W}'/\pi` as ``K x Q`` columns."""
        return self.to_columns(weight) / self.keep_prob

    def module_weight(self, means: torch.Tensor) -> torch.Tensor:
        r"""The module's weight :math:`\mathbf{W}' = \pi\mathbf{M}` from ``K x Q`` means."""
        return self.from_columns(means * self.keep_prob)


class DisabledDropout(NamedTuple):
    """An uncovered dropout that ``uncovered_dropout="disable"`` switched off in the model.

    Attributes:
        name: the module path (``"lstm"``, ``"encoder.layers.0.dropout1"``) or, for a functional
            call, ``"<fx node> in <module>.forward"``.
        kind: the module type (``"LSTM"``, ``"MultiheadAttention"``, ``"Dropout"``) or the
            function (``"F.dropout"``).
        keep_prob: its probability of keeping a unit, ``1 - p`` of the module or call (NaN when
            its ``p`` is not a constant).
        reason: why the family cannot cover it.
    """

    name: str
    kind: str
    keep_prob: float
    reason: str


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_module` found: the covered layers and the dropout it switched off.

    Attributes:
        layers: the covered layers, in call order.
        disabled: the uncovered dropout switched off (empty unless ``uncovered_dropout=
            "disable"`` and the network has some).
        uncovered_dropout: the policy it ran with (``"refuse"`` or ``"disable"``).
        disabled_calls: the ``torch.fx`` node names of the disabled functional dropout calls
            (for :func:`without_disabled_dropout`).
    """

    layers: tuple[CoveredLayer, ...]
    disabled: tuple[DisabledDropout, ...] = ()
    uncovered_dropout: str = "refuse"
    disabled_calls: tuple[str, ...] = ()

    def describe_disabled(self) -> str:
        """One line per disabled dropout (``"none"`` when there is none), for summaries."""
        if not self.disabled:
            return "none"
        return "; ".join(f"{d.name} ({d.kind}, keep_prob {d.keep_prob:g}): {d.reason}"
                         for d in self.disabled)


# torch's dropout modules and functions take the drop rate p; the two functions below are the
# only places here that turn one into a keep_prob.
def _dropout_keep_prob(p: float, where: str = "the dropout") -> float:
    return check_keep_prob(1.0 - float(p), f"keep_prob (1 - p of {where})")


def _disabled(name: str, kind: str, p: float, reason: str) -> DisabledDropout:
    """A :class:`DisabledDropout` of a dropout with drop rate ``p`` (NaN: not a constant)."""
    return DisabledDropout(name, kind, 1.0 - float(p), reason)


#: ``torch.nn`` containers: never called as one module, their layers are the network's own
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _is_torch_leaf(module: nn.Module) -> bool:
    """``torch.fx``'s default leaf rule: a ``torch.nn`` module other than a container
    (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``, whose layers are the network's
    own)."""
    return ((module.__module__.startswith("torch.nn") or module.__module__.startswith("torch.ao.nn"))
            and not isinstance(module, _CONTAINERS))


def _inside_leaf(modules: dict[str, nn.Module]) -> dict[str, str]:
    """``{path: path of the outermost torch.nn leaf module strictly containing it}``."""
    leaves = [p for p, m in modules.items() if p and _is_torch_leaf(m) and any(
        True for _ in m.children())]
    out = {}
    for path in modules:
        for leaf in leaves:
            if path.startswith(leaf + ".") and (path not in out or len(leaf) < len(out[path])):
                out[path] = leaf
    return out


@contextlib.contextmanager
def _train_mode(module: nn.Module):
    flags = {m: m.training for m in module.modules()}
    try:
        module.train()
        yield module
    finally:
        for m, flag in flags.items():
            m.training = flag


def _trace(module: nn.Module) -> torch.fx.GraphModule:
    try:
        with _train_mode(module):
            return torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - torch.fx raises many types; say it in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"module {type(module).__name__} cannot be traced by torch.fx ({first}); pass the "
            f"dropout map explicitly: keep_probs={{layer name: keep_prob}} (verify: --keep-probs "
            f"NAME=KEEP_PROB,...)"
        ) from None


def _arg(node: torch.fx.Node, index: int, name: str, default):
    if name in node.kwargs:
        return node.kwargs[name]
    if len(node.args) > index:
        return node.args[index]
    return default


def _where(node: torch.fx.Node, root: nn.Module) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    path = next(reversed(stack), "") if stack else ""
    return f"{node.name} in {path or type(root).__name__}.forward"


def _kind_of(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return "linear"
    return "conv2d" if isinstance(layer, nn.Conv2d) else "conv1d"


class _Site(NamedTuple):
    """One dropout found in the graph."""

    node: torch.fx.Node
    name: str       # module path or "<node> in <module>.forward"
    label: str      # "Dropout" / "F.dropout" ...
    kind: str       # elementwise / channel1d / channel2d / channel3d / channel / alpha
    p: float | None  # the drop rate torch is handed; None: not a constant
    is_module: bool


def _dropout_site(node: torch.fx.Node, modules, root) -> _Site | None:
    """The dropout at ``node``, or ``None`` (not a dropout, or one that never drops)."""
    if node.op == "call_module":
        target = modules.get(node.target)
        if not isinstance(target, _DROPOUT_TYPES):
            return None
        kind = next(k for t, k in _MODULE_KINDS.items() if isinstance(target, t))
        return _Site(node, node.target, type(target).__name__, kind, float(target.p), True)
    if node.op == "call_function" and node.target in _FUNCTIONAL:
        spec = _FUNCTIONAL[node.target]
        p = _arg(node, 1, "p", 0.5)
        training = _arg(node, 2, spec.training_name, spec.training_default)
        if training is False or (isinstance(p, (int, float)) and float(p) == 0.0):
            return None  # inactive: it returns its input
        rate = float(p) if isinstance(p, (int, float)) else None
        return _Site(node, _where(node, root), spec.label, spec.kind, rate, False)
    return None


def _consumer(node: torch.fx.Node, modules) -> tuple[torch.fx.Node | None, bool, str | None]:
    """Follow the single user of ``node`` through reshapes: ``(consumer, reshaped, problem)``."""
    users = list(node.users)
    reshaped = False
    while True:
        if len(users) != 1:
            return None, reshaped, (f"its output goes to {len(users)} places "
                                    f"({', '.join(repr(u.name) for u in users)}): the family "
                                    f"draws one independent mask per covered layer")
        consumer = users[0]
        homogeneous = ((consumer.op == "call_method" and consumer.target in _HOMOGENEOUS_METHODS)
                       or (consumer.op == "call_function"
                           and consumer.target in _HOMOGENEOUS_FUNCTIONS)
                       or (consumer.op == "call_module"
                           and isinstance(modules.get(consumer.target), _HOMOGENEOUS_MODULES)))
        is_shape = ((consumer.op == "call_method" and consumer.target in _SHAPE_METHODS)
                    or (consumer.op == "call_function" and consumer.target in _SHAPE_FUNCTIONS)
                    or (consumer.op == "call_module"
                        and isinstance(modules.get(consumer.target), (nn.Flatten, nn.Identity))))
        if not (is_shape or homogeneous):
            return consumer, reshaped, None
        if is_shape and not ((consumer.op == "call_method" and consumer.target == "contiguous")
                             or (consumer.op == "call_module"
                                 and isinstance(modules.get(consumer.target), nn.Identity))):
            reshaped = True
        users = list(consumer.users)


def _describe_consumer(consumer: torch.fx.Node, modules) -> str:
    if consumer.op == "output":
        return "the network's output"
    if consumer.op == "call_module":
        return f"layer {consumer.target!r} ({type(modules[consumer.target]).__name__})"
    target = getattr(consumer.target, "__name__", str(consumer.target))
    return f"operation {consumer.name!r} ({target})"


def _uncovered_reason(site: _Site, consumer, reshaped: bool, modules) -> str | None:
    """Why ``site`` (feeding ``consumer``) is not covered, or ``None`` when it is."""
    label = f"{site.label} {site.name!r}" if not site.is_module else f"dropout {site.name!r}"
    if site.p is None:
        return (f"{label}: its rate is not a constant (computed in forward), so the family's "
                f"keep_prob cannot be read")
    if site.kind == "alpha":
        return (f"{label}: alpha dropout sets dropped units to a negative saturation value and "
                f"rescales affinely; the family's masks zero a weight column")
    layer = modules.get(consumer.target) if consumer.op == "call_module" else None
    if not isinstance(layer, COVERED_TYPES):
        if consumer.op == "output":
            return (f"{label} is on the network's output: it multiplies the prediction by "
                    f"random masks, which is noise on the output, not a distribution over "
                    f"weights; the family has no counterpart")
        return (f"{label} feeds {_describe_consumer(consumer, modules)}: the MC dropout family "
                f"covers dropout directly in front of nn.Linear, nn.Conv1d or nn.Conv2d only")
    kind = _kind_of(layer)
    if site.kind in _COVERS[kind] and not (kind != "linear" and reshaped):
        return None
    if kind != "linear" and site.kind == "elementwise":
        return (f"elementwise {site.label} {site.name!r} in front of {_TYPE_NAMES[kind]} "
                f"{consumer.target!r} drops single pixels: the variational family then needs "
                f"one weight draw per output location (Gal & Ghahramani's Bayesian CNN), which "
                f"is not supported; use {_ADVICE[kind]} (one draw per input channel) in front "
                f"of the convolution")
    if kind != "linear" and reshaped:
        return (f"{site.label} {site.name!r} reaches {_TYPE_NAMES[kind]} {consumer.target!r} "
                f"through a reshape: its channels need not be the convolution's input channels")
    return (f"{site.label} {site.name!r} ({site.kind} dropout) in front of "
            f"{_TYPE_NAMES[kind]} {consumer.target!r} drops groups of input units together "
            f"(or channels of another dimension); the family drops each column independently: "
            f"use {_ADVICE[kind]} in front of it")


def _covered(name: str, layer: nn.Module, keep_prob: float, dropout: str | None,
             dropout_call: str | None = None) -> CoveredLayer:
    kind = _kind_of(layer)
    groups = 1 if kind == "linear" else int(layer.groups)
    return CoveredLayer(name, kind, keep_prob, tuple(layer.weight.shape), layer.bias is not None,
                        dropout, groups, dropout_call)


def _tree_uncovered(module: nn.Module, traced_dropouts: set[str] | None) -> list[DisabledDropout]:
    """Dropout the module tree shows and the graph cannot: recurrent, attention, and dropout
    modules inside ``torch.nn`` modules (``traced_dropouts``: the dropout modules the graph
    calls; ``None`` without a graph)."""
    modules = dict(module.named_modules())
    inside = _inside_leaf(modules)
    found = []
    for path, m in modules.items():
        if isinstance(m, nn.RNNBase):
            if float(m.dropout) > 0 and m.num_layers > 1:
                found.append(_disabled(
                    path or "<root>", type(m).__name__, float(m.dropout),
                    f"nn.{type(m).__name__} {path!r} drops the outputs of each stacked layer "
                    f"but the last (dropout={m.dropout:g}) inside its recurrent computation, not "
                    f"in front of a covered layer"))
        elif isinstance(m, nn.MultiheadAttention):
            if float(m.dropout) > 0:
                found.append(_disabled(
                    path or "<root>", type(m).__name__, float(m.dropout),
                    f"nn.MultiheadAttention {path!r} drops attention weights (the softmax "
                    f"output, dropout={m.dropout:g}), not the input units of a weight layer"))
        elif isinstance(m, _DROPOUT_TYPES):
            if float(m.p) > 0 and path in inside and (traced_dropouts is None
                                                      or path not in traced_dropouts):
                leaf = inside[path]
                found.append(_disabled(
                    path, type(m).__name__, float(m.p),
                    f"{type(m).__name__} {path!r} runs inside nn."
                    f"{type(modules[leaf]).__name__} {leaf!r}, a torch.nn module whose forward "
                    f"the conversion does not see: it is not in front of a covered layer"))
        elif path and _is_torch_leaf(m) and path not in inside:
            rate = getattr(m, "dropout", None)
            if isinstance(rate, float) and rate > 0:
                found.append(_disabled(
                    path, type(m).__name__, rate,
                    f"nn.{type(m).__name__} {path!r} has a dropout rate ({rate:g}) and runs as "
                    f"one torch.nn module whose forward the conversion does not see"))
    return found


def _layers_from_graph(module: nn.Module
                       ) -> tuple[list[CoveredLayer], list[DisabledDropout], list[str]]:
    graph = _trace(module).graph
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), COVERED_TYPES):
            calls[node.target] = calls.get(node.target, 0) + 1
    shared = {n: c for n, c in calls.items() if c > 1}
    if shared:
        raise ValueError(
            f"layer(s) {shared} are called more than once in forward (shared weights): one "
            f"weight draw per call would not be one draw of the shared weight, which the family "
            f"needs; give each call its own layer")
    uncovered: list[DisabledDropout] = []
    calls_off: list[str] = []
    feeds: dict[str, _Site] = {}
    traced_dropouts = set()
    for node in graph.nodes:
        if node.op == "call_function" and node.target in _ATTENTION:
            label, index, training_name = _ATTENTION[node.target]
            rate = _arg(node, index, "dropout_p", 0.0)
            training = _arg(node, 13, training_name, True) if training_name else True
            if training is not False and not (isinstance(rate, (int, float)) and rate == 0.0):
                uncovered.append(_disabled(
                    _where(node, module), label,
                    float(rate) if isinstance(rate, (int, float)) else float("nan"),
                    f"{label} call {node.name!r} drops attention weights (dropout_p), not the "
                    f"input units of a weight layer"))
                calls_off.append(node.name)
            continue
        if node.op == "call_module" and isinstance(modules.get(node.target), _DROPOUT_TYPES):
            traced_dropouts.add(node.target)
        site = _dropout_site(node, modules, module)
        if site is None:
            continue
        consumer, reshaped, problem = _consumer(node, modules)
        if problem is not None:
            problem = (f"dropout {site.name!r}" if site.is_module
                       else f"{site.label} {site.name!r}") + ": " + problem
        else:
            problem = _uncovered_reason(site, consumer, reshaped, modules)
        if problem is None and consumer.target in feeds:
            problem = (f"layer {consumer.target!r} has two dropouts in front of it "
                       f"({feeds[consumer.target].name!r} and {site.name!r})")
        if problem is not None:
            if site.is_module and site.p == 0.0:
                continue  # nn.Dropout(0.0) never drops
            uncovered.append(_disabled(
                site.name, site.label, site.p if site.p is not None else float("nan"), problem))
            if not site.is_module:
                calls_off.append(node.name)
            continue
        feeds[consumer.target] = site
    layers = []
    for name in calls:
        site = feeds.get(name)
        kp = (_dropout_keep_prob(site.p, f"{site.name!r} in front of {name!r}")
              if site is not None else 1.0)
        layers.append(_covered(
            name, modules[name], kp, site.name if site is not None and site.is_module else None,
            site.name if site is not None and not site.is_module else None))
    return layers, _tree_uncovered(module, traced_dropouts) + uncovered, calls_off


def convert_module(module: nn.Module, keep_probs: Mapping[str, float] | None = None, *,
                   uncovered_dropout: str = "refuse") -> Conversion:
    """The covered layers of ``module`` and the uncovered dropout switched off (see the module
    docstring).

    Args:
        module: the user's network.
        keep_probs: optional explicit map ``{layer name: keep_prob}``; then no tracing happens,
            every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` outside ``torch.nn`` containers
            such as ``nn.TransformerEncoderLayer`` is covered (in registration order) and layers
            not named get ``keep_prob = 1``.
        uncovered_dropout: ``"refuse"`` (default): dropout the family cannot cover raises,
            naming each one and why; ``"disable"``: it is switched off in the dropout-free copy
            (:func:`dropout_free_copy`) and listed in :attr:`Conversion.disabled`.

    Raises:
        ValueError: uncovered dropout (``"refuse"``), named with the reason and what to do; no
            layer to cover; a layer called twice; an untraceable module without ``keep_probs``;
            a bad name or keep_prob in ``keep_probs``; a bad ``uncovered_dropout``.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if uncovered_dropout not in UNCOVERED_DROPOUT_CHOICES:
        raise ValueError(f"uncovered_dropout must be one of {UNCOVERED_DROPOUT_CHOICES}, got "
                         f"{uncovered_dropout!r}")
    calls_off: list[str] = []
    if keep_probs is None:
        layers, uncovered, calls_off = _layers_from_graph(module)
    else:
        if not isinstance(keep_probs, Mapping):
            raise ValueError(f"keep_probs must be a dict {{layer name: keep_prob}}, got "
                             f"{type(keep_probs).__name__}")
        modules = dict(module.named_modules())
        inside = _inside_leaf(modules)
        candidates = {n: m for n, m in modules.items()
                      if isinstance(m, COVERED_TYPES) and n not in inside and n}
        unknown = [n for n in keep_probs if n not in candidates]
        if unknown:
            raise ValueError(f"keep_probs names {unknown}, which are not nn.Linear / nn.Conv1d "
                             f"/ nn.Conv2d layers of the module; its layers are "
                             f"{list(candidates)}")
        layers = [_covered(n, m, check_keep_prob(keep_probs.get(n, 1.0), f"keep_probs[{n!r}]"),
                           None)
                  for n, m in candidates.items()]
        uncovered = _tree_uncovered(module, None)
    if uncovered and uncovered_dropout == "refuse":
        shown = "; ".join(f"[{i + 1}] {d.reason}" for i, d in enumerate(uncovered[:8]))
        more = f"; and {len(uncovered) - 8} more" if len(uncovered) > 8 else ""
        raise ValueError(
            f"module {type(module).__name__} has dropout the MC dropout family cannot cover: "
            f"{shown}{more}. The family covers dropout directly in front of a weight layer "
            f"(nn.Dropout / F.dropout before nn.Linear, nn.Dropout2d before nn.Conv2d, "
            f"nn.Dropout1d before nn.Conv1d): move the dropout there or remove it; or pass "
            f"uncovered_dropout='disable' (verify: --disable-uncovered-dropout) to switch it "
            f"off, and the Bayesian model is then the "
            f"network WITHOUT it (listed in ModuleBNN.summary() and .disabled_dropout)")
    if not layers:
        raise ValueError(f"module {type(module).__name__} has no nn.Linear, nn.Conv1d or "
                         f"nn.Conv2d layer: the MC dropout family has nothing to cover")
    return Conversion(tuple(layers), tuple(uncovered), uncovered_dropout, tuple(calls_off))


def find_covered_layers(module: nn.Module, keep_probs: Mapping[str, float] | None = None, *,
                        uncovered_dropout: str = "refuse") -> list[CoveredLayer]:
    """The layers of ``module`` whose weights the MC dropout family covers, in call order
    (:func:`convert_module`'s ``layers``; use :func:`convert_module` to also get the dropout
    that ``uncovered_dropout="disable"`` switched off).

    Args:
        module: the user's network (its dropout modules and functional dropout calls tell
            where dropout acts; read by ``torch.fx`` tracing).
        keep_probs: optional explicit map ``{layer name: keep_prob}``; then no tracing happens,
            every covered-type layer is covered (in registration order) and layers not named get
            ``keep_prob = 1``.
        uncovered_dropout: ``"refuse"`` or ``"disable"`` (see :func:`convert_module`).

    Raises:
        ValueError: as :func:`convert_module`.
    """
    return list(convert_module(module, keep_probs, uncovered_dropout=uncovered_dropout).layers)


class DropoutOff(TorchFunctionMode):
    """A ``torch.overrides.TorchFunctionMode`` under which every functional dropout returns its
    input and attention runs with ``dropout_p = 0``.

    ``nn.Dropout``'s own forward calls ``F.dropout``, so this covers the module forms as well as
    ``F.dropout(h, p, training=self.training)`` written in a custom forward, and it works for
    networks ``torch.fx`` cannot trace (nothing is rewritten: the calls are intercepted while
    the network runs)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _FUNCTIONAL:
            return args[0] if args else kwargs["input"]
        if func is torch.native_dropout:
            x = args[0] if args else kwargs["input"]
            return x, torch.ones_like(x, dtype=torch.bool)
        if func in _ATTENTION:
            _, index, _ = _ATTENTION[func]
            if len(args) > index:
                args = (*args[:index], 0.0, *args[index + 1:])
            else:
                kwargs["dropout_p"] = 0.0
        return func(*args, **kwargs)


def _enter_dropout_off(module: nn.Module, args) -> None:
    mode = DropoutOff()
    mode.__enter__()
    module.__dict__.setdefault("_dropout_off_modes", []).append(mode)


def _exit_dropout_off(module: nn.Module, args, output) -> None:
    modes = module.__dict__.get("_dropout_off_modes")
    if modes:
        modes.pop().__exit__(None, None, None)


def is_dropout_free(module: nn.Module) -> bool:
    """Whether ``module`` was made by :func:`dropout_free_copy`."""
    return bool(module.__dict__.get("_vi_dropout_free", False))


def dropout_free_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in which no dropout acts, everything else as it was (training
    flags, parameter names, hooks): the family's draws replace the covered dropout, and the
    dropout :func:`convert_module` found uncovered is switched off (which it allows only with
    ``uncovered_dropout="disable"``; run the conversion first).

    How: dropout modules become ``nn.Identity``; ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` and
    ``nn.MultiheadAttention`` get ``dropout = 0``; and every call of the copy runs under
    :class:`DropoutOff` (a ``TorchFunctionMode`` entered by a forward pre-hook and left by an
    always-called forward hook), which turns every functional dropout (``F.dropout``, ...,
    ``torch.dropout``; the attention's ``dropout_p``) into the identity. Intercepting the calls
    rather than rewriting the ``torch.fx`` graph keeps the module's own class, its names and its
    data-dependent control flow, and works for modules ``torch.fx`` cannot trace."""
    clone = copy.deepcopy(module)
    for name, sub in list(clone.named_modules()):
        if isinstance(sub, _DROPOUT_TYPES) and name:
            parent, _, leaf = name.rpartition(".")
            setattr(clone.get_submodule(parent) if parent else clone, leaf, nn.Identity())
        elif isinstance(sub, (nn.RNNBase, nn.MultiheadAttention)):
            sub.dropout = 0.0
        elif name and _is_torch_leaf(sub) and isinstance(getattr(sub, "dropout", None), float):
            sub.dropout = 0.0
    if not is_dropout_free(clone):
        clone.register_forward_pre_hook(_enter_dropout_off, prepend=True)
        clone.register_forward_hook(_exit_dropout_off, always_call=True)
        clone.__dict__["_vi_dropout_free"] = True
    return clone


def without_disabled_dropout(module: nn.Module, conversion: Conversion) -> nn.Module:
    """A deep copy of ``module`` in which exactly the dropout ``conversion.disabled`` lists is
    switched off, while the covered dropout still acts: the network as the model sees it, with its
    own dropout (e.g. to train it the ordinary way and compare with the ELBO).

    Dropout modules become ``nn.Identity``, recurrent / attention modules get ``dropout = 0``;
    disabled functional calls are removed from the ``torch.fx`` graph (then a
    ``torch.fx.GraphModule`` with the same submodule names is returned). Without disabled dropout
    it is a plain deep copy."""
    if not isinstance(conversion, Conversion):
        raise ValueError(f"conversion must be a Conversion (convert_module), got "
                         f"{type(conversion).__name__}")
    clone = copy.deepcopy(module)
    names = {d.name for d in conversion.disabled}
    for name, sub in list(clone.named_modules()):
        if (name or "<root>") not in names:
            continue
        if isinstance(sub, _DROPOUT_TYPES) and name:
            parent, _, leaf = name.rpartition(".")
            setattr(clone.get_submodule(parent) if parent else clone, leaf, nn.Identity())
        elif isinstance(getattr(sub, "dropout", None), float):
            sub.dropout = 0.0
    if not conversion.disabled_calls:
        return clone
    calls = set(conversion.disabled_calls)
    with _train_mode(clone):
        gm = torch.fx.symbolic_trace(clone)
    found = set()
    for node in list(gm.graph.nodes):
        if node.name not in calls:
            continue
        found.add(node.name)
        if node.target in _ATTENTION:
            _, index, _ = _ATTENTION[node.target]
            if len(node.args) > index:
                node.args = (*node.args[:index], 0.0, *node.args[index + 1:])
            else:
                node.kwargs = {**node.kwargs, "dropout_p": 0.0}
        else:
            node.replace_all_uses_with(node.args[0] if node.args else node.kwargs["input"])
            gm.graph.erase_node(node)
    if found != calls:
        raise ValueError(f"the module's graph has no call(s) {sorted(calls - found)}: it is not "
                         f"the module this conversion was made from")
    gm.recompile()
    gm.training = clone.training  # the submodules are clone's, flags as they were
    return gm
