"""A plain ``nn.Sequential`` MLP regressor, for ``python -m vi_dropout verify --model``.

Three ``nn.Linear`` layers with ReLU, ``nn.Dropout(0.1)`` in front of the second and the third:
the MC dropout regression network of Gal and Ghahramani (2016), written as a subclass of
``nn.Sequential`` (as ``torchvision.ops.MLP`` is). The data are the real yacht hydrodynamics rows
(UCI, 6 features) that this repository carries, standardised with the training split's mean
and std.

    python examples/sequential_mlp.py outputs/yacht.npz  # 200 yacht rows, x N x 6, y N x 1
    python -m vi_dropout verify --model examples/sequential_mlp.py:make \\
        --data outputs/yacht.npz --likelihood gaussian --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class SequentialMLP(nn.Sequential):
    """Linear(6 -> 50) - ReLU - Dropout - Linear(50) - ReLU - Dropout - Linear(1)."""

    def __init__(self, in_features: int = 6, hidden: int = 50, drop_rate: float = 0.1):
        super().__init__(
            nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Dropout(drop_rate), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Dropout(drop_rate), nn.Linear(hidden, 1))


def make() -> nn.Module:
    """The factory ``--model examples/sequential_mlp.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return SequentialMLP().train()


def data(num_examples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` (at most 277) standardised training rows of yacht split 0:
    x float32 N x 6, y float32 N x 1."""
    from comparisons.datasets.uci import load_uci, standardize

    z = standardize(load_uci("yacht", 0))
    rows = np.random.default_rng(seed).choice(len(z.y_train), size=num_examples, replace=False)
    return z.x_train[rows].astype(np.float32), z.y_train[rows].astype(np.float32)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    x, y = data()
    np.savez(sys.argv[1], x=x, y=y)
    print(f"wrote {sys.argv[1]}: x {x.shape}, y {y.shape}")
