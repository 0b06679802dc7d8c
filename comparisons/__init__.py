"""Comparisons of MC dropout with exact Gaussian processes, reference posteriors and the UCI
benchmarks.

Subpackages (imported on first use, so ``import comparisons`` stays light)::

    kernels         ArcCosineKernel, NNGPKernel, RandomFeatureKernel
    gp              ExactGPModel, CholeskyMarginalLogLikelihood, GP fits, dropout prior -> GP
    datasets        UCI splits (packaged), toy1d, digits / MNIST, Mauna Loa CO2
    networks        the dropout LeNet
    reference       NUTS reference posteriors
    inference_data  ArviZ DataTree for every method, checked LOO
    metrics         Gaussian log-likelihood, predictive distances, calibration
    protocols       the MC dropout UCI protocol, exact GPs on the same splits
    training        resumable training of one dropout network: checkpoints, stopping rule
    experiments     gp_vs_dropout, diagnose, pitfalls, mauna_loa, rotated_digit
    report          tables, plots, one style per method
    runner          cells, executors, the resumable results store
    cli             ``python -m comparisons``

Example:
    >>> import comparisons
    >>> comparisons.kernels.ArcCosineKernel(order=1).order
    1
"""

from __future__ import annotations

import importlib

SUBPACKAGES = (
    "kernels", "gp", "datasets", "networks", "reference", "inference_data", "metrics",
    "protocols", "training", "experiments", "report", "runner", "cli",
)

__all__ = list(SUBPACKAGES)


def __getattr__(name: str):
    if name in SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(SUBPACKAGES))
