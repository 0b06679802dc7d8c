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
from vi_dropout.network import Architecture, get_activation, mlp_forward
from vi_dropout.predict import DropoutMLPParams, mc_predict, standard_dropout_predict
from vi_dropout.summaries import classification_summary, regression_summary

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


# ------------------------------------------------------------- shared masks (function draws)


def _function_draws_by_hand(x, ws, bs, kps, T, seed, inverted, activation, max_rows):
    """The documented stream of ``shared_masks=True`` (the former
    ``comparisons.training.dropout_regressor.mc_function_draws``, which drew the committed Mauna
    Loa results): per chunk of ``max_rows // N`` draws and per layer with keep_prob < 1, one
    ``torch.bernoulli`` of a ``T_chunk x 1 x in`` block; kept units scaled in the mask."""
    g = torch.Generator().manual_seed(seed)
    act = get_activation(activation)
    n = x.shape[0]
    t_chunk = max(1, min(T, max_rows // n))
    out = []
    for t0 in range(0, T, t_chunk):
        tc = min(t_chunk, T - t0)
        h = x.unsqueeze(0).expand(tc, n, x.shape[1])
        for i, (w, b, kp) in enumerate(zip(ws, bs, kps)):
            if i > 0:
                h = act(h)
            if kp < 1.0:
                z = torch.bernoulli(torch.full((tc, 1, w.shape[1]), kp, dtype=h.dtype), generator=g)
                h = h * (z * (1.0 / kp if inverted else 1.0))
            h = torch.baddbmm(b.expand(tc, 1, -1), h, w.T.expand(tc, -1, -1))
        out.append(h)
    return torch.cat(out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inverted,max_rows", [(True, 16384), (True, 3 * 7), (False, 1)])
def test_shared_masks_follow_the_documented_stream_bit_for_bit(dtype, inverted, max_rows):
    ws, bs = _net(dtype=dtype)
    x = torch.randn(7, 4, dtype=dtype, generator=torch.Generator().manual_seed(3))
    kps = (1.0, 0.7, 0.9)
    got = mc_predict(x, ws, bs, kps, 10, activation="tanh", inverted=inverted, shared_masks=True,
                     generator=torch.Generator().manual_seed(5), max_rows=max_rows)
    want = _function_draws_by_hand(x, ws, bs, kps, 10, 5, inverted, "tanh", max_rows)
    assert got.shape == (10, 7, 2) and got.dtype == dtype
    assert torch.equal(got, want)
    params = DropoutMLPParams(ws, bs, kps, activation="tanh", inverted=inverted)
    assert torch.equal(params.mc_predict(x, 10, shared_masks=True, max_rows=max_rows,
                                         generator=torch.Generator().manual_seed(5)), want)


def test_shared_masks_give_every_input_of_a_sample_the_same_mask():
    """Identity weights, zero biases: sample t at input n is z_2 * z_1 * x_n, so with
    x_n = (n + 1) * 1 the ratio y / (n + 1) is the product of the masks: one vector per sample
    with shared masks (different between samples), different between inputs without."""
    eye = torch.eye(6, dtype=torch.float64)
    ws, bs = [eye, eye], [torch.zeros(6, dtype=torch.float64)] * 2
    x = torch.arange(1.0, 9.0, dtype=torch.float64).unsqueeze(-1).expand(8, 6)
    for shared in (True, False):
        s = mc_predict(x, ws, bs, 0.6, 50, activation="identity", shared_masks=shared,
                       generator=torch.Generator().manual_seed(0))
        masks = s / x  # T x N x 6, entries 0 / 1
        assert set(masks.unique().tolist()) == {0.0, 1.0}
        same_per_sample = bool((masks == masks[:, :1]).all())
        assert same_per_sample is shared
        assert len({tuple(m[0].tolist()) for m in masks}) > 10  # and it varies between samples


def test_function_draws_have_the_marginals_of_mc_predict():
    # Same law at every input: means and variances agree within 5 Monte Carlo standard errors.
    g = torch.Generator().manual_seed(0)
    ws, bs = Architecture((1, 24, 24, 1), "relu").init_params(generator=g)
    params = DropoutMLPParams(ws, bs, keep_probs=(1.0, 0.7, 0.7), activation="relu",
                              inverted=True)
    x = torch.linspace(-2, 2, 5, dtype=torch.float64).unsqueeze(-1)
    T = 20_000
    a = params.mc_predict(x, T, shared_masks=True,
                          generator=torch.Generator().manual_seed(1))[..., 0]
    b = mc_predict(x, ws, bs, (1.0, 0.7, 0.7), T, activation="relu", inverted=True,
                   generator=torch.Generator().manual_seed(2))[..., 0]
    se_mean = torch.sqrt(a.var(0) / T + b.var(0) / T)
    assert bool(((a.mean(0) - b.mean(0)).abs() <= 5 * se_mean).all())
    # variance: SE of a sample variance ~ sqrt((m4 - s^4) / T), per estimator
    def var_se(s):
        c = s - s.mean(0)
        return torch.sqrt(((c**4).mean(0) - c.var(0) ** 2) / T)
    assert bool(((a.var(0) - b.var(0)).abs() <= 5 * torch.sqrt(var_se(a)**2 + var_se(b)**2)).all())
    # one mask per draw: with keep_prob 1 everywhere the draws are all the deterministic net
    det = DropoutMLPParams(ws, bs, keep_probs=1.0, inverted=True)
    d = det.mc_predict(x, 3, shared_masks=True)
    torch.testing.assert_close(d[0], d[2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        params.mc_predict(x, 0, shared_masks=True)


def test_shared_masks_bad_inputs_are_refused():
    ws, bs = _net()
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^shared_masks must be True or False, got a str"):
        mc_predict(x, ws, bs, 0.5, 3, shared_masks="yes")
    with pytest.raises(ValueError, match=r"^shared_masks=True needs x of shape N x Q and weights "
                                         r"\(out x in\).*got x \(2, 3, 4\)"):
        mc_predict(x.expand(2, 3, 4), ws, bs, 0.5, 3, shared_masks=True)
    we, be = _net(batch=(2,))
    with pytest.raises(ValueError, match=r"^shared_masks=True needs .*weights \[\(2, 6, 4\)"):
        mc_predict(x, we, be, 0.5, 3, shared_masks=True)


# ------------------------------------------------------------------------------ modules


class _LastLayerNet(torch.nn.Module):
    """The last-layer form: features, one nn.Dropout, an nn.Linear head, keep_prob."""

    def __init__(self, keep_prob=0.6, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.keep_prob = keep_prob
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.ReLU()).to(dtype)
        self.dropout = torch.nn.Dropout(1.0 - keep_prob)
        self.head = torch.nn.Linear(7, 3).to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


def _with_batchnorm(dtype=torch.float64):
    """A generic module: Linear - BatchNorm (non-trivial running statistics) - ReLU - Dropout
    - Linear - Dropout - Linear."""
    g = torch.Generator().manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Dropout(0.3),
        torch.nn.Linear(6, 5), torch.nn.Dropout(0.5), torch.nn.Linear(5, 2)).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
        net[1].running_mean.copy_(torch.randn(6, generator=g, dtype=dtype))
        net[1].running_var.copy_(torch.rand(6, generator=g, dtype=dtype) + 0.5)
    return net


def test_a_last_layer_module_follows_the_documented_stream():
    net = _LastLayerNet()
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    T, kp = 8, 0.6
    for shared in (False, True):
        got = mc_predict(x, net, T=T, shared_masks=shared,
                         generator=torch.Generator().manual_seed(3))
        # by hand: features once, masks floor(u + keep_prob) from one T x N x H block
        # (T x 1 x H shared)
        u = torch.rand(T, 1 if shared else 5, 7, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            want = net.head(torch.floor(u + kp) * net.features(x) / kp)
        assert got.shape == (T, 5, 3)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        chunked = mc_predict(x, net, T=T, shared_masks=shared, max_rows=5,
                             generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(chunked, got, rtol=0, atol=1e-12)  # one block or T of them
        # the generic path (a module not in the last-layer form) draws the same masks
        plain = torch.nn.Sequential(net.body, net.dropout, net.head)
        torch.testing.assert_close(mc_predict(x, plain, T=T, shared_masks=shared,
                                              generator=torch.Generator().manual_seed(3)),
                                   got, rtol=0, atol=1e-12)


def test_a_generic_module_runs_in_eval_mode_with_its_dropout_masks_from_the_generator():
    net = _with_batchnorm()
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    T = 7
    net.train()
    stats = net[1].running_mean.clone()
    rng = torch.get_rng_state()
    got = mc_predict(x, net, T=T, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert torch.equal(net[1].running_mean, stats)  # BatchNorm in eval mode: stats untouched
    assert all(m.training for m in net.modules())  # the modes are restored
    # by hand: each dropout layer, in call order, one T x N x width block of uniforms
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        net.eval()
        h = net[2](net[1](net[0](x)))
        u1 = torch.rand(T, 6, 6, dtype=torch.float64, generator=g)
        h = net[4](torch.floor(u1 + 0.7) * h / 0.7)
        u2 = torch.rand(T, 6, 5, dtype=torch.float64, generator=g)
        want = net[6](torch.floor(u2 + 0.5) * h / 0.5)
    net.train()
    assert got.shape == (T, 6, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # the same generator, the same samples
    again = mc_predict(x, net, T=T, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, got)


def test_module_shared_masks_give_every_input_of_a_sample_the_same_mask():
    net = torch.nn.Sequential(torch.nn.Dropout(0.5))
    x = torch.arange(1.0, 9.0, dtype=torch.float64).unsqueeze(-1).expand(8, 6)
    for shared in (True, False):
        s = mc_predict(x, net, T=40, shared_masks=shared,
                       generator=torch.Generator().manual_seed(0))
        masks = s * 0.5 / x  # inverted dropout: kept units scaled by 1 / keep_prob
        assert set(masks.unique().tolist()) == {0.0, 1.0}
        assert bool((masks == masks[:, :1]).all()) is shared


class _Flatten(torch.nn.Module):
    def forward(self, x):
        return x.reshape(-1)


@pytest.mark.parametrize("build,kwargs,match", [
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 2).double()), {},
     r"^weights must be a sequence of tensors or a torch.nn.Module with torch.nn.Dropout "
     r"modules, got a Sequential without any"),
    (lambda: torch.nn.Sequential(torch.nn.Dropout2d(0.5)), {},
     r"^weights: 0 is a Dropout2d; mc_predict samples the masks of torch.nn.Dropout layers only"),
    (lambda: torch.nn.Sequential(torch.nn.Dropout(1.0)), {},
     r"^keep_prob of 0 \(1 - its p\) must lie in \(0, 1\]"),
    (_LastLayerNet, {"biases": [torch.zeros(3)]},
     r"^biases must be None when weights is a torch.nn.Module"),
    (_LastLayerNet, {"keep_probs": 0.5},
     r"^keep_probs must be None when weights is a torch.nn.Module .*got 0.5"),
    (_LastLayerNet, {"activation": "tanh"},
     r"^activation must stay 'relu' when weights is a torch.nn.Module .*got 'tanh'"),
    (_LastLayerNet, {"inverted": True},
     r"^inverted must stay False when weights is a torch.nn.Module .*got True"),
    (_LastLayerNet, {"T": None}, r"^T must be an integer >= 1, got None"),
    (_LastLayerNet, {"T": True}, r"^T must be an integer >= 1, got a bool"),
    (_LastLayerNet, {"shared_masks": 1}, r"^shared_masks must be True or False, got a int"),
    (_LastLayerNet, {"generator": 3}, r"^generator must be a torch.Generator or None, got int"),
    (_LastLayerNet, {"x": torch.zeros(3, 4)},
     r"^x has dtype torch.float32 but the dtype of the module's parameters is torch.float64"),
    (_LastLayerNet, {"x": torch.full((3, 4), float("nan"), dtype=torch.float64)},
     r"^x must be finite, but 12 of 12 entries are NaN or inf"),
    (_LastLayerNet, {"x": torch.zeros(0, 4, dtype=torch.float64)},
     r"^x must hold at least one row \(N >= 1\), got 0 rows \(shape \(0, 4\)\)"),
    (_LastLayerNet, {"x": torch.tensor(1.0, dtype=torch.float64)},
     r"^x must have shape N x \.\.\. \(the module's batch first\), got a 0-D tensor"),
    (lambda: torch.nn.Sequential(_Flatten(), torch.nn.Dropout(0.5)), {},
     r"^weights: the input of a dropout layer must have the module's batch first \(9 rows for "
     r"3 passes of 3 inputs\), got shape \(36,\)"),
])
def test_bad_module_inputs_raise_naming_the_argument(build, kwargs, match):
    kwargs = dict(kwargs)
    x = kwargs.pop("x", torch.ones(3, 4, dtype=torch.float64))
    kwargs.setdefault("T", 3)
    with pytest.raises(ValueError, match=match):
        mc_predict(x, build(), **kwargs)


def test_a_last_layer_module_without_head_bias_takes_the_generic_path():
    net = _LastLayerNet()
    net.head.bias = None
    x = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = mc_predict(x, net, T=3, generator=torch.Generator().manual_seed(2))
    u = torch.rand(3, 4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net.head(torch.floor(u + 0.6) * net.features(x) / 0.6)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


class _BadFeatures(_LastLayerNet):
    def features(self, x):
        return self.body(x).unsqueeze(1)


def test_a_module_with_a_bad_parameter_or_keep_prob_is_refused():
    net = _LastLayerNet()
    with torch.no_grad():
        net.head.weight[0, 0] = float("inf")
    x = torch.ones(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^the module's parameter head.weight must be finite"):
        mc_predict(x, net, T=2)
    odd = _LastLayerNet()
    odd.keep_prob = 0.3  # its nn.Dropout keeps 0.6
    with pytest.raises(ValueError, match=r"^weights: the module's keep_prob 0.3 is not "
                                         r"1 - dropout.p \(0.6"):
        mc_predict(x, odd, T=2)
    with pytest.raises(ValueError, match=r"^weights: the module's features\(x\) must be N x H "
                                         r"\(2 rows\), got shape \(2, 1, 7\)"):
        mc_predict(x, _BadFeatures(), T=2)


def test_module_inputs_that_do_not_fit_are_one_value_error():
    """x with the wrong number of features gave torch's raw 'mat1 and mat2 shapes cannot be
    multiplied (100x3 and 2x32)' (T x N rows of an internal batch)."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                              torch.nn.Linear(32, 1))
    with pytest.raises(ValueError, match=r"^x of shape \(20, 3\) does not go through the module "
                                         r"Sequential"):
        mc_predict(torch.randn(20, 3), net, T=5)
