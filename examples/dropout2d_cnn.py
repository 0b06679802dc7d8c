"""A two-convolution CNN with ``nn.Dropout2d`` between the convolutions, for
``python -m vi_dropout verify --model``.

``nn.Dropout2d`` zeroes whole channels of the first convolution's output (as in the PyTorch
``Dropout2d`` documentation); then a second convolution, ReLU, 2x2 max-pool, flatten and a linear
layer. The data are scikit-learn's real 8x8 digits.

    python examples/dropout2d_cnn.py outputs/digits.npz  # 200 digits, x N x 1 x 8 x 8
    python -m vi_dropout verify --model examples/dropout2d_cnn.py:make \\
        --data outputs/digits.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Dropout2dCNN(nn.Module):
    """conv(1 -> 8) - ReLU - Dropout2d - conv(8 -> 16) - ReLU - max-pool - flatten - linear(10)."""

    def __init__(self, channel_drop_rate: float = 0.2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.drop2d = nn.Dropout2d(channel_drop_rate)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = self.drop2d(F.relu(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


def make() -> nn.Module:
    """The factory ``--model examples/dropout2d_cnn.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return Dropout2dCNN().train()


def data(num_examples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` of scikit-learn's digits: x float32 N x 1 x 8 x 8 in [0, 1], y int64 (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.random.default_rng(seed).choice(len(digits.target), size=num_examples, replace=False)
    return (digits.images[rows, None] / 16.0).astype(np.float32), digits.target[rows].astype(np.int64)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    x, y = data()
    np.savez(sys.argv[1], x=x, y=y)
    print(f"wrote {sys.argv[1]}: x {x.shape}, y {y.shape}")
