"""A small CNN written the ordinary way, for ``python -m vi_dropout verify --model``.

``nn.Dropout2d`` in front of the second convolution drops whole input channels, ``nn.Dropout`` in
front of the linear layer drops its input units: the MC dropout family covers both layers (and the
first convolution, with keep_prob 1).

    python examples/small_cnn.py outputs/digits.npz      # 200 of scikit-learn's 8x8 digits
    python -m vi_dropout verify --model examples/small_cnn.py:make \\
        --data outputs/digits.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(1 -> 4) - ReLU - Dropout2d - conv(4 -> 6) - ReLU - flatten - Dropout - linear(10)."""

    def __init__(self, channel_drop_rate: float = 0.1, unit_drop_rate: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.drop2d = nn.Dropout2d(channel_drop_rate)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.drop = nn.Dropout(unit_drop_rate)
        self.fc = nn.Linear(6 * 6 * 6, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(self.drop2d(h)))
        return self.fc(self.drop(h.flatten(1)))


def make() -> nn.Module:
    """The factory ``--model examples/small_cnn.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return SmallCNN()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    rows = rng.choice(len(digits.target), size=200, replace=False)
    np.savez(sys.argv[1], x=(digits.images[rows, None] / 16.0).astype(np.float32),
             y=digits.target[rows])
    print(f"wrote {sys.argv[1]}: x {digits.images[rows, None].shape}, y (200,)")
