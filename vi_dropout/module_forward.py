r"""Forward passes of a user's network under the MC dropout family, one weight draw PER EXAMPLE.

For a covered layer with input :math:`\mathbf{h}_n`, per-example mask :math:`\mathbf{z}_n` on its
input units (channels for a convolution) and weights
:math:`\mathbf{W}_n = \mathbf{M}\operatorname{diag}(\mathbf{z}_n) + \theta\mathbf{E}_n`,
:math:`\mathbf{b}_n = \mathbf{m}_b + \theta\mathbf{e}_n`, every output is Gaussian given the input
(local reparameterisation, exact in distribution):

.. math::
    \mathbf{W}_n\mathbf{h}_n + \mathbf{b}_n \sim \mathcal{N}\big(\mathbf{M}(\mathbf{z}_n \odot
    \mathbf{h}_n) + \mathbf{m}_b,\; \theta^2(\lVert\mathbf{h}_n\rVert^2 + 1)\,\mathbf{I}\big),

and for a convolution the same per output location with :math:`\lVert\mathbf{h}\rVert^2` summed
over the location's receptive field (all input channels). With ``scale = 0`` this is exactly the
dropout network in the seed's convention (no :math:`1/\pi` rescaling), with the given masks.

The network runs as the user wrote it (:func:`~vi_dropout.conversion.dropout_free_copy`: its
dropout modules are identities), only the covered layers' forwards are replaced while it runs.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Dropout(0.5),
    ...                           torch.nn.Linear(4, 1))
    >>> layers = find_covered_layers(net)
    >>> means = [c.means_from_module(net.get_submodule(c.name).weight.detach()) for c in layers]
    >>> biases = [net.get_submodule(c.name).bias.detach() for c in layers]
    >>> masks = draw_module_masks(layers, 5, torch.Generator().manual_seed(0))
    >>> out = module_forward(dropout_free_copy(net), layers, means, biases, torch.randn(5, 2),
    ...                      masks=masks, scale=0.0)
    >>> out.shape
    torch.Size([5, 1])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conversion import CoveredLayer
from .validation import check_positive_int

__all__ = ["draw_module_masks", "module_forward", "module_kl", "module_negative_elbo",
           "module_dropout_loss"]


def draw_module_masks(layers: Sequence[CoveredLayer], batch: int,
                      generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Per-example Bernoulli(keep_prob) masks on each covered layer's input units, drawn in layer
    order from ``generator``: ``B x Q`` for a linear layer, ``B x C x 1 x 1`` for a convolution.
    A layer with ``keep_prob = 1`` gets ones (and draws nothing)."""
    batch = check_positive_int(batch, "batch")
    masks = []
    for layer in layers:
        shape = (batch, layer.num_cols) if layer.kind == "linear" else (batch, layer.num_cols, 1, 1)
        if layer.keep_prob == 1.0:
            masks.append(torch.ones(shape, dtype=dtype))
        else:
            masks.append(torch.bernoulli(torch.full(shape, layer.keep_prob, dtype=dtype),
                                         generator=generator))
    return masks


