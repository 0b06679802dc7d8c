"""Deep ensembles on UCI (:mod:`comparisons.protocols.uci_deep_ensemble`): the exact mixture
density and the moment-matched metrics against a direct scipy / numpy computation, one batched
fit of every member of every split (seeds, FGSM steps), a split gives the same numbers alone or
in a group, a diverging member fails only its own split's cell (named), the group key and the
config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from comparisons.datasets.uci import load_uci, standardize
from comparisons.protocols import uci_deep_ensemble
from comparisons.protocols.learned import gaussian_mixture_log_density, gaussian_mixture_metrics
from comparisons.protocols.uci import protocol_seed
from comparisons.protocols.uci_deep_ensemble import (
    DEEP_ENSEMBLE_METHOD,
    DeepEnsembleUCISettings,
    adversarial_steps,
    deep_ensemble_group_key,
    deep_ensemble_uci_cells,
    run_deep_ensemble_uci_cells,
)
from comparisons.protocols.uci_mfvi import MFVIUCISettings, mfvi_uci_cells
from comparisons.runner.executors import CellError, CellGroup
from comparisons.runner.store import validate_records
from vi_dropout.network import mlp_forward

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(ensemble_size=3, epochs=10, lrs=(0.01,), dtype="float64")
REAL_TRAIN = uci_deep_ensemble.train_batched
METRICS = ("rmse", "test_ll", "coverage_95", "ensemble_size", "adversarial", "epochs", "lr",
           "final_loss")


def _metrics(records):
    return {r["metric"]: r["value"] for r in records}


def _spy(monkeypatch, corrupt=None):
    """Record every train_batched call (and its result); ``corrupt``: scale that network's
    targets by 1e200 (its loss overflows at once)."""
    calls = []
    real = REAL_TRAIN

    def spy(x, y, *args, **kwargs):
        if corrupt is not None:
            y = y.clone()
            y[corrupt] *= 1e200
        res = real(x, y, *args, **kwargs)
        calls.append((x, y, args, kwargs, res))
        return res

    monkeypatch.setattr(uci_deep_ensemble, "train_batched", spy)
    return calls


def test_mixture_log_density_against_scipy():
    rng = np.random.default_rng(0)
    M, N = 5, 40
    means = rng.normal(size=(M, N)) * 3
    variances = rng.uniform(1e-3, 4.0, size=(M, N))
    y = rng.normal(size=N) * 3
    y[0] = 60.0  # far in the tails of every member: needs the log-sum-exp
    got = gaussian_mixture_log_density(torch.tensor(y), torch.tensor(means),
                                       torch.tensor(variances)).numpy()
    logpdf = stats.norm.logpdf(y, means, np.sqrt(variances))
    want = special.logsumexp(logpdf, axis=0) - math.log(M)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    direct = np.log(np.mean(stats.norm.pdf(y[1:], means[:, 1:], np.sqrt(variances[:, 1:])), 0))
    np.testing.assert_allclose(got[1:], direct, rtol=1e-10, atol=1e-10)


def test_mixture_metrics_moment_matching_and_jacobian():
    raw = load_uci("yacht", 0)
    std = standardize(raw)
    rng = np.random.default_rng(1)
    M, N = 4, raw.y_test.shape[0]
    means = std.y_test[None, :, :] + 0.3 * rng.normal(size=(M, N, 1))
    variances = rng.uniform(0.01, 0.5, size=(M, N, 1))
    got = gaussian_mixture_metrics(torch.tensor(means), torch.tensor(variances), raw, std)
    ym, ys, y = float(std.y_mean), float(std.y_std), raw.y_test[:, 0]
    mu_o, var_o = ym + ys * means[..., 0], ys**2 * variances[..., 0]
    mean = mu_o.mean(0)
    var = (var_o + mu_o**2).mean(0) - mean**2  # the paper's formula for the mixture variance
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((y - mean) ** 2)), rel=1e-12)
    inside = np.abs(y - mean) <= stats.norm.ppf(0.975) * np.sqrt(var)
    assert got["coverage_95"] == pytest.approx(inside.mean(), abs=1e-12)
    density = np.mean(stats.norm.pdf(y, mu_o, np.sqrt(var_o)), 0)
    assert got["test_ll"] == pytest.approx(np.mean(np.log(density)), rel=1e-10)
    # the Jacobian: the standardised-scale density at (y - ym) / ys, minus log ys
    std_density = np.mean(stats.norm.pdf((y - ym) / ys, means[..., 0], np.sqrt(variances[..., 0])),
                          0)
    assert got["test_ll"] == pytest.approx(np.mean(np.log(std_density)) - math.log(ys), rel=1e-10)


def test_records_against_a_direct_computation(monkeypatch):
    calls = _spy(monkeypatch)
    config = DeepEnsembleUCISettings(**TINY)
    recs = run_deep_ensemble_uci_cells(deep_ensemble_uci_cells(["yacht"], "2", config)[0])
    validate_records(recs)
    got = _metrics(recs)
    assert set(got) == {*METRICS, "group_size", "wall_time_s"}
    assert {r["method"] for r in recs} == {DEEP_ENSEMBLE_METHOD}
    assert all("epochs_multiplier" not in r and "num_samples" not in r for r in recs)
    assert (got["ensemble_size"], got["adversarial"], got["epochs"], got["lr"]) == (3, 0, 10, 0.01)
    (x, y, args, kwargs, fit), = calls  # one batched call for the whole ensemble
    assert x.shape[0] == 3 and args[0] == 1.0 and args[1] == 0.0
    base = protocol_seed(config, 2) + uci_deep_ensemble.SEED_OFFSET
    assert list(args[2]) == [base, base + 1, base + 2]
    assert kwargs["loss"] == "gaussian_nll" and kwargs["adversarial_epsilon"] is None
    assert (kwargs["lr"], kwargs["batch_size"], kwargs["hidden"]) == (0.01, 100, (50,))
    raw = load_uci("yacht", 2)
    std = standardize(raw)
    out = mlp_forward(torch.tensor(std.x_test), fit.weights, fit.biases)
    mu = out[..., 0].numpy()
    var = np.log1p(np.exp(out[..., 1].numpy())) + 1e-6
    ym, ys = float(std.y_mean), float(std.y_std)
    density = np.mean(stats.norm.pdf(raw.y_test[:, 0], ym + ys * mu, ys * np.sqrt(var)), 0)
    assert got["test_ll"] == pytest.approx(np.mean(np.log(density)), rel=1e-10)
    assert got["rmse"] == pytest.approx(
        np.sqrt(np.mean((raw.y_test[:, 0] - ym - ys * mu.mean(0)) ** 2)), rel=1e-10)
    assert got["final_loss"] == pytest.approx(float(fit.losses[:, -1].mean()), rel=1e-12)
    assert (fit.weights[0][0] - fit.weights[0][1]).abs().max() > 0.1  # distinct members


def test_a_split_gives_the_same_numbers_alone_or_in_a_group():
    cells = deep_ensemble_uci_cells(["yacht"], "0-2", DeepEnsembleUCISettings(**TINY))
    grouped = run_deep_ensemble_uci_cells(CellGroup(tuple(cells)))
    alone = run_deep_ensemble_uci_cells(cells[1])
    assert len(grouped) == 3 and all(isinstance(g, list) for g in grouped)
    a, g = _metrics(alone), _metrics(grouped[1])
    assert a["group_size"] == 1 and g["group_size"] == 3
    for k in METRICS:
        assert g[k] == pytest.approx(a[k], rel=1e-9, abs=1e-12), k
    assert {r["split"] for r in grouped[2]} == {2}


def test_a_diverging_member_fails_only_its_split(monkeypatch):
    # network 5 = split 1 (second of the group), member 2 of 3
    _spy(monkeypatch, corrupt=5)
    cells = deep_ensemble_uci_cells(["yacht"], "0-2", DeepEnsembleUCISettings(**TINY))
    out = run_deep_ensemble_uci_cells(CellGroup(tuple(cells)))
    assert isinstance(out[1], CellError)
    assert "yacht split 1 (deep_ensemble)" in out[1].error
    assert "member 2 of 3" in out[1].error and "diverged at epoch 0" in out[1].error
    assert isinstance(out[0], list) and isinstance(out[2], list)
    assert {r["split"] for r in out[2]} == {2}
    # a cell run alone raises with the same message
    _spy(monkeypatch, corrupt=0)
    with pytest.raises(RuntimeError, match=r"yacht split 0 .*member 0 of 3"):
        run_deep_ensemble_uci_cells(cells[0])


def test_adversarial_option(monkeypatch):
    calls = _spy(monkeypatch)
    config = DeepEnsembleUCISettings(**TINY | dict(adversarial_epsilon=0.01))
    recs = run_deep_ensemble_uci_cells(CellGroup(tuple(
        deep_ensemble_uci_cells(["yacht"], "0-1", config))))
    assert all(_metrics(r)["adversarial"] == 1 for r in recs)
    eps = calls[0][3]["adversarial_epsilon"]
    assert eps.shape == (6, 6)  # 2 splits x 3 members, 6 input columns
    for e, split in enumerate([0, 0, 0, 1, 1, 1]):
        x = standardize(load_uci("yacht", split)).x_train
        np.testing.assert_allclose(eps[e].numpy(), 0.01 * (x.max(0) - x.min(0)), rtol=1e-15)
        np.testing.assert_allclose(
            eps[e].numpy(), adversarial_steps(standardize(load_uci("yacht", split)), 0.01))
    plain = run_deep_ensemble_uci_cells(deep_ensemble_uci_cells(["yacht"], "0",
                                                                DeepEnsembleUCISettings(**TINY))[0])
    assert _metrics(plain)["test_ll"] != _metrics(recs[0])["test_ll"]


def test_group_key_and_exports():
    cells = deep_ensemble_uci_cells(["yacht", "bostonHousing"], "0-1", DeepEnsembleUCISettings())
    keys = [deep_ensemble_group_key(c) for c in cells]
    assert keys[0] == keys[1] != keys[2] == keys[3]
    other = deep_ensemble_uci_cells(["yacht"], "0", DeepEnsembleUCISettings(ensemble_size=3))[0]
    assert deep_ensemble_group_key(other) != keys[0]
    assert deep_ensemble_group_key(mfvi_uci_cells(["yacht"], "0", MFVIUCISettings())[0]) is None
    assert DEEP_ENSEMBLE_METHOD == "deep_ensemble"
    assert cells[0].config["lrs"] == (0.1, 0.01, 0.001)
    assert cells[0].config["epochs"] == 40 and cells[0].config["adversarial_epsilon"] is None


@pytest.mark.parametrize("bad, match", [
    (dict(ensemble_size=0), "ensemble_size"),
    (dict(ensemble_size=-2), "ensemble_size"),
    (dict(ensemble_size=2.5), "ensemble_size"),
    (dict(epochs=0), "epochs"),
    (dict(batch_size=0), "batch_size"),
    (dict(lrs=(0.1, -1.0)), "lrs"),
    (dict(lrs=()), "lrs"),
    (dict(lrs=(0.1, 0.1)), "lrs"),
    (dict(lrs=0.1), "lrs"),
    (dict(validation_fraction=1.0), "validation_fraction"),
    (dict(validation_fraction=0.0), "validation_fraction"),
    (dict(weight_decay=-1e-3), "weight_decay"),
    (dict(adversarial_epsilon=0.0), "adversarial_epsilon"),
    (dict(adversarial_epsilon=float("nan")), "adversarial_epsilon"),
    (dict(dtype="float16"), "dtype"),
])
def test_config_checks_name_the_setting(bad, match):
    with pytest.raises(ValueError, match=match):
        DeepEnsembleUCISettings(**bad)


def test_step_size_chosen_on_validation_rows(monkeypatch):
    """The validation fits: every (split, step size, member) in one batched call on the first
    80% of the training rows; each split keeps the step size of the highest mean mixture
    log-density on the last 20%, recomputed here from the returned networks; the final fit uses
    the chosen step size per split on all training rows."""
    calls = _spy(monkeypatch)
    lrs = (0.03, 0.003)
    config = DeepEnsembleUCISettings(**TINY | dict(ensemble_size=2, lrs=lrs))
    cells = deep_ensemble_uci_cells(["yacht"], "0-1", config)
    out = run_deep_ensemble_uci_cells(CellGroup(tuple(cells)))
    assert len(calls) == 2  # validation fits, then the final fits
    (xv, _, args_v, kw_v, fit_v), (xf, _, args_f, kw_f, _) = calls
    n_train = load_uci("yacht", 0).x_train.shape[0]
    assert xv.shape[:2] == (2 * 2 * 2, int(0.8 * n_train)) and xf.shape[:2] == (4, n_train)
    assert list(kw_v["lr"]) == [0.03, 0.03, 0.003, 0.003] * 2
    base = [protocol_seed(config, s) + uci_deep_ensemble.SEED_OFFSET for s in (0, 1)]
    assert list(args_v[2]) == [base[0], base[0] + 1] * 2 + [base[1], base[1] + 1] * 2
    chosen = []
    for e, split in enumerate((0, 1)):
        raw = load_uci("yacht", split)  # first 80% of the training rows fit, last 20% scored
        n_fit = int(0.8 * n_train)
        x_fit = raw.x_train[:n_fit]
        mx, sx = x_fit.mean(0), x_fit.std(0)
        sx[sx == 0] = 1
        y_fit = raw.y_train[:n_fit, 0]
        my, sy = y_fit.mean(), y_fit.std()
        xs = (raw.x_train[n_fit:] - mx) / sx
        scores = []
        for k in range(2):
            members = slice((e * 2 + k) * 2, (e * 2 + k + 1) * 2)
            o = mlp_forward(torch.tensor(xs), [w[members] for w in fit_v.weights],
                            [b[members] for b in fit_v.biases]).numpy()
            var = np.log1p(np.exp(o[..., 1])) + 1e-6
            dens = np.mean(stats.norm.pdf(raw.y_train[n_fit:, 0], my + sy * o[..., 0],
                                          sy * np.sqrt(var)), 0)
            scores.append(np.mean(np.log(dens)))
        got = _metrics(out[e])
        for k, lr in enumerate(lrs):
            assert got[f"validation_ll_lr_{lr:g}"] == pytest.approx(scores[k], rel=1e-9)
        chosen.append(lrs[int(np.argmax(scores))])
        assert got["lr"] == chosen[-1]
    assert list(kw_f["lr"] if not isinstance(kw_f["lr"], float) else [kw_f["lr"]] * 4) == [
        chosen[0], chosen[0], chosen[1], chosen[1]]


def test_a_step_size_that_diverges_is_not_chosen(monkeypatch):
    """Validation network 0 (split 0, the first step size, member 0) diverges: split 0 must
    take the second step size; split 1 is scored as usual."""
    config = DeepEnsembleUCISettings(**TINY | dict(ensemble_size=2, lrs=(0.03, 0.003)))
    monkeypatch.setattr(uci_deep_ensemble, "train_batched", _corrupt_first_call(REAL_TRAIN, [0]))
    out = run_deep_ensemble_uci_cells(CellGroup(tuple(
        deep_ensemble_uci_cells(["yacht"], "0-1", config))))
    got = _metrics(out[0])
    assert got["lr"] == 0.003 and "validation_ll_lr_0.03" not in got
    assert "validation_ll_lr_0.03" in _metrics(out[1])
    # every step size of split 1 diverges: its cell fails, named; split 0 is kept
    monkeypatch.setattr(uci_deep_ensemble, "train_batched",
                        _corrupt_first_call(REAL_TRAIN, [4, 6]))
    out = run_deep_ensemble_uci_cells(CellGroup(tuple(
        deep_ensemble_uci_cells(["yacht"], "0-1", config))))
    assert isinstance(out[0], list) and isinstance(out[1], CellError)
    assert "yacht split 1 (deep_ensemble): every step size diverged" in out[1].error


def _corrupt_first_call(real, networks):
    """``train_batched`` whose FIRST call has the ``networks``' targets scaled by 1e200."""
    state = {"calls": 0}

    def train(x, y, *args, **kwargs):
        state["calls"] += 1
        if state["calls"] == 1:
            y = y.clone()
            y[networks] *= 1e200
        return real(x, y, *args, **kwargs)

    return train
