r"""Summaries of MC dropout samples: the regression metrics of the paper (RMSE, test
log-likelihood with :math:`\tau`, the predictive mean and variance on the original scale) and the
classification summary (predictive probabilities, entropy, mutual information), for the samples
of :func:`~vi_dropout.predict.mc_predict` or any other sampler.

.. math::
    \hat\mu = \frac1T\sum_t \hat{\mathbf{y}}_t, \qquad
    \hat\sigma^2 = \tau^{-1} + \frac1T\sum_t \hat{\mathbf{y}}_t^2 - \hat\mu^2, \qquad
    \log p(\mathbf{y}) \approx \operatorname{logsumexp}_t \log\mathcal{N}(\mathbf{y};
    \hat{\mathbf{y}}_t, \tau^{-1}) - \log T.

Example:
    >>> samples = torch.zeros(4, 3, 1)
    >>> s = regression_summary(samples, torch.zeros(3, 1), tau=1.0)
    >>> round(float(s.rmse), 3)
    0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vi_dropout.validation import (
    check_finite,
    check_positive,
    check_positive_int,
    check_real,
    check_targets,
)

__all__ = ["RegressionSummary", "regression_summary", "ClassificationSummary",
           "classification_summary"]


@dataclass(frozen=True)
class RegressionSummary:
    """Per-point and aggregate MC dropout regression metrics, all on the ORIGINAL target scale.

    Attributes:
        mean: predictive mean, ``... x N x D``.
        variance: predictive variance ``1/tau + sample variance``, ``... x N x D``.
        log_likelihood: per-point test log-likelihood, ``... x N``.
        mean_log_likelihood: its mean over points, ``...``.
        rmse: RMSE of the MC mean, ``...``.
        rmse_standard: RMSE of the standard-dropout prediction (``None`` if not given), ``...``.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    log_likelihood: torch.Tensor
    mean_log_likelihood: torch.Tensor
    rmse: torch.Tensor
    rmse_standard: torch.Tensor | None


def _check_like_predictions(t: torch.Tensor, name: str, shape: torch.Size) -> None:
    """``t`` must be ``... x N x D`` and broadcast to the predictions' ``... x N x D`` unchanged."""
    check_targets(t, name, num_rows=shape[-2], num_outputs=shape[-1])
    try:
        ok = torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} (or its trailing N x D), got {tuple(t.shape)}"
        )


def regression_summary(
    samples: torch.Tensor,
    y: torch.Tensor,
    tau: float,
    y_mean: float | torch.Tensor = 0.0,
    y_std: float | torch.Tensor = 1.0,
    standard_prediction: torch.Tensor | None = None,
) -> RegressionSummary:
    r"""Predictive mean, variance, test log-likelihood and RMSEs from MC dropout samples.

    Samples come from a model trained on standardised targets; they are mapped back with
    :math:`\tilde{y}_t = \bar{y} + s_y \hat{y}_t` and then

    .. math::
        \mu = \frac{1}{T}\sum_t \tilde{y}_t, \qquad
        \sigma^2 = \tau^{-1} + \frac{1}{T}\sum_t \tilde{y}_t^2 - \mu^2,

    .. math::
        \log p(\mathbf{y}) \approx \operatorname{logsumexp}_t\Big(-\frac{\tau}{2}
        \|\mathbf{y} - \tilde{\mathbf{y}}_t\|^2\Big) - \log T
        - \frac{D}{2}\log 2\pi + \frac{D}{2}\log\tau

    (the paper's formula, ``D = 1`` for scalar targets), and
    :math:`\mathrm{RMSE} = \sqrt{\operatorname{mean}_{n,d}(y - \mu)^2}`.

    Args:
        samples: :math:`\hat{y}_t` on the standardised scale, ``T x ... x N x D``.
        y: test targets on the original scale, ``... x N x D`` (``N x 1`` for one output; a
            1-D ``y`` is refused rather than broadcast against every sample).
        tau: model precision :math:`\tau` on the original scale (as in the paper's grid).
        y_mean: :math:`\bar{y}`, the training-target mean used for standardising.
        y_std: :math:`s_y > 0`, the training-target standard deviation.
        standard_prediction: optional standard-dropout prediction (standardised scale,
            ``... x N x D``), for ``rmse_standard``.

    Returns:
        :class:`RegressionSummary` (sample variance uses :math:`1/T`, as in the paper).

    Example:
        >>> s = torch.zeros(10, 3, 1, dtype=torch.float64)
        >>> r = regression_summary(s, torch.zeros(3, 1, dtype=torch.float64), tau=1.0)
        >>> r.variance.flatten().tolist(), round(float(r.mean_log_likelihood), 4)
        ([1.0, 1.0, 1.0], -0.9189)
    """
    check_finite(samples, "samples")
    if samples.dim() < 3:
        raise ValueError(f"samples must have shape T x ... x N x D, got {tuple(samples.shape)}")
    _check_like_predictions(y, "y", samples.shape[1:])
    check_positive_int(samples.shape[0], "T")
    tau = check_positive(tau, "tau")
    if isinstance(y_std, torch.Tensor):
        check_finite(y_std, "y_std")
        if not bool((y_std > 0).all()):
            raise ValueError(f"y_std must be > 0, got {y_std!r}")
    else:
        y_std = check_positive(y_std, "y_std")
    if isinstance(y_mean, torch.Tensor):
        check_finite(y_mean, "y_mean")
    else:
        check_real(y_mean, "y_mean")
    T = samples.shape[0]
    D = samples.shape[-1]
    orig = y_mean + y_std * samples
    mean = orig.mean(0)
    variance = 1.0 / tau + orig.var(0, correction=0)
    sq = (y - orig).square().sum(-1)
    ll = (
        torch.logsumexp(-0.5 * tau * sq, dim=0)
        - math.log(T)
        - 0.5 * D * math.log(2 * math.pi)
        + 0.5 * D * math.log(tau)
    )
    rmse = (y - mean).square().mean((-1, -2)).sqrt()
    rmse_std = None
    if standard_prediction is not None:
        check_finite(standard_prediction, "standard_prediction")
        _check_like_predictions(standard_prediction, "standard_prediction", samples.shape[1:])
        std_orig = y_mean + y_std * standard_prediction
        rmse_std = (y - std_orig).square().mean((-1, -2)).sqrt()
    return RegressionSummary(mean, variance, ll, ll.mean(-1), rmse, rmse_std)


