r"""A Bayesian MLP as a Pyro model, with the priors of Gal & Ghahramani's derivation.

.. math::
    \mathbf{W}_i \sim \mathcal{N}(\mathbf{0}, l^{-2}\mathbf{I}), \quad
    \mathbf{b}_i \sim \mathcal{N}(\mathbf{0}, l^{-2}\mathbf{I}), \quad
    \mathbf{y}_n \mid \mathbf{x}_n, \mathbf{W} \sim
    \begin{cases}\mathcal{N}(f(\mathbf{x}_n), \tau^{-1}\mathbf{I}_D) & \text{gaussian}\\
    \operatorname{Categorical}(\operatorname{softmax} f(\mathbf{x}_n)) & \text{categorical}
    \end{cases}

Sample sites are named ``layers.{i}.weight`` (``out x in``) and ``layers.{i}.bias`` (``out``),
observations ``obs`` inside the plate ``data``.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from .network import Architecture, mlp_forward
from .objectives import LIKELIHOODS
from .validation import (
    check_dtype,
    check_finite,
    check_has_rows,
    check_positive,
    check_positive_int,
    check_targets,
)

__all__ = ["BayesianMLP"]


def _drop_plate_slot(t: torch.Tensor, event_dims: int) -> torch.Tensor:
    """Weights drawn under vectorised particles have batch shape ``P x 1``: the trailing ``1`` is
    the slot of the data plate. Drop it so weights broadcast as ``P x out x in`` against
    ``N x in`` inputs."""
    if t.dim() > event_dims:
        if t.shape[-event_dims - 1] != 1:
            raise ValueError(
                f"weights with batch shape {tuple(t.shape[:-event_dims])} do not fit the data "
                f"plate: the last batch dim must be 1 (use max_plate_nesting=1)"
            )
        t = t.squeeze(-event_dims - 1)
    return t


class BayesianMLP(PyroModule):
    r"""Pyro model of an MLP with Gaussian priors :math:`\mathcal{N}(0, l^{-2})` on every weight
    and bias and a Gaussian (precision :math:`\tau`) or categorical likelihood.

    Args:
        architecture: widths and activation (:class:`~vi_dropout.network.Architecture`).
        prior_length_scale: :math:`l > 0`; prior standard deviation :math:`1/l`.
        tau: likelihood precision :math:`\tau > 0` (Gaussian only).
        likelihood: ``"gaussian"`` or ``"categorical"`` (outputs are logits, ``y`` class indices).

    Call with ``(x, y=None, num_data=None, subsample_size=None)``, ``x`` of shape ``N x Q`` and
    ``y`` of shape ``N x D`` (Gaussian; ``N x 1`` for one output, a 1-D ``y`` is refused) or ``N``
    class indices (categorical):

    * ``x``, ``y`` a minibatch and ``num_data`` the full data size ``N``: the likelihood is scaled
      by ``N / B`` (minibatch SVI);
    * or the full data with ``subsample_size=B``: the plate draws a random minibatch.

    ``x`` must hold at least one row (``N >= 1``), ``num_data`` at least the minibatch's rows and
    ``x`` must have the dtype of the weights a guide draws (e.g.
    :class:`~vi_dropout.guides.DropoutGuide`'s ``dtype``): a float32 ``x`` into a float64 guide,
    or the other way, is refused, never cast.

    Works under ``Trace_ELBO(vectorize_particles=True, max_plate_nesting=1)``.

    Example:
        >>> model = BayesianMLP(Architecture((1, 20, 1)), prior_length_scale=1.0, tau=10.0)
        >>> guide = DropoutGuide(model, keep_prob=0.9, theta=1e-2)  # doctest: +SKIP
    """

    def __init__(self, architecture: Architecture, prior_length_scale: float = 1.0,
                 tau: float = 1.0, likelihood: str = "gaussian"):
        super().__init__()
        if not isinstance(architecture, Architecture):
            raise ValueError(f"architecture must be an Architecture, got {type(architecture).__name__}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.architecture = architecture
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        self.tau = check_positive(tau, "tau")
        self.likelihood = likelihood

    def sample_params(self, dtype=torch.float64):
        """Sample every weight and bias site from the prior; returns ``(weights, biases)``."""
        std = 1.0 / self.prior_length_scale
        weights, biases = [], []
        for i, (out, inp) in enumerate(self.architecture.layer_shapes):
            w = pyro.sample(
                f"layers.{i}.weight",
                dist.Normal(torch.zeros((), dtype=dtype), std).expand([out, inp]).to_event(2),
            )
            b = pyro.sample(
                f"layers.{i}.bias",
                dist.Normal(torch.zeros((), dtype=dtype), std).expand([out]).to_event(1),
            )
            weights.append(_drop_plate_slot(w, 2))
            biases.append(_drop_plate_slot(b, 1))
        return weights, biases

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None,
                subsample_size: int | None = None):
        check_finite(x, "x")
        if x.dim() != 2 or x.shape[-1] != self.architecture.in_features:
            raise ValueError(
                f"x must have shape N x {self.architecture.in_features}, got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        batch = check_has_rows(x.shape[0], "x", x.shape)
        if y is not None:
            check_targets(y, "y", num_rows=batch,
                          num_outputs=self.architecture.out_features, likelihood=self.likelihood)
        size = n = None
        if subsample_size is not None:
            size = check_positive_int(subsample_size, "subsample_size")
            if size > batch:
                raise ValueError(f"subsample_size must be at most the {batch} rows of x, got "
                                 f"{size}")
        elif num_data is not None:
            n = check_positive_int(num_data, "num_data")
            if n < batch:
                raise ValueError(f"num_data is the size N of the whole data set, so at least "
                                 f"the minibatch's {batch} rows, got {n}")
        weights, biases = self.sample_params(dtype=x.dtype)
        for i, w in enumerate(weights):
            # drawn in x's dtype from the prior; a guide's draws come in the guide's dtype
            check_dtype(x, "x", w.dtype, f"the guide's weights (layers.{i}.weight)")
        if size is not None:
            plate = pyro.plate("data", batch, subsample_size=size)
        elif n is not None:
            plate = pyro.plate("data", n, subsample=torch.arange(batch))
        else:
            plate = pyro.plate("data", batch)
        with plate as idx:
            xb = x[idx]
            f = mlp_forward(xb, weights, biases, self.architecture.activation)
            yb = None if y is None else y[idx]
            if self.likelihood == "gaussian":
                return pyro.sample("obs", dist.Normal(f, self.tau ** -0.5).to_event(1), obs=yb)
            return pyro.sample("obs", dist.Categorical(logits=f), obs=yb)
