r"""Calibration of classifiers: accuracy, expected calibration error, NLL and the reliability
bins (drawn by :func:`comparisons.report.calibration.plot_reliability_diagram`).

Inputs are logits, either one set ``N x C`` (e.g. standard dropout) or ``T`` Monte Carlo samples
``T x N x C`` (MC dropout); predictive probabilities are the MC-averaged softmax
:math:`\bar{p}_{n,c} = \frac{1}{T}\sum_t \operatorname{softmax}(\text{logits}_{t,n})_c`
(:func:`predictive_probs`, equal to ``vi_dropout.summaries.classification_summary(...).probs``).

Expected calibration error with ``B`` equal-width bins (Naeini et al., 2015; Guo et al., 2017):
the confidence of example :math:`n` is :math:`\hat{c}_n = \max_c \bar{p}_{n,c}`, its prediction
:math:`\hat{y}_n = \arg\max_c \bar{p}_{n,c}`; bin :math:`b = 1..B` holds the examples with
:math:`\hat{c}_n \in ((b-1)/B,\ b/B]` (a confidence of exactly 0 goes to the first bin; the
edges :math:`b/B` are computed in float64), and

.. math::
    \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{N}\,\big|\operatorname{acc}(B_b) -
    \operatorname{conf}(B_b)\big|, \qquad
    \operatorname{acc}(B_b) = \frac{1}{|B_b|}\sum_{n \in B_b} [\hat{y}_n = y_n], \quad
    \operatorname{conf}(B_b) = \frac{1}{|B_b|}\sum_{n \in B_b} \hat{c}_n .

Empty bins contribute nothing. Why not ArviZ's: ArviZ's calibration checks (LOO-PIT, the PIT
ECDF) are for continuous predictive distributions; these are the classification summaries of the
rotated-digit experiment. Negative log-likelihood (mean over the test points, nats):

.. math::
    \mathrm{NLL} = -\frac{1}{N}\sum_n \log \bar{p}_{n, y_n}
    = -\frac{1}{N}\sum_n \Big(\operatorname{logsumexp}_t \log\operatorname{softmax}
    (\text{logits}_{t,n})_{y_n} - \log T\Big).

Example:
    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> labels = torch.tensor([0, 0])
    >>> accuracy(predictive_probs(logits), labels)
    0.5
    >>> round(negative_log_likelihood(logits, labels), 4)
    0.7201
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from vi_dropout.validation import check_finite, check_positive_int

__all__ = [
    "ReliabilityBins",
    "predictive_probs",
    "accuracy",
    "reliability_bins",
    "expected_calibration_error",
    "negative_log_likelihood",
    "calibration_records",
]


def _as_samples(logits: torch.Tensor, name: str = "logits") -> torch.Tensor:
    check_finite(logits, name)
    if not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {logits.dtype}")
    if logits.dim() == 2:
        return logits.unsqueeze(0)
    if logits.dim() == 3 and logits.shape[0] >= 1:
        return logits
    raise ValueError(f"{name} must have shape N x C or T x N x C (T >= 1), got "
                     f"{tuple(logits.shape)}")


def _check_labels(labels: torch.Tensor, n: int, c: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape N = {n} (one per example), got "
                         f"{tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= c):
        raise ValueError(f"labels must lie in 0..{c - 1}, got {int(labels.min())}.."
                         f"{int(labels.max())}")
    return labels.long()


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    check_finite(probs, "probs")
    if probs.dim() != 2 or not probs.is_floating_point():
        raise ValueError(f"probs must be a floating N x C tensor, got {probs.dtype} of shape "
                         f"{tuple(probs.shape)}")
    if probs.numel() and (float(probs.min()) < 0.0 or float(probs.max()) > 1.0 + 1e-6):
        raise ValueError(f"probs must lie in [0, 1], got values in "
                         f"[{float(probs.min()):g}, {float(probs.max()):g}]")
    return probs


def predictive_probs(logits: torch.Tensor) -> torch.Tensor:
    r"""MC-averaged softmax :math:`\bar{p}_{n,c} = \frac{1}{T}\sum_t \operatorname{softmax}
    (\text{logits}_{t,n})_c`: ``T x N x C`` (or ``N x C``, ``T = 1``) -> ``N x C``.

    Example:
        >>> predictive_probs(torch.zeros(3, 1, 2))
        tensor([[0.5000, 0.5000]])
    """
    return torch.softmax(_as_samples(logits), dim=-1).mean(0)


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    r"""Share of examples whose :math:`\arg\max_c p_{n,c}` equals the label (``probs`` ``N x C``).

    Example:
        >>> accuracy(torch.tensor([[0.9, 0.1], [0.4, 0.6]]), torch.tensor([0, 0]))
        0.5
    """
    probs = _check_probs(probs)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    if probs.shape[0] == 0:
        raise ValueError("probs must hold at least one example, got N = 0")
    return float((probs.argmax(-1) == labels).double().mean())


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram (``B`` equal-width confidence bins).

    Attributes:
        edges: ``B + 1`` bin edges ``b / B`` (float64).
        counts: ``B`` examples per bin.
        accuracy: ``B`` accuracy per bin (NaN where empty).
        confidence: ``B`` mean confidence per bin (NaN where empty).
        num_examples: ``N``.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    num_examples: int

    @property
    def ece(self) -> float:
        r"""Expected calibration error :math:`\sum_b \frac{|B_b|}{N} |\operatorname{acc}_b -
        \operatorname{conf}_b|` (empty bins contribute 0)."""
        keep = self.counts > 0
        gaps = np.abs(self.accuracy[keep] - self.confidence[keep])
        return float(np.sum(self.counts[keep] / self.num_examples * gaps))


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, num_bins: int = 10) -> ReliabilityBins:
    r"""Bin the confidences :math:`\max_c p_{n,c}` into ``num_bins`` equal-width bins
    :math:`((b-1)/B, b/B]` (0 goes to the first) and return per-bin counts, accuracy, confidence.

    Args:
        probs: ``N x C`` predictive probabilities (N >= 1).
        labels: ``N`` integer labels.
        num_bins: ``B >= 1``.

    Returns:
        :class:`ReliabilityBins`.

    Example:
        >>> rb = reliability_bins(torch.tensor([[0.95, 0.05], [0.3, 0.7]]), torch.tensor([0, 0]), 2)
        >>> rb.counts.tolist(), rb.accuracy.tolist()
        ([0, 2], [nan, 0.5])
    """
    probs = _check_probs(probs)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    num_bins = check_positive_int(num_bins, "num_bins")
    if probs.shape[0] == 0:
        raise ValueError("probs must hold at least one example, got N = 0")
    conf, pred = probs.double().max(-1)
    correct = (pred == labels).double()
    inner = torch.arange(1, num_bins, dtype=torch.float64) / num_bins
    idx = torch.bucketize(conf, inner, right=False)
    counts = torch.bincount(idx, minlength=num_bins).double()
    acc_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, idx, correct)
    conf_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, idx, conf)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (acc_sum / counts).numpy()
        cmean = (conf_sum / counts).numpy()
    edges = np.arange(num_bins + 1, dtype=np.float64) / num_bins
    return ReliabilityBins(edges, counts.numpy().astype(np.int64), acc, cmean, int(probs.shape[0]))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                               num_bins: int = 10) -> float:
    r"""Expected calibration error with ``num_bins`` equal-width bins (see the module docstring):

    .. math::
        \mathrm{ECE} = \sum_{b=1}^{B} \frac{|B_b|}{N}\,\big|\operatorname{acc}(B_b) -
        \operatorname{conf}(B_b)\big| \in [0, 1].

    Args:
        probs: ``N x C`` predictive probabilities (e.g. :func:`predictive_probs`).
        labels: ``N`` integer labels.
        num_bins: ``B >= 1``.

    Example:
        >>> p = torch.tensor([[0.95, 0.05], [0.75, 0.25]])  # bins (0.9, 1] and (0.7, 0.8]
        >>> round(expected_calibration_error(p, torch.tensor([0, 1]), num_bins=10), 4)
        0.4
    """
    return reliability_bins(probs, labels, num_bins).ece


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    r"""Mean test negative log-likelihood (nats) of the MC-averaged softmax, from logits:

    .. math::
        \mathrm{NLL} = -\frac{1}{N}\sum_{n=1}^{N}\Big(\operatorname{logsumexp}_{t=1}^{T}
        \log\operatorname{softmax}(\text{logits}_{t,n})_{y_n} - \log T\Big),

    which is :math:`-\frac{1}{N}\sum_n \log \bar{p}_{n,y_n}` computed stably (no ``log 0``).

    Args:
        logits: ``T x N x C`` samples or ``N x C`` (``T = 1``, e.g. standard dropout).
        labels: ``N`` integer labels.

    Example:
        >>> round(negative_log_likelihood(torch.zeros(4, 3, 2), torch.tensor([0, 1, 1])), 4)
        0.6931
    """
    s = _as_samples(logits)
    labels = _check_labels(labels, s.shape[1], s.shape[2])
    if s.shape[1] == 0:
        raise ValueError("logits must hold at least one example, got N = 0")
    logp = torch.log_softmax(s.double(), dim=-1)
    idx = labels.view(1, -1, 1).expand(s.shape[0], -1, 1)
    ll = torch.logsumexp(logp.gather(-1, idx).squeeze(-1), dim=0) - math.log(s.shape[0])
    return float(-ll.mean())


def calibration_records(
    logits_by_method: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    dataset: str,
    num_bins: int = 10,
    split: str | None = None,
) -> list[dict]:
    """Tidy records ``{dataset, method, metric, value}`` of accuracy, ECE, NLL and the test size
    (with ``split`` as well when given, e.g. ``""`` for the whole test split).

    Args:
        logits_by_method: ``{method: logits}``, each ``T x N x C`` or ``N x C``.
        labels: ``N`` integer labels.
        dataset: value of the ``dataset`` field.
        num_bins: ECE bins.
        split: the ``split`` field of every record (``None``: no ``split`` field).

    Returns:
        One record per (method, metric) with metrics ``accuracy``, ``ece``, ``nll``, ``num_test``
        (and ``num_samples``, the ``T`` used).

    Example:
        >>> recs = calibration_records({"standard": torch.zeros(3, 2)}, torch.tensor([0, 1, 0]), "toy")
        >>> [(r["metric"], round(r["value"], 4)) for r in recs][:3]
        [('accuracy', 0.6667), ('ece', 0.1667), ('nll', 0.6931)]
    """
    if not logits_by_method:
        raise ValueError("logits_by_method must name at least one method, got an empty mapping")
    out = []
    for method, logits in logits_by_method.items():
        s = _as_samples(logits, f"logits_by_method[{method!r}]")
        probs = torch.softmax(s, -1).mean(0)
        vals = {
            "accuracy": accuracy(probs, labels),
            "ece": expected_calibration_error(probs, labels, num_bins),
            "nll": negative_log_likelihood(s, labels),
            "num_test": float(s.shape[1]),
            "num_samples": float(s.shape[0]),
        }
        key = {"dataset": dataset, "method": method}
        if split is not None:
            key["split"] = split
        out += [{**key, "metric": k, "value": v} for k, v in vals.items()]
    return out
