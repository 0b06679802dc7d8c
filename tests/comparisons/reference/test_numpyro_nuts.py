"""The NumPyro backend: its JAX potential is the torch one (value and gradient to 1e-10 in
float64), its draws of a conjugate linear model match the exact posterior within Monte Carlo
error, and it shares run_nuts' cache, statistics and InferenceData."""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest
import torch

from comparisons.reference.numpyro_nuts import bnn_potential_jax, require_jax
from comparisons.reference.nuts import bnn_potential, run_nuts
from vi_dropout import Architecture

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _random_params(arch: Architecture, g: torch.Generator) -> dict[str, torch.Tensor]:
    params = {}
    for i, (o, q) in enumerate(arch.layer_shapes):
        params[f"layers.{i}.weight"] = torch.randn(o, q, generator=g, dtype=torch.float64)
        params[f"layers.{i}.bias"] = torch.randn(o, generator=g, dtype=torch.float64)
    return params


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "erf", "identity"])
def test_jax_potential_and_gradient_equal_the_torch_ones(activation):
    # the check: both log densities and their gradients agree to 1e-10 (float64) at
    # random points. U is O(100) here, so float64 rounding is ~1e-13.
    require_jax()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(11, 3, generator=g, dtype=torch.float64)
    y = torch.randn(11, 2, generator=g, dtype=torch.float64)
    arch = Architecture((3, 5, 4, 2), activation)
    pot_torch = bnn_potential(x, y, arch, 0.7, 3.0)
    pot_jax = bnn_potential_jax(x.numpy(), y.numpy(), arch, 0.7, 3.0)
    grad_jax = jax.jit(jax.value_and_grad(pot_jax))
    for _ in range(3):
        params = {k: v.requires_grad_() for k, v in _random_params(arch, g).items()}
        u_torch = pot_torch(params)
        grads_torch = torch.autograd.grad(u_torch, list(params.values()))
        u_jax, grads_jax = grad_jax({k: jax.numpy.asarray(v.detach().numpy())
                                     for k, v in params.items()})
        assert float(u_jax) == pytest.approx(float(u_torch.detach()), abs=1e-10)
        for name, gt in zip(params, grads_torch):
            np.testing.assert_allclose(np.asarray(grads_jax[name]), gt.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dense_mass", [False, True])
def test_numpyro_draws_match_the_exact_posterior_of_a_linear_model(dense_mass):
    # widths (2, 1): Bayesian linear regression, posterior N(A^-1 tau X'y, A^-1) with
    # A = l^2 I + tau X'X (X with a ones column for the bias). With 2 x 400 draws (ESS >= 300 per
    # coordinate, computed) the mean is within 5 Monte Carlo SE and each variance within 30%
    # (the variance estimate's relative sd is about sqrt(2/ESS) <= 0.082; 30% > 3.5 of it).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    y = x @ np.array([[1.0], [-0.5]]) + 0.3 + 0.5 * rng.normal(size=(30, 1))
    length_scale, tau = 1.5, 4.0
    res = run_nuts(x, y, hidden=(), activation="identity", prior_length_scale=length_scale, tau=tau,
                   num_chains=2, num_warmup=300, num_samples=400, num_processes=1,
                   backend="numpyro", seed=1, dense_mass=dense_mass)
    assert res.settings.get("dense_mass", False) is dense_mass
    design = np.hstack([x, np.ones((30, 1))])
    precision = length_scale**2 * np.eye(3) + tau * design.T @ design
    cov = np.linalg.inv(precision)
    mean = cov @ (tau * design.T @ y[:, 0])
    draws = np.concatenate([res.samples["layers.0.weight"][..., 0, :],
                            res.samples["layers.0.bias"]], axis=-1)  # chain x draw x 3
    import arviz as az

    ess = np.array([az.ess(draws[..., j]) for j in range(3)])
    assert ess.min() >= 300
    flat = draws.reshape(-1, 3)
    mcse = np.sqrt(np.diag(cov) / ess)
    assert np.all(np.abs(flat.mean(0) - mean) < 5 * mcse)
    np.testing.assert_allclose(flat.var(0), np.diag(cov), rtol=0.3)
    assert not res.sample_stats["diverging"].any()


def test_numpyro_backend_shares_the_cache_statistics_and_inference_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-2, 2, 20, dtype=torch.float64)[:, None]
    y = torch.sin(2 * x) + 0.1 * torch.randn(20, 1, generator=g, dtype=torch.float64)
    kw = dict(hidden=(3,), activation="tanh", prior_length_scale=1.0, tau=1.0, num_warmup=60,
              num_samples=50, max_tree_depth=4, seed=0, backend="numpyro", cache_dir=tmp_path)
    first = run_nuts(x, y, num_chains=2, num_processes=1, **kw)
    assert first.settings["backend"] == "numpyro" and "numpyro" in first.settings
    assert first.samples["layers.0.weight"].shape == (2, 50, 3, 1)
    stats = first.sample_stats
    assert stats["n_steps"].min() >= 1 and stats["n_steps"].max() <= 2**4 - 1
    np.testing.assert_array_equal(stats["tree_depth"],
                                  np.ceil(np.log2(stats["n_steps"] + 1.0)).astype(int))
    assert stats["tree_depth"].max() <= 4 and (stats["step_size"] > 0).all()
    assert (first.warmup_grad_evals >= 60).all()
    # lp is -U of the returned draw (the torch potential: same target)
    pot = bnn_potential(x, y, Architecture((1, 3, 1), "tanh"), 1.0, 1.0)
    for c, d in [(0, 0), (1, 49)]:
        params = {k: torch.as_tensor(v[c, d]) for k, v in first.samples.items()}
        assert stats["lp"][c, d] == pytest.approx(-float(pot(params)), abs=1e-9)
    idata = first.to_datatree()
    assert idata.posterior["f"].shape == (2, 50, 20)
    assert idata.sample_stats["diverging"].dtype == bool
    # the Pyro backend starts from the same initial values but is another cache entry
    second = run_nuts(x, y, num_chains=2, num_processes=1, **kw)
    assert second.from_cache == (True, True)
    np.testing.assert_array_equal(second.samples["layers.1.bias"], first.samples["layers.1.bias"])
    pyro_run = run_nuts(x, y, num_chains=1, num_processes=1,
                        **dict(kw, backend="potential", num_warmup=5, num_samples=5))
    assert pyro_run.cache_files[0] != first.cache_files[0]
    # a dense mass matrix is another cache entry and other draws; the default adds no key
    assert "dense_mass" not in first.settings
    dense = run_nuts(x, y, num_chains=1, num_processes=1, **dict(kw, dense_mass=True))
    assert dense.settings["dense_mass"] is True and dense.from_cache == (False,)
    assert dense.cache_files[0] != first.cache_files[0]
    assert not np.array_equal(dense.samples["layers.1.bias"][0], first.samples["layers.1.bias"][0])


def test_missing_jax_is_an_import_error_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpyro", None)
    with pytest.raises(ImportError, match=r"needs jax and numpyro .*\[jax\]"):
        require_jax()
    x, y = np.zeros((3, 1)), np.zeros((3, 1))
    with pytest.raises(ImportError, match="pip install"):
        run_nuts(x, y, hidden=(2,), num_processes=1, backend="numpyro")
