r"""NNGP kernel (Lee et al. 2018): the infinite-width limit of a deep fully connected network
with ReLU or erf units."""

from __future__ import annotations

import math

import torch
from gpytorch.constraints import Interval
from gpytorch.priors import Prior

from comparisons.kernels.arc_cosine import arc_cosine_expectation
from comparisons.kernels.base import WeightBiasVarianceKernel, check_inputs
from vi_dropout.validation import check_positive_int

__all__ = ["NNGPKernel", "erf_expectation", "NNGP_ACTIVATIONS"]

NNGP_ACTIVATIONS = ("relu", "erf")


def erf_expectation(
    cross: torch.Tensor, var1: torch.Tensor, var2: torch.Tensor, diag: bool = False
) -> torch.Tensor:
    r"""Closed form (Williams 1997) of :math:`\mathbb{E}[\operatorname{erf}(u)\operatorname{erf}(v)]`
    for a centred bivariate Gaussian with variances ``var1``, ``var2`` and covariance ``cross``:

    .. math::
        \frac{2}{\pi}\arcsin\frac{2 c}{\sqrt{(1 + 2 v_1)(1 + 2 v_2)}}.

    The argument of ``arcsin`` lies strictly inside :math:`(-1, 1)` (Cauchy-Schwarz), so the
    gradient is finite; it is clamped to ``[-1, 1]`` only against rounding.

    Args:
        cross: ``... x N x M`` (``... x N`` if ``diag``).
        var1: ``... x N x 1`` (``... x N`` if ``diag``).
        var2: ``... x 1 x M`` (ignored if ``diag``).
        diag: ``u = v`` with variance ``var1``.
    """
    if diag:
        arg = 2.0 * var1 / (1.0 + 2.0 * var1)
    else:
        arg = 2.0 * cross / torch.sqrt((1.0 + 2.0 * var1) * (1.0 + 2.0 * var2))
    return (2.0 / math.pi) * torch.asin(arg.clamp(-1.0, 1.0))


def _check_activation(activation) -> str:
    if activation not in NNGP_ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {list(NNGP_ACTIVATIONS)} for the NNGP closed form, "
            f"got {activation!r}"
        )
    return activation


class NNGPKernel(WeightBiasVarianceKernel):
    r"""NNGP kernel of a fully connected network with ``depth`` hidden layers (Lee et al. 2018),
    ReLU (arc-cosine closed form) or erf (Williams 1997) units.

    .. math::
        K^{0}(\mathbf{x}, \mathbf{x}') = \sigma_b^2 + \sigma_w^2\,\frac{\mathbf{x}^\top\mathbf{x}'}{Q},
        \qquad
        K^{l}(\mathbf{x}, \mathbf{x}') = \sigma_b^2 + \sigma_w^2\,
            \mathbb{E}_{(u, v) \sim \mathcal{N}(0, K^{l-1})}[\phi(u)\phi(v)],
        \quad l = 1, \dots, L,

    and the kernel is :math:`K^{L}` with :math:`L` = ``depth``. :math:`K^{l-1}` is the
    covariance of the pre-activations of hidden layer :math:`l` and :math:`K^{L}` that of the
    network output. Every layer uses the same :math:`\sigma_w^2, \sigma_b^2`: input weights are
    :math:`\mathcal{N}(0, \sigma_w^2/Q)`, weights out of a hidden layer of width :math:`H` are
    :math:`\mathcal{N}(0, \sigma_w^2/H)` (:math:`H \to \infty`), biases
    :math:`\mathcal{N}(0, \sigma_b^2)`.

    How the variances line up with :class:`~comparisons.kernels.arc_cosine.ArcCosineKernel`: for
    ``depth=1`` and ReLU, with the same ``weight_variance`` and ``bias_variance``,

    .. math::
        K^{1}_\text{NNGP}(\mathbf{x}, \mathbf{x}') = \sigma_b^2 + \sigma_w^2\,
        k_1^\text{arccos}(\mathbf{x}, \mathbf{x}'),

    i.e. the arc-cosine kernel is this NNGP with the *output* layer's weight variance set to 1 and
    its bias variance to 0 (``ArcCosineKernel`` is the covariance of one hidden unit's
    activation, the NNGP that of the network output).

    Args:
        depth: number of hidden layers :math:`L \ge 1`.
        activation: ``"relu"`` or ``"erf"``.
        weight_variance: initial :math:`\sigma_w^2 > 0`.
        bias_variance: initial :math:`\sigma_b^2 > 0`.
        weight_variance_prior: as for ``ArcCosineKernel`` (also ``bias_variance_prior``,
            ``weight_variance_constraint``, ``bias_variance_constraint``, ``batch_shape``,
            ``active_dims``).

    Shapes: ``... x N x D`` and ``... x M x D`` give ``... x N x M`` (``... x N`` if ``diag``).
    ``diag=True`` runs the recursion on the variances only (exact, :math:`O(N L)`).

    References:
        Lee, J. et al. (2018). Deep neural networks as Gaussian processes. ICLR.
        Williams, C. K. I. (1997). Computing with infinite networks. NeurIPS.
        Cho, Y. and Saul, L. K. (2009). Kernel methods for deep learning. NeurIPS.

    Example:
        >>> kernel = NNGPKernel(depth=3, activation="erf", weight_variance=1.5, bias_variance=0.05)
        >>> kernel(torch.randn(6, 4), diag=True).shape
        torch.Size([6])
    """

    has_lengthscale = False

    def __init__(
        self,
        depth: int = 1,
        activation: str = "relu",
        weight_variance: float = 1.0,
        bias_variance: float = 1.0,
        weight_variance_prior: Prior | None = None,
        bias_variance_prior: Prior | None = None,
        weight_variance_constraint: Interval | None = None,
        bias_variance_constraint: Interval | None = None,
        **kwargs,
    ):
        self.depth = check_positive_int(depth, "depth")
        self.activation = _check_activation(activation)
        super().__init__(
            weight_variance=weight_variance,
            bias_variance=bias_variance,
            weight_variance_prior=weight_variance_prior,
            bias_variance_prior=bias_variance_prior,
            weight_variance_constraint=weight_variance_constraint,
            bias_variance_constraint=bias_variance_constraint,
            **kwargs,
        )

    def _moment(self, cross, var1, var2, diag):
        if self.activation == "relu":
            return arc_cosine_expectation(cross, var1, var2, order=1, diag=diag)
        return erf_expectation(cross, var1, var2, diag=diag)

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params,
    ) -> torch.Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("NNGPKernel does not support last_dim_is_batch")
        check_inputs(x1, x2)
        sw2, sb2 = self._variances(diag)
        cross, var1, var2 = self.input_covariance(x1, x2, sw2, sb2, diag)
        same = x1 is x2
        for _ in range(self.depth):
            if diag:
                cross = var1 = var2 = sb2 + sw2 * self._moment(var1, var1, var1, diag=True)
                continue
            new_cross = sb2 + sw2 * self._moment(cross, var1, var2, diag=False)
            new_var1 = sb2 + sw2 * self._moment(var1, var1, var1, diag=True)
            new_var2 = (
                new_var1.transpose(-1, -2)
                if same
                else sb2 + sw2 * self._moment(var2, var2, var2, diag=True)
            )
            cross, var1, var2 = new_cross, new_var1, new_var2
        return cross
