r"""Where a piecewise network's branch changes under the jitter: ReLU units crossing their kink,
max-pool windows choosing another input, comparisons changing sign.

The equivalence of Gal & Ghahramani compares the gradient of the full ELBO at jitter
:math:`\theta` with the gradient of the dropout loss, with the same masks and the same standard
normals (common random numbers). Where the network is smooth, the two differ by
:math:`O(\theta)`. A ReLU whose pre-activation lies within the jitter of its kink switches
branch: that example's gradient through the unit changes by :math:`O(1)`, whatever
:math:`\theta`. The chance of a crossing is :math:`O(\theta)` per unit, so the *expected*
difference is still :math:`O(\theta)`, but a network with :math:`10^5` rectified units per
example sees crossings at every :math:`\theta` a fixed grid offers, and a pathwise comparison
then fails for a reason that has nothing to do with the derivation.

:class:`BranchRecorder` is a :class:`torch.overrides.TorchFunctionMode`: while it is active,
every call of a piecewise function records which branch each element took, whether the call
comes from a module (``nn.ReLU``, ``nn.MaxPool2d``) or from a functional call in a custom
``forward`` (``F.relu``, ``torch.clamp``, ``x > 0``). :func:`branch_changes` compares two
recordings of the same network (same calls in the same order) and says, per call, how many
elements changed branch and in how many examples.

What counts as a branch:

* kinks at fixed points: ``relu``, ``relu6``/``hardtanh``, ``leaky_relu``, ``threshold``,
  ``elu``/``selu``/``celu`` (a jump in the derivative unless :math:`\alpha = 1`: counted
  anyway), ``hardswish``, ``hardsigmoid``, ``abs``, ``clamp`` (``clamp_min``, ``clamp_max``),
  ``prelu``;
* selections: ``max_pool1d/2d/3d`` and ``adaptive_max_pool1d/2d/3d`` (the chosen input of each
  window), ``max``/``min`` along a dimension, ``maximum``/``minimum``;
* comparisons and steps: ``gt``, ``ge``, ``lt``, ``le``, ``sign``, ``heaviside``, ``round``,
  ``floor``, ``ceil``, ``argmax``, ``argmin``.

A selection that changes between two inputs whose values were equal in the first recording, up
to float64 rounding (a tie, e.g. in a constant image background), is not counted: both choices
give the same value, and for equal inputs the same gradient. Smooth functions (``tanh``, ``sigmoid``,
``gelu``, ``silu``, ``softplus``, ``softmax``, normalisation layers) have no branches. Fused
kernels that hide their branches from Python (none of ``torch.nn``'s layers does, apart from
``nn.LSTM``/``nn.GRU``, whose gates are smooth) are not seen.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> x = torch.randn(5, 2)
    >>> with BranchRecorder(batch_size=5) as before:
    ...     _ = net(x)
    >>> with BranchRecorder(batch_size=5) as after:
    ...     _ = net(x + 1e-3)
    >>> report = branch_changes(before, after)
    >>> report.num_units >= 0
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["BranchRecorder", "BranchChange", "BranchReport", "branch_changes"]

_T = torch.Tensor


def _name(fn) -> str:
    return getattr(fn, "__name__", str(fn)).strip("_")


# elementwise kinks: function -> the branch code of its first input
def _sign_code(x: _T) -> _T:
    return (x > 0).to(torch.int8)


def _clamp_code(lo, hi):
    def code(x: _T) -> _T:
        c = torch.zeros(x.shape, dtype=torch.int8, device=x.device)
        if lo is not None:
            c = torch.where(x < lo, torch.ones_like(c), c)
        if hi is not None:
            c = torch.where(x > hi, torch.full_like(c, 2), c)
        return c
    return code


def _arg(args, kwargs, index, name, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _elementwise_code(func, args, kwargs):
    """The branch code of an elementwise piecewise call, or ``None`` if ``func`` is not one."""
    name = _name(func)
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return None
    if name in ("relu", "relu_", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "selu_",
                "celu", "celu_", "prelu", "abs", "abs_", "sign", "heaviside"):
        return _sign_code(x)
    if name in ("hardtanh", "hardtanh_"):
        return _clamp_code(_arg(args, kwargs, 1, "min_val", -1.0),
                           _arg(args, kwargs, 2, "max_val", 1.0))(x)
    if name in ("relu6",):
        return _clamp_code(0.0, 6.0)(x)
    if name in ("hardswish", "hardsigmoid"):
        return _clamp_code(-3.0, 3.0)(x)
    if name in ("threshold", "threshold_"):
        return (x > _arg(args, kwargs, 1, "threshold")).to(torch.int8)
    if name in ("clamp", "clamp_", "clip", "clip_"):
        return _clamp_code(_arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max"))(x)
    if name in ("clamp_min", "clamp_min_"):
        return _clamp_code(_arg(args, kwargs, 1, "min"), None)(x)
    if name in ("clamp_max", "clamp_max_"):
        return _clamp_code(None, _arg(args, kwargs, 1, "max"))(x)
    if name in ("round", "floor", "ceil"):
        return torch.round(x) if name == "round" else getattr(torch, name)(x)
    return None


_COMPARISONS = {"gt", "ge", "lt", "le", "__gt__", "__ge__", "__lt__", "__le__", "greater",
                "greater_equal", "less", "less_equal"}
_POOLS = {
    "max_pool1d": F.max_pool1d, "max_pool2d": F.max_pool2d, "max_pool3d": F.max_pool3d,
    "max_pool1d_with_indices": F.max_pool1d, "max_pool2d_with_indices": F.max_pool2d,
    "max_pool3d_with_indices": F.max_pool3d,
    "adaptive_max_pool1d": F.adaptive_max_pool1d, "adaptive_max_pool2d": F.adaptive_max_pool2d,
    "adaptive_max_pool3d": F.adaptive_max_pool3d,
    "adaptive_max_pool1d_with_indices": F.adaptive_max_pool1d,
    "adaptive_max_pool2d_with_indices": F.adaptive_max_pool2d,
    "adaptive_max_pool3d_with_indices": F.adaptive_max_pool3d,
}
_POOL_DIMS = {"1d": 1, "2d": 2, "3d": 3}
#: two candidates of a selection closer than this times the largest candidate are a tie: the
#: rounding of the float64 sums that produced them (``n * eps`` with ``n`` up to ~1e3 terms) is
#: larger, so such values come from equal inputs (a constant image background), where either
#: choice gives the same value and gradient
_TIE_RTOL = 1e-12


@dataclass
class _Event:
    """One recorded call: ``kind`` ``"code"`` (elementwise branch codes) or ``"select"`` (the
    chosen index per output and the input it chose from, for tie detection)."""

    label: str
    kind: str
    code: _T
    source: _T | None = None  # selections: the candidates, gathered along the selection axis


class BranchRecorder(TorchFunctionMode):
    """Record the branch of every piecewise call while active (a ``with`` block).

    Args:
        batch_size: ``B``, the examples' dimension is the first of every tensor with ``B`` rows
            (used to count the examples affected; other tensors count elements only).
        module: optional network whose submodule names label the calls (``"act1 (ReLU)"``);
            calls outside a named submodule are labelled by function and order
            (``"relu #2"``).

    After the block, ``events`` holds one entry per recorded call, in call order.
    """

    def __init__(self, batch_size: int, module: nn.Module | None = None):
        super().__init__()
        self.batch_size = int(batch_size)
        self.events: list[_Event] = []
        self._names = {id(m): n for n, m in module.named_modules()} if module is not None else {}
        self._stack: list[str] = []
        self._handles = []
        self._counts: dict[str, int] = {}

    # --- which module is running (labels) ------------------------------------------------------
    def __enter__(self):
        if self._names:
            def pre(mod, _args):
                name = self._names.get(id(mod))
                self._stack.append(f"{name} ({type(mod).__name__})" if name else "")

            def post(_mod, _args, _out):
                if self._stack:
                    self._stack.pop()

            self._handles = [nn.modules.module.register_module_forward_pre_hook(pre),
                             nn.modules.module.register_module_forward_hook(post)]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return super().__exit__(*exc)

    def _label(self, name: str) -> str:
        where = next((s for s in reversed(self._stack) if s), "")
        self._counts[name] = self._counts.get(name, 0) + 1
        return f"{name} #{self._counts[name]}" + (f" in {where}" if where else "")

    # --- the recording -------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            self._record(func, args, kwargs, out)
        except Exception:  # noqa: BLE001 - recording must never break the user's forward
            pass
        return out

    def _record(self, func, args, kwargs, out):
        name = _name(func)
        if name in _POOLS:
            x = args[0]
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                return
            fn = _POOLS[name]
            call_kwargs = {k: v for k, v in kwargs.items() if k != "return_indices"}
            call_args = list(args[1:])
            with torch.no_grad():
                with _Paused():
                    _, idx = fn(x.detach(), *call_args, **call_kwargs, return_indices=True)
                    dims = _POOL_DIMS[name.split("pool")[1][:2]]
                    plane = x.detach().flatten(-dims)
            self.events.append(_Event(self._label(name.replace("_with_indices", "")), "select",
                                      idx, plane))
            return
        if name in ("max", "min") and isinstance(out, tuple) and len(out) == 2:
            x = args[0]
            dim = _arg(args, kwargs, 1, "dim")
            if isinstance(x, torch.Tensor) and x.is_floating_point() and dim is not None:
                idx = out[1].detach()
                keep = _arg(args, kwargs, 2, "keepdim", False)
                self.events.append(_Event(self._label(name), "select",
                                          idx if keep else idx.unsqueeze(dim),
                                          x.detach().movedim(dim, -1)))
                self.events[-1].code = self.events[-1].code.movedim(dim, -1)
            return
        if name in ("argmax", "argmin") and isinstance(out, torch.Tensor):
            self.events.append(_Event(self._label(name), "code", out.detach()))
            return
        if name in ("maximum", "minimum", "fmax", "fmin") and len(args) >= 2:
            a, b = args[0], args[1]
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                with _Paused():
                    self.events.append(_Event(self._label(name), "code",
                                              (a.detach() > b.detach()).to(torch.int8)))
            return
        if name in _COMPARISONS and isinstance(out, torch.Tensor) and out.dtype == torch.bool:
            self.events.append(_Event(self._label(name.strip("_")), "code", out.detach()))
            return
        with _Paused():
            code = _elementwise_code(func, args, kwargs)
        if code is not None:
            self.events.append(_Event(self._label(name.rstrip("_")), "code", code))


class _Paused:
    """Run a block without any active torch function mode (the recorder's own computations)."""

    def __enter__(self):
        self._ctx = torch._C.DisableTorchFunction()
        self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@dataclass(frozen=True)
class BranchChange:
    """The elements of one recorded call whose branch differs between two recordings."""

    label: str
    num_units: int
    examples: tuple[int, ...]


@dataclass(frozen=True)
class BranchReport:
    """Every call with a changed branch (:func:`branch_changes`)."""

    changes: tuple[BranchChange, ...] = field(default_factory=tuple)
    mismatch: str = ""

    @property
    def num_units(self) -> int:
        """Elements that changed branch, over all calls."""
        return sum(c.num_units for c in self.changes)

    @property
    def examples(self) -> tuple[int, ...]:
        """The examples (rows of the batch) with a change in any call, sorted."""
        return tuple(sorted({e for c in self.changes for e in c.examples}))

    def __bool__(self) -> bool:
        return bool(self.changes) or bool(self.mismatch)

    def describe(self, max_calls: int = 3) -> str:
        """One line: ``"12 units changed branch in 9 examples (relu #2 in act1 (ReLU): 10,
        max_pool2d #1: 2)"``; ``""`` when nothing changed."""
        if self.mismatch:
            return self.mismatch
        if not self.changes:
            return ""
        parts = [f"{c.label}: {c.num_units}" for c in
                 sorted(self.changes, key=lambda c: -c.num_units)[:max_calls]]
        more = len(self.changes) - max_calls
        return (f"{self.num_units} units changed branch (a ReLU crossing its kink, a max-pool "
                f"choosing another input) in {len(self.examples)} examples ("
                + ", ".join(parts) + (f", and {more} more calls" if more > 0 else "") + ")")


def _rows(diff: _T, batch: int) -> tuple[int, ...]:
    if diff.dim() >= 1 and diff.shape[0] == batch:
        return tuple(int(i) for i in diff.reshape(batch, -1).any(1).nonzero().flatten())
    return ()


def branch_changes(before: BranchRecorder | Sequence[_Event],
                   after: BranchRecorder | Sequence[_Event], batch_size: int | None = None
                   ) -> BranchReport:
    """Compare two recordings of the same network on the same examples; see the module
    docstring. Recordings of different call sequences (a network whose control flow depends on
    the values) give a report whose ``mismatch`` says so."""
    if batch_size is None:
        batch_size = getattr(before, "batch_size", -1)
    ev0 = before.events if isinstance(before, BranchRecorder) else list(before)
    ev1 = after.events if isinstance(after, BranchRecorder) else list(after)
    if len(ev0) != len(ev1) or any(a.label != b.label for a, b in zip(ev0, ev1)):
        return BranchReport((), f"the network made different piecewise calls in the two runs "
                                f"({len(ev0)} against {len(ev1)}): its control flow depends on "
                                f"the values")
    changes = []
    for a, b in zip(ev0, ev1):
        if a.code.shape != b.code.shape:
            return BranchReport((), f"call {a.label} has shape {tuple(a.code.shape)} in one run "
                                    f"and {tuple(b.code.shape)} in the other")
        diff = a.code != b.code
        if a.kind == "select" and bool(diff.any()):
            # a tie in the first run is not a branch change: both inputs had the same value
            src = a.source
            v0 = src.gather(-1, a.code.reshape(*src.shape[:-1], -1)).reshape(a.code.shape)
            v1 = src.gather(-1, b.code.reshape(*src.shape[:-1], -1)).reshape(a.code.shape)
            tie = _TIE_RTOL * float(src.abs().max()) if src.numel() else 0.0
            diff = diff & ((v0 - v1).abs() > tie)
        n = int(diff.sum())
        if n:
            changes.append(BranchChange(a.label, n, _rows(diff, batch_size)))
    return BranchReport(tuple(changes))
