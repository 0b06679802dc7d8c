r"""The paper's network: an MLP with dropout in front of every layer, and its Pyro model.

:class:`MLP` is an ordinary ``torch.nn.Module`` (``nn.Linear`` layers ``layers.{i}``, each after
an ``nn.Dropout`` of keep probability :math:`\pi_i`, the activation between layers). It runs as
any network does (MC dropout through its own ``nn.Dropout``), and :meth:`MLP.forward_draws`
runs it for many weight draws at once.

:class:`BayesianMLP` is :class:`~vi_dropout.models.bnn.ModuleBNN` on an :class:`MLP`: the same
model, sites, plate and checks as for any network, with the priors of Gal & Ghahramani's
derivation

.. math::
    \mathbf{W}_i \sim \mathcal{N}(\mathbf{0}, l^{-2}\mathbf{I}), \quad
    \mathbf{b}_i \sim \mathcal{N}(\mathbf{0}, l^{-2}\mathbf{I}), \quad
    \mathbf{y}_n \mid \mathbf{x}_n, \mathbf{W} \sim
    \begin{cases}\mathcal{N}(f(\mathbf{x}_n), \tau^{-1}\mathbf{I}_D) & \text{gaussian}\\
    \operatorname{Categorical}(\operatorname{softmax} f(\mathbf{x}_n)) & \text{categorical}
    \end{cases}

Sample sites are ``layers.{i}.weight`` (``out x in``) and ``layers.{i}.bias`` (``out``),
observations ``obs`` inside the plate ``data``. Vectorised particles run the network once for
all particles (:meth:`MLP.forward_draws`), not once per particle.

Example:
    >>> model = BayesianMLP(Architecture((1, 20, 1)), prior_length_scale=1.0, tau=10.0,
    ...                     keep_prob=0.9)
    >>> [(c.name, c.keep_prob) for c in model.layers]
    [('layers.0', 0.9), ('layers.1', 0.9)]
"""

from __future__ import annotations

import torch
from torch import nn

from vi_dropout.inputs import Inputs
from vi_dropout.models.bnn import ModuleBNN
from vi_dropout.network import Architecture, get_activation, mlp_forward
from vi_dropout.validation import check_keep_prob, per_layer

__all__ = ["MLP", "BayesianMLP"]


