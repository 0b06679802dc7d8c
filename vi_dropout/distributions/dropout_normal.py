r"""The variational family of MC dropout for one weight matrix: a column-wise Bernoulli-gated
Gaussian mixture."""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

__all__ = ["DropoutNormal", "open_closed_unit_interval"]


class _OpenClosedInterval(constraints.Constraint):
    """Constrain to the interval ``(lower_bound, upper_bound]``."""

    def __init__(self, lower_bound: float, upper_bound: float):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        super().__init__()

    def check(self, value):
        return (self.lower_bound < value) & (value <= self.upper_bound)

    def __repr__(self):
        return f"OpenClosedInterval(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


open_closed_unit_interval = _OpenClosedInterval(0.0, 1.0)


class _FiniteReal(constraints.Constraint):
    """Constrain to finite reals (``constraints.real`` admits +-inf)."""

    def check(self, value):
        return torch.isfinite(value)

    def __repr__(self):
        return "FiniteReal()"


class _PositiveFinite(constraints.Constraint):
    """Constrain to finite numbers ``> 0`` (``constraints.positive`` admits +inf)."""

    def check(self, value):
        return (value > 0) & torch.isfinite(value)

    def __repr__(self):
        return "PositiveFinite()"


class DropoutNormal(TorchDistribution):
    r"""q(W) of MC dropout: every column of ``W`` is a two-component Gaussian mixture.

    For a weight matrix :math:`\mathbf{W}` of shape ``K x Q`` (``out x in``), with columns
    :math:`\mathbf{w}_a \in \mathbb{R}^K`, :math:`a = 1..Q`, independent across columns:

    .. math::
        q(\mathbf{w}_a) = \pi\, \mathcal{N}(\mathbf{w}_a; \mathbf{m}_a, \theta^2 \mathbf{I}_K)
            + (1 - \pi)\, \mathcal{N}(\mathbf{w}_a; \mathbf{0}, \theta^2 \mathbf{I}_K),

    sampled by the reparameterisation :math:`\mathbf{w}_a = z_a \mathbf{m}_a + \theta
    \boldsymbol{\epsilon}_a` with :math:`z_a \sim \operatorname{Bernoulli}(\pi)` and
    :math:`\boldsymbol{\epsilon}_a \sim \mathcal{N}(\mathbf{0}, \mathbf{I}_K)`. As
    :math:`\theta \to 0` a draw is the mean matrix with whole columns (input units) dropped,
    which is exactly a dropout network's weight matrix.

    Symbols: :math:`\mathbf{M}` = ``loc``, :math:`\pi` = ``keep_prob`` (probability that a unit is
    kept), :math:`\theta` = ``theta``.

    ``log_prob`` is the EXACT mixture density (a log-sum-exp of the two components per column,
    summed over columns). ``rsample`` is differentiable in ``loc`` and ``theta``; ``keep_prob`` is
    a fixed (non-differentiable) hyper-parameter, as in dropout.

    Args:
        loc: mean matrix :math:`\mathbf{M}`, shape ``... x K x Q``. The trailing two dims are the
            event shape; leading dims are batch dims.
        keep_prob: probability :math:`\pi \in (0, 1]` that a column is kept, a float or a tensor
            broadcastable to the batch shape ``...``.
        theta: standard deviation :math:`\theta > 0` of the Gaussian jitter, a float or a tensor
            broadcastable to the batch shape.

    References:
        Gal & Ghahramani (2016), "Dropout as a Bayesian approximation", Section 3 and appendix.

    Example:
        >>> q = DropoutNormal(torch.ones(3, 4), keep_prob=0.9, theta=1e-2)
        >>> q.rsample().shape, q.event_shape
        (torch.Size([3, 4]), torch.Size([3, 4]))
    """

    arg_constraints = {
        "loc": constraints.independent(_FiniteReal(), 2),
        "keep_prob": open_closed_unit_interval,
        "theta": _PositiveFinite(),
    }
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc, keep_prob, theta, validate_args=None):
        if not isinstance(loc, torch.Tensor) or loc.dim() < 2:
            shape = tuple(loc.shape) if isinstance(loc, torch.Tensor) else type(loc).__name__
            raise ValueError(
                f"loc must be a tensor of shape ... x K x Q (at least 2 dims), got {shape}"
            )
        keep_prob = torch.as_tensor(keep_prob, dtype=loc.dtype, device=loc.device)
        theta = torch.as_tensor(theta, dtype=loc.dtype, device=loc.device)
        batch_shape = torch.broadcast_shapes(loc.shape[:-2], keep_prob.shape, theta.shape)
        event_shape = loc.shape[-2:]
        self.loc = loc.expand(batch_shape + event_shape)
        self.keep_prob = keep_prob.expand(batch_shape)
        self.theta = theta.expand(batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DropoutNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.keep_prob = self.keep_prob.expand(batch_shape)
        new.theta = self.theta.expand(batch_shape)
        super(DropoutNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # --- moments -------------------------------------------------------------------------------
    @property
    def _kp(self):
        return self.keep_prob[..., None, None]

    @property
    def _sc(self):
        return self.theta[..., None, None]

    @property
    def mean(self):
        return self._kp * self.loc

    @property
    def variance(self):
        kp = self._kp
        return self._sc.pow(2) + kp * (1 - kp) * self.loc.pow(2)

    @property
    def num_rows(self) -> int:
        """K: the length of each column (the layer's output width)."""
        return self.event_shape[0]

    @property
    def num_cols(self) -> int:
        """Q: the number of columns (the layer's input width; one dropout unit per column)."""
        return self.event_shape[1]

    # --- sampling -------------------------------------------------------------------------------
    def sample_mask(self, sample_shape=(), generator=None):
        r"""Draw the column gates :math:`z_a`, shape ``sample_shape x batch x 1 x Q``.

        Built arithmetically as ``floor(u + keep_prob)`` from one uniform per column.
        """
        shape = torch.Size(sample_shape) + self.batch_shape + (1, self.num_cols)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return torch.floor(u + self._kp)

    def rsample(self, sample_shape=(), mask=None, noise=None, generator=None):
        r"""Reparameterised draw :math:`\mathbf{W} = \mathbf{M}\operatorname{diag}(\mathbf{z})
        + \theta \boldsymbol{\epsilon}`, shape ``sample_shape x batch x K x Q``.

        Args:
            sample_shape: leading sample dims.
            mask: optional gates ``z`` broadcastable to ``sample_shape x batch x 1 x Q`` (common
                random numbers); drawn from Bernoulli(keep_prob) when omitted.
            noise: optional standard-normal ``epsilon`` of the full shape; drawn when omitted.
            generator: optional ``torch.Generator`` for the draws made here.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        if mask is None:
            mask = self.sample_mask(sample_shape, generator=generator)
        if noise is None:
            noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device,
                                generator=generator)
        elif noise.shape != shape:
            raise ValueError(f"noise must have shape {tuple(shape)}, got {tuple(noise.shape)}")
        return mask * self.loc + self._sc * noise

    # --- density -------------------------------------------------------------------------------
    def component_log_probs(self, value):
        r"""Per-column log densities of the two joint components, shape ``... x 2 x Q``.

        Index 0 is :math:`\log[(1-\pi)\mathcal{N}(\mathbf{w}_a; \mathbf{0}, \theta^2 I)]` (dropped),
        index 1 is :math:`\log[\pi\,\mathcal{N}(\mathbf{w}_a; \mathbf{m}_a, \theta^2 I)]` (kept).
        """
        if self._validate_args:
            self._validate_sample(value)
        sc = self._sc
        k = self.num_rows
        log_norm = -0.5 * k * math.log(2 * math.pi) - k * torch.log(sc.squeeze(-1))
        sq_kept = ((value - self.loc) / sc).pow(2).sum(-2)
        sq_dropped = (value / sc).pow(2).sum(-2)
        kp = self.keep_prob[..., None]
        log_kept = torch.log(kp) - 0.5 * sq_kept + log_norm
        log_dropped = torch.log1p(-kp) - 0.5 * sq_dropped + log_norm
        return torch.stack([log_dropped, log_kept], dim=-2)

    def log_prob_columns(self, value):
        """Exact mixture log density of each column, shape ``... x Q``."""
        return torch.logsumexp(self.component_log_probs(value), dim=-2)

    def log_prob(self, value):
        """Exact log density of the matrix (sum over independent columns), shape ``...``."""
        return self.log_prob_columns(value).sum(-1)

    def responsibilities(self, value):
        r"""Posterior probability of each component given a column, ``... x 2 x Q``:
        :math:`r_z(\mathbf{w}_a) = q(z \mid \mathbf{w}_a)`; index 1 = kept."""
        return torch.softmax(self.component_log_probs(value), dim=-2)


