"""The equivalence report on users' networks: an MLP in nn.Sequential, a CNN with nn.Dropout2d
before a convolution and nn.Dropout before a linear layer, a module with a custom forward; the
command line with --model / --data, and its bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from vi_dropout import cli
from vi_dropout.verify import check_gradients, check_values
from vi_dropout.verify_network import (
    NETWORK_THETAS,
    ModuleProblem,
    check_module_trajectory,
    verify_network,
)


class SmallCNN(nn.Module):
    """Conv -> ReLU -> Dropout2d -> Conv -> ReLU -> flatten -> Dropout -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.drop2d = nn.Dropout2d(0.2)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(self.drop2d(h)))
        return self.fc(self.drop(h.flatten(1)))


class TwoBranch(nn.Module):
    """A custom forward: two inputs halves through their own layers, concatenated."""

    def __init__(self):
        super().__init__()
        self.left = nn.Linear(2, 6)
        self.right = nn.Linear(2, 6)
        self.drop = nn.Dropout(0.25)
        self.head = nn.Linear(12, 1)

    def forward(self, x):
        h = torch.cat([torch.tanh(self.left(x[:, :2])), torch.relu(self.right(x[:, 2:]))], 1)
        return self.head(self.drop(h))


def _mlp():
    return nn.Sequential(nn.Dropout(0.1), nn.Linear(3, 12), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(12, 1))


def _problems():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 3, generator=g)
    mlp = ModuleProblem(_mlp(), x, torch.sin(x[:, :1]), prior_length_scale=0.5, tau=5.0)
    xi = torch.randn(24, 1, 6, 6, generator=g)
    cnn = ModuleProblem(SmallCNN(), xi, torch.randint(0, 3, (24,), generator=g),
                        likelihood="categorical", prior_length_scale=0.5)
    x4 = torch.randn(32, 4, generator=g)
    branch = ModuleProblem(TwoBranch(), x4, x4[:, :1] * x4[:, 3:], prior_length_scale=1.0,
                           tau=2.0)
    return {"mlp": mlp, "cnn": cnn, "custom-forward": branch}


PROBLEMS = _problems()


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_gradient_value_and_trajectory_rows_pass(name):
    problem = PROBLEMS[name]
    rows = (check_gradients(problem, thetas=NETWORK_THETAS)
            + check_values(problem, thetas=NETWORK_THETAS) + check_module_trajectory(problem))
    failed = [(r["setting"], r["value"], r["tolerance"]) for r in rows if not r["passed"]]
    assert not failed
    # every covered weight and bias has its rows
    names = {r["setting"].split(" ", 1)[1] for r in rows
             if r["check"] == "gradient" and r["setting"].startswith("theta=1e-06")}
    assert names == set(problem.param_names)


def test_the_rows_can_fail():
    """A wrong weight decay (the prior's lambda doubled in the dropout loss) fails the gradient
    rows at small theta: the check is not vacuous."""
    problem = PROBLEMS["mlp"]
    bad = ModuleProblem(_mlp(), problem.x, problem.y, prior_length_scale=0.5 * 2**0.5, tau=5.0)
    bad.scaled_negative_elbo = lambda *a, **k: ModuleProblem.scaled_negative_elbo(
        problem, *a, **k)
    rows = check_gradients(bad, thetas=NETWORK_THETAS)
    assert not all(r["passed"] for r in rows)


def test_offset_matches_the_mlp_formula():
    from vi_dropout.network import Architecture
    from vi_dropout.objectives import elbo_dropout_offset

    problem = PROBLEMS["mlp"]
    for theta in (1e-2, 1e-6):
        assert problem.offset(theta) == pytest.approx(
            elbo_dropout_offset(Architecture((3, 12, 1)), (0.9, 0.8), theta, 0.5, 48, 5.0),
            rel=1e-12)


def test_bad_problems_are_refused():
    x = torch.randn(8, 3)
    with pytest.raises(ValueError, match=r"y must have shape N x D"):
        ModuleProblem(_mlp(), x, torch.zeros(8))
    with pytest.raises(ValueError, match="does not go through the module"):
        ModuleProblem(_mlp(), torch.randn(8, 5), torch.zeros(8, 1))
    with pytest.raises(ValueError, match="likelihood must be"):
        ModuleProblem(_mlp(), x, torch.zeros(8, 1), likelihood="poisson")
    with pytest.raises(ValueError, match="x must be finite"):
        ModuleProblem(_mlp(), torch.full((8, 3), float("nan")), torch.zeros(8, 1))


MODEL_FILE = '''
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))


def not_a_module():
    return 3
'''


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(MODEL_FILE)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 2))
    np.savez(tmp_path / "data.npz", x=x, y=np.sin(x[:, :1]))
    np.savez(tmp_path / "nan.npz", x=np.full((4, 2), np.nan), y=np.zeros((4, 1)))
    np.savez(tmp_path / "noy.npz", x=x)
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["--model", "{d}/missing.py:make", "--data", "{d}/data.npz"], "does not exist"),
    (["--model", "{d}/model.py:nope", "--data", "{d}/data.npz"], "has no callable 'nope'"),
    (["--model", "{d}/model.py:not_a_module", "--data", "{d}/data.npz"],
     "must return a torch.nn.Module"),
    (["--model", "{d}/model.py", "--data", "{d}/data.npz"], "must be FILE.py:FACTORY"),
    (["--model", "{d}/model.py:make"], "--model and --data go together"),
    (["--model", "{d}/model.py:make", "--data", "{d}/nan.npz"], "must be finite"),
    (["--model", "{d}/model.py:make", "--data", "{d}/noy.npz"], "has no array(s) ['y']"),
])
def test_cli_bad_inputs_exit_2_with_one_line(files, capsys, argv, message):
    argv = [a.format(d=files) for a in argv]
    assert cli.main(["verify", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_cli_verifies_a_users_network(files, capsys):
    out = files / "rows.json"
    rc = cli.main(["verify", "--model", f"{files}/model.py:make", "--data", f"{files}/data.npz",
                   "--quick", "--no-progress", "--json", str(out)])
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert rc == 0, text
    assert {r["check"] for r in rows} == {"gradient", "value", "pyro", "trajectory"}
    assert all(r["passed"] for r in rows)
    assert "| gradient | theta=1e-06 3.weight |" in text


def test_verify_network_returns_every_kind_of_row():
    torch.manual_seed(0)
    x = torch.randn(24, 3)
    rows = verify_network(_mlp(), x, torch.cos(x[:, :1]), prior_length_scale=0.5, tau=5.0,
                          quick=True)
    assert {r["check"] for r in rows} == {"gradient", "value", "pyro", "trajectory"}
    assert all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]
