r"""Arc-cosine kernel of Cho & Saul (2009) with a bias: the covariance of one step / ReLU /
ReLU-squared unit with Gaussian weights and bias."""

from __future__ import annotations

import math

import torch
from gpytorch.constraints import Interval
from gpytorch.priors import Prior

from comparisons.kernels.base import TWO_PI, WeightBiasVarianceKernel, check_inputs, clamp_eps

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


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return t if t.shape == shape else t.sum_to_size(shape)


class _ArcCosine12(torch.autograd.Function):
    r"""Fused orders 1 and 2 with analytic first derivatives (few passes over ``N x M``).

    With :math:`c` = ``cross``, :math:`v_1, v_2` the variances, :math:`s = \sqrt{v_1 v_2 - c^2}`
    (:math:`= \sqrt{v_1 v_2}\sin\theta`) and :math:`\bar\theta = \pi - \theta`:

    .. math::
        2\pi k_1 = s + \bar\theta c, \quad
        2\pi\,\partial_c k_1 = \bar\theta, \quad
        2\pi\,\partial_{v_1} k_1 = \frac{s}{2 v_1};

    .. math::
        2\pi k_2 = 3 s c + \bar\theta (v_1 v_2 + 2 c^2), \quad
        \partial_c k_2 = 4 k_1, \quad
        2\pi\,\partial_{v_1} k_2 = \bar\theta v_2 + \frac{c s}{v_1}

    (Price's theorem gives :math:`\partial_c`; :math:`\partial_{v_2}` by symmetry). Every
    derivative is finite at :math:`\theta \in \{0, \pi\}`; the angle is
    :math:`\theta = \operatorname{atan2}(s, c)` (accurate near 0 and :math:`\pi`, no infinite
    ``acos`` slope).
    """

    @staticmethod
    def forward(ctx, cross, var1, var2, order):
        prod = var1 * var2
        # s^2 = v1 v2 (1 - tol) - c^2, floored at 0: rounding in c (a matrix product) and v (sums
        # of squares) can put |c| a few ulps above sqrt(v1 v2) at coincident points. tol = 2 eps
        # snaps |cos| > 1 - eps to theta in {0, pi} (as the order-0 path does) and moves s by at
        # most sqrt(tol v1 v2), the angle by at most sqrt(2 eps).
        tol = 2.0 * clamp_eps(prod.dtype)
        s = torch.addcmul(prod * (1.0 - tol), cross, cross, value=-1.0).clamp_min_(0.0).sqrt_()
        theta_bar = torch.atan2(s, cross).neg_().add_(math.pi)
        if order == 1:
            k = torch.addcmul(s, theta_bar, cross).div_(TWO_PI)
        else:
            k = torch.addcmul(prod, cross, cross, value=2.0).mul_(theta_bar)
            k.addcmul_(s, cross, value=3.0).div_(TWO_PI)
        ctx.order = order
        ctx.save_for_backward(cross, var1, var2, s, theta_bar)
        return k

    @staticmethod
    def backward(ctx, grad):
        cross, var1, var2, s, theta_bar = ctx.saved_tensors
        g_cross = g_var1 = g_var2 = None
        if ctx.order == 1:
            if ctx.needs_input_grad[0]:
                g_cross = _sum_to(grad * theta_bar / TWO_PI, cross.shape)
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
                gs = grad * s
                if ctx.needs_input_grad[1]:
                    g_var1 = _sum_to(gs / (2.0 * TWO_PI * var1), var1.shape)
                if ctx.needs_input_grad[2]:
                    g_var2 = _sum_to(gs / (2.0 * TWO_PI * var2), var2.shape)
            return g_cross, g_var1, g_var2, None
        if ctx.needs_input_grad[0]:
            g_cross = _sum_to(torch.addcmul(s, theta_bar, cross).mul_(grad).mul_(4.0 / TWO_PI),
                              cross.shape)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gt = grad * theta_bar
            gcs = grad * cross * s
            if ctx.needs_input_grad[1]:
                g_var1 = _sum_to((gt * var2 + gcs / var1) / TWO_PI, var1.shape)
            if ctx.needs_input_grad[2]:
                g_var2 = _sum_to((gt * var1 + gcs / var2) / TWO_PI, var2.shape)
        return g_cross, g_var1, g_var2, None


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

    Orders 1 and 2 run as one fused autograd function with analytic derivatives
    (:class:`_ArcCosine12`; finite everywhere, the same :math:`\epsilon` snapping at
    :math:`|\cos\theta| > 1 - \epsilon`), which costs about a third of the elementwise passes and memory of the composed expression at large
    ``N x M``. Order 0 (whose derivative in ``cross`` is infinite at :math:`\theta = 0`) is composed:
    the cosine is clamped to :math:`[-1 + \epsilon, 1 - \epsilon]` before ``acos``, and pairs with
    :math:`|\cos\theta| > 1 - \epsilon` get the exact angle 0 or :math:`\pi`;
    ``eps = 4 * finfo(dtype).eps``. The angle is then off by at most :math:`\sqrt{2\epsilon}`
    (4.2e-8 in float64, 9.8e-4 in float32), an absolute kernel error of at most
    :math:`\sqrt{2\epsilon}/(2\pi)` (6.7e-9 / 1.6e-4); gradients stay finite (zero angle
    gradient on those pairs, which is exact for coincident points).

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
    if order > 0:
        return _ArcCosine12.apply(cross, var1, var2, order)
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
