"""The one rule for target shapes (``check_targets``) and where it is enforced; the one rule for
argument types (bools and strings are not numbers) in every shared checker."""

import numpy as np
import pytest
import torch

from tests.common import DTYPES, toy_regression
from vi_dropout.forward import draw_masks
from vi_dropout.infer.elbo import dropout_loss, negative_elbo
from vi_dropout.likelihoods import data_term
from vi_dropout.models import BayesianMLP
from vi_dropout.network import Architecture
from vi_dropout.validation import (
    check_dtype,
    check_has_rows,
    check_int,
    check_keep_prob,
    check_learnable_keep_prob,
    check_nonnegative,
    check_nonnegative_int,
    check_positive,
    check_positive_int,
    check_real,
    check_targets,
    per_layer,
    refuse_non_numbers,
)


@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_targets_must_be_two_dimensional(dtype):
    y = torch.zeros(5, 1, dtype=dtype)
    assert check_targets(y, num_rows=5, num_outputs=1) is y
    with pytest.raises(ValueError, match=r"y must have shape N x D .*got a 1-D tensor of shape \(5,\).*reshape"):
        check_targets(torch.zeros(5, dtype=dtype), num_rows=5)
    with pytest.raises(ValueError, match="y must have 1 column"):
        check_targets(torch.zeros(5, 2, dtype=dtype), num_outputs=1)
    with pytest.raises(ValueError, match="y must have 4 rows"):
        check_targets(y, num_rows=4)
    bad = y.clone()
    bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="y must be finite"):
        check_targets(bad)


def test_class_index_targets():
    labels = torch.tensor([0, 2, 1])
    assert check_targets(labels, likelihood="categorical", num_outputs=3) is labels
    with pytest.raises(ValueError, match=r"labels must hold N class indices \(shape \(N,\)\)"):
        check_targets(labels[:, None], "labels", likelihood="categorical")
    with pytest.raises(ValueError, match="class indices < 3"):
        check_targets(torch.tensor([0, 3]), likelihood="categorical", num_outputs=3)
    with pytest.raises(ValueError, match="integer class indices"):
        check_targets(torch.tensor([0.5, 1.0]), likelihood="categorical")
    with pytest.raises(ValueError, match=">= 0"):
        check_targets(torch.tensor([-1, 1]), likelihood="categorical")


def test_one_dimensional_targets_are_refused_everywhere_a_target_enters():
    """A 1-D ``y`` would broadcast against the ``N x 1`` outputs and score every point against
    every target (the silent wrong answer this rule prevents): each entry point refuses it."""
    x, y = toy_regression(num_data=16, in_features=2)
    arch = Architecture((2, 8, 1))
    ws, bs = arch.init_params(generator=torch.Generator().manual_seed(0))
    model = BayesianMLP(arch, prior_length_scale=1.0, tau=10.0, keep_prob=0.9)
    net, layers = model.dropout_free_module(), model.layers
    masks = draw_masks(layers, 16, torch.Generator().manual_seed(1))
    calls = {
        "BayesianMLP": lambda t: model(x, t),
        "data_term": lambda t: data_term(t, torch.zeros(16, 1, dtype=x.dtype)),
        "dropout_loss": lambda t: dropout_loss(net, layers, ws, bs, x, t, masks=masks,
                                               prior_length_scale=1.0),
        "negative_elbo": lambda t: negative_elbo(net, layers, ws, bs, x, t, masks=masks,
                                                 theta=1e-2, prior_length_scale=1.0),
    }
    for name, call in calls.items():
        call(y)  # N x 1 works
        with pytest.raises(ValueError, match=r"y must have shape N x D"):
            call(y[:, 0])
        assert name  # every entry point was tried


def test_model_log_likelihood_is_per_point_with_two_dimensional_targets():
    """With ``N x 1`` targets the model's likelihood is the sum of N per-point terms (not N^2)."""
    import pyro
    from pyro.poutine import condition, trace

    x, y = toy_regression(num_data=10, in_features=2)
    arch = Architecture((2, 4, 1))
    model = BayesianMLP(arch, prior_length_scale=1.0, tau=4.0)
    ws, bs = arch.init_params(generator=torch.Generator().manual_seed(0))
    fixed = {f"layers.{i}.weight": w for i, w in enumerate(ws)}
    fixed.update({f"layers.{i}.bias": b for i, b in enumerate(bs)})
    pyro.clear_param_store()
    tr = trace(condition(model, data=fixed)).get_trace(x, y)
    tr.compute_log_prob()
    from vi_dropout.network import mlp_forward

    f = mlp_forward(x, ws, bs, "relu")
    expected = torch.distributions.Normal(f, 4.0 ** -0.5).log_prob(y).sum()
    assert tr.nodes["obs"]["log_prob"].shape == (10,)
    assert torch.allclose(tr.nodes["obs"]["log_prob_sum"], expected, rtol=1e-12)


# --- the one rule for argument types: bools and strings are not numbers ----------------------
NOT_NUMBERS = [
    pytest.param(True, "a bool", id="bool"),
    pytest.param(np.bool_(True), "a bool", id="numpy-bool"),
    pytest.param(torch.tensor(True), "a bool tensor", id="bool-tensor"),
    pytest.param("0.9", "a str", id="str"),
    pytest.param(np.str_("1"), "a str", id="numpy-str"),
]

