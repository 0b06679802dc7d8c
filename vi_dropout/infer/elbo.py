r"""The dropout objective, the per-example ELBO that shares its masks, and the maps between them.

With data :math:`\{(\mathbf{x}_n, \mathbf{y}_n)\}_{n=1}^N`, per-example masks
:math:`\mathbf{z}_{n,i}` on the input of layer :math:`i`, and a Gaussian likelihood of precision
:math:`\tau`, the dropout objective is

.. math::
    \mathcal{L}_{\text{dropout}} = \frac{1}{2N}\sum_n \|\mathbf{y}_n - \hat{\mathbf{y}}_n\|^2
        + \sum_i \lambda_i \|\mathbf{W}_i\|^2 + \sum_i \lambda_{b} \|\mathbf{b}_i\|^2,
    \qquad \lambda_i = \frac{\pi_i l^2}{2 N \tau}, \quad \lambda_b = \frac{l^2}{2N\tau},

and the negative ELBO of the family :class:`~vi_dropout.distributions.DropoutNormal` with prior
:math:`\mathcal{N}(0, l^{-2})`, estimated with one weight draw per example that uses the SAME
masks, satisfies

.. math::
    \frac{-\widehat{\mathrm{ELBO}}}{N\tau} = \mathcal{L}_{\text{dropout}}
        + \underbrace{\frac{D}{2\tau}\log\frac{2\pi}{\tau}
        + \frac{C(\theta)}{N\tau}}_{\text{constant in } \mathbf{M}}
        + O(\theta) + \frac{\text{gap}}{N\tau},

with :math:`C(\theta) = \sum_i [Q_i(\tfrac{K_i}{2}(l^2\theta^2 - 1 - \log l^2\theta^2) - H(\pi_i))
+ \tfrac{K_i}{2}(l^2\theta^2 - 1 - \log l^2\theta^2)]`, which grows like :math:`-\log\theta`
(the improper-KL pitfall of Hron et al., 2018) while its gradient is zero. For a categorical
likelihood replace the squared error by the mean cross-entropy and set :math:`\tau = 1`.

Inverted dropout (``torch.nn.Dropout``, Keras) multiplies kept units by :math:`1/\pi`; its weights
:math:`\mathbf{W}' = \pi \mathbf{M}` (see :func:`to_inverted_dropout`). A penalty
:math:`\lambda'\|\mathbf{W}'\|^2` equals :math:`\lambda'\pi^2\|\mathbf{M}\|^2`, so the prior-implied
decay on the inverted weights is :math:`\lambda' = \lambda/\pi^2 = l^2/(2N\tau\pi)`
(:func:`inverted_weight_decay`), and plain SGD with step size :math:`\eta'` on
:math:`\mathbf{W}'` is SGD with step :math:`\eta'/\pi^2` on :math:`\mathbf{M}`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vi_dropout.distributions import DropoutNormal
from vi_dropout.kl import binary_entropy, gaussian_kl_to_prior, kl_gap, kl_large_width
from vi_dropout.likelihoods import check_likelihood, data_term
from vi_dropout.network import Architecture, get_activation
from vi_dropout.validation import (
    check_finite,
    check_keep_prob,
    check_positive,
    check_positive_int,
    check_targets,
    per_layer,
)

__all__ = [
    "weight_decay_from_prior",
    "tau_from_weight_decay",
    "prior_weight_decays",
    "inverted_weight_decay",
    "to_inverted_dropout",
    "from_inverted_dropout",
    "draw_masks",
    "check_data",
    "local_reparam_forward",
    "dropout_loss",
    "negative_elbo",
    "elbo_dropout_offset",
    "elbo_offset_of_layers",
]


def weight_decay_from_prior(prior_length_scale, keep_prob, num_data, tau=1.0) -> float:
    r""":math:`\lambda = \pi l^2 / (2 N \tau)`: the L2 coefficient on ``||W||^2`` (no 1/2) that the
    prior :math:`\mathcal{N}(0, l^{-2})` implies for a layer whose input is kept with probability
    :math:`\pi`, in the paper's (non-inverted) convention. Use ``keep_prob=1`` for biases.

    Example:
        >>> round(weight_decay_from_prior(1e-2, 0.9, 1000, tau=10.0), 20)
        4.5e-09
    """
    ls = check_positive(prior_length_scale, "prior_length_scale")
    kp = check_keep_prob(keep_prob)
    n = check_positive_int(num_data, "num_data")
    t = check_positive(tau, "tau")
    return kp * ls**2 / (2 * n * t)


def tau_from_weight_decay(weight_decay, prior_length_scale, keep_prob, num_data) -> float:
    r"""Invert :func:`weight_decay_from_prior`: :math:`\tau = \pi l^2 / (2 N \lambda)`."""
    wd = check_positive(weight_decay, "weight_decay")
    ls = check_positive(prior_length_scale, "prior_length_scale")
    kp = check_keep_prob(keep_prob)
    n = check_positive_int(num_data, "num_data")
    return kp * ls**2 / (2 * n * wd)


def prior_weight_decays(architecture: Architecture, keep_probs, prior_length_scale, num_data,
                        tau=1.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-layer ``(weight_decays, bias_decays)`` implied by the prior (the paper's convention)."""
    kps = per_layer(keep_probs, architecture.num_layers, "keep_probs", check_keep_prob)
    wds = tuple(weight_decay_from_prior(prior_length_scale, kp, num_data, tau) for kp in kps)
    bds = tuple(weight_decay_from_prior(prior_length_scale, 1.0, num_data, tau) for _ in kps)
    return wds, bds


