"""JointOptim / JointAdam: the same updates as pyro.optim's one-optimiser-per-parameter."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from tests.common import toy_regression
from vi_dropout.guides import DropoutGuide
from vi_dropout.infer.optim import JointAdam, JointOptim
from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO
from vi_dropout.models import ModuleBNN

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(make_optim, dtype, steps=15, switch_at=None, make_second=None, load_state=True):
    """Parameters of a small ModuleBNN after ``steps`` SVI steps with the per-example ELBO
    (fixed seeds: the same masks and minibatches for every optimiser). With ``switch_at``, the
    optimiser's state is saved after that many steps and loaded into ``make_second()``, which
    does the remaining steps (without the state when not ``load_state``)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    x, y = toy_regression(64, 3, 1)
    x, y = x.to(dtype), y.to(dtype)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                              torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(16, 1)).to(dtype)
    model = ModuleBNN(net, prior_length_scale=1e-2, tau=10.0)
    guide = DropoutGuide(model, theta=1e-2)
    elbo = PerExampleDropoutELBO(num_masks_seed=3)
    optim = make_optim()
    svi = SVI(model, guide, optim, elbo)
    for i in range(steps):
        if i == switch_at:
            saved = optim.get_state()
            assert set(saved) == set(pyro.get_param_store().keys())
            optim = make_second()
            if load_state:
                optim.set_state(saved)
            svi = SVI(model, guide, optim, elbo)
        s = (8 * i) % 64
        svi.step(x[s:s + 8], y[s:s + 8], num_data=64)
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}, optim


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_joint_adam_matches_pyro_adam(dtype):
    """15 steps: every parameter equal to pyro.optim.Adam's. Both run torch's Adam arithmetic
    elementwise (foreach or a loop over tensors: the same operations in the same order), so
    the tolerance is a few ulps of the dtype."""
    args = {"lr": 1e-2, "betas": (0.9, 0.99)}
    ref, _ = _train(lambda: pyro.optim.Adam(args), dtype)
    got, optim = _train(lambda: JointAdam(args), dtype)
    assert ref.keys() == got.keys() and len(ref) == 6
    eps = torch.finfo(dtype).eps
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=8 * eps, atol=8 * eps, msg=name)
    # the parameters did move, and all sit in ONE optimiser
    assert len(optim.optimizer.param_groups) == 1
    assert len(optim.optimizer.param_groups[0]["params"]) == 6


def test_parameters_absent_from_a_step_stay_put():
    """A parameter missing from a step's trace is not moved by that step (Pyro's optimiser does
    not call its optimiser; Adam's momentum would move it on a zeroed gradient)."""

    def run(make_optim):
        pyro.clear_param_store()
        torch.manual_seed(1)

        def model(data, use_b):
            a = pyro.param("a", torch.zeros(3))
            mean = a.sum()
            if use_b:
                mean = mean + pyro.param("b", torch.zeros(2)).sum()
            pyro.sample("obs", dist.Normal(mean, 1.0), obs=data)

        def guide(data, use_b):
            pass

        svi = SVI(model, guide, make_optim(), Trace_ELBO())
        trail = []
        for step in range(8):
            svi.step(torch.tensor(2.0), step % 3 == 0)
            trail.append({k: v.detach().clone() for k, v in pyro.get_param_store().items()})
        return trail

    ref, got = run(lambda: pyro.optim.Adam({"lr": 0.1})), run(lambda: JointAdam({"lr": 0.1}))
    for r, g in zip(ref, got):
        assert r.keys() == g.keys()
        for name in r:
            torch.testing.assert_close(g[name], r[name], rtol=1e-6, atol=1e-7)
    # b was only in steps 0, 3, 6: it did not move in steps 1, 2, 4, 5, 7
    assert torch.equal(got[1]["b"], got[0]["b"]) and torch.equal(got[2]["b"], got[0]["b"])
    assert not torch.equal(got[3]["b"], got[2]["b"])


@pytest.mark.parametrize("source, target", [("joint", "pyro"), ("pyro", "joint"),
                                            ("joint", "joint")])
def test_state_round_trips_in_pyro_format(source, target):
    """The state saved after 5 steps by one optimiser, loaded into the other, continues the
    run as the uninterrupted one does (float64; the same arithmetic, so a few ulps)."""
    args = {"lr": 1e-2}
    make = {"joint": lambda: JointAdam(args), "pyro": lambda: pyro.optim.Adam(args)}
    ref, _ = _train(make[source], torch.float64, steps=10)
    got, _ = _train(make[source], torch.float64, steps=10, switch_at=5, make_second=make[target])
    eps = torch.finfo(torch.float64).eps
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=8 * eps, atol=8 * eps, msg=name)
    # without the state, the resumed run differs (the check can fail)
    fresh, _ = _train(make[source], torch.float64, steps=10, switch_at=5,
                      make_second=make[target], load_state=False)
    assert any(not torch.allclose(fresh[n], ref[n], rtol=1e-9, atol=1e-12) for n in ref)


@pytest.mark.parametrize("bad, match", [
    (lambda: JointOptim(torch.optim.Adam, lambda name: {"lr": 1.0}), "optim_args: expected a dict"),
    (lambda: JointOptim("adam", {"lr": 1.0}), "optim_constructor: expected a torch.optim"),
    (lambda: JointAdam([("lr", 1.0)]), "optim_args: expected a dict"),
])
def test_bad_arguments_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_unknown_or_out_of_range_options_are_named_before_any_step():
    """{"learning_rate": ...} gave torch's raw TypeError from inside the first SVI step."""
    from vi_dropout.infer.optim import JointAdam

    with pytest.raises(ValueError, match=r"^optim_args: 'learning_rate' is not an argument of "
                                         r"torch.optim.Adam \(its arguments: .*\blr\b"):
        JointAdam({"learning_rate": 1e-2})
    with pytest.raises(ValueError, match=r"^optim_args: Invalid learning rate: -1"):
        JointAdam({"lr": -1.0})
