r"""The dropout objective, the full ELBO of the MC dropout family, and the maps between them.

One implementation for every network: the paper's MLP (:class:`~vi_dropout.models.BayesianMLP`)
and any converted ``torch.nn.Module`` (:class:`~vi_dropout.models.ModuleBNN`) run through
:func:`~vi_dropout.forward.module_forward` with the same masks and noise.

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
from torch import nn

from vi_dropout.conversion import CoveredLayer
from vi_dropout.distributions import DropoutNormal
from vi_dropout.forward import check_output, module_forward
from vi_dropout.inputs import Inputs, batch_size, check_inputs
from vi_dropout.kl import (
    binary_entropy,
    gaussian_kl_terms,
    gaussian_kl_to_prior,
    kl_gap,
    kl_large_width,
    large_width_terms,
)
from vi_dropout.likelihoods import check_likelihood, data_term, negative_log_likelihood
from vi_dropout.validation import (
    check_keep_prob,
    check_positive,
    check_positive_int,
    check_targets,
    per_layer,
)

__all__ = [
    "weight_decay",
    "tau_from_weight_decay",
    "prior_weight_decays",
    "inverted_weight_decay",
    "to_inverted_dropout",
    "from_inverted_dropout",
    "kl_to_prior",
    "negative_elbo",
    "dropout_loss",
    "elbo_dropout_offset",
]


def weight_decay(prior_length_scale, keep_prob, num_data, tau=1.0) -> float:
    r""":math:`\lambda = \pi l^2 / (2 N \tau)`: the L2 coefficient on ``||W||^2`` (no 1/2) that the
    prior :math:`\mathcal{N}(0, l^{-2})` implies for a layer whose input is kept with probability
    :math:`\pi`, in the paper's (non-inverted) convention. Use ``keep_prob=1`` for biases.

    Example:
        >>> round(weight_decay(1e-2, 0.9, 1000, tau=10.0), 20)
        4.5e-09
    """
    ls = check_positive(prior_length_scale, "prior_length_scale")
    kp = check_keep_prob(keep_prob)
    n = check_positive_int(num_data, "num_data")
    t = check_positive(tau, "tau")
    return kp * ls**2 / (2 * n * t)


def tau_from_weight_decay(weight_decay, prior_length_scale, keep_prob, num_data) -> float:
    r"""Invert :func:`weight_decay`: :math:`\tau = \pi l^2 / (2 N \lambda)`."""
    wd = check_positive(weight_decay, "weight_decay")
    ls = check_positive(prior_length_scale, "prior_length_scale")
    kp = check_keep_prob(keep_prob)
    n = check_positive_int(num_data, "num_data")
    return kp * ls**2 / (2 * n * wd)


def prior_weight_decays(keep_probs, prior_length_scale, num_data,
                        tau=1.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-layer ``(weight_decays, bias_decays)`` implied by the prior (the paper's convention),
    one layer per entry of ``keep_probs``."""
    kps = [check_keep_prob(kp, f"keep_probs[{i}]") for i, kp in enumerate(keep_probs)]
    wds = tuple(weight_decay(prior_length_scale, kp, num_data, tau) for kp in kps)
    bds = tuple(weight_decay(prior_length_scale, 1.0, num_data, tau) for _ in kps)
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


