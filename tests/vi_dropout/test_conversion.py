"""find_covered_layers / CoveredLayer / dropout_free_copy on MLPs, CNNs and custom modules."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vi_dropout.conversion import CoveredLayer, dropout_free_copy, find_covered_layers

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
    with pytest.raises(ValueError, match=r"no nn.Linear or nn.Conv2d layer"):
        find_covered_layers(nn.Sequential(nn.ReLU(), nn.Tanh()))
    with pytest.raises(ValueError, match=r"keep_probs\['1'\] must lie in \(0, 1\].*got 0.0"):
        find_covered_layers(_mlp(), keep_probs={"1": 0.0})
    with pytest.raises(ValueError, match=r"keep_probs\['6'\] must lie in \(0, 1\].*got 1.5"):
        find_covered_layers(_mlp(), keep_probs={"6": 1.5})
    with pytest.raises(ValueError, match=r"keep_prob \(1 - the dropout's p\) must lie in"):
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
