"""ArviZ converters: layout (groups, dims, coords), agreement with the package's own formulas
and with Pyro's log densities, lossless NetCDF round trips, and the errors on bad input."""

from __future__ import annotations

import math
import warnings

import arviz as az
import gpytorch
import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import MCMC, Predictive
from scipy.special import logsumexp

from comparisons.gp.models import ExactGPModel, make_kernel
from comparisons.inference_data.converters import (
    LOOReliabilityWarning,
    checked_loo,
    from_exact_gp,
    from_mc_dropout,
    from_nuts,
    from_svi_guide,
    weight_dims,
)
from comparisons.metrics.gaussian import gaussian_log_likelihood
from comparisons.reference.nuts import NUTSResult, RecordingNUTS
from tests.common import toy_regression
from tests.comparisons.mc_helpers import NUM_SE
from vi_dropout import Architecture, BayesianMLP, DropoutGuide
from vi_dropout.predict import mc_predict, regression_summary

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

COMMON_GROUPS = {"posterior", "posterior_predictive", "log_likelihood", "observed_data",
                 "constant_data"}


def _assert_common_layout(idata, method, n_chains, n_draws, n_obs, n_features):
    assert COMMON_GROUPS <= set(idata.groups())
    for group in COMMON_GROUPS:
        assert idata[group].attrs["method"] == method
    assert idata.posterior["f"].dims == ("chain", "draw", "obs")
    assert idata.posterior["f"].shape == (n_chains, n_draws, n_obs)
    assert idata.posterior_predictive["y"].dims == ("chain", "draw", "obs")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
    assert idata.observed_data["y"].dims == ("obs",)
    assert idata.constant_data["x"].dims == ("obs", "feature")
    assert idata.constant_data["x"].shape == (n_obs, n_features)
    np.testing.assert_array_equal(idata.posterior["obs"].values, np.arange(n_obs))


def _assert_netcdf_roundtrip(idata, path):
    """Every group, variable, dim, coordinate and dtype survives to_netcdf/from_netcdf."""
    idata.to_netcdf(str(path))
    back = az.from_netcdf(str(path))
    assert set(back.groups()) == set(idata.groups())
    for group in idata.groups():
        a, b = idata[group], back[group]
        assert set(a.data_vars) == set(b.data_vars), group
        for name in a.data_vars:
            assert a[name].dims == b[name].dims, (group, name)
            assert a[name].dtype == b[name].dtype, (group, name)
            assert np.array_equal(a[name].values, b[name].values), (group, name)
        for name in a.coords:
            assert np.array_equal(a[name].values, b[name].values), (group, name)
        assert b.attrs["method"] == a.attrs["method"]


# --------------------------------------------------------------------------- MC dropout
def _dropout_samples(T=400, N=30, seed=0):
    x, _ = toy_regression(N, 3, seed=seed)
    arch = Architecture((3, 16, 1))
    ws, bs = arch.init_params(torch.Generator().manual_seed(seed))
    s = mc_predict(x, ws, bs, keep_probs=0.9, T=T, generator=torch.Generator().manual_seed(1))
    return x, s


def test_mc_dropout_log_likelihood_is_regression_summary_pointwise():
    # logsumexp_t(log_lik) - log T is exactly the paper's per-point test log-likelihood
    # (float64; tolerance 1e-12), on the original scale with y_mean / y_std.
    x, s = _dropout_samples()
    y_orig = 5.0 + 2.5 * torch.randn(30, 1, generator=torch.Generator().manual_seed(3),
                                     dtype=torch.float64)
    idata = from_mc_dropout(s, y_orig, tau=0.7, x=x, y_mean=5.0, y_std=2.5, num_chains=4)
    _assert_common_layout(idata, "mc_dropout", 4, 100, 30, 3)
    ref = regression_summary(s, y_orig, tau=0.7, y_mean=5.0, y_std=2.5)
    ll = idata.log_likelihood["y"].values.reshape(400, 30)
    np.testing.assert_allclose(logsumexp(ll, axis=0) - math.log(400),
                               ref.log_likelihood.numpy(), rtol=0, atol=1e-12)
    # chain-major split: chain c, draw d is MC sample c * 100 + d, mapped to the original scale
    f = idata.posterior["f"].values
    np.testing.assert_array_equal(f[2, 7], 5.0 + 2.5 * s[207, :, 0].numpy())
    np.testing.assert_array_equal(idata.observed_data["y"].values, y_orig[:, 0].numpy())


