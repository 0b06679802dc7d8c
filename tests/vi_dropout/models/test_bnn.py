"""ModuleBNN / DropoutGuide: sites, Pyro inference, and the way back into the module."""

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.poutine import condition, replay, trace
from torch import nn

from tests.common import toy_regression
from tests.vi_dropout.test_conversion import UNCOVERED, SmallCNN, Untraceable
from tests.vi_dropout.test_forward import DepthwiseCNN, TokenNet, TwoInputs
from vi_dropout.conversion import convert_module
from vi_dropout.distributions import DropoutNormal
from vi_dropout.guides import DropoutGuide
from vi_dropout.models import ModuleBNN

F64 = torch.float64
#: Monte Carlo comparisons pass within this many standard errors
NUM_SE = 5.0


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 16),
                         nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1)).to(F64)


def _cnn(seed=0):
    torch.manual_seed(seed)
    return SmallCNN().to(F64)


def _bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(8, 1)).to(F64)


def test_sites_are_columns_with_the_prior_and_the_guide_matches():
    net = _cnn()
    model = ModuleBNN(net, prior_length_scale=2.0, tau=5.0)
    guide = DropoutGuide(model, theta=0.01)
    x = torch.randn(6, 1, 7, 7, dtype=F64)
    y = torch.randn(6, 2, dtype=F64)
    gtr = trace(guide).get_trace(x, y)
    mtr = trace(replay(model, trace=gtr)).get_trace(x, y, num_data=30)
    expected = {"conv1": (3 * 3 * 3, 1, 1.0), "conv2": (4 * 3 * 3, 3, 0.8), "fc": (2, 36, 0.5)}
    for name, (k, q, kp) in expected.items():
        site = mtr.nodes[f"{name}.weight"]
        assert site["value"].shape == (k, q)
        prior = site["fn"]
        assert prior.event_shape == (k, q) and prior.batch_shape == ()
        assert bool((prior.base_dist.scale == 0.5).all()) and bool((prior.base_dist.loc == 0).all())
        qw = gtr.nodes[f"{name}.weight"]["fn"]
        assert isinstance(qw, DropoutNormal) and float(qw.keep_prob) == pytest.approx(kp)
        assert mtr.nodes[f"{name}.bias"]["value"].shape == (k // (9 if name != "fc" else 1),)
    assert mtr.nodes["f"]["value"].shape == (6, 2)
    assert mtr.nodes["obs"]["scale"] == pytest.approx(30 / 6)
    torch.testing.assert_close(mtr.nodes["obs"]["value"], y)


def test_the_model_at_the_mean_of_q_is_the_module_in_eval_mode():
    """f(x; pi M, m_b) is the standard dropout network: nn.Dropout in eval mode is the identity
    and the module's weights are pi M."""
    for net, x in [(_mlp(), torch.randn(5, 2, dtype=F64)), (_cnn(), torch.randn(5, 1, 7, 7,
                                                                                dtype=F64))]:
        model = ModuleBNN(net)
        guide = DropoutGuide(model)
        data = {}
        for c in model.layers:
            data[f"{c.name}.weight"] = c.keep_prob * guide.median()[f"{c.name}.weight"]
            data[f"{c.name}.bias"] = guide.median()[f"{c.name}.bias"]
        f = trace(condition(model, data=data)).get_trace(x).nodes["f"]["value"]
        torch.testing.assert_close(f, net.eval()(x), rtol=1e-13, atol=1e-14)


def _mc_moments(samples):
    """Mean, variance and their standard errors over dim 0."""
    t = samples.shape[0]
    mean = samples.mean(0)
    c = samples - mean
    var = c.square().sum(0) / (t - 1)
    return mean, var, (var / t).sqrt(), ((c.pow(4).mean(0) - var.square()).clamp_min(0) / t).sqrt()


@pytest.mark.parametrize("make,shape", [(_mlp, (4, 2)), (_cnn, (3, 1, 7, 7))])
def test_predictive_equals_mc_dropout_through_the_modules_own_dropout(make, shape):
    """After a few SVI steps, Predictive draws of f and MC dropout with the module's nn.Dropout
    (after load_into a differently initialised module) have the same means and variances per
    output, within NUM_SE standard errors of the difference. Predictive draws one sample per
    model call (~3 ms each), so it gets T = 500 and MC dropout (one batched forward) T = 4000:
    the standard error of the difference, sqrt(s1^2 / 500 + s2^2 / 4000), is computed from the
    draws as before and is 1.5x the 2000-and-2000 one (at NUM_SE = 5, means off by 0.24 sd of f
    are caught instead of 0.16 sd). The jitter theta = 1e-3 adds a variance far below those
    errors."""
    net = make(0)
    model = ModuleBNN(net, prior_length_scale=1.0, tau=10.0)
    guide = DropoutGuide(model, theta=1e-3)
    x = torch.randn(*shape, dtype=F64)
    y = torch.randn(shape[0], 1 if make is _mlp else 2, dtype=F64)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    before = guide.median()["0.weight" if make is _mlp else "fc.weight"].clone()
    for _ in range(5):
        svi.step(x, y)
    assert not torch.equal(before, guide.median()["0.weight" if make is _mlp else "fc.weight"])
    t, t_mc = 500, 4000
    f = Predictive(model, guide=guide, num_samples=t, return_sites=["f", "obs"])(x)["f"]
    assert f.shape == (t, shape[0], y.shape[1])
    other = guide.load_into(make(1)).train()
    with torch.no_grad():
        mc = other(x.repeat(t_mc, *([1] * (x.dim() - 1)))).reshape(t_mc, shape[0], -1)
    m1, v1, sm1, sv1 = _mc_moments(f)
    m2, v2, sm2, sv2 = _mc_moments(mc)
    assert bool((v2 > 0).all())  # dropout makes the outputs random
    assert bool(((m1 - m2).abs() <= NUM_SE * (sm1.square() + sm2.square()).sqrt()).all())
    assert bool(((v1 - v2).abs() <= NUM_SE * (sv1.square() + sv2.square()).sqrt()).all())


def test_parameters_round_trip_module_guide_module_exactly():
    """keep_probs 0.5 and 0.25 (powers of two): W' / pi * pi is exact in floating point."""
    net = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.75),
                        nn.Linear(4, 2, bias=False)).to(F64)
    guide = DropoutGuide(ModuleBNN(net))
    torch.testing.assert_close(guide.median()["1.weight"], net[1].weight.detach() / 0.5,
                               rtol=0, atol=0)
    assert "4.bias" not in guide.median()
    fresh = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.75),
                          nn.Linear(4, 2, bias=False)).to(F64)
    assert fresh is guide.load_into(fresh)
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), fresh.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def test_guide_state_dict_round_trips():
    net = _cnn()
    model = ModuleBNN(net)
    guide = DropoutGuide(model, theta=0.05)
    other = DropoutGuide(model, theta=0.05, init_from_module=False)
    assert not torch.equal(other.weight_locs[1], guide.weight_locs[1])
    assert bool((other.bias_locs[0] == 0).all())
    other.load_state_dict(guide.state_dict())
    for a, b in zip(guide.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("likelihood", ["gaussian", "categorical"])
def test_svi_with_trace_elbo_reduces_the_loss(likelihood):
    x, y = toy_regression(64, 2, 1)
    out = 1
    if likelihood == "categorical":
        y, out = (y[:, 0] > 0).long(), 2
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, out)).to(F64)
    model = ModuleBNN(net, prior_length_scale=1.0, tau=10.0, likelihood=likelihood)
    guide = DropoutGuide(model, theta=1e-2)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    first = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    for _ in range(300):
        svi.step(x, y)
    last = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    assert last < first - 20.0, (first, last)


