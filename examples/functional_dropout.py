"""An MLP classifier that calls ``F.dropout`` in its forward, for
``python -m vi_dropout verify --model``.

There is no ``nn.Dropout`` module: the forward calls
``F.dropout(x, p=0.3, training=self.training)`` in front of the second linear layer, as much
older PyTorch code does. The data are scikit-learn's real 8x8 digits, flattened to 64 features.

    python examples/functional_dropout.py outputs/digits64.npz  # 200 digits, x N x 64
    python -m vi_dropout verify --model examples/functional_dropout.py:make \\
        --data outputs/digits64.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class FunctionalDropoutMLP(nn.Module):
    """Linear(64 -> 100) - ReLU - F.dropout(p=0.3) - Linear(10)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.dropout(x, p=0.3, training=self.training)
        return self.fc2(x)


def make() -> nn.Module:
    """The factory ``--model examples/functional_dropout.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return FunctionalDropoutMLP().train()


def data(num_examples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` of scikit-learn's digits: x float32 N x 64 in [0, 1], y int64 (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.random.default_rng(seed).choice(len(digits.target), size=num_examples, replace=False)
    return (digits.data[rows] / 16.0).astype(np.float32), digits.target[rows].astype(np.int64)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    x, y = data()
    np.savez(sys.argv[1], x=x, y=y)
    print(f"wrote {sys.argv[1]}: x {x.shape}, y {y.shape}")