def test_mc_dropout_noise_draws_have_precision_tau():
    # y - f ~ N(0, 1/tau) on the original scale: sample variance within 4 standard errors.
    s = np.zeros((4000, 5, 1))
    idata = from_mc_dropout(s, np.zeros((5, 1)), tau=4.0, y_std=2.0, seed=1)
    resid = (idata.posterior_predictive["y"] - idata.posterior["f"]).values.ravel()
    se = 0.25 * math.sqrt(2.0 / resid.size)
    assert abs(resid.var() - 0.25) < NUM_SE * se
    idata2 = from_mc_dropout(s, np.zeros((5, 1)), tau=4.0, y_std=2.0, seed=1)
    np.testing.assert_array_equal(idata2.posterior_predictive["y"].values,
                                  idata.posterior_predictive["y"].values)


def test_mc_dropout_optional_masks_weights_and_multi_output():
    rng = np.random.default_rng(0)
    T, N = 60, 7
    masks = [rng.integers(0, 2, size=(T, N, 3)).astype(np.float64),
             rng.integers(0, 2, size=(T, 8)).astype(np.float64)]
    weights = [rng.normal(size=(T, 8, 3)), rng.normal(size=(T, 2, 8))]
    biases = [rng.normal(size=(T, 8)), rng.normal(size=(T, 2))]
    idata = from_mc_dropout(rng.normal(size=(T, N, 2)), rng.normal(size=(N, 2)), tau=1.0,
                            x=rng.normal(size=(N, 3)), num_chains=3, masks=masks,
                            weights=weights, biases=biases, feature_names=["a", "b", "c"])
    post = idata.posterior
    assert post["layers.0.mask"].dims == ("chain", "draw", "obs", "layer0_in")
    assert post["layers.1.mask"].dims == ("chain", "draw", "layer1_in")
    assert post["layers.1.weight"].dims == ("chain", "draw", "layer1_out", "layer1_in")
    assert post["layers.0.bias"].shape == (3, 20, 8)
    np.testing.assert_array_equal(post["layers.1.weight"].values[1, 4], weights[1][24])
    assert post["f"].dims == ("chain", "draw", "obs", "output")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")  # joint over outputs
    assert list(idata.constant_data["feature"].values) == ["a", "b", "c"]


# -------------------------------------------------------------------------------- SVI
def _svi_setup():
    x, y = toy_regression(25, 2, seed=4)
    model = BayesianMLP(Architecture((2, 6, 1), "tanh"), prior_length_scale=1.0, tau=8.0)
    guide = DropoutGuide(model, keep_prob=0.8, scale=0.05,
                         generator=torch.Generator().manual_seed(0))
    return x, y, model, guide


