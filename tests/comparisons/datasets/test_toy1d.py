"""The 1-D toy problem: shapes, standardisation, regions, reproducibility, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comparisons.datasets.toy1d import (
    TOY1D_TRAIN_INTERVALS,
    load_toy1d,
    toy1d_function,
)
from comparisons.datasets.uci import standardize, validation_split


def test_shapes_standardisation_and_original_scale():
    d = load_toy1d(num_train=120, seed=3, num_test=101)
    assert d.x_train.shape == (120, 1) and d.y_train.shape == (120, 1)
    assert d.x_test.shape == (101, 1) and d.y_test.shape == (101, 1)
    assert d.x_train.dtype == np.float64
    # training statistics: exact standardisation (float64, 1e-12)
    assert abs(d.x_train.mean()) < 1e-12 and abs(d.x_train.std() - 1.0) < 1e-12
    assert abs(d.y_train.mean()) < 1e-12 and abs(d.y_train.std() - 1.0) < 1e-12
    # mapping back gives the raw data
    np.testing.assert_allclose(d.x_train * d.x_std + d.x_mean, d.source.x_train, atol=1e-12)
    np.testing.assert_allclose(d.y_test * d.y_std + d.y_mean, d.source.y_test, atol=1e-12)
    np.testing.assert_allclose(d.x_test[:, 0] * d.x_std[0] + d.x_mean[0], d.x_test_raw,
                               atol=1e-12)
    # the test grid is increasing and wider than the training range
    assert np.all(np.diff(d.x_test_raw) > 0)
    assert d.x_test_raw[0] < d.source.x_train.min() and d.x_test_raw[-1] > d.source.x_train.max()


def test_training_inputs_lie_in_the_intervals_and_noise_level():
    d = load_toy1d(num_train=2000, seed=0, noise_std=0.3)
    x = d.source.x_train[:, 0]
    inside = np.zeros_like(x, dtype=bool)
    for lo, hi in TOY1D_TRAIN_INTERVALS:
        inside |= (x >= lo) & (x <= hi)
    assert inside.all()
    assert d.train_bounds == (TOY1D_TRAIN_INTERVALS[0][0], TOY1D_TRAIN_INTERVALS[-1][1])
    # both intervals get points in proportion to their length (3 : 3), within 5 binomial SE
    frac = np.mean(x < 0)
    assert abs(frac - 0.5) < 5 * np.sqrt(0.25 / 2000)
    # residual sd of the noise: 0.3 within 5 standard errors (sd of the sd ~ 0.3 / sqrt(2n))
    resid = d.source.y_train[:, 0] - toy1d_function(x)
    assert abs(resid.std() - 0.3) < 5 * 0.3 / np.sqrt(2 * 2000)
    np.testing.assert_allclose(d.f_test, d.x_test_raw * np.sin(d.x_test_raw), atol=1e-15)
    # not sorted: the protocol's validation rows (last 20%) come from both intervals
    val = validation_split(d.source).x_test[:, 0]
    assert (val < 0).any() and (val > 0).any()


def test_regions_and_standardised_bounds():
    d = load_toy1d(seed=1)
    x = d.x_test_raw
    np.testing.assert_array_equal(d.region_mask("extrapolation"), (x < -4.0) | (x > 3.5))
    np.testing.assert_array_equal(d.region_mask("gap"), (x > -1.0) & (x < 0.5))
    np.testing.assert_array_equal(d.region_mask("train"),
                                  ((x >= -4.0) & (x <= -1.0)) | ((x >= 0.5) & (x <= 3.5)))
    (a, b), (c, e) = d.train_intervals_std
    assert a == pytest.approx((-4.0 - d.x_mean[0]) / d.x_std[0], rel=1e-14)
    assert a < b < c < e
    with pytest.raises(ValueError, match="region must be"):
        d.region_mask("inside")


def test_reproducible_and_seed_dependent():
    a, b, c = load_toy1d(seed=5), load_toy1d(seed=5), load_toy1d(seed=6)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    # the raw split goes through the UCI helpers unchanged
    np.testing.assert_allclose(standardize(a.source).x_train, a.x_train, atol=0)


@pytest.mark.parametrize("dtype", ["float32", np.float32, torch.float32])
def test_dtype_float32(dtype):
    d = load_toy1d(num_train=20, dtype=dtype)
    assert d.x_train.dtype == np.float32 and d.y_test.dtype == np.float32
    assert d.source.x_train.dtype == np.float64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_train=5), r"num_train must be an integer >= 10, got 5"),
        (dict(num_train=20.5), r"num_train must be an integer >= 10, got 20.5"),
        (dict(seed=-1), r"seed must be an integer >= 0, got -1"),
        (dict(seed=True), r"seed must be an integer >= 0, got True"),
        (dict(dtype="int8"), r"dtype must be float32 or float64.*'int8'"),
        (dict(dtype=torch.float16), r"dtype must be float32 or float64"),
        (dict(noise_std=0.0), r"noise_std must be a finite number > 0, got 0.0"),
        (dict(num_test=1), r"num_test must be an integer >= 2, got 1"),
        (dict(train_intervals=[(1.0, 0.0)]), r"low < high"),
        (dict(train_intervals=[(-2.0, 1.0), (0.0, 2.0)]), r"must not overlap"),
        (dict(train_intervals=[]), r"at least one"),
        (dict(test_range=(-3.0, 3.0)), r"must contain every training interval"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_toy1d(**kwargs)
