"""The pitfall experiments on tiny settings. Thresholds: the improper-KL rows follow the verify
report's tolerances (value residual <= 10 theta, gradient difference <= 50 theta); the
non-concentration check uses ratios with wide margins around theory (GP latent variance ~ 1/N)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comparisons.cli import main
from comparisons.pitfalls import (
    PitfallSettings,
    improper_kl_records,
    keep_prob_sensitivity,
    non_concentration_records,
)

torch.set_num_threads(1)
TINY = PitfallSettings(steps=150, num_samples=100)


def _value(records, method, split, metric):
    (v,) = [r["value"] for r in records
            if r["method"] == method and r["split"] == split and r["metric"] == metric]
    return v


def test_improper_kl_value_diverges_like_log_theta_and_gradient_converges():
    thetas = (1e-2, 1e-3, 1e-4, 1e-6)
    recs = improper_kl_records(thetas)
    vals = [_value(recs, "exact_elbo", t, "elbo_minus_dropout_loss") for t in thetas]
    consts = [_value(recs, "exact_elbo", t, "predicted_offset") for t in thetas]
    grads = [_value(recs, "exact_elbo", t, "gradient_relative_difference") for t in thetas]
    assert all(b > a for a, b in zip(vals, vals[1:]))  # grows as theta shrinks
    for t, v, c, g in zip(thetas, vals, consts, grads):
        assert abs(v - c) <= 10 * t and g <= 50 * t
    # -log theta growth: the increment per decade is the same at 1e-3 -> 1e-4 and 1e-4 -> 1e-6.
    per_decade = [(vals[2] - vals[1]) / math.log(10), (vals[3] - vals[2]) / math.log(100)]
    assert per_decade[0] == pytest.approx(per_decade[1], rel=1e-3)


def test_non_concentration_gp_shrinks_dropout_does_not():
    recs = non_concentration_records((10, 100), keep_prob=0.9, settings=TINY)
    gp = [_value(recs, "gp-arccos1", n, "epistemic_variance_train") for n in (10, 100)]
    mc = [_value(recs, "mc_dropout", n, "epistemic_variance_train") for n in (10, 100)]
    assert gp[1] < 0.3 * gp[0]  # theory: about 1/10
    assert mc[1] > 0.3 * mc[0]  # masks keep the spread
    assert mc[1] > 3 * gp[1]


def test_keep_prob_sensitivity_shapes_and_noise_floor():
    res = keep_prob_sensitivity((0.5, 0.99), num_train=60, settings=TINY)
    assert res.mc_sd.shape == (2, res.x.shape[0]) and res.gp_sd.shape == res.x.shape
    # sd >= sqrt(1/tau) * y_std with tau = (y_std / noise_std)^2: the true noise sd
    noise_sd = res.data.noise_std
    assert np.all(res.mc_sd >= noise_sd - 1e-9) and np.all(res.gp_sd >= noise_sd - 1e-9)
    inside, outside = res.data.region_mask("train"), res.data.region_mask("extrapolation")
    assert res.gp_sd[outside].mean() > res.gp_sd[inside].mean()
    assert {r["split"] for r in res.records if r["method"] == "mc_dropout"} == {0.5, 0.99}


def test_bad_input():
    with pytest.raises(ValueError, match="keep_prob"):
        non_concentration_records((10,), keep_prob=0.0, settings=TINY)
    with pytest.raises(ValueError, match="keep_probs must hold at least one value"):
        keep_prob_sensitivity((), settings=TINY)
    with pytest.raises(ValueError, match="steps"):
        PitfallSettings(steps=0)
    with pytest.raises(ValueError, match=r"num_train\[i\]"):
        non_concentration_records((0,), settings=TINY)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "pit"
    assert main(["pitfalls", "--out", str(out), "--steps", "50", "--num-samples", "20",
                 "--sizes", "10,40", "--no-progress"]) == 0
    for name in ("improper_kl.png", "non_concentration.png", "keep_prob_sensitivity.png",
                 "records.csv", "pitfalls.md"):
        assert (out / name).is_file(), name
    text = capsys.readouterr().out
    assert "## 2. Non-concentration" in text and str(out / "records.csv") in text
    with pytest.raises(SystemExit):
        main(["pitfalls", "--out", str(out), "--sizes", "0,10"])
