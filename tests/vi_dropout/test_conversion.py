"""find_covered_layers / CoveredLayer / dropout_free_copy on MLPs, CNNs and custom modules."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vi_dropout.conversion import (
    Conversion,
    CoveredLayer,
    DisabledDropout,
    DropoutOff,
    convert_module,
    dropout_free_copy,
    find_covered_layers,
    is_dropout_free,
    without_disabled_dropout,
)

F64 = torch.float64


def _mlp():
    return nn.Sequential(nn.Dropout(0.1), nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.25),
                         nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2))


class SmallCNN(nn.Module):
    """conv -> ReLU -> Dropout2d -> conv -> ReLU -> Dropout -> flatten -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.drop1 = nn.Dropout2d(0.2)
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2)
        self.drop2 = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 3 * 3, 2)

    def forward(self, x):
        h = self.drop1(torch.relu(self.conv1(x)))
        h = self.drop2(torch.relu(self.conv2(h)))
        return self.fc(h.flatten(1))


class CustomForward(nn.Module):
    """A residual-style custom forward (traceable): the skip path has no dropout."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 5)
        self.norm = nn.LayerNorm(5)
        self.drop = nn.Dropout(0.3)
        self.hidden = nn.Linear(5, 5, bias=False)
        self.out = nn.Linear(5, 1)

    def forward(self, x):
        h = torch.tanh(self.norm(self.inp(x)))
        h = h + self.hidden(self.drop(h))
        return self.out(torch.reshape(h, (h.shape[0], -1)))


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 4)
        self.drop = nn.Dropout(0.5)
        self.b = nn.Linear(4, 1)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > 0:
            h = torch.relu(h)
        return self.b(self.drop(h))


def test_mlp_in_sequential():
    layers = find_covered_layers(_mlp())
    assert [(c.name, c.kind, c.keep_prob, c.dropout) for c in layers] == [
        ("1", "linear", 0.9, "0"), ("4", "linear", 0.75, "3"), ("6", "linear", 1.0, None)]
    assert [(c.num_rows, c.num_cols, c.weight_shape, c.has_bias) for c in layers] == [
        (8, 3, (8, 3), True), (6, 8, (6, 8), True), (2, 6, (2, 6), True)]


def test_cnn_dropout2d_before_conv_and_dropout_before_linear_through_flatten():
    layers = find_covered_layers(SmallCNN())
    assert [(c.name, c.kind, c.keep_prob, c.dropout) for c in layers] == [
        ("conv1", "conv2d", 1.0, None), ("conv2", "conv2d", 0.8, "drop1"),
        ("fc", "linear", 0.5, "drop2")]
    conv2 = layers[1]
    assert (conv2.num_rows, conv2.num_cols, conv2.weight_shape) == (4 * 3 * 3, 3, (4, 3, 3, 3))


def test_sequential_cnn_with_flatten_module_before_dropout():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Dropout2d(0.5), nn.Conv2d(3, 2, 2),
                        nn.Flatten(), nn.Dropout(0.1), nn.Linear(2 * 3 * 3, 1))
    assert [(c.name, c.keep_prob, c.dropout) for c in find_covered_layers(net)] == [
        ("0", 1.0, None), ("3", 0.5, "2"), ("6", 0.9, "5")]


def test_conv_columns_are_input_channels():
    """A column of the K x Q matrix holds every weight of one input channel: dropping channel a
    of the input equals zeroing column a; to_columns / from_columns are inverse bijections."""
    conv = nn.Conv2d(3, 4, (2, 3), padding=1).to(F64)
    layer = find_covered_layers(nn.Sequential(nn.Dropout2d(0.5), conv))[0]
    w = conv.weight.detach()
    cols = layer.to_columns(w)
    assert cols.shape == (4 * 2 * 3, 3)
    torch.testing.assert_close(layer.from_columns(cols), w, rtol=0, atol=0)
    for a in range(3):
        assert torch.equal(cols[:, a].sort().values, w[:, a].flatten().sort().values)
    h = torch.randn(5, 3, 6, 6, dtype=F64)
    z = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    dropped_input = F.conv2d(h * z[None, :, None, None], w, conv.bias, padding=1)
    dropped_columns = F.conv2d(h, layer.from_columns(cols * z), conv.bias, padding=1)
    # the same sums in another order: equal up to float64 rounding
    torch.testing.assert_close(dropped_input, dropped_columns, rtol=1e-12, atol=1e-14)
    # with a leading batch dim too
    stacked = torch.stack([w, 2 * w])
    torch.testing.assert_close(layer.from_columns(layer.to_columns(stacked)), stacked,
                               rtol=0, atol=0)


def test_custom_forward_is_traced():
    layers = find_covered_layers(CustomForward())
    assert [(c.name, c.keep_prob, c.has_bias, c.dropout) for c in layers] == [
        ("inp", 1.0, True, None), ("hidden", 0.7, False, "drop"), ("out", 1.0, True, None)]


def test_untraceable_needs_the_explicit_map():
    with pytest.raises(ValueError, match=r"cannot be traced.*keep_probs"):
        find_covered_layers(Untraceable())
    layers = find_covered_layers(Untraceable(), keep_probs={"b": 0.5})
    assert [(c.name, c.keep_prob, c.dropout) for c in layers] == [("a", 1.0, None),
                                                                  ("b", 0.5, None)]


def test_refusals_name_the_layer_or_argument():
    with pytest.raises(ValueError, match=r"elementwise Dropout '0'.*Conv2d '1'.*Dropout2d"):
        find_covered_layers(nn.Sequential(nn.Dropout(0.1), nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValueError, match=r"dropout '1' feeds layer '2' \(LayerNorm\)"):
        find_covered_layers(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1), nn.LayerNorm(3),
                                          nn.Linear(3, 1)))
    with pytest.raises(ValueError, match=r"no nn.Linear, nn.Conv1d or nn.Conv2d layer"):
        find_covered_layers(nn.Sequential(nn.ReLU(), nn.Tanh()))
    with pytest.raises(ValueError, match=r"keep_probs\['1'\] must lie in \(0, 1\].*got 0.0"):
        find_covered_layers(_mlp(), keep_probs={"1": 0.0})
    with pytest.raises(ValueError, match=r"keep_probs\['6'\] must lie in \(0, 1\].*got 1.5"):
        find_covered_layers(_mlp(), keep_probs={"6": 1.5})
    with pytest.raises(ValueError, match=r"keep_prob \(1 - p of '0' in front of '1'\) must lie in"):
        find_covered_layers(nn.Sequential(nn.Dropout(1.0), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match=r"keep_probs names \['2'\].*layers are \['1', '4', '6'\]"):
        find_covered_layers(_mlp(), keep_probs={"2": 0.5})
    with pytest.raises(ValueError, match="module must be a torch.nn.Module"):
        find_covered_layers("net")


def test_means_and_module_weights_are_inverse_maps():
    net = SmallCNN().to(F64)
    for layer in find_covered_layers(net):
        w = net.get_submodule(layer.name).weight.detach()
        m = layer.means_from_module(w)
        assert m.shape == (layer.num_rows, layer.num_cols)
        torch.testing.assert_close(layer.to_columns(w) / layer.keep_prob, m, rtol=0, atol=0)
        torch.testing.assert_close(layer.module_weight(m), w, rtol=1e-15, atol=0)


def test_dropout_free_copy_keeps_everything_but_dropout():
    net = SmallCNN().to(F64).train()
    clone = dropout_free_copy(net)
    assert not any(isinstance(m, (nn.Dropout, nn.Dropout2d)) for m in clone.modules())
    assert isinstance(net.drop1, nn.Dropout2d)  # the original is untouched
    assert clone.training
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), clone.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2) and p1 is not p2
    x = torch.randn(4, 1, 7, 7, dtype=F64)
    torch.testing.assert_close(clone(x), net.eval()(x), rtol=0, atol=0)


def test_covered_layer_is_frozen():
    layer = CoveredLayer("fc", "linear", 0.5, (2, 3), True)
    with pytest.raises(AttributeError):
        layer.keep_prob = 0.1


def test_dropout_through_nn_flatten_drops_the_linear_layers_inputs():
    """``Dropout -> nn.Flatten -> Linear`` (the usual Sequential CNN head): elementwise dropout of
    the feature map is dropout of the flattened linear layer's input units."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                              torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3))
    layers = find_covered_layers(net)
    assert [(c.name, c.kind, c.keep_prob, c.dropout) for c in layers] == [
        ("0", "conv2d", 1.0, None), ("4", "linear", 0.7, "2")]



