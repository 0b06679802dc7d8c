import math

import pytest
import torch

from tests.common import toy_regression
from vi_dropout.forward import draw_masks
from vi_dropout.infer.elbo import (
    dropout_loss,
    elbo_dropout_offset,
    from_inverted_dropout,
    inverted_weight_decay,
    negative_elbo,
    prior_weight_decays,
    tau_from_weight_decay,
    to_inverted_dropout,
    weight_decay,
)
from vi_dropout.likelihoods import data_term
from vi_dropout.models import BayesianMLP
from vi_dropout.network import Architecture, mlp_forward

F64 = torch.float64


def _mlp(arch, keep_prob, ls=1.0, tau=1.0, likelihood="gaussian"):
    """The paper's MLP as the one stack sees it: ``(module, layers)`` of a BayesianMLP."""
    model = BayesianMLP(arch, ls, tau, likelihood, keep_prob=keep_prob)
    return model.dropout_free_module(), model.layers


def test_weight_decay_formula_and_inverse():
    lam = weight_decay(1e-2, 0.9, 1000, tau=10.0)
    assert lam == pytest.approx(0.9 * 1e-4 / (2 * 1000 * 10.0), rel=1e-15)
    assert tau_from_weight_decay(lam, 1e-2, 0.9, 1000) == pytest.approx(10.0, rel=1e-12)


def test_inverted_dropout_map_preserves_function_and_penalty():
    arch = Architecture((3, 6, 2))
    ws, bs = arch.init_params(torch.Generator().manual_seed(0))
    kps = (0.8, 0.5)
    x, _ = toy_regression(10, 3, 2)
    _, layers = _mlp(arch, kps)
    masks = draw_masks(layers, 10, torch.Generator().manual_seed(1), F64)
    seed_out = mlp_forward(x, ws, bs, "relu", masks)
    inv = to_inverted_dropout(ws, kps)
    inv_out = mlp_forward(x, inv, bs, "relu", [m / kp for m, kp in zip(masks, kps)])
    torch.testing.assert_close(seed_out, inv_out)
    for w, w2 in zip(from_inverted_dropout(inv, kps), ws):
        torch.testing.assert_close(w, w2)
    lam = 0.3
    for w, w_inv, kp in zip(ws, inv, kps):
        torch.testing.assert_close(inverted_weight_decay(lam, kp) * w_inv.pow(2).sum(),
                                   lam * w.pow(2).sum())


def test_dropout_loss_by_hand():
    arch = Architecture((2, 3, 1), "tanh")
    ws, bs = arch.init_params(torch.Generator().manual_seed(2))
    x, y = toy_regression(5, 2, 1)
    net, layers = _mlp(arch, (0.7, 0.6))
    masks = draw_masks(layers, 5, torch.Generator().manual_seed(3), F64)
    ls, tau, n = 0.8, 2.0, 40
    loss = dropout_loss(net, layers, ws, bs, x, y, masks=masks, prior_length_scale=ls, tau=tau,
                        num_data=n)
    y_hat = mlp_forward(x, ws, bs, "tanh", masks)
    lam = [ls**2 * kp / (2 * n * tau) for kp in (0.7, 0.6)]
    lam_b = ls**2 / (2 * n * tau)
    expected = ((y - y_hat) ** 2).sum() / (2 * 5) + lam[0] * ws[0].pow(2).sum() \
        + lam[1] * ws[1].pow(2).sum() + lam_b * (bs[0].pow(2).sum() + bs[1].pow(2).sum())
    torch.testing.assert_close(loss, expected)


def test_categorical_data_term_is_cross_entropy():
    logits = torch.randn(6, 4, dtype=F64)
    y = torch.tensor([0, 3, 1, 1, 2, 0])
    torch.testing.assert_close(data_term(y, logits, "categorical"),
                               torch.nn.functional.cross_entropy(logits, y))


@pytest.mark.parametrize("likelihood", ["gaussian", "categorical"])
def test_negative_elbo_gradient_converges_to_dropout_gradient(likelihood):
    # grad(-ELBO/(N tau)) - grad(dropout loss) = O(theta): at theta = 1e-7 the relative
    # difference must be below 1e-5 (measured ~ 5 theta on this problem).
    arch = Architecture((3, 8, 3 if likelihood == "categorical" else 1))
    n, tau, ls, kps = 20, 4.0, 0.7, (0.9, 0.6)
    x, y = toy_regression(n, 3, 1)
    if likelihood == "categorical":
        y = (y.squeeze(-1) > 0).long() + (x[:, 0] > 1).long()
        tau = 1.0
    ws, bs = arch.init_params(torch.Generator().manual_seed(0))
    ws = [w.requires_grad_() for w in ws]
    bs = [b.requires_grad_() for b in bs]
    net, layers = _mlp(arch, kps, ls, tau, likelihood)
    masks = draw_masks(layers, n, torch.Generator().manual_seed(1), F64)
    g_d = torch.autograd.grad(dropout_loss(net, layers, ws, bs, x, y, masks=masks,
                                           prior_length_scale=ls, tau=tau, likelihood=likelihood),
                              ws + bs)
    nelbo = negative_elbo(net, layers, ws, bs, x, y, masks=masks, theta=1e-7,
                          prior_length_scale=ls, tau=tau, likelihood=likelihood,
                          generator=torch.Generator().manual_seed(2))
    g_e = torch.autograd.grad(nelbo / (n * tau), ws + bs)
    for a, b in zip(g_e, g_d):
        assert float((a - b).norm() / b.norm()) < 1e-5


