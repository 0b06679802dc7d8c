"""Exact Gaussian processes: the GPyTorch model and kernel factory (``models``), the Cholesky
marginal likelihood (``mlls``), fitting and prediction with one Cholesky rule (``fit``) and the map
from a dropout network's prior to GP hyper-parameters (``priors``)."""

from __future__ import annotations

from comparisons.gp.fit import (
    FITTED_GP_METHODS,
    GP_METHODS,
    MAX_CHOLESKY_SIZE,
    MLL_SOLVERS,
    OPTIMIZERS,
    PRIOR_GP_METHODS,
    GPFit,
    exact_cholesky,
    explain_not_psd,
    fit_exact_gp,
    fit_gp,
    fit_lbfgs,
    gp_hyperparameters,
    gp_predict,
    make_mll,
    random_feature_posterior,
)
from comparisons.gp.mlls import (
    CholeskyMarginalLogLikelihood,
    gaussian_log_density,
)
from comparisons.gp.models import (
    KERNEL_NAMES,
    ExactGPModel,
    GPNotPSDError,
    make_kernel,
)
from comparisons.gp.priors import (
    dropout_prior_gp_hyperparameters,
    dropout_prior_hyperparameters,
)

__all__ = [
    "ExactGPModel",
    "GPNotPSDError",
    "KERNEL_NAMES",
    "make_kernel",
    "CholeskyMarginalLogLikelihood",
    "gaussian_log_density",
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
    "dropout_prior_hyperparameters",
    "dropout_prior_gp_hyperparameters",
]