def inverted_weight_decay(weight_decay, keep_prob) -> float:
    r"""The decay :math:`\lambda/\pi^2` on inverted-dropout weights :math:`\pi\mathbf{M}` that equals
    :math:`\lambda\|\mathbf{M}\|^2`."""
    return check_positive(weight_decay, "weight_decay") / check_keep_prob(keep_prob) ** 2


def to_inverted_dropout(weights: Sequence[torch.Tensor], keep_probs) -> list[torch.Tensor]:
    r"""Map seed-convention means :math:`\mathbf{M}_i` to inverted-dropout weights
    :math:`\pi_i\mathbf{M}_i` (same function, same masks)."""
    kps = per_layer(keep_probs, len(weights), "keep_probs", check_keep_prob)
    return [w * kp for w, kp in zip(weights, kps)]


def from_inverted_dropout(weights: Sequence[torch.Tensor], keep_probs) -> list[torch.Tensor]:
    r"""Map inverted-dropout weights :math:`\mathbf{W}'_i` (e.g. an ``nn.Linear`` after
    ``nn.Dropout``) to seed-convention means :math:`\mathbf{W}'_i/\pi_i`."""
    kps = per_layer(keep_probs, len(weights), "keep_probs", check_keep_prob)
    return [w / kp for w, kp in zip(weights, kps)]


def draw_masks(num_data: int, architecture: Architecture, keep_probs,
               generator: torch.Generator | None = None, dtype=torch.float64) -> list[torch.Tensor]:
    """Per-example Bernoulli(keep_prob) masks on every layer's input, each ``N x in_i``.

    Drawn in layer order with ``torch.bernoulli`` on a tensor of keep probabilities, so the
    stream is reproducible from ``generator``.
    """
    n = check_positive_int(num_data, "num_data")
    kps = per_layer(keep_probs, architecture.num_layers, "keep_probs", check_keep_prob)
    masks = []
    for (_, inp), kp in zip(architecture.layer_shapes, kps):
        masks.append(torch.bernoulli(torch.full((n, inp), kp, dtype=dtype), generator=generator))
    return masks


