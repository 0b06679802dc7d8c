"""Batched training must reproduce the sequential nn.Module / torch.optim.Adam reference.
Tolerance: max parameter difference <= 1e-5 in float64 (observed ~1e-15)."""

import math

import pytest
import torch

from vi_dropout.infer.elbo import weight_decay
from vi_dropout.training import train_batched, train_sequential

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(E, N, Q, D, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(E, N, Q, generator=g, dtype=torch.float64)
    w = torch.randn(E, Q, D, generator=g, dtype=torch.float64)
    y = torch.sin(x @ w) + 0.1 * torch.randn(E, N, D, generator=g, dtype=torch.float64)
    return x, y * scale


def _max_diff(rb, e, rs):
    """Max |batched - sequential| over all parameters, relative where |param| > 1."""
    return max(float(((a[e] - b).abs() / b.abs().clamp_min(1.0)).max()) for a, b in
               zip(rb.weights + rb.biases, rs.weights + rs.biases))


CONFIGS = [
    # N=150 with batch 128: a smaller last minibatch; 1 hidden ReLU layer (the paper's net).
    dict(N=150, Q=4, D=1, hidden=(16,), activation="relu", batch_size=128, epochs=12,
         keep_prob=[0.9, 0.5, 1.0], reg=[1e-4, 1e-2, 0.0], seeds=[3, 7, 11], lr=1e-3),
    # two hidden tanh layers, 2 outputs, per-layer keep_probs, per-network learning rates.
    dict(N=70, Q=3, D=2, hidden=(8, 6), activation="tanh", batch_size=32, epochs=8,
         keep_prob=[(0.8, 0.7, 0.9), (1.0, 0.5, 0.6)], reg=[1e-3, 5e-5], seeds=[0, 1],
         lr=[1e-3, 3e-3]),
    # a one-unit hidden layer (one-output weighted-sum path with a mask) and a deeper ReLU net.
    dict(N=50, Q=3, D=1, hidden=(5, 1), activation="relu", batch_size=16, epochs=6,
         keep_prob=[(0.7, 0.8, 0.9), 0.6], reg=[1e-3, 1e-4], seeds=[4, 5], lr=1e-2),
    # no hidden layer: dropout on the inputs of a linear model (no hidden masks at all).
    dict(N=60, Q=4, D=2, hidden=(), activation="relu", batch_size=32, epochs=5,
         keep_prob=[0.8, 0.95], reg=[1e-3, 0.0], seeds=[8, 9], lr=1e-2),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["relu-1-hidden", "tanh-2-hidden", "relu-5-1",
                                              "linear"])
def test_batched_equals_sequential(cfg):
    E = len(cfg["seeds"])
    x, y = _data(E, cfg["N"], cfg["Q"], cfg["D"])
    common = dict(hidden=cfg["hidden"], activation=cfg["activation"], epochs=cfg["epochs"],
                  batch_size=cfg["batch_size"])
    rb = train_batched(x, y, cfg["keep_prob"], cfg["reg"], cfg["seeds"], lr=cfg["lr"], **common)
    lrs = cfg["lr"] if isinstance(cfg["lr"], list) else [cfg["lr"]] * E
    for e in range(E):
        rs = train_sequential(x[e], y[e], cfg["keep_prob"][e], cfg["reg"][e], cfg["seeds"][e],
                              lr=lrs[e], **common)
        assert _max_diff(rb, e, rs) <= 1e-5
        torch.testing.assert_close(rb.losses[e], rs.losses, rtol=0, atol=1e-8)
        assert int(rs.diverged_epoch) == -1
    assert (rb.diverged_epoch == -1).all()
    # Training did something and the networks differ from one another.
    assert (rb.losses[:, -1] < rb.losses[:, 0]).all()
    assert float((rb.weights[0][0] - rb.weights[0][1]).abs().max()) > 1e-3


def test_seed_changes_result_and_shared_data_broadcasts():
    x, y = _data(1, 40, 3, 1)
    r = train_batched(x[0], y[0], 0.9, 1e-4, [5, 5, 6], hidden=(8,), epochs=3)
    assert torch.equal(r.weights[0][0], r.weights[0][1])
    assert not torch.allclose(r.weights[0][0], r.weights[0][2])


@pytest.mark.parametrize("how", ["huge-lr", "huge-data"])
def test_nan_loss_freezes_only_that_network(how):
    E, N = 3, 100  # N < batch_size: one step per epoch
    x, y = _data(E, N, 3, 1, seed=2)
    lr = [1e-3, 1e-3, 1e-3]
    if how == "huge-lr":
        lr[1] = 1e200  # weights ~1e200 after one step -> outputs overflow at epoch 1
        expected_epoch = 1
    else:
        y[1] = y[1] * 1e200  # squared error overflows at once
        expected_epoch = 0
    kw = dict(hidden=(8,), epochs=5)
    rb = train_batched(x, y, 0.9, 1e-4, [0, 1, 2], lr=lr, **kw)
    assert rb.diverged_epoch.tolist() == [-1, expected_epoch, -1]
    assert rb.diverged.tolist() == [False, True, False]
    assert torch.isnan(rb.losses[1, expected_epoch:]).all()
    assert torch.isfinite(rb.losses[[0, 2]]).all()
    for e in range(E):
        rs = train_sequential(x[e], y[e], 0.9, 1e-4, e, lr=lr[e], **kw)
        assert int(rs.diverged_epoch) == (expected_epoch if e == 1 else -1)
        assert _max_diff(rb, e, rs) <= 1e-5  # frozen net = sequential's stopped net
    assert all(torch.isfinite(w[1]).all() for w in rb.weights)
    # The healthy networks are exactly what they are when trained without the bad one.
    ok = train_batched(x[[0, 2]], y[[0, 2]], 0.9, 1e-4, [0, 2], **kw)
    for a, b in zip(rb.weights + rb.biases, ok.weights + ok.biases):
        assert float((a[[0, 2]] - b).abs().max()) <= 1e-12


def test_weight_decay_formula():
    assert weight_decay(1e-2, 0.95, 455, 0.1) == pytest.approx(1e-4 * 0.95 / (2 * 455 * 0.1),
                                                               rel=1e-15)


def test_bad_inputs_raise_naming_the_argument():
    x, y = _data(2, 20, 3, 1)
    kw = dict(hidden=(4,), epochs=1)
    with pytest.raises(ValueError, match=r"keep_prob\[1\]"):
        train_batched(x, y, [0.9, 1.5], 1e-4, [0, 1], **kw)
    with pytest.raises(ValueError, match="keep_prob"):
        train_sequential(x[0], y[0], 0.0, 1e-4, 0, **kw)
    with pytest.raises(ValueError, match="reg"):
        train_batched(x, y, 0.9, -1.0, [0, 1], **kw)
    with pytest.raises(ValueError, match="epochs"):
        train_sequential(x[0], y[0], 0.9, 1e-4, 0, hidden=(4,), epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train_batched(x, y, 0.9, 1e-4, [0, 1], lr=[1e-3, math.nan], **kw)
    xb = x.clone()
    xb[1, 3, 0] = float("inf")
    with pytest.raises(ValueError, match="x must be finite"):
        train_batched(xb, y, 0.9, 1e-4, [0, 1], **kw)
    yb = y.clone()
    yb[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="y must be finite"):
        train_sequential(x[0], yb[0], 0.9, 1e-4, 0, **kw)
    with pytest.raises(ValueError, match="len\\(seeds\\)"):
        train_batched(x, y, 0.9, 1e-4, [0, 1, 2], **kw)


def test_mask_blocks_do_not_change_the_result(monkeypatch):
    """Masks are drawn for blocks of epochs; the block length must not change anything (exact)."""
    import vi_dropout.training.batched as bt

    x = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randn(40, 1, dtype=torch.float64)
    kwargs = dict(keep_prob=[0.9, 0.7, 0.95], reg=1e-4, seeds=[1, 2, 3], epochs=5, hidden=(6,),
                  batch_size=16)
    whole = bt.train_batched(x, y, **kwargs)  # all 5 epochs in one block
    # per epoch: 3 nets x 40 rows x (6 hidden mask columns + 3 inputs + 1 target)
    monkeypatch.setattr(bt, "_MASK_BLOCK_ENTRIES", 3 * 40 * 10 * 2)  # blocks of 2 epochs
    blocks = bt.train_batched(x, y, **kwargs)
    for a, b in zip(whole.weights + whole.biases, blocks.weights + blocks.biases):
        assert torch.equal(a, b)