def _layer_forward(layer: CoveredLayer, module: nn.Module, weight: torch.Tensor,
                   bias: torch.Tensor | None, mask: torch.Tensor, scale: float,
                   noise: torch.Tensor | None, generator: torch.Generator | None):
    def forward(h: torch.Tensor) -> torch.Tensor:
        if layer.kind == "linear":
            if h.dim() != 2:
                raise ValueError(f"layer {layer.name!r}: per-example draws need a B x Q input, "
                                 f"got shape {tuple(h.shape)}")
            mean = F.linear(h * mask, weight, bias)
            sq = h.square().sum(-1, keepdim=True) if scale else None
        else:
            conv = dict(stride=module.stride, padding=module.padding, dilation=module.dilation)
            if module.padding_mode != "zeros":
                raise ValueError(f"layer {layer.name!r}: padding_mode {module.padding_mode!r} "
                                 f"is not supported (zeros only)")
            mean = F.conv2d(h * mask, weight, bias, **conv)
            if scale:
                ones = torch.ones((1, *weight.shape[1:]), dtype=h.dtype, device=h.device)
                sq = F.conv2d(h.square(), ones, None, **conv)
        if not scale:
            return mean
        var = sq + 1.0 if bias is not None else sq
        eps = noise if noise is not None else torch.randn(
            mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
        if eps.shape != mean.shape:
            raise ValueError(f"layer {layer.name!r}: noise must have shape {tuple(mean.shape)}, "
                             f"got {tuple(eps.shape)}")
        return mean + scale * var.sqrt() * eps

    return forward


@contextlib.contextmanager
def _patched(module: nn.Module, forwards: dict[str, object]):
    originals = {}
    try:
        for name, fn in forwards.items():
            sub = module.get_submodule(name)
            originals[name] = sub.__dict__.get("forward")
            sub.forward = fn
        yield module
    finally:
        for name, fn in originals.items():
            sub = module.get_submodule(name)
            if fn is None:
                del sub.forward
            else:
                sub.forward = fn


def module_forward(module: nn.Module, layers: Sequence[CoveredLayer],
                   means: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                   x: torch.Tensor, *, masks: Sequence[torch.Tensor], scale: float = 0.0,
                   noise: Sequence[torch.Tensor] | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Run ``module`` with one weight draw per example in every covered layer.

    Args:
        module: a dropout-free copy of the user's network
            (:func:`~vi_dropout.conversion.dropout_free_copy`).
        layers: its covered layers (:func:`~vi_dropout.conversion.find_covered_layers`).
        means: per layer the means :math:`\mathbf{M}` as ``K x Q`` columns (seed convention).
        biases: per layer the bias means (``None`` for a layer without bias).
        x: a minibatch ``B x ...`` the module takes.
        masks: per layer ``B x Q`` (linear) or ``B x C x 1 x 1`` (conv) masks
            (:func:`draw_module_masks`).
        scale: :math:`\theta \ge 0`; 0 gives the dropout network itself.
        noise: optional per-layer standard normals shaped like each layer's output (common random
            numbers); drawn from ``generator`` in layer-call order when omitted.

    Returns:
        The module's output for the minibatch.
    """
    if not (len(layers) == len(means) == len(biases) == len(masks)):
        raise ValueError(f"layers, means, biases and masks must have one entry per covered layer "
                         f"({len(layers)}), got {len(means)}, {len(biases)} and {len(masks)}")
    if noise is not None and len(noise) != len(layers):
        raise ValueError(f"noise must have one entry per covered layer ({len(layers)}), got "
                         f"{len(noise)}")
    scale = float(scale)
    if not scale >= 0.0:
        raise ValueError(f"scale must be >= 0, got {scale!r}")
    forwards = {}
    for i, layer in enumerate(layers):
        if masks[i].shape[0] != x.shape[0]:
            raise ValueError(f"masks[{i}] has {masks[i].shape[0]} rows but x has {x.shape[0]}")
        weight = layer.from_columns(means[i])
        forwards[layer.name] = _layer_forward(
            layer, module.get_submodule(layer.name), weight, biases[i], masks[i].to(x.dtype),
            scale, None if noise is None else noise[i], generator)
    with _patched(module, forwards):
        return module(x)


def module_kl(layers: Sequence[CoveredLayer], means: Sequence[torch.Tensor],
              biases: Sequence[torch.Tensor | None], *, scale: float, prior_length_scale: float,
              gap_samples: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    r""":math:`\mathrm{KL}(q\,\|\,p)` of every covered weight (Proposition 1, plus a differentiable
    Rao-Blackwellised gap estimate when ``gap_samples > 0``) and bias (exact Gaussian KL), as
    :func:`vi_dropout.objectives.negative_elbo` computes it for the MLP."""
    from .distributions import DropoutNormal
    from .kl import gaussian_kl_to_prior, kl_gap, kl_large_width

    kl = means[0].new_zeros(())
    for layer, m, b in zip(layers, means, biases):
        # the guide's own means (checked when the guide was built): no per-step validation
        q = DropoutNormal(m, layer.keep_prob, scale, validate_args=False)
        kl = kl + kl_large_width(q, prior_length_scale)
        if b is not None:
            kl = kl + gaussian_kl_to_prior(b, scale, prior_length_scale)
        if gap_samples:
            kl = kl + kl_gap(q, gap_samples, generator=generator, differentiable=True).estimate
    return kl


def module_negative_elbo(module: nn.Module, layers: Sequence[CoveredLayer],
                         means: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                         x: torch.Tensor, y: torch.Tensor, *, masks: Sequence[torch.Tensor],
                         scale: float, prior_length_scale: float, tau: float = 1.0,
                         likelihood: str = "gaussian", num_data: int | None = None,
                         noise: Sequence[torch.Tensor] | None = None,
                         generator: torch.Generator | None = None,
                         gap_samples: int = 0) -> torch.Tensor:
    r"""The per-example estimate of the full negative ELBO of a converted network.

    .. math::
        -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^{B} -\log p(\mathbf{y}_n \mid
        f(\mathbf{x}_n; \mathbf{W}_n)) + \mathrm{KL}(q\,\|\,p),

    one weight draw :math:`\mathbf{W}_n` per example (:func:`module_forward` with the given
    masks and noise), the Gaussian likelihood of precision :math:`\tau` on ``N x D`` targets or
    the categorical one on logits (``y`` class indices), the KL of :func:`module_kl`.
    """
    from .objectives import data_term
    from .validation import check_positive

    out = module_forward(module, layers, means, biases, x, masks=masks, scale=scale, noise=noise,
                         generator=generator)
    n = x.shape[0] if num_data is None else check_positive_int(num_data, "num_data")
    if likelihood == "gaussian":
        tau = check_positive(tau, "tau")
        d = out.shape[-1]
        nll = tau * data_term(y, out, "gaussian") + 0.5 * d * math.log(2 * math.pi / tau)
    elif likelihood == "categorical":
        nll = data_term(y, out, "categorical")
    else:
        raise ValueError(f"likelihood must be 'gaussian' or 'categorical', got {likelihood!r}")
    kl = module_kl(layers, means, biases, scale=scale, prior_length_scale=prior_length_scale,
                   gap_samples=gap_samples, generator=generator)
    return n * nll + kl


def module_dropout_loss(module: nn.Module, layers: Sequence[CoveredLayer],
                        means: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                        x: torch.Tensor, y: torch.Tensor, *, masks: Sequence[torch.Tensor],
                        prior_length_scale: float, tau: float = 1.0, likelihood: str = "gaussian",
                        num_data: int | None = None) -> torch.Tensor:
    r"""The dropout objective of a converted network with the prior-implied weight decays,

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_n \ell(\mathbf{y}_n, \hat{\mathbf{y}}_n)
        + \sum_i \frac{\pi_i l^2}{2N\tau}\lVert\mathbf{M}_i\rVert^2
        + \sum_i \frac{l^2}{2N\tau}\lVert\mathbf{b}_i\rVert^2,

    :math:`\ell` half the squared error (Gaussian) or the cross-entropy (categorical, :math:`\tau
    = 1`): the :math:`\theta \to 0` limit of ``module_negative_elbo / (N tau)`` up to a constant."""
    from .objectives import data_term, weight_decay_from_prior

    n = x.shape[0] if num_data is None else check_positive_int(num_data, "num_data")
    t = tau if likelihood == "gaussian" else 1.0
    out = module_forward(module, layers, means, biases, x, masks=masks, scale=0.0)
    loss = data_term(y, out, likelihood)
    for layer, m, b in zip(layers, means, biases):
        loss = loss + weight_decay_from_prior(prior_length_scale, layer.keep_prob, n, t) * m.square().sum()
        if b is not None:
            loss = loss + weight_decay_from_prior(prior_length_scale, 1.0, n, t) * b.square().sum()
    return loss
