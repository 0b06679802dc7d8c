"""The Laplace approximation on UCI (:mod:`comparisons.protocols.uci_laplace`): the last-layer
GLM predictive variance and log marginal likelihood against Bayesian linear regression on the
hidden features, a tiny cell on yacht for both methods (finite records, the test metrics against a
direct computation on the original scale), the settings checks and the message when laplace-torch
is missing; the KFAC variant's GLM variance against J P^-1 J^T with its dense precision, whose
blocks are the exact GGN blocks for one training point."""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pytest
import torch

from comparisons.datasets.uci import load_uci, standardize
from comparisons.protocols import uci_laplace
from comparisons.protocols.uci import protocol_seed
from comparisons.protocols.uci_laplace import (
    LAPLACE_METHODS,
    MISSING_LAPLACE,
    LaplaceUCISettings,
    fit_laplace,
    laplace_group_key,
    laplace_predictive,
    laplace_uci_cells,
    run_laplace_uci_cell,
    train_map_network,
)
from comparisons.runner.store import validate_records

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(epochs_multiplier=0.1, marglik_steps=300)
METRICS = {"rmse", "test_ll", "coverage_95", "learned_prior_precision", "learned_noise_sd",
           "map_noise_sd", "log_marglik", "marglik_steps", "steps", "laplace_time_s",
           "wall_time_s"}


def _metrics(records):
    return {r["metric"]: r["value"] for r in records}


def _toy(n=40, q=3, hidden=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, q, generator=gen, dtype=torch.float64)
    y = torch.sin(x[:, :1]) + 0.3 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    net, noise_sd = train_map_network(x, y, hidden, epochs=30,
                                      config=LaplaceUCISettings(batch_size=16, lr=1e-2), seed=seed)
    return x, y, net, noise_sd


