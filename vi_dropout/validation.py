"""Argument checks shared by the package: every failure is a ``ValueError`` that names the
argument, the expected range and the value that arrived."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_keep_prob",
    "check_learnable_keep_prob",
    "check_positive",
    "check_positive_int",
    "check_finite",
    "check_targets",
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


def check_learnable_keep_prob(value, name: str = "keep_prob") -> float:
    """``value`` as a float in the OPEN interval ``(0, 1)``: a keep_prob to be learned (through
    its logit, which is finite only there).

    Example:
        >>> check_learnable_keep_prob(1.0)
        Traceback (most recent call last):
        ...
        ValueError: keep_prob must lie in the open interval (0, 1) to be learned (the probability that a unit is KEPT; drop_rate = 1 - keep_prob), got 1.0
    """
    try:
        v = float(value.item() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError, AttributeError):
        raise ValueError(f"{name} must be a real number in (0, 1), got {value!r}") from None
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie in the open interval (0, 1) to be learned (the "
                         f"probability that a unit is KEPT; drop_rate = 1 - keep_prob), got "
                         f"{value!r}")
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


def check_targets(y, name: str = "y", *, num_rows: int | None = None,
                  num_outputs: int | None = None, likelihood: str = "gaussian") -> torch.Tensor:
    """Check a target tensor against the toolkit's ONE rule for target shapes.

    * Regression (``likelihood="gaussian"``): targets are ``... x N x D`` with at least two dims,
      ``N x 1`` for one output. A 1-D ``(N,)`` is refused, never reshaped: it would broadcast
      against the ``N x 1`` outputs and score every point against every target.
    * Classification (``likelihood="categorical"``): ``N`` integer class indices (a float tensor
      holding integers is accepted).

    ``num_rows`` (``N``) and ``num_outputs`` (``D``) are checked when given. Returns ``y``.

    Example:
        >>> check_targets(torch.zeros(5), num_rows=5)
        Traceback (most recent call last):
        ...
        ValueError: y must have shape N x D (N x 1 for one output), got a 1-D tensor of shape (5,): pass y.reshape(-1, 1) (a 1-D y would broadcast against the N x 1 outputs)
    """
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if likelihood == "categorical":
        if y.dim() != 1:
            raise ValueError(
                f"{name} must hold N class indices (shape (N,)) for a categorical likelihood, "
                f"got shape {tuple(y.shape)}"
            )
        check_finite(y, name)
        if y.is_floating_point() and bool((y != torch.round(y)).any()):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
        if y.numel() and int(y.min()) < 0:
            raise ValueError(f"{name} must hold class indices >= 0, got {int(y.min())}")
        if num_outputs is not None and y.numel() and int(y.max()) >= num_outputs:
            raise ValueError(
                f"{name} must hold class indices < {num_outputs} (the number of outputs), "
                f"got {int(y.max())}"
            )
    else:
        if y.dim() < 2:
            raise ValueError(
                f"{name} must have shape N x D (N x 1 for one output), got a {y.dim()}-D tensor "
                f"of shape {tuple(y.shape)}: pass {name}.reshape(-1, 1) (a 1-D {name} would "
                f"broadcast against the N x 1 outputs)"
            )
        check_finite(y, name)
        if num_outputs is not None and y.shape[-1] != num_outputs:
            raise ValueError(
                f"{name} must have {num_outputs} column(s) (one per output), got shape "
                f"{tuple(y.shape)}"
            )
    rows = y.shape[0] if likelihood == "categorical" else y.shape[-2]
    if num_rows is not None and rows != num_rows:
        raise ValueError(f"{name} must have {num_rows} rows like x, got shape {tuple(y.shape)}")
    return y