class MLP(nn.Module):
    r"""The paper's MLP as a ``torch.nn.Module``: ``nn.Dropout`` (keep probability
    :math:`\pi_i`) in front of every ``nn.Linear`` layer, the activation between layers.

    .. math::
        f(\mathbf{x}) = \mathbf{W}'_L \tfrac{\mathbf{z}_L}{\pi_L} \odot \sigma(\cdots
        \sigma(\mathbf{W}'_1 \tfrac{\mathbf{z}_1}{\pi_1} \odot \mathbf{x} + \mathbf{b}_1)
        \cdots) + \mathbf{b}_L

    (``nn.Dropout`` rescales kept units by :math:`1/\pi_i`; the module's weights are
    :math:`\mathbf{W}'_i = \pi_i\mathbf{M}_i` in the paper's convention).

    Args:
        architecture: widths and activation (:class:`~vi_dropout.network.Architecture`).
        keep_prob: one float or one per layer, each in (0, 1] (1: no dropout in front).
        generator: optional ``torch.Generator`` for the Glorot-uniform initial weights (zero
            biases; :meth:`~vi_dropout.network.Architecture.init_params`).
        dtype: dtype of the parameters (float64 by default: the checks here are about math).

    Shapes: ``x`` is ``N x Q``, the output ``N x D``.

    Example:
        >>> net = MLP(Architecture((3, 8, 1)), keep_prob=0.9)
        >>> net(torch.zeros(4, 3, dtype=torch.float64)).shape
        torch.Size([4, 1])
    """

    def __init__(self, architecture: Architecture, keep_prob=1.0, *,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        super().__init__()
        if not isinstance(architecture, Architecture):
            raise ValueError(f"architecture must be an Architecture, got "
                             f"{type(architecture).__name__}")
        self.architecture = architecture
        self.keep_probs = per_layer(keep_prob, architecture.num_layers, "keep_prob",
                                    check_keep_prob)
        weights, biases = architecture.init_params(generator=generator, dtype=dtype)
        self.layers = nn.ModuleList()
        for w, b in zip(weights, biases):
            layer = nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(b)
            self.layers.append(layer)
        self.dropouts = nn.ModuleList(nn.Dropout(1.0 - kp) for kp in self.keep_probs)

    def keep_prob_map(self) -> dict[str, float]:
        """``{"layers.{i}": keep_prob}``: where dropout acts, exactly (for
        :func:`~vi_dropout.conversion.convert_module`'s ``keep_probs``)."""
        return {f"layers.{i}": kp for i, kp in enumerate(self.keep_probs)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = get_activation(self.architecture.activation)
        h = x
        last = len(self.layers) - 1
        for i, (drop, layer) in enumerate(zip(self.dropouts, self.layers)):
            h = layer(drop(h))
            if i < last:
                h = act(h)
        return h

    def forward_draws(self, x: torch.Tensor, weights, biases) -> torch.Tensor:
        """The network without dropout for ``S`` weight draws at once
        (:func:`~vi_dropout.network.mlp_forward`): ``weights[i]`` ``S x out x in``,
        ``biases[i]`` ``S x out``, ``x`` ``N x Q``; returns ``S x N x D``."""
        return mlp_forward(x, weights, biases, self.architecture.activation)


class BayesianMLP(ModuleBNN):
    r"""The Pyro model of MC dropout on the paper's MLP: :class:`ModuleBNN` of an :class:`MLP`.

    Args:
        architecture: widths and activation (:class:`~vi_dropout.network.Architecture`).
        prior_length_scale: :math:`l > 0`; prior standard deviation :math:`1/l`.
        tau: likelihood precision :math:`\tau > 0` (Gaussian only).
        likelihood: ``"gaussian"`` or ``"categorical"`` (outputs are logits, ``y`` class indices).
        keep_prob: one float or one per layer, each in (0, 1]: the dropout in front of each
            layer, which :class:`~vi_dropout.guides.DropoutGuide` turns into the family's
            :math:`\pi_i`.
        generator: optional ``torch.Generator`` for the network's initial weights (the guide's
            default means).
        dtype: dtype of the network; ``x`` must have it (float64 by default).

    Call with ``(x, y=None, num_data=None, subsample_size=None)`` as :class:`ModuleBNN`, ``x``
    of shape ``N x Q`` and ``y`` of shape ``N x D`` (``N x 1`` for one output; a 1-D ``y`` is
    refused) or ``N`` class indices. Works under ``Trace_ELBO(vectorize_particles=True,
    max_plate_nesting=1)``, with one network call for all particles.

    Attributes:
        architecture: the :class:`~vi_dropout.network.Architecture`.
        keep_probs: the keep probability of each layer.

    Example:
        >>> model = BayesianMLP(Architecture((1, 20, 1)), prior_length_scale=1.0, tau=10.0,
        ...                     keep_prob=0.9)
        >>> from vi_dropout.guides import DropoutGuide
        >>> guide = DropoutGuide(model, theta=1e-2)
    """

    def __init__(self, architecture: Architecture, prior_length_scale: float = 1.0,
                 tau: float = 1.0, likelihood: str = "gaussian", *, keep_prob=1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64):
        net = MLP(architecture, keep_prob, generator=generator, dtype=dtype)
        super().__init__(net, prior_length_scale=prior_length_scale, tau=tau,
                         likelihood=likelihood, keep_probs=net.keep_prob_map())
        self.architecture = architecture
        self.keep_probs = net.keep_probs

    def network_with_dropout(self) -> MLP:
        """A fresh :class:`MLP` of this model's architecture, keep probabilities and dtype, WITH
        its ``nn.Dropout`` layers (the model itself runs without them): load a guide's means
        into it (:meth:`~vi_dropout.guides.DropoutGuide.load_into`) for MC dropout with
        :func:`~vi_dropout.predict.mc_predict`."""
        return MLP(self.architecture, self.keep_probs, dtype=self.dtype)

    def check_data(self, x: Inputs, y: torch.Tensor | None = None,
                   num_data: int | None = None) -> int:
        """:meth:`ModuleBNN.check_data`, after checking that ``x`` is one floating ``N x Q``
        tensor with the architecture's ``Q`` features."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a tensor of shape N x {self.architecture.in_features}, "
                             f"got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() != 2 or x.shape[-1] != self.architecture.in_features:
            raise ValueError(f"x must have shape N x {self.architecture.in_features} (that many "
                             f"features), got {tuple(x.shape)}")
        return super().check_data(x, y, num_data)
