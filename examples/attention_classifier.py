"""A self-attention classifier, for ``python -m vi_dropout verify --model``.

Each 8x8 digit is 8 tokens of 8 pixels (its rows): a linear token projection,
``nn.MultiheadAttention(32, num_heads=2, dropout=0.1, batch_first=True)`` over the tokens, the
mean over tokens, ``nn.Dropout`` and a linear layer to the 10 classes. The attention's own
``dropout=0.1`` acts on the attention weights inside the module. There is no positional
encoding: the tokens are told apart only by their pixels. The data are scikit-learn's real
8x8 digits.

    python examples/attention_classifier.py outputs/digit_rows.npz  # x N x 8 tokens x 8 pixels
    python -m vi_dropout verify --model examples/attention_classifier.py:make \\
        --data outputs/digit_rows.npz --likelihood categorical --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class AttentionClassifier(nn.Module):
    """Linear(8 -> 32) - MultiheadAttention(32, 2 heads) - mean over tokens - Dropout - Linear."""

    def __init__(self, token_size: int = 8, embed_dim: int = 32, num_classes: int = 10):
        super().__init__()
        self.proj = nn.Linear(token_size, embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, num_heads=2, dropout=0.1, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        tokens = self.proj(x)
        h, _ = self.attn(tokens, tokens, tokens)
        return self.fc(self.drop(h.mean(dim=1)))


def make() -> nn.Module:
    """The factory ``--model examples/attention_classifier.py:make`` calls (seeded initialisation)."""
    torch.manual_seed(0)
    return AttentionClassifier().train()


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