def test_uncovered_parameters_are_point_estimates():
    net = _bn_net()
    model = ModuleBNN(net)
    guide = DropoutGuide(model)
    summary = model.summary()
    for text in ("| 0 | linear | 8 x 2 | 1 | yes | - |", "| 4 | linear | 1 x 8 | 0.8 | yes | 3 |",
                 "1.weight (8,)", "1.bias (8,)"):
        assert text in summary, summary
    assert [n for n, _ in model.uncovered_parameters()] == ["1.weight", "1.bias"]
    x, y = toy_regression(32, 2, 1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 5e-2}), Trace_ELBO())
    for _ in range(5):
        svi.step(x, y)
    store = pyro.get_param_store()
    assert {"net$$$1.weight", "net$$$1.bias"} <= set(store.keys())
    assert not any(k.startswith("net$$$0.") or k.startswith("net$$$4.") for k in store.keys())
    bn = model.net.get_submodule("1")
    assert not torch.equal(bn.weight.detach(), net[1].weight.detach())  # trained
    fresh = guide.load_into(_bn_net(3))
    assert torch.equal(fresh[1].weight, bn.weight) and torch.equal(fresh[1].running_mean,
                                                                   bn.running_mean)


def test_untraceable_module_with_an_explicit_map():
    model = ModuleBNN(Untraceable().to(F64), keep_probs={"b": 0.5})
    assert [(c.name, c.keep_prob) for c in model.layers] == [("a", 1.0), ("b", 0.5)]
    guide = DropoutGuide(model)
    x = torch.randn(4, 2, dtype=F64)
    f = Predictive(model, guide=guide, num_samples=3, return_sites=["f"])(x)["f"]
    assert f.shape == (3, 4, 1)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="no nn.Linear, nn.Conv1d or nn.Conv2d layer"):
        ModuleBNN(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match=r"keep_probs\['b'\] must lie in \(0, 1\]"):
        ModuleBNN(Untraceable(), keep_probs={"b": 1.5})
    with pytest.raises(ValueError, match="keep_prob .* must lie in"):
        ModuleBNN(nn.Sequential(nn.Dropout(1.0), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="prior_length_scale"):
        ModuleBNN(_mlp(), prior_length_scale=0.0)
    with pytest.raises(ValueError, match="tau"):
        ModuleBNN(_mlp(), tau=-1.0)
    with pytest.raises(ValueError, match="likelihood"):
        ModuleBNN(_mlp(), likelihood="poisson")
    with pytest.raises(ValueError, match="module must be a torch.nn.Module"):
        ModuleBNN("net")
    model = ModuleBNN(_mlp())
    with pytest.raises(ValueError, match="theta"):
        DropoutGuide(model, theta=0.0)
    with pytest.raises(ValueError, match="model must be a ModuleBNN"):
        DropoutGuide(_mlp())
    x = torch.randn(5, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"y must have shape N x D .* got a 1-D tensor"):
        model(x, torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match=r"y must have the shape of the module's output \(5, 1\)"):
        model(x, torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"y must have 5 rows like x"):
        model(x, torch.zeros(4, 1, dtype=F64))
    with pytest.raises(ValueError, match="num_data"):
        model(x, torch.zeros(5, 1, dtype=F64), num_data=0)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x must be finite"):
        model(bad)
    cat = ModuleBNN(_mlp(), likelihood="categorical")
    with pytest.raises(ValueError, match=r"y must hold class indices < 1"):
        cat(x, torch.ones(5, dtype=torch.long))
    guide = DropoutGuide(model)
    wrong = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 8),
                          nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1)).to(F64)
    with pytest.raises(ValueError, match=r"module layer '3' has weight shape \(8, 16\), "
                                         r"expected \(16, 16\)"):
        guide.load_into(wrong)
    with pytest.raises(ValueError, match="module has no layer '0'"):
        guide.load_into(nn.Module())



