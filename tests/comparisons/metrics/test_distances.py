"""Gaussian predictive distances against numerical integration and closed special cases (all
float64), coverage, moment matching and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from comparisons.metrics.distances import (
    DISTANCE_METRICS,
    gaussian_kl,
    gaussian_total_variation,
    gaussian_w2,
    interval_coverage,
    moment_match_samples,
    standardized_mean_difference,
    summarize_predictive_distances,
    variance_ratio,
)
from vi_dropout.summaries import regression_summary

# Random pairs of Gaussians, including nearly equal and exactly equal variances (the hard cases of
# the TV crossing-point formula) and far-apart means.
_RNG = np.random.default_rng(1234)
PAIRS = []
for _i in range(24):
    ma, mb = _RNG.normal(0.0, 3.0, 2)
    va, vb = np.exp(_RNG.normal(0.0, 1.5, 2))
    if _i % 4 == 1:
        vb = va * (1.0 + 10.0 ** _RNG.uniform(-12, -3))
    if _i % 4 == 2:
        vb = va
    PAIRS.append((float(ma), float(va), float(mb), float(vb)))
PAIRS.append((0.0, 1.0, 0.0, 1.0))  # identical
PAIRS.append((0.0, 0.01, 5.0, 0.01))  # nearly disjoint


def _support(ma, va, mb, vb):
    sa, sb = np.sqrt(va), np.sqrt(vb)
    return min(ma - 40 * sa, mb - 40 * sb), max(ma + 40 * sa, mb + 40 * sb)


def _crossings(ma, va, mb, vb):
    """Crossing points of the two densities by brute force (sign changes on a fine grid, then
    brentq), independent of the closed form under test."""
    lo, hi = _support(ma, va, mb, vb)
    def g(x):
        return stats.norm.logpdf(x, ma, np.sqrt(va)) - stats.norm.logpdf(x, mb, np.sqrt(vb))
    xs = np.linspace(lo, hi, 20_001)
    gs = g(xs)
    idx = np.nonzero(np.sign(gs[:-1]) * np.sign(gs[1:]) < 0)[0]
    return [optimize.brentq(g, xs[i], xs[i + 1], xtol=1e-15) for i in idx]


@pytest.mark.parametrize("pair", PAIRS)
def test_total_variation_matches_numerical_integration(pair):
    # 0.5 * int |p_a - p_b| by adaptive quadrature split at the crossing points; tolerance 1e-12
    # absolute (measured agreement ~1e-15).
    ma, va, mb, vb = pair
    lo, hi = _support(*pair)
    edges = [lo, *_crossings(*pair), hi]
    def f(x):
        return 0.5 * abs(stats.norm.pdf(x, ma, np.sqrt(va)) - stats.norm.pdf(x, mb, np.sqrt(vb)))
    ref = sum(integrate.quad(f, a, b, limit=200, epsabs=1e-15, epsrel=1e-13)[0]
              for a, b in zip(edges[:-1], edges[1:]))
    tv = float(gaussian_total_variation(*pair))
    assert abs(tv - ref) <= 1e-12, (tv, ref)
    assert 0.0 <= tv <= 1.0
    assert float(gaussian_total_variation(mb, vb, ma, va)) == pytest.approx(tv, abs=1e-14)


@pytest.mark.parametrize("pair", PAIRS[:8])
def test_kl_matches_numerical_integration(pair):
    # int p_a log(p_a / p_b), quadrature over +-40 sd; tolerance 1e-9 relative + 1e-12 absolute.
    ma, va, mb, vb = pair
    lo, hi = _support(*pair)
    def f(x):
        la = stats.norm.logpdf(x, ma, np.sqrt(va))
        return np.exp(la) * (la - stats.norm.logpdf(x, mb, np.sqrt(vb)))
    ref = integrate.quad(f, lo, hi, points=[ma, mb], limit=500, epsabs=1e-14, epsrel=1e-12)[0]
    assert float(gaussian_kl(*pair)) == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_kl_special_cases_and_accuracy_for_close_variances():
    assert float(gaussian_kl(1.0, 2.0, 1.0, 2.0)) == 0.0
    # equal variances: (dmu)^2 / (2 v)
    assert float(gaussian_kl(0.0, 4.0, 3.0, 4.0)) == pytest.approx(9.0 / 8.0, rel=1e-15)
    # r = 1 + 1e-10: KL = (r - 1 - log r)/2 ~ (r-1)^2/4 = 2.5e-21, which the naive formula loses
    kl = float(gaussian_kl(0.0, 1.0 + 1e-10, 0.0, 1.0))
    assert kl == pytest.approx(0.25e-20, rel=1e-5)
    assert (gaussian_kl(*np.array(PAIRS).T) >= 0).all()


@pytest.mark.parametrize("pair", PAIRS[:8])
def test_w2_matches_quantile_integral(pair):
    # W2^2 = int_0^1 (F_a^-1(u) - F_b^-1(u))^2 du = E_z[(dmu + dsigma z)^2], z ~ N(0, 1), by
    # quadrature over z; tolerance 1e-10 relative.
    ma, va, mb, vb = pair
    ds = np.sqrt(va) - np.sqrt(vb)
    ref = integrate.quad(lambda z: (ma - mb + ds * z) ** 2 * stats.norm.pdf(z), -np.inf, np.inf,
                         epsabs=1e-14, epsrel=1e-12)[0]
    assert float(gaussian_w2(*pair)) ** 2 == pytest.approx(ref, rel=1e-10, abs=1e-14)


def test_w2_against_sorted_samples():
    # the empirical W2 between two sorted samples (n = 200k) converges to the closed form;
    # tolerance 0.01 (Monte Carlo error ~1e-3 at this n).
    rng = np.random.default_rng(0)
    a = np.sort(1.0 + 2.0 * rng.standard_normal(200_000))
    b = np.sort(-0.5 + 0.5 * rng.standard_normal(200_000))
    empirical = np.sqrt(np.mean((a - b) ** 2))
    assert float(gaussian_w2(1.0, 4.0, -0.5, 0.25)) == pytest.approx(empirical, abs=0.01)


def test_tv_equal_variance_closed_form_and_pinsker():
    d = np.linspace(0.0, 8.0, 17)
    tv = gaussian_total_variation(np.zeros_like(d), 1.0, d, 1.0)
    np.testing.assert_allclose(tv, 2.0 * stats.norm.cdf(d / 2.0) - 1.0, rtol=0, atol=1e-15)
    ma, va, mb, vb = np.array(PAIRS).T
    # Pinsker: TV <= sqrt(KL / 2)
    assert (gaussian_total_variation(ma, va, mb, vb)
            <= np.sqrt(gaussian_kl(ma, va, mb, vb) / 2.0) + 1e-15).all()


def test_smd_and_variance_ratio():
    np.testing.assert_array_equal(
        standardized_mean_difference([1.0, -2.0], [9.0, 1.0], [4.0, -2.0], [4.0, 1.0]),
        [1.5, 0.0])
    np.testing.assert_array_equal(variance_ratio(0.0, [2.0, 1.0], 0.0, [4.0, 0.25]), [0.5, 4.0])


def test_torch_inputs_and_shapes_preserved():
    ma = torch.zeros(3, 2, dtype=torch.float32)
    out = gaussian_kl(ma, torch.ones(3, 2), 1.0, 2.0)
    assert out.shape == (3, 2) and out.dtype == np.float64


def test_interval_coverage():
    # deterministic: the 95% half-width is 1.959964 sd
    assert interval_coverage([0.0] * 4, [1.0] * 4, [0.0, 1.95, 1.97, -3.0]) == 0.5
    assert interval_coverage(0.0, 4.0, [3.9, 4.0], level=0.95, per_point=True).tolist() == [
        True, False]
    # calibrated Gaussian draws: coverage within 4 binomial standard errors of the level
    rng = np.random.default_rng(0)
    n = 100_000
    mean, sd = rng.normal(size=n), np.exp(rng.normal(size=n))
    y = mean + sd * rng.standard_normal(n)
    for level in (0.5, 0.9, 0.95):
        c = interval_coverage(mean, sd**2, y, level=level)
        assert abs(c - level) <= 4 * np.sqrt(level * (1 - level) / n)


def test_moment_match_equals_regression_summary():
    # the dropout helper's mean / variance (1/tau + population variance on the original scale),
    # float64, agreement 1e-12
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(500, 7, 1, generator=g, dtype=torch.float64)
    y = torch.randn(7, 1, generator=g, dtype=torch.float64)
    s = regression_summary(samples, y, tau=2.5, y_mean=3.0, y_std=1.7)
    mean, var = moment_match_samples(samples[..., 0], noise_var=1 / 2.5, y_mean=3.0, y_std=1.7)
    np.testing.assert_allclose(mean, s.mean[:, 0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(var, s.variance[:, 0].numpy(), rtol=1e-12)
    m2, v2 = moment_match_samples(samples[..., 0].T, axis=1)
    np.testing.assert_allclose(v2, samples[..., 0].var(0, correction=0).numpy(), rtol=1e-12)


def test_summary_averages():
    ma, va, mb, vb = (np.array(v) for v in zip(*PAIRS))
    d = summarize_predictive_distances(ma, va, mb, vb, scale=2.0)
    assert set(d) == set(DISTANCE_METRICS)
    assert d["kl"] == pytest.approx(gaussian_kl(ma, va, mb, vb).mean(), rel=1e-14)
    assert d["w2"] == pytest.approx(gaussian_w2(ma, va, mb, vb).mean() / 2.0, rel=1e-14)
    assert d["var_ratio"] == pytest.approx(np.exp(np.log(va / vb).mean()), rel=1e-12)
    mask = np.arange(len(ma)) < 3
    dm = summarize_predictive_distances(ma, va, mb, vb, mask=mask)
    assert dm["tv"] == pytest.approx(gaussian_total_variation(ma, va, mb, vb)[:3].mean())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gaussian_kl([0.0, 1.0], [1.0, 1.0], [0.0], [1.0]), r"same shape.*mean_a \(2,\)"),
        (lambda: gaussian_w2(0.0, 0.0, 0.0, 1.0), r"var_a must be > 0.*minimum 0"),
        (lambda: gaussian_total_variation(0.0, 1.0, 0.0, -1.0), "var_b must be > 0"),
        (lambda: variance_ratio(float("nan"), 1.0, 0.0, 1.0), "mean_a must be finite.*1 of 1"),
        (lambda: standardized_mean_difference(0.0, 1.0, "x", 1.0), "mean_b must be a real"),
        (lambda: interval_coverage(0.0, 1.0, 0.0, level=1.0), r"level must be a number in \(0, 1\)"),
        (lambda: interval_coverage([0.0], [1.0], [0.0, 1.0]), "same shape"),
        (lambda: moment_match_samples(1.0), "sample axis"),
        (lambda: moment_match_samples([[1.0]], noise_var=-1.0), "noise_var must be >= 0"),
        (lambda: moment_match_samples([[1.0]], y_std=0.0), "y_std must be > 0"),
        (lambda: moment_match_samples([[1.0]], axis=3), "axis 3 is out of range"),
        (lambda: summarize_predictive_distances(0.0, 1.0, 0.0, 1.0, scale=0.0), "scale must be"),
        (lambda: summarize_predictive_distances([0.0], [1.0], [0.0], [1.0], mask=[False]),
         "mask selects no points"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_mixture_interval_mass_exact_cases_and_against_sampling():
    from comparisons.metrics.distances import mixture_interval_mass

    # a one-draw "mixture" equal to the method's own Gaussian: exactly the level (1e-12)
    for level in (0.5, 0.8, 0.95):
        m = mixture_interval_mass([0.3, -2.0], [0.25, 0.25], [[0.3, -2.0]], 0.25, level=level)
        np.testing.assert_allclose(m, level, rtol=0, atol=1e-12)
    # a 3-draw mixture against 400,000 simulated targets: within 5 binomial SE (<= 0.0004)
    rng = np.random.default_rng(0)
    f = np.array([[-1.0, 0.0], [0.5, 2.0], [1.5, 2.5]])
    mean, var, noise = np.array([0.2, 1.4]), np.array([1.5, 0.8]), 0.6
    n = 400_000
    comp = rng.integers(0, 3, size=n)
    y = f[comp] + np.sqrt(noise) * rng.standard_normal((n, 2))
    inside = np.abs(y - mean) <= 1.959963984540054 * np.sqrt(var)
    expected = mixture_interval_mass(mean, var, f, noise, level=0.95)
    np.testing.assert_allclose(inside.mean(0), expected, rtol=0,
                               atol=5 * np.sqrt(0.25 / n))
    for kwargs, match in (({"f_draws": [[0.0, 1.0]]}, "f_draws must be S x N with N = 1"),
                          ({"noise_var": 0.0}, "noise_var must be > 0"),
                          ({"level": 1.0}, "level must be a number in")):
        args = dict(mean=[0.0], var=[1.0], f_draws=[[0.0]], noise_var=1.0) | kwargs
        with pytest.raises(ValueError, match=match):
            mixture_interval_mass(**args)
