r"""The exact GP model of GPyTorch with the network kernels of this package, and the kernel factory.

Fitting and prediction are in :mod:`comparisons.gp.fit`, the GP prior implied by a dropout
network in :mod:`comparisons.gp.priors`.

Example:
    >>> x, y = torch.randn(20, 2), torch.randn(20)
    >>> lik = gpytorch.likelihoods.GaussianLikelihood()
    >>> ExactGPModel(x, y, lik, make_kernel("arccos1", 2)).kernel_description()
    'ArcCosineKernel(order=1)'
"""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from linear_operator.operators import ConstantMulLinearOperator, LowRankRootLinearOperator

from comparisons.kernels.arc_cosine import ArcCosineKernel
from comparisons.kernels.nngp import NNGPKernel
from comparisons.kernels.random_features import RandomFeatureKernel
from vi_dropout.validation import check_finite, check_positive, check_positive_int

__all__ = [
    "ExactGPModel",
    "GPNotPSDError",
    "KERNEL_NAMES",
    "make_kernel",
]

KERNEL_NAMES = ("arccos0", "arccos1", "arccos2", "nngp-relu", "nngp-erf", "random-features", "se")
MEAN_NAMES = ("zero", "constant")


class GPNotPSDError(RuntimeError):
    """The GP's covariance matrix was not numerically positive definite even after jitter."""


def _base_kernel(kernel: Kernel) -> Kernel:
    while isinstance(kernel, ScaleKernel):
        kernel = kernel.base_kernel
    return kernel


class ExactGPModel(gpytorch.models.ExactGP):
    r"""Exact GP :math:`f \sim \mathcal{GP}(m, k)` with a zero or constant mean and any kernel.

    With a :class:`~comparisons.kernels.random_features.RandomFeatureKernel` (optionally inside a
    ``ScaleKernel``) and ``low_rank_solve`` (default: on), the kernel is evaluated eagerly to a
    ``LowRankRootLinearOperator``, so adding the likelihood's noise gives a
    ``LowRankRootAddedDiagLinearOperator`` whose marginal likelihood uses the Woodbury identity
    (:math:`O(NK^2)`), and predictions use GPyTorch's ``LinearPredictionStrategy``
    (feature-space posterior). Otherwise GPyTorch's default applies: Cholesky for
    :math:`N \le` ``gpytorch.settings.max_cholesky_size`` (800), CG / Lanczos above.

    Args:
        train_x: ``N x Q`` (or ``... x N x Q``) training inputs.
        train_y: ``N`` (or ``... x N``) training targets.
        likelihood: a :class:`gpytorch.likelihoods.GaussianLikelihood` (or fixed-noise variant).
        kernel: the covariance module.
        mean: ``"zero"`` or ``"constant"``.
        low_rank_solve: use the Woodbury path for random-feature kernels.

    Example:
        >>> x, y = torch.randn(20, 2), torch.randn(20)
        >>> lik = gpytorch.likelihoods.GaussianLikelihood()
        >>> model = ExactGPModel(x, y, lik, make_kernel("arccos1", input_dim=2))
    """

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        likelihood: gpytorch.likelihoods.Likelihood,
        kernel: Kernel,
        mean: str = "zero",
        low_rank_solve: bool = True,
    ):
        check_finite(train_x, "train_x")
        check_finite(train_y, "train_y")
        if not isinstance(kernel, Kernel):
            raise ValueError(f"kernel must be a gpytorch.kernels.Kernel, got {type(kernel).__name__}")
        if mean not in MEAN_NAMES:
            raise ValueError(f"mean must be one of {list(MEAN_NAMES)}, got {mean!r}")
        if train_x.dim() < 2 or train_x.shape[:-1] != train_y.shape:
            raise ValueError(
                f"train_x must be ... x N x Q and train_y ... x N with the same N, got shapes "
                f"{tuple(train_x.shape)} and {tuple(train_y.shape)}"
            )
        super().__init__(train_x, train_y, likelihood)
        batch = train_y.shape[:-1]
        self.mean_module = (
            gpytorch.means.ZeroMean(batch_shape=batch)
            if mean == "zero"
            else gpytorch.means.ConstantMean(batch_shape=batch)
        )
        self.covar_module = kernel
        self.low_rank_solve = bool(low_rank_solve) and isinstance(
            _base_kernel(kernel), RandomFeatureKernel
        )

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        mean = self.mean_module(x)
        covar = self.covar_module(x)
        if self.low_rank_solve:
            covar = covar.evaluate_kernel()
            if isinstance(covar, ConstantMulLinearOperator) and isinstance(
                covar.base_linear_op, LowRankRootLinearOperator
            ):
                scale = covar.expanded_constant.sqrt().unsqueeze(-1)
                covar = LowRankRootLinearOperator(covar.base_linear_op.root.to_dense() * scale)
        return gpytorch.distributions.MultivariateNormal(mean, covar)

    def kernel_description(self) -> str:
        """The kernel in one line, e.g. ``ScaleKernel(ArcCosineKernel(order=1))`` (used in error
        messages)."""
        k = self.covar_module
        base = _base_kernel(k)
        extra = []
        for attr in ("order", "depth", "activation", "num_features"):
            if hasattr(base, attr):
                extra.append(f"{attr}={getattr(base, attr)!r}")
        name = type(base).__name__ + (f"({', '.join(extra)})" if extra else "")
        return f"ScaleKernel({name})" if isinstance(k, ScaleKernel) else name