# --- several inputs, vectorised particles, disabled dropout -------------------------------------
def _two_input_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 1, 5, 5, dtype=F64, generator=g)
    features = torch.randn(n, 3, dtype=F64, generator=g)
    y = (image.mean((1, 2, 3)) + features[:, :1].T).T.tanh() + 0.1 * torch.randn(
        n, 1, dtype=F64, generator=g)
    return image, features, y


def test_two_input_model_through_svi_and_predictive():
    """forward(self, image, features) with x a tuple or a dict: SVI (Trace_ELBO) lowers the loss,
    Predictive draws f for both forms (sequential and parallel) with the right shapes."""
    torch.manual_seed(0)
    image, features, y = _two_input_data()
    model = ModuleBNN(TwoInputs().to(F64), prior_length_scale=1.0, tau=10.0)
    guide = DropoutGuide(model, theta=1e-2)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    x = (image, features)
    first = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    for step in range(200):
        svi.step(x if step % 2 else {"image": image, "features": features}, y)
    last = sum(svi.evaluate_loss(x, y) for _ in range(20)) / 20
    assert last < first - 20.0, (first, last)
    for form in (x, {"features": features, "image": image}):
        for parallel in (False, True):
            pyro.set_rng_seed(1)
            f = Predictive(model, guide=guide, num_samples=30, return_sites=["f", "obs"],
                           parallel=parallel)(form)
            assert f["f"].shape == (30, 48, 1) and f["obs"].shape == (30, 48, 1)
    pyro.set_rng_seed(2)
    a = Predictive(model, guide=guide, num_samples=5, return_sites=["f"])(x)["f"]
    pyro.set_rng_seed(2)
    b = Predictive(model, guide=guide, num_samples=5, return_sites=["f"])(
        {"image": image, "features": features})["f"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same draws whatever the form


@pytest.mark.parametrize("make,shape,likelihood", [
    (_bn_net, (10, 2), "gaussian"), (DepthwiseCNN, (8, 1, 5, 5), "categorical"),
    (TokenNet, (8, 4, 3), "gaussian")])
def test_vectorised_trace_elbo_is_the_mean_of_its_particles(make, shape, likelihood):
    """Trace_ELBO(num_particles=S, vectorize_particles=True, max_plate_nesting=1) against the
    particles one at a time with the same draws (the guide traced in the same particle plate
    under the same seed): the loss and the gradients of every guide and point-estimate parameter
    agree to float64 rounding (rtol 1e-10)."""
    torch.manual_seed(0)
    net = make().to(F64) if make is not _bn_net else make()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, dtype=F64, generator=g)
    y = (torch.randn(shape[0], 2 if make is not _bn_net else 1, dtype=F64, generator=g)
         if likelihood == "gaussian" else torch.randint(0, 2, (shape[0],), generator=g))
    model = ModuleBNN(net, prior_length_scale=0.7, tau=3.0, likelihood=likelihood)
    guide = DropoutGuide(model, theta=0.05)
    s, n = 5, 40
    params = [*guide.parameters(), *model.net.parameters()]
    pyro.set_rng_seed(0)
    elbo = Trace_ELBO(num_particles=s, vectorize_particles=True, max_plate_nesting=1)
    vec = elbo.differentiable_loss(model, guide, x, y, num_data=n)
    g_vec = torch.autograd.grad(vec, params, allow_unused=True)
    pyro.set_rng_seed(0)
    with pyro.plate("num_particles_vectorized", s, dim=-2):
        gtr = trace(guide).get_trace(x, y, num_data=n)
    draws = {k: v["value"] for k, v in gtr.nodes.items() if v["type"] == "sample"}
    assert all(v.shape[:2] == (s, 1) for v in draws.values())
    qs = dict(zip(guide.layers, guide.layer_distributions()))
    elbos = []
    for p in range(s):
        data = {k: v[p, 0] for k, v in draws.items()}
        mtr = trace(condition(model, data=data)).get_trace(x, y, num_data=n)
        log_q = sum(qw.log_prob(data[f"{c.name}.weight"])
                    + (qb.log_prob(data[f"{c.name}.bias"]) if qb is not None else 0.0)
                    for c, (qw, qb) in qs.items())
        elbos.append(mtr.log_prob_sum() - log_q)
    loop = -torch.stack(elbos).mean()
    g_loop = torch.autograd.grad(loop, params, allow_unused=True)
    assert float(loop) == pytest.approx(float(vec), rel=1e-12)
    for a, b in zip(g_vec, g_loop):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert any(a is not None and float(a.abs().sum()) > 0 for a in g_vec)


