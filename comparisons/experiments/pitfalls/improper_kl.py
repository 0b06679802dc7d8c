r"""Pitfall 1, the improper KL (Hron, Matthews & Ghahramani 2018): the full ELBO of the exact family
diverges like :math:`-\log\theta` while its gradient converges to the dropout-loss gradient."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from comparisons.experiments.pitfalls.settings import record
from vi_dropout.validation import check_positive

__all__ = ["improper_kl_records"]


def improper_kl_records(thetas: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6),
                        seed: int = 1) -> list[dict]:
    r"""The ELBO's divergence and its gradient's convergence as :math:`\theta \to 0`.

    On :class:`vi_dropout.verify.paper.VerifyProblem` (float64, common random numbers) records, per
    ``theta``:

    * ``elbo_minus_dropout_loss``: :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_\text{dropout}`,
      which grows like :math:`-\log\theta` (about :math:`K` nats per :math:`e`-fold of
      :math:`\theta`, summed over columns, scaled by :math:`1/(N\tau)`);
    * ``predicted_offset``: the constant of :func:`vi_dropout.infer.elbo.elbo_dropout_offset`;
    * ``gradient_relative_difference``: :math:`\|\nabla(-\mathrm{ELBO}/(N\tau)) -
      \nabla\mathcal{L}_\text{dropout}\| / \|\nabla\mathcal{L}_\text{dropout}\|` over all
      parameters, which goes to 0 like :math:`\theta`.

    Example:
        >>> recs = improper_kl_records(thetas=(1e-2, 1e-4))  # doctest: +SKIP
    """
    from vi_dropout.verify.paper import VerifyProblem
    from vi_dropout.verify.problem import GradientDifferences

    thetas = [check_positive(t, "thetas[i]") for t in thetas]
    problem = VerifyProblem()
    masks, noise = problem.masks(seed), seed + 1
    ws, bs = problem.params(requires_grad=False)
    with torch.no_grad():
        loss = float(problem.dropout_loss(ws, bs, masks))
    gradients = GradientDifferences(problem, masks, noise)
    records = []
    for theta in thetas:
        with torch.no_grad():
            val = float(problem.scaled_negative_elbo(ws, bs, masks, theta, noise))
        records += [
            record("exact_elbo", theta, "elbo_minus_dropout_loss", val - loss),
            record("exact_elbo", theta, "predicted_offset", problem.offset(theta)),
            record("exact_elbo", theta, "gradient_relative_difference", gradients(theta)[1]),
        ]
    return records