def kl_to_prior(layers: Sequence[CoveredLayer], means: Sequence[torch.Tensor],
                biases: Sequence[torch.Tensor | None], *, theta: float, prior_length_scale: float,
                gap_samples: int = 0, generator: torch.Generator | None = None)-> torch.Tensor:
    r""":math:`\mathrm{KL}(q\,\|\,p)` of every covered weight (Proposition 1, plus a differentiable
    Rao-Blackwellised gap estimate when ``gap_samples > 0``) and bias (exact Gaussian KL), as
    every objective of the toolkit computes it."""

    fixed = _is_number(theta) and _is_number(prior_length_scale)
    kl = means[0].new_zeros(())
    for layer, m, b in zip(layers, means, biases):
        q = None
        if (fixed and _is_number(layer.keep_prob) and isinstance(m, torch.Tensor)
                and m.dim() == 2):
            # the same operations on the same values as kl_large_width and
            # gaussian_kl_to_prior, with the terms that do not depend on the means computed
            # once (bit for bit the same values and gradients)
            coef, const = _weight_kl_terms(layer.keep_prob, m, theta, prior_length_scale)
            kl = kl + (coef * m.pow(2).sum((-1, -2)) + const)
            if b is not None:
                bias_coef, bias_const = _bias_kl_terms(b, theta, prior_length_scale)
                kl = kl + (bias_coef * b.pow(2).sum(-1) + bias_const)
        else:
            # the guide's own means (checked when the guide was built): no per-step validation
            q = DropoutNormal(m, layer.keep_prob, theta, validate_args=False)
            kl = kl + kl_large_width(q, prior_length_scale)
            if b is not None:
                kl = kl + gaussian_kl_to_prior(b, theta, prior_length_scale)
        if gap_samples:
            if q is None:
                q = DropoutNormal(m, layer.keep_prob, theta, validate_args=False)
            kl = kl + kl_gap(q, gap_samples, generator=generator, differentiable=True).estimate
    return kl


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: the constant parts of the KL terms, by (keep_prob, shape, theta, l, dtype, device)
_KL_TERMS: dict[tuple, tuple] = {}


def _cached_terms(key: tuple, make):
    terms = _KL_TERMS.get(key)
    if terms is None:
        if len(_KL_TERMS) >= 256:
            _KL_TERMS.clear()
        # ordinary tensors even when first needed under inference mode (they are saved for
        # backward in later calls)
        with torch.inference_mode(False), torch.no_grad():
            terms = make()
        _KL_TERMS[key] = terms
    return terms