def test_predictive_parallel_and_sequential_draw_the_same_distribution():
    """Predictive(parallel=True) and parallel=False from the same seed: the per-output means and
    variances agree within NUM_SE standard errors of the difference (the two consume the random
    stream in another order, so the draws themselves differ). parallel=True draws T = 3000 in
    one vectorised call; parallel=False calls the model once per draw (~3 ms), so T = 600 there:
    the standard error of the difference, sqrt(s1^2 / 3000 + s2^2 / 600), is computed from the
    draws as before and is 1.73x the 3000-and-3000 one (at NUM_SE = 5, means off by 0.22 sd of
    f are caught instead of 0.13 sd; a wrong mask or keep_prob moves them by O(1) sd)."""
    net = _mlp()
    model = ModuleBNN(net, prior_length_scale=1.0, tau=10.0)
    guide = DropoutGuide(model, theta=0.05)
    x = torch.randn(4, 2, dtype=F64)
    t, t_seq = 3000, 600
    pyro.set_rng_seed(0)
    par = Predictive(model, guide=guide, num_samples=t, parallel=True,
                     return_sites=["f"])(x)["f"]
    pyro.set_rng_seed(0)
    seq = Predictive(model, guide=guide, num_samples=t_seq, return_sites=["f"])(x)["f"]
    assert par.shape == (t, 4, 1) and seq.shape == (t_seq, 4, 1)
    m1, v1, sm1, sv1 = _mc_moments(par)
    m2, v2, sm2, sv2 = _mc_moments(seq)
    assert bool(((m1 - m2).abs() <= NUM_SE * (sm1.square() + sm2.square()).sqrt()).all())
    assert bool(((v1 - v2).abs() <= NUM_SE * (sv1.square() + sv2.square()).sqrt()).all())
    assert bool((v1 > 1e-3).all())  # dropout makes the outputs random: the check can fail


