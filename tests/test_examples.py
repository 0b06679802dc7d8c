"""The user-style networks under examples/: factory, real data, one forward pass, the .npz."""

from __future__ import annotations

import inspect
import runpy
import sys

import numpy as np
import pytest
import torch
from torch import nn

from tests.common import REPO, load_example

#: example -> (input arrays and their per-example shapes, in the forward's order; outputs per
#: example: 1 for a regressor with N x 1 float targets, else the number of classes)
SPECS = {
    "mnist_net": ({"x": (1, 28, 28)}, 10),
    "bn_residual": ({"x": (13,)}, 1),
    "mobilenet_style": ({"x": (1, 8, 8)}, 10),
    "two_input": ({"image": (1, 8, 8), "features": (16,)}, 10),
    "lstm_classifier": ({"x": (8, 8)}, 10),
    "attention_classifier": ({"x": (8, 8)}, 10),
    "dropout2d_cnn": ({"x": (1, 8, 8)}, 10),
    "sequential_mlp": ({"x": (6,)}, 1),
    "functional_dropout": ({"x": (64,)}, 10),
    "token_mlp": ({"x": (8, 8)}, 10),
}
N = 16


def test_every_example_with_data_is_listed():
    files = {p.stem for p in (REPO / "examples").glob("*.py")}
    assert files - {"small_cnn", "swag_method"} == set(SPECS)  # swag_method: a method, not a network


@pytest.mark.parametrize("name", sorted(SPECS) + ["small_cnn"])
def test_make_returns_a_module_in_training_mode(name):
    net = load_example(name).make()
    assert isinstance(net, nn.Module)
    assert net.training and all(m.training for m in net.modules())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_data_shapes_and_one_forward_pass(name):
    inputs, outputs = SPECS[name]
    mod = load_example(name)
    *xs, y = mod.data(num_examples=N)
    assert len(xs) == len(inputs)
    for x, shape in zip(xs, inputs.values()):
        assert x.dtype == np.float32 and x.shape == (N, *shape) and np.isfinite(x).all()
    if outputs == 1:
        assert y.dtype == np.float32 and y.shape == (N, 1) and np.isfinite(y).all()
    else:
        assert y.dtype == np.int64 and y.shape == (N,) and 0 <= y.min() and y.max() < outputs
    net = mod.make()
    tensors = [torch.from_numpy(x) for x in xs]
    if len(tensors) == 1:
        out = net(tensors[0])
    else:
        assert list(inspect.signature(net.forward).parameters) == list(inputs)
        out = net(**dict(zip(inputs, tensors)))
    assert out.shape == (N, outputs) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["two_input", "functional_dropout"])
def test_main_writes_the_arrays_named_after_the_forward(name, tmp_path, monkeypatch):
    path = tmp_path / f"{name}.npz"
    monkeypatch.setattr(sys, "argv", [f"examples/{name}.py", str(path)])
    runpy.run_path(str(REPO / "examples" / f"{name}.py"), run_name="__main__")
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted([*SPECS[name][0], "y"])
        assert npz["y"].shape == (200,)
