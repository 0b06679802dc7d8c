"""A two-input classifier ``forward(self, image, features)``, for
``python -m vi_dropout verify --model``.

A small convolutional branch reads the 8x8 digit image, an MLP branch reads a feature vector
(the image's 8 row means and 8 column means, i.e. its horizontal and vertical ink profiles);
the two are concatenated, then ``Dropout`` and a linear layer to the 10 classes. The data are
scikit-learn's real 8x8 digits; the .npz holds ``image``, ``features`` and ``y``.

    python examples/two_input.py outputs/digits2.npz  # image N x 1 x 8 x 8, features N x 16
    python -m vi_dropout verify --model examples/two_input.py:make \\
        --data outputs/digits2.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class TwoInputNet(nn.Module):
    """[conv(1 -> 8) - ReLU - max-pool - flatten ; Linear(16 -> 32) - ReLU] - Dropout - Linear."""

    def __init__(self, num_features: int = 16, drop_rate: float = 0.5):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.mlp = nn.Sequential(nn.Linear(num_features, 32), nn.ReLU())
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(8 * 4 * 4 + 32, 10)

    def forward(self, image, features):
        h = torch.cat([torch.flatten(self.conv(image), 1), self.mlp(features)], dim=1)
        return self.fc(self.drop(h))


def make() -> nn.Module:
    """The factory ``--model examples/two_input.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return TwoInputNet().train()


def data(num_examples: int = 200, seed: int = 0):
    """``num_examples`` of scikit-learn's digits: image float32 N x 1 x 8 x 8 in [0, 1], features
    float32 N x 16 (row means, then column means), y int64 (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.random.default_rng(seed).choice(len(digits.target), size=num_examples, replace=False)
    image = (digits.images[rows, None] / 16.0).astype(np.float32)
    features = np.concatenate([image.mean(axis=3)[:, 0], image.mean(axis=2)[:, 0]], axis=1)
    return image, features, digits.target[rows].astype(np.int64)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    image, features, y = data()
    np.savez(sys.argv[1], image=image, features=features, y=y)
    print(f"wrote {sys.argv[1]}: image {image.shape}, features {features.shape}, y {y.shape}")
