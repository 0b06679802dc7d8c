"""Concrete dropout for converted modules (vi_dropout.infer.module_concrete)."""

import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.vi_dropout.models.test_bnn import _two_input_data
from tests.vi_dropout.test_conversion import FunctionalDropoutMLP, LSTMNet
from tests.vi_dropout.test_forward import TokenNet, TwoInputs
from vi_dropout.conversion import dropout_free_copy, find_covered_layers
from vi_dropout.forward import module_forward
from vi_dropout.infer.concrete import ConcreteDropoutObjective
from vi_dropout.infer.elbo import negative_elbo
from vi_dropout.infer.module_concrete import ModuleConcreteObjective, fit_module_concrete
from vi_dropout.network import Architecture

D = torch.float64
ROOT = Path(__file__).resolve().parents[3]


def _mlp_pair(keep_probs=(0.9, 0.7), hidden=5, seed=0):
    """The toolkit MLP 3-hidden-2 (ReLU) as an nn.Sequential with nn.Dropout on each layer's
    input, and the ConcreteDropoutObjective with the same means."""
    g = torch.Generator().manual_seed(seed)
    arch = Architecture((3, hidden, 2), "relu")
    ws, bs = arch.init_params(generator=g, dtype=D)
    bs = [0.1 * torch.randn(b.shape, generator=g, dtype=D) for b in bs]
    net = nn.Sequential(nn.Dropout(1 - keep_probs[0]), nn.Linear(3, hidden), nn.ReLU(),
                        nn.Dropout(1 - keep_probs[1]), nn.Linear(hidden, 2)).double()
    mod = ModuleConcreteObjective(net, theta=0.05, tau=3.0, prior_length_scale=0.7)
    ref = ConcreteDropoutObjective(arch, list(keep_probs), theta=0.05, tau=3.0,
                                   prior_length_scale=0.7, weights=ws, biases=bs)
    with torch.no_grad():
        for m, b, w, bb in zip(mod.means, mod.biases, ws, bs):
            m.copy_(w)
            b.copy_(bb)
        for a, r in zip(mod.keep_prob_logits, ref.keep_prob_logits):
            a.copy_(r)
    x = torch.randn(7, 3, generator=g, dtype=D)
    y = torch.randn(7, 2, generator=g, dtype=D)
    return net, mod, ref, x, y, g


def test_module_objective_is_the_mlp_concrete_objective():
    """Same weights, relaxed masks and noise: value and every gradient (keep_prob logits,
    log theta, log tau, means) equal to 1e-12 in float64."""
    _, mod, ref, x, y, g = _mlp_pair()
    masks = [m.detach() for m in ref.sample_masks(7, 0.1, generator=g)]  # fixed masks
    noise = [torch.randn(7, out, generator=g, dtype=D) for out in (5, 2)]
    v_mod = mod(x, y, masks=masks, noise=noise, num_data=20)
    v_ref = ref(x, y, masks=masks, noise=noise, num_data=20)
    assert float(v_mod.detach()) == pytest.approx(float(v_ref.detach()), rel=1e-12, abs=1e-12)
    p_mod = [*mod.keep_prob_logits, mod.log_theta, mod.log_tau, *mod.means, *mod.biases]
    p_ref = [*ref.keep_prob_logits, ref.log_theta, ref.log_tau, *ref.weights, *ref.biases]
    for a, b in zip(torch.autograd.grad(v_mod, p_mod), torch.autograd.grad(v_ref, p_ref)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), (a, b)
    # keep_prob gradients through masks that do depend on the logit (relaxed draws of each side)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ma = mod.sample_masks(7, 0.1, generator=g1)
    mr = ref.sample_masks(7, 0.1, generator=g2)
    va = mod(x, y, masks=ma, noise=noise)
    vr = ref(x, y, masks=mr, noise=noise)
    ga = torch.autograd.grad(va, list(mod.keep_prob_logits))
    gr = torch.autograd.grad(vr, list(ref.keep_prob_logits))
    for a, b in zip(ga, gr):
        assert float(a) == pytest.approx(float(b), rel=1e-12, abs=1e-12)
        assert abs(float(a)) > 1e-6


