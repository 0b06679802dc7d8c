"""A residual MLP regressor with BatchNorm1d, for ``python -m vi_dropout verify --model``.

The tabular ResNet pattern (as in Gorishniy et al., "Revisiting Deep Learning Models for Tabular
Data", 2021): an input projection, residual blocks ``x + block(x)`` with
``block = Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear``, and ``Dropout -> Linear(1)`` at the
output. The data are the real Boston housing rows (UCI, 13 features) that this repository
carries, standardised with the training split's mean and std.

    python examples/bn_residual.py outputs/boston.npz    # 200 Boston housing rows, x N x 13, y N x 1
    python -m vi_dropout verify --model examples/bn_residual.py:make \\
        --data outputs/boston.npz --likelihood gaussian --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, width: int, drop_rate: float):
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Dropout(drop_rate), nn.Linear(width, width))

    def forward(self, x):
        return x + self.block(x)


class BNResidualMLP(nn.Module):
    """Linear(13 -> 64) - 2 x ResidualBlock(64) - ReLU - Dropout - Linear(1)."""

    def __init__(self, in_features: int = 13, width: int = 64, num_blocks: int = 2,
                 drop_rate: float = 0.1):
        super().__init__()
        self.input = nn.Linear(in_features, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width, drop_rate) for _ in range(num_blocks)])
        self.drop = nn.Dropout(drop_rate)
        self.output = nn.Linear(width, 1)

    def forward(self, x):
        h = self.blocks(self.input(x))
        return self.output(self.drop(torch.relu(h)))


def make() -> nn.Module:
    """The factory ``--model examples/bn_residual.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return BNResidualMLP().train()


def data(num_examples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` (at most 455) standardised training rows of Boston housing split 0:
    x float32 N x 13, y float32 N x 1."""
    from comparisons.datasets.uci import load_uci, standardize

    z = standardize(load_uci("boston", 0))
    rows = np.random.default_rng(seed).choice(len(z.y_train), size=num_examples, replace=False)
    return z.x_train[rows].astype(np.float32), z.y_train[rows].astype(np.float32)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    x, y = data()
    np.savez(sys.argv[1], x=x, y=y)
    print(f"wrote {sys.argv[1]}: x {x.shape}, y {y.shape}")
