"""Exact Gaussian processes: the GPyTorch model, the Cholesky marginal likelihood, the fits and the
map from a dropout network's prior to GP hyper-parameters."""

from __future__ import annotations

from .mlls import (  # noqa: F401
    CholeskyMarginalLogLikelihood,
    gaussian_log_density,
)
from .models import (  # noqa: F401
    KERNEL_NAMES,
    MLL_SOLVERS,
    ExactGPModel,
    GPNotPSDError,
    dropout_prior_hyperparameters,
    fit_exact_gp,
    gaussian_test_loglik,
    gp_predict,
    make_kernel,
    make_mll,
)

__all__ = [
    "CholeskyMarginalLogLikelihood",
    "gaussian_log_density",
    "ExactGPModel",
    "GPNotPSDError",
    "KERNEL_NAMES",
    "MLL_SOLVERS",
    "dropout_prior_hyperparameters",
    "fit_exact_gp",
    "gaussian_test_loglik",
    "gp_predict",
    "make_kernel",
    "make_mll",
]