# --- networks written the ordinary way ---------------------------------------------------------
class FunctionalDropoutMLP(nn.Module):
    """``F.dropout(h, p=0.3, training=self.training)`` in front of the second linear layer."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 16)
        self.fc2 = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc2(F.dropout(torch.relu(self.fc1(x)), p=0.3, training=self.training))


class TorchDropoutForms(nn.Module):
    """Positional ``F.dropout``, ``torch.dropout``, a ``training=False`` call (inactive) and
    ``F.dropout2d`` before a convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.conv2 = nn.Conv2d(3, 2, 3)
        self.a = nn.Linear(2 * 2 * 2, 6)
        self.b = nn.Linear(6, 5)
        self.c = nn.Linear(5, 1)

    def forward(self, x):
        h = F.dropout2d(torch.relu(self.conv(x)), 0.5, self.training)
        h = torch.relu(self.conv2(h)).flatten(1)
        h = torch.tanh(self.a(F.dropout(h, 0.2, self.training)))
        h = self.b(torch.dropout(h, 0.25, True))
        return self.c(F.dropout(torch.relu(h), p=0.6, training=False))


class LSTMNet(nn.Module):
    """Token projection -> LSTM(num_layers=2, dropout=0.3) -> last step -> Dropout -> Linear."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 8)
        self.lstm = nn.LSTM(8, 8, num_layers=2, dropout=0.3, batch_first=True)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        h, _ = self.lstm(self.proj(x))
        return self.fc(self.drop(h[:, -1]))


class AttentionNet(nn.Module):
    """Token projection -> MultiheadAttention(dropout=0.1) -> mean over tokens -> Dropout ->
    Linear."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 8)
        self.attn = nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        h = self.proj(x)
        h, _ = self.attn(h, h, h)
        return self.fc(self.drop(h.mean(1)))


