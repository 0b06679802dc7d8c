"""LeNet: shapes, seeding, training, and MC dropout (``vi_dropout.predict.mc_predict`` given the
module) over the last layer only."""

from __future__ import annotations

import pytest
import torch

from comparisons.datasets.digits import load_digits_split
from comparisons.networks.lenet import (
    LeNet,
    TrainHistory,
    lenet_features,
    standard_logits,
    train_lenet,
)
from vi_dropout.predict import mc_predict

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    net = LeNet(8, seed=0)
    hist = train_lenet(net, digits.x_train, digits.y_train, epochs=6, progress=False, seed=0)
    return net, hist


def test_shapes_for_digits_and_mnist_sizes():
    small = LeNet(8, seed=0)
    assert small.flat_features == 50 * 2 * 2  # same padding: 8 -> 8 -> 4 -> 4 -> 2
    assert small(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    big = LeNet(28, seed=0)
    assert big.flat_features == 50 * 4 * 4  # valid padding: 28 -> 24 -> 12 -> 8 -> 4
    assert big(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert lenet_features(big, torch.zeros(2, 1, 28, 28)).shape == (2, 500)
    assert small.keep_prob == 0.5
    assert LeNet(8, keep_prob=0.75).keep_prob == 0.75
    assert isinstance(small.dropout, torch.nn.Dropout) and small.dropout.p == 0.5
    assert LeNet(8, keep_prob=0.8).dropout.p == 1 - 0.8  # the drop rate only at nn.Dropout


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, "x"])
def test_keep_prob_is_checked(bad):
    with pytest.raises(ValueError, match=r"^keep_prob must (lie in \(0, 1\]|be a real number)"):
        LeNet(8, keep_prob=bad)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="image_size=3 is too small for kernel_size=5"):
        LeNet(3)
    with pytest.raises(ValueError, match="kernel_size must be odd, got 4"):
        LeNet(8, kernel_size=4)
    with pytest.raises(ValueError, match="image_size must be an integer >= 1, got 0"):
        LeNet(0)
    net = LeNet(8, seed=0)
    with pytest.raises(ValueError, match=r"x must have shape N x 1 x 8 x 8 for this LeNet, got "
                                         r"\(2, 1, 28, 28\)"):
        mc_predict(torch.zeros(2, 1, 28, 28), net, T=2)
    with pytest.raises(ValueError, match="T must be an integer >= 1, got 0"):
        mc_predict(torch.zeros(2, 1, 8, 8), net, T=0)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = LeNet(8, seed=3), LeNet(8, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = LeNet(8, seed=4)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_training_is_reproducible_and_learns(digits, trained):
    net, hist = trained
    assert isinstance(hist, TrainHistory) and len(hist.epoch_losses) == 6
    assert hist.epoch_losses[-1] < 0.5 * hist.epoch_losses[0]
    assert not net.training  # left in eval mode
    acc = float((standard_logits(net, digits.x_test).argmax(-1) == digits.y_test).float().mean())
    assert acc > 0.8, acc  # 6 epochs on 1,437 digits; measured 0.93
    # same seed, same everything: bitwise equal parameters and losses; global RNG untouched
    state = torch.get_rng_state()
    again = LeNet(8, seed=0)
    hist2 = train_lenet(again, digits.x_train, digits.y_train, epochs=6, progress=False, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert hist2.epoch_losses == hist.epoch_losses
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), again.parameters()))