def test_offset_grows_like_minus_log_theta():
    _, layers = _mlp(Architecture((3, 8, 1)), 0.9)
    c1 = elbo_dropout_offset(layers, 1e-3, 1.0, 50, 2.0)
    c2 = elbo_dropout_offset(layers, 1e-4, 1.0, 50, 2.0)
    # d C / d log(1/theta) = (sum_i (Q_i K_i + K_i)) / (N tau), exactly, for theta << 1/l
    slope = (c2 - c1) / math.log(10)
    expected = (3 * 8 + 8 + 8 * 1 + 1) / (50 * 2.0)
    assert slope == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"theta": 0.0}, "theta"),
        ({"theta": -1e-3}, "theta"),
        ({"prior_length_scale": 0.0}, "prior_length_scale"),
        ({"tau": -2.0}, "tau"),
    ],
)
def test_bad_hyperparameters_name_the_argument(kwargs, match):
    arch = Architecture((2, 3, 1))
    ws, bs = arch.init_params()
    x, y = toy_regression(4, 2, 1)
    net, layers = _mlp(arch, 0.5)
    masks = draw_masks(layers, 4, dtype=F64)
    args = dict(theta=1e-2, prior_length_scale=1.0, tau=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        negative_elbo(net, layers, ws, bs, x, y, masks=masks, **args)


@pytest.mark.parametrize("keep_prob", [1.5, 0.0])
def test_bad_keep_prob_names_the_argument(keep_prob):
    with pytest.raises(ValueError, match="keep_prob"):
        _mlp(Architecture((2, 3, 1)), keep_prob)


def test_non_finite_data_and_shape_mismatch():
    arch = Architecture((2, 3, 1))
    ws, bs = arch.init_params()
    x, y = toy_regression(4, 2, 1)
    net, layers = _mlp(arch, 0.5)
    masks = draw_masks(layers, 4, dtype=F64)
    x_bad = x.clone()
    x_bad[1, 0] = float("nan")
    kw = dict(masks=masks, prior_length_scale=1.0)
    with pytest.raises(ValueError, match="x must be finite"):
        dropout_loss(net, layers, ws, bs, x_bad, y, **kw)
    with pytest.raises(ValueError, match="x must be finite"):
        negative_elbo(net, layers, ws, bs, x_bad, y, theta=1e-2, **kw)
    with pytest.raises(ValueError, match="y must have 4 rows like x"):
        dropout_loss(net, layers, ws, bs, x, y[:3], **kw)
    with pytest.raises(ValueError, match=r"keep_probs\[2\]"):
        prior_weight_decays((0.5, 0.5, 1.5), 1.0, 10)
    with pytest.raises(ValueError, match="tau"):
        weight_decay(1.0, 0.5, 10, tau=0.0)


def test_keep_prob_one_gives_the_gaussian_familys_elbo_and_gradients():
    """With keep_prob = 1 on every layer q(W) is N(M, theta^2 I). The full negative ELBO with the
    gap estimated (``gap_samples > 0``) must then equal the one without it, in value and gradient
    (the gap of a one-component family is exactly 0), with finite gradients; and its KL part
    must be the closed-form Gaussian KL computed independently by ``torch.distributions``
    (checked through the difference of two prior length-scales, which cancels the data term).
    float64; tolerances are rounding only (1e-12 relative)."""
    x, y = toy_regression(num_data=12, in_features=2)
    arch = Architecture((2, 5, 1))
    ws, bs = arch.init_params(generator=torch.Generator().manual_seed(0), dtype=F64)
    params = [w.clone().requires_grad_() for w in ws] + [(b + 0.1).requires_grad_() for b in bs]
    ws, bs = params[:2], params[2:]
    net, layers = _mlp(arch, 1.0)
    masks = draw_masks(layers, 12, torch.Generator().manual_seed(1), F64)
    g = torch.Generator().manual_seed(2)
    noise = [torch.randn(12, w.shape[0], dtype=F64, generator=g) for w in ws]
    theta, tau = 0.05, 3.0

    def nelbo(ls, gap_samples):
        return negative_elbo(net, layers, ws, bs, x, y, masks=masks, theta=theta,
                             prior_length_scale=ls, tau=tau, noise=noise,
                             generator=torch.Generator().manual_seed(3), gap_samples=gap_samples)

    with_gap, no_gap = nelbo(0.7, 64), nelbo(0.7, 0)
    torch.testing.assert_close(with_gap, no_gap, rtol=1e-12, atol=0.0)
    g_gap = torch.autograd.grad(with_gap, params)
    g_no_gap = torch.autograd.grad(no_gap, params)
    for a, b in zip(g_gap, g_no_gap):
        assert bool(torch.isfinite(a).all())
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)

    def gaussian_kl(ls):
        prior = torch.distributions.Normal(torch.zeros((), dtype=F64), 1.0 / ls)
        return sum(torch.distributions.kl_divergence(torch.distributions.Normal(t, theta),
                                                     prior).sum() for t in params)

    torch.testing.assert_close(nelbo(0.7, 64) - nelbo(2.0, 64), gaussian_kl(0.7) - gaussian_kl(2.0),
                               rtol=1e-12, atol=1e-12)
