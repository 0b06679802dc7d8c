r"""Shared parameter handling for kernels with a weight variance :math:`\sigma_w^2` and a bias
variance :math:`\sigma_b^2` (the arc-cosine, NNGP and random-feature kernels).

Modelled on :class:`gpytorch.kernels.PolynomialKernel` and botorch's
``InfiniteWidthBNNKernel``: raw parameters of shape ``*batch_shape x 1 x 1`` behind a
:class:`gpytorch.constraints.Positive` constraint, property getters / setters and optional priors.
"""

from __future__ import annotations

import math

import torch
from gpytorch.constraints import Interval, Positive
from gpytorch.kernels import Kernel
from gpytorch.priors import Prior

from vi_dropout.validation import check_finite, check_positive

__all__ = ["WeightBiasVarianceKernel", "clamp_eps", "check_inputs"]


def clamp_eps(dtype: torch.dtype) -> float:
    r"""Distance from :math:`\pm 1` at which cosines are clamped before ``acos``.

    ``4 * finfo(dtype).eps`` (8.9e-16 in float64, 4.8e-7 in float32). Clamping ``c`` to
    ``1 - eps`` changes the angle by at most :math:`\sqrt{2\,\mathrm{eps}}` (4.2e-8 in float64,
    9.8e-4 in float32), comparable to the angle error that rounding ``c`` itself already causes.
    """
    return 4.0 * torch.finfo(dtype).eps


def check_inputs(x1: torch.Tensor, x2: torch.Tensor) -> None:
    """Raise a ValueError on NaN / inf inputs (the closed forms would silently return NaN)."""
    check_finite(x1, "x1")
    if x2 is not x1:
        check_finite(x2, "x2")


def _check_prior(prior, name: str) -> None:
    if prior is not None and not isinstance(prior, Prior):
        raise ValueError(
            f"{name} must be a gpytorch.priors.Prior or None, got {type(prior).__name__}"
        )


class WeightBiasVarianceKernel(Kernel):
    r"""Base class holding ``weight_variance`` (:math:`\sigma_w^2`) and ``bias_variance``
    (:math:`\sigma_b^2`), both positive, of shape ``*batch_shape x 1 x 1``.

    Args:
        weight_variance: initial :math:`\sigma_w^2 > 0` (input weights are
            :math:`\mathcal{N}(0, \sigma_w^2 / Q)` per entry, ``Q`` the input dimension).
        bias_variance: initial :math:`\sigma_b^2 > 0`.
        weight_variance_prior, bias_variance_prior: optional :class:`gpytorch.priors.Prior`.
        weight_variance_constraint, bias_variance_constraint: default :class:`Positive`.
        **kwargs: passed to :class:`gpytorch.kernels.Kernel` (``batch_shape``, ``active_dims``).
    """

    def __init__(
        self,
        weight_variance: float = 1.0,
        bias_variance: float = 1.0,
        weight_variance_prior: Prior | None = None,
        bias_variance_prior: Prior | None = None,
        weight_variance_constraint: Interval | None = None,
        bias_variance_constraint: Interval | None = None,
        **kwargs,
    ):
        weight_variance = check_positive(weight_variance, "weight_variance")
        bias_variance = check_positive(bias_variance, "bias_variance")
        _check_prior(weight_variance_prior, "weight_variance_prior")
        _check_prior(bias_variance_prior, "bias_variance_prior")
        super().__init__(**kwargs)
        if weight_variance_constraint is None:
            weight_variance_constraint = Positive()
        if bias_variance_constraint is None:
            bias_variance_constraint = Positive()
        shape = (*self.batch_shape, 1, 1)
        self.register_parameter("raw_weight_variance", torch.nn.Parameter(torch.zeros(shape)))
        self.register_parameter("raw_bias_variance", torch.nn.Parameter(torch.zeros(shape)))
        self.register_constraint("raw_weight_variance", weight_variance_constraint)
        self.register_constraint("raw_bias_variance", bias_variance_constraint)
        if weight_variance_prior is not None:
            self.register_prior(
                "weight_variance_prior",
                weight_variance_prior,
                lambda m: m.weight_variance,
                lambda m, v: m._set_weight_variance(v),
            )
        if bias_variance_prior is not None:
            self.register_prior(
                "bias_variance_prior",
                bias_variance_prior,
                lambda m: m.bias_variance,
                lambda m, v: m._set_bias_variance(v),
            )
        self._set_weight_variance(weight_variance)
        self._set_bias_variance(bias_variance)

    @property
    def weight_variance(self) -> torch.Tensor:
        return self.raw_weight_variance_constraint.transform(self.raw_weight_variance)

    @weight_variance.setter
    def weight_variance(self, value) -> None:
        self._set_weight_variance(value)

    def _set_weight_variance(self, value) -> None:
        value = self._checked_value(value, "weight_variance")
        self.initialize(
            raw_weight_variance=self.raw_weight_variance_constraint.inverse_transform(value)
        )

    @property
    def bias_variance(self) -> torch.Tensor:
        return self.raw_bias_variance_constraint.transform(self.raw_bias_variance)

    @bias_variance.setter
    def bias_variance(self, value) -> None:
        self._set_bias_variance(value)

    def _set_bias_variance(self, value) -> None:
        value = self._checked_value(value, "bias_variance")
        self.initialize(raw_bias_variance=self.raw_bias_variance_constraint.inverse_transform(value))

    def _checked_value(self, value, name: str) -> torch.Tensor:
        if not torch.is_tensor(value):
            value = torch.as_tensor(value)
        value = value.to(self.raw_weight_variance)
        bad = ~(torch.isfinite(value) & (value > 0))
        if bool(bad.any()):
            raise ValueError(
                f"{name} must be finite and > 0 everywhere, got {value.detach().flatten()[:5].tolist()}"
                + (" ..." if value.numel() > 5 else "")
            )
        return value

    def _variances(self, diag: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sigma_w^2, sigma_b^2)`` shaped ``*batch x 1 x 1`` (full) or ``*batch x 1`` (diag)."""
        sw2, sb2 = self.weight_variance, self.bias_variance
        if diag:
            return sw2.squeeze(-1), sb2.squeeze(-1)
        return sw2, sb2

    @staticmethod
    def input_covariance(
        x1: torch.Tensor, x2: torch.Tensor, sw2: torch.Tensor, sb2: torch.Tensor, diag: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Pre-activation covariances of the first hidden layer,
        :math:`\Sigma(\mathbf{x},\mathbf{x}') = \sigma_b^2 + \sigma_w^2 \mathbf{x}^\top\mathbf{x}'/Q`.

        Returns ``(cross, var1, var2)``: ``cross`` is ``... x N x M`` (or ``... x N`` if ``diag``),
        ``var1`` the ``... x N x 1`` variances of ``x1`` and ``var2`` the ``... x 1 x M`` ones of
        ``x2`` (both ``... x N`` if ``diag``).
        """
        q = x1.shape[-1]
        scale = sw2 / q
        if diag:
            v1 = sb2 + scale * x1.pow(2).sum(-1)
            return v1, v1, v1
        v1 = sb2 + scale * x1.pow(2).sum(-1, keepdim=True)
        v2 = v1.transpose(-1, -2) if x2 is x1 else sb2 + scale * x2.pow(2).sum(-1).unsqueeze(-2)
        cross = sb2 + scale * (x1 @ x2.transpose(-1, -2))
        return cross, v1, v2


# Value of 2 pi used by the closed forms.
TWO_PI = 2.0 * math.pi
