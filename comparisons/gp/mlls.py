r"""Exact marginal log likelihood by one dense Cholesky factorisation, with the closed-form gradient.

GPyTorch's :class:`~gpytorch.mlls.ExactMarginalLogLikelihood` differentiates through its
Cholesky-based solves with autograd; on dense problems of a few thousand points its backward
pass costs several times the factorisation (triangular solves against the identity, products of
``N x N`` factors). The gradient of the Gaussian log density with respect to its covariance has a
closed form,

.. math::
    \log p(\mathbf{y}) = -\tfrac12 \mathbf{r}^\top \mathbf{K}^{-1}\mathbf{r}
        - \tfrac12 \log|\mathbf{K}| - \tfrac N2 \log 2\pi, \qquad
    \frac{\partial \log p}{\partial \mathbf{K}} = \tfrac12\big(\boldsymbol\alpha
        \boldsymbol\alpha^\top - \mathbf{K}^{-1}\big), \quad
    \frac{\partial \log p}{\partial \mathbf{r}} = -\boldsymbol\alpha,

with :math:`\mathbf{r} = \mathbf{y} - \mathbf{m}`, :math:`\boldsymbol\alpha = \mathbf{K}^{-1}
\mathbf{r}` and :math:`\mathbf{K}` the covariance of :math:`\mathbf{y}` (kernel plus noise), so a
step costs one Cholesky factorisation, one ``cholesky_inverse`` and the kernel's own backward
pass (Rasmussen & Williams 2006, eq. 5.9). The value and the gradients are the same as
GPyTorch's in exact arithmetic (the tests check 1e-9 in float64).

References:
    Rasmussen, C. E. and Williams, C. K. I. (2006). Gaussian Processes for Machine Learning,
    Section 5.4.1. MIT Press.
"""

from __future__ import annotations

import math

import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.likelihoods.gaussian_likelihood import _GaussianLikelihoodBase
from gpytorch.mlls import MarginalLogLikelihood
from linear_operator.utils.cholesky import psd_safe_cholesky

__all__ = ["CholeskyMarginalLogLikelihood", "gaussian_log_density"]


class _GaussianLogDensity(torch.autograd.Function):
    """log N(r | 0, K) for ``... x N`` residuals and ``... x N x N`` covariances."""

    @staticmethod
    def forward(ctx, covariance, residual):
        chol = psd_safe_cholesky(covariance)
        alpha = torch.cholesky_solve(residual.unsqueeze(-1), chol)
        quad = (residual.unsqueeze(-1) * alpha).sum((-1, -2))
        logdet = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        ctx.save_for_backward(chol, alpha)
        n = residual.shape[-1]
        return -0.5 * (quad + logdet + n * math.log(2.0 * math.pi))

    @staticmethod
    def backward(ctx, grad):
        chol, alpha = ctx.saved_tensors
        g = grad.unsqueeze(-1).unsqueeze(-1)
        g_cov = g_res = None
        if ctx.needs_input_grad[0]:
            # 0.5 (alpha alpha^T - K^{-1}) * grad, built in place in the K^{-1} buffer.
            g_cov = torch.cholesky_inverse(chol)
            g_cov.sub_(alpha @ alpha.transpose(-1, -2)).mul_(-0.5 * g)
        if ctx.needs_input_grad[1]:
            g_res = -(alpha * g).squeeze(-1)
        return g_cov, g_res


def gaussian_log_density(covariance: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    r"""Log density :math:`\log\mathcal{N}(\mathbf{r}\mid\mathbf{0},\mathbf{K})` with the
    closed-form gradient (module docstring).

    Args:
        covariance: :math:`\mathbf{K}`, ``... x N x N``, symmetric positive definite (GPyTorch's
            ``psd_safe_cholesky`` adds jitter, or raises ``NotPSDError``).
        residual: :math:`\mathbf{r}`, ``... x N``.

    Returns:
        ``...`` log densities.

    Example:
        >>> k = torch.eye(3, dtype=torch.float64)
        >>> float(gaussian_log_density(k, torch.zeros(3, dtype=torch.float64)))  # doctest: +ELLIPSIS
        -2.756...
    """
    if covariance.shape[-1] != covariance.shape[-2] or covariance.shape[-1] != residual.shape[-1]:
        raise ValueError(
            f"covariance must be ... x N x N and residual ... x N, got {tuple(covariance.shape)} "
            f"and {tuple(residual.shape)}"
        )
    return _GaussianLogDensity.apply(covariance, residual)


class CholeskyMarginalLogLikelihood(MarginalLogLikelihood):
    r"""Drop-in replacement for :class:`gpytorch.mlls.ExactMarginalLogLikelihood` on dense
    problems: the same value (log marginal likelihood plus log-priors, divided by :math:`N`),
    computed from the DENSE covariance of ``likelihood(model(x))`` with one Cholesky
    factorisation and the closed-form gradient (module docstring).

    Use it where a dense ``N x N`` matrix fits in memory (``8 N^2`` bytes in float64, several
    times over during the backward pass); GPyTorch's own MLL with CG is the choice beyond that.

    Args:
        likelihood: a Gaussian likelihood.
        model: the :class:`gpytorch.models.ExactGP`.

    Example:
        >>> import gpytorch
        >>> x = torch.linspace(0, 1, 20, dtype=torch.float64).unsqueeze(-1)
        >>> y = torch.sin(6 * x[:, 0])
        >>> lik = gpytorch.likelihoods.GaussianLikelihood().double()
        >>> from comparisons.gp.models import ExactGPModel, make_kernel
        >>> model = ExactGPModel(x, y, lik, make_kernel("arccos1", 1, outputscale=1.0)).double()
        >>> _ = model.train()
        >>> mll = CholeskyMarginalLogLikelihood(lik, model)
        >>> (-mll(model(x), y)).backward()
    """

    def __init__(self, likelihood, model):
        if not isinstance(likelihood, _GaussianLikelihoodBase):
            raise ValueError(
                f"likelihood must be a Gaussian likelihood for exact inference, got "
                f"{type(likelihood).__name__}"
            )
        super().__init__(likelihood, model)

    def forward(self, function_dist: MultivariateNormal, target: torch.Tensor, *params, **kwargs):
        if not isinstance(function_dist, MultivariateNormal):
            raise ValueError(
                f"function_dist must be a MultivariateNormal (the ExactGP's output), got "
                f"{type(function_dist).__name__}"
            )
        output = self.likelihood(function_dist, *params, **kwargs)
        covariance = output.lazy_covariance_matrix.to_dense()
        res = gaussian_log_density(covariance, target - output.mean)
        for added_loss_term in self.model.added_loss_terms():
            res = res.add(added_loss_term.loss(*params))
        for _, module, prior, closure, _ in self.model.named_priors():
            prior_term = prior.log_prob(closure(module))
            res = res.add(prior_term.view(*prior_term.shape[: res.ndim], -1).sum(dim=-1))
        return res.div(function_dist.event_shape.numel())
