import math

import numpy as np
import pytest
import torch

from comparisons.metrics.gaussian import gaussian_log_likelihood


def test_gaussian_log_likelihood_original_scale():
    mean, var = torch.tensor([0.1, -0.4]), torch.tensor([0.5, 2.0])
    y = torch.tensor([0.3, 0.2])
    y_mean, y_scale = 5.0, 3.0
    got = gaussian_log_likelihood(mean, var, y, y_scale=y_scale)
    ref = torch.distributions.Normal(y_mean + y_scale * mean, y_scale * var.sqrt()).log_prob(
        y_mean + y_scale * y
    )
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(gaussian_log_likelihood(mean, var, y) - got, torch.full((2,), math.log(3.0)))


def test_gaussian_log_likelihood_bad_input():
    with pytest.raises(ValueError, match="y_scale must be a finite number > 0, got 0"):
        gaussian_log_likelihood(torch.zeros(2), torch.ones(2), torch.zeros(2), y_scale=0)
    with pytest.raises(ValueError, match="variance must be > 0 everywhere, got minimum 0"):
        gaussian_log_likelihood(torch.zeros(2), torch.tensor([1.0, 0.0]), torch.zeros(2))
    with pytest.raises(ValueError, match="y must be finite"):
        gaussian_log_likelihood(torch.zeros(2), torch.ones(2), torch.tensor([0.0, float("nan")]))
    # an N x 1 target against N moments would broadcast to N x N pairs: refused
    with pytest.raises(ValueError, match=r"same shape \(no broadcasting\), got \(2,\), \(2,\) and \(2, 1\)"):
        gaussian_log_likelihood(torch.zeros(2), torch.ones(2), torch.zeros(2, 1))


def test_numpy_and_torch_give_the_same_numbers():
    rng = np.random.default_rng(0)
    m, v, y = rng.normal(size=5), rng.uniform(0.5, 2, size=5), rng.normal(size=5)
    got = gaussian_log_likelihood(m, v, y, y_scale=2.0)
    assert isinstance(got, np.ndarray)
    ref = gaussian_log_likelihood(*(torch.tensor(a) for a in (m, v, y)), y_scale=2.0)
    np.testing.assert_array_equal(got, ref.numpy())