CHECKERS = [
    pytest.param(lambda v: check_keep_prob(v), "keep_prob", id="check_keep_prob"),
    pytest.param(lambda v: check_learnable_keep_prob(v, "kp"), "kp", id="check_learnable_keep_prob"),
    pytest.param(lambda v: check_positive(v, "tau"), "tau", id="check_positive"),
    pytest.param(lambda v: check_nonnegative(v, "weight_decay"), "weight_decay",
                 id="check_nonnegative"),
    pytest.param(lambda v: check_real(v, "y_mean"), "y_mean", id="check_real"),
    pytest.param(lambda v: check_int(v, "seed"), "seed", id="check_int"),
    pytest.param(lambda v: check_positive_int(v, "T"), "T", id="check_positive_int"),
    pytest.param(lambda v: check_nonnegative_int(v, "gap_samples"), "gap_samples",
                 id="check_nonnegative_int"),
    pytest.param(lambda v: per_layer(v, 2, "keep_probs", check_keep_prob), "keep_probs",
                 id="per_layer"),
]


@pytest.mark.parametrize("check,name", CHECKERS)
@pytest.mark.parametrize("value,kind", NOT_NUMBERS)
def test_bools_and_strings_are_not_numbers(check, name, value, kind):
    """Every shared checker refuses a bool or a string (which ``float`` / ``int`` would read as 1
    or parse), naming the argument and what arrived."""
    with pytest.raises(ValueError, match=rf"^{name} must be .*, got {kind} \(.*\): bools and "
                                         rf"strings are not numbers$"):
        check(value)


@pytest.mark.parametrize("check,name", CHECKERS)
@pytest.mark.parametrize("value", [None, [0.5, 0.5, 0.5], object()], ids=["None", "list", "object"])
def test_non_scalars_are_refused_naming_the_argument(check, name, value):
    with pytest.raises(ValueError, match=rf"^{name}"):
        check(value)


@pytest.mark.parametrize("value,expected", [
    (np.float64(0.9), 0.9), (np.float32(0.5), 0.5), (torch.tensor(0.25, dtype=torch.float64), 0.25),
    (1, 1.0),
])
def test_numpy_and_tensor_scalars_are_numbers(value, expected):
    assert check_keep_prob(value) == expected
    assert check_positive(value, "tau") == expected
    assert check_real(value, "y_mean") == expected


@pytest.mark.parametrize("value", [np.int64(10), np.int32(10), 10, 10.0, torch.tensor(10)])
def test_numpy_and_tensor_integers_are_integers(value):
    assert check_positive_int(value, "T") == 10
    assert type(check_positive_int(value, "T")) is int


@pytest.mark.parametrize("value,message", [
    (0, r"T must be an integer >= 1, got 0"),
    (2.5, r"T must be an integer >= 1, got 2.5"),
    (float("inf"), r"T must be an integer >= 1, got inf"),
])
def test_positive_int_range(value, message):
    with pytest.raises(ValueError, match=rf"^{message}$"):
        check_positive_int(value, "T")


def test_optional_int_and_range_messages():
    assert check_int(None, "num_masks_seed", optional=True) is None
    with pytest.raises(ValueError, match=r"^num_masks_seed must be an integer or None, got 1.5$"):
        check_int(1.5, "num_masks_seed", optional=True)
    with pytest.raises(ValueError, match=r"^gap_samples must be an integer >= 0, got -1$"):
        check_nonnegative_int(-1, "gap_samples")
    with pytest.raises(ValueError, match=r"^y_mean must be a finite real number, got nan$"):
        check_real(float("nan"), "y_mean")
    assert check_real(float("inf"), "scale", finite=False) == float("inf")


def test_refuse_non_numbers_on_containers():
    refuse_non_numbers(np.array([0.1, 0.2]), "keep_probs")  # numbers pass
    refuse_non_numbers(torch.tensor([0.1]), "keep_probs")
    with pytest.raises(ValueError, match=r"^keep_probs must be real numbers, got a bool array"):
        refuse_non_numbers(np.array([True]), "keep_probs", "real numbers")
    with pytest.raises(ValueError, match=r"^keep_probs must be real numbers, got a bool tensor"):
        refuse_non_numbers(torch.tensor([True]), "keep_probs", "real numbers")


@pytest.mark.parametrize("dtype,other", [(torch.float32, torch.float64),
                                         (torch.float64, torch.float32)])
def test_check_dtype_names_both_dtypes(dtype, other):
    x = torch.zeros(2, 1, dtype=dtype)
    assert check_dtype(x, "x", dtype, "the weights") is x
    with pytest.raises(ValueError, match=rf"^x has dtype {dtype} but the dtype of the weights is "
                                         rf"{other}: convert x with x.to\({other}\)"):
        check_dtype(x, "x", other, "the weights")


def test_check_has_rows():
    assert check_has_rows(3, "x", (3, 2)) == 3
    with pytest.raises(ValueError, match=r"^x must hold at least one row \(N >= 1\), got 0 rows "
                                         r"\(shape \(0, 2\)\)$"):
        check_has_rows(0, "x", (0, 2))