@dataclass(frozen=True)
class ClassificationSummary:
    """MC dropout classification summaries (entropies in nats).

    Attributes:
        probs: MC-averaged softmax, ``... x N x C``.
        predictive_entropy: entropy of ``probs``, ``... x N``.
        mutual_information: BALD score, ``... x N``.
        variation_ratio: 1 - fraction of samples voting for the modal class, ``... x N``.
    """

    probs: torch.Tensor
    predictive_entropy: torch.Tensor
    mutual_information: torch.Tensor
    variation_ratio: torch.Tensor


def classification_summary(logit_samples: torch.Tensor) -> ClassificationSummary:
    r"""MC-averaged softmax, predictive entropy, mutual information (BALD) and variation ratio.

    With :math:`p_{t,c} = \operatorname{softmax}(\text{logits}_t)_c`,
    :math:`\bar{p}_c = \frac{1}{T}\sum_t p_{t,c}` and :math:`0 \log 0 = 0`:

    .. math::
        H = -\sum_c \bar{p}_c \log \bar{p}_c, \qquad
        \mathrm{MI} = H - \frac{1}{T}\sum_t \Big(-\sum_c p_{t,c}\log p_{t,c}\Big), \qquad
        \mathrm{VR} = 1 - \frac{\max_c \#\{t : \arg\max_{c'} p_{t,c'} = c\}}{T}.

    Args:
        logit_samples: ``T x ... x N x C`` logits (e.g. from :func:`mc_predict`).

    Returns:
        :class:`ClassificationSummary`.

    Example:
        >>> s = classification_summary(torch.zeros(4, 1, 2, dtype=torch.float64))
        >>> round(float(s.predictive_entropy), 4), float(s.mutual_information)
        (0.6931, 0.0)
    """
    check_finite(logit_samples, "logit_samples")
    if logit_samples.dim() < 2:
        raise ValueError(
            f"logit_samples must have shape T x ... x N x C, got {tuple(logit_samples.shape)}"
        )
    T = check_positive_int(logit_samples.shape[0], "T")
    logp = torch.log_softmax(logit_samples, dim=-1)
    p = logp.exp()
    probs = p.mean(0)
    predictive_entropy = -torch.special.xlogy(probs, probs).sum(-1)
    expected_entropy = -(p * logp).sum(-1).mean(0)
    mutual_information = (predictive_entropy - expected_entropy).clamp_min(0.0)
    votes = logit_samples.argmax(-1).movedim(0, -1)
    counts = torch.zeros(probs.shape, dtype=probs.dtype, device=probs.device)
    counts.scatter_add_(-1, votes, torch.ones_like(votes, dtype=probs.dtype))
    variation_ratio = 1.0 - counts.amax(-1) / T
    return ClassificationSummary(probs, predictive_entropy, mutual_information, variation_ratio)
