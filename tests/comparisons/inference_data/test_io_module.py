"""InferenceData of a converted network's Pyro predictive (Gaussian and categorical)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from comparisons.inference_data import checked_loo, from_module_guide
from tests.vi_dropout.test_conversion import LSTMNet
from tests.vi_dropout.test_forward import TwoInputs
from vi_dropout.guides import DropoutGuide
from vi_dropout.models import ModuleBNN


def _net(out=1):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(8, out)).double()


def test_gaussian_groups_and_pointwise_log_likelihood():
    x = torch.randn(12, 2, dtype=torch.float64)
    y = torch.randn(12, 1, dtype=torch.float64)
    model = ModuleBNN(_net(), tau=4.0)
    guide = DropoutGuide(model, theta=1e-2)
    idata = from_module_guide(model, guide, x, y, num_samples=200, num_chains=2, seed=3)
    assert set(idata.children) >= {"posterior", "posterior_predictive", "log_likelihood",
                                   "observed_data", "constant_data"}
    f = idata.posterior["f"].values  # 2 x 100 x 12
    assert f.shape == (2, 100, 12) and idata.posterior.attrs["method"] == "mc_dropout"
    assert idata.posterior.attrs["disabled_dropout"] == "none"
    assert idata.posterior.attrs["covered_layers"] == "0 (keep_prob 1), 3 (keep_prob 0.8)"
    expected = stats.norm.logpdf(y.numpy()[:, 0], loc=f, scale=4.0 ** -0.5)
    np.testing.assert_allclose(idata.log_likelihood["y"].values, expected, rtol=1e-12)
    # the same seed gives the same draws
    again = from_module_guide(model, guide, x, y, num_samples=200, num_chains=2, seed=3)
    np.testing.assert_array_equal(again.posterior["f"].values, f)
    assert np.isfinite(checked_loo(idata, min_draws=100).elpd)


def test_categorical_log_likelihood_is_the_log_softmax_at_the_label():
    x = torch.randn(10, 2, dtype=torch.float64)
    y = torch.arange(10) % 3
    model = ModuleBNN(_net(out=3), likelihood="categorical")
    guide = DropoutGuide(model, theta=1e-2)
    idata = from_module_guide(model, guide, x, y, num_samples=50)
    f = idata.posterior["f"].values  # 1 x 50 x 10 x 3
    logp = f - np.log(np.exp(f).sum(-1, keepdims=True))
    np.testing.assert_allclose(idata.log_likelihood["y"].values,
                               np.take_along_axis(logp, y.numpy()[None, None, :, None], -1)[..., 0],
                               rtol=1e-12)
    labels = idata.posterior_predictive["y"].values
    assert labels.shape == (1, 50, 10) and labels.min() >= 0 and labels.max() <= 2


def test_bad_input():
    model = ModuleBNN(_net(), tau=1.0)
    guide = DropoutGuide(model)
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"y must have shape N x D"):
        from_module_guide(model, guide, x, torch.zeros(4, dtype=torch.float64), 10)
    with pytest.raises(ValueError, match="cannot be split into 3 chains"):
        from_module_guide(model, guide, x, torch.zeros(4, 1, dtype=torch.float64), 10,
                          num_chains=3)
    with pytest.raises(ValueError, match="guide must be a DropoutGuide"):
        from_module_guide(model, object(), x, torch.zeros(4, 1, dtype=torch.float64), 10)



def test_disabled_dropout_is_in_the_attrs_and_several_inputs_work():
    """An LSTM(dropout=0.3) model converted with uncovered_dropout="disable": every group's
    attrs list the disabled dropout. A two-input model takes x as a tuple; parallel draws work."""
    torch.manual_seed(0)
    x = torch.randn(8, 4, 3, dtype=torch.float64)
    y = torch.randn(8, 1, dtype=torch.float64)
    model = ModuleBNN(LSTMNet().double(), uncovered_dropout="disable")
    guide = DropoutGuide(model, theta=1e-2)
    idata = from_module_guide(model, guide, x, y, num_samples=20)
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data"):
        attrs = idata[group].attrs
        assert attrs["uncovered_dropout"] == "disable"
        assert attrs["disabled_dropout"].startswith("lstm (LSTM, keep_prob 0.7): nn.LSTM 'lstm'")
    assert "constant_data" not in idata.children  # x is not N x Q
    net = TwoInputs().double()
    model = ModuleBNN(net, tau=4.0)
    guide = DropoutGuide(model, theta=1e-2)
    xs = (torch.randn(8, 1, 5, 5, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64))
    for parallel in (False, True):
        idata = from_module_guide(model, guide, xs, y, num_samples=20, parallel=parallel)
        assert idata.posterior["f"].shape == (1, 20, 8)
    with pytest.raises(ValueError, match=r"y must have 8 rows like x"):
        from_module_guide(model, guide, xs, y[:5], 10)
    with pytest.raises(ValueError, match=r"x: every input needs the same batch size"):
        from_module_guide(model, guide, (xs[0], xs[1][:4]), y, 10)
