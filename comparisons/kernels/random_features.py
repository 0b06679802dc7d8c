r"""Finite-width random-feature kernel: the prior covariance of a one-hidden-layer network with
``num_features`` fixed random hidden units, as a low-rank GPyTorch kernel."""

from __future__ import annotations

import torch
from gpytorch.constraints import Interval
from gpytorch.models import exact_prediction_strategies
from gpytorch.priors import Prior
from linear_operator.operators import (
    LowRankRootLinearOperator,
    MatmulLinearOperator,
    RootLinearOperator,
)

from comparisons.kernels.base import WeightBiasVarianceKernel, check_inputs
from vi_dropout.network import ACTIVATIONS, get_activation
from vi_dropout.validation import check_positive_int

__all__ = ["RandomFeatureKernel"]


class RandomFeatureKernel(WeightBiasVarianceKernel):
    r"""Monte-Carlo (finite-width) version of the single-layer kernel
    :math:`\mathbb{E}[\sigma(\mathbf{w}^\top\mathbf{x} + b)\sigma(\mathbf{w}^\top\mathbf{x}' + b)]`
    for any activation in :data:`vi_dropout.network.ACTIVATIONS`.

    .. math::
        k(\mathbf{x}, \mathbf{x}') = \frac{1}{K}\sum_{k=1}^{K}
            \sigma(\mathbf{w}_k^\top\mathbf{x} + b_k)\,\sigma(\mathbf{w}_k^\top\mathbf{x}' + b_k)
        = \boldsymbol{\phi}(\mathbf{x})^\top\boldsymbol{\phi}(\mathbf{x}'),
        \qquad
        \mathbf{w}_k = \frac{\sigma_w}{\sqrt{Q}}\,\boldsymbol{\epsilon}_k,\;
        b_k = \sigma_b\,\eta_k,

    with :math:`\boldsymbol{\epsilon}_k \sim \mathcal{N}(0, I_Q)`, :math:`\eta_k \sim
    \mathcal{N}(0, 1)` stored as buffers (``weight_draws``: ``*batch x Q x K``, ``bias_draws``:
    ``*batch x 1 x K``) and scaled by the variances at call time, so :math:`\sigma_w^2,
    \sigma_b^2` stay differentiable. The draws change only through :meth:`resample_features`.
    As :math:`K \to \infty` the kernel converges to the
    :class:`~comparisons.kernels.arc_cosine.ArcCosineKernel` (``relu``: order 1) with the same
    variances, at the Monte-Carlo rate :math:`O(K^{-1/2})`.

    ``forward`` returns a rank-:math:`K` operator: :class:`LowRankRootLinearOperator`
    :math:`\Phi\Phi^\top` when ``x1`` is ``x2`` and :math:`K < N` (a plain
    :class:`RootLinearOperator` when :math:`K \ge N`, where the low-rank identities do not pay), and a :class:`MatmulLinearOperator`
    :math:`\Phi_1\Phi_2^\top` otherwise. Observation noise comes from the likelihood: adding the
    likelihood's diagonal to a ``LowRankRootLinearOperator`` gives a
    ``LowRankRootAddedDiagLinearOperator`` whose solves and log-determinant use the Woodbury
    identity and the :math:`K \times K` capacitance matrix, :math:`O(N K^2)` instead of
    :math:`O(N^3)` (see ``benchmarks/bench_gp.py`` for measurements). With zero noise and
    :math:`N > K` the kernel matrix is singular.

    Args:
        activation: a name in :data:`vi_dropout.network.ACTIVATIONS`
            (``relu``, ``tanh``, ``sigmoid``, ``erf``, ``identity``).
        num_features: number of random features :math:`K \ge 1`.
        input_dim: input dimension :math:`Q` (after ``active_dims``).
        weight_variance: initial :math:`\sigma_w^2 > 0`.
        bias_variance: initial :math:`\sigma_b^2 > 0`.
        generator: optional :class:`torch.Generator` for the initial draws.
        weight_variance_prior: as for ``ArcCosineKernel`` (also ``bias_variance_prior``,
            ``weight_variance_constraint``, ``bias_variance_constraint``, ``batch_shape``,
            ``active_dims``).

    Shapes: ``... x N x Q`` and ``... x M x Q`` give a ``... x N x M`` operator
    (``... x N`` tensor if ``diag``); :meth:`features` gives ``... x N x K``.

    References:
        Rahimi, A. and Recht, B. (2007). Random features for large-scale kernel machines. NeurIPS.
        Cho, Y. and Saul, L. K. (2009). Kernel methods for deep learning. NeurIPS.

    Example:
        >>> kernel = RandomFeatureKernel("tanh", num_features=256, input_dim=3)
        >>> kernel.features(torch.randn(10, 3)).shape
        torch.Size([10, 256])
    """

    has_lengthscale = False

    def __init__(
        self,
        activation: str = "relu",
        num_features: int = 1024,
        input_dim: int = 1,
        weight_variance: float = 1.0,
        bias_variance: float = 1.0,
        generator: torch.Generator | None = None,
        weight_variance_prior: Prior | None = None,
        bias_variance_prior: Prior | None = None,
        weight_variance_constraint: Interval | None = None,
        bias_variance_constraint: Interval | None = None,
        **kwargs,
    ):
        get_activation(activation)
        self.activation = activation
        self.num_features = check_positive_int(num_features, "num_features")
        self.input_dim = check_positive_int(input_dim, "input_dim")
        super().__init__(
            weight_variance=weight_variance,
            bias_variance=bias_variance,
            weight_variance_prior=weight_variance_prior,
            bias_variance_prior=bias_variance_prior,
            weight_variance_constraint=weight_variance_constraint,
            bias_variance_constraint=bias_variance_constraint,
            **kwargs,
        )
        b = tuple(self.batch_shape)
        self.register_buffer("weight_draws", torch.zeros(*b, self.input_dim, self.num_features))
        self.register_buffer("bias_draws", torch.zeros(*b, 1, self.num_features))
        self.resample_features(generator=generator)

    @torch.no_grad()
    def resample_features(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh standard-normal weights and biases (sampled in float64, then cast to the
        buffers' dtype, so one generator seed gives the same features in every dtype)."""
        for buf in (self.weight_draws, self.bias_draws):
            draw = torch.randn(buf.shape, generator=generator, dtype=torch.float64)
            buf.copy_(draw.to(device=buf.device, dtype=buf.dtype))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Phi = \sigma(\mathbf{x}\mathbf{W} + \mathbf{b}) / \sqrt{K}`, ``... x N x K``."""
        check_inputs(x, x)
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"x must have input_dim={self.input_dim} features in its last dimension, "
                f"got shape {tuple(x.shape)}"
            )
        act = ACTIVATIONS[self.activation]
        sw2, sb2 = self.weight_variance, self.bias_variance
        w = self.weight_draws * torch.sqrt(sw2 / self.input_dim)
        b = self.bias_draws * torch.sqrt(sb2)
        return act(x @ w + b) / self.num_features**0.5

    def prediction_strategy(self, train_inputs, train_prior_dist, train_labels, likelihood):
        """Feature-space (Woodbury / Searle) predictions, as GPyTorch does for ``RFFKernel``,
        when ``num_features < N`` (cost :math:`O(NK^2 + K^3)`); GPyTorch's default strategy
        otherwise (the :math:`K \times K` solves would cost more than the :math:`N \times N` ones)."""
        if self.num_features < train_inputs[0].shape[-2]:
            return exact_prediction_strategies.LinearPredictionStrategy(
                train_inputs, train_prior_dist, train_labels, likelihood
            )
        return super().prediction_strategy(train_inputs, train_prior_dist, train_labels, likelihood)

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params,
    ):
        if last_dim_is_batch:
            raise NotImplementedError("RandomFeatureKernel does not support last_dim_is_batch")
        phi1 = self.features(x1)
        if diag:
            return phi1.pow(2).sum(-1)
        if x2 is x1:
            if self.num_features < phi1.shape[-2]:
                return LowRankRootLinearOperator(phi1)
            return RootLinearOperator(phi1)
        phi2 = self.features(x2)
        batch = torch.broadcast_shapes(phi1.shape[:-2], phi2.shape[:-2])
        phi1 = phi1.expand(*batch, *phi1.shape[-2:])
        phi2 = phi2.expand(*batch, *phi2.shape[-2:])
        return MatmulLinearOperator(phi1, phi2.transpose(-1, -2))