def test_module_objective_is_negative_elbo_at_the_learned_values():
    """At the same float theta, tau and keep_probs the objective is negative_elbo."""
    net, mod, _, x, y, g = _mlp_pair()
    masks = mod.sample_masks(7, 0.2, generator=g)
    noise = mod.sample_noise(x, generator=g)
    value = mod(x, y, masks=masks, noise=noise, num_data=11)
    layers = [dataclasses.replace(c, keep_prob=float(mod.keep_probs[c.name].detach()))
              for c in find_covered_layers(net)]
    ref = negative_elbo(dropout_free_copy(net), layers, [m.detach() for m in mod.means],
                               [b.detach() for b in mod.biases], x, y, masks=masks,
                               theta=float(mod.theta.detach()), prior_length_scale=0.7,
                               tau=float(mod.tau.detach()), num_data=11, noise=noise)
    assert float(value.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)


def test_num_samples_averages_independent_draws():
    _, mod, _, x, y, _ = _mlp_pair()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    both = mod(x, y, num_samples=2, num_data=30, generator=g1)
    masks = mod.sample_masks(14, 0.1, generator=g2)
    noise = mod.sample_noise(torch.cat([x, x]), generator=g2)
    singles = [mod(x, y, masks=[m[k * 7:(k + 1) * 7] for m in masks],
                   noise=[e[k * 7:(k + 1) * 7] for e in noise], num_data=30) for k in (0, 1)]
    assert float(both.detach()) == pytest.approx(0.5 * float((singles[0] + singles[1]).detach()),
                                                 rel=1e-12)


def _small_cnn():
    spec = importlib.util.spec_from_file_location("small_cnn", ROOT / "examples" / "small_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make()


def test_small_cnn_short_fit_keeps_keep_probs_inside():
    net = _small_cnn()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (24,), generator=g)
    fit = fit_module_concrete(net, x, y, likelihood="categorical", steps=15, lr=1e-2,
                              hyper_lr=5e-2, batch_size=12, num_samples=2, seed=1)
    assert set(fit.keep_probs) == {"conv1", "conv2", "fc"}
    assert float(fit.keep_probs["conv1"]) == 1.0  # no dropout in front: not learned
    for name, init in (("conv2", 0.9), ("fc", 0.5)):
        kp = float(fit.keep_probs[name])
        assert 0.0 < kp < 1.0 and kp != pytest.approx(init, abs=1e-6)
    assert torch.isfinite(fit.losses).all() and fit.losses.dtype == torch.float32
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # untouched
    # conv masks drop whole channels; the conv keep_prob gets a gradient
    obj = fit.objective
    masks = obj.sample_masks(4, 0.1, generator=g)
    assert [tuple(m.shape) for m in masks] == [(4, 1, 1, 1), (4, 4, 1, 1), (4, 216)]
    loss = obj(x[:4], y[:4], masks=masks, num_data=24, generator=g)
    (grad,) = torch.autograd.grad(loss, [obj.keep_prob_logit(1)])
    assert math.isfinite(float(grad)) and float(grad) != 0.0
    # the covered layers' own weights are not parameters (the means replace them)
    names = {n for n, _ in obj.named_parameters()}
    assert not any(n.startswith("network.") for n in names)


def test_point_estimates_are_trained_and_load_into_writes_everything_back():
    net = nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.3),
                        nn.Linear(6, 1)).double()
    x = torch.randn(40, 2, dtype=D, generator=torch.Generator().manual_seed(1))
    y = x[:, :1].sin()
    fit = fit_module_concrete(net, x, y, steps=30, lr=2e-2, hyper_lr=5e-2, seed=2)
    obj = fit.objective
    names = {n for n, _ in obj.named_parameters()}
    assert {"network.1.weight", "network.1.bias"} <= names
    assert not torch.equal(obj.network.get_submodule("1").weight, net[1].weight)
    obj.load_into(net)
    kp = float(fit.keep_probs["4"])
    assert net[3].p == pytest.approx(1 - kp)
    net.eval()
    obj.network.eval()
    with torch.no_grad():
        masks = [torch.ones(40, 2, dtype=D), torch.full((40, 6), kp, dtype=D)]
        expected = module_forward(obj.network, obj.layers, list(obj.means), list(obj.biases), x,
                                  masks=masks, theta=0.0)
        assert torch.allclose(net(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs, name", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"keep_probs": 1.0}, "keep_probs"), ({"keep_probs": 0.0}, "keep_probs"),
    ({"keep_probs": {"3": 1.2}}, "keep_probs\\['3'\\]"), ({"keep_probs": {"9": 0.5}}, "keep_probs"),
    ({"theta": 0.0}, "theta"), ({"tau": -1.0}, "tau"), ({"steps": 0}, "steps"),
    ({"likelihood": "poisson"}, "likelihood"),
])
def test_bad_arguments_are_named(kwargs, name):
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 1)).double()
    x = torch.randn(8, 2, dtype=D)
    with pytest.raises(ValueError, match=name):
        fit_module_concrete(net, x, x[:, :1], steps=kwargs.pop("steps", 2), **kwargs)


