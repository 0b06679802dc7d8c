r"""The MC dropout guide: :class:`~vi_dropout.distributions.DropoutNormal` on every weight site."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from .distributions import DropoutNormal
from .models import BayesianMLP
from .validation import check_keep_prob, check_positive, per_layer

__all__ = ["DropoutGuide"]


class DropoutGuide(PyroModule):
    r"""Variational family of MC dropout for a :class:`~vi_dropout.models.BayesianMLP`.

    .. math::
        q(\mathbf{W}_i) = \prod_a \big[\pi_i\,\mathcal{N}(\mathbf{m}_{i,a}, \theta^2\mathbf{I})
        + (1-\pi_i)\,\mathcal{N}(\mathbf{0}, \theta^2\mathbf{I})\big], \qquad
        q(\mathbf{b}_i) = \mathcal{N}(\mathbf{m}_{b,i}, \theta^2\mathbf{I}).

    Learnable: the means ``M_i`` (``layers.{i}.weight_loc``) and ``m_{b,i}``
    (``layers.{i}.bias_loc``). Fixed and explicit: ``keep_prob`` :math:`\pi_i` per layer (the
    probability that an input unit of layer ``i`` is kept) and :math:`\theta` (``theta``).

    Args:
        model: the :class:`BayesianMLP` whose sites this guide covers.
        keep_prob: one float or one per layer, each in (0, 1].
        theta: :math:`\theta > 0`.
        init_weights, init_biases: optional initial means (``out x in`` / ``out`` per layer);
            Glorot-uniform weights and zero biases otherwise.
        generator: optional ``torch.Generator`` for the initialisation.
        dtype: dtype of the parameters (float64 by default: the checks here are about math).
    """

    def __init__(self, model: BayesianMLP, keep_prob=0.9, theta: float = 1e-2,
                 init_weights: Sequence[torch.Tensor] | None = None,
                 init_biases: Sequence[torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, dtype=torch.float64):
        super().__init__()
        if not isinstance(model, BayesianMLP):
            raise ValueError(f"model must be a BayesianMLP, got {type(model).__name__}")
        arch = model.architecture
        self.architecture = arch
        self.keep_probs = per_layer(keep_prob, arch.num_layers, "keep_prob", check_keep_prob)
        self.theta = check_positive(theta, "theta")
        w0, b0 = arch.init_params(generator=generator, dtype=dtype)
        if init_weights is not None:
            w0 = self._check_init(init_weights, [s for s in arch.layer_shapes], "init_weights", dtype)
        if init_biases is not None:
            b0 = self._check_init(init_biases, [(s[0],) for s in arch.layer_shapes], "init_biases", dtype)
        self.weight_locs = torch.nn.ParameterList([torch.nn.Parameter(w.clone()) for w in w0])
        self.bias_locs = torch.nn.ParameterList([torch.nn.Parameter(b.clone()) for b in b0])

    @staticmethod
    def _check_init(tensors, shapes, name, dtype):
        if len(tensors) != len(shapes):
            raise ValueError(f"{name} must have {len(shapes)} entries (one per layer), got {len(tensors)}")
        out = []
        for i, (t, s) in enumerate(zip(tensors, shapes)):
            t = torch.as_tensor(t, dtype=dtype)
            if tuple(t.shape) != tuple(s):
                raise ValueError(
                    f"{name}[{i}] must have shape {tuple(s)} to match the model, got {tuple(t.shape)}"
                )
            out.append(t)
        return out

    def layer_distributions(self):
        """``[(q(W_i), q(b_i)), ...]`` as distribution objects (event dims ``out x in``, ``out``)."""
        return [
            (DropoutNormal(w, kp, self.theta),
             dist.Normal(b, torch.as_tensor(self.theta, dtype=b.dtype)).to_event(1))
            for w, b, kp in zip(self.weight_locs, self.bias_locs, self.keep_probs)
        ]

    def forward(self, x: torch.Tensor | None = None, *args, **kwargs):
        if x is not None and x.shape[-1] != self.architecture.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features but the guide was built for "
                f"{self.architecture.in_features}"
            )
        draws = {}
        for i, (qw, qb) in enumerate(self.layer_distributions()):
            draws[f"layers.{i}.weight"] = pyro.sample(f"layers.{i}.weight", qw)
            draws[f"layers.{i}.bias"] = pyro.sample(f"layers.{i}.bias", qb)
        return draws

    @property
    def weights(self) -> list[torch.Tensor]:
        return list(self.weight_locs)

    @property
    def biases(self) -> list[torch.Tensor]:
        return list(self.bias_locs)

