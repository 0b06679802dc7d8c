r"""Arc-cosine kernel of Cho & Saul (2009) with a bias: the covariance of one step / ReLU /
ReLU-squared unit with Gaussian weights and bias."""

from __future__ import annotations

import math

import torch
from gpytorch.constraints import Interval
from gpytorch.priors import Prior

from ._variance_kernel import TWO_PI, WeightBiasVarianceKernel, check_inputs, clamp_eps

__all__ = ["ArcCosineKernel", "arc_cosine_expectation", "ARC_COSINE_ORDERS"]

ARC_COSINE_ORDERS = (0, 1, 2)

# J_n(0) / (2 pi): J_0(0) = pi, J_1(0) = pi, J_2(0) = 3 pi.
_DIAG_FACTOR = {0: 0.5, 1: 0.5, 2: 1.5}


def _check_order(order) -> int:
    if isinstance(order, bool) or order not in ARC_COSINE_ORDERS:
        raise ValueError(
            f"order must be one of {ARC_COSINE_ORDERS} (0: step, 1: ReLU, 2: ReLU^2), got {order!r}"
        )
    return int(order)


def _angular_part(t: torch.Tensor, cos_t: torch.Tensor, order: int) -> torch.Tensor:
    if order == 0:
        return math.pi - t
    sin_t = torch.sin(t)
    if order == 1:
        return sin_t + (math.pi - t) * cos_t
    return 3.0 * sin_t * cos_t + (math.pi - t) * (1.0 + 2.0 * cos_t.pow(2))


def arc_cosine_expectation(
    cross: torch.Tensor,
    var1: torch.Tensor,
    var2: torch.Tensor,
    order: int,
    diag: bool = False,
) -> torch.Tensor:
    r"""Closed form of :math:`\mathbb{E}[\sigma_n(u)\,\sigma_n(v)]` for a centred bivariate
    Gaussian :math:`(u, v)` with :math:`\operatorname{Var} u = ` ``var1``,
    :math:`\operatorname{Var} v = ` ``var2``, :math:`\operatorname{Cov}(u, v) = ` ``cross``, and
    :math:`\sigma_n(a) = \Theta(a)\, a^n` (step, ReLU, ReLU squared for ``order`` 0, 1, 2).

    .. math::
        \mathbb{E}[\sigma_n(u)\sigma_n(v)] = \frac{1}{2\pi}\,(\sqrt{v_1 v_2})^{n}\, J_n(\theta),
        \qquad \cos\theta = \frac{c}{\sqrt{v_1 v_2}},

    with :math:`J_0 = \pi - \theta`, :math:`J_1 = \sin\theta + (\pi - \theta)\cos\theta`,
    :math:`J_2 = 3\sin\theta\cos\theta + (\pi-\theta)(1 + 2\cos^2\theta)`.

    The cosine is clamped to :math:`[-1 + \epsilon, 1 - \epsilon]` before ``acos`` (its derivative
    is infinite at :math:`\pm 1`), and pairs with :math:`|\cos\theta| > 1 - \epsilon` get the exact
    angle 0 or :math:`\pi`; ``eps = 4 * finfo(dtype).eps``. The angle is then off by at most
    :math:`\sqrt{2\epsilon}` (4.2e-8 in float64, 9.8e-4 in float32), i.e. an absolute kernel error
    of at most :math:`\sqrt{2\epsilon}/(2\pi)` for order 0 (6.7e-9 / 1.6e-4) and a relative error
    :math:`O(\epsilon)` for orders 1, 2; gradients stay finite (zero angle gradient on those pairs,
    which is exact for coincident points).

    Args:
        cross: ``... x N x M`` covariances (``... x N`` if ``diag``).
        var1: ``... x N x 1`` variances of ``u`` (``... x N`` if ``diag``).
        var2: ``... x 1 x M`` variances of ``v`` (ignored if ``diag``).
        order: 0, 1 or 2.
        diag: return the exact value at :math:`\theta = 0` for ``u = v``:
            :math:`v_1^n J_n(0) / (2\pi)`.
    """
    order = _check_order(order)
    if diag:
        return _DIAG_FACTOR[order] * var1.pow(order)
    norm = torch.sqrt(var1 * var2)
    cos_t = cross / norm
    eps = clamp_eps(cos_t.dtype)
    t = torch.acos(cos_t.clamp(-1.0 + eps, 1.0 - eps))
    t = torch.where(cos_t > 1.0 - eps, torch.zeros_like(t), t)
    t = torch.where(cos_t < -1.0 + eps, torch.full_like(t, math.pi), t)
    cos_t = torch.cos(t)
    j = _angular_part(t, cos_t, order)
    if order == 0:
        return j / TWO_PI
    return norm.pow(order) * j / TWO_PI


