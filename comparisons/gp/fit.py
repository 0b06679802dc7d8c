r"""Fitting and prediction of exact GPs: one marginal-likelihood fit, one predictive, one rule for
when GPyTorch may leave Cholesky.

GPyTorch solves with Cholesky up to ``gpytorch.settings.max_cholesky_size`` (800 points by
default) and with preconditioned CG / Lanczos above. Every experiment of this package wants the
exact (Cholesky) answer at every size, so their fits and predictions run under
:func:`exact_cholesky`, i.e. ``max_cholesky_size(MAX_CHOLESKY_SIZE)``. The constant is larger than
any training set whose dense ``N x N`` factor fits in memory (:math:`10^6` points would need 8 TB
in float64), so inside it every solve is a Cholesky solve.

The exact log marginal likelihood maximised by :func:`fit_exact_gp` (Adam), :func:`fit_lbfgs`
(L-BFGS) and :func:`fit_gp` (the GPs of the comparisons by name) is

.. math::
    \log p(\mathbf{y}\mid X) = -\tfrac12 (\mathbf{y} - \mathbf{m})^\top (K + \sigma^2 I)^{-1}
    (\mathbf{y} - \mathbf{m}) - \tfrac12 \log|K + \sigma^2 I| - \tfrac N2 \log 2\pi.

Example:
    >>> x, y = np.random.default_rng(0).normal(size=(30, 2)), np.zeros((30, 1))
    >>> fit = fit_gp("gp_se", x, y, iterations=3)
    >>> mean, var = fit.predict(x[:4])
    >>> mean.shape, bool((var > 0).all())
    ((4,), True)

Why one module of this size: the one GP fit (marginal likelihood, L-BFGS or Adam, restarts,
jitter, the size cap) and its prediction, which every experiment calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import gpytorch
import numpy as np
import torch
from gpytorch.constraints import GreaterThan
from linear_operator.utils.errors import NanError, NotPSDError

from comparisons.gp.mlls import CholeskyMarginalLogLikelihood
from comparisons.gp.models import ExactGPModel, GPNotPSDError, make_kernel
from vi_dropout.validation import (
    check_finite,
    check_has_rows,
    check_int,
    check_positive,
    check_positive_int,
    check_targets,
)

__all__ = [
    "MAX_CHOLESKY_SIZE",
    "MLL_SOLVERS",
    "OPTIMIZERS",
    "GP_METHODS",
    "FITTED_GP_METHODS",
    "PRIOR_GP_METHODS",
    "GPFit",
    "exact_cholesky",
    "explain_not_psd",
    "make_mll",
    "fit_exact_gp",
    "fit_lbfgs",
    "gp_predict",
    "gp_hyperparameters",
    "fit_gp",
    "random_feature_posterior",
]

#: GPyTorch's ``max_cholesky_size`` inside :func:`exact_cholesky`: larger than every training set
#: an exact GP can hold in memory, so every solve is a Cholesky solve.
MAX_CHOLESKY_SIZE = 1_000_000
PRIOR_GP_METHODS = ("gp_arccos1_prior", "gp_rf_prior")
FITTED_GP_METHODS = ("gp_arccos1", "gp_se")
GP_METHODS = PRIOR_GP_METHODS + FITTED_GP_METHODS
OPTIMIZERS = ("lbfgs", "adam")
PRIOR_KEYS = ("weight_variance", "bias_variance", "outputscale", "noise")
_MIN_NOISE = 1e-6


def exact_cholesky():
    """Context manager: GPyTorch solves by Cholesky at every size (``max_cholesky_size`` =
    :data:`MAX_CHOLESKY_SIZE`) instead of switching to CG / Lanczos above 800 points.

    Example:
        >>> with exact_cholesky():
        ...     gpytorch.settings.max_cholesky_size.value() == MAX_CHOLESKY_SIZE
        True
    """
    return gpytorch.settings.max_cholesky_size(MAX_CHOLESKY_SIZE)


@contextmanager
def explain_not_psd(model: ExactGPModel, what: str):
    """Context manager that re-raises GPyTorch's ``NotPSDError`` / ``NanError`` as a
    :class:`~comparisons.gp.models.GPNotPSDError` naming the kernel, ``N``, the dtype, the jitter
    tried and what to change.

    Args:
        model: the GP whose covariance is being factorised.
        what: the step, e.g. ``"Predictive computation"`` (starts the message).
    """
    try:
        yield
    except (NotPSDError, NanError) as err:
        x = model.train_inputs[0]
        jitter = gpytorch.settings.cholesky_jitter.value(x.dtype)
        raise GPNotPSDError(
            f"{what} failed: the covariance of kernel {model.kernel_description()} on "
            f"N={x.shape[-2]} training points ({x.dtype}) is not positive definite even with "
            f"Cholesky jitter {jitter:g} (tried up to "
            f"{gpytorch.settings.cholesky_max_tries.value()} times, x10 each). Try a larger jitter "
            f"(gpytorch.settings.cholesky_jitter(float_value=..., double_value=...)), float64 "
            f"inputs and model, or a larger observation noise (likelihood.noise). Original error: "
            f"{err}"
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

    GPyTorch's current ``max_cholesky_size`` applies (see :func:`exact_cholesky`).

    Returns:
        the loss after every step.

    Example:
        >>> x = torch.randn(20, 1, dtype=torch.float64)
        >>> lik = gpytorch.likelihoods.GaussianLikelihood().double()
        >>> model = ExactGPModel(x, x[:, 0].sin(), lik, make_kernel("se", 1).double())
        >>> len(fit_exact_gp(model, lik, num_iters=3))
        3
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
    with explain_not_psd(model, "Marginal-likelihood evaluation"):
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
    (``... x M x Q``), each ``... x M``; runs under ``torch.no_grad``.

    GPyTorch's current ``max_cholesky_size`` applies: wrap the call in :func:`exact_cholesky` for
    the Cholesky answer above 800 training points.

    Example:
        >>> x, y = torch.randn(10, 1, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)
        >>> lik = gpytorch.likelihoods.GaussianLikelihood().double()
        >>> model = ExactGPModel(x, y, lik, make_kernel("se", 1).double())
        >>> [t.shape for t in gp_predict(model, lik, x[:3])]
        [torch.Size([3]), torch.Size([3])]
    """
    check_finite(test_x, "test_x")
    _check_test_inputs(test_x, "test_x", model.train_inputs[0])
    model.eval()
    likelihood.eval()
    with torch.no_grad(), explain_not_psd(model, "Predictive computation"):
        pred = likelihood(model(test_x))
        return pred.mean, pred.variance


