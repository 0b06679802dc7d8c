"""The shared fitting loop (:mod:`vi_dropout.infer.fit_loop`): minibatches cover every row once per
epoch from each network's own generator, the argument checks, and a failing network named while
the others go on (one network: raised)."""

from __future__ import annotations

import pytest
import torch

from vi_dropout.infer.fit_loop import (
    as_networks,
    draw_in_chunks,
    initial_params,
    minibatch_rows,
    note_failures,
    run_fit_loop,
)
from vi_dropout.network import Architecture


def test_minibatch_rows_are_epochs_of_each_networks_permutation():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    rows = list(minibatch_rows(7, 3, 6, gens))  # two epochs of 3 + 3 + 1 rows
    assert [r.shape[1] for r in rows] == [3, 3, 1, 3, 3, 1]
    for epoch in (rows[:3], rows[3:]):
        for e in range(2):
            assert sorted(torch.cat([r[e] for r in epoch]).tolist()) == list(range(7))
    want = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([r[1] for r in rows[:3]]), want)  # network 1's own stream
    assert list(minibatch_rows(7, None, 2, gens)) == [None, None]
    assert list(minibatch_rows(7, 10, 1, gens)) == [None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_initial_params_network_e_is_the_single_network_of_its_generator(dtype):
    arch = Architecture((3, 4, 2))
    ws, bs = initial_params(arch, [torch.Generator().manual_seed(s) for s in (5, 6)], 2, dtype)
    w1, b1 = initial_params(arch, torch.Generator().manual_seed(6), None, dtype)
    assert [tuple(w.shape) for w in ws] == [(2, 4, 3), (2, 2, 4)]
    assert all(torch.equal(w[1], v) and torch.equal(b[1], c)  # bit for bit: the same draws
               for w, v, b, c in zip(ws, w1, bs, b1))
    assert ws[0].dtype == dtype and not torch.equal(ws[0][0], ws[0][1])
    # given weights are kept as they are; biases alone missing are drawn
    given = [torch.ones(4, 3, dtype=dtype), torch.ones(2, 4, dtype=dtype)]
    kept, drawn = initial_params(arch, torch.Generator().manual_seed(6), None, dtype, given)
    assert kept == given and all(torch.equal(b, c) for b, c in zip(drawn, b1))


@pytest.mark.parametrize("weights, biases, match", [
    ([torch.zeros(4, 3)], [torch.zeros(4)], r"must have 2 entries \(one per layer\)"),
    ([torch.zeros(4, 3), torch.zeros(2, 5)], [torch.zeros(4), torch.zeros(2)],
     r"layer 1: expected weights\[1\] of shape \(2, 4\) and biases\[1\] of shape \(2,\), "
     r"got \(2, 5\) and \(2,\)"),
])
def test_initial_params_names_a_bad_layer(weights, biases, match):
    with pytest.raises(ValueError, match=match):
        initial_params(Architecture((3, 4, 2)), None, None, torch.float32, weights, biases)


def test_draw_in_chunks_passes_and_checks():
    x, passes = torch.zeros(4, 2), []

    def draw(t):
        passes.append(t)
        return torch.full((t, 4, 1), float(len(passes)))

    out = draw_in_chunks(Architecture((2, 1)), x, 7, 12, draw)  # 12 rows / 4 points: 3 per pass
    assert passes == [3, 3, 1] and out.shape == (7, 4, 1)
    assert out[:, 0, 0].tolist() == [1, 1, 1, 2, 2, 2, 3]  # the passes in order
    passes.clear()
    draw_in_chunks(Architecture((2, 1)), x, 2, 1, draw)  # fewer rows than points: one draw
    assert passes == [1, 1]
    for args, match in [((x, 0, 4), "num_samples"), ((x, 2, 0), "max_rows"),
                        ((torch.zeros(4, 3), 2, 4), r"x must have shape N x 2, got \(4, 3\)"),
                        ((torch.full((4, 2), float("nan")), 2, 4), "x")]:
        with pytest.raises(ValueError, match=match):
            draw_in_chunks(Architecture((2, 1)), *args, draw)


@pytest.mark.parametrize("x, y, seed, match", [
    (torch.zeros(4, 2), torch.zeros(4, 1), [], "non-empty"),
    (torch.zeros(3, 4, 2), torch.zeros(3, 4, 1), [0, 1], "3 networks' data"),
    (torch.zeros(3, 4, 2), torch.zeros(3, 4, 1), 0, "N x Q"),
    (torch.full((4, 2), float("nan")), torch.zeros(4, 1), 0, "x"),
    (torch.zeros(4, 2), torch.zeros(5, 1), 0, "y"),
])
def test_as_networks_refuses_bad_shapes(x, y, seed, match):
    with pytest.raises(ValueError, match=match):
        as_networks(x, y, seed)


class _Linear(torch.nn.Module):
    """E independent least-squares fits ``y = x w``: a toy objective for the loop."""

    def __init__(self, num_networks):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(num_networks, 2, 1, dtype=torch.float64))


def _problems(objective, step):
    return [None if bool(torch.isfinite(w).all()) else f"w non-finite at step {step}"
            for w in objective.w]


def test_fit_loop_fits_and_names_a_failing_network():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 2, generator=gen, dtype=torch.float64)
    w_true = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    y = x @ w_true
    y[1, 0] = float("inf")  # network 1 sees an infinite target: its loss is not finite
    model = _Linear(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def loss_of(xb, yb, n):
        return (xb @ model.w - yb).square().mean((-2, -1))

    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    losses, failures = run_fit_loop(model, opt, loss_of, x, y, gens, True, steps=200,
                                    batch_size=None, check_every=10, problems=_problems)
    assert losses.shape == (200, 3)
    assert failures[1] == "the negative ELBO became non-finite at step 0"
    assert failures[0] is None and failures[2] is None
    for e in (0, 2):
        torch.testing.assert_close(model.w[e].detach(), w_true, rtol=0, atol=1e-8)


def test_note_failures_raises_for_one_network():
    model = _Linear(1)
    failures = [None]
    with pytest.raises(ValueError, match="non-finite at step 3"):
        note_failures(_problems, model, 3, failures, torch.tensor([float("nan")]), False)
