"""Branch changes of piecewise networks under a perturbation: ReLU kinks, max-pool choices,
ties, functional calls, labels, control flow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vi_dropout.verify.kinks import BranchRecorder, branch_changes


def _record(net, x, module=None):
    rec = BranchRecorder(batch_size=x.shape[0], module=module)
    with torch.no_grad(), rec:
        net(x)
    return rec


def test_relu_crossings_are_counted_by_unit_and_example():
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    x = torch.tensor([[-1.0, 0.5], [2.0, -0.001]], dtype=torch.float64)
    shifted = x + torch.tensor([[0.0, 0.0], [0.0, 0.002]], dtype=torch.float64)
    report = branch_changes(_record(net, x, net), _record(net, shifted, net))
    assert report.num_units == 1 and report.examples == (1,)
    assert "1 (ReLU)" in report.describe() and "1 units changed branch" in report.describe()
    assert not branch_changes(_record(net, x), _record(net, x + 1e-6))


@pytest.mark.parametrize("fn, x0, x1, changed", [
    (lambda x: F.relu6(x), [5.9999], [6.0001], 1),
    (lambda x: F.hardtanh(x, -2.0, 2.0), [1.99], [2.01], 1),
    (lambda x: F.leaky_relu(x, 0.1), [0.01], [-0.01], 1),
    (lambda x: torch.clamp(x, min=0.5), [0.49], [0.51], 1),
    (lambda x: x.abs(), [0.01], [-0.01], 1),
    (lambda x: torch.where(x > 1.0, x, -x), [0.99], [1.01], 1),
    (lambda x: torch.tanh(x), [0.01], [-0.01], 0),          # smooth: no branch
    (lambda x: F.gelu(x), [0.01], [-0.01], 0),
])
def test_functional_piecewise_calls_are_seen(fn, x0, x1, changed):
    a = torch.tensor([x0], dtype=torch.float64)
    b = torch.tensor([x1], dtype=torch.float64)
    assert branch_changes(_record(fn, a), _record(fn, b)).num_units == changed


def test_max_pool_choice_counts_but_an_exact_tie_does_not():
    pool = nn.MaxPool2d(2)
    x = torch.tensor([[[[1.0, 0.9], [0.0, 0.0]]]], dtype=torch.float64)
    swapped = torch.tensor([[[[0.9, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
    assert branch_changes(_record(pool, x), _record(pool, swapped)).num_units == 1
    tie = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
    broken = tie + torch.tensor([[[[0.0, 1e-9], [0.0, 0.0]]]], dtype=torch.float64)
    assert branch_changes(_record(pool, tie), _record(pool, broken)).num_units == 0


def test_functional_max_pool_and_max_along_a_dimension():
    def net(x):
        return F.max_pool1d(x, 2), torch.max(x, dim=-1)

    x = torch.tensor([[[1.0, 0.5, 0.2, 0.3]]], dtype=torch.float64)
    y = torch.tensor([[[0.4, 0.5, 0.2, 0.3]]], dtype=torch.float64)
    report = branch_changes(_record(net, x), _record(net, y))
    labels = {c.label.split(" ")[0] for c in report.changes}
    assert labels == {"max_pool1d", "max"}


def test_value_dependent_control_flow_is_reported():
    def net(x):
        if float(x.sum()) > 0:
            return torch.relu(x)
        return x

    report = branch_changes(_record(net, torch.ones(1, 2)), _record(net, -torch.ones(1, 2)))
    assert report and "control flow" in report.describe()


def test_the_recorder_leaves_the_forward_and_its_gradient_unchanged():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(2 * 3 * 3, 1))
    x = torch.randn(3, 1, 8, 8)
    plain = net(x).sum()
    (g_plain,) = torch.autograd.grad(plain, [net[0].weight])
    with BranchRecorder(3, net) as rec:
        recorded = net(x).sum()
    (g_rec,) = torch.autograd.grad(recorded, [net[0].weight])
    assert torch.equal(plain, recorded) and torch.equal(g_plain, g_rec)
    assert [e.label for e in rec.events] == ["relu #1 in 1 (ReLU)", "max_pool2d #1 in 2 (MaxPool2d)"]