def _check_test_inputs(x: torch.Tensor, name: str, train_x: torch.Tensor) -> None:
    """Refuse test inputs that are not ``... x M x Q`` with the training inputs' ``Q`` columns
    and ``M >= 1`` rows (GPyTorch would fail with a raw shape error, or predict nothing)."""
    q = train_x.shape[-1]
    if x.dim() < 2:
        hint = (f"for one input column pass {name}.reshape(-1, 1)" if q == 1
                else f"for one point pass {name}.reshape(1, -1)")
        raise ValueError(f"{name} must have shape N x D = N x {q} (one row per point, D = {q} "
                         f"input columns as in training), got a {x.dim()}-D array of shape "
                         f"{tuple(x.shape)} ({hint})")
    if x.shape[-1] != q:
        raise ValueError(f"{name} must have shape N x D = N x {q} (D = {q} input columns as in "
                         f"training), got shape {tuple(x.shape)}")
    check_has_rows(math.prod(x.shape[:-1]), name, x.shape)


@dataclass(eq=False)
class GPFit:
    """A fitted (or fixed) exact GP and its predictions.

    Attributes:
        method: one of :data:`GP_METHODS`.
        model, likelihood: the GPyTorch objects (float64).
        hyperparameters: final values (``outputscale``, ``noise``, kernel variances or
            length-scales, ``mean_constant``), standardised scale.
        losses: marginal-likelihood losses per Adam step (empty when not fitted).
        fit_time_s: time spent fitting.
    """

    method: str
    model: ExactGPModel
    likelihood: gpytorch.likelihoods.GaussianLikelihood
    hyperparameters: dict[str, float]
    losses: list[float] = field(default_factory=list)
    fit_time_s: float = 0.0

    def predict(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance of :math:`y_*` (noise included) at standardised inputs
        ``x`` (``M x Q``), standardised scale, float64 ``(M,)`` each.

        ``gp_rf_prior`` is predicted in weight space (:func:`random_feature_posterior`), the
        others with GPyTorch (Cholesky). ``x`` must be ``M x Q`` (``M >= 1`` rows, the
        training inputs' ``Q`` columns; a 1-D ``x`` is refused, not guessed) and finite."""
        xt = _as_float64(x, "x")
        check_finite(xt, "x")
        _check_test_inputs(xt, "x", self.model.train_inputs[0])
        if self.method == "gp_rf_prior":
            kernel = self.model.covar_module
            with torch.no_grad():
                mean, var = random_feature_posterior(
                    kernel.base_kernel.features(self.model.train_inputs[0]),
                    self.model.train_targets, kernel.base_kernel.features(xt),
                    float(kernel.outputscale), float(self.likelihood.noise))
            return mean.numpy().copy(), var.numpy().copy()
        with exact_cholesky():
            mean, var = gp_predict(self.model, self.likelihood, xt)
        return mean.numpy().copy(), var.numpy().copy()


def random_feature_posterior(phi_train: torch.Tensor, y_train: torch.Tensor,
                             phi_test: torch.Tensor, outputscale: float, noise: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""GP posterior predictive of a rank-:math:`K` kernel :math:`a\,\Phi\Phi^\top`, computed in
    weight space (Bayesian linear regression on the features).

    With :math:`\Psi = \sqrt a\,\Phi` (``N x K``), weights :math:`\mathbf{w} \sim
    \mathcal{N}(0, I_K)` and noise variance :math:`\sigma^2`,

    .. math::
        P = I_K + \Psi^\top\Psi / \sigma^2 = L L^\top, \qquad
        \mu_* = \boldsymbol\psi_*^\top P^{-1}\Psi^\top\mathbf{y} / \sigma^2, \qquad
        v_* = \sigma^2 + \lVert L^{-1}\boldsymbol\psi_*\rVert^2 .

    This equals the function-space formula :math:`a\boldsymbol\phi_*^\top\Phi^\top(a\Phi\Phi^\top +
    \sigma^2 I)^{-1}\mathbf{y}` exactly, but stays accurate when :math:`a \gg \sigma^2` (the
    dropout prior has :math:`a pprox 10^6`): :math:`P \succeq I` and :math:`v_* \ge \sigma^2` by
    construction, whereas the Woodbury / function-space variance
    :math:`a\,k_{**} - \dots` cancels catastrophically.

    Args:
        phi_train: ``N x K`` features of the training inputs.
        y_train: ``N`` targets.
        phi_test: ``M x K`` features of the test inputs.
        outputscale: :math:`a > 0`.
        noise: :math:`\sigma^2 > 0`.

    Returns:
        ``(mean, var)``, each ``M``.

    Example:
        >>> phi = torch.eye(2, dtype=torch.float64)
        >>> m, v = random_feature_posterior(phi, torch.ones(2, dtype=torch.float64), phi, 1.0, 1.0)
        >>> [round(t, 12) for t in m.tolist()], [round(t, 12) for t in v.tolist()]
        ([0.5, 0.5], [1.5, 1.5])
    """
    a = check_positive(outputscale, "outputscale")
    s2 = check_positive(noise, "noise")
    psi, psi_s = phi_train * math.sqrt(a), phi_test * math.sqrt(a)
    k = psi.shape[-1]
    prec = torch.eye(k, dtype=psi.dtype) + psi.T @ psi / s2
    chol = torch.linalg.cholesky(prec)
    w = torch.cholesky_solve((psi.T @ y_train.reshape(-1, 1)) / s2, chol)
    mean = (psi_s @ w).reshape(-1)
    half = torch.linalg.solve_triangular(chol, psi_s.T, upper=False)
    return mean, half.pow(2).sum(0) + s2


def gp_hyperparameters(model: ExactGPModel, likelihood) -> dict[str, float]:
    """The current hyper-parameters as floats: ``noise``, ``outputscale`` (inside a
    ``ScaleKernel``), ``weight_variance`` / ``bias_variance`` (network kernels),
    ``lengthscale_<i>`` (RBF, one per input) and ``mean_constant`` (constant mean)."""
    out = {"noise": float(likelihood.noise.detach().reshape(-1)[0])}
    kernel = model.covar_module
    if isinstance(kernel, gpytorch.kernels.ScaleKernel):
        out["outputscale"] = float(kernel.outputscale.detach())
        kernel = kernel.base_kernel
    for attr in ("weight_variance", "bias_variance"):
        if hasattr(kernel, attr):
            out[attr] = float(getattr(kernel, attr).detach().reshape(-1)[0])
    if isinstance(kernel, gpytorch.kernels.RBFKernel):
        ls = kernel.lengthscale.detach().reshape(-1)
        out.update({f"lengthscale_{i}": float(v) for i, v in enumerate(ls)})
    if hasattr(model.mean_module, "constant"):
        out["mean_constant"] = float(model.mean_module.constant.detach().reshape(-1)[0])
    return out


def fit_lbfgs(model: ExactGPModel, likelihood, max_iter: int) -> list[float]:
    r"""Minimise :math:`-\log p(\mathbf{y}|X)/N` with full-batch L-BFGS (strong Wolfe line
    search, :class:`~comparisons.gp.mlls.CholeskyMarginalLogLikelihood`).

    Args:
        model: the GP (float64 recommended).
        likelihood: its Gaussian likelihood.
        max_iter: L-BFGS iterations (at most ``1.25 x`` as many function evaluations).

    Returns:
        the loss at every function evaluation.

    Raises:
        FloatingPointError: the loss became non-finite.
    """
    model.train()
    likelihood.train()
    mll = CholeskyMarginalLogLikelihood(likelihood, model)
    x, y = model.train_inputs[0], model.train_targets
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6,
                            tolerance_change=1e-9, history_size=20)
    history: list[float] = []

    def closure():
        opt.zero_grad()
        loss = -mll(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite marginal-likelihood loss {float(loss)}")
        loss.backward()
        history.append(float(loss.detach()))
        return loss

    opt.step(closure)
    return history


def _training_tensors(x_train, y_train) -> tuple[torch.Tensor, torch.Tensor]:
    """``N x Q`` float64 inputs and ``N`` float64 targets (GPyTorch's shape) from an ``N x 1``
    ``y_train`` (a 1-D ``y_train`` is refused, as everywhere)."""
    x = _as_float64(x_train, "x_train")
    if x.dim() != 2:
        raise ValueError(f"x_train must have shape N x Q, got {tuple(x.shape)}")
    check_has_rows(x.shape[0], "x_train", x.shape)
    if x.shape[1] < 1:
        raise ValueError(f"x_train must have at least one input column (Q >= 1), got shape "
                         f"{tuple(x.shape)}")
    y = check_targets(_as_float64(y_train, "y_train"), "y_train",
                      num_rows=x.shape[0], num_outputs=1)[:, 0]
    return x, y


def _as_float64(value, name: str) -> torch.Tensor:
    """An array-like of numbers as a float64 tensor (the GPs here are float64; array-likes are
    converted, as documented), refusing what is not numbers (strings, objects) by name."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    raw = np.asarray(value)
    if raw.dtype.kind in "bcSU":
        raise ValueError(f"{name} must be an array of real numbers, got dtype {raw.dtype} "
                         f"(bools, complex numbers and strings are not real numbers)")
    try:
        arr = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers, got "
                         f"{type(value).__name__} of dtype {raw.dtype}") from None
    return torch.as_tensor(arr)


def _new_likelihood() -> gpytorch.likelihoods.GaussianLikelihood:
    return gpytorch.likelihoods.GaussianLikelihood(
        noise_constraint=GreaterThan(_MIN_NOISE)).double()


def _prior_gp(method: str, x: torch.Tensor, y: torch.Tensor, prior: dict[str, float] | None,
              num_features: int, seed: int) -> GPFit:
    """The GP of the prior methods: fixed float64 hyper-parameters, zero mean, no fitting."""
    if prior is None:
        raise ValueError(f"method {method!r} needs prior= (weight_variance, bias_variance, "
                         f"outputscale, noise), e.g. from dropout_prior_gp_hyperparameters")
    missing = [k for k in PRIOR_KEYS if k not in prior]
    if missing:
        raise ValueError(f"prior lacks {missing}; got keys {sorted(prior)}")
    name = "arccos1" if method == "gp_arccos1_prior" else "random-features"
    values = {k: check_positive(prior[k], f"prior[{k!r}]") for k in PRIOR_KEYS}
    kernel = make_kernel(name, x.shape[1], values["weight_variance"], values["bias_variance"],
                         outputscale=values["outputscale"],
                         num_features=check_positive_int(num_features, "num_features"),
                         generator=torch.Generator().manual_seed(int(seed))).double()
    # (Re)set as float64 tensors: the setters turn a Python float into a float32 tensor
    # first, which would round e.g. an outputscale of 965057.946 to 965057.938.
    f64 = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    kernel.outputscale = f64["outputscale"]
    kernel.base_kernel.weight_variance = f64["weight_variance"]
    kernel.base_kernel.bias_variance = f64["bias_variance"]
    likelihood = _new_likelihood()
    likelihood.noise = f64["noise"]
    model = ExactGPModel(x, y, likelihood, kernel, mean="zero").double()
    return GPFit(method, model, likelihood, gp_hyperparameters(model, likelihood))


def _fit_subset(x: torch.Tensor, y: torch.Tensor, max_fit_size: int | None, seed: int):
    """A seeded random subset of ``max_fit_size`` rows (in their original order) when ``N`` is
    larger, else ``(x, y)`` themselves."""
    n = x.shape[0]
    if max_fit_size is None or n <= check_positive_int(max_fit_size, "max_fit_size"):
        return x, y
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    idx = idx[:max_fit_size].sort().values
    return x[idx], y[idx]


def _initial_fitted_gp(method: str, x: torch.Tensor, y: torch.Tensor):
    """A fitted method's GP at its initial values: outputscale 1, noise 0.1, arc-cosine variances
    1 or RBF length-scales 1 (one per input), constant mean 0."""
    q = x.shape[1]
    if method == "gp_arccos1":
        kernel = make_kernel("arccos1", q, 1.0, 1.0, outputscale=1.0)
    else:
        kernel = make_kernel("se", q, lengthscale=1.0, outputscale=1.0, ard_num_dims=q)
    likelihood = _new_likelihood()
    likelihood.noise = torch.tensor(0.1, dtype=torch.float64)
    return (ExactGPModel(x, y, likelihood, kernel.double(), mean="constant").double(),
            likelihood)


def _fitted_gp(method: str, x: torch.Tensor, y: torch.Tensor, iterations: int, lr: float,
               optimizer: str, seed: int, max_fit_size: int | None) -> GPFit:
    """Fit a marginal-likelihood method (L-BFGS, falling back to Adam, or Adam) on ``x, y`` or a
    subset of them, then condition on all of them."""
    iterations = check_positive_int(iterations, "iterations")
    lr = check_positive(lr, "lr")
    x_fit, y_fit = _fit_subset(x, y, max_fit_size, seed)
    model, likelihood = _initial_fitted_gp(method, x_fit, y_fit)
    t0 = time.perf_counter()
    fallback = 0.0
    with exact_cholesky():
        if optimizer == "lbfgs":
            try:
                losses = fit_lbfgs(model, likelihood, iterations)
            except (FloatingPointError, NotPSDError, NanError, GPNotPSDError):
                fallback = 1.0
                model, likelihood = _initial_fitted_gp(method, x_fit, y_fit)
        if optimizer == "adam" or fallback:
            losses = fit_exact_gp(model, likelihood, num_iters=iterations, lr=lr)
    if x_fit is not x:
        model.set_train_data(x, y, strict=False)  # condition on all N points
    hyper = gp_hyperparameters(model, likelihood)
    hyper.update(final_loss=losses[-1], evaluations=float(len(losses)),
                 fit_subset_size=float(x_fit.shape[0]))
    if optimizer == "lbfgs":
        hyper["optimizer_fallback"] = fallback
    return GPFit(method, model, likelihood, hyper, losses, time.perf_counter() - t0)


def fit_gp(method: str, x_train, y_train, *, iterations: int = 200, lr: float = 0.1,
           optimizer: str = "lbfgs", prior: dict[str, float] | None = None,
           num_features: int = 50, seed: int = 0, max_fit_size: int | None = None) -> GPFit:
    r"""Build and (for the fitted methods) train one exact GP on standardised data, float64.

    Fitting maximises the exact log marginal likelihood (Cholesky at every size,
    :func:`exact_cholesky`) over the kernel's variances / length-scales, the noise and the
    constant mean (see the module docstring).

    Args:
        method: ``"gp_arccos1"`` / ``"gp_se"`` (fitted) or ``"gp_arccos1_prior"`` /
            ``"gp_rf_prior"`` (fixed hyper-parameters ``prior``, no fitting).
        x_train: ``N x Q`` standardised inputs (array-like).
        y_train: ``N x 1`` standardised targets (a 1-D ``y_train`` is refused, as everywhere).
        iterations: L-BFGS iterations (at most ``1.25 x`` as many function evaluations) or
            Adam steps.
        lr: Adam learning rate (``optimizer="adam"`` only).
        optimizer: ``"lbfgs"`` (default; converges in 20-150 evaluations on the UCI sets, where
            200 Adam steps at ``lr=0.05`` are not converged) or ``"adam"``
            (:func:`fit_exact_gp`). If L-BFGS fails (non-finite loss or a non-positive-definite
            matrix at an extreme step), the GP is re-initialised and fitted with Adam (``lr``,
            ``iterations`` steps); ``hyperparameters["optimizer_fallback"]`` is then 1.
        prior: for the prior methods, ``weight_variance``, ``bias_variance``, ``outputscale``
            and ``noise`` (e.g. from
            :func:`comparisons.gp.priors.dropout_prior_gp_hyperparameters`).
        num_features: random features of ``gp_rf_prior``.
        seed: seed of the random features and of the fitting subset.
        max_fit_size: fitted methods with more than this many training points fit their
            hyper-parameters on a random subset of ``max_fit_size`` points (seeded by ``seed``)
            and then condition EXACTLY on all ``N`` points: the posterior is exact given the
            hyper-parameters, only their ML-II estimate uses the subset
            (``hyperparameters["fit_subset_size"]``). ``None``: fit on all points.

    Initial values of the fitted methods: outputscale 1, noise 0.1, arc-cosine variances 1,
    RBF length-scales 1 (one per input), constant mean 0. Cost: one Cholesky of the ``N x N``
    matrix plus its backward pass per evaluation, :math:`O(N^3)`.

    Returns:
        :class:`GPFit` (``hyperparameters`` also hold ``final_loss``, ``evaluations`` and
        ``fit_subset_size`` for fitted methods).

    Example:
        >>> x, y = np.random.default_rng(0).normal(size=(30, 2)), np.zeros((30, 1))
        >>> fit = fit_gp("gp_se", x, y, iterations=3)
        >>> sorted(fit.hyperparameters)[:4]
        ['evaluations', 'final_loss', 'fit_subset_size', 'lengthscale_0']
    """
    if method not in GP_METHODS:
        raise ValueError(f"method must be one of {list(GP_METHODS)}, got {method!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    x, y = _training_tensors(x_train, y_train)
    seed = check_int(seed, "seed")
    if method in PRIOR_GP_METHODS:
        return _prior_gp(method, x, y, prior, num_features, seed)
    return _fitted_gp(method, x, y, iterations, lr, optimizer, seed, max_fit_size)
