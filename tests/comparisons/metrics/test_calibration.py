"""ECE against a hand-computed case, NLL against a direct computation, the reliability diagram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comparisons.metrics.calibration import (
    ReliabilityBins,
    accuracy,
    calibration_records,
    expected_calibration_error,
    negative_log_likelihood,
    predictive_probs,
    reliability_bins,
)
from tests.common import CALIBRATION_LABELS, CALIBRATION_PROBS
from vi_dropout.summaries import classification_summary

# Six examples, three classes, B = 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]:
#   conf .9  correct  -> bin 4        conf .8  wrong   -> bin 4
#   conf .6  correct  -> bin 3        conf .7  correct -> bin 3
#   conf .4  wrong    -> bin 2        conf .5  correct -> bin 2 (right edge belongs to the bin)
# bin 4: acc 1/2, conf .85 -> |.5 - .85| = .35;  bin 3: acc 1, conf .65 -> .35;
# bin 2: acc 1/2, conf .45 -> .05.  ECE = 2/6 * .35 + 2/6 * .35 + 2/6 * .05 = .75 / 3 = .25
PROBS, LABELS = CALIBRATION_PROBS, CALIBRATION_LABELS


def test_ece_hand_computed():
    rb = reliability_bins(PROBS, LABELS, num_bins=4)
    assert isinstance(rb, ReliabilityBins)
    assert rb.counts.tolist() == [0, 2, 2, 2]
    np.testing.assert_allclose(rb.edges, [0, 0.25, 0.5, 0.75, 1.0])
    assert math.isnan(rb.accuracy[0]) and math.isnan(rb.confidence[0])
    np.testing.assert_allclose(rb.accuracy[1:], [0.5, 1.0, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(rb.confidence[1:], [0.45, 0.65, 0.85], rtol=0, atol=1e-15)
    assert expected_calibration_error(PROBS, LABELS, num_bins=4) == pytest.approx(0.25, abs=1e-12)
    # one bin: |accuracy - mean confidence| = |4/6 - 3.9/6| = 0.1/6
    assert expected_calibration_error(PROBS, LABELS, num_bins=1) == pytest.approx(0.1 / 6,
                                                                                  abs=1e-12)
    assert accuracy(PROBS, LABELS) == pytest.approx(4 / 6)


def test_ece_zero_when_confidence_equals_accuracy():
    probs = torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(
        0.0, abs=1e-15)
    # and 0.25 when all four are right
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 0])) == pytest.approx(
        0.25, abs=1e-15)


def test_nll_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(50, 20, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (20,), generator=g)
    p = np.exp(logits.numpy())
    p /= p.sum(-1, keepdims=True)
    direct = -np.mean(np.log(p.mean(0)[np.arange(20), labels.numpy()]))
    assert negative_log_likelihood(logits, labels) == pytest.approx(direct, rel=1e-12)
    # N x C (T = 1) is the usual cross-entropy
    ce = float(torch.nn.functional.cross_entropy(logits[0], labels))
    assert negative_log_likelihood(logits[0], labels) == pytest.approx(ce, rel=1e-12)
    # stable where the direct formula would take log(0): true class at -1000 in every sample
    extreme = torch.zeros(3, 1, 2, dtype=torch.float64)
    extreme[..., 0] = -1000.0
    assert negative_log_likelihood(extreme, torch.tensor([0])) == pytest.approx(1000.0, rel=1e-12)


def test_predictive_probs_is_the_classification_summary_mean():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(30, 6, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(predictive_probs(logits), classification_summary(logits).probs)
    torch.testing.assert_close(predictive_probs(logits[0]), torch.softmax(logits[0], -1))


def test_calibration_records():
    logits = torch.log(PROBS)  # softmax(log p) = p
    recs = calibration_records({"mc": logits.expand(3, -1, -1), "std": logits}, LABELS, "toy",
                               num_bins=4)
    assert {tuple(sorted(r)) for r in recs} == {("dataset", "method", "metric", "value")}
    by = {(r["method"], r["metric"]): r["value"] for r in recs}
    assert by[("mc", "ece")] == pytest.approx(0.25) and by[("std", "ece")] == pytest.approx(0.25)
    nll = -np.mean(np.log(PROBS.numpy()[np.arange(6), LABELS.numpy()]))
    assert by[("std", "nll")] == pytest.approx(nll, rel=1e-12)
    assert (by[("mc", "num_samples")], by[("std", "num_samples")]) == (3.0, 1.0)
    assert by[("std", "num_test")] == 6.0
    with_split = calibration_records({"std": logits}, LABELS, "toy", num_bins=4, split="")
    assert {r["split"] for r in with_split} == {""}
    assert [r["value"] for r in with_split] == [r["value"] for r in recs if r["method"] == "std"]


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"labels must have shape N = 6 \(one per example\), "
                                         r"got \(5,\)"):
        expected_calibration_error(PROBS, LABELS[:5])
    with pytest.raises(ValueError, match="labels must lie in 0..2, got 0..3"):
        expected_calibration_error(PROBS, torch.tensor([0, 1, 0, 1, 3, 0]))
    with pytest.raises(ValueError, match="num_bins must be an integer >= 1, got 0"):
        expected_calibration_error(PROBS, LABELS, num_bins=0)
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        expected_calibration_error(PROBS * 2, LABELS)
    with pytest.raises(ValueError, match=r"logits must have shape N x C or T x N x C"):
        negative_log_likelihood(torch.zeros(2, 2, 2, 2), LABELS)
    with pytest.raises(ValueError, match="labels must be integers"):
        negative_log_likelihood(PROBS, LABELS.double())
    with pytest.raises(ValueError, match="logits_by_method must name at least one method"):
        calibration_records({}, LABELS, "toy")
