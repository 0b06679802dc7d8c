"""Argument checks shared by the package: every failure is a ``ValueError`` that names the
argument, the expected range and the value that arrived.

The ONE rule for argument types lives here: a number is a real number (a Python ``int`` or
``float``, a NumPy number, a one-element tensor), and **bools and strings are not numbers**:
``True``, ``np.True_``, a bool tensor, ``"0.9"`` are refused by every checker below
(:func:`check_real`, :func:`check_keep_prob`, :func:`check_positive`, :func:`check_int`, ...),
never read as ``1`` or parsed. Every public entry point checks its numeric arguments through these
helpers, so the rule is the same everywhere.

The checks of plain numbers do not import torch (a tensor can only arrive once torch is loaded),
so settings classes and command lines that use them stay light; the checks of tensors
(:func:`check_finite`, :func:`check_dtype`, :func:`check_targets`) import it when called.

Example:
    >>> check_keep_prob(np.float64(0.9)), check_positive_int(np.int64(10), "T")
    (0.9, 10)
    >>> check_keep_prob("0.9")
    Traceback (most recent call last):
    ...
    ValueError: keep_prob must be a real number in (0, 1], got a str ('0.9'): bools and strings are not numbers
    >>> check_positive_int(True, "T")
    Traceback (most recent call last):
    ...
    ValueError: T must be an integer >= 1, got a bool (True): bools and strings are not numbers
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "refuse_non_numbers",
    "check_bool",
    "check_real",
    "check_keep_prob",
    "check_learnable_keep_prob",
    "check_positive",
    "check_nonnegative",
    "check_int",
    "check_positive_int",
    "check_nonnegative_int",
    "check_finite",
    "check_dtype",
    "check_has_rows",
    "check_targets",
    "per_layer",
]


def _loaded_torch():
    """The torch module when it is already imported, else ``None``: a value cannot be a tensor
    (or a ``SymInt``) before torch is loaded, so the number checks never import it."""
    return sys.modules.get("torch")


def _non_number_kind(value) -> str | None:
    """``"bool"`` / ``"str"`` when ``value`` is a bool or a string in any of its forms (Python,
    NumPy, a bool tensor or array), else ``None``."""
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, str | bytes | np.str_ | np.bytes_):
        return "str"
    torch = _loaded_torch()
    if torch is not None and isinstance(value, torch.Tensor):
        return "bool tensor" if value.dtype == torch.bool else None
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            return "bool array"
        if value.dtype.kind in "SU":
            return "str array"
    return None


def refuse_non_numbers(value, name: str, expected: str = "a real number") -> None:
    """The one rule for argument types: bools and strings are not numbers. Refuses ``value``
    when it is a bool or a string in any form (Python, NumPy, a bool tensor or array), naming
    ``name`` and what was ``expected``; every checker here starts with it, and a function that
    takes numbers in a container (a tensor, an array) calls it directly.

    Example:
        >>> refuse_non_numbers(torch.tensor([True, False]), "keep_probs", "real numbers")
        Traceback (most recent call last):
        ...
        ValueError: keep_probs must be real numbers, got a bool tensor (tensor([ True, False])): bools and strings are not numbers
    """
    kind = _non_number_kind(value)
    if kind is not None:
        raise ValueError(f"{name} must be {expected}, got a {kind} ({value!r}): bools and "
                         f"strings are not numbers")


def _as_float(name: str, value, expected: str = "a real number") -> float:
    refuse_non_numbers(value, name, expected)
    torch = _loaded_torch()
    if torch is not None and isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None


def check_bool(value, name: str) -> bool:
    """Return ``value`` as a bool after checking it is one (``True``/``False`` or a numpy bool):
    a string such as ``"False"`` is truthy, and a number is not a flag.

    Example:
        >>> check_bool("False", "inverted")
        Traceback (most recent call last):
        ...
        ValueError: inverted must be True or False, got a str ('False')
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got a {type(value).__name__} ({value!r})")


def check_real(value, name: str, *, finite: bool = True) -> float:
    """Return ``value`` as a float after checking it is a real number (not a bool or a string)
    and, with ``finite``, neither NaN nor inf.

    Example:
        >>> check_real(np.float32(0.5), "y_mean")
        0.5
    """
    expected = "a finite real number" if finite else "a real number"
    v = _as_float(name, value, expected)
    if finite and not math.isfinite(v):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return v


def check_keep_prob(value, name: str = "keep_prob") -> float:
    """Return ``value`` as a float after checking ``0 < value <= 1``."""
    v = _as_float(name, value, "a real number in (0, 1]")
    if not (0.0 < v <= 1.0) or math.isnan(v):
        raise ValueError(
            f"{name} must lie in (0, 1] (the probability that a unit is KEPT; "
            f"drop rate = 1 - keep_prob), got {value!r}"
        )
    return v


