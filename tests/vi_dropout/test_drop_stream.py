"""Sparse Bernoulli drop sampling. Statistical checks use 5-sigma binomial bounds (false-failure
probability < 1e-6 per check) with fixed seeds; the stream's invariance checks are exact."""

import math

import numpy as np
import pytest
import torch

import vi_dropout.drop_stream as ds
from vi_dropout.drop_stream import DropStream, layer_drop_streams, sample_drop_mask


def _mask(stream, rows, cols):
    m = torch.ones(rows * cols, dtype=torch.float64)
    m[stream.take(rows * cols)] = 0.0
    return m.view(rows, cols)


@pytest.mark.parametrize("pieces", [[1000], [1, 2, 3, 994], [333, 0, 667], [7] * 142 + [6]])
def test_stream_does_not_depend_on_how_it_is_cut(pieces):
    kps = [0.7, 0.95, 1.0, 0.9]
    whole = DropStream(kps, torch.Generator().manual_seed(3), batch_size=64).take(sum(pieces))
    stream = DropStream(kps, torch.Generator().manual_seed(3), batch_size=64)
    parts, base = [], 0
    for n in pieces:
        parts.append(stream.take(n) + base)
        base += n
    assert torch.equal(torch.cat(parts), whole)
    assert bool((whole[1:] > whole[:-1]).all()) and int(whole.max()) < 1000


def test_column_rates_are_exact_bernoulli_frequencies():
    rates = 1.0 - torch.tensor([0.5, 0.8, 0.95, 0.995, 1.0], dtype=torch.float64)
    rows = 200_000
    m = _mask(DropStream(1.0 - rates, torch.Generator().manual_seed(0)), rows, 5)
    freq = 1.0 - m.mean(0)
    sd = (rates * (1 - rates) / rows).sqrt()
    assert bool(((freq - rates).abs() <= 5 * sd + 1e-12).all()), (freq, rates)
    assert float(freq[-1]) == 0.0


def test_neighbouring_positions_are_independent():
    """The four joint patterns of (position j, j+1) against product probabilities (chi-square,
    3 dof: 99.9999% quantile 30.7)."""
    q, n = 0.3, 400_000
    flat = _mask(DropStream([1 - q], torch.Generator().manual_seed(1)), n, 1).view(-1)
    a, b = flat[:-1:2], flat[1::2]
    counts = torch.stack([((a == i) & (b == j)).sum() for i in (0, 1) for j in (0, 1)]).double()
    probs = torch.tensor([q * q, q * (1 - q), (1 - q) * q, (1 - q) ** 2], dtype=torch.float64)
    expected = probs * a.numel()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30.7, chi2


def test_long_gaps_use_memorylessness(monkeypatch):
    """With the gap cap forced down to 3, capped gaps advance without a drop: still exact."""
    monkeypatch.setattr(ds, "_MAX_GAP", 3.0)
    q, n = 0.1, 300_000
    m = _mask(DropStream([1 - q], torch.Generator().manual_seed(2)), n, 1)
    freq = 1.0 - float(m.mean())
    assert abs(freq - q) <= 5 * math.sqrt(q * (1 - q) / n)


def test_tiny_rate_and_zero_rate():
    s = DropStream([1 - 1e-14], torch.Generator().manual_seed(0))
    assert s.max_rate < 1e-13 and s.take(10**7).numel() == 0  # expected drops 1e-7
    z = DropStream([1.0, 1.0])
    assert z.take(100).numel() == 0 and z.take(0).numel() == 0


def test_layer_streams_reproducible_and_independent():
    a = [s.take(500) for s in layer_drop_streams([0.7, 0.7], torch.Generator().manual_seed(4))]
    b = [s.take(500) for s in layer_drop_streams([0.7, 0.7], torch.Generator().manual_seed(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # separate seeds per layer


def test_sample_drop_mask_shape_and_mean():
    m = sample_drop_mask((400, 50), keep_prob=0.8, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float32)
    assert m.shape == (400, 50) and m.dtype == torch.float32
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert abs(float(m.mean()) - 0.8) <= 5 * math.sqrt(0.16 / m.numel())


def test_bad_input():
    with pytest.raises(ValueError, match=r"keep_probs must lie in \(0, 1\]"):
        DropStream([0.8, 0.0])
    with pytest.raises(ValueError, match=r"keep_probs must lie in \(0, 1\]"):
        DropStream([1.2])
    with pytest.raises(ValueError, match="at least one column"):
        DropStream([])
    with pytest.raises(ValueError, match="batch_size"):
        DropStream([0.9], batch_size=0)
    with pytest.raises(ValueError, match="size must be >= 0"):
        DropStream([0.9]).take(-1)
    with pytest.raises(ValueError, match="keep_prob"):
        sample_drop_mask((2, 2), keep_prob=0.0)
    with pytest.raises(ValueError, match=r"keep_probs\[1\]"):
        layer_drop_streams([0.5, 1.5])


@pytest.mark.parametrize("kps,message", [
    ([0.9, True], r"^keep_probs\[1\] must be a real number in \(0, 1\], got a bool"),
    ([0.9, "0.8"], r"^keep_probs\[1\] must be a real number in \(0, 1\], got a str"),
    (torch.tensor([True]), r"^keep_probs must be real numbers in \(0, 1\], got a bool tensor"),
    ("0.9", r"^keep_probs must be real numbers in \(0, 1\], got a str"),
])
def test_keep_probs_and_batch_size_must_be_numbers(kps, message):
    """``[True]`` was read as keep_prob 1 and ``[False]`` as 0, silently."""
    with pytest.raises(ValueError, match=message):
        DropStream(kps)
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got a bool"):
        DropStream([0.9], batch_size=True)
    assert DropStream(torch.tensor([0.75], dtype=torch.float64), batch_size=np.int64(8)).max_rate \
        == DropStream([np.float64(0.75)]).max_rate == 0.25
