import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.poutine import trace

from tests.common import toy_regression
from vi_dropout.distributions import DropoutNormal
from vi_dropout.guides import DropoutGuide
from vi_dropout.models import BayesianMLP
from vi_dropout.network import Architecture


def _model_guide(likelihood="gaussian", out=1):
    model = BayesianMLP(Architecture((2, 8, out)), prior_length_scale=1.0, tau=20.0,
                        likelihood=likelihood)
    guide = DropoutGuide(model, keep_prob=(0.9, 0.8), scale=1e-2,
                         generator=torch.Generator().manual_seed(0))
    return model, guide


def test_guide_sites_are_dropout_normal_and_match_model_shapes():
    model, guide = _model_guide()
    x, y = toy_regression(10, 2, 1)
    gtr = trace(guide).get_trace(x, y)
    mtr = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x, y)
    for i, (out, inp) in enumerate(model.architecture.layer_shapes):
        site = gtr.nodes[f"layers.{i}.weight"]
        assert isinstance(site["fn"], DropoutNormal)
        assert site["value"].shape == (out, inp) == mtr.nodes[f"layers.{i}.weight"]["value"].shape
    assert float(gtr.nodes["layers.0.weight"]["fn"].keep_prob) == pytest.approx(0.9)


@pytest.mark.parametrize("likelihood,out", [("gaussian", 1), ("categorical", 3)])
def test_svi_vectorised_particles_decreases_loss(likelihood, out):
    model, guide = _model_guide(likelihood, out)
    x, y = toy_regression(40, 2, 1)
    if likelihood == "categorical":
        y = (y.squeeze(-1) > 0).long() + (x[:, 0] > 0.5).long()
    elbo = Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), elbo)
    first = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    for _ in range(300):
        svi.step(x, y)
    last = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    assert last < first - 1.0


def test_minibatch_likelihood_is_scaled_to_num_data():
    model, guide = _model_guide()
    x, y = toy_regression(40, 2, 1)
    gtr = trace(guide).get_trace()
    full = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x[:10], y[:10])
    scaled = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x[:10], y[:10], num_data=40)
    full.compute_log_prob()
    scaled.compute_log_prob()
    torch.testing.assert_close(scaled.nodes["obs"]["scale"] * full.nodes["obs"]["log_prob_sum"],
                               4.0 * full.nodes["obs"]["log_prob_sum"])
    sub = trace(pyro.poutine.replay(model, trace=gtr)).get_trace(x, y, subsample_size=8)
    assert sub.nodes["obs"]["value"].shape == (8, 1)


def test_bad_inputs():
    model, _ = _model_guide()
    with pytest.raises(ValueError, match="keep_prob"):
        DropoutGuide(model, keep_prob=1.5, scale=0.1)
    with pytest.raises(ValueError, match="scale"):
        DropoutGuide(model, keep_prob=0.5, scale=0.0)
    with pytest.raises(ValueError, match="prior_length_scale"):
        BayesianMLP(Architecture((2, 3, 1)), prior_length_scale=-1.0)
    with pytest.raises(ValueError, match="tau"):
        BayesianMLP(Architecture((2, 3, 1)), tau=0.0)
    with pytest.raises(ValueError, match=r"init_weights\[0\] must have shape \(8, 2\)"):
        DropoutGuide(model, init_weights=[torch.zeros(8, 3), torch.zeros(1, 8)])
    guide = DropoutGuide(model)
    with pytest.raises(ValueError, match="features"):
        guide(torch.zeros(5, 3, dtype=torch.float64))
    x, y = toy_regression(5, 2, 1)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="x must be finite"):
        model(x, y)
