"""Argument checks shared by the package: every failure is a ``ValueError`` that names the
argument, the expected range and the value that arrived."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_keep_prob",
    "check_positive",
    "check_positive_int",
    "check_finite",
    "per_layer",
]


def _as_float(name: str, value) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None


def check_keep_prob(value, name: str = "keep_prob") -> float:
    """Return ``value`` as a float after checking ``0 < value <= 1``."""
    v = _as_float(name, value)
    if not (0.0 < v <= 1.0) or math.isnan(v):
        raise ValueError(
            f"{name} must lie in (0, 1] (the probability that a unit is KEPT; "
            f"drop_rate = 1 - keep_prob), got {value!r}"
        )
    return v


def check_positive(value, name: str) -> float:
    """Return ``value`` as a float after checking it is finite and ``> 0``."""
    v = _as_float(name, value)
    if not (v > 0.0) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, int | torch.SymInt):
        try:
            iv = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}") from None
        if iv != value:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        value = iv
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Raise if ``tensor`` holds NaN or inf, saying how many entries are bad."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_floating_point():
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            raise ValueError(
                f"{name} must be finite, but {int(bad.sum())} of {tensor.numel()} entries are "
                f"NaN or inf"
            )
    return tensor


def per_layer(value, num_layers: int, name: str, check) -> tuple[float, ...]:
    """Broadcast a scalar or a per-layer sequence to a tuple of ``num_layers`` checked floats."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != num_layers:
            raise ValueError(
                f"{name} must be a number or a sequence of {num_layers} numbers (one per layer), "
                f"got a sequence of length {len(value)}: {list(value)!r}"
            )
        return tuple(check(v, f"{name}[{i}]") for i, v in enumerate(value))
    return tuple(check(value, name) for _ in range(num_layers))
