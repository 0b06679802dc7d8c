"""A network's inputs: one tensor, a tuple (positional) or a dict (keywords), batch first."""

from __future__ import annotations

import pytest
import torch

from vi_dropout.inputs import batch_size, call, check_inputs, describe, map_inputs, take


def _net(left, right=None):
    return left if right is None else left.sum(-1, keepdim=True) + right


FORMS = {
    "tensor": torch.zeros(5, 3),
    "tuple": (torch.zeros(5, 3), torch.ones(5, 1)),
    "dict": {"left": torch.zeros(5, 3), "right": torch.ones(5, 1)},
}


@pytest.mark.parametrize("form", list(FORMS))
def test_the_three_forms_share_batch_size_subsetting_and_calling(form):
    x = check_inputs(FORMS[form])
    assert batch_size(x) == 5
    sub = take(x, torch.tensor([0, 2]))
    assert batch_size(sub) == 2 and type(sub) is type(x)
    doubled = map_inputs(lambda v: 2 * v, x)
    assert type(doubled) is type(x)
    out = call(_net, x)
    assert out.shape[0] == 5
    assert "5" in describe(x)


def test_a_list_becomes_a_tuple():
    assert isinstance(check_inputs([torch.zeros(2, 1), torch.zeros(2, 3)]), tuple)


@pytest.mark.parametrize("bad, message", [
    (3.0, "must be a tensor, a tuple of tensors or a dict of tensors, got float"),
    ((), "got an empty tuple"),
    ({}, "got an empty dict"),
    ({1: torch.zeros(2)}, "dict keys must be the forward's parameter names"),
    ((torch.zeros(2, 1), "a"), r"x\[1\] must be a tensor, got str"),
    ({"a": torch.zeros(2, 1), "b": torch.zeros(3, 1)}, "the same batch size"),
    (torch.tensor(1.0), "batch dimension first"),
    ({"a": torch.tensor([[float("nan")]])}, r"x\['a'\] must be finite, got 1 NaN"),
    (torch.zeros(2, 2, dtype=torch.complex64), "must hold real numbers"),
])
def test_bad_inputs_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        check_inputs(bad)
