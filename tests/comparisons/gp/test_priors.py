"""The dropout prior -> GP map (:mod:`comparisons.gp.priors`): values, the network prior's
second moment by Monte Carlo, the protocol's Keras objective, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from comparisons.gp.models import make_kernel
from comparisons.gp.priors import dropout_prior_gp_hyperparameters, dropout_prior_hyperparameters
from tests.common import NUM_SE
from vi_dropout.infer.elbo import weight_decay
from vi_dropout.network import mlp_forward


def test_dropout_prior_hyperparameters_values():
    h = dropout_prior_hyperparameters(2.0, tau=4.0, keep_prob=0.8, input_dim=5, num_hidden=10)
    assert h == pytest.approx({"weight_variance": 5 / 4, "bias_variance": 1 / 4,
                               "outputscale": 10 / 4, "output_bias_variance": 1 / 4,
                               "noise": 0.25})
    h2 = dropout_prior_hyperparameters(2.0, 4.0, 0.8, 5, 10, scale_by_keep_prob=True)
    assert h2["outputscale"] == pytest.approx(0.8 * 10 / 4)


def test_dropout_prior_kernel_matches_network_prior_monte_carlo():
    # 200,000 networks f(x) = W2 relu(W1 x + b1), every weight N(0, l^-2), no output bias, drawn
    # with vi_dropout.network.mlp_forward: the empirical output covariance at 4 points must match
    # the implied kernel within 4 Monte-Carlo standard errors (exact second moment for any K).
    length, q, k_hidden, n_net = 1.5, 3, 10, 200_000
    h = dropout_prior_hyperparameters(length, 10.0, 0.9, q, k_hidden)
    kernel = make_kernel("arccos1", q, h["weight_variance"], h["bias_variance"],
                         outputscale=h["outputscale"]).double()
    x = torch.randn(4, q, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    std = 1.0 / length
    w1 = torch.randn(n_net, k_hidden, q, generator=g, dtype=torch.float64) * std
    b1 = torch.randn(n_net, k_hidden, generator=g, dtype=torch.float64) * std
    w2 = torch.randn(n_net, 1, k_hidden, generator=g, dtype=torch.float64) * std
    b2 = torch.zeros(n_net, 1, dtype=torch.float64)
    f = mlp_forward(x, [w1, w2], [b1, b2], activation="relu").squeeze(-1)  # n_net x 4
    prods = f.unsqueeze(-1) * f.unsqueeze(-2)
    mean, se = prods.mean(0), prods.std(0) / math.sqrt(n_net)
    exact = kernel(x).to_dense().detach()
    assert ((exact - mean).abs() <= NUM_SE * se).all()


def test_dropout_prior_bad_input():
    with pytest.raises(ValueError, match="keep_prob must lie in"):
        dropout_prior_hyperparameters(1.0, 1.0, 0.0, 3, 10)
    with pytest.raises(ValueError, match="tau must be a finite number > 0, got -1"):
        dropout_prior_hyperparameters(1.0, -1, 0.5, 3, 10)
    with pytest.raises(ValueError, match="num_hidden must be an integer >= 1, got 0"):
        dropout_prior_hyperparameters(1.0, 1.0, 0.5, 3, 0)


def test_prior_hyperparameters_follow_the_keras_objective():
    # lambda of the Keras objective (halved, on M = W'/p) = p l_eff^2 / (2 N tau_s), float64
    length, p, tau, s, n, q, k = 1e-2, 0.9, 0.5, 7.3, 455, 13, 50
    h = dropout_prior_gp_hyperparameters(length, p, tau, s, q, k)
    lam_keras = weight_decay(length, p, n, tau) * p**2 / 2.0
    lam_derivation = p * h["effective_length_scale"] ** 2 / (2 * n * h["tau_standardized"])
    assert lam_keras == pytest.approx(lam_derivation, rel=1e-14)
    inv = h["effective_length_scale"] ** -2
    assert h["weight_variance"] == pytest.approx(q * inv, rel=1e-14)
    assert h["bias_variance"] == pytest.approx(inv, rel=1e-14)
    assert h["outputscale"] == pytest.approx(k * inv, rel=1e-14)
    assert h["noise"] == pytest.approx(1.0 / (tau * s**2), rel=1e-14)
    with pytest.raises(ValueError, match="keep_prob"):
        dropout_prior_gp_hyperparameters(length, 0.0, tau, s, q, k)


def test_protocol_prior_is_the_network_prior_at_the_effective_length_scale():
    # one map: the protocol's hyper-parameters are dropout_prior_hyperparameters at
    # (l_eff, tau_s), plus the two derived scales
    h = dropout_prior_gp_hyperparameters(1e-2, 0.95, 0.5, 9.0, 13, 50)
    base = dropout_prior_hyperparameters(h["effective_length_scale"], h["tau_standardized"],
                                         0.95, 13, 50)
    assert {k: h[k] for k in base} == base
    assert h["effective_length_scale"] == pytest.approx(1e-2 * 0.95 * 9.0 / math.sqrt(2.0))
    assert h["tau_standardized"] == pytest.approx(0.5 * 81.0)