def _weight_kl_terms(keep_prob: float, m: torch.Tensor, theta: float,
                     prior_length_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(coef, const)`` with ``kl_large_width(DropoutNormal(m, keep_prob, theta), l) ==
    coef * m.pow(2).sum((-1, -2)) + const``, computed by the very operations of
    :func:`~vi_dropout.kl.kl_large_width` (and of ``DropoutNormal``'s constructor)."""
    k, ncols = m.shape[-2], m.shape[-1]

    def make():

        kp = torch.as_tensor(keep_prob, dtype=m.dtype, device=m.device)
        sc = torch.as_tensor(theta, dtype=m.dtype, device=m.device)
        return large_width_terms(kp, sc, prior_length_scale, k, ncols)

    return _cached_terms(("weight", keep_prob, k, ncols, theta, prior_length_scale, m.dtype,
                          m.device), make)


def _bias_kl_terms(b: torch.Tensor, theta: float,
                   prior_length_scale: float) -> tuple[float, torch.Tensor]:
    """``(coef, const)`` with ``gaussian_kl_to_prior(b, theta, l) == coef * b.pow(2).sum(-1) +
    const``, computed by the very operations of :func:`~vi_dropout.kl.gaussian_kl_to_prior`."""
    d = b.shape[-1]

    def make():

        return gaussian_kl_terms(theta, prior_length_scale, d, b.dtype)

    return _cached_terms(("bias", d, theta, prior_length_scale, b.dtype), make)


def _check_data(x: Inputs, y: torch.Tensor, likelihood: str) -> Inputs:
    """``x`` in one of the input forms, finite, with ``y``'s rows (the one target rule)."""
    x = check_inputs(x, "x")
    check_targets(y, "y", num_rows=batch_size(x), likelihood=likelihood)
    return x


def negative_elbo(module: nn.Module, layers: Sequence[CoveredLayer],
                  means: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                  x: Inputs, y: torch.Tensor, *, masks: Sequence[torch.Tensor | None],
                  theta: float, prior_length_scale: float, tau: float = 1.0,
                  likelihood: str = "gaussian", num_data: int | None = None,
                  noise: Sequence[torch.Tensor] | None = None,
                  generator: torch.Generator | None = None,
                  gap_samples: int = 0) -> torch.Tensor:
    r"""The per-example estimate of the full negative ELBO of a network under the MC dropout
    family (the paper's MLP or any converted ``torch.nn.Module``).

    .. math::
        -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^{B} -\log p(\mathbf{y}_n \mid
        f(\mathbf{x}_n; \mathbf{W}_n)) + \mathrm{KL}(q\,\|\,p),

    one weight draw :math:`\mathbf{W}_n` per example (:func:`~vi_dropout.forward.module_forward`
    with the given masks and noise: the SAME masks as :func:`dropout_loss`), the Gaussian
    likelihood of precision :math:`\tau` or the categorical one on logits, and the KL of
    :func:`kl_to_prior` (Proposition 1, plus the exact gap when ``gap_samples > 0``).

    Args:
        module: the dropout-free network (``model.dropout_free_module()`` of a
            :class:`~vi_dropout.models.ModuleBNN` or :class:`~vi_dropout.models.BayesianMLP`, or
            :func:`~vi_dropout.conversion.dropout_free_copy` of your module).
        layers: its covered layers (``model.layers``).
        means, biases: per layer :math:`\mathbf{M}_i` (``K x Q`` columns, the paper's convention)
            and the bias means (``None`` for a layer without bias), e.g. a
            :class:`~vi_dropout.guides.DropoutGuide`'s ``weight_locs`` and ``bias_locs``.
        x: a minibatch of ``B`` rows: a tensor ``B x ...``, a tuple or a dict of tensors
            (:mod:`vi_dropout.inputs`), finite.
        y: ``B x D`` targets (Gaussian; ``B x 1`` for one output) or ``B`` class indices.
        masks: per layer the masks of :func:`~vi_dropout.forward.draw_masks`.
        theta: :math:`\theta > 0`; prior_length_scale: :math:`l > 0`; tau: :math:`\tau > 0`
            (Gaussian only).
        num_data: the full data size :math:`N` (default ``B``).
        noise: optional per-layer standard normals shaped like each layer's output (common
            random numbers); drawn from ``generator`` otherwise.
        gap_samples: Monte Carlo draws of the KL gap (0: Proposition 1 only).

    Returns:
        a scalar tensor, differentiable in ``means`` and ``biases``.

    Example:
        >>> from vi_dropout.forward import draw_masks
        >>> from vi_dropout.guides import DropoutGuide
        >>> from vi_dropout.models import BayesianMLP
        >>> from vi_dropout.network import Architecture
        >>> model = BayesianMLP(Architecture((2, 8, 1)), prior_length_scale=1.0, tau=4.0,
        ...                     keep_prob=0.9)
        >>> guide = DropoutGuide(model, theta=1e-3)
        >>> x, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
        >>> value = negative_elbo(model.dropout_free_module(), model.layers, guide.weight_locs,
        ...                       guide.bias_locs, x, y, masks=draw_masks(model.layers, 5),
        ...                       theta=guide.theta, prior_length_scale=1.0, tau=4.0)
        >>> value.shape
        torch.Size([])
    """
    likelihood = check_likelihood(likelihood)
    theta = check_positive(theta, "theta")
    prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
    x = _check_data(x, y, likelihood)
    out = module_forward(module, layers, means, biases, x, masks=masks, theta=theta, noise=noise,
                         generator=generator)
    batch = batch_size(x)
    check_output(out, batch, likelihood)
    n = batch if num_data is None else check_positive_int(num_data, "num_data")
    tau = check_positive(tau, "tau") if likelihood == "gaussian" else 1.0
    nll = negative_log_likelihood(y, out, likelihood, tau)
    kl = kl_to_prior(layers, means, biases, theta=theta, prior_length_scale=prior_length_scale,
                     gap_samples=gap_samples, generator=generator)
    return n * nll + kl


def dropout_loss(module: nn.Module, layers: Sequence[CoveredLayer],
                 means: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                 x: Inputs, y: torch.Tensor, *, masks: Sequence[torch.Tensor],
                 prior_length_scale: float, tau: float = 1.0, likelihood: str = "gaussian",
                 num_data: int | None = None) -> torch.Tensor:
    r"""The dropout objective of a converted network with the prior-implied weight decays,

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_n \ell(\mathbf{y}_n, \hat{\mathbf{y}}_n)
        + \sum_i \frac{\pi_i l^2}{2N\tau}\lVert\mathbf{M}_i\rVert^2
        + \sum_i \frac{l^2}{2N\tau}\lVert\mathbf{b}_i\rVert^2,

    :math:`\ell` half the squared error (Gaussian) or the cross-entropy (categorical, :math:`\tau
    = 1`): the :math:`\theta \to 0` limit of ``negative_elbo / (N tau)`` up to a constant.
    Arguments as :func:`negative_elbo`."""
    likelihood = check_likelihood(likelihood)
    prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
    x = _check_data(x, y, likelihood)
    out = module_forward(module, layers, means, biases, x, masks=masks, theta=0.0)
    batch = batch_size(x)
    check_output(out, batch, likelihood)
    n = batch if num_data is None else check_positive_int(num_data, "num_data")
    t = tau if likelihood == "gaussian" else 1.0
    loss = data_term(y, out, likelihood)
    for layer, m, b in zip(layers, means, biases):
        loss = loss + weight_decay(prior_length_scale, layer.keep_prob, n, t) * m.square().sum()
        if b is not None:
            loss = loss + weight_decay(prior_length_scale, 1.0, n, t) * b.square().sum()
    return loss


def elbo_dropout_offset(layers: Sequence[CoveredLayer], theta: float, prior_length_scale: float,
                        num_data: int, tau: float = 1.0, num_outputs: int = 1,
                        likelihood: str = "gaussian") -> float:
    r"""The theory's prediction for :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\text{dropout}}`
    as :math:`\theta \to 0` (Proposition 1 KL, no gap), for the covered ``layers`` (``K x Q``
    columns, bias of size ``B`` or none, keep probability :math:`\pi`):

    .. math::
        \frac{D}{2\tau}\log\frac{2\pi}{\tau} + \frac{1}{N\tau}\sum_i
        \big[Q_i(K_i c - H(\pi_i)) + B_i c\big], \qquad
        c = \tfrac12(l^2\theta^2 - 1 - \log l^2\theta^2),

    the first term for the Gaussian likelihood only (``num_outputs`` :math:`= D`); it grows like
    :math:`-\log\theta` (the improper-KL pitfall of Hron et al., 2018).

    Example:
        >>> from vi_dropout.conversion import find_covered_layers
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(3, 1))
        >>> round(elbo_dropout_offset(find_covered_layers(net), 1e-3, 1.0, 50, 2.0), 4)
        0.5327
    """
    likelihood = check_likelihood(likelihood)
    theta = check_positive(theta, "theta")
    ls = check_positive(prior_length_scale, "prior_length_scale")
    n = check_positive_int(num_data, "num_data")
    tau = check_positive(tau, "tau") if likelihood == "gaussian" else 1.0
    s2 = (ls * theta) ** 2
    per_dim = 0.5 * (s2 - 1 - math.log(s2))
    c = 0.0
    for layer in layers:
        kp = float(binary_entropy(torch.tensor(layer.keep_prob, dtype=torch.float64)))
        c += layer.num_cols * (layer.num_rows * per_dim - kp)
        c += (layer.out_features if layer.has_bias else 0) * per_dim
    const = c / (n * tau)
    if likelihood == "gaussian":
        const += 0.5 * num_outputs / tau * math.log(2 * math.pi / tau)
    return const