def test_svi_guide_draws_dims_and_log_likelihood_match_pyro():
    x, y, model, guide = _svi_setup()
    y_mean, y_std = 1.5, 3.0
    y_orig = y_mean + y_std * y
    state = torch.get_rng_state()
    idata = from_svi_guide(model, guide, x, y_orig, num_samples=120, num_chains=2,
                           y_mean=y_mean, y_std=y_std, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    _assert_common_layout(idata, "svi_dropout_guide", 2, 60, 25, 2)
    dims, _ = weight_dims(model.architecture)
    for name, d in dims.items():
        assert idata.posterior[name].dims == ("chain", "draw", *d)
    # Pyro's own obs log density (model scale) of draw (c, d), minus the Jacobian log(y_std):
    # agreement to 1e-10 for several draws.
    for c, d in [(0, 0), (1, 59), (0, 31)]:
        params = {k: torch.as_tensor(idata.posterior[k].values[c, d]) for k in dims}
        tr = poutine.trace(poutine.condition(model, data=params)).get_trace(x, y)
        tr.compute_log_prob()
        ref = tr.nodes["obs"]["log_prob"].numpy() - math.log(y_std)
        np.testing.assert_allclose(idata.log_likelihood["y"].values[c, d], ref, rtol=0, atol=1e-10)
    # the guide's weight means: E[W] = keep_prob * M, within 4 standard errors per entry
    w = idata.posterior["layers.0.weight"].values.reshape(120, 6, 2)
    m = 0.8 * guide.weight_locs[0].detach().numpy()
    se = w.std(0) / math.sqrt(120)
    assert np.all(np.abs(w.mean(0) - m) < NUM_SE * se + 1e-12)
    again = from_svi_guide(model, guide, x, y_orig, num_samples=120, num_chains=2,
                           y_mean=y_mean, y_std=y_std, seed=7)
    np.testing.assert_array_equal(again.posterior["layers.1.weight"].values,
                                  idata.posterior["layers.1.weight"].values)


# ------------------------------------------------------------------------------- NUTS
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


def test_from_nuts_wraps_az_from_pyro_and_adds_groups(tiny_mcmc):
    x, y, model, mcmc = tiny_mcmc
    idata = from_nuts(mcmc, model, x, y)
    _assert_common_layout(idata, "hmc", 2, 30, 15, 1)
    assert idata.posterior.attrs["sampler"] == "nuts"
    assert idata.posterior["layers.0.weight"].dims == ("chain", "draw", "layer0_out", "layer0_in")
    stats = idata.sample_stats
    for name in ("diverging", "step_size", "tree_depth", "n_steps", "energy", "lp",
                 "acceptance_rate"):
        assert stats[name].dims == ("chain", "draw"), name
    assert stats["diverging"].dtype == bool
    assert int(stats["tree_depth"].max()) <= 3 and int(stats["n_steps"].min()) >= 1
    # az.from_pyro alone cannot give the log-likelihood of BayesianMLP: Predictive conditions
    # on S x out x in draws without the data plate's slot, which the model refuses.
    with pytest.warns(UserWarning, match="Could not get vectorized trace"):
        assert not hasattr(az.from_pyro(mcmc), "log_likelihood")
    # ours equals Pyro's vectorised trace with the slot restored, to 1e-10
    flat = {k: v.unsqueeze(1) for k, v in mcmc.get_samples().items()}
    site = Predictive(model, flat).get_vectorized_trace(x, y).nodes["obs"]
    ref = site["fn"].log_prob(site["value"]).reshape(2, 30, 15).numpy()
    np.testing.assert_allclose(idata.log_likelihood["y"].values, ref, rtol=0, atol=1e-10)
    # the recorded lp is the log joint at the returned draw
    draws = mcmc.get_samples(group_by_chain=True)
    params = {k: v[1, 5] for k, v in draws.items()}
    tr = poutine.trace(poutine.condition(model, data=params)).get_trace(x, y)
    assert float(stats["lp"][1, 5]) == pytest.approx(float(tr.log_prob_sum()), abs=1e-9)


def _fake_nuts_result(n_chains=3, n_draws=40, seed=0):
    rng = np.random.default_rng(seed)
    arch = Architecture((2, 4, 1))
    samples = {}
    for i, (o, q) in enumerate(arch.layer_shapes):
        samples[f"layers.{i}.weight"] = rng.normal(size=(n_chains, n_draws, o, q))
        samples[f"layers.{i}.bias"] = rng.normal(size=(n_chains, n_draws, o))
    stats = {"diverging": rng.random((n_chains, n_draws)) < 0.05,
             "tree_depth": rng.integers(1, 6, size=(n_chains, n_draws)),
             "energy": rng.normal(size=(n_chains, n_draws))}
    x = rng.normal(size=(9, 2))
    y = rng.normal(size=(9, 1))
    settings = {"widths": [2, 4, 1], "activation": "relu", "prior_length_scale": 1.0,
                "tau": 3.0, "num_warmup": 10, "seed": 0}
    return NUTSResult(samples, stats, x, y, settings, wall_time_s=2.0,
                      chain_wall_times_s=np.ones(n_chains), chain_sampling_times_s=np.ones(n_chains),
                      warmup_grad_evals=np.ones(n_chains), from_cache=(False,) * n_chains)


def test_from_nuts_result_defaults_to_its_data_and_settings():
    result = _fake_nuts_result()
    idata = result.to_inference_data(y_mean=2.0, y_std=0.5)
    _assert_common_layout(idata, "hmc", 3, 40, 9, 2)
    assert idata.sample_stats.attrs["sampler"] == "nuts"
    assert idata.sample_stats["tree_depth"].dims == ("chain", "draw")
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values,
                                  result.sample_stats["diverging"])
    np.testing.assert_array_equal(idata.observed_data["y"].values, 2.0 + 0.5 * result.y[:, 0])
    assert idata.posterior.attrs["tau_model_scale"] == 3.0
    assert idata.posterior.attrs["wall_time_s"] == 2.0


# ---------------------------------------------------------------------------- exact GP
@pytest.fixture(scope="module")
def gp_setup():
    """An exact GP with fixed hyper-parameters (no fitting needed here) and test data."""
    x, y = toy_regression(40, 2, seed=5)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.3
    gp = ExactGPModel(x, y.squeeze(-1), lik, make_kernel("arccos1", 2, outputscale=1.3)).double()
    xs, ys = toy_regression(15, 2, seed=6)
    return gp, lik, xs, ys  # test targets N x 1, as for every converter