def _features(net, x):
    """The last layer's inputs and a column of ones (its bias): ``N x (H + 1)``."""
    with torch.no_grad():
        phi = net[1](net[0](x))
    return torch.cat([phi, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)


@pytest.mark.parametrize("marglik_steps", [0, 200])
def test_last_layer_laplace_is_bayesian_linear_regression(marglik_steps):
    # last layer, full Hessian, Gaussian likelihood: the posterior over the last layer's
    # weights and bias is exactly Bayesian linear regression on the hidden features,
    # Sigma = (Phi^T Phi / sigma^2 + delta I)^-1; GLM variance phi(x)^T Sigma phi(x)
    x, y, net, noise_sd = _toy()
    config = LaplaceUCISettings(marglik_steps=marglik_steps)
    la, steps = fit_laplace(net, x, y, "laplace", prior_precision=0.7, noise_sd=noise_sd,
                            config=config)
    assert steps <= marglik_steps
    delta, sigma = float(la.prior_precision.reshape(-1)[0]), float(la.sigma_noise)
    if marglik_steps == 0:
        assert (delta, sigma) == (pytest.approx(0.7), pytest.approx(noise_sd))
    else:
        assert delta != pytest.approx(0.7)
    x_new = torch.randn(25, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mean, var = laplace_predictive(la, x_new, batch_size=7)  # several predictive batches
    phi, phi_new = _features(net, x), _features(net, x_new)
    precision = phi.T @ phi / sigma**2 + delta * torch.eye(phi.shape[1], dtype=torch.float64)
    direct = (phi_new @ torch.linalg.solve(precision, phi_new.T)).diagonal()
    torch.testing.assert_close(var, direct, rtol=1e-8, atol=0.0)
    with torch.no_grad():
        torch.testing.assert_close(mean, net(x_new)[:, 0], rtol=1e-12, atol=1e-12)
    # its log marginal likelihood (at the MAP weights theta, P = H + 1 parameters)
    with torch.no_grad():
        theta = torch.cat([net[2].weight.reshape(-1), net[2].bias])
        sse = (y - net(x)).square().sum()
        n, p = len(x), phi.shape[1]
        direct_lml = (-n * math.log(sigma * math.sqrt(2 * math.pi)) - sse / (2 * sigma**2)
                      - 0.5 * delta * theta.square().sum() - 0.5 * torch.logdet(precision)
                      + 0.5 * p * math.log(delta))
        torch.testing.assert_close(la.log_marginal_likelihood(), direct_lml, rtol=1e-10, atol=0.0)


@pytest.mark.parametrize("method", LAPLACE_METHODS)
def test_marginal_likelihood_steps_reach_its_maximum(method):
    # after the Adam steps both gradients vanish: a small step either way lowers the evidence.
    # For KFAC this needs the fix of laplace-torch 0.3's float scaling of the Kronecker factors
    # (without it the noise stopped at 0.37 where the evidence still rose towards 0.51)
    x, y, net, noise_sd = _toy(seed=1)
    la, steps = fit_laplace(net, x, y, method, prior_precision=1e-4, noise_sd=noise_sd,
                            config=LaplaceUCISettings(marglik_steps=2000))
    assert steps < 2000  # stopped by the gradient tolerance
    assert uci_laplace.import_laplace().utils.matrix.pow is math.pow  # restored
    delta, sigma = la.prior_precision.reshape(-1)[0].clone(), la.sigma_noise.clone()
    with torch.no_grad():
        best = float(la.log_marginal_likelihood(delta, sigma))
        for d, s in ((1.01, 1.0), (0.99, 1.0), (1.0, 1.01), (1.0, 0.99)):
            assert float(la.log_marginal_likelihood(delta * d, sigma * s)) < best


def test_tiny_yacht_cells_give_finite_records_and_the_direct_metrics():
    # both methods on one yacht split: finite records; they share the MAP network (same RMSE);
    # the test LL and coverage equal a direct computation on the original scale
    records = {}
    for method in LAPLACE_METHODS:
        cell = laplace_uci_cells(["yacht"], "1", LaplaceUCISettings(**TINY), method)[0]
        recs = run_laplace_uci_cell(cell)
        validate_records(recs)
        assert {(r["dataset"], r["method"], r["split"], r["epochs_multiplier"]) for r in recs} \
            == {("yacht", method, 1, 0.1)}
        records[method] = _metrics(recs)
        assert set(records[method]) == METRICS
        assert all(math.isfinite(v) for v in records[method].values())
        assert records[method]["learned_prior_precision"] > 0
    last, kfac = records["laplace"], records["laplace_kfac"]
    assert kfac["rmse"] == pytest.approx(last["rmse"], rel=1e-12)
    assert kfac["map_noise_sd"] == pytest.approx(last["map_noise_sd"], rel=1e-12)

    # the same steps by hand: Gaussian N(s mu + m, s^2 (var_f + sigma^2)) per test point
    config = LaplaceUCISettings(**TINY)
    raw = load_uci("yacht", 1)
    std = standardize(raw)
    x, y, x_test = (torch.tensor(a, dtype=torch.float64)
                    for a in (std.x_train, std.y_train, std.x_test))
    net, map_sd = train_map_network(x, y, raw.n_hidden, epochs=4, config=config,
                                    seed=protocol_seed(config, 1) + uci_laplace.SEED_OFFSET)
    la, _ = fit_laplace(net, x, y, "laplace", prior_precision=1e-4, noise_sd=map_sd,
                        config=config)
    mean, f_var = (t.numpy() for t in laplace_predictive(la, x_test))
    mu = std.y_mean + std.y_std * mean
    var = std.y_std**2 * (f_var + float(la.sigma_noise) ** 2)
    y_test = raw.y_test[:, 0]
    ll = np.mean(-0.5 * np.log(2 * np.pi * var) - (y_test - mu) ** 2 / (2 * var))
    assert last["test_ll"] == pytest.approx(ll, rel=1e-9)
    assert last["rmse"] == pytest.approx(np.sqrt(np.mean((y_test - mu) ** 2)), rel=1e-9)
    assert last["coverage_95"] == pytest.approx(
        np.mean(np.abs(y_test - mu) <= 1.959964 * np.sqrt(var)))
    assert last["learned_noise_sd"] == pytest.approx(float(la.sigma_noise) * std.y_std, rel=1e-9)


def test_settings_and_cells_are_checked():
    with pytest.raises(ValueError, match="method must be one of"):
        laplace_uci_cells(["yacht"], "0", LaplaceUCISettings(), "mfvi")
    with pytest.raises(ValueError, match="marglik_steps"):
        LaplaceUCISettings(marglik_steps=-1)
    with pytest.raises(ValueError, match="epochs_multiplier"):
        LaplaceUCISettings(epochs_multiplier=0)
    cells = laplace_uci_cells(["yacht"], "0-1", LaplaceUCISettings(), "laplace_kfac")
    assert [(c.split, c.method) for c in cells] == [(0, "laplace_kfac"), (1, "laplace_kfac")]
    assert laplace_group_key(cells[0]) is None


def test_missing_laplace_torch_names_the_extra(monkeypatch):
    cell = laplace_uci_cells(["yacht"], "0", LaplaceUCISettings())[0]
    monkeypatch.setitem(sys.modules, "laplace", None)  # `import laplace` now fails
    for call in (LaplaceUCISettings, lambda: run_laplace_uci_cell(cell),
                 uci_laplace.import_laplace):
        with pytest.raises(ImportError) as info:
            call()
        assert MISSING_LAPLACE in str(info.value)
    assert MISSING_LAPLACE == ("the 'laplace' method needs laplace-torch: pip install "
                               "'.[laplace]' (or make install)")


def test_a_laplace_torch_that_does_not_import_is_explained(monkeypatch):
    # e.g. PyPI's torchvision (a CUDA build) next to the CPU torch: torchmetrics imports it
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "laplace":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ImportError, match="pip uninstall torchvision"):
        uci_laplace.import_laplace()


def _flat_jacobian(net, x):
    """``N x P``: the Jacobian of the network's output by every parameter, in laplace-torch's
    order (``net.parameters()``), by autograd on a hook-free copy."""
    clean = copy.deepcopy(net)
    params = {k: v.detach() for k, v in clean.named_parameters()}
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(clean, p, (x,))[:, 0])(params)
    return torch.cat([jac[k].reshape(len(x), -1) for k in params], dim=1)


