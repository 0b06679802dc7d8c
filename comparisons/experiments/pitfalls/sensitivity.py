r"""Pitfall 3, the sensitivity to keep_prob: the predictive spread of MC dropout is set by the dropout
rate, a hyper-parameter usually tuned for accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from comparisons.experiments.pitfalls.settings import PitfallSettings, record
from comparisons.experiments.pitfalls.toy import gp_latent, toy_problem, train_mc_dropout
from vi_dropout.validation import check_keep_prob, check_positive_int

__all__ = ["KeepProbSensitivity", "keep_prob_sensitivity"]


@dataclass(frozen=True)
class KeepProbSensitivity:
    """Predictive sd curves of :func:`keep_prob_sensitivity` (original target scale).

    Attributes:
        x: test inputs, original scale, ``M``.
        keep_probs: the keep probabilities, ``K``.
        mc_sd: MC dropout predictive sd (``sqrt(1/tau + sample variance)``), ``K x M``.
        gp_sd: the dropout-prior GP's predictive sd (noise included), ``M``.
        data: the toy data (for drawing the training region).
        records: tidy records (mean sd in the training / extrapolation regions).
    """

    x: np.ndarray
    keep_probs: tuple[float, ...]
    mc_sd: np.ndarray
    gp_sd: np.ndarray
    data: object
    records: list[dict]


def keep_prob_sensitivity(
    keep_probs: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99),
    num_train: int = 200,
    settings: PitfallSettings | None = None,
) -> KeepProbSensitivity:
    r"""MC dropout's predictive sd on the toy data for several ``keep_prob``, next to the GP's.

    .. math::
        \mathrm{sd}(x_*) = s_y \sqrt{\tau^{-1} + \widehat{\operatorname{Var}}_t[\hat y_t(x_*)]}

    on the original scale (:math:`s_y` the target scale). The GP uses the network prior with
    ``keep_prob`` ignored (the masks belong to the approximation, not to the model), so it is one
    curve.
    """
    settings = settings or PitfallSettings()
    kps = tuple(check_keep_prob(k, f"keep_probs[{i}]") for i, k in enumerate(keep_probs))
    if not kps:
        raise ValueError("keep_probs must hold at least one value, got an empty sequence")
    data, tau = toy_problem(check_positive_int(num_train, "num_train"), settings.seed)
    s = train_mc_dropout(data, tau, kps, settings, settings.seed)
    mc_sd = (s.var(1) + 1.0 / tau).sqrt().numpy() * data.y_std
    _, gvar = gp_latent(data, tau, settings, 1.0)
    gp_sd = (gvar.clamp_min(0) + 1.0 / tau).sqrt().numpy() * data.y_std
    inside, outside = data.region_mask("train"), data.region_mask("extrapolation")
    records = []
    for kp, sd in zip(kps, mc_sd):
        records += [record("mc_dropout", kp, "mean_sd_train", sd[inside].mean()),
                    record("mc_dropout", kp, "mean_sd_extrapolation", sd[outside].mean())]
    records += [record("gp_arccos1_prior", "any", "mean_sd_train", gp_sd[inside].mean()),
                record("gp_arccos1_prior", "any", "mean_sd_extrapolation", gp_sd[outside].mean())]
    return KeepProbSensitivity(np.asarray(data.x_test_raw), kps, mc_sd, gp_sd, data, records)
