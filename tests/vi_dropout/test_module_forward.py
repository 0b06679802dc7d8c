"""module_forward / module_negative_elbo / module_dropout_loss of a converted network."""

import math

import pytest
import torch
from torch import nn

from tests.common import toy_regression
from tests.vi_dropout.test_conversion import CustomForward, SmallCNN
from vi_dropout.conversion import dropout_free_copy, find_covered_layers
from vi_dropout.distributions import DropoutNormal
from vi_dropout.module_forward import (
    draw_module_masks,
    module_dropout_loss,
    module_forward,
    module_negative_elbo,
)
from vi_dropout.network import Architecture
from vi_dropout.objectives import (
    draw_masks,
    dropout_loss,
    elbo_dropout_offset,
    negative_elbo,
    prior_weight_decays,
)

F64 = torch.float64
#: Monte Carlo comparisons pass within this many standard errors (a false alarm has
#: probability below 1e-5 per compared number)
NUM_SE = 5.0


def _mlp():
    return nn.Sequential(nn.Dropout(0.1), nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(8, 2)).to(F64)


def _params(net, layers):
    means = [c.means_from_module(net.get_submodule(c.name).weight.detach()) for c in layers]
    biases = [None if not c.has_bias else net.get_submodule(c.name).bias.detach()
              for c in layers]
    return means, biases


def _own_dropout_masks(net, layers, x):
    """Run ``net`` in train mode (its own dropout draws the masks) and read the masks back from
    the dropout modules' outputs: a unit is kept where the output is non-zero (where the input
    is zero the mask does not change the output)."""
    records = {}
    hooks = [net.get_submodule(c.dropout).register_forward_hook(
        lambda mod, inp, out, name=c.dropout: records.__setitem__(name, out.detach()))
        for c in layers if c.dropout is not None]
    out = net.train()(x)
    for h in hooks:
        h.remove()
    masks = []
    for c in layers:
        if c.dropout is None:
            shape = (x.shape[0], c.num_cols) if c.kind == "linear" else (x.shape[0], c.num_cols,
                                                                         1, 1)
            masks.append(torch.ones(shape, dtype=x.dtype))
        elif c.kind == "linear":
            masks.append((records[c.dropout].flatten(1) != 0).to(x.dtype))
        else:
            masks.append((records[c.dropout] != 0).any(-1).any(-1)[..., None, None].to(x.dtype))
    return out, masks


@pytest.mark.parametrize("make,shape", [(_mlp, (64, 3)), (SmallCNN, (64, 1, 7, 7)),
                                        (CustomForward, (64, 4))])
def test_scale_zero_is_the_modules_own_dropout_with_the_same_masks(make, shape):
    net = make().to(F64)
    layers = find_covered_layers(net)
    x = torch.randn(*shape, dtype=F64)
    own, masks = _own_dropout_masks(net, layers, x)
    assert any(bool((m == 0).any()) for m in masks)  # dropout did drop something
    means, biases = _params(net, layers)
    out = module_forward(dropout_free_copy(net), layers, means, biases, x, masks=masks,
                         scale=0.0)
    # W' (z h / pi) against (W' / pi)(z h): the same numbers up to float64 rounding
    torch.testing.assert_close(out, own, rtol=1e-12, atol=1e-13)


def _explicit_per_example(net, layers, means, biases, x, scale, generator):
    """One explicit weight draw W_n ~ q per example (DropoutNormal.rsample, fresh masks), run
    through the dropout-free copy with every covered layer applying its own example's weights
    (a batched matrix product; a grouped convolution with one group per example)."""
    copy_ = dropout_free_copy(net)
    b = x.shape[0]
    for c, m, bias in zip(layers, means, biases):
        w = c.from_columns(DropoutNormal(m, c.keep_prob, scale).rsample((b,), generator=generator))
        bn = None if bias is None else bias + scale * torch.randn(b, *bias.shape, dtype=F64,
                                                                  generator=generator)
        sub = copy_.get_submodule(c.name)
        if c.kind == "linear":
            def fwd(h, w=w, bn=bn):
                return torch.einsum("bkq,bq->bk", w, h) + (0 if bn is None else bn)
        else:
            def fwd(h, w=w, bn=bn, sub=sub):
                out = nn.functional.conv2d(
                    h.reshape(1, -1, *h.shape[2:]), w.reshape(-1, *w.shape[2:]),
                    None if bn is None else bn.reshape(-1), stride=sub.stride,
                    padding=sub.padding, dilation=sub.dilation, groups=b)
                return out.reshape(b, -1, *out.shape[2:])
        sub.forward = fwd
    return copy_(x)