def check_learnable_keep_prob(value, name: str = "keep_prob") -> float:
    """``value`` as a float in the OPEN interval ``(0, 1)``: a keep_prob to be learned (through
    its logit, which is finite only there).

    Example:
        >>> check_learnable_keep_prob(1.0)
        Traceback (most recent call last):
        ...
        ValueError: keep_prob must lie in the open interval (0, 1) to be learned (the probability that a unit is KEPT; drop rate = 1 - keep_prob), got 1.0
    """
    v = _as_float(name, value, "a real number in (0, 1)")
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie in the open interval (0, 1) to be learned (the "
                         f"probability that a unit is KEPT; drop rate = 1 - keep_prob), got "
                         f"{value!r}")
    return v


def check_positive(value, name: str) -> float:
    """Return ``value`` as a float after checking it is finite and ``> 0``."""
    v = _as_float(name, value, "a finite number > 0")
    if not (v > 0.0) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_nonnegative(value, name: str) -> float:
    """Return ``value`` as a float after checking it is finite and ``>= 0``."""
    v = _as_float(name, value, "a finite number >= 0")
    if not (v >= 0.0) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_int(value, name: str, *, minimum: int | None = None,
              optional: bool = False) -> int | None:
    """Return ``value`` as an int after checking it is an integer (``3``, ``3.0``,
    ``np.int64(3)``, a one-element integer tensor; not a bool or a string) ``>= minimum``;
    with ``optional``, ``None`` is returned as it is.

    Example:
        >>> check_int(-3, "seed"), check_nonnegative_int(0.0, "gap_samples")
        (-3, 0)
    """
    expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    if optional:
        if value is None:
            return None
        expected += " or None"
    refuse_non_numbers(value, name, expected)
    torch = _loaded_torch()
    if not isinstance(value, int) and not (torch is not None and isinstance(value, torch.SymInt)):
        if torch is not None and isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        try:
            iv = int(value)
        except (TypeError, ValueError, OverflowError, RuntimeError):
            raise ValueError(f"{name} must be {expected}, got {value!r}") from None
        if iv != value:
            raise ValueError(f"{name} must be {expected}, got {value!r}")
        value = iv
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= 1``."""
    return check_int(value, name, minimum=1)


def check_nonnegative_int(value, name: str) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= 0``."""
    return check_int(value, name, minimum=0)


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Raise if ``tensor`` holds NaN or inf, saying how many entries are bad."""
    import torch

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


def check_dtype(tensor: torch.Tensor, name: str, dtype: torch.dtype, owner: str) -> torch.Tensor:
    """Refuse ``tensor`` unless its dtype is ``dtype``, the dtype of ``owner`` (e.g. ``"the
    weights"``), naming both: inputs are never cast silently (a float32 ``x`` into a float64
    model would be rounded, the other way the model's precision would be lost). Returns
    ``tensor``.

    Example:
        >>> check_dtype(torch.zeros(2, 1), "x", torch.float64, "the weights")
        Traceback (most recent call last):
        ...
        ValueError: x has dtype torch.float32 but the dtype of the weights is torch.float64: convert x with x.to(torch.float64) (or the weights to torch.float32); inputs are not cast silently
    """
    if tensor.dtype != dtype:
        raise ValueError(
            f"{name} has dtype {tensor.dtype} but the dtype of {owner} is {dtype}: convert "
            f"{name} with {name}.to({dtype}) (or {owner} to {tensor.dtype}); inputs are not "
            f"cast silently"
        )
    return tensor


def check_has_rows(num_rows: int, name: str, shape) -> int:
    """Refuse an input with no rows (``N = 0``): nothing to fit or predict, and a likelihood
    scaled by ``N / B`` would divide by zero. ``shape`` is the input's shape (or a description of
    the inputs' shapes), for the message.
    Returns ``num_rows``.

    Example:
        >>> check_has_rows(0, "x", (0, 3))
        Traceback (most recent call last):
        ...
        ValueError: x must hold at least one row (N >= 1), got 0 rows (shape (0, 3))
    """
    if num_rows < 1:
        shape = shape if isinstance(shape, str) else tuple(shape)
        raise ValueError(f"{name} must hold at least one row (N >= 1), got {num_rows} rows "
                         f"(shape {shape})")
    return num_rows


def per_layer(value, num_layers: int, name: str, check) -> tuple[float, ...]:
    """Broadcast a scalar or a per-layer sequence to a tuple of ``num_layers`` checked floats
    (a string is not a sequence of numbers: it goes to ``check``, which refuses it)."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
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
    import torch

    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name} must hold real numbers (class indices or targets), got dtype "
                         f"{y.dtype}")
    if likelihood != "categorical" and not y.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor for a Gaussian likelihood, got "
                         f"dtype {y.dtype}: pass {name}.to(x.dtype)")
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
