"""MC dropout prediction and its summaries. Tolerances: 1e-12 (float64 op reordering) unless
stated; statistical checks use a 5-sigma bound."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from tests.common import DTYPES
from vi_dropout.drop_stream import layer_drop_streams
from vi_dropout.network import Architecture, mlp_forward
from vi_dropout.predict import (
    DropoutMLPParams,
    classification_summary,
    mc_predict,
    regression_summary,
    standard_dropout_predict,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(widths=(4, 6, 5, 2), seed=0, batch=(), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ws, _ = Architecture(widths).init_params(generator=g, dtype=dtype)
    ws = [torch.randn(*batch, *w.shape, generator=g, dtype=dtype) for w in ws]
    bs = [torch.randn(*batch, w.shape[-2], generator=g, dtype=dtype) for w in ws]
    return ws, bs


def _looped(x, ws, bs, kps, T, seed, inverted, activation, batch=()):
    """T separate forward passes through network.mlp_forward, masks from the same drop stream."""
    streams = layer_drop_streams(kps, torch.Generator().manual_seed(seed))
    widths = [w.shape[-1] for w in ws]
    out = []
    for _ in range(T):
        masks = []
        for wd, kp, stream in zip(widths, kps, streams):
            m = torch.ones(*batch, x.shape[-2], wd, dtype=x.dtype)
            m.view(-1)[stream.take(m.numel())] = 0.0
            masks.append(m / kp if inverted else m)
        out.append(mlp_forward(x, ws, bs, activation, masks))
    return torch.stack(out)


@pytest.mark.parametrize("inverted", [False, True])
@pytest.mark.parametrize("max_rows", [7 * 3, 10_000])  # several chunks (3 samples each) / one
def test_vectorised_equals_loop(inverted, max_rows):
    ws, bs = _net()
    x = torch.randn(7, 4, dtype=torch.float64)
    kps = (0.8, 0.5, 0.9)
    T = 10
    got = mc_predict(x, ws, bs, kps, T, activation="tanh", inverted=inverted,
                     generator=torch.Generator().manual_seed(5), max_rows=max_rows)
    want = _looped(x, ws, bs, kps, T, 5, inverted, "tanh")
    assert got.shape == (T, 7, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert got.std(0).min() > 0  # the masks really vary between samples


def test_vectorised_equals_loop_with_ensemble_dims():
    ws, bs = _net(batch=(3,))
    x = torch.randn(5, 4, dtype=torch.float64)
    params = DropoutMLPParams(ws, bs, keep_probs=0.7, activation="relu", inverted=True)
    got = params.mc_predict(x, 6, generator=torch.Generator().manual_seed(2), max_rows=30)
    want = _looped(x, ws, bs, (0.7,) * 3, 6, 2, True, "relu", batch=(3,))
    assert got.shape == (6, 3, 5, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_generator_reproducible_and_seed_sensitive():
    ws, bs = _net()
    x = torch.randn(9, 4, dtype=torch.float64)
    a = mc_predict(x, ws, bs, 0.5, 20, generator=torch.Generator().manual_seed(1))
    b = mc_predict(x, ws, bs, 0.5, 20, generator=torch.Generator().manual_seed(1))
    c = mc_predict(x, ws, bs, 0.5, 20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inverted", [False, True])
def test_mc_mean_of_linear_net_matches_standard_dropout(dtype, inverted):
    """For a linear net E[f] equals weight averaging: checks both scaling conventions."""
    ws, bs = _net((3, 4, 2), seed=3, dtype=dtype)
    x = torch.randn(5, 3, dtype=dtype)
    kps = (0.6, 0.8)
    T = 40_000
    s = mc_predict(x, ws, bs, kps, T, activation="identity", inverted=inverted,
                   generator=torch.Generator().manual_seed(0))
    std = standard_dropout_predict(x, ws, bs, kps, activation="identity", inverted=inverted)
    err = (s.double().mean(0) - std.double()).abs()
    assert bool((err <= 5 * s.double().std(0) / math.sqrt(T) + 1e-5).all())


def test_keep_prob_one_gives_deterministic_standard_prediction():
    ws, bs = _net()
    x = torch.randn(4, 4, dtype=torch.float64)
    s = mc_predict(x, ws, bs, 1.0, 3)
    torch.testing.assert_close(s, standard_dropout_predict(x, ws, bs, 1.0).expand(3, 4, 2),
                               rtol=0, atol=1e-12)


def test_regression_summary_against_numpy_scipy():
    g = torch.Generator().manual_seed(0)
    T, N = 50, 7
    samples = torch.randn(T, N, 1, generator=g, dtype=torch.float64)
    y = 3.0 + 2.5 * torch.randn(N, 1, generator=g, dtype=torch.float64)
    std_pred = torch.randn(N, 1, generator=g, dtype=torch.float64)
    tau, ym, ys = 0.7, 3.0, 2.5
    r = regression_summary(samples, y, tau, y_mean=ym, y_std=ys, standard_prediction=std_pred)

    s = ym + ys * samples.numpy()[..., 0]  # T x N, original scale
    yn = y.numpy()[:, 0]
    logpdf = scipy.stats.norm.logpdf(yn[None], loc=s, scale=1 / np.sqrt(tau))
    ll = scipy.special.logsumexp(logpdf, axis=0) - np.log(T)
    np.testing.assert_allclose(r.log_likelihood.numpy(), ll, rtol=0, atol=1e-10)
    np.testing.assert_allclose(float(r.mean_log_likelihood), ll.mean(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.mean.numpy()[:, 0], s.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.variance.numpy()[:, 0], 1 / tau + s.var(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(float(r.rmse), np.sqrt(((yn - s.mean(0)) ** 2).mean()), atol=1e-12)
    sp = ym + ys * std_pred.numpy()[:, 0]
    np.testing.assert_allclose(float(r.rmse_standard), np.sqrt(((yn - sp) ** 2).mean()), atol=1e-12)


def test_classification_identical_samples():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    s = classification_summary(logits.expand(8, 2, 3))
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(s.probs, p, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.predictive_entropy, -(p * p.log()).sum(-1), rtol=0, atol=1e-12)
    assert float(s.predictive_entropy[1]) == pytest.approx(math.log(3), abs=1e-12)
    assert s.mutual_information.abs().max() <= 1e-12
    assert s.variation_ratio.abs().max() == 0


def test_classification_two_class_symmetric():
    a = 1.5
    logits = torch.tensor([[a, -a]] * 3 + [[-a, a]] * 3, dtype=torch.float64).unsqueeze(1)
    s = classification_summary(logits)  # T=6, N=1, C=2
    q = 1 / (1 + math.exp(-2 * a))
    h_each = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert float(s.predictive_entropy) == pytest.approx(math.log(2), abs=1e-12)
    assert float(s.mutual_information) == pytest.approx(math.log(2) - h_each, abs=1e-12)
    assert float(s.variation_ratio) == pytest.approx(0.5, abs=1e-12)


def test_classification_votes_and_zero_probabilities():
    # 2 of 3 samples vote class 0; class 2 has probability exactly 0 (0 log 0 = 0, no NaN).
    logits = torch.tensor([[[5.0, 0.0, -1e4]], [[4.0, 1.0, -1e4]], [[0.0, 3.0, -1e4]]],
                          dtype=torch.float64)
    s = classification_summary(logits)
    assert float(s.variation_ratio) == pytest.approx(1 / 3, abs=1e-12)
    assert torch.isfinite(s.predictive_entropy).all() and torch.isfinite(s.mutual_information).all()
    p = torch.softmax(logits, -1)[..., :2]
    pbar = p.mean(0)
    h = -(pbar * pbar.log()).sum(-1)
    mi = h - (-(p * p.log()).sum(-1)).mean(0)
    torch.testing.assert_close(s.predictive_entropy, h, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.mutual_information, mi, rtol=0, atol=1e-12)


def test_bad_inputs_raise_naming_the_argument():
    ws, bs = _net()
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="T must be"):
        mc_predict(x, ws, bs, 0.5, 0)
    with pytest.raises(ValueError, match=r"keep_probs\[1\]"):
        mc_predict(x, ws, bs, [0.5, 1.5, 0.5], 3)
    with pytest.raises(ValueError, match="keep_probs"):
        mc_predict(x, ws, bs, 0.0, 3)
    xn = x.clone()
    xn[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x must be finite"):
        mc_predict(xn, ws, bs, 0.5, 3)
    wn = [w.clone() for w in ws]
    wn[1][0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        standard_dropout_predict(x, wn, bs, 0.5)
    s = torch.zeros(4, 3, 1, dtype=torch.float64)
    y = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="tau"):
        regression_summary(s, y, tau=0.0)
    with pytest.raises(ValueError, match="y_std"):
        regression_summary(s, y, tau=1.0, y_std=-1.0)
    with pytest.raises(ValueError, match="T must be"):
        regression_summary(s[:0], y, tau=1.0)
    s[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="samples"):
        regression_summary(s, y, tau=1.0)
    with pytest.raises(ValueError, match="logit_samples"):
        classification_summary(torch.full((2, 3, 2), float("inf")))


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflowing_prediction_is_refused_not_returned_as_nan(dtype):
    """Finite but huge weights overflow the activations: both predictors must say so (naming the
    weights) instead of returning NaN / inf samples."""
    big = torch.finfo(dtype).max / 4
    w = [torch.full((3, 2), big, dtype=dtype), torch.full((1, 3), big, dtype=dtype)]
    b = [torch.zeros(3, dtype=dtype), torch.zeros(1, dtype=dtype)]
    x = torch.ones(4, 2, dtype=dtype)
    with pytest.raises(ValueError, match=r"mc_predict produced \d+ of 40 outputs that are NaN or inf.*weights"):
        mc_predict(x, w, b, keep_probs=0.9, T=10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="standard_dropout_predict produced 4 of 4 outputs"):
        standard_dropout_predict(x, w, b, 0.9)


def test_regression_summary_refuses_one_dimensional_targets():
    """``y`` of shape ``(N,)`` would broadcast against ``T x N x 1`` samples (RMSE and LL over all
    N^2 pairs): refused with the fix named; ``N x 1`` gives the per-point numbers."""
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(50, 6, 1, dtype=torch.float64, generator=g)
    y = torch.randn(6, 1, dtype=torch.float64, generator=g)
    ok = regression_summary(samples, y, tau=2.0)
    assert ok.log_likelihood.shape == (6,)
    torch.testing.assert_close(ok.rmse, (y - samples.mean(0)).square().mean().sqrt())
    with pytest.raises(ValueError, match=r"y must have shape N x D .*reshape\(-1, 1\)"):
        regression_summary(samples, y[:, 0], tau=2.0)
    with pytest.raises(ValueError, match="y must have 6 rows"):
        regression_summary(samples, y[:5], tau=2.0)
    with pytest.raises(ValueError, match=r"standard_prediction must have shape N x D"):
        regression_summary(samples, y, tau=2.0, standard_prediction=samples.mean(0)[:, 0])


PREDICTORS = [
    pytest.param(lambda x, ws, bs, kp=0.5: mc_predict(x, ws, bs, kp, 3), id="mc_predict"),
    pytest.param(lambda x, ws, bs, kp=0.5: standard_dropout_predict(x, ws, bs, kp),
                 id="standard_dropout_predict"),
    pytest.param(lambda x, ws, bs, kp=0.5: DropoutMLPParams(ws, bs, kp).mc_predict(x, 3),
                 id="DropoutMLPParams.mc_predict"),
]


@pytest.mark.parametrize("predict", PREDICTORS)
@pytest.mark.parametrize("shape,message", [
    ((0, 4), r"^x must hold at least one row \(N >= 1\), got 0 rows \(shape \(0, 4\)\)$"),
    ((2, 0, 4), r"^x must hold at least one row \(N >= 1\), got 0 rows \(shape \(2, 0, 4\)\)$"),
    ((0, 3, 4), r"^x must hold at least one row \(N >= 1\), got 0 rows \(shape \(0, 3, 4\)\)$"),
    ((), r"^x must have shape \.\.\. x N x Q \(N x Q for N points\), got a 0-D tensor"),
    ((4,), r"^x must have shape \.\.\. x N x Q \(N x Q for N points\), got a 1-D tensor of "
           r"shape \(4,\): pass x.reshape\(1, -1\)"),
])
def test_empty_or_shapeless_inputs_are_refused_naming_x(predict, shape, message):
    """Zero rows gave a raw torch reshape error in mc_predict (and an empty result from
    standard_dropout_predict); a 0-D x an IndexError; a 1-D x was silently read as one point."""
    ws, bs = _net()
    with pytest.raises(ValueError, match=message):
        predict(torch.zeros(shape, dtype=torch.float64), ws, bs)


@pytest.mark.parametrize("predict", PREDICTORS)
@pytest.mark.parametrize("x_dtype,w_dtype", [(torch.float32, torch.float64),
                                             (torch.float64, torch.float32)])
def test_x_of_another_dtype_than_the_weights_is_refused_not_cast(predict, x_dtype, w_dtype):
    ws, bs = _net(dtype=w_dtype)
    x = torch.randn(3, 4, dtype=x_dtype)
    with pytest.raises(ValueError, match=rf"^x has dtype {x_dtype} but the dtype of the weights "
                                         rf"is {w_dtype}: convert x with x.to\({w_dtype}\).*"
                                         rf"not cast silently$"):
        predict(x, ws, bs)
    assert predict(x.to(w_dtype), ws, bs).dtype == w_dtype


@pytest.mark.parametrize("predict", PREDICTORS)
def test_weights_and_biases_of_mixed_dtypes_are_refused(predict):
    ws, bs = _net()
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^weights\[1\] has dtype torch.float32 but the dtype of "
                                         r"weights\[0\] is torch.float64"):
        predict(x, [ws[0], ws[1].float(), ws[2]], bs)
    with pytest.raises(ValueError, match=r"^biases\[2\] has dtype torch.float32"):
        predict(x, ws, [bs[0], bs[1], bs[2].float()])
    with pytest.raises(ValueError, match=r"^weights (must be a sequence of tensors|and biases)"):
        predict(x, ws[0], bs)  # one tensor where a list of them belongs


@pytest.mark.parametrize("predict", PREDICTORS)
@pytest.mark.parametrize("keep_prob,kind", [
    ("0.9", "a str"), (True, "a bool"), (np.bool_(True), "a bool"),
    ([0.9, "0.9", 0.9], "a str"), ([0.9, 0.9, True], "a bool"),
])
def test_keep_probs_must_be_numbers(predict, keep_prob, kind):
    """``"0.9"`` was parsed and ``True`` read as keep_prob 1 (no dropout at all), silently."""
    ws, bs = _net()
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"^keep_probs(\[\d\])? must be a real number in \(0, 1\], "
                                         rf"got {kind} .*bools and strings are not numbers$"):
        predict(x, ws, bs, keep_prob)


@pytest.mark.parametrize("T,kind", [(True, "a bool"), (np.bool_(True), "a bool"), ("3", "a str")])
def test_number_of_samples_must_be_an_integer_not_a_bool(T, kind):
    """``T=True`` silently drew one sample."""
    ws, bs = _net()
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"^T must be an integer >= 1, got {kind} "):
        mc_predict(x, ws, bs, 0.5, T)
    with pytest.raises(ValueError, match=rf"^max_rows must be an integer >= 1, got {kind} "):
        mc_predict(x, ws, bs, 0.5, 3, max_rows=T)


def test_numpy_scalars_are_valid_arguments_with_the_same_samples():
    ws, bs = _net()
    x = torch.randn(3, 4, dtype=torch.float64)
    want = mc_predict(x, ws, bs, 0.9, 10, generator=torch.Generator().manual_seed(0))
    got = mc_predict(x, ws, bs, np.float64(0.9), np.int64(10),
                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, want)
    assert torch.equal(standard_dropout_predict(x, ws, bs, np.float64(0.9)),
                       standard_dropout_predict(x, ws, bs, 0.9))


@pytest.mark.parametrize("kwargs,message", [
    (dict(tau=True), r"^tau must be a finite number > 0, got a bool"),
    (dict(tau="2"), r"^tau must be a finite number > 0, got a str"),
    (dict(tau=1.0, y_std=True), r"^y_std must be a finite number > 0, got a bool"),
    (dict(tau=1.0, y_mean="0"), r"^y_mean must be a finite real number, got a str"),
    (dict(tau=1.0, y_mean=float("nan")), r"^y_mean must be a finite real number, got nan"),
])
def test_regression_summary_scalars_must_be_numbers(kwargs, message):
    s = torch.zeros(4, 3, 1, dtype=torch.float64)
    y = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=message):
        regression_summary(s, y, **kwargs)
    # NumPy scalars are numbers
    regression_summary(s, y, tau=np.float64(2.0), y_mean=np.float64(0.5), y_std=np.int64(2))


@pytest.mark.parametrize("kwargs, match", [
    ({"inverted": "False"}, r"inverted must be True or False, got a str \('False'\)"),
    ({"progress": "no"}, r"progress must be True or False, got a str"),
    ({"inverted": 1}, r"inverted must be True or False, got a int"),
    ({"generator": "seed"}, r"generator must be a torch.Generator or None, got str"),
])
def test_flags_and_generator_are_checked(kwargs, match):
    """inverted="False" was truthy (it scaled the weights); a string generator was a TypeError."""
    w = [torch.ones(3, 2, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)]
    b = [torch.zeros(3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]
    with pytest.raises(ValueError, match=match):
        mc_predict(torch.ones(5, 2, dtype=torch.float64), w, b, keep_probs=0.9, T=2, **kwargs)
