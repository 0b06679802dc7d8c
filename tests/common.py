"""Helpers shared by the tests."""

from __future__ import annotations

import argparse
import math

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

DTYPES = [torch.float32, torch.float64]


def toy_regression(num_data: int = 32, in_features: int = 3, out_features: int = 1,
                   seed: int = 0, dtype=torch.float64):
    """A small smooth regression problem with standardised-scale inputs and targets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_data, in_features, generator=g, dtype=dtype)
    w = torch.randn(in_features, out_features, generator=g, dtype=dtype)
    y = torch.sin(x @ w) + 0.1 * torch.randn(num_data, out_features, generator=g, dtype=dtype)
    return x, y


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||``."""
    return float((a - b).norm() / b.norm())


def subcommand_parser(*add_parsers) -> argparse.ArgumentParser:
    """A ``python -m comparisons``-like parser with only the given subcommands (each an
    ``add_parser(subparsers)`` of a ``comparisons.cli_*`` module)."""
    parser = argparse.ArgumentParser(prog="python -m comparisons")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in add_parsers:
        add(sub)
    return parser


# --- property-based tests (hypothesis) ----------------------------------------------------------
#: Fixed, derandomised settings: the same examples on every run (CI-stable).
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])
FLOAT_DTYPES = st.sampled_from([torch.float32, torch.float64])
#: The special values, and magnitudes that overflow float32 products.
SPECIAL_VALUES = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e30, -1e30])


def tensors_with_specials(draw, shape, dtype, special_rate=0.15):
    """Inside an ``@st.composite``: a tensor of ``shape`` whose entries are ordinary floats in
    [-3, 3] and, with probability ``special_rate``, one entry from :data:`SPECIAL_VALUES`."""
    n = math.prod(shape)
    vals = draw(st.lists(st.floats(-3.0, 3.0), min_size=n, max_size=n))
    if n and draw(st.floats(0.0, 1.0)) < special_rate:
        vals[draw(st.integers(0, n - 1))] = draw(SPECIAL_VALUES)
    return torch.tensor(vals, dtype=dtype).reshape(shape)


def expect_finite_or_value_error(call, names, check):
    """Run ``call``: a ``ValueError`` must name one of ``names`` (returns None); a result must
    pass ``check`` (returns the result). Any other exception fails the test."""
    try:
        out = call()
    except ValueError as exc:
        msg = str(exc)
        assert any(name in msg for name in names), f"ValueError names none of {names}: {msg}"
        return None
    check(out)
    return out


def assert_finite(t: torch.Tensor, shape=None) -> None:
    """``t`` holds only finite numbers (and has ``shape`` when given)."""
    assert bool(torch.isfinite(t).all()), "returned non-finite numbers"
    if shape is not None:
        assert tuple(t.shape) == tuple(shape), f"shape {tuple(t.shape)} != {tuple(shape)}"
