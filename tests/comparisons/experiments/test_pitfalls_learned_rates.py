"""The learned-rate curves (Concrete dropout, full ELBO) of the non-concentration experiment on
tiny settings: their records, their independence from the other methods' random streams, a failed
fit that is reported while the rest is kept, and the switch.

Thresholds: with N = 10 points the entropy term of the KL outweighs the data term of the hidden
layer, so 150 steps move the hidden keep_prob from 0.9 towards 0.5 (measured 0.67-0.69 for both
methods at N = 10 and 40 after 150 steps); the test asks < 0.85."""

from __future__ import annotations

import math

import pytest
import torch

from comparisons.experiments.pitfalls import (
    LEARNED_RATE_METHODS,
    LearnedRateFitWarning,
    PitfallSettings,
    learned_rate_records,
    non_concentration,
    non_concentration_records,
    run,
    toy,
)

torch.set_num_threads(1)
TINY = PitfallSettings(steps=150, num_samples=100)

COMMON = {"epistemic_variance_train", "epistemic_variance_extrapolation",
          "learned_keep_prob_input", "learned_keep_prob_hidden", "learned_tau", "final_loss",
          "wall_time_s"}
METRICS = {"concrete_dropout": COMMON,
           "full_elbo": COMMON | {"learned_theta", "epistemic_variance_masks_only_train",
                                  "epistemic_variance_masks_only_extrapolation"}}


def _by_key(records):
    return {(r["method"], r["split"], r["metric"]): r["value"] for r in records}


@pytest.fixture(scope="module")
def records():
    return non_concentration_records((10, 40), settings=TINY, hmc=None)


def test_learned_rate_records_have_the_ids_metrics_and_open_keep_probs(records):
    got = _by_key(records)
    assert {r["method"] for r in records} == {"mc_dropout", "gp_arccos1_prior",
                                              *LEARNED_RATE_METHODS}
    assert all(r["dataset"] == "toy1d" for r in records)
    for method in LEARNED_RATE_METHODS:
        for n in (10, 40):
            assert {m for (me, s, m) in got if me == method and s == n} == METRICS[method]
            for layer in ("input", "hidden"):
                assert 0 < got[(method, n, f"learned_keep_prob_{layer}")] < 1
            assert got[(method, n, "learned_tau")] > 0
            assert got[(method, n, "epistemic_variance_train")] > 0
            assert all(math.isfinite(got[(method, n, m)]) for m in METRICS[method])
        # few data: the entropy term pulls the hidden keep_prob from 0.9 towards 0.5
        assert got[(method, 10, "learned_keep_prob_hidden")] < 0.85
    assert 0 < got[("full_elbo", 10, "learned_theta")] < 1
    # concrete_dropout's theta is fixed (no learned_theta record): theta -> 0
    assert ("concrete_dropout", 10, "learned_theta") not in got


def test_learned_rates_leave_the_other_methods_bit_for_bit(records):
    without = non_concentration_records((10, 40), settings=TINY, hmc=None, learned_rates=False)
    assert {r["method"] for r in without} == {"mc_dropout", "gp_arccos1_prior"}
    got = _by_key(records)
    for key, value in _by_key(without).items():
        if key[2] != "wall_time_s":
            assert got[key] == value, key


def test_learned_rate_records_are_reproducible():
    data, _ = toy.toy_problem(10, 0)
    settings = PitfallSettings(steps=30, num_samples=50)
    a = learned_rate_records(data, "full_elbo", settings)
    b = learned_rate_records(data, "full_elbo", settings)
    assert [r for r in a if r["metric"] != "wall_time_s"] == \
        [r for r in b if r["metric"] != "wall_time_s"]


def test_a_failed_fit_is_warned_and_the_rest_kept(monkeypatch):
    real = non_concentration.fit_concrete

    def failing(*args, **kwargs):
        if kwargs["learn_theta"]:  # full_elbo only
            raise ValueError("keep_probs[1] left the open interval (0, 1) at step 7: keep_prob "
                             "= 0.9999995 (logit 14.5) is within 1e-06 of a bound or not finite")
        return real(*args, **kwargs)

    monkeypatch.setattr(non_concentration, "fit_concrete", failing)
    settings = PitfallSettings(steps=30, num_samples=50, sizes=(10,), hmc=None)
    with pytest.warns(LearnedRateFitWarning,
                      match=r"full_elbo at N = 10: the fit failed \(keep_prob_hidden\)"):
        result = run(settings)
    methods = {r["method"] for r in result.non_concentration}
    assert methods == {"mc_dropout", "gp_arccos1_prior", "concrete_dropout"}
    assert len(result.fit_warnings) == 1 and "full_elbo at N = 10" in result.fit_warnings[0]
    assert result.hmc_warnings == ()


@pytest.mark.parametrize("message, parameter", [
    ("keep_probs[0] left the open interval (0, 1) at step 3", "keep_prob_input"),
    ("tau left (1e-10, 1e10) at step 3: tau = nan", "tau"),
    ("theta left (1e-10, 1e10) at step 3: theta = inf", "theta"),
    ("the negative ELBO became non-finite at step 5", "the negative ELBO"),
])
def test_failed_parameter_is_named_in_the_records_words(message, parameter):
    assert non_concentration.failed_parameter(message) == parameter


def test_a_nan_fit_is_caught_too(monkeypatch):
    def nan_fit(*args, **kwargs):
        raise ValueError("tau left (1e-10, 10000000000.0) at step 2: tau = nan")

    monkeypatch.setattr(non_concentration, "fit_concrete", nan_fit)
    with pytest.warns(LearnedRateFitWarning, match=r"concrete_dropout at N = 10: .*\(tau\)"):
        recs = non_concentration_records((10,), settings=PitfallSettings(steps=20, num_samples=20),
                                         hmc=None)
    assert {r["method"] for r in recs} == {"mc_dropout", "gp_arccos1_prior"}


def test_switch_and_bad_input():
    assert PitfallSettings().learned_rates is True
    assert PitfallSettings().sizes[-1] == 10000
    assert "learned_rates" not in repr(PitfallSettings())
    with pytest.raises(ValueError, match="learned_rates must be True or False, got 'yes'"):
        PitfallSettings(learned_rates="yes")
    with pytest.raises(ValueError, match="learned_rates must be True or False"):
        non_concentration_records((10,), settings=TINY, learned_rates=1)
    data, _ = toy.toy_problem(10, 0)
    with pytest.raises(ValueError, match="method must be one of concrete_dropout, full_elbo"):
        learned_rate_records(data, "mc_dropout", TINY)