def test_exact_gp_draws_reproduce_the_gaussian_predictive_density(gp_setup):
    gp, lik, xs, ys = gp_setup
    y_mean, y_std = -1.0, 2.0
    S = 4000
    idata = from_exact_gp(gp, lik, xs, y_mean + y_std * ys, num_draws=S, num_chains=2,
                          y_mean=y_mean, y_std=y_std, seed=3)
    _assert_common_layout(idata, "exact_gp", 2, 2000, 15, 2)
    const = idata.constant_data
    np.testing.assert_allclose(const["noise_var"].values,
                               y_std**2 * lik.noise.item(), rtol=1e-12)
    # MC estimate of the log predictive density vs the exact Gaussian marginal, per point,
    # within 4 delta-method standard errors of the estimator.
    ll = idata.log_likelihood["y"].values.reshape(S, -1)
    est = logsumexp(ll, axis=0) - math.log(S)
    w = np.exp(ll - ll.max(0))
    se = w.std(0) / w.mean(0) / math.sqrt(S)
    mean = torch.as_tensor(const["f_mean"].values)
    var = torch.as_tensor(const["f_var"].values + const["noise_var"].values)
    exact = gaussian_log_likelihood(mean, var, y_mean + y_std * ys[:, 0]).numpy()
    assert np.all(np.abs(est - exact) < NUM_SE * se + 1e-12)
    assert se.max() < 0.05  # the check is not vacuous (S = 4000 draws)
    f = idata.posterior["f"].values.reshape(S, -1)
    f_se = np.sqrt(const["f_var"].values / S)
    assert np.all(np.abs(f.mean(0) - const["f_mean"].values) < NUM_SE * f_se)


# -------------------------------------------------------------------------- NetCDF I/O
@pytest.mark.parametrize("method", ["mc_dropout", "svi", "nuts_result", "nuts_mcmc", "exact_gp"])
def test_netcdf_roundtrip_is_lossless(method, tmp_path, request):
    if method == "mc_dropout":
        x, s = _dropout_samples(T=80, N=12)
        idata = from_mc_dropout(s, torch.zeros(12, 1), tau=2.0, x=x, num_chains=2,
                                masks=[np.ones((80, 12, 3))], feature_names=["u", "v", "w"])
    elif method == "svi":
        x, y, model, guide = _svi_setup()
        idata = from_svi_guide(model, guide, x, y, num_samples=50)
    elif method == "nuts_result":
        idata = from_nuts(_fake_nuts_result())
    elif method == "nuts_mcmc":
        x, y, model, mcmc = request.getfixturevalue("tiny_mcmc")
        idata = from_nuts(mcmc, model, x, y)
    else:
        gp, lik, xs, ys = request.getfixturevalue("gp_setup")
        idata = from_exact_gp(gp, lik, xs, ys, num_draws=60)
    _assert_netcdf_roundtrip(idata, tmp_path / f"{method}.nc")


# --------------------------------------------------------------------------- bad input
def test_non_finite_draws_are_rejected_with_method_and_count(gp_setup):
    s = np.zeros((20, 4, 1))
    s[3, 1, 0] = np.nan
    s[5, 2, 0] = np.inf
    s[7, 0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"from_mc_dropout: samples has 3 non-finite"):
        from_mc_dropout(s, np.zeros((4, 1)), tau=1.0)
    result = _fake_nuts_result()
    result.samples["layers.1.bias"][0, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"from_nuts: draws of layers.1.bias has 1 non-finite"):
        from_nuts(result)
    gp, lik, xs, ys = gp_setup
    bad_y = ys.clone()
    bad_y[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"from_exact_gp: y_test has 1 non-finite"):
        from_exact_gp(gp, lik, xs, bad_y, num_draws=10)


def test_mismatched_observation_counts_and_chains_are_rejected():
    with pytest.raises(ValueError, match=r"from_mc_dropout: samples have 5 observation"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((6, 1)), tau=1.0)
    with pytest.raises(ValueError, match=r"from_mc_dropout: x has 4 observation\(s\) but y has 5"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((5, 1)), tau=1.0, x=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"10 draws of samples cannot be split into 3 chains"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((5, 1)), tau=1.0, num_chains=3)
    x, y, model, guide = _svi_setup()
    with pytest.raises(ValueError, match=r"from_svi_guide: x has 25 observation\(s\) but y has 24"):
        from_svi_guide(model, guide, x, y[:24], num_samples=10)
    with pytest.raises(ValueError, match=r"from_nuts: x has 9 observation\(s\) but y has 3"):
        from_nuts(_fake_nuts_result(), y=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"tau must be a finite number > 0"):
        from_mc_dropout(np.zeros((10, 5, 1)), np.zeros((5, 1)), tau=0.0)