def test_train_rejects_bad_labels():
    net = LeNet(8, seed=0)
    x = torch.zeros(4, 1, 8, 8)
    with pytest.raises(ValueError, match=r"y must lie in 0..9, got labels in 0..10"):
        train_lenet(net, x, torch.tensor([0, 1, 2, 10]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="y must be a 1-D tensor of 4 labels"):
        train_lenet(net, x, torch.tensor([0, 1]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="y must hold integer labels"):
        train_lenet(net, x, torch.zeros(4), epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        train_lenet(net, x, torch.zeros(4, dtype=torch.long), epochs=0, progress=False)


def test_standard_logits_is_the_eval_network(trained, digits):
    net, _ = trained
    x = digits.x_test[:7]
    net.eval()
    torch.testing.assert_close(standard_logits(net, x), net(x), rtol=1e-5, atol=1e-5)


def test_mc_predict_follows_the_documented_stream_and_chunking(trained, digits):
    net, _ = trained
    x = digits.x_test[:5]
    T = 7
    got = mc_predict(x, net, T=T, generator=torch.Generator().manual_seed(11))
    assert got.shape == (T, 5, 10)
    # by hand: features once, masks floor(u + keep_prob) from one T x N x H uniform block
    h = lenet_features(net, x)
    u = torch.rand(T, 5, 500, generator=torch.Generator().manual_seed(11))
    z = torch.floor(u + net.keep_prob)
    with torch.no_grad():
        want = (z * h / net.keep_prob) @ net.head.weight.T + net.head.bias
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # chunked over T (max_rows=5 -> one sample per chunk): the same samples
    chunked = mc_predict(x, net, T=T, generator=torch.Generator().manual_seed(11), max_rows=5)
    torch.testing.assert_close(chunked, got, rtol=1e-6, atol=1e-6)


def test_float64_images_are_accepted(trained, digits):
    net, _ = trained
    x = digits.x_test[:4]
    torch.testing.assert_close(standard_logits(net, x.double()), standard_logits(net, x))


def test_mc_predict_without_dropout_is_deterministic(digits):
    net = LeNet(8, keep_prob=1.0, seed=0)
    x = digits.x_test[:4]
    mc = mc_predict(x, net, T=5)
    for t in range(5):
        torch.testing.assert_close(mc[t], standard_logits(net, x), rtol=0, atol=1e-6)


def test_mc_predict_matches_the_stochastic_network(trained, digits):
    """MC over the last layer only has the distribution of full training-mode forward passes.

    Reference: for fixed features h, logit_c = sum_j W_cj h_j z_j / k + b_c with
    z_j ~ Bernoulli(k), so E = standard logit and Var = sum_j W_cj^2 h_j^2 (1 - k) / k.
    Tolerances: means within 5 standard errors; sample variances within 12% (4000 draws: the
    relative SE of a variance is about sqrt(2/4000) = 2.2% for near-Gaussian sums).
    """
    net, _ = trained
    x = digits.x_test[:3]
    K = 4000
    k = net.keep_prob
    with torch.no_grad():
        h = lenet_features(net, x).double()
        w = net.head.weight.double()
        mean_ref = standard_logits(net, x).double()
        var_ref = ((w.square() @ h.square().T).T) * (1 - k) / k  # N x C
        torch.manual_seed(5)
        net.train()
        full = net(x.repeat(K, 1, 1, 1)).double().reshape(K, 3, 10)
        net.eval()
    ours = mc_predict(x, net, T=K, generator=torch.Generator().manual_seed(6)).double()
    se = (var_ref / K).sqrt()
    for name, s in (("mc_predict", ours), ("training-mode forward", full)):
        z = (s.mean(0) - mean_ref) / se
        assert float(z.abs().max()) < 5.0, (name, z)
        rel = s.var(0) / var_ref - 1
        assert float(rel.abs().max()) < 0.12, (name, rel)


def test_mc_predict_of_the_lenet_is_the_generic_module_pass_with_features_once(trained, digits):
    """The last-layer form (features once) and the generic module path (a plain nn.Sequential of
    the same layers, T full passes with the dropout layer's masks from the generator) draw the
    same masks from the same stream: equal up to float32 rounding. The modes are restored."""
    net, _ = trained
    x = digits.x_test[:6]
    plain = torch.nn.Sequential(net.body, net.dropout, net.head)
    for shared in (False, True):
        fast = mc_predict(x, net, T=9, shared_masks=shared, max_rows=20,
                          generator=torch.Generator().manual_seed(4))
        full = mc_predict(x, plain, T=9, shared_masks=shared, max_rows=20,
                          generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    net.train()
    mc_predict(x, net, T=2)
    assert net.training and net.dropout.training
    net.eval()
    mc_predict(x, net, T=2)
    assert not net.training


def test_mc_predict_of_a_lenet_refuses_images_of_another_dtype(trained, digits):
    net, _ = trained
    with pytest.raises(ValueError, match=r"^x has dtype torch.float64 but the dtype of the "
                                         r"module's parameters is torch.float32"):
        mc_predict(digits.x_test[:2].double(), net, T=2)