def test_vectorised_svi_runs_on_a_batchnorm_network():
    x, y = toy_regression(32, 2, 1)
    model = ModuleBNN(_bn_net(), prior_length_scale=1.0, tau=10.0)
    guide = DropoutGuide(model, theta=1e-2)
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 2e-2}), elbo)
    losses = [svi.step(x, y) for _ in range(40)]
    assert sum(losses[-10:]) < sum(losses[:10])


@pytest.mark.parametrize("name", list(UNCOVERED))
def test_disabled_dropout_is_stated(name):
    """LSTM(dropout=0.3, num_layers=2), MultiheadAttention(dropout=0.1), TransformerEncoderLayer:
    refused by name; with uncovered_dropout="disable" the model runs without that dropout
    (deterministic in training mode) and says so in disabled_dropout and summary()."""
    make, shape, patterns = UNCOVERED[name]
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=patterns[0]):
        ModuleBNN(make().to(F64))
    net = make().to(F64)
    model = ModuleBNN(net, tau=4.0, uncovered_dropout="disable")
    expected = convert_module(net, uncovered_dropout="disable").disabled
    assert model.disabled_dropout == expected and len(expected) >= 1
    for d in model.disabled_dropout:
        name_, kind, keep_prob, reason = d  # (name, kind, keep_prob, reason)
        assert keep_prob < 1 and reason
    summary = model.summary()
    assert "DISABLED dropout" in summary
    for d in model.disabled_dropout:
        assert f"| {d.name} | {d.kind} | {d.keep_prob:g} |" in summary, summary
    x = torch.randn(*shape, dtype=F64)
    model.net.train()
    torch.testing.assert_close(model.net(x), model.net(x), rtol=0, atol=0)
    guide = DropoutGuide(model, theta=1e-2)
    f = Predictive(model, guide=guide, num_samples=4, return_sites=["f"], parallel=True)(x)["f"]
    assert f.shape == (4, shape[0], 1)
    assert "disabled dropout: none" in ModuleBNN(_mlp()).summary()


