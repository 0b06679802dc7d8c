"""The one rule for target shapes (``check_targets``) and where it is enforced."""

import pytest
import torch

from tests.common import DTYPES, toy_regression
from vi_dropout.models import BayesianMLP
from vi_dropout.network import Architecture
from vi_dropout.objectives import data_term, draw_masks, dropout_loss, negative_elbo
from vi_dropout.validation import check_targets


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
    masks = draw_masks(16, arch, 0.9, torch.Generator().manual_seed(1))
    model = BayesianMLP(arch, prior_length_scale=1.0, tau=10.0)
    calls = {
        "BayesianMLP": lambda t: model(x, t),
        "data_term": lambda t: data_term(t, torch.zeros(16, 1, dtype=x.dtype)),
        "dropout_loss": lambda t: dropout_loss(x, t, ws, bs, masks, (1e-3, 1e-3), (1e-3, 1e-3)),
        "negative_elbo": lambda t: negative_elbo(x, t, ws, bs, masks, keep_probs=0.9, scale=1e-2,
                                                 prior_length_scale=1.0),
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
