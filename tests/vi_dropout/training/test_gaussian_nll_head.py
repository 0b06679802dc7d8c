"""Gaussian mean-and-variance heads and FGSM adversarial training in the batched trainer
(``loss="gaussian_nll"``, ``adversarial_epsilon``) must reproduce the autograd reference network
by network (float64: max parameter difference <= 1e-9, observed ~1e-15), the adversarial step
must equal a direct autograd computation of the sign gradient, and ``keep_prob=1`` must build no
dropout masks."""

import math

import pytest
import torch
from scipy import stats

import vi_dropout.training.batched as bt
from vi_dropout.network import Architecture, mlp_forward
from vi_dropout.training import train_batched, train_sequential
from vi_dropout.training.common import MIN_VARIANCE, gaussian_head, gaussian_nll

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-9


def _data(E, N, Q, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(E, N, Q, generator=g, dtype=torch.float64)
    w = torch.randn(E, Q, D, generator=g, dtype=torch.float64)
    noise = 0.1 + 0.3 * x[..., :1].abs()  # heteroscedastic: the variance head has work to do
    y = torch.sin(x @ w) + noise * torch.randn(E, N, D, generator=g, dtype=torch.float64)
    return x, y


def _max_diff(rb, e, rs):
    """Max |batched - sequential| over all parameters, relative where |param| > 1."""
    return max(float(((a[e] - b).abs() / b.abs().clamp_min(1.0)).max()) for a, b in
               zip(rb.weights + rb.biases, rs.weights + rs.biases))


def _eps_matrix(E, Q, scale=0.05):
    return scale * (1.0 + torch.arange(E * Q, dtype=torch.float64).view(E, Q) / (E * Q))


CONFIGS = [
    # a deep-ensemble member: no dropout, one hidden ReLU layer, a smaller last minibatch
    dict(N=150, Q=4, D=1, hidden=(16,), activation="relu", batch_size=64, epochs=10,
         keep_prob=1.0, reg=[0.0, 1e-4, 0.0], seeds=[3, 7, 11], lr=1e-2, adv=None),
    # two hidden tanh layers, 2 targets, dropout on the hidden layers, per-network lr
    dict(N=70, Q=3, D=2, hidden=(8, 6), activation="tanh", batch_size=32, epochs=6,
         keep_prob=[(0.8, 0.7, 0.9), (1.0, 0.5, 0.6)], reg=[1e-3, 5e-5], seeds=[0, 1],
         lr=[1e-3, 3e-3], adv=None),
    # FGSM, per-network and per-column steps, no dropout
    dict(N=90, Q=3, D=1, hidden=(10,), activation="relu", batch_size=40, epochs=6,
         keep_prob=1.0, reg=[1e-4, 0.0], seeds=[4, 5], lr=1e-2, adv="matrix"),
    # FGSM with hidden dropout (the perturbed pass reuses the masks) and a one-unit layer
    dict(N=60, Q=2, D=1, hidden=(5, 1), activation="relu", batch_size=16, epochs=4,
         keep_prob=[(1.0, 0.8, 0.9), (1.0, 0.7, 1.0)], reg=[1e-3, 1e-4], seeds=[8, 9], lr=1e-2,
         adv=0.02),
    # FGSM on a tanh net with two targets, one step size for every column
    dict(N=50, Q=4, D=2, hidden=(6,), activation="tanh", batch_size=20, epochs=4,
         keep_prob=1.0, reg=[0.0, 1e-3], seeds=[2, 12], lr=5e-3, adv=0.05),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["ensemble-member", "tanh-dropout", "fgsm",
                                              "fgsm-dropout", "fgsm-tanh"])
def test_gaussian_head_batched_equals_sequential(cfg):
    E = len(cfg["seeds"])
    x, y = _data(E, cfg["N"], cfg["Q"], cfg["D"])
    common = dict(hidden=cfg["hidden"], activation=cfg["activation"], epochs=cfg["epochs"],
                  batch_size=cfg["batch_size"], loss="gaussian_nll")
    adv = _eps_matrix(E, cfg["Q"]) if cfg["adv"] == "matrix" else cfg["adv"]
    kps = cfg["keep_prob"] if isinstance(cfg["keep_prob"], list) else [cfg["keep_prob"]] * E
    rb = train_batched(x, y, cfg["keep_prob"], cfg["reg"], cfg["seeds"], lr=cfg["lr"],
                       adversarial_epsilon=adv, **common)
    lrs = cfg["lr"] if isinstance(cfg["lr"], list) else [cfg["lr"]] * E
    for e in range(E):
        adv_e = adv[e] if isinstance(adv, torch.Tensor) else adv
        rs = train_sequential(x[e], y[e], kps[e], cfg["reg"][e], cfg["seeds"][e], lr=lrs[e],
                              adversarial_epsilon=adv_e, **common)
        assert _max_diff(rb, e, rs) <= TOL
        torch.testing.assert_close(rb.losses[e], rs.losses, rtol=0, atol=1e-10)
    assert (rb.diverged_epoch == -1).all()
    assert rb.weights[-1].shape == (E, 2 * cfg["D"], cfg["hidden"][-1])  # means and variances
    assert (rb.losses[:, -1] < rb.losses[:, 0]).all()


def test_fgsm_steps_equal_a_direct_autograd_computation():
    """Full-batch steps: x' = x + eps * sign(grad_x NLL(x)), loss = NLL(x) + NLL(x') + reg."""
    E, N, Q, D, H, steps = 2, 24, 3, 1, 7, 3
    x, y = _data(E, N, Q, D, seed=4)
    eps, reg, lr, seeds = _eps_matrix(E, Q, 0.1), 1e-3, 1e-2, [5, 6]
    kw = dict(hidden=(H,), epochs=steps, batch_size=N, lr=lr, loss="gaussian_nll")
    rb = train_batched(x, y, 1.0, reg, seeds, adversarial_epsilon=eps, **kw)
    plain = train_batched(x, y, 1.0, reg, seeds, **kw)
    for e in range(E):
        g = torch.Generator().manual_seed(seeds[e])
        ws, bs = Architecture((Q, H, 2 * D)).init_params(generator=g, dtype=torch.float64)
        params = [p.requires_grad_() for p in ws + bs]
        opt = torch.optim.Adam(params, lr=lr, eps=1e-7)

        def nll(xin, e=e, ws=ws, bs=bs):
            out = mlp_forward(xin, ws, bs)
            mu = out[:, :D]
            var = torch.nn.functional.softplus(out[:, D:]) + 1e-6
            return (0.5 * torch.log(2 * math.pi * var) + 0.5 * (y[e] - mu) ** 2 / var).mean()

        for step in range(steps):
            xe = x[e].clone().requires_grad_()
            (gx,) = torch.autograd.grad(nll(xe), xe)
            x_adv = x[e] + eps[e] * gx.sign()
            # most rows are moved (sign(0) = 0 where every hidden ReLU is off)
            assert float((x_adv != x[e]).double().mean()) > 0.5
            total = nll(x[e]) + nll(x_adv) + reg * sum(w.square().sum() for w in ws)
            opt.zero_grad()
            total.backward()
            opt.step()
            assert float(rb.losses[e, step]) == pytest.approx(total.item(), rel=1e-12)
        for a, b in zip(rb.weights + rb.biases, [w.detach() for w in ws + bs]):
            torch.testing.assert_close(a[e], b, rtol=0, atol=1e-12)
        # and it is not the plain fit
        assert float((rb.weights[0][e] - plain.weights[0][e]).abs().max()) > 1e-4


def test_keep_prob_one_builds_no_masks(monkeypatch):
    """No dropout: no mask blocks at all, and the same networks as where masks of ones are used
    (network 0 trained next to a network with hidden dropout)."""
    x, y = _data(2, 80, 3, 1, seed=1)
    drawn = []
    real = bt._EpochBlock.draw

    def spy(self, state, epoch, epochs):
        real(self, state, epoch, epochs)
        drawn.append(self.masks)

    monkeypatch.setattr(bt._EpochBlock, "draw", spy)
    kw = dict(hidden=(12,), epochs=5, batch_size=32, lr=1e-2, loss="gaussian_nll")
    alone = train_batched(x[:1], y[:1], 1.0, 1e-4, [3], **kw)
    assert drawn and all(m is None for m in drawn)
    drawn.clear()
    mixed = train_batched(x, y, [1.0, (1.0, 0.7)], 1e-4, [3, 4], **kw)
    assert drawn and all(m is not None for m in drawn)
    for a, b in zip(alone.weights + alone.biases, mixed.weights + mixed.biases):
        assert float((a[0] - b[0]).abs().max()) <= 1e-12


def test_nan_loss_freezes_only_that_network():
    E, N = 3, 100
    x, y = _data(E, N, 3, 1, seed=2)
    y[1] = y[1] * 1e200  # (y - mu)^2 / var overflows at once
    kw = dict(hidden=(8,), epochs=4, batch_size=128, loss="gaussian_nll",
              adversarial_epsilon=0.01)
    rb = train_batched(x, y, 1.0, 1e-4, [0, 1, 2], **kw)
    assert rb.diverged_epoch.tolist() == [-1, 0, -1]
    assert torch.isnan(rb.losses[1]).all() and torch.isfinite(rb.losses[[0, 2]]).all()
    for e in range(E):
        rs = train_sequential(x[e], y[e], 1.0, 1e-4, e, **kw)
        assert int(rs.diverged_epoch) == (0 if e == 1 else -1)
        assert _max_diff(rb, e, rs) <= TOL


def test_gaussian_head_and_nll_against_scipy():
    g = torch.Generator().manual_seed(0)
    out = 3 * torch.randn(4, 10, 4, generator=g, dtype=torch.float64)
    out[0, 0, 2] = 40.0  # softplus' linear branch
    out[0, 1, 3] = -40.0  # at the variance floor
    y = torch.randn(4, 10, 2, generator=g, dtype=torch.float64)
    mean, var = gaussian_head(out)
    assert torch.equal(mean, out[..., :2])
    expected_var = torch.log1p(torch.exp(out[..., 2:])) + MIN_VARIANCE
    torch.testing.assert_close(var, expected_var, rtol=1e-14, atol=0)
    logpdf = stats.norm.logpdf(y.numpy(), mean.numpy(), var.sqrt().numpy())
    torch.testing.assert_close(gaussian_nll(out, y), torch.from_numpy(-logpdf.mean((1, 2))),
                               rtol=1e-12, atol=1e-12)


def test_mse_with_fgsm_equals_sequential():
    """The adversarial option works with the squared error too."""
    x, y = _data(2, 40, 3, 1, seed=3)
    kw = dict(hidden=(6,), epochs=3, batch_size=16, lr=1e-2, adversarial_epsilon=0.05)
    rb = train_batched(x, y, [(1.0, 0.8), 1.0], 1e-3, [1, 2], **kw)
    for e, kp in enumerate([(1.0, 0.8), 1.0]):
        rs = train_sequential(x[e], y[e], kp, 1e-3, e + 1, **kw)
        assert _max_diff(rb, e, rs) <= TOL


def test_bad_arguments_raise_naming_them():
    x, y = _data(2, 20, 3, 1)
    kw = dict(hidden=(4,), epochs=1)
    with pytest.raises(ValueError, match="loss must be one of"):
        train_batched(x, y, 1.0, 0.0, [0, 1], loss="nll", **kw)
    with pytest.raises(ValueError, match="loss must be one of"):
        train_sequential(x[0], y[0], 1.0, 0.0, 0, loss="gaussian", **kw)
    with pytest.raises(ValueError, match=r"keep_prob 1 on the inputs.*network 1"):
        train_batched(x, y, [1.0, 0.9], 0.0, [0, 1], adversarial_epsilon=0.01, **kw)
    with pytest.raises(ValueError, match="keep_prob 1 on the inputs"):
        train_sequential(x[0], y[0], 0.9, 0.0, 0, adversarial_epsilon=0.01, **kw)
    with pytest.raises(ValueError, match="adversarial_epsilon must be finite and >= 0"):
        train_batched(x, y, 1.0, 0.0, [0, 1], adversarial_epsilon=-0.1, **kw)
    with pytest.raises(ValueError, match="adversarial_epsilon must be a number or 3 numbers"):
        train_batched(x, y, 1.0, 0.0, [0, 1], adversarial_epsilon=[0.1, 0.2], **kw)
    with pytest.raises(ValueError, match=r"adversarial_epsilon must be a number, 3 numbers or 2"):
        train_batched(x, y, 1.0, 0.0, [0, 1], adversarial_epsilon=torch.ones(3, 3), **kw)
    with pytest.raises(ValueError, match="even number of outputs"):
        gaussian_head(torch.zeros(2, 3))


def test_only_no_dropout_networks_left_mid_block():
    """The network with hidden dropout diverges at epoch 1: the other (keep_prob 1) trains on
    with the masks drawn for the block, unscaled in the backward pass; still the reference."""
    x, y = _data(2, 60, 3, 1, seed=5)
    kw = dict(hidden=(8,), epochs=4, batch_size=64, loss="gaussian_nll")
    kps, lrs = [(1.0, 0.6), 1.0], [1e200, 1e-2]
    rb = train_batched(x, y, kps, 1e-4, [0, 1], lr=lrs, **kw)
    assert rb.diverged_epoch.tolist() == [1, -1]
    for e in range(2):
        rs = train_sequential(x[e], y[e], kps[e], 1e-4, e, lr=lrs[e], **kw)
        assert _max_diff(rb, e, rs) <= TOL
