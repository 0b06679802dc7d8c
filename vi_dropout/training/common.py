r"""What the two trainers share: the result type, the published weight decay and the argument
checks.

"Train many small dropout MLPs at once, reproducing the published Keras 2.2 experiment code.

Each network :math:`e` (one hidden layer of 50 ReLU units by default; any depth works) minimises,
per minibatch :math:`\mathcal{B}` of its own training data,

.. math::
    \mathcal{L}_e = \frac{1}{|\mathcal{B}| D} \sum_{n \in \mathcal{B}}
    \|\mathbf{y}_n - \hat{\mathbf{y}}_n\|^2 + \lambda_e \sum_i \|\mathbf{W}_i\|_F^2,
    \qquad \lambda_e = \frac{l^2 \, \text{keep\_prob}_e}{2 N \tau_e}

(mean squared error without a 1/2, an L2 penalty on weights only, see
:func:`weight_decay`), with inverted dropout on every layer's input: unit :math:`a` of layer
:math:`i` is multiplied by :math:`z / \text{keep\_prob}`,
:math:`z \sim \text{Bernoulli}(\text{keep\_prob})`. Defaults follow Keras 2.2: Glorot-uniform weights, zero biases, Adam
with ``lr=1e-3``, ``betas=(0.9, 0.999)``, ``eps=1e-7``, minibatches of 128 with a fresh shuffle
every epoch (the last minibatch is smaller).

Adam: the update is :class:`torch.optim.Adam`'s,
:math:`\theta \leftarrow \theta - \frac{\text{lr}}{1-\beta_1^t}\, m / (\sqrt{v/(1-\beta_2^t)} +
\epsilon)`. Keras 2.2 writes :math:`\theta \leftarrow \theta - \text{lr}\frac{\sqrt{1-\beta_2^t}}
{1-\beta_1^t} m / (\sqrt{v} + \epsilon)`, i.e. the same with :math:`\epsilon` replaced by
:math:`\epsilon\sqrt{1-\beta_2^t}` (both put :math:`\epsilon` outside the square root; they differ
only while :math:`v` is of order :math:`\epsilon^2`). We match torch so that
:func:`train_sequential` can use :class:`torch.optim.Adam` itself as the reference.

Random numbers (the contract shared by :func:`train_sequential` and :func:`train_batched`): network
:math:`e` owns ``torch.Generator().manual_seed(seed_e)`` and draws, in this order,

1. the initial weights: for each layer, ``torch.rand(out, in)`` (see
   :meth:`vi_dropout.network.Architecture.init_params`);
2. one seed per layer for its dropout masks (:func:`vi_dropout.drop_stream.layer_drop_streams`):
   layer ``i``'s dropped units come from a :class:`~vi_dropout.drop_stream.DropStream` of rate
   ``1 - keep_prob_i`` that runs through the epochs, ``N x in_i`` positions per epoch (row ``k``
   belongs to the ``k``-th shuffled example);
3. per epoch: ``torch.randperm(N)`` (the shuffle).

Only the dropped positions are drawn (about ``drop_rate`` uniforms per mask entry instead of one):
with the UCI grid's drop rates of 0.005 to 0.1 the dense uniforms were most of the training time.
Benchmark (``benchmarks/bench_train.py``, Boston, the full grid x 20 splits, 400 epochs, 2-core
CPU): about 24x per network over a plain ``nn.Module`` + :class:`torch.optim.Adam` loop.

Data sizes: all networks of one :func:`train_batched` call must share ``N`` (and the input and
output widths); they may have different data. Group networks by training-set size (e.g. one call
per data set and fold size) to train networks with different ``N``.

Divergence: a network whose minibatch loss is not finite is frozen at the parameters that produced
that loss (no further updates), its epoch is recorded in ``diverged_epoch``, the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vi_dropout.network import Architecture
from vi_dropout.objectives import weight_decay_from_prior
from vi_dropout.validation import check_keep_prob

__all__ = ["TrainResult", "weight_decay", "check_weight_decay", "layer_widths",
           "per_layer_keep_probs"]


@dataclass(frozen=True)
class TrainResult:
    """Trained parameters and training diagnostics.

    Attributes:
        weights: per layer ``E x out x in`` (``out x in`` for :func:`train_sequential`).
        biases: per layer ``E x out`` (``out``).
        losses: epoch training losses (minibatch losses averaged with weights
            ``|B| / N``, as Keras reports them), ``E x epochs`` (``epochs``); NaN from the epoch
            of divergence on.
        diverged_epoch: 0-based epoch at which the loss became non-finite, ``-1`` if never;
            int64, ``E`` (scalar).
    """

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    losses: torch.Tensor
    diverged_epoch: torch.Tensor

    @property
    def diverged(self) -> torch.Tensor:
        """Boolean tensor: which networks diverged."""
        return self.diverged_epoch >= 0


def weight_decay(length_scale: float, keep_prob: float, num_data: int, tau: float) -> float:
    r"""L2 coefficient of the published code, :math:`\lambda = l^2\,\text{keep\_prob} / (2 N \tau)`.

    The same number as :func:`vi_dropout.objectives.weight_decay_from_prior` (which it calls), but
    the Keras code puts it on the INVERTED-dropout weights, see the README for what that changes.

    Args:
        length_scale: prior length-scale :math:`l` (``1e-2`` in the paper).
        keep_prob: :math:`1 - \text{dropout rate}`.
        num_data: :math:`N`, training-set size.
        tau: model precision :math:`\tau`.

    Example:
        >>> weight_decay(1e-2, 0.95, 455, 0.1)  # doctest: +ELLIPSIS
        1.0439...e-06
    """
    return weight_decay_from_prior(length_scale, keep_prob, num_data, tau)


def check_weight_decay(value, name):
    """``value`` as a float after checking it is finite and ``>= 0`` (an L2 coefficient)."""
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def layer_widths(in_features, hidden, out_features):
    """``(in, *hidden, out)`` checked by :class:`~vi_dropout.network.Architecture`."""
    widths = (in_features, *tuple(hidden), out_features)
    return Architecture(widths).widths


def per_layer_keep_probs(keep_prob, num_layers, name):
    """One checked keep_prob per layer from a number or a per-layer sequence."""
    if isinstance(keep_prob, Sequence):
        if len(keep_prob) != num_layers:
            raise ValueError(
                f"{name} must be a number or {num_layers} numbers (one per layer), got {keep_prob!r}"
            )
        return tuple(check_keep_prob(k, f"{name}[{i}]") for i, k in enumerate(keep_prob))
    return (check_keep_prob(keep_prob, name),) * num_layers