def test_bad_inputs_are_refused_clearly():
    model = ModuleBNN(TwoInputs().to(F64))
    image, features, y = _two_input_data(n=6)
    with pytest.raises(ValueError, match=r"x: every input needs the same batch size \(first "
                                         r"dimension\), got x\['image'\]: 6, x\['features'\]: 5"):
        model({"image": image, "features": features[:5]}, y)
    with pytest.raises(ValueError, match=r"y must have 6 rows like x"):
        model((image, features), y[:4])
    with pytest.raises(ValueError, match=r"x must be a tensor, a tuple of tensors or a dict of "
                                         r"tensors, got int"):
        model(3)
    with pytest.raises(ValueError, match=r"x \(\(6, 1, 5, 5\)\) does not go through the module "
                                         r"TwoInputs"):
        model(image)
    with pytest.raises(ValueError, match=r"x\['features'\] must be finite"):
        model({"image": image, "features": features.clone().fill_(float("nan"))})


def test_num_data_smaller_than_the_minibatch_is_refused():
    model = ModuleBNN(_mlp(), tau=4.0)
    guide = DropoutGuide(model, theta=1e-2)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    x, y = toy_regression(64, 2)
    with pytest.raises(ValueError, match="num_data is the size N of the whole data set, so at "
                                         "least the minibatch's 64 rows, got 10"):
        svi.step(x, y, num_data=10)


def test_zero_rows_are_refused_naming_x():
    """N = 0 gave Pyro's ``ZeroDivisionError: size cannot be zero``."""
    model = ModuleBNN(_mlp(), tau=4.0)
    guide = DropoutGuide(model)
    x, y = torch.zeros(0, 2, dtype=F64), torch.zeros(0, 1, dtype=F64)
    message = r"^x must hold at least one row \(N >= 1\), got 0 rows \(shape \(0, 2\)\)"
    for kwargs in ({}, {"num_data": 10}):
        with pytest.raises(ValueError, match=message):
            model(x, y, **kwargs)
    with pytest.raises(ValueError, match=message):
        SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO()).step(x, y)
    two = ModuleBNN(TwoInputs().to(F64))
    with pytest.raises(ValueError, match=r"^x must hold at least one row \(N >= 1\), got 0 rows "
                                         r"\(shape x\[0\] \(0, 1, 5, 5\), x\[1\] \(0, 3\)\)$"):
        two((torch.zeros(0, 1, 5, 5, dtype=F64), torch.zeros(0, 3, dtype=F64)))


@pytest.mark.parametrize("num_data,message", [
    (True, r"^num_data must be an integer >= 1, got a bool \(True\)"),
    (np.bool_(True), r"^num_data must be an integer >= 1, got a bool"),
    ("100", r"^num_data must be an integer >= 1, got a str \('100'\)"),
    (0, r"^num_data must be an integer >= 1, got 0$"),
])
def test_num_data_must_be_a_positive_integer(num_data, message):
    model = ModuleBNN(_mlp(), tau=4.0)
    x, y = torch.randn(5, 2, dtype=F64), torch.zeros(5, 1, dtype=F64)
    with pytest.raises(ValueError, match=message):
        model(x, y, num_data=num_data)
    assert model.check_data(x, y, np.int64(100)) == 100


@pytest.mark.parametrize("net_dtype,x_dtype", [(torch.float32, torch.float64),
                                               (torch.float64, torch.float32)])
