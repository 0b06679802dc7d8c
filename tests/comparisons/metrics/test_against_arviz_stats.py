"""The toolkit's own distances and intervals against arviz-stats' where both exist.

comparisons.metrics.distances computes closed forms between two Gaussian marginals; arviz-stats
estimates distances from draws (``kl_divergence``: the k-nearest-neighbour estimator of
Perez-Cruz 2008; ``wasserstein``: W1 by optimal transport of draws) and intervals from draws
(``eti``). On draws of the same Gaussians the two agree within the estimators' Monte Carlo
error (measured over seeds 0-9, stated per test)."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import xarray as xr

from comparisons.metrics.distances import gaussian_kl, gaussian_w2, interval_coverage


def _draws(values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values[None], dims=["chain", "draw"])


def test_gaussian_kl_matches_arviz_stats_estimate():
    """KL(N(0, 1) || N(1, 2)) = 0.3466; arviz-stats on 20000 draws of each: mean 0.338, sd 0.016
    over seeds 0-9 (the kNN estimator is biased low by ~0.009 at this size). Tolerance 0.065 =
    4 sd."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 20000), rng.normal(1.0, math.sqrt(2.0), 20000)
    estimate = float(az.kl_divergence(_draws(a), _draws(b), num_samples=20000, round_to="none",
                                      random_seed=0))
    exact = float(gaussian_kl(0.0, 1.0, 1.0, 2.0))
    assert exact == pytest.approx(math.log(math.sqrt(2.0)), abs=1e-15)  # + (1 + 1)/4 - 1/2
    assert abs(estimate - exact) < 0.065, (estimate, exact)


def test_gaussian_w2_equals_arviz_stats_w1_for_equal_variances():
    """For equal variances W1 = W2 = |mu_a - mu_b| (a translation), so arviz-stats' W1 of draws
    estimates our closed-form W2: 1.5 here; 500 draws (the optimal transport is O(n^3)): 1.42 to
    1.58 over seeds 0-2. Tolerance 0.3."""
    rng = np.random.default_rng(0)
    a, c = rng.normal(0.0, 1.0, 500), rng.normal(1.5, 1.0, 500)
    w1 = float(az.wasserstein(_draws(a), _draws(c), num_samples=500, round_to="none",
                              random_seed=0))
    assert float(gaussian_w2(0.0, 1.0, 1.5, 1.0)) == 1.5
    assert abs(w1 - 1.5) < 0.3, w1


def test_interval_coverage_uses_the_equal_tailed_interval_of_arviz_stats():
    """Our central 95% interval of N(1, 4) is arviz-stats' equal-tailed 95% interval of its
    draws (eti, prob=0.95): the bounds of 200000 draws are within 0.05 of 1 -+ 1.96 * 2 (their
    Monte Carlo sd is ~0.012), so targets 0.05 inside them are covered and 0.05 outside not."""
    draws = np.random.default_rng(0).normal(1.0, 2.0, 200000)
    lo, hi = (float(v) for v in az.eti(_draws(draws), prob=0.95).values)
    z = 1.959963984540054
    assert abs(lo - (1 - 2 * z)) < 0.05 and abs(hi - (1 + 2 * z)) < 0.05
    y = np.array([lo + 0.05, hi - 0.05, lo - 0.05, hi + 0.05])
    inside = interval_coverage(np.ones(4), np.full(4, 4.0), y, level=0.95, per_point=True)
    assert np.asarray(inside).tolist() == [True, True, False, False]