class ArcCosineKernel(WeightBiasVarianceKernel):
    r"""Arc-cosine kernel (Cho & Saul 2009) of order 0, 1 or 2 with a bias: the covariance of a
    single step / ReLU / ReLU-squared unit with Gaussian input weights and bias.

    .. math::
        k_n(\mathbf{x}, \mathbf{x}') = \mathbb{E}_{\mathbf{w}, b}\big[
            \sigma_n(\mathbf{w}^\top\mathbf{x} + b)\, \sigma_n(\mathbf{w}^\top\mathbf{x}' + b)\big]
        = \frac{1}{2\pi}\, (\lVert\mathbf{x}\rVert_\Sigma \lVert\mathbf{x}'\rVert_\Sigma)^{n}\,
          J_n(\theta),

    .. math::
        \Sigma(\mathbf{x}, \mathbf{x}') = \sigma_w^2\,\frac{\mathbf{x}^\top\mathbf{x}'}{Q}
          + \sigma_b^2, \quad
        \lVert\mathbf{x}\rVert_\Sigma = \sqrt{\Sigma(\mathbf{x}, \mathbf{x})}, \quad
        \cos\theta = \frac{\Sigma(\mathbf{x}, \mathbf{x}')}
          {\lVert\mathbf{x}\rVert_\Sigma \lVert\mathbf{x}'\rVert_\Sigma},

    with :math:`\mathbf{w} \sim \mathcal{N}(0, \sigma_w^2/Q\, I)`, :math:`b \sim \mathcal{N}(0,
    \sigma_b^2)`, :math:`\sigma_n(a) = \Theta(a) a^n`, :math:`J_0 = \pi - \theta`,
    :math:`J_1 = \sin\theta + (\pi - \theta)\cos\theta` and
    :math:`J_2 = 3\sin\theta\cos\theta + (\pi - \theta)(1 + 2\cos^2\theta)`. Order 0 is the
    probability that both units are active, :math:`(\pi - \theta)/(2\pi)`.

    Convention: the weight variance is divided by the input dimension :math:`Q` (``x.shape[-1]``
    after ``active_dims``), as in the NNGP literature (Lee et al. 2018), and **no** output weight is
    included (multiply by a :class:`gpytorch.kernels.ScaleKernel` for an output variance).
    On the diagonal (``diag=True``) the exact value :math:`\Sigma(\mathbf{x},\mathbf{x})^n
    J_n(0)/(2\pi)` is used; for the clamping of the cosine near :math:`\pm 1` (finite gradients)
    and the tiny bias it causes see :func:`arc_cosine_expectation`.

    Args:
        order: :math:`n \in \{0, 1, 2\}` (step, ReLU, ReLU squared).
        weight_variance: initial :math:`\sigma_w^2 > 0`.
        bias_variance: initial :math:`\sigma_b^2 > 0`.
        weight_variance_prior, bias_variance_prior: optional priors.
        weight_variance_constraint, bias_variance_constraint: default ``Positive()``.
        batch_shape, active_dims: as in :class:`gpytorch.kernels.Kernel`; parameters have shape
            ``*batch_shape x 1 x 1``.

    Shapes: inputs ``... x N x D`` and ``... x M x D`` give ``... x N x M`` (``... x N`` with
    ``diag=True``).

    References:
        Cho, Y. and Saul, L. K. (2009). Kernel methods for deep learning. NeurIPS.
        Lee, J. et al. (2018). Deep neural networks as Gaussian processes. ICLR.

    Example:
        >>> kernel = ArcCosineKernel(order=1, weight_variance=2.0, bias_variance=0.1)
        >>> x = torch.randn(10, 3)
        >>> kernel(x).to_dense().shape
        torch.Size([10, 10])
    """

    has_lengthscale = False

    def __init__(
        self,
        order: int = 1,
        weight_variance: float = 1.0,
        bias_variance: float = 1.0,
        weight_variance_prior: Prior | None = None,
        bias_variance_prior: Prior | None = None,
        weight_variance_constraint: Interval | None = None,
        bias_variance_constraint: Interval | None = None,
        **kwargs,
    ):
        self.order = _check_order(order)
        super().__init__(
            weight_variance=weight_variance,
            bias_variance=bias_variance,
            weight_variance_prior=weight_variance_prior,
            bias_variance_prior=bias_variance_prior,
            weight_variance_constraint=weight_variance_constraint,
            bias_variance_constraint=bias_variance_constraint,
            **kwargs,
        )

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params,
    ) -> torch.Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("ArcCosineKernel does not support last_dim_is_batch")
        check_inputs(x1, x2)
        sw2, sb2 = self._variances(diag)
        cross, var1, var2 = self.input_covariance(x1, x2, sw2, sb2, diag)
        return arc_cosine_expectation(cross, var1, var2, self.order, diag=diag)
