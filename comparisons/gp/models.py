r"""Exact GP regression in GPyTorch with the network kernels of this package: model, fitting,
prediction, test log-likelihood and the GP prior implied by a one-hidden-layer dropout network."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import gpytorch
import torch
from gpytorch.kernels import Kernel, RBFKernel, ScaleKernel
from linear_operator.operators import ConstantMulLinearOperator, LowRankRootLinearOperator
from linear_operator.utils.errors import NanError, NotPSDError

from comparisons.gp.mlls import CholeskyMarginalLogLikelihood
from comparisons.kernels.arc_cosine import ArcCosineKernel
from comparisons.kernels.nngp import NNGPKernel
from comparisons.kernels.random_features import RandomFeatureKernel
from vi_dropout.validation import check_finite, check_keep_prob, check_positive, check_positive_int

__all__ = [
    "ExactGPModel",
    "GPNotPSDError",
    "KERNEL_NAMES",
    "MLL_SOLVERS",
    "dropout_prior_hyperparameters",
    "fit_exact_gp",
    "gp_predict",
    "make_kernel",
    "make_mll",
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


def _kernel_description(model: ExactGPModel) -> str:
    k = model.covar_module
    base = _base_kernel(k)
    extra = []
    for attr in ("order", "depth", "activation", "num_features"):
        if hasattr(base, attr):
            extra.append(f"{attr}={getattr(base, attr)!r}")
    name = type(base).__name__ + (f"({', '.join(extra)})" if extra else "")
    return f"ScaleKernel({name})" if isinstance(k, ScaleKernel) else name


@contextmanager
def _explain_not_psd(model: ExactGPModel, what: str):
    try:
        yield
    except (NotPSDError, NanError) as err:
        x = model.train_inputs[0]
        jitter = gpytorch.settings.cholesky_jitter.value(x.dtype)
        raise GPNotPSDError(
            f"{what} failed: the covariance of kernel {_kernel_description(model)} on N={x.shape[-2]} "
            f"training points ({x.dtype}) is not positive definite even with Cholesky jitter "
            f"{jitter:g} (tried up to {gpytorch.settings.cholesky_max_tries.value()} times, x10 "
            f"each). Try a larger jitter (gpytorch.settings.cholesky_jitter(float_value=..., "
            f"double_value=...)), float64 inputs and model, or a larger observation noise "
            f"(likelihood.noise). Original error: {err}"
        ) from err


MLL_SOLVERS = ("cholesky", "gpytorch")


def make_mll(solver: str, likelihood, model) -> gpytorch.mlls.MarginalLogLikelihood:
    """The exact marginal likelihood object for ``solver``: ``"cholesky"`` (dense, one Cholesky
    factorisation per step and the closed-form gradient,
    :class:`~comparisons.gp.mlls.CholeskyMarginalLogLikelihood`) or ``"gpytorch"``
    (:class:`gpytorch.mlls.ExactMarginalLogLikelihood`: Cholesky up to
    ``gpytorch.settings.max_cholesky_size``, preconditioned CG and Lanczos above)."""
    if solver == "cholesky":
        return CholeskyMarginalLogLikelihood(likelihood, model)
    if solver == "gpytorch":
        return gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    raise ValueError(f"solver must be one of {list(MLL_SOLVERS)}, got {solver!r}")


def fit_exact_gp(
    model: ExactGPModel,
    likelihood: gpytorch.likelihoods.Likelihood,
    num_iters: int = 100,
    lr: float = 0.05,
    callback: Callable[[int, float], None] | None = None,
    solver: str = "cholesky",
) -> list[float]:
    r"""Maximise the exact marginal likelihood with Adam; returns the per-iteration loss
    :math:`-\log p(\mathbf{y} \mid X) / N` (plus the log-priors of any registered
    hyper-parameter priors, as GPyTorch's ``ExactMarginalLogLikelihood``).

    Args:
        model: the GP (its ``likelihood`` must be ``likelihood``).
        likelihood: the Gaussian likelihood.
        num_iters: number of Adam steps ``>= 1``.
        lr: Adam learning rate ``> 0``.
        callback: optional ``callback(iteration, loss)``.
        solver: ``"cholesky"`` (default: dense, closed-form gradient; 2-3 times faster per step
            than GPyTorch's autograd through its Cholesky solves at N = 3000, see
            ``benchmarks/bench_gp.py``) or ``"gpytorch"`` (see :func:`make_mll`).
    """
    num_iters = check_positive_int(num_iters, "num_iters")
    lr = check_positive(lr, "lr")
    if model.likelihood is not likelihood:
        raise ValueError("likelihood must be the model's own likelihood (model.likelihood)")
    mll = make_mll(solver, likelihood, model)
    model.train()
    likelihood.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train_x, train_y = model.train_inputs[0], model.train_targets
    history: list[float] = []
    with _explain_not_psd(model, "Marginal-likelihood evaluation"):
        for it in range(num_iters):
            optimizer.zero_grad()
            loss = -mll(model(train_x), train_y).sum()
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
            if callback is not None:
                callback(it, history[-1])
    return history


def gp_predict(
    model: ExactGPModel, likelihood: gpytorch.likelihoods.Likelihood, test_x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Predictive mean and variance of :math:`y_*` (observation noise included) at ``test_x``
    (``... x M x Q``), each ``... x M``; runs under ``torch.no_grad``."""
    check_finite(test_x, "test_x")
    model.eval()
    likelihood.eval()
    with torch.no_grad(), _explain_not_psd(model, "Predictive computation"):
        pred = likelihood(model(test_x))
        return pred.mean, pred.variance


def dropout_prior_hyperparameters(
    prior_length_scale: float,
    tau: float,
    keep_prob: float,
    input_dim: int,
    num_hidden: int,
    scale_by_keep_prob: bool = False,
) -> dict[str, float]:
    r"""Fixed GP hyper-parameters implied by the prior of a one-hidden-layer ReLU dropout
    network (Gal & Ghahramani 2016), for use with ``make_kernel("arccos1", ...)`` and **no**
    fitting.

    Derivation. The network is :math:`f(\mathbf{x}) = \sum_{k=1}^{K} v_k\,
    \mathrm{relu}(\mathbf{w}_k^\top\mathbf{x} + b_k)` with prior :math:`\mathcal{N}(0, l^{-2})`
    on every entry of :math:`\mathbf{w}_k`, :math:`b_k` and :math:`v_k` (:math:`l` =
    ``prior_length_scale``). In this package's convention
    (:class:`~comparisons.kernels.arc_cosine.ArcCosineKernel`) input weights are
    :math:`\mathcal{N}(0, \sigma_w^2/Q)`, so :math:`\sigma_w^2 = Q\,l^{-2}` and
    :math:`\sigma_b^2 = l^{-2}`. The output weights are independent of the hidden units, so

    .. math::
        \operatorname{Cov}(f(\mathbf{x}), f(\mathbf{x}')) = \sum_k \mathbb{E}[v_k^2]\,
        \mathbb{E}[\mathrm{relu}(\cdot)\mathrm{relu}(\cdot)]
        = K\,l^{-2}\; k_1^\text{arccos}(\mathbf{x}, \mathbf{x}'),

    which is exact for every finite :math:`K` (a second moment; the process is Gaussian only as
    :math:`K \to \infty`). The observation noise variance is :math:`1/\tau`.

    What is approximate / a choice:

    * Dropout masks are part of the variational distribution, not of the prior: by default
      (``scale_by_keep_prob=False``) ``keep_prob`` does **not** change the prior, i.e. this is
      the GP that dropout approximates (Gal & Ghahramani's kernel, masks off). With
      ``scale_by_keep_prob=True`` the output variance is multiplied by ``keep_prob``, the exact
      second moment when the *hidden* units are dropped without rescaling (the seed's
      convention, :math:`\mathbb{E}[z_k^2] = p`); dropout of the *inputs* is still ignored (its
      effect is not an arc-cosine kernel).
    * The network's output bias (``mlp_forward`` has one) would add a constant
      :math:`l^{-2}`; it is returned as ``output_bias_variance`` but not put into the kernel
      (Gal & Ghahramani's model has none).
    * A finite-:math:`K` network prior is not Gaussian; the GP matches its first two moments.

    Returns:
        dict with ``weight_variance``, ``bias_variance``, ``outputscale``,
        ``output_bias_variance`` and ``noise``.

    Example:
        >>> h = dropout_prior_hyperparameters(1.0, tau=10.0, keep_prob=0.9, input_dim=8,
        ...                                   num_hidden=50)
        >>> h["weight_variance"], h["outputscale"], h["noise"]
        (8.0, 50.0, 0.1)
    """
    length = check_positive(prior_length_scale, "prior_length_scale")
    tau = check_positive(tau, "tau")
    keep_prob = check_keep_prob(keep_prob)
    q = check_positive_int(input_dim, "input_dim")
    k = check_positive_int(num_hidden, "num_hidden")
    inv_l2 = length**-2
    outputscale = k * inv_l2 * (keep_prob if scale_by_keep_prob else 1.0)
    return {
        "weight_variance": q * inv_l2,
        "bias_variance": inv_l2,
        "outputscale": outputscale,
        "output_bias_variance": inv_l2,
        "noise": 1.0 / tau,
    }


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
        >>> h = dropout_prior_hyperparameters(1.0, 10.0, 0.9, input_dim=8, num_hidden=50)
        >>> k = make_kernel("arccos1", 8, h["weight_variance"], h["bias_variance"],
        ...                 outputscale=h["outputscale"])
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
