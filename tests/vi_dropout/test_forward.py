"""module_forward / negative_elbo / dropout_loss of a converted network."""

import math

import pytest
import torch
from torch import nn

from tests.common import toy_regression
from tests.vi_dropout.test_conversion import CustomForward, SmallCNN
from vi_dropout.conversion import dropout_free_copy, find_covered_layers
from vi_dropout.distributions import DropoutNormal
from vi_dropout.forward import (
    covered_input_shapes,
    covered_layer_shapes,
    draw_masks,
    module_forward,
)
from vi_dropout.infer.elbo import (
    dropout_loss,
    elbo_dropout_offset,
    negative_elbo,
    prior_weight_decays,
)
from vi_dropout.kl import gaussian_kl_to_prior, kl_gap, kl_large_width
from vi_dropout.likelihoods import data_term
from vi_dropout.network import local_reparam_forward, mlp_forward

F64 = torch.float64
#: Monte Carlo comparisons pass within this many standard errors (a false alarm has
#: probability below 1e-5 per compared number)
NUM_SE = 5.0


def _mlp():
    return nn.Sequential(nn.Dropout(0.1), nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(8, 2)).to(F64)


class DepthwiseCNN(nn.Module):
    """MobileNet-style: conv -> Dropout2d -> depthwise conv (groups=4, multiplier 2) ->
    Dropout2d -> grouped pointwise conv (groups=2) -> Dropout -> flatten -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.drop1 = nn.Dropout2d(0.25)
        self.dw = nn.Conv2d(4, 8, 3, padding=1, groups=4)
        self.drop2 = nn.Dropout2d(0.5)
        self.pw = nn.Conv2d(8, 4, 1, groups=2)
        self.drop3 = nn.Dropout(0.2)
        self.fc = nn.Linear(4 * 5 * 5, 2)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.dw(self.drop1(h)))
        h = torch.relu(self.pw(self.drop2(h)))
        return self.fc(self.drop3(h).flatten(1))


class Conv1dNet(nn.Module):
    """Conv1d -> Dropout1d -> grouped Conv1d -> Dropout -> Linear, on B x 2 x 8 sequences."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 4, 3)
        self.drop1 = nn.Dropout1d(0.3)
        self.conv2 = nn.Conv1d(4, 4, 3, groups=2)
        self.drop2 = nn.Dropout(0.25)
        self.fc = nn.Linear(4 * 4, 2)

    def forward(self, x):
        h = torch.tanh(self.conv2(self.drop1(torch.tanh(self.conv1(x)))))
        return self.fc(self.drop2(h.flatten(1)))


class TokenNet(nn.Module):
    """Linear layers on B x T x 3 tokens with nn.Dropout (one mask per token), a mean over the
    tokens, Dropout and a linear head."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 8)
        self.drop1 = nn.Dropout(0.2)
        self.mid = nn.Linear(8, 8)
        self.drop2 = nn.Dropout(0.1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.tanh(self.mid(self.drop1(torch.relu(self.inp(x)))))
        return self.head(self.drop2(h.mean(1)))


class TwoInputs(nn.Module):
    """``forward(self, image, features)``: a conv branch and a linear branch, concatenated."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.feat = nn.Linear(3, 4)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(2 * 3 * 3 + 4, 1)

    def forward(self, image, features):
        h = torch.cat([torch.relu(self.conv(image)).flatten(1), torch.tanh(self.feat(features))],
                      1)
        return self.head(self.drop(h))


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
    shapes = covered_input_shapes(net, layers, x)
    out = net.train()(x)
    for h in hooks:
        h.remove()
    masks = []
    for c, shape in zip(layers, shapes):
        if c.dropout is None:
            masks.append(torch.ones(shape if c.kind == "linear" else shape[:2] + (1,) * (
                len(shape) - 2), dtype=x.dtype))
        elif c.kind == "linear":
            masks.append((records[c.dropout] != 0).reshape(shape).to(x.dtype))
        else:
            kept = records[c.dropout] != 0
            masks.append(kept.flatten(2).any(-1).reshape(kept.shape[:2] + (1,) * (
                kept.dim() - 2)).to(x.dtype))
    return out, masks


@pytest.mark.parametrize("make,shape", [(_mlp, (64, 3)), (SmallCNN, (64, 1, 7, 7)),
                                        (CustomForward, (64, 4)), (DepthwiseCNN, (64, 1, 5, 5)),
                                        (Conv1dNet, (64, 2, 8)), (TokenNet, (64, 5, 3))])
