r"""A network's inputs: one tensor, a tuple of tensors (positional arguments) or a dict of tensors
(keyword arguments), every tensor batch first.

A user's ``forward(self, x)`` takes ``x``; ``forward(self, image, features)`` takes
``(image, features)`` or ``{"image": ..., "features": ...}``. Every function of the toolkit that
runs a user's network (the model, the ELBOs, the predictive, ``verify``) accepts these three
forms and reads the batch size, subsets, converts and calls through this module, so a two-input
model goes wherever a one-input model goes.

Example:
    >>> x = {"image": torch.zeros(5, 1, 8, 8), "features": torch.zeros(5, 3)}
    >>> batch_size(x)
    5
    >>> {k: tuple(v.shape) for k, v in take(x, torch.arange(2)).items()}
    {'image': (2, 1, 8, 8), 'features': (2, 3)}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

__all__ = ["Inputs", "check_inputs", "batch_size", "take", "map_inputs", "call", "describe",
           "tensors", "float_dtype", "device_of", "shapes_key"]

#: one tensor, a tuple of tensors (positional) or a dict of tensors (keywords), batch first
Inputs = torch.Tensor | tuple | Mapping


def tensors(x: Inputs) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` pairs of ``x``: ``"x"`` for one tensor, ``"x[i]"`` for a tuple, the
    keys of a dict."""
    if isinstance(x, torch.Tensor):
        return [("x", x)]
    if isinstance(x, Mapping):
        return [(str(k), v) for k, v in x.items()]
    return [(f"x[{i}]", v) for i, v in enumerate(x)]


def check_inputs(x, name: str = "x", *, finite: bool = True) -> Inputs:
    """Check that ``x`` is one of the three forms, every tensor has a batch dimension of the same
    size and (``finite``) finite floating values; a list becomes a tuple. Returns ``x``.

    Raises:
        ValueError: naming ``name`` (or the offending entry), what was expected and what arrived.
    """
    if isinstance(x, list):
        x = tuple(x)
    if isinstance(x, torch.Tensor):
        pass
    elif isinstance(x, tuple):
        if not x:
            raise ValueError(f"{name} must be a tensor, a tuple of tensors or a dict of tensors, "
                             f"got an empty tuple")
    elif isinstance(x, Mapping):
        if not x:
            raise ValueError(f"{name} must be a tensor, a tuple of tensors or a dict of tensors, "
                             f"got an empty dict")
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{name}: dict keys must be the forward's parameter names (str), "
                             f"got {bad!r}")
    else:
        raise ValueError(f"{name} must be a tensor, a tuple of tensors or a dict of tensors, got "
                         f"{type(x).__name__}")
    sizes = {}
    for key, value in tensors(x):
        label = name if key == "x" else (f"{name}{key[1:]}" if key.startswith("x[")
                                         else f"{name}[{key!r}]")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{label} must be a tensor, got {type(value).__name__}")
        if value.dim() < 1:
            raise ValueError(f"{label} must have a batch dimension first, got a scalar")
        if finite:
            if not (value.is_floating_point() or value.dtype in (torch.int64, torch.int32,
                                                                 torch.bool)):
                raise ValueError(f"{label} must hold real numbers, got dtype {value.dtype}")
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise ValueError(f"{label} must be finite, got {bad} NaN or inf entries")
        sizes[label] = value.shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{name}: every input needs the same batch size (first dimension), got "
                         + ", ".join(f"{k}: {v}" for k, v in sizes.items()))
    return x


def batch_size(x: Inputs) -> int:
    """The batch size ``B`` (first dimension) of the inputs."""
    return int(tensors(x)[0][1].shape[0])


def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], x: Inputs) -> Inputs:
    """``x`` with ``fn`` applied to every tensor, in the same form."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, Mapping):
        return {k: fn(v) for k, v in x.items()}
    return tuple(fn(v) for v in x)


def take(x: Inputs, index) -> Inputs:
    """The examples ``index`` (a slice, an index tensor or a boolean mask) of every input."""
    return map_inputs(lambda v: v[index], x)


def call(module: nn.Module | Callable, x: Inputs):
    """``module(x)``, ``module(*x)`` or ``module(**x)`` by the form of ``x``."""
    if isinstance(x, torch.Tensor):
        return module(x)
    if isinstance(x, Mapping):
        return module(**x)
    return module(*x)


def describe(x: Inputs) -> str:
    """The shapes of the inputs, for messages: ``(200, 1, 28, 28)`` or
    ``image (200, 1, 8, 8), features (200, 3)``."""
    if isinstance(x, torch.Tensor):
        return str(tuple(x.shape))
    return ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors(x))


def float_dtype(x: Inputs, default: torch.dtype | None = None) -> torch.dtype | None:
    """The dtype of the first floating-point input (``default`` when every input is integer,
    e.g. token ids)."""
    return next((v.dtype for _, v in tensors(x) if v.is_floating_point()), default)


def device_of(x: Inputs) -> torch.device:
    """The device of the first input."""
    return tensors(x)[0][1].device


def shapes_key(x: Inputs) -> tuple:
    """A hashable key of the inputs' names, shapes and dtypes (for caches of per-shape facts)."""
    return tuple((k, tuple(v.shape), v.dtype) for k, v in tensors(x))
