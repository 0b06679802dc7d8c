"""The method registry: the built-in methods read from it make exactly the cells they made
before (the same ids, so committed folders resume), a method of your own is checked where it is
registered and where it predicts, and a bad method file is one named error."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.cli.uci import UCIGroupKey
from comparisons.protocols.registry import (
    RunSettings,
    UCIMethod,
    builtin_method_ids,
    get_method,
    load_method_file,
    method_ids,
    register_method,
    split_method,
)
from comparisons.report.styles import METHOD_STYLES, method_color, method_label


def test_builtin_methods_are_registered_with_their_styles():
    assert method_ids()[:8] == builtin_method_ids() == (
        "mc_dropout", "gp", "concrete_dropout", "full_elbo", "mfvi", "deep_ensemble", "laplace",
        "laplace_kfac")
    for method_id in method_ids()[:8]:
        method = get_method(method_id)
        for record_method in method.record_methods:
            assert record_method in METHOD_STYLES, record_method
        if method_id != "gp":
            assert METHOD_STYLES[method_id] == (method.label, method.color)
    # gp's cells record two methods, each with its own style (no style of its own)
    assert get_method("gp").record_methods == ("gp_arccos1", "gp_se")
    assert "gp" not in METHOD_STYLES


def test_builtin_cells_are_the_ones_the_protocols_made():
    """The cell ids (config hashes included) of the registry's make_cells equal those of the
    protocol functions with the settings the uci command passed before the registry."""
    from comparisons.protocols.uci import MCDropoutUCISettings, uci_cells
    from comparisons.protocols.uci_concrete import ConcreteUCISettings, concrete_uci_cells
    from comparisons.protocols.uci_deep_ensemble import (
        DeepEnsembleUCISettings,
        deep_ensemble_uci_cells,
    )
    from comparisons.protocols.uci_gp import GPUCISettings, gp_uci_cells
    from comparisons.protocols.uci_mfvi import MFVIUCISettings, mfvi_uci_cells

    s = RunSettings(epochs_multiplier=0.5, num_samples=50, seed=3, max_grid=2,
                    gp_max_fit_size=100, temperature=0.2, ensemble_size=2, ensemble_epochs=3,
                    ensemble_lrs=(0.01,))
    shared = dict(epochs_multiplier=0.5, seed=3)
    expected = {
        "mc_dropout": uci_cells(["yacht"], "0-2", MCDropoutUCISettings(num_samples=50, max_grid=2,
                                                               **shared)),
        "gp": gp_uci_cells(["yacht"], "0-2", GPUCISettings(max_fit_size=100)),
        "full_elbo": concrete_uci_cells(["yacht"], "0-2", ConcreteUCISettings(
            num_samples=50, temperature=0.2, **shared), "full_elbo"),
        "mfvi": mfvi_uci_cells(["yacht"], "0-2", MFVIUCISettings(num_samples=50, **shared)),
        "deep_ensemble": deep_ensemble_uci_cells(["yacht"], "0-2", DeepEnsembleUCISettings(
            ensemble_size=2, epochs=3, lrs=(0.01,), seed=3)),
    }
    for method_id, cells in expected.items():
        got = get_method(method_id).make_cells(["yacht"], "0-2", s)
        assert [c.cell_id for c in got] == [c.cell_id for c in cells], method_id


def test_group_keys_follow_each_method():
    key = UCIGroupKey(RunSettings(group_splits=5))
    mc = get_method("mc_dropout").make_cells(["yacht"], "0-5", RunSettings())
    assert key(mc[0]) == key(mc[4]) != key(mc[5])
    assert UCIGroupKey()(mc[0]) is None  # one split per group by default
    mfvi = get_method("mfvi").make_cells(["yacht"], "0-1", RunSettings())
    assert key(mfvi[0]) == key(mfvi[1]) is not None
    gp = get_method("gp").make_cells(["yacht"], "0", RunSettings())
    assert key(gp[0]) is None


def _fit(x_train, y_train, x_test, settings):
    return np.zeros(len(x_test)), np.ones(len(x_test))


def test_a_method_of_your_own_is_registered_and_styled():
    method = register_method(split_method("test_zero_mean", _fit, label="zero mean",
                                          color="tab:gray"), replace=True)
    assert get_method("test_zero_mean") is method
    assert method_label("test_zero_mean") == "zero mean"
    assert method_color("test_zero_mean") == "tab:gray"
    with pytest.raises(ValueError, match="'test_zero_mean' is already registered"):
        register_method(split_method("test_zero_mean", _fit))
    with pytest.raises(ValueError, match="unknown method 'nope'; registered: mc_dropout"):
        get_method("nope")


@pytest.mark.parametrize("bad, match", [
    (lambda: UCIMethod("Bad-Id", "x", "red", _fit, _fit), "id must be a non-empty string"),
    (lambda: UCIMethod("ok", "x", "red", None, _fit), "make_cells of method 'ok' must be"),
    (lambda: split_method("ok", 3), "fit_predict must be callable"),
    (lambda: split_method("ok", _fit, settings_fields=("epochs",)), "not RunSettings fields"),
    (lambda: register_method("mc_dropout"), "method must be a UCIMethod"),
    (lambda: RunSettings(num_samples=True), "num_samples must be an integer"),
    (lambda: RunSettings(dtype="float16"), "dtype must be 'float32' or 'float64'"),
])
def test_bad_methods_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


@pytest.mark.parametrize("out, match", [
    (lambda n: (np.zeros(n),), r"must return \(mean, var\)"),
    (lambda n: (np.zeros(n + 1), np.ones(n + 1)), "mean must hold one value per test row"),
    (lambda n: (np.zeros(n), np.full(n, np.nan)), "var is not finite"),
    (lambda n: (np.zeros(n), np.zeros(n)), "var must be > 0"),
])
def test_a_wrong_predictive_is_named(out, match):
    from comparisons.datasets.uci import load_uci

    method = split_method("test_wrong", lambda xt, yt, xs, s: out(len(xs)))
    with pytest.raises(ValueError, match="method test_wrong: fit_predict.*" + match):
        method.split_predictive(load_uci("yacht", 0), RunSettings())


def test_the_predictive_is_mapped_to_the_original_scale():
    """A fit_predict returning the standardised test targets and unit variance: the mapped
    mean is y_test and the variance y_std^2 (float64, to rounding)."""
    from comparisons.datasets.uci import load_uci, standardize

    raw = load_uci("yacht", 0)
    std = standardize(raw)
    method = split_method("test_oracle", lambda xt, yt, xs, s: (
        (np.asarray(raw.y_test)[:, 0] - std.y_mean) / std.y_std, np.ones(len(xs))))
    mean, var = method.split_predictive(raw, RunSettings())
    np.testing.assert_allclose(mean, raw.y_test[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, std.y_std**2, rtol=1e-12)


@pytest.mark.parametrize("text, match", [
    ("raise RuntimeError('boom')", "failed when imported: RuntimeError: boom"),
    ("import sys; sys.exit(0)", r"called sys.exit\(0\) when imported"),
    ("x = 1", "registered no method"),
])
def test_a_bad_method_file_is_one_named_error(tmp_path, text, match):
    path = tmp_path / "mine.py"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=match):
        load_method_file(path)
    with pytest.raises(ValueError, match="expected an existing .py file"):
        load_method_file(tmp_path / "missing.py")
