r"""Multilayer perceptrons as plain functions of their weights, in the paper's convention.

A layer :math:`i` maps its input :math:`\mathbf{x}` (width :math:`Q_i`) to

.. math::
    \mathbf{h} = \mathbf{W}_i \operatorname{diag}(\mathbf{z}_i) \mathbf{x} + \mathbf{b}_i,
    \qquad z_{i,a} \sim \operatorname{Bernoulli}(\text{keep\_prob}_i),

with ``W_i`` of shape ``out x in`` (so dropping input unit ``a`` zeroes *column* ``a`` of ``W_i``)
and an elementwise activation between layers (none after the last one). Kept units are **not**
rescaled by ``1 / keep_prob`` (unlike :class:`torch.nn.Dropout`; see
:func:`vi_dropout.infer.elbo.from_inverted_dropout`).

Weights may carry leading batch dimensions (Monte Carlo draws, particles, ensembles):
``W`` of shape ``... x out x in`` and ``b`` of shape ``... x out`` act on inputs of shape
``... x N x in`` and give outputs ``... x N x out``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vi_dropout.validation import check_finite, check_positive_int, check_targets

__all__ = ["ACTIVATIONS", "Architecture", "mlp_forward", "get_activation", "check_data",
           "local_reparam_forward"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "erf": torch.erf,
    "identity": lambda t: t,
}


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Look up an activation by name, with a clear error listing the valid names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


@dataclass(frozen=True)
class Architecture:
    """Widths ``(Q, K_1, ..., K_{L-1}, D)`` of an MLP and its hidden activation.

    Example:
        >>> arch = Architecture((13, 50, 1), activation="relu")
        >>> arch.layer_shapes
        ((50, 13), (1, 50))
    """

    widths: tuple[int, ...]
    activation: str = "relu"

    def __post_init__(self):
        widths = tuple(self.widths)
        if len(widths) < 2:
            raise ValueError(
                f"widths must list at least an input and an output width, got {self.widths!r}"
            )
        widths = tuple(check_positive_int(w, f"widths[{i}]") for i, w in enumerate(widths))
        object.__setattr__(self, "widths", widths)
        get_activation(self.activation)

    @property
    def num_layers(self) -> int:
        return len(self.widths) - 1

    @property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of every weight matrix."""
        return tuple((self.widths[i + 1], self.widths[i]) for i in range(self.num_layers))

    @property
    def in_features(self) -> int:
        return self.widths[0]

    @property
    def out_features(self) -> int:
        return self.widths[-1]

    def init_params(
        self, generator: torch.Generator | None = None, dtype=torch.float64, scheme: str = "glorot"
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Glorot-uniform weights and zero biases (Keras' defaults), as fresh leaf tensors."""
        if scheme != "glorot":
            raise ValueError(f"scheme must be 'glorot', got {scheme!r}")
        weights, biases = [], []
        for out, inp in self.layer_shapes:
            limit = (6.0 / (inp + out)) ** 0.5
            u = torch.rand(out, inp, generator=generator, dtype=dtype)
            weights.append((2 * u - 1) * limit)
            biases.append(torch.zeros(out, dtype=dtype))
        return weights, biases


def mlp_forward(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    activation: str = "relu",
    masks: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    r"""Forward pass :math:`f(\mathbf{x}) = \mathbf{W}_L \operatorname{diag}(\mathbf{z}_L)
    \sigma(\cdots \sigma(\mathbf{W}_1 \operatorname{diag}(\mathbf{z}_1)\mathbf{x} + \mathbf{b}_1)
    \cdots) + \mathbf{b}_L`.

    Args:
        x: inputs, ``... x N x Q``.
        weights: per layer ``... x out x in`` (leading dims broadcast against ``x``'s).
        biases: per layer ``... x out``.
        activation: name of the hidden activation (see :data:`ACTIVATIONS`).
        masks: optional per-layer multiplicative masks on each layer's *input*, broadcastable to
            ``... x N x in`` (per-example Bernoulli masks, or ``None`` for no dropout).

    Returns:
        ``... x N x D`` outputs.
    """
    act = get_activation(activation)
    if len(weights) != len(biases):
        raise ValueError(
            f"weights and biases must have one entry per layer, got {len(weights)} and {len(biases)}"
        )
    if masks is not None and len(masks) != len(weights):
        raise ValueError(f"masks must have {len(weights)} entries (one per layer), got {len(masks)}")
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        if h.shape[-1] != w.shape[-1]:
            raise ValueError(
                f"layer {i}: input has {h.shape[-1]} features but weights[{i}] has shape "
                f"{tuple(w.shape)} (expected ... x out x {h.shape[-1]})"
            )
        if masks is not None and masks[i] is not None:
            h = h * masks[i]
        h = h @ w.transpose(-1, -2) + b.unsqueeze(-2)
        if i < len(weights) - 1:
            h = act(h)
    return h


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