def test_objective_checks_temperature_and_needs_a_dropout_layer():
    _, mod, _, x, y, _ = _mlp_pair()
    with pytest.raises(ValueError, match="temperature"):
        mod(x, y, temperature=0.0)
    plain = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="no covered layer has dropout"):
        ModuleConcreteObjective(plain)
    added = ModuleConcreteObjective(plain, keep_probs={"2": 0.8})
    assert float(added.keep_probs["2"].detach()) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no dropout module in front"):
        added.load_into(plain)


def test_bounds_check_names_the_parameter():
    _, mod, _, _, _, _ = _mlp_pair()
    mod.check_learned()
    with torch.no_grad():
        mod.keep_prob_logits[1].fill_(20.0)
    with pytest.raises(ValueError, match="keep_probs\\['4'\\] left the open interval"):
        mod.check_learned(3)
    with torch.no_grad():
        mod.keep_prob_logits[1].fill_(0.0)
        mod.log_tau.fill_(math.inf)
    with pytest.raises(ValueError, match="tau left"):
        mod.check_learned()
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 1)).double()
    x = torch.randn(8, 2, dtype=D)
    with pytest.raises(ValueError, match="keep_probs\\['3'\\]"):
        fit_module_concrete(net, x, x[:, :1], steps=5, lr=1e-3, hyper_lr=50.0, learn_tau=False,
                            learn_theta=False)


def test_your_network_page_concrete_code_runs():
    """The Concrete block of docs/your_network.md runs as written (fewer steps)."""
    import re

    text = (ROOT / "docs" / "your_network.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S)
              if "fit_module_concrete" in b]
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0].replace("steps=2000", "steps=20"), "your_network.md", "exec"),  # noqa: S102
         namespace)
    net, fit = namespace["net"], namespace["fit"]
    assert 0 < float(fit.keep_probs["3"]) < 1
    assert net[2].p == pytest.approx(1 - float(fit.keep_probs["3"]))



def test_token_layers_get_one_relaxed_mask_per_token():
    torch.manual_seed(0)
    net = TokenNet().double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, 3, dtype=D, generator=g)
    y = torch.randn(16, 2, dtype=D, generator=g)
    obj = ModuleConcreteObjective(net, theta=0.05, tau=2.0)
    shapes = [i for i, _ in obj.layer_shapes(x)]
    assert shapes == [(16, 5, 3), (16, 5, 8), (16, 8)]
    masks = obj.sample_masks(16, 0.1, generator=g, input_shapes=shapes)
    assert [tuple(m.shape) for m in masks] == shapes
    assert [tuple(e.shape) for e in obj.sample_noise(x, generator=g)] == [
        (16, 5, 8), (16, 5, 8), (16, 2)]
    fit = fit_module_concrete(net, x, y, steps=15, lr=1e-2, hyper_lr=5e-2, num_samples=2, seed=1)
    assert torch.isfinite(fit.losses).all()
    for name in ("mid", "head"):
        assert 0.0 < float(fit.keep_probs[name]) < 1.0
    assert float(fit.keep_probs["inp"]) == 1.0


def test_several_inputs_and_uncovered_dropout():
    torch.manual_seed(0)
    image, features, y = _two_input_data(n=24)
    fit = fit_module_concrete(TwoInputs().double(), (image, features), y, steps=10, batch_size=8,
                              seed=0)
    assert torch.isfinite(fit.losses).all() and 0 < float(fit.keep_probs["head"]) < 1
    with pytest.raises(ValueError, match=r"x: every input needs the same batch size"):
        fit_module_concrete(TwoInputs().double(), (image, features[:5]), y, steps=2)
    x = torch.randn(12, 4, 3, dtype=D)
    with pytest.raises(ValueError, match=r"nn\.LSTM 'lstm'"):
        fit_module_concrete(LSTMNet().double(), x, x[:, 0, :1], steps=2)
    fit = fit_module_concrete(LSTMNet().double(), x, x[:, 0, :1], steps=3,
                              uncovered_dropout="disable")
    assert [d.kind for d in fit.objective.disabled_dropout] == ["LSTM"]
    # a learned rate of a functional dropout cannot be written into the module: it says where
    net = FunctionalDropoutMLP().double()
    obj = ModuleConcreteObjective(net)
    with pytest.raises(ValueError, match=r"functional call 'dropout in FunctionalDropoutMLP\."
                                         r"forward': write the learned drop rate"):
        obj.load_into(net)