def test_scale_zero_is_the_modules_own_dropout_with_the_same_masks(make, shape):
    net = make().to(F64)
    layers = find_covered_layers(net)
    x = torch.randn(*shape, dtype=F64)
    own, masks = _own_dropout_masks(net, layers, x)
    assert any(bool((m == 0).any()) for m in masks)  # dropout did drop something
    means, biases = _params(net, layers)
    out = module_forward(dropout_free_copy(net), layers, means, biases, x, masks=masks,
                         theta=0.0)
    # W' (z h / pi) against (W' / pi)(z h): the same numbers up to float64 rounding
    torch.testing.assert_close(out, own, rtol=1e-12, atol=1e-13)


def _explicit_per_example(net, layers, means, biases, x, theta, generator):
    """One explicit weight draw W_n ~ q per example (per token for a linear layer on B x T x Q
    inputs; DropoutNormal.rsample, fresh masks), run through the dropout-free copy with every
    covered layer applying its own example's weights (a batched matrix product; a grouped
    convolution with one set of groups per example)."""
    copy_ = dropout_free_copy(net)
    for c, m, bias in zip(layers, means, biases):
        sub = copy_.get_submodule(c.name)

        def draw(lead, c=c, m=m, bias=bias):
            w = c.from_columns(DropoutNormal(m, c.keep_prob, theta).rsample(
                lead, generator=generator))
            bn = None if bias is None else bias + theta * torch.randn(
                *lead, *bias.shape, dtype=F64, generator=generator)
            return w, bn

        if c.kind == "linear":
            def fwd(h, draw=draw):
                w, bn = draw(h.shape[:-1])
                return torch.einsum("...kq,...q->...k", w, h) + (0 if bn is None else bn)
        else:
            def fwd(h, draw=draw, sub=sub, c=c):
                b = h.shape[0]
                w, bn = draw((b,))
                conv = nn.functional.conv2d if c.kind == "conv2d" else nn.functional.conv1d
                out = conv(h.reshape(1, -1, *h.shape[2:]), w.reshape(-1, *w.shape[2:]),
                           None if bn is None else bn.reshape(-1), stride=sub.stride,
                           padding=sub.padding, dilation=sub.dilation, groups=b * c.groups)
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


@pytest.mark.parametrize("make,shape", [(_mlp, (3, 3)), (SmallCNN, (3, 1, 7, 7)),
                                        (DepthwiseCNN, (3, 1, 5, 5)), (Conv1dNet, (3, 2, 8)),
                                        (TokenNet, (3, 4, 3))])
def test_local_reparameterisation_matches_explicit_per_example_draws(make, shape):
    """Same output distribution, moment by moment: 4000 draws each, means and variances of every
    output within NUM_SE standard errors of the difference."""
    net = make().to(F64)
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, dtype=F64, generator=g)
    reps, theta = 4000, 0.2
    xs = x.repeat(reps, *([1] * (x.dim() - 1)))
    masks = draw_masks(layers, xs.shape[0], g, F64,
                              input_shapes=covered_input_shapes(net, layers, xs))
    local = module_forward(dropout_free_copy(net), layers, means, biases, xs, masks=masks,
                           theta=theta, generator=g).reshape(reps, *x.shape[:1], -1)
    explicit = _explicit_per_example(net, layers, means, biases, xs, theta, g).reshape(
        reps, *x.shape[:1], -1)
    m1, v1, sm1, sv1 = _moments(local)
    m2, v2, sm2, sv2 = _moments(explicit)
    assert ((m1 - m2).abs() <= NUM_SE * (sm1.square() + sm2.square()).sqrt()).all()
    assert ((v1 - v2).abs() <= NUM_SE * (sv1.square() + sv2.square()).sqrt()).all()
    # the jitter alone is visible: without it the variances would be smaller
    no_jitter = module_forward(dropout_free_copy(net), layers, means, biases, xs, masks=masks,
                               theta=0.0).reshape(reps, *x.shape[:1], -1)
    assert (_moments(no_jitter)[1] < v1).float().mean() > 0.5


@pytest.mark.parametrize("kind", ["linear", "conv2d", "grouped-conv2d", "depthwise-conv2d",
                                  "conv1d", "linear-tokens"])