def _moments(samples):
    """Per-entry mean, variance, and the standard errors of both (samples along dim 0)."""
    s = samples.shape[0]
    mean = samples.mean(0)
    centred = samples - mean
    var = centred.square().mean(0) * s / (s - 1)
    m4 = centred.pow(4).mean(0)
    return mean, var, (var / s).sqrt(), ((m4 - var.square()).clamp_min(0) / s).sqrt()


@pytest.mark.parametrize("make,shape", [(_mlp, (3, 3)), (SmallCNN, (3, 1, 7, 7))])
def test_local_reparameterisation_matches_explicit_per_example_draws(make, shape):
    """Same output distribution, moment by moment: 4000 draws each, means and variances of every
    output within NUM_SE standard errors of the difference."""
    net = make().to(F64)
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, dtype=F64, generator=g)
    reps, scale = 4000, 0.2
    xs = x.repeat(reps, *([1] * (x.dim() - 1)))
    masks = draw_module_masks(layers, xs.shape[0], g, F64)
    local = module_forward(dropout_free_copy(net), layers, means, biases, xs, masks=masks,
                           scale=scale, generator=g).reshape(reps, *x.shape[:1], -1)
    explicit = _explicit_per_example(net, layers, means, biases, xs, scale, g).reshape(
        reps, *x.shape[:1], -1)
    m1, v1, sm1, sv1 = _moments(local)
    m2, v2, sm2, sv2 = _moments(explicit)
    assert ((m1 - m2).abs() <= NUM_SE * (sm1.square() + sm2.square()).sqrt()).all()
    assert ((v1 - v2).abs() <= NUM_SE * (sv1.square() + sv2.square()).sqrt()).all()
    # the jitter alone is visible: without it the variances would be smaller
    no_jitter = module_forward(dropout_free_copy(net), layers, means, biases, xs, masks=masks,
                               scale=0.0).reshape(reps, *x.shape[:1], -1)
    assert (_moments(no_jitter)[1] < v1).float().mean() > 0.5


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_one_layer_output_moments_are_the_closed_form(kind):
    r"""Given the mask, one layer's output is N(M (z h) + m_b, theta^2 (||h||^2 + 1)): the sample
    mean and variance of 4000 draws within NUM_SE standard errors."""
    if kind == "linear":
        net = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 3)).to(F64)
        h = torch.randn(2, 4, dtype=F64)
    else:
        net = nn.Sequential(nn.Dropout2d(0.5), nn.Conv2d(2, 3, 2)).to(F64)
        h = torch.randn(2, 2, 3, 3, dtype=F64)
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    g = torch.Generator().manual_seed(0)
    mask = draw_module_masks(layers, 2, g, F64)[0]
    reps, scale = 4000, 0.3
    hs = h.repeat(reps, *([1] * (h.dim() - 1)))
    ms = mask.repeat(reps, *([1] * (mask.dim() - 1)))
    out = module_forward(dropout_free_copy(net), layers, means, biases, hs, masks=[ms],
                         scale=scale, generator=g).reshape(reps, *h.shape[:1], -1)
    layer = net[1]
    mean = layer(h * mask / layers[0].keep_prob).detach()  # M (z h) + m_b
    if kind == "linear":
        sq = h.square().sum(-1, keepdim=True)
    else:  # summed over the receptive field of each output location, all input channels
        sq = nn.functional.conv2d(h.square(), torch.ones(1, 2, 2, 2, dtype=F64))
    var = (scale**2 * (sq + 1.0)).expand_as(mean).reshape(2, -1)
    mean = mean.reshape(2, -1)
    m, v, sm, sv = _moments(out)
    assert ((m - mean).abs() <= NUM_SE * sm).all()
    assert ((v - var).abs() <= NUM_SE * sv).all()


@pytest.mark.parametrize("likelihood,gap", [("gaussian", 0), ("categorical", 0),
                                            ("gaussian", 16)])
