"""Helpers shared by the tests."""

from __future__ import annotations

import argparse

import torch

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