def test_one_layer_output_moments_are_the_closed_form(kind):
    r"""Given the mask, one layer's output is N(M (z h) + m_b, theta^2 (s + 1)), s = ||h||^2 (per
    token on B x T x Q inputs) or, for a convolution with g groups, the sum of h^2 over the
    receptive field in the input channels of the output channel's group: the sample mean and
    variance of 4000 draws within NUM_SE standard errors."""
    conv = nn.functional.conv2d
    if kind == "linear":
        net = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 3)).to(F64)
        h = torch.randn(2, 4, dtype=F64)
    elif kind == "linear-tokens":
        net = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 3)).to(F64)
        h = torch.randn(2, 3, 4, dtype=F64)
    elif kind == "conv2d":
        net = nn.Sequential(nn.Dropout2d(0.5), nn.Conv2d(2, 3, 2)).to(F64)
        h = torch.randn(2, 2, 3, 3, dtype=F64)
    elif kind == "grouped-conv2d":
        net = nn.Sequential(nn.Dropout2d(0.5), nn.Conv2d(4, 6, 2, groups=2)).to(F64)
        h = torch.randn(2, 4, 3, 3, dtype=F64)
    elif kind == "depthwise-conv2d":
        net = nn.Sequential(nn.Dropout2d(0.5), nn.Conv2d(3, 6, 2, groups=3)).to(F64)
        h = torch.randn(2, 3, 3, 3, dtype=F64)
    else:
        net = nn.Sequential(nn.Dropout1d(0.5), nn.Conv1d(2, 4, 2, groups=2)).to(F64)
        h = torch.randn(2, 2, 4, dtype=F64)
        conv = nn.functional.conv1d
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    g = torch.Generator().manual_seed(0)
    mask = draw_masks(layers, 2, g, F64, input_shapes=[tuple(h.shape)])[0]
    reps, theta = 4000, 0.3
    hs = h.repeat(reps, *([1] * (h.dim() - 1)))
    ms = mask.repeat(reps, *([1] * (mask.dim() - 1)))
    out = module_forward(dropout_free_copy(net), layers, means, biases, hs, masks=[ms],
                         theta=theta, generator=g).reshape(reps, *h.shape[:1], -1)
    layer = net[1]
    mean = layer(h * mask / layers[0].keep_prob).detach()  # M (z h) + m_b
    if kind.startswith("linear"):
        sq = h.square().sum(-1, keepdim=True)
    else:  # the receptive field of each output location in its group's input channels
        gr = layer.groups
        ones = torch.ones(gr, h.shape[1] // gr, *layer.kernel_size, dtype=F64)
        sq = conv(h.square(), ones, groups=gr).repeat_interleave(layer.out_channels // gr, 1)
    var = (theta**2 * (sq + 1.0)).expand_as(mean).reshape(2, -1)
    mean = mean.reshape(2, -1)
    m, v, sm, sv = _moments(out)
    assert ((m - mean).abs() <= NUM_SE * sm).all()
    assert ((v - var).abs() <= NUM_SE * sv).all()
    # the variance differs between the groups' outputs: the check sees the group structure
    if kind in ("grouped-conv2d", "depthwise-conv2d"):
        assert not torch.allclose(var.reshape(2, layer.out_channels, -1)[:, 0],
                                  var.reshape(2, layer.out_channels, -1)[:, -1])


def _mlp_negative_elbo(x, y, means, biases, masks, keep_probs, *, theta, prior_length_scale,
                       tau, likelihood, num_data, noise, generator, gap_samples):
    """The MLP's negative ELBO written out with the fast path's functions (local
    reparameterisation of vi_dropout.network, the KL of vi_dropout.kl): the reference that the
    one implementation (negative_elbo on any converted network) is held to."""
    out = local_reparam_forward(x, means, biases, masks, theta, "relu", noise)
    if likelihood == "gaussian":
        nll = tau * data_term(y, out) + 0.5 * out.shape[-1] * math.log(2 * math.pi / tau)
    else:
        nll = data_term(y, out, "categorical")
    kl = out.new_zeros(())
    for m, b, kp in zip(means, biases, keep_probs):
        q = DropoutNormal(m, kp, theta)
        kl = kl + kl_large_width(q, prior_length_scale)
        kl = kl + gaussian_kl_to_prior(b, theta, prior_length_scale)
        if gap_samples:
            kl = kl + kl_gap(q, gap_samples, generator=generator, differentiable=True).estimate
    return num_data * nll + kl


@pytest.mark.parametrize("likelihood,gap", [("gaussian", 0), ("categorical", 0),
                                            ("gaussian", 16)])
def test_negative_elbo_on_an_mlp_equals_the_fast_path(likelihood, gap):
    net = _mlp()
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    x, y = toy_regression(12, 3, 2)
    if likelihood == "categorical":
        y = (y[:, 0] > 0).long()
    masks = draw_masks(layers, 12, torch.Generator().manual_seed(1), F64)
    noise = [torch.randn(12, 8, dtype=F64), torch.randn(12, 2, dtype=F64)]
    kw = dict(theta=0.05, prior_length_scale=0.7, tau=3.0, likelihood=likelihood, num_data=40,
              noise=noise, gap_samples=gap)
    ours = negative_elbo(dropout_free_copy(net), layers, means, biases, x, y, masks=masks,
                         generator=torch.Generator().manual_seed(2), **kw)
    ref = _mlp_negative_elbo(x, y, means, biases, masks, (0.9, 0.8),
                             generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=0)


def test_dropout_loss_equals_the_fast_path_and_the_elbo_offset():
    """The dropout loss of the converted net equals the MLP's written out with the prior's
    decays, and -ELBO / (N tau) - dropout loss -> the theory's constant as theta -> 0."""
    net = _mlp()
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    x, y = toy_regression(12, 3, 2)
    masks = draw_masks(layers, 12, torch.Generator().manual_seed(1), F64)
    ls, tau, n = 0.7, 3.0, 40
    ours = dropout_loss(dropout_free_copy(net), layers, means, biases, x, y, masks=masks,
                        prior_length_scale=ls, tau=tau, num_data=n)
    wds, bds = prior_weight_decays((0.9, 0.8), ls, n, tau)
    ref = data_term(y, mlp_forward(x, means, biases, "relu", masks))
    for w, b, lw, lb in zip(means, biases, wds, bds):
        ref = ref + lw * w.pow(2).sum() + lb * b.pow(2).sum()
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=0)
    theta = 1e-7
    elbo = negative_elbo(dropout_free_copy(net), layers, means, biases, x, y, masks=masks,
                         theta=theta, prior_length_scale=ls, tau=tau, num_data=n)
    offset = elbo_dropout_offset(layers, theta, ls, n, tau, num_outputs=2)
    # O(theta) terms: theta * sqrt(||h||^2 + 1) * |residual| summed, far below 1e-4 here
    assert float(elbo / (n * tau) - ours) == pytest.approx(offset, abs=1e-4)
    assert offset > 10 * abs(math.log(theta)) / (n * tau)  # and it is not small


def test_masks_have_the_layer_shapes_and_keep_rates():
    layers = find_covered_layers(SmallCNN())
    masks = draw_masks(layers, 20000, torch.Generator().manual_seed(0), F64)
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
    masks = draw_masks(layers, 5, dtype=F64)
    copy_ = dropout_free_copy(net)
    with pytest.raises(ValueError, match="one entry per covered layer"):
        module_forward(copy_, layers, means, biases, x, masks=masks[:1])
    with pytest.raises(ValueError, match=r"masks\[0\] has 4 rows but x has 5"):
        module_forward(copy_, layers, means, biases, x, masks=[m[:4] for m in masks])
    with pytest.raises(ValueError, match="theta must be >= 0"):
        module_forward(copy_, layers, means, biases, x, masks=masks, theta=-1.0)
    with pytest.raises(ValueError, match=r"noise must have shape \(5, 8\)"):
        module_forward(copy_, layers, means, biases, x, masks=masks, theta=0.1,
                       noise=[torch.zeros(5, 7, dtype=F64), torch.zeros(5, 2, dtype=F64)])
    with pytest.raises(ValueError, match="likelihood must be"):
        negative_elbo(copy_, layers, means, biases, x, torch.zeros(5, 2, dtype=F64),
                             masks=masks, theta=0.1, prior_length_scale=1.0, likelihood="poisson")
    with pytest.raises(ValueError, match=r"y must have shape N x D"):
        negative_elbo(copy_, layers, means, biases, x, torch.zeros(5, dtype=F64),
                             masks=masks, theta=0.1, prior_length_scale=1.0)
    with pytest.raises(ValueError, match="batch"):
        draw_masks(layers, 0)



# --- grouped convolutions, tokens, several inputs ----------------------------------------------
def test_grouped_conv_at_theta_zero_is_the_network_with_the_masks_applied_by_hand():
    """module_forward at theta = 0 with given channel masks equals the network in evaluation
    mode with each covered layer's input multiplied by mask / keep_prob (what nn.Dropout2d does
    with that mask), to float64 rounding."""
    torch.manual_seed(0)
    net = DepthwiseCNN().to(F64)
    layers = find_covered_layers(net)
    assert [(c.name, c.groups, c.keep_prob) for c in layers] == [
        ("conv1", 1, 1.0), ("dw", 4, 0.75), ("pw", 2, 0.5), ("fc", 1, 0.8)]
    x = torch.randn(16, 1, 5, 5, dtype=F64)
    masks = draw_masks(layers, 16, torch.Generator().manual_seed(1), F64)
    assert any(bool((m == 0).any()) for m in masks)
    hooks = [net.get_submodule(c.name).register_forward_pre_hook(
        lambda mod, args, m=m, kp=c.keep_prob: (args[0] * m / kp,))
        for c, m in zip(layers, masks)]
    by_hand = net.eval()(x)
    for h in hooks:
        h.remove()
    means, biases = _params(net, layers)
    out = module_forward(dropout_free_copy(net), layers, means, biases, x, masks=masks, theta=0.0)
    torch.testing.assert_close(out, by_hand, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("make,shape,dtype", [
    (TokenNet, (32, 6, 3), F64), (TokenNet, (32, 6, 3), torch.float32),
    (DepthwiseCNN, (32, 1, 5, 5), F64), (Conv1dNet, (32, 2, 8), torch.float32)])
def test_masks_follow_the_modules_own_random_stream(make, shape, dtype):
    """The global generator reseeded before the module's own training-mode forward and before
    draw_masks (with the layers' input shapes): the same masks, so module_forward at
    theta = 0 gives the module's own output (float64: 1e-12; float32: 1e-5 relative)."""
    torch.manual_seed(0)
    net = make().to(dtype)
    layers = find_covered_layers(net)
    x = torch.randn(*shape, dtype=dtype)
    copy_ = dropout_free_copy(net)
    shapes = covered_input_shapes(copy_, layers, x)
    if make is TokenNet:
        assert shapes == [(32, 6, 3), (32, 6, 8), (32, 8)]  # tokens: masks per token
    torch.manual_seed(7)
    own = net.train()(x)
    torch.manual_seed(7)
    masks = draw_masks(layers, shape[0], None, dtype, input_shapes=shapes)
    means, biases = _params(net, layers)
    out = module_forward(copy_, layers, means, biases, x, masks=masks, theta=0.0)
    tol = 1e-12 if dtype == F64 else 1e-5
    torch.testing.assert_close(out, own, rtol=tol, atol=tol)
    torch.manual_seed(8)  # another seed: other masks, another output
    other = module_forward(copy_, layers, means, biases, x, theta=0.0,
                           masks=draw_masks(layers, shape[0], None, dtype,
                                                   input_shapes=shapes))
    assert not torch.allclose(other, own)


def test_token_masks_are_nn_dropout_masks_element_for_element():
    for dtype in (F64, torch.float32):
        layer = find_covered_layers(nn.Sequential(nn.Dropout(0.3), nn.Linear(5, 2)))[0]
        x = torch.ones(40, 7, 5, dtype=dtype)
        torch.manual_seed(11)
        kept = nn.Dropout(0.3)(x) != 0
        torch.manual_seed(11)
        (mask,) = draw_masks([layer], 40, None, dtype, input_shapes=[(40, 7, 5)])
        assert mask.shape == (40, 7, 5) and torch.equal(mask != 0, kept)


def test_several_inputs_as_a_tuple_or_a_dict():
    """forward(self, image, features): the tuple and dict forms give the same output; masks
    filled with keep_prob at theta = 0 give the network in evaluation mode (W'/pi (pi h))."""
    torch.manual_seed(0)
    net = TwoInputs().to(F64)
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    image, features = torch.randn(6, 1, 5, 5, dtype=F64), torch.randn(6, 3, dtype=F64)
    copy_ = dropout_free_copy(net)
    shapes = covered_input_shapes(copy_, layers, (image, features))
    assert shapes == covered_input_shapes(copy_, layers, {"features": features, "image": image})
    masks = [torch.full(s if c.kind == "linear" else s[:2] + (1, 1), c.keep_prob, dtype=F64)
             for c, s in zip(layers, shapes)]
    a = module_forward(copy_, layers, means, biases, (image, features), masks=masks)
    b = module_forward(copy_, layers, means, biases, {"image": image, "features": features},
                       masks=masks)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, net.eval()(image, features), rtol=1e-12, atol=1e-13)
    y = torch.randn(6, 1, dtype=F64)
    loss = dropout_loss(copy_, layers, means, biases, [image, features], y, masks=masks,
                               prior_length_scale=1.0)
    assert torch.isfinite(loss)


def test_bad_inputs_and_masks_are_refused_clearly():
    torch.manual_seed(0)
    net = TwoInputs().to(F64)
    layers = find_covered_layers(net)
    means, biases = _params(net, layers)
    copy_ = dropout_free_copy(net)
    image, features = torch.randn(6, 1, 5, 5, dtype=F64), torch.randn(6, 3, dtype=F64)
    masks = draw_masks(layers, 6, dtype=F64)
    with pytest.raises(ValueError, match=r"x: every input needs the same batch size \(first "
                                         r"dimension\), got x\[0\]: 6, x\[1\]: 5"):
        module_forward(copy_, layers, means, biases, (image, features[:5]), masks=masks)
    with pytest.raises(ValueError, match=r"x must be a tensor, a tuple of tensors or a dict of "
                                         r"tensors, got str"):
        module_forward(copy_, layers, means, biases, "image", masks=masks)
    with pytest.raises(ValueError, match=r"x\[1\] must be a tensor, got int"):
        module_forward(copy_, layers, means, biases, (image, 3), masks=masks)
    with pytest.raises(ValueError, match=r"x \(\(6, 1, 5, 5\)\) does not go through the module "
                                         r"TwoInputs: .*missing 1 required positional argument"):
        module_forward(copy_, layers, means, biases, image, masks=masks)
    with pytest.raises(ValueError, match=r"layer 'feat' takes 3 input units \(last dimension\), "
                                         r"but receives an input of shape \(6, 4\)"):
        module_forward(copy_, layers, means, biases,
                       {"image": image, "features": torch.randn(6, 4, dtype=F64)}, masks=masks)
    with pytest.raises(ValueError, match=r"module must be a dropout-free copy"):
        module_forward(net, layers, means, biases, (image, features), masks=masks)
    # token layers need token masks (unless the mask is all ones)
    tok = TokenNet().to(F64)
    tl = find_covered_layers(tok)
    tm, tb = _params(tok, tl)
    xt = torch.randn(4, 5, 3, dtype=F64)
    flat = draw_masks(tl, 4, torch.Generator().manual_seed(0), F64)
    with pytest.raises(ValueError, match=r"layer 'mid': its input has shape \(4, 5, 8\), so its "
                                         r"mask must have that shape .*input_shapes"):
        module_forward(dropout_free_copy(tok), tl, tm, tb, xt, masks=flat)
    with pytest.raises(ValueError, match=r"input_shapes\[1\] \(layer 'mid'\) must be "
                                         r"B x \.\.\. x Q with B = 4 and Q = 8, got \(4, 5, 7\)"):
        draw_masks(tl, 4, input_shapes=[(4, 5, 3), (4, 5, 7), (4, 8)])
    with pytest.raises(ValueError, match=r"input_shapes must have one entry per covered layer"):
        draw_masks(tl, 4, input_shapes=[(4, 5, 3)])
    cnn = DepthwiseCNN().to(F64)
    cl = find_covered_layers(cnn)
    cm, cb = _params(cnn, cl)
    bad = [m.expand(4, m.shape[1], 5, 5) if m.dim() == 4 else m
           for m in draw_masks(cl, 4, dtype=F64)]
    with pytest.raises(ValueError, match=r"layer 'conv1': .* one gate per input channel, shape "
                                         r"\(4, 1, 1, 1\), got \(4, 1, 5, 5\)"):
        module_forward(dropout_free_copy(cnn), cl, cm, cb, torch.randn(4, 1, 5, 5, dtype=F64),
                       masks=bad)

    class Merged(nn.Module):  # (B*T) x D into the linear layer: no batch dim first
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x.reshape(-1, 3)).reshape(x.shape[0], -1)

    merged = Merged().to(F64)
    with pytest.raises(ValueError, match=r"layer 'fc' receives an input of shape \(20, 3\) for "
                                         r"a batch of 4: .*batch dimension first"):
        covered_input_shapes(dropout_free_copy(merged), find_covered_layers(merged),
                             torch.randn(4, 5, 3, dtype=F64))
    assert covered_layer_shapes(dropout_free_copy(tok), tl, xt) == [
        ((4, 5, 3), (4, 5, 8)), ((4, 5, 8), (4, 5, 8)), ((4, 8), (4, 2))]