@pytest.mark.parametrize("make", [_mlp, _bn_net])
def test_x_of_another_dtype_than_the_module_is_refused_not_cast(make, net_dtype, x_dtype):
    """Into a float32 module a float64 x ran silently in float64 (Linear layers) or failed with
    torch's raw ``mixed dtype`` (BatchNorm); the other way round likewise."""
    model = ModuleBNN(make().to(net_dtype), tau=4.0)
    guide = DropoutGuide(model)
    x, y = torch.randn(6, 2, dtype=x_dtype), torch.zeros(6, 1, dtype=x_dtype)
    message = (rf"^x has dtype {x_dtype} but the dtype of the module is {net_dtype}: convert x "
               rf"with x.to\({net_dtype}\) \(or the module to {x_dtype}\); inputs are not cast "
               rf"silently")  # (under SVI, Pyro appends the trace shapes)
    assert model.dtype == net_dtype
    with pytest.raises(ValueError, match=message):
        model(x, y)
    with pytest.raises(ValueError, match=message):
        SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO()).step(x, y)
    model(x.to(net_dtype), y.to(net_dtype))  # the same data in the module's dtype works


def test_each_input_of_a_two_input_module_is_checked_by_name():
    model = ModuleBNN(TwoInputs().to(F64))
    a, b = torch.randn(4, 1, 5, 5, dtype=F64), torch.randn(4, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"^x\[1\] has dtype torch.float32 but the dtype of the "
                                         r"module is torch.float64"):
        model((a, b.float()))
    with pytest.raises(ValueError, match=r"^x\['features'\] has dtype torch.float32"):
        model({"image": a, "features": b.float()})
    assert model((a, b)).shape == (4, 1)


@pytest.mark.parametrize("kwargs,message", [
    (dict(tau=True), r"^tau must be a finite number > 0, got a bool"),
    (dict(tau="10"), r"^tau must be a finite number > 0, got a str"),
    (dict(prior_length_scale=np.bool_(True)), r"^prior_length_scale must be a finite number > 0, "
                                              r"got a bool"),
    (dict(keep_probs={"b": "0.9"}), r"^keep_probs\['b'\] must be a real number in \(0, 1\], got "
                                    r"a str"),
    (dict(keep_probs={"b": True}), r"^keep_probs\['b'\] must be a real number in \(0, 1\], got "
                                   r"a bool"),
])
def test_scalars_must_be_numbers(kwargs, message):
    """``keep_probs={"b": True}`` was read as keep_prob 1 and ``"0.9"`` parsed, silently."""
    with pytest.raises(ValueError, match=message):
        ModuleBNN(Untraceable(), **kwargs)
    model = ModuleBNN(Untraceable(), keep_probs={"b": np.float64(0.5)}, tau=np.float64(2.0))
    assert [c.keep_prob for c in model.layers] == [1.0, 0.5] and model.tau == 2.0
    with pytest.raises(ValueError, match=r"^theta must be a finite number > 0, got a bool"):
        DropoutGuide(model, theta=True)


@pytest.mark.parametrize("x, y, match", [
    (torch.randn(2), None, r"x must be batch first \(N x \.\.\.\), got a 1-D tensor of shape"),
    (torch.randn(3, 2), torch.zeros(3, 1, dtype=torch.bool),
     "y must hold real numbers .* got dtype torch.bool"),
    (torch.randn(3, 2), torch.zeros(3, 1, dtype=torch.int64),
     "y must be a floating-point tensor for a Gaussian likelihood"),
])
def test_a_one_dimensional_x_or_a_non_float_y_is_refused(x, y, match):
    """A 1-D float x was read by the first Linear layer as ONE example (the output had the shape
    of one prediction); a bool or int y failed inside the likelihood with a RuntimeError."""
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 1))
    with pytest.raises(ValueError, match=match):
        ModuleBNN(net)(x, y)
