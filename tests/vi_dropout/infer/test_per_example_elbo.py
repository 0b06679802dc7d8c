"""PerExampleDropoutELBO: the same objective as Trace_ELBO, one weight draw per example."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.poutine import trace
from torch import nn

from tests.common import toy_regression
from tests.vi_dropout.models.test_bnn import _two_input_data
from tests.vi_dropout.test_conversion import SmallCNN
from tests.vi_dropout.test_forward import Conv1dNet, DepthwiseCNN, TokenNet, TwoInputs
from vi_dropout.forward import draw_masks
from vi_dropout.guides import DropoutGuide
from vi_dropout.infer.elbo import dropout_loss, negative_elbo
from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO
from vi_dropout.models import ModuleBNN

F64 = torch.float64
NUM_SE = 5.0


def _mlp(seed=0, out=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(16, out)).to(F64)


def _data(kind, likelihood="gaussian", n=24):
    g = torch.Generator().manual_seed(3)
    if kind == "mlp":
        x, y = toy_regression(n, 2, 1)
        net = _mlp(out=1 if likelihood == "gaussian" else 3)
    elif kind in ("tokens", "grouped", "conv1d"):
        torch.manual_seed(0)
        make, shape = {"tokens": (TokenNet, (n, 5, 3)), "grouped": (DepthwiseCNN, (n, 1, 5, 5)),
                       "conv1d": (Conv1dNet, (n, 2, 8))}[kind]
        net = make().to(F64)
        x = torch.randn(*shape, dtype=F64, generator=g)
        y = torch.randn(n, 2, dtype=F64, generator=g)
    else:
        torch.manual_seed(0)
        net = SmallCNN().to(F64)
        x = torch.randn(n, 1, 7, 7, dtype=F64, generator=g)
        y = torch.randn(n, 2, dtype=F64, generator=g)
    if likelihood == "categorical":
        y = torch.randint(0, 3 if kind == "mlp" else 2, (n,), generator=g)
    return net, x, y


def _guide_grads(guide):
    return torch.cat([p.grad.flatten() for p in guide.parameters()])


def test_loss_is_negative_elbo_with_the_same_draws():
    net, x, y = _data("cnn")
    model = ModuleBNN(net, prior_length_scale=0.5, tau=3.0)
    guide = DropoutGuide(model, theta=0.05)
    masks = draw_masks(model.layers, x.shape[0], torch.Generator().manual_seed(0), F64)
    noise = [torch.randn(24, 3, 7, 7, dtype=F64), torch.randn(24, 4, 3, 3, dtype=F64),
             torch.randn(24, 2, dtype=F64)]
    elbo = PerExampleDropoutELBO()
    ours = elbo.differentiable_loss(model, guide, x, y, num_data=100, masks=masks, noise=noise)
    means, biases = guide.locs()
    ref = negative_elbo(model.net, model.layers, means, biases, x, y, masks=masks,
                               theta=0.05, prior_length_scale=0.5, tau=3.0, num_data=100,
                               noise=noise)
    assert torch.equal(ours, ref)
    # seeded streams are reproducible, and differ from another seed
    a = PerExampleDropoutELBO(num_masks_seed=7).loss(model, guide, x, y)
    assert a == PerExampleDropoutELBO(num_masks_seed=7).loss(model, guide, x, y)
    assert a != PerExampleDropoutELBO(num_masks_seed=8).loss(model, guide, x, y)


def test_svi_sees_the_guide_and_point_estimate_parameters():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                        nn.Linear(8, 1)).to(F64)
    model = ModuleBNN(net)
    guide = DropoutGuide(model)
    x, y = toy_regression(16, 2, 1)
    with trace(param_only=True) as tr:
        PerExampleDropoutELBO().loss_and_grads(model, guide, x, y)
    names = set(tr.trace.nodes)
    assert {"weight_locs$$$0", "weight_locs$$$1", "bias_locs$$$0", "bias_locs$$$1",
            "net$$$1.weight", "net$$$1.bias"} == names
    for site in tr.trace.nodes.values():
        assert site["value"].grad is not None and bool(site["value"].grad.abs().sum() > 0)


@pytest.mark.parametrize("kind,likelihood", [("mlp", "gaussian"), ("mlp", "categorical"),
                                             ("cnn", "gaussian"), ("tokens", "gaussian"),
                                             ("grouped", "gaussian"), ("grouped", "categorical"),
                                             ("conv1d", "gaussian")])
def test_gradient_is_n_tau_times_the_dropout_loss_gradient_as_theta_goes_to_zero(kind,
                                                                                 likelihood):
    """With the same masks, d(-ELBO)/dM = N tau d(dropout loss)/dM + O(theta): at theta = 1e-7
    the relative difference is below 1e-5."""
    net, x, y = _data(kind, likelihood)
    tau = 4.0 if likelihood == "gaussian" else 1.0
    model = ModuleBNN(net, prior_length_scale=0.8, tau=tau, likelihood=likelihood)
    guide = DropoutGuide(model, theta=1e-7)
    masks = draw_masks(model.layers, x.shape[0], torch.Generator().manual_seed(1), F64,
                              input_shapes=model.covered_input_shapes(x))
    assert any(bool((m == 0).any()) for m in masks)
    n = 200
    PerExampleDropoutELBO().loss_and_grads(model, guide, x, y, num_data=n, masks=masks)
    elbo_grad = _guide_grads(guide)
    for p in guide.parameters():
        p.grad = None
    means, biases = guide.locs()
    loss = dropout_loss(model.net, model.layers, means, biases, x, y, masks=masks,
                               prior_length_scale=0.8, tau=tau, likelihood=likelihood,
                               num_data=n)
    loss.backward()
    dropout_grad = _guide_grads(guide)
    assert float(dropout_grad.norm()) > 0
    rel = float((elbo_grad - n * tau * dropout_grad).norm() / (n * tau * dropout_grad).norm())
    assert rel < 1e-5, rel


def test_same_expectation_as_trace_elbo():
    """Both estimate the same -ELBO (the per-example one with the gap estimated): the means of
    1000 draws of each agree within NUM_SE standard errors of the difference."""
    net, x, y = _data("mlp", n=16)
    model = ModuleBNN(net, prior_length_scale=1.0, tau=2.0)
    guide = DropoutGuide(model, theta=0.2)
    per_example = PerExampleDropoutELBO(num_masks_seed=0, gap_samples=64)
    reps = 1000
    ours = torch.tensor([per_example.loss(model, guide, x, y, num_data=50) for _ in range(reps)])
    ref = torch.tensor([Trace_ELBO().loss(model, guide, x, y, num_data=50) for _ in range(reps)])
    se = math.sqrt(float(ours.var()) / reps + float(ref.var()) / reps)
    assert abs(float(ours.mean() - ref.mean())) < NUM_SE * se, (ours.mean(), ref.mean(), se)
    # without the gap it is lower by the gap (Proposition 1 <= KL; here about 9 standard errors),
    # so the comparison above can tell the two apart
    no_gap = PerExampleDropoutELBO(num_masks_seed=0)
    low = torch.tensor([no_gap.loss(model, guide, x, y, num_data=50) for _ in range(reps)])
    assert float(ours.mean() - low.mean()) > NUM_SE * se


def test_gradient_variance_is_smaller_than_trace_elbos():
    """At fixed parameters, one draw per example has a smaller gradient variance (trace of the
    covariance over 100 repetitions) than one draw per minibatch with Trace_ELBO."""
    net, x, y = _data("mlp", n=64)
    model = ModuleBNN(net, prior_length_scale=1.0, tau=4.0)
    guide = DropoutGuide(model, theta=1e-2)

    def variance(elbo):
        grads = []
        for _ in range(100):
            for p in guide.parameters():
                p.grad = None
            elbo.loss_and_grads(model, guide, x, y, num_data=1000)
            grads.append(_guide_grads(guide))
        return float(torch.stack(grads).var(0).sum())

    ratio = variance(Trace_ELBO()) / variance(PerExampleDropoutELBO(num_masks_seed=0))
    assert ratio > 3.0, ratio


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_svi_with_the_per_example_elbo_reduces_the_loss(kind):
    net, x, y = _data(kind, n=64)
    model = ModuleBNN(net, prior_length_scale=1.0, tau=10.0)
    guide = DropoutGuide(model, theta=1e-2)
    elbo = PerExampleDropoutELBO(num_masks_seed=0)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    first = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    for _ in range(150):
        svi.step(x, y)
    last = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    assert last < first - 20.0, (first, last)


def test_bad_arguments():
    net, x, y = _data("mlp")
    model = ModuleBNN(net)
    guide = DropoutGuide(model)
    elbo = PerExampleDropoutELBO()
    with pytest.raises(ValueError, match="y is required"):
        elbo.loss(model, guide, x)
    with pytest.raises(ValueError, match="model must be a ModuleBNN"):
        elbo.loss(net, guide, x, y)
    with pytest.raises(ValueError, match="guide must be a DropoutGuide"):
        elbo.loss(model, net, x, y)
    other = DropoutGuide(ModuleBNN(SmallCNN().to(F64)))
    with pytest.raises(ValueError, match="guide was built for another model"):
        elbo.loss(model, other, x, y)
    with pytest.raises(ValueError, match=r"arguments must be the model's \(x, y, num_data"):
        elbo.loss(model, guide, x, y, batch=3)
    with pytest.raises(ValueError, match="y must have shape N x D"):
        elbo.loss(model, guide, x, y[:, 0])
    with pytest.raises(ValueError, match="gap_samples must be an integer >= 0"):
        PerExampleDropoutELBO(gap_samples=-1)
    with pytest.raises(ValueError, match="num_masks_seed must be an integer or None"):
        PerExampleDropoutELBO(num_masks_seed=1.5)



def test_token_masks_are_drawn_per_token_with_the_elbos_stream():
    """The ELBO draws token layers' masks with the layer input's shape (from the model's probe):
    its value equals negative_elbo with masks from draw_masks(input_shapes=...)
    and the same generator state, then the jitter."""
    net, x, y = _data("tokens", n=12)
    model = ModuleBNN(net, prior_length_scale=0.5, tau=2.0)
    guide = DropoutGuide(model, theta=0.05)
    shapes = model.covered_input_shapes(x)
    assert shapes == [(12, 5, 3), (12, 5, 8), (12, 8)]
    ours = PerExampleDropoutELBO(num_masks_seed=4).loss(model, guide, x, y, num_data=30)
    g = torch.Generator().manual_seed(4)
    masks = draw_masks(model.layers, 12, g, F64, input_shapes=shapes)
    assert masks[1].shape == (12, 5, 8)
    means, biases = guide.locs()
    with torch.no_grad():
        ref = negative_elbo(model.net, model.layers, means, biases, x, y, masks=masks,
                                   theta=0.05, prior_length_scale=0.5, tau=2.0, num_data=30,
                                   generator=g)
    assert ours == float(ref)


def test_two_input_model_with_the_per_example_elbo():
    torch.manual_seed(0)
    image, features, y = _two_input_data(n=64)
    model = ModuleBNN(TwoInputs().to(F64), prior_length_scale=1.0, tau=10.0)
    guide = DropoutGuide(model, theta=1e-2)
    a = PerExampleDropoutELBO(num_masks_seed=0).loss(model, guide, (image, features), y)
    b = PerExampleDropoutELBO(num_masks_seed=0).loss(
        model, guide, {"features": features, "image": image}, y)
    assert a == b
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), PerExampleDropoutELBO(num_masks_seed=1))
    x = (image, features)
    first = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    for _ in range(150):
        svi.step(x, y)
    last = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    assert last < first - 20.0, (first, last)
    with pytest.raises(ValueError, match=r"x: every input needs the same batch size"):
        PerExampleDropoutELBO().loss(model, guide, (image, features[:3]), y)


@pytest.mark.parametrize("kwargs,message", [
    (dict(gap_samples=True), r"^gap_samples must be an integer >= 0, got a bool"),
    (dict(gap_samples="2"), r"^gap_samples must be an integer >= 0, got a str"),
    (dict(num_masks_seed=True), r"^num_masks_seed must be an integer or None, got a bool"),
])
def test_integer_arguments_are_not_bools_or_strings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PerExampleDropoutELBO(**kwargs)
    elbo = PerExampleDropoutELBO(num_masks_seed=np.int64(3), gap_samples=np.int64(2))
    assert (elbo.num_masks_seed, elbo.gap_samples) == (3, 2)
