"""``checked_loo``: too few draws refused, a well-behaved case silent, ArviZ's Pareto-k warning
re-issued naming the method."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from comparisons.inference_data.io_mc_dropout import from_mc_dropout
from comparisons.inference_data.loo import LOOReliabilityWarning, checked_loo

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


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
    assert np.isfinite(float(res.elpd)) and float(res.pareto_k.max()) < 0.7
    # sharp likelihood, draws far from the data -> heavy-tailed ratios: method-named warning
    bad = from_mc_dropout(3.0 * rng.normal(size=(200, 20, 1)), y, tau=50.0)
    with pytest.warns(LOOReliabilityWarning, match=r"checked_loo \(mc_dropout\): PSIS-LOO is "
                                                   r"unreliable: \d+ of 20 observations"):
        checked_loo(bad)


def test_checked_loo_needs_a_log_likelihood_group():
    import arviz as az

    with pytest.raises(ValueError, match="no log_likelihood group"):
        checked_loo(az.from_dict({"posterior": {"a": np.zeros((1, 200))}}))


def test_checked_loo_gives_tied_tails_an_infinite_k():
    """A stuck chain: the log-likelihood takes 2 values over 200 draws, so the largest ratios of
    every point tie and arviz-stats refuses the tail fit; checked_loo keeps those points' raw
    weights with k = inf (as ArviZ 0.x did) and warns, naming the method. The raw weights of a
    point with two values make its LOO density the harmonic mean of the two likelihoods."""
    rng = np.random.default_rng(1)
    f = np.repeat(rng.normal(size=(2, 1, 6, 1)), 100, axis=1).reshape(200, 6, 1)
    y = rng.normal(size=(6, 1))
    idata = from_mc_dropout(f, y, tau=1.0)
    with pytest.warns(LOOReliabilityWarning, match=r"checked_loo \(mc_dropout\): PSIS-LOO is "
                                                   r"unreliable: 6 of 6 observations"):
        res = checked_loo(idata)
    assert np.isinf(res.pareto_k.values).all()
    lik = np.exp(-0.5 * np.log(2 * np.pi) - 0.5 * (y[:, 0] - f[[0, 100], :, 0]) ** 2)  # 2 x 6
    harmonic = 2.0 / (1.0 / lik).sum(0)
    np.testing.assert_allclose(res.elpd_i.values, np.log(harmonic), rtol=1e-12)


def test_checked_loo_is_finite_where_the_tail_fit_overflows():
    """A sharp likelihood (tau = 100) far from the draws: arviz-stats returns NaN Pareto k and
    NaN pointwise elpd for some points, without a warning; checked_loo gives those points their
    raw weights and k = inf, so elpd is finite, and warns."""
    rng = np.random.default_rng(1)
    idata = from_mc_dropout(rng.normal(size=(400, 20, 1)), np.full((20, 1), 3.0), tau=100.0)
    with pytest.warns(LOOReliabilityWarning, match="of 20 observations"):
        res = checked_loo(idata)
    assert np.isfinite(res.elpd) and np.isfinite(res.elpd_i.values).all()
    k = res.pareto_k.values
    assert not np.isnan(k).any() and np.isinf(k).any()


def test_checked_loo_on_a_bare_log_likelihood_and_its_bad_input():
    """A tree with only a log_likelihood group works (one chain: reff 1; four chains: the
    relative ESS, 1 without a posterior); what PSIS cannot take is refused by name."""
    import arviz as az

    rng = np.random.default_rng(0)
    for chains in (1, 4):
        ll = rng.normal(-1.0, 0.3, (chains, 400 // chains, 8))
        res = checked_loo(az.from_dict({"log_likelihood": {"y": ll}}, dims={"y": ["obs"]}))
        assert np.isfinite(res.elpd) and res.n_data_points == 8

    def tree(values, name="y"):
        return az.from_dict({"log_likelihood": {name: values}},
                            attrs={"log_likelihood": {"method": "m"}})

    ll = rng.normal(-1.0, 0.3, (1, 400, 8))
    bad = ll.copy()
    bad[0, 5, 2] = -np.inf
    with pytest.raises(ValueError, match=r"checked_loo \(m\): log_likelihood\['y'\] has 1 "
                                         r"non-finite value"):
        checked_loo(tree(bad))
    with pytest.raises(ValueError, match="must hold floating-point numbers, got int64"):
        checked_loo(tree(ll.astype(np.int64)))
    with pytest.raises(ValueError, match=r"var_name 'z' is not in the log_likelihood group"):
        checked_loo(tree(ll), var_name="z")
    both = az.from_dict({"log_likelihood": {"a": ll, "b": ll}})
    with pytest.raises(ValueError, match=r"has the variables \['a', 'b'\]; pass var_name"):
        checked_loo(both)
    assert np.isfinite(checked_loo(both, var_name="b").elpd)
    with pytest.raises(ValueError, match="min_draws"):
        checked_loo(tree(ll), min_draws="abc")
