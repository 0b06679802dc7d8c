"""A token-wise MLP classifier on ``B x T x D`` inputs, for ``python -m vi_dropout verify --model``.

The same two-layer MLP is applied to every token (``nn.Linear`` acts on the last dimension, as in
a transformer's feed-forward block), with an element-wise ``nn.Dropout`` in front of its second
linear layer; then the mean over tokens and a linear head to the 10 classes. Each of
scikit-learn's real 8x8 digits is 8 tokens of 8 pixels (its rows).

    python examples/token_mlp.py outputs/digit_rows.npz  # x N x 8 tokens x 8 pixels
    python -m vi_dropout verify --model examples/token_mlp.py:make \\
        --data outputs/digit_rows.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class TokenMLP(nn.Module):
    """per token: Linear(8 -> 32) - ReLU - Dropout - Linear(32) - ReLU; mean - Linear(10)."""

    def __init__(self, token_size: int = 8, hidden: int = 32, num_classes: int = 10,
                 drop_rate: float = 0.2):
        super().__init__()
        self.fc1 = nn.Linear(token_size, hidden)
        self.drop = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        h = torch.relu(self.fc2(self.drop(torch.relu(self.fc1(x)))))
        return self.head(h.mean(dim=1))


def make() -> nn.Module:
    """The factory ``--model examples/token_mlp.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return TokenMLP().train()


def data(num_examples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` of scikit-learn's digits: x float32 N x 8 x 8 (rows as tokens) in
    [0, 1], y int64 (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.random.default_rng(seed).choice(len(digits.target), size=num_examples, replace=False)
    return (digits.images[rows] / 16.0).astype(np.float32), digits.target[rows].astype(np.int64)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    x, y = data()
    np.savez(sys.argv[1], x=x, y=y)
    print(f"wrote {sys.argv[1]}: x {x.shape}, y {y.shape}")