def check_data(x, y, architecture: Architecture | None = None, likelihood: str = "gaussian"):
    """Check inputs ``N x Q`` (finite) and targets by the one target rule
    (:func:`~vi_dropout.validation.check_targets`), and ``Q`` against ``architecture``."""
    check_finite(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have shape N x Q, got {tuple(x.shape)}")
    check_targets(y, "y", num_rows=x.shape[-2], likelihood=likelihood)
    if architecture is not None and x.shape[-1] != architecture.in_features:
        raise ValueError(
            f"x has {x.shape[-1]} features but the architecture expects {architecture.in_features}"
        )


def dropout_loss(x, y, weights, biases, masks, weight_decays, bias_decays, activation="relu",
                 likelihood="gaussian") -> torch.Tensor:
    r"""The dropout objective :math:`\mathcal{L}_{\text{dropout}}` for given per-example masks.

    Args:
        x: ``N x Q`` inputs; y: ``N x D`` targets (``N x 1`` for one output; a 1-D ``y`` is
            refused), or ``N`` class indices for categorical.
        weights, biases: per layer ``out x in`` and ``out`` (the paper's convention, no rescaling).
        masks: per layer ``N x in`` Bernoulli masks (see :func:`draw_masks`).
        weight_decays, bias_decays: per-layer :math:`\lambda_i` on ``||W_i||^2`` and ``||b_i||^2``.
    """
    from vi_dropout.network import mlp_forward

    check_data(x, y, likelihood=check_likelihood(likelihood))
    y_hat = mlp_forward(x, weights, biases, activation, masks)
    loss = data_term(y, y_hat, likelihood)
    for w, b, lw, lb in zip(weights, biases, weight_decays, bias_decays):
        loss = loss + lw * w.pow(2).sum() + lb * b.pow(2).sum()
    return loss


def local_reparam_forward(x, weights, biases, masks, theta, activation, noise):
    """One weight draw per example, by local reparameterisation (exact in distribution).

    For a layer with input ``h`` (``B x in``), mask ``z`` and per-example weights
    ``W_n = M diag(z_n) + theta E_n``, ``b_n = m_b + theta e_n``:
    ``W_n h_n + b_n ~ N(M (z_n * h_n) + m_b, theta^2 (||h_n||^2 + 1) I)``.
    """
    act = get_activation(activation)
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        mean = (h * masks[i]) @ w.transpose(-1, -2) + b
        std = theta * torch.sqrt(h.pow(2).sum(-1, keepdim=True) + 1.0)
        h = mean + std * noise[i]
        if i < len(weights) - 1:
            h = act(h)
    return h


def negative_elbo(x, y, weights, biases, masks, *, keep_probs, theta, prior_length_scale,
                  tau=1.0, activation="relu", likelihood="gaussian", num_data=None, noise=None,
                  generator=None, gap_samples: int = 0) -> torch.Tensor:
    r"""Per-example estimate of the FULL negative ELBO (all constants included).

    .. math::
        -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^{B} -\log p(\mathbf{y}_n \mid
        f(\mathbf{x}_n; \mathbf{W}_n)) + \mathrm{KL}(q \,\|\, p),

    with one weight draw :math:`\mathbf{W}_n` per example built from the given masks (the same
    masks as the dropout objective) and standard-normal ``noise`` (local reparameterisation),
    and the KL as Proposition 1 for each weight matrix plus the exact Gaussian KL for each bias,
    plus (when ``gap_samples > 0``) a differentiable Rao-Blackwellised estimate of the gap that
    makes it the exact KL.

    Args:
        x, y: a minibatch of ``B`` rows; ``num_data`` is the full ``N`` (default ``B``).
        weights, biases: variational means ``M_i`` (``out x in``) and ``m_{b,i}``.
        masks: per layer ``B x in``.
        keep_probs: per layer (or one float); theta: :math:`\theta > 0`.
        prior_length_scale: :math:`l`; tau: Gaussian precision (ignored for categorical).
        noise: per layer ``B x out`` standard normals (common random numbers); drawn when None.
    """
    likelihood = check_likelihood(likelihood)
    check_data(x, y, likelihood=likelihood)
    theta = check_positive(theta, "theta")
    tau = check_positive(tau, "tau") if likelihood == "gaussian" else 1.0
    ls = check_positive(prior_length_scale, "prior_length_scale")
    kps = per_layer(keep_probs, len(weights), "keep_probs", check_keep_prob)
    b = x.shape[0]
    n = b if num_data is None else check_positive_int(num_data, "num_data")
    if noise is None:
        noise = [torch.randn(b, w.shape[0], dtype=x.dtype, generator=generator) for w in weights]
    out = local_reparam_forward(x, weights, biases, masks, theta, activation, noise)
    if likelihood == "gaussian":
        d = out.shape[-1]
        nll = tau * data_term(y, out, "gaussian") + 0.5 * d * math.log(2 * math.pi / tau)
    else:
        nll = data_term(y, out, "categorical")
    kl = out.new_zeros(())
    for w, bias, kp in zip(weights, biases, kps):
        q = DropoutNormal(w, kp, theta)
        kl = kl + kl_large_width(q, ls) + gaussian_kl_to_prior(bias, theta, ls)
        if gap_samples:
            kl = kl + kl_gap(q, gap_samples, generator=generator, differentiable=True).estimate
    return n * nll + kl


def elbo_dropout_offset(architecture: Architecture, keep_probs, theta, prior_length_scale,
                        num_data, tau=1.0, likelihood="gaussian") -> float:
    r"""The theory's prediction for :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\text{dropout}}`
    as :math:`\theta \to 0` (Proposition 1 KL, no gap):
    :math:`\frac{D}{2\tau}\log\frac{2\pi}{\tau} + C(\theta)/(N\tau)`; it grows like
    :math:`-\log\theta`."""
    likelihood = check_likelihood(likelihood)
    theta = check_positive(theta, "theta")
    ls = check_positive(prior_length_scale, "prior_length_scale")
    n = check_positive_int(num_data, "num_data")
    tau = check_positive(tau, "tau") if likelihood == "gaussian" else 1.0
    kps = per_layer(keep_probs, architecture.num_layers, "keep_probs", check_keep_prob)
    layers = [(k, q, k, kp) for (k, q), kp in zip(architecture.layer_shapes, kps)]
    return elbo_offset_of_layers(layers, theta, ls, n, tau, architecture.out_features, likelihood)


def elbo_offset_of_layers(layers, theta: float, prior_length_scale: float, num_data: int,
                          tau: float, num_outputs: int, likelihood: str = "gaussian") -> float:
    r""":func:`elbo_dropout_offset` for any covered layers, given as ``(K, Q, B, keep_prob)``
    (column length, columns, bias size, keep probability):
    :math:`\frac{D}{2\tau}\log\frac{2\pi}{\tau}` (Gaussian) plus
    :math:`\frac{1}{N\tau}\sum_i [Q_i(K_i c - H(\pi_i)) + B_i c]`,
    :math:`c = \frac12(l^2\theta^2 - 1 - \log l^2\theta^2)`. Arguments are not re-checked."""
    s2 = (prior_length_scale * theta) ** 2
    per_dim = 0.5 * (s2 - 1 - math.log(s2))
    c = 0.0
    for k, q, b, kp in layers:
        c += q * (k * per_dim - float(binary_entropy(torch.tensor(kp, dtype=torch.float64))))
        c += b * per_dim
    const = c / (num_data * tau)
    if likelihood == "gaussian":
        const += 0.5 * num_outputs / tau * math.log(2 * math.pi / tau)
    return const