def test_module_negative_elbo_equals_negative_elbo_on_an_mlp(likelihood, gap):
    net = _mlp()
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    x, y = toy_regression(12, 3, 2)
    if likelihood == "categorical":
        y = (y[:, 0] > 0).long()
    masks = draw_masks(12, Architecture((3, 8, 2)), (0.9, 0.8), torch.Generator().manual_seed(1))
    noise = [torch.randn(12, 8, dtype=F64), torch.randn(12, 2, dtype=F64)]
    kw = dict(scale=0.05, prior_length_scale=0.7, tau=3.0, likelihood=likelihood, num_data=40,
              noise=noise, gap_samples=gap)
    ours = module_negative_elbo(dropout_free_copy(net), layers, means, biases, x, y, masks=masks,
                                generator=torch.Generator().manual_seed(2), **kw)
    ref = negative_elbo(x, y, means, biases, masks, keep_probs=(0.9, 0.8), activation="relu",
                        generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=0)


def test_module_dropout_loss_equals_dropout_loss_and_the_elbo_offset():
    """The dropout loss of the converted net equals objectives.dropout_loss with the prior's
    decays, and -ELBO / (N tau) - dropout loss -> the theory's constant as theta -> 0."""
    net = _mlp()
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    x, y = toy_regression(12, 3, 2)
    arch = Architecture((3, 8, 2))
    masks = draw_masks(12, arch, (0.9, 0.8), torch.Generator().manual_seed(1))
    ls, tau, n = 0.7, 3.0, 40
    ours = module_dropout_loss(dropout_free_copy(net), layers, means, biases, x, y, masks=masks,
                               prior_length_scale=ls, tau=tau, num_data=n)
    wds, bds = prior_weight_decays(arch, (0.9, 0.8), ls, n, tau)
    ref = dropout_loss(x, y, means, biases, masks, wds, bds, "relu")
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=0)
    scale = 1e-7
    elbo = module_negative_elbo(dropout_free_copy(net), layers, means, biases, x, y, masks=masks,
                                scale=scale, prior_length_scale=ls, tau=tau, num_data=n)
    offset = elbo_dropout_offset(arch, (0.9, 0.8), scale, ls, n, tau)
    # O(theta) terms: theta * sqrt(||h||^2 + 1) * |residual| summed, far below 1e-4 here
    assert float(elbo / (n * tau) - ours) == pytest.approx(offset, abs=1e-4)
    assert offset > 10 * abs(math.log(scale)) / (n * tau)  # and it is not small


def test_masks_have_the_layer_shapes_and_keep_rates():
    layers = find_covered_layers(SmallCNN())
    masks = draw_module_masks(layers, 20000, torch.Generator().manual_seed(0), F64)
    assert [tuple(m.shape) for m in masks] == [(20000, 1, 1, 1), (20000, 3, 1, 1), (20000, 36)]
    assert bool((masks[0] == 1).all())
    for m, c in zip(masks[1:], layers[1:]):
        se = math.sqrt(c.keep_prob * (1 - c.keep_prob) / m.numel())
        assert abs(float(m.mean()) - c.keep_prob) < NUM_SE * se


def test_bad_arguments_name_the_argument():
    net = _mlp()
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    x = torch.randn(5, 3, dtype=F64)
    masks = draw_module_masks(layers, 5, dtype=F64)
    copy_ = dropout_free_copy(net)
    with pytest.raises(ValueError, match="one entry per covered layer"):
        module_forward(copy_, layers, means, biases, x, masks=masks[:1])
    with pytest.raises(ValueError, match=r"masks\[0\] has 4 rows but x has 5"):
        module_forward(copy_, layers, means, biases, x, masks=[m[:4] for m in masks])
    with pytest.raises(ValueError, match="scale must be >= 0"):
        module_forward(copy_, layers, means, biases, x, masks=masks, scale=-1.0)
    with pytest.raises(ValueError, match=r"noise must have shape \(5, 8\)"):
        module_forward(copy_, layers, means, biases, x, masks=masks, scale=0.1,
                       noise=[torch.zeros(5, 7, dtype=F64), torch.zeros(5, 2, dtype=F64)])
    with pytest.raises(ValueError, match="likelihood must be"):
        module_negative_elbo(copy_, layers, means, biases, x, torch.zeros(5, 2, dtype=F64),
                             masks=masks, scale=0.1, prior_length_scale=1.0, likelihood="poisson")
    with pytest.raises(ValueError, match=r"y must have shape N x D"):
        module_negative_elbo(copy_, layers, means, biases, x, torch.zeros(5, dtype=F64),
                             masks=masks, scale=0.1, prior_length_scale=1.0)
    with pytest.raises(ValueError, match="batch"):
        draw_module_masks(layers, 0)
