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

Only the dropped positions are drawn (about ``1 - keep_prob`` uniforms per mask entry instead of
one): with the UCI grid's drop rates of 0.005 to 0.1 the dense uniforms were most of the training
time.
Benchmark (``benchmarks/bench_train.py``, Boston, the full grid x 20 splits, 400 epochs, 2-core
CPU): about 24x per network over a plain ``nn.Module`` + :class:`torch.optim.Adam` loop.

Data sizes: all networks of one :func:`train_batched` call must share ``N`` (and the input and
output widths); they may have different data. Group networks by training-set size (e.g. one call
per data set and fold size) to train networks with different ``N``.

Divergence: a network whose minibatch loss is not finite is frozen at the parameters that produced
that loss (no further updates), its epoch is recorded in ``diverged_epoch``, the others go on.

Gaussian heads (``loss="gaussian_nll"``, the deep-ensembles member of Lakshminarayanan, Pritzel &
Blundell 2017): the last layer has :math:`2D` outputs, a mean :math:`\mu_d` and a raw variance
:math:`r_d` per target, :math:`\sigma^2_d = \operatorname{softplus}(r_d) + 10^{-6}` (their
Section 2.2.1, footnote 2), and the data term of :math:`\mathcal{L}_e` is the mean Gaussian
negative log-likelihood (:func:`gaussian_nll`)

.. math::
    \frac{1}{|\mathcal{B}| D} \sum_{n \in \mathcal{B}} \sum_{d=1}^{D}
    \Big(\tfrac12 \log \sigma^2_{nd} + \frac{(y_{nd} - \mu_{nd})^2}{2 \sigma^2_{nd}}\Big)
    + \tfrac12 \log 2\pi

instead of the squared error; dropout and the weight decay are unchanged (``keep_prob=1``: none).

Adversarial training (``adversarial_epsilon``, the fast gradient sign method of Goodfellow, Shlens
& Szegedy 2015 as used by Lakshminarayanan et al., Algorithm 1): per minibatch,
:math:`\mathbf{x}' = \mathbf{x} + \boldsymbol{\epsilon} \odot
\operatorname{sign}(\nabla_{\mathbf{x}} \ell(\theta, \mathbf{x}, \mathbf{y}))` with :math:`\ell`
the data term above (the weight decay does not depend on :math:`\mathbf{x}`), taken as a constant,
and the network minimises :math:`\ell(\theta, \mathbf{x}, \mathbf{y}) + \ell(\theta,
\mathbf{x}', \mathbf{y}) + \lambda_e \sum_i \|\mathbf{W}_i\|_F^2` (the reported loss too). The
adversarial pass reuses the minibatch's hidden dropout masks; dropout on the INPUTS is refused with
it (``keep_prob`` of layer 0 must be 1). :math:`\boldsymbol{\epsilon}` may differ per input
column (the paper: 1% of the training range of each column).

References:
    Lakshminarayanan, Pritzel & Blundell (2017), "Simple and Scalable Predictive Uncertainty
    Estimation using Deep Ensembles", NeurIPS 2017;
    Goodfellow, Shlens & Szegedy (2015), "Explaining and Harnessing Adversarial Examples", ICLR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vi_dropout.network import Architecture
from vi_dropout.validation import check_keep_prob, check_nonnegative, per_layer

__all__ = ["TrainResult", "check_weight_decay", "layer_widths",
           "per_layer_keep_probs", "LOSSES", "MIN_VARIANCE", "check_loss", "output_width",
           "gaussian_head", "gaussian_nll", "check_adversarial_epsilon"]

#: the training losses of :func:`train_sequential` and :func:`train_batched`
LOSSES = ("mse", "gaussian_nll")

#: the variance floor of a Gaussian head, :math:`\sigma^2 = \operatorname{softplus}(r) + 10^{-6}`
#: (Lakshminarayanan et al. 2017, footnote 2)
MIN_VARIANCE = 1e-6


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


def check_weight_decay(value, name):
    """``value`` as a float after checking it is finite and ``>= 0`` (an L2 coefficient)."""
    return check_nonnegative(value, name)


def layer_widths(in_features, hidden, out_features):
    """``(in, *hidden, out)`` checked by :class:`~vi_dropout.network.Architecture`."""
    widths = (in_features, *tuple(hidden), out_features)
    return Architecture(widths).widths


def per_layer_keep_probs(keep_prob, num_layers, name):
    """One checked keep_prob per layer from a number or a per-layer sequence
    (:func:`~vi_dropout.validation.per_layer`)."""
    return per_layer(keep_prob, num_layers, name, check_keep_prob)


def check_loss(loss) -> str:
    """``loss`` after checking it is one of :data:`LOSSES`."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    return loss


def output_width(loss: str, num_targets: int) -> int:
    """Outputs of the last layer: ``D`` for ``"mse"``, ``2 D`` (means, raw variances) for
    ``"gaussian_nll"``."""
    return 2 * num_targets if check_loss(loss) == "gaussian_nll" else num_targets


def gaussian_head(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of a Gaussian head: ``out`` is ``... x 2D`` (means, then raw variances
    :math:`r`), :math:`\sigma^2 = \operatorname{softplus}(r) + 10^{-6}` (:data:`MIN_VARIANCE`).

    Args:
        out: network outputs, ``... x 2D``.

    Returns:
        ``(mean, var)``, each ``... x D``.

    Example:
        >>> m, v = gaussian_head(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
        >>> float(m), round(float(v), 6)
        (1.0, 0.693148)
    """
    if out.shape[-1] % 2:
        raise ValueError(f"a Gaussian head has an even number of outputs (2D), got {out.shape[-1]}")
    d = out.shape[-1] // 2
    return out[..., :d], torch.nn.functional.softplus(out[..., d:]) + MIN_VARIANCE


def gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Mean Gaussian negative log-likelihood of a Gaussian head (:func:`gaussian_head`),

    .. math::
        \frac{1}{N D} \sum_{n, d} \Big(\tfrac12 \log \sigma^2_{nd}
        + \frac{(y_{nd} - \mu_{nd})^2}{2 \sigma^2_{nd}}\Big) + \tfrac12 \log 2\pi.

    Args:
        out: outputs ``... x N x 2D``.
        y: targets ``... x N x D``.

    Returns:
        The mean over the last two dims, shape ``...``.

    Example:
        >>> out = torch.tensor([[0.0, 1e3]], dtype=torch.float64)  # variance ~1000
        >>> round(float(gaussian_nll(out, torch.zeros(1, 1, dtype=torch.float64))), 4)
        4.3728
    """
    mean, var = gaussian_head(out)
    nll = 0.5 * (var.log() + (y - mean).square() / var)
    return nll.mean((-1, -2)) + 0.5 * math.log(2 * math.pi)


def check_adversarial_epsilon(value, num_inputs: int, name: str = "adversarial_epsilon"):
    """``None``, or a float64 tensor of FGSM step sizes ``>= 0`` broadcastable to
    ``... x num_inputs`` (a number, or one per input column), after checking it."""
    if value is None:
        return None
    eps = torch.as_tensor(value, dtype=torch.float64)
    if eps.dim() and eps.shape[-1] not in (1, num_inputs):
        raise ValueError(f"{name} must be a number or {num_inputs} numbers (one per input "
                         f"column), got shape {tuple(eps.shape)}")
    if not bool((torch.isfinite(eps) & (eps >= 0)).all()):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return eps