@pytest.mark.parametrize("n_points", [1, 40])
def test_kfac_laplace_against_a_dense_computation(n_points):
    # the full network, KFAC: the GLM variance is J(x) P^-1 J(x)^T with P laplace-torch's
    # posterior precision as a dense matrix (float64 rounding); P's blocks are the Kronecker
    # factored GGN + delta I: with ONE training point and one output the factorisation is exact,
    # so every block equals the dense GGN block J_b^T J_b / sigma^2 + delta I; with 40 points
    # the first layer's weight block is an approximation (it differs), the others stay exact
    x, y, net, noise_sd = _toy()
    x, y = x[:n_points], y[:n_points]
    x_new = torch.randn(9, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    j_train, j_new = _flat_jacobian(net, x), _flat_jacobian(net, x_new)  # before laplace's hooks
    la, _ = fit_laplace(net, x, y, "laplace_kfac", prior_precision=0.7, noise_sd=noise_sd,
                        config=LaplaceUCISettings(marglik_steps=0))
    precision = la.posterior_precision.to_matrix()
    _, var = laplace_predictive(la, x_new, batch_size=4)
    direct = (j_new @ torch.linalg.solve(precision, j_new.T)).diagonal()
    torch.testing.assert_close(var, direct, rtol=1e-10, atol=0.0)
    ggn = j_train.T @ j_train / noise_sd**2
    errors, start = [], 0
    for p in net.parameters():
        block = slice(start, start + p.numel())
        dense = ggn[block, block] + 0.7 * torch.eye(p.numel(), dtype=torch.float64)
        errors.append(float((precision[block, block] - dense).abs().max() / dense.abs().max()))
        start += p.numel()
    assert start == precision.shape[0] == j_new.shape[1]
    if n_points == 1:
        assert max(errors) < 1e-12
    else:
        assert errors[0] > 1e-3 and max(errors[1:]) < 1e-12
