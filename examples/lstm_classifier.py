"""A two-layer LSTM classifier, for ``python -m vi_dropout verify --model``.

Each 8x8 digit is read as a sequence of 8 rows (8 pixels a step): a linear input projection,
``nn.LSTM(32, 32, num_layers=2, dropout=0.3, batch_first=True)``, the last step's output,
``nn.Dropout(0.5)`` and a linear layer to the 10 classes (the usual PyTorch sequence classifier).
The LSTM's ``dropout=0.3`` acts between its layers inside the recurrent module, which the MC
dropout derivation does not cover: ``verify`` refuses it unless the user opts in. The data are
scikit-learn's real 8x8 digits.

    python examples/lstm_classifier.py outputs/digit_rows.npz  # x N x 8 steps x 8 pixels
    python -m vi_dropout verify --model examples/lstm_classifier.py:make \\
        --data outputs/digit_rows.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class LSTMClassifier(nn.Module):
    """Linear(8 -> 32) - LSTM(32, 32, 2 layers, dropout 0.3) - last step - Dropout - Linear(10)."""

    def __init__(self, input_size: int = 8, hidden: int = 32, num_classes: int = 10):
        super().__init__()
        self.proj = nn.Linear(input_size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, dropout=0.3, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        out, _ = self.lstm(self.proj(x))
        return self.fc(self.drop(out[:, -1]))


def make() -> nn.Module:
    """The factory ``--model examples/lstm_classifier.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return LSTMClassifier().train()


def data(num_examples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` of scikit-learn's digits: x float32 N x 8 x 8 (rows as time steps) in
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
