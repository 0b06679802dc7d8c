"""Fixtures of the converter tests: two short NUTS chains and an exact GP (one per module)."""

from __future__ import annotations

import warnings

import gpytorch
import pyro
import pytest
from pyro.infer import MCMC

from comparisons.gp.models import ExactGPModel, make_kernel
from comparisons.reference.nuts import RecordingNUTS
from tests.common import toy_regression
from vi_dropout import Architecture, BayesianMLP


@pytest.fixture(scope="module")
def tiny_mcmc():
    """Two short NUTS chains on a 1-3-1 BayesianMLP (RecordingNUTS kernel), shared by tests."""
    with pytest.MonkeyPatch.context() as mp:
        # force Pyro's sequential multi-chain sampler (it goes parallel only with > 2 CPUs)
        mp.setattr("pyro.infer.mcmc.api.mp.cpu_count", lambda: 1)
        x, y = toy_regression(15, 1, seed=2)
        model = BayesianMLP(Architecture((1, 3, 1), "tanh"), prior_length_scale=1.0, tau=2.0)
        pyro.set_rng_seed(0)
        kernel = RecordingNUTS(model, max_tree_depth=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Chains will be drawn sequentially"
            mcmc = MCMC(kernel, num_samples=30, warmup_steps=20, num_chains=2,
                        disable_progbar=True)
            mcmc.run(x, y)
    return x, y, model, mcmc


@pytest.fixture(scope="module")
def gp_setup():
    """An exact GP with fixed hyper-parameters (no fitting needed here) and test data."""
    x, y = toy_regression(40, 2, seed=5)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.3
    gp = ExactGPModel(x, y.squeeze(-1), lik, make_kernel("arccos1", 2, outputscale=1.3)).double()
    xs, ys = toy_regression(15, 2, seed=6)
    return gp, lik, xs, ys  # test targets N x 1, as for every converter