# --------------------------------------------------------------------------------- LOO
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_checked_loo_refuses_too_few_draws_and_surfaces_pareto_warnings():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(20, 1))
    few = from_mc_dropout(rng.normal(size=(40, 20, 1)), y, tau=1.0)
    with pytest.raises(ValueError, match=r"checked_loo \(mc_dropout\): PSIS-LOO needs at least "
                                         r"100 draws.*got 40"):
        checked_loo(few)
    # a well-behaved case: wide noise, narrow latent draws -> small Pareto k, no warning
    good = from_mc_dropout(0.05 * rng.normal(size=(2000, 20, 1)), y, tau=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = checked_loo(good)
    assert np.isfinite(float(res["elpd_loo"])) and float(res["pareto_k"].max()) < 0.7
    # sharp likelihood, draws far from the data -> heavy-tailed ratios: method-named warning
    bad = from_mc_dropout(3.0 * rng.normal(size=(200, 20, 1)), y, tau=50.0)
    with pytest.warns(LOOReliabilityWarning, match=r"checked_loo \(mc_dropout\): PSIS-LOO is "
                                                   r"unreliable: \d+ of 20 observations"):
        checked_loo(bad)


# ---------------------------------------------------------------------- target shapes
def _convert(which, y, request):
    """Run one converter on targets ``y`` (``N x 1`` or the refused ``(N,)``)."""
    if which == "mc_dropout":
        return from_mc_dropout(np.zeros((40, len(y), 1)), y, tau=1.0)
    if which == "svi":
        x, _, model, guide = _svi_setup()
        return from_svi_guide(model, guide, x, y, num_samples=10)
    if which == "nuts_result":
        return from_nuts(_fake_nuts_result(), y=y)
    if which == "nuts_mcmc":
        x, _, model, mcmc = request.getfixturevalue("tiny_mcmc")
        return from_nuts(mcmc, model, x, y)
    gp, lik, xs, _ = request.getfixturevalue("gp_setup")
    return from_exact_gp(gp, lik, xs, y, num_draws=20)


_N_OBS = {"mc_dropout": 5, "svi": 25, "nuts_result": 9, "nuts_mcmc": 15, "exact_gp": 15}
_FUNC = {"mc_dropout": "from_mc_dropout", "svi": "from_svi_guide", "nuts_result": "from_nuts",
         "nuts_mcmc": "from_nuts", "exact_gp": "from_exact_gp"}


@pytest.mark.parametrize("which", list(_N_OBS))
def test_one_dimensional_targets_are_refused_naming_the_argument(which, request):
    # one rule for every converter, the GP's included: N x 1, never a reshaped (N,)
    n = _N_OBS[which]
    arg = "y_test" if which == "exact_gp" else "y"
    for y in (np.zeros(n), torch.zeros(n, dtype=torch.float64)):
        with pytest.raises(ValueError, match=rf"{_FUNC[which]}: {arg} must have shape N x D "
                                             rf"\(N x 1 for one output\), got a 1-D"):
            _convert(which, y, request)
    assert _convert(which, np.zeros((n, 1)), request).observed_data["y"].shape == (n,)


def test_n_by_1_gp_targets_give_the_gaussian_log_likelihood_of_each_point(gp_setup):
    # N x 1 test targets: log N(y_n; f_sn, noise_n) per point and draw, to 1e-12, and the
    # same numbers from numpy and from torch (the values a 1-D y_test used to give)
    gp, lik, xs, ys = gp_setup
    y_orig = 0.5 + 1.5 * ys
    idata = from_exact_gp(gp, lik, xs, y_orig, num_draws=30, y_mean=0.5, y_std=1.5, seed=2)
    f = idata.posterior["f"].values
    noise = idata.constant_data["noise_var"].values
    y = y_orig[:, 0].numpy()
    np.testing.assert_array_equal(idata.observed_data["y"].values, y)
    ref = -0.5 * np.log(2 * np.pi * noise) - 0.5 * (y - f) ** 2 / noise
    np.testing.assert_allclose(idata.log_likelihood["y"].values, ref, rtol=0, atol=1e-12)
    again = from_exact_gp(gp, lik, xs, y_orig.numpy(), num_draws=30, y_mean=0.5, y_std=1.5,
                          seed=2)
    np.testing.assert_array_equal(again.log_likelihood["y"].values,
                                  idata.log_likelihood["y"].values)