class TransformerNet(nn.Module):
    """Token projection -> TransformerEncoderLayer (dropout 0.1) -> mean -> Dropout -> Linear."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 8)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(self.drop(self.enc(self.proj(x)).mean(1)))


UNCOVERED = {  # model, input shape, what the refusal names
    "lstm": (LSTMNet, (5, 4, 3), [r"nn\.LSTM 'lstm'.*dropout=0\.3"]),
    "attention": (AttentionNet, (5, 4, 3), [r"nn\.MultiheadAttention 'attn'.*dropout=0\.1"]),
    "transformer": (TransformerNet, (5, 4, 3),
                    [r"nn\.MultiheadAttention 'enc\.self_attn'",
                     r"Dropout 'enc\.dropout1' runs inside nn\.TransformerEncoderLayer 'enc'"]),
}


def test_functional_dropout_before_a_linear_layer_is_covered():
    net = FunctionalDropoutMLP().eval()  # traced in training mode: training=self.training counts
    layers = find_covered_layers(net)
    assert [(c.name, c.keep_prob, c.dropout, c.dropout_call) for c in layers] == [
        ("fc1", 1.0, None, None), ("fc2", 0.7, None, "dropout in FunctionalDropoutMLP.forward")]
    assert not net.training  # the flags are restored after tracing
    forms = find_covered_layers(TorchDropoutForms())
    assert [(c.name, c.kind, c.keep_prob) for c in forms] == [
        ("conv", "conv2d", 1.0), ("conv2", "conv2d", 0.5), ("a", "linear", 0.8),
        ("b", "linear", 0.75), ("c", "linear", 1.0)]  # training=False: never drops


def test_no_dropout_acts_in_the_dropout_free_copy():
    """In training mode the network is random and its dropout-free copy deterministic (and
    equal to the network in evaluation mode) for functional, module and attention dropout."""
    torch.manual_seed(0)
    for net, x in [(FunctionalDropoutMLP(), torch.randn(6, 4)),
                   (TorchDropoutForms(), torch.randn(6, 1, 6, 6)),
                   (SmallCNN(), torch.randn(6, 1, 7, 7))]:
        net = net.to(F64).train()
        x = x.to(F64)
        assert not torch.equal(net(x), net(x))
        clone = dropout_free_copy(net)
        assert clone.training and is_dropout_free(clone) and not is_dropout_free(net)
        torch.testing.assert_close(clone(x), clone(x), rtol=0, atol=0)
        if not isinstance(net, TorchDropoutForms):  # torch.dropout(..., True) acts in eval too
            torch.testing.assert_close(clone(x), net.eval()(x), rtol=0, atol=0)


def test_dropout_off_mode_and_the_copy_do_not_leak():
    x = torch.ones(1000, dtype=F64)
    with DropoutOff():
        assert torch.equal(F.dropout(x, 0.5, True), x)
        assert torch.equal(torch.dropout(x, 0.5, True), x)
        assert torch.equal(nn.Dropout1d(0.5)(x.reshape(10, 10, 10)), x.reshape(10, 10, 10))
    assert not torch.equal(F.dropout(x, 0.5, True), x)  # active again outside

    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x):
            return self.fc(x)

    clone = dropout_free_copy(Fails())
    with pytest.raises(RuntimeError):
        clone(torch.zeros(3, 5))  # wrong width: the forward raises inside the mode
    assert not torch.equal(F.dropout(x, 0.5, True), x)  # and the mode was left
    again = dropout_free_copy(clone)  # copies of copies stay dropout-free
    assert is_dropout_free(again) and len(again._forward_pre_hooks) == 1


@pytest.mark.parametrize("name", list(UNCOVERED))
def test_uncovered_dropout_is_refused_by_name_and_disabled_only_when_asked(name):
    make, shape, patterns = UNCOVERED[name]
    torch.manual_seed(0)
    net = make().to(F64)
    for pattern in patterns:
        with pytest.raises(ValueError, match=pattern + r".*uncovered_dropout='disable'"):
            find_covered_layers(net)
    conversion = convert_module(net, uncovered_dropout="disable")
    assert isinstance(conversion, Conversion) and conversion.uncovered_dropout == "disable"
    assert [c.name for c in conversion.layers] == [
        "proj", "fc"]  # torch.nn containers' inner layers are not covered
    assert all(isinstance(d, DisabledDropout) and d.keep_prob < 1 and d.reason
               for d in conversion.disabled)
    kinds = {d.kind for d in conversion.disabled}
    assert kinds == {"lstm": {"LSTM"}, "attention": {"MultiheadAttention"},
                     "transformer": {"MultiheadAttention", "Dropout"}}[name]
    # the disabled dropout acts in the network but not in its dropout-free copy
    x = torch.randn(*shape, dtype=F64)
    net.train()
    clone = dropout_free_copy(net)
    torch.testing.assert_close(clone(x), clone(x), rtol=0, atol=0)
    if name != "transformer":  # the transformer's eval fast path differs by rounding
        torch.testing.assert_close(clone(x), net.eval()(x), rtol=1e-12, atol=1e-12)
    net.train()
    # the network as the model sees it: the disabled dropout off, the covered one still acting
    seen = without_disabled_dropout(net, conversion)
    own = seen.train()
    torch.manual_seed(3)
    a = own(x)
    torch.manual_seed(3)
    b = own(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same seed, same masks
    assert not torch.equal(a, own(x))  # the covered dropout still draws


def test_uncovered_dropout_of_other_kinds_is_refused_with_honest_advice():
    cases = [
        (nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.2)), r"'1' is on the network's output"),
        (nn.Sequential(nn.AlphaDropout(0.2), nn.Linear(3, 1)), r"alpha dropout"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout2d(0.2), nn.Flatten(), nn.Linear(8, 1)),
         r"Dropout2d '1' \(channel2d dropout\) in front of nn\.Linear '3'"),
        (nn.Sequential(nn.Dropout1d(0.2), nn.Conv2d(2, 2, 3)),
         r"Dropout1d '0' \(channel1d dropout\) in front of nn\.Conv2d '1'"),
    ]
    for net, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as info:
            find_covered_layers(net)
        assert "keep_probs" not in str(info.value)  # no advice that silently changes the model
        disabled = convert_module(net, uncovered_dropout="disable").disabled
        assert len(disabled) == 1 and disabled[0].keep_prob == pytest.approx(0.8)

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.3)
            self.a = nn.Linear(3, 1)
            self.b = nn.Linear(3, 1)

        def forward(self, x):
            h = self.drop(x)
            return self.a(h) + self.b(h)

    with pytest.raises(ValueError, match=r"dropout 'drop': its output goes to 2 places"):
        find_covered_layers(TwoHeads())

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.out = nn.Linear(3, 1)

        def forward(self, x):
            return self.out(x + F.dropout(self.fc(x), 0.1, self.training))

    with pytest.raises(ValueError, match=r"F\.dropout 'dropout in Residual\.forward' feeds "
                                         r"operation 'add'"):
        find_covered_layers(Residual())
    conversion = convert_module(Residual(), uncovered_dropout="disable")
    assert conversion.disabled == (DisabledDropout(
        "dropout in Residual.forward", "F.dropout", 0.9, conversion.disabled[0].reason),)
    net = Residual().to(F64).train()
    x = torch.randn(50, 3, dtype=F64)
    seen = without_disabled_dropout(net, conversion)  # a GraphModule without that call
    torch.testing.assert_close(seen(x), net.eval()(x), rtol=0, atol=0)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(4, 12)
            self.out = nn.Linear(4, 1)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, -1)
            h = F.scaled_dot_product_attention(q, k, v, dropout_p=0.25)
            return self.out(h.mean(1))

    with pytest.raises(ValueError, match=r"F\.scaled_dot_product_attention call"):
        find_covered_layers(Attention())
    net = Attention().to(F64)
    conversion = convert_module(net, uncovered_dropout="disable")
    assert [(d.kind, d.keep_prob) for d in conversion.disabled] == [
        ("F.scaled_dot_product_attention", 0.75)]
    clone = dropout_free_copy(net)
    x = torch.randn(3, 5, 4, dtype=F64)
    torch.testing.assert_close(clone(x), clone(x), rtol=0, atol=0)
    assert not torch.equal(net(x), net(x))


def test_shared_layers_and_bad_policy_are_refused():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    with pytest.raises(ValueError, match=r"\{'fc': 2\} are called more than once"):
        find_covered_layers(Shared())
    with pytest.raises(ValueError, match=r"uncovered_dropout must be one of \('refuse', "
                                         r"'disable'\), got 'ignore'"):
        find_covered_layers(_mlp(), uncovered_dropout="ignore")


def test_explicit_map_still_inspects_the_module_tree():
    """Without tracing the LSTM's dropout is still found; layers inside torch.nn containers
    (the attention's out_proj, the transformer's feed-forward) are not covered."""
    with pytest.raises(ValueError, match=r"nn\.LSTM 'lstm'"):
        find_covered_layers(LSTMNet(), keep_probs={"fc": 0.5})
    layers = find_covered_layers(TransformerNet(), keep_probs={"fc": 0.5},
                                 uncovered_dropout="disable")
    assert [(c.name, c.keep_prob) for c in layers] == [("proj", 1.0), ("fc", 0.5)]
    with pytest.raises(ValueError, match=r"keep_probs names \['enc\.linear1'\]"):
        find_covered_layers(TransformerNet(), keep_probs={"enc.linear1": 0.5},
                            uncovered_dropout="disable")


# --- grouped / depthwise and 1-d convolutions --------------------------------------------------
def _grouped(kind, in_ch, out_ch, groups, kernel):
    conv = (nn.Conv2d if kind == "conv2d" else nn.Conv1d)(in_ch, out_ch, kernel, groups=groups)
    drop = nn.Dropout2d(0.5) if kind == "conv2d" else nn.Dropout1d(0.5)
    return conv.to(F64), find_covered_layers(nn.Sequential(drop, conv))[0]


@pytest.mark.parametrize("kind,in_ch,out_ch,groups,kernel", [
    ("conv2d", 4, 6, 2, (2, 3)), ("conv2d", 3, 6, 3, 3),  # grouped; depthwise, multiplier 2
    ("conv2d", 5, 5, 5, 3), ("conv1d", 4, 8, 4, 3), ("conv1d", 3, 2, 1, 2)])
def test_grouped_conv_columns_are_input_channels(kind, in_ch, out_ch, groups, kernel):
    """K x Q with K = out/g * prod(kernel) and Q = in: column c holds every weight attached to
    input channel c (dropping the channel = zeroing the column); to_columns / from_columns are
    exact inverses."""
    conv, layer = _grouped(kind, in_ch, out_ch, groups, kernel)
    w = conv.weight.detach()
    ks = (kernel,) * (2 if kind == "conv2d" else 1) if isinstance(kernel, int) else kernel
    assert (layer.kind, layer.groups, layer.num_rows, layer.num_cols) == (
        kind, groups, out_ch // groups * math.prod(ks), in_ch)
    cols = layer.to_columns(w)
    assert cols.shape == (layer.num_rows, layer.num_cols)
    torch.testing.assert_close(layer.from_columns(cols), w, rtol=0, atol=0)
    stacked = torch.stack([w, 2 * w, -w]).reshape(3, 1, *w.shape)  # leading dims too
    torch.testing.assert_close(layer.from_columns(layer.to_columns(stacked)), stacked,
                               rtol=0, atol=0)
    torch.testing.assert_close(layer.to_columns(layer.from_columns(cols)), cols, rtol=0, atol=0)
    ig = in_ch // groups
    og = out_ch // groups
    for c in range(in_ch):  # column c: the weights from channel c to its group's outputs
        j, local = divmod(c, ig)
        expected = w[j * og:(j + 1) * og, local].flatten().sort().values
        assert torch.equal(cols[:, c].sort().values, expected)
    convf = F.conv2d if kind == "conv2d" else F.conv1d
    h = torch.randn(2, in_ch, *([6] * len(ks)), dtype=F64)
    z = (torch.arange(in_ch) % 2).to(F64)
    zb = z.reshape(1, -1, *([1] * len(ks)))
    dropped_input = convf(h * zb, w, conv.bias, groups=groups)
    dropped_columns = convf(h, layer.from_columns(cols * z), conv.bias, groups=groups)
    torch.testing.assert_close(dropped_input, dropped_columns, rtol=1e-12, atol=1e-14)


def test_mobilenet_style_depthwise_blocks_are_covered():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.2),
                        nn.Conv2d(4, 8, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(8),
                        nn.ReLU6(), nn.Conv2d(8, 6, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.1), nn.Linear(6, 3))
    assert [(c.name, c.kind, c.groups, c.keep_prob, c.num_rows, c.num_cols)
            for c in find_covered_layers(net)] == [
        ("0", "conv2d", 1, 1.0, 4 * 9, 1), ("3", "conv2d", 4, 0.8, 2 * 9, 4),
        ("6", "conv2d", 1, 1.0, 6, 8), ("10", "linear", 1, 0.9, 3, 6)]
