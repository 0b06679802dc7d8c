"""A MobileNet-style classifier, for ``python -m vi_dropout verify --model``.

After torchvision's MobileNetV2 (``torchvision.models.mobilenetv2``): a 3x3 stem convolution,
depthwise-separable blocks (depthwise 3x3 ``groups=C`` conv - BatchNorm2d - ReLU6 - pointwise
1x1 conv - BatchNorm2d - ReLU6), global average pooling, and the classifier
``Dropout(0.2) - Linear``. Scaled down to scikit-learn's real 8x8 digits.

    python examples/mobilenet_style.py outputs/digits.npz  # 200 digits, x N x 1 x 8 x 8
    python -m vi_dropout verify --model examples/mobilenet_style.py:make \\
        --data outputs/digits.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


def depthwise_separable(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels), nn.ReLU6(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class MobileNetStyle(nn.Module):
    """stem conv(1 -> 16) - separable(16 -> 32) - separable(32 -> 64) - pool - Dropout - Linear."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True),
            depthwise_separable(16, 32),
            depthwise_separable(32, 64))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def make() -> nn.Module:
    """The factory ``--model examples/mobilenet_style.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return MobileNetStyle().train()


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