def make_kernel(
    name: str,
    input_dim: int,
    weight_variance: float = 1.0,
    bias_variance: float = 1.0,
    outputscale: float | None = None,
    lengthscale: float = 1.0,
    depth: int = 2,
    num_features: int = 1024,
    activation: str = "relu",
    generator: torch.Generator | None = None,
    **kwargs,
) -> Kernel:
    r"""Build a kernel by name.

    Names: ``"arccos0"``, ``"arccos1"``, ``"arccos2"`` (:class:`ArcCosineKernel`),
    ``"nngp-relu"``, ``"nngp-erf"`` (:class:`NNGPKernel` with ``depth`` hidden layers),
    ``"random-features"`` (:class:`RandomFeatureKernel` with ``activation``, ``num_features``,
    ``generator``) and ``"se"`` (``ScaleKernel(RBFKernel)`` with ``lengthscale``, outputscale
    1 unless given). For the network kernels ``outputscale=None`` returns the bare kernel and a
    number wraps it into a ``ScaleKernel`` with that initial outputscale. ``kwargs``
    (``batch_shape``, priors, constraints) go to the network kernel.

    Example:
        >>> k = make_kernel("arccos1", 8, weight_variance=8.0, bias_variance=1.0,
        ...                 outputscale=50.0)
        >>> round(float(k.outputscale), 4)
        50.0
    """
    input_dim = check_positive_int(input_dim, "input_dim")
    if name == "se":
        base = RBFKernel(**kwargs)
        base.lengthscale = check_positive(lengthscale, "lengthscale")
        kernel = ScaleKernel(base)
        kernel.outputscale = check_positive(1.0 if outputscale is None else outputscale, "outputscale")
        return kernel
    common = dict(weight_variance=weight_variance, bias_variance=bias_variance, **kwargs)
    if name in ("arccos0", "arccos1", "arccos2"):
        base = ArcCosineKernel(order=int(name[-1]), **common)
    elif name in ("nngp-relu", "nngp-erf"):
        base = NNGPKernel(depth=depth, activation=name.split("-")[1], **common)
    elif name == "random-features":
        base = RandomFeatureKernel(
            activation=activation,
            num_features=num_features,
            input_dim=input_dim,
            generator=generator,
            **common,
        )
    else:
        raise ValueError(f"name must be one of {list(KERNEL_NAMES)}, got {name!r}")
    if outputscale is None:
        return base
    kernel = ScaleKernel(base, batch_shape=base.batch_shape)
    kernel.outputscale = check_positive(outputscale, "outputscale")
    return kernel
