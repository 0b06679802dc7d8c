r"""Did the variational approximation work? Pareto-smoothed importance sampling (PSIS) of the
posterior against the MC dropout family (Yao, Vehtari, Simpson & Gelman, 2018).

With :math:`\theta > 0` the family :math:`q(\mathbf{W})` of MC dropout has an exact density
(:class:`~vi_dropout.distributions.DropoutNormal`, a mixture per column), so draws
:math:`\mathbf{W}_s \sim q` give importance ratios against the unnormalised posterior

.. math::
    \log r_s = \log p(\mathbf{y} \mid \mathbf{x}, \mathbf{W}_s) + \log p(\mathbf{W}_s)
    - \log q(\mathbf{W}_s), \qquad s = 1, \dots, S.

PSIS fits a generalised Pareto distribution to the largest ratios; its shape :math:`\hat k` says
how heavy their tail is, i.e. how much posterior mass :math:`q` misses: :math:`\hat k < 0.5`
the importance-sampling estimates are reliable and :math:`q` is close to the posterior,
:math:`0.5 \le \hat k < 0.7` usable, :math:`\hat k \ge 0.7` :math:`q` misses the posterior (too
narrow, or in the wrong place) and no number of draws rescues it. The effective sample size of
the smoothed weights is the second summary.

The model and the guide are the toolkit's one stack (:class:`~vi_dropout.models.ModuleBNN` /
:class:`~vi_dropout.models.BayesianMLP` and :class:`~vi_dropout.guides.DropoutGuide`); the draws
are made and scored by Pyro itself (``pyro.infer.importance.vectorized_importance_weights``), the
smoothing is ArviZ's ``psislw``.

Example:
    >>> import torch
    >>> from vi_dropout.guides import DropoutGuide
    >>> from vi_dropout.models import BayesianMLP
    >>> from vi_dropout.network import Architecture
    >>> x = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None]
    >>> model = BayesianMLP(Architecture((1, 8, 1)), 1.0, 10.0, keep_prob=0.9)
    >>> guide = DropoutGuide(model, theta=0.1)
    >>> psis = variational_psis(model, guide, x, torch.sin(3 * x), num_draws=200)
    >>> psis.pareto_k > 0.7  # an untrained q misses the posterior
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro.infer.importance import vectorized_importance_weights

from vi_dropout.guides import DropoutGuide
from vi_dropout.inputs import Inputs
from vi_dropout.models import ModuleBNN
from vi_dropout.validation import check_int

__all__ = ["VariationalPSIS", "variational_psis", "log_importance_ratios"]

#: draws per vectorised chunk (the model runs once per chunk)
CHUNK = 500
#: the fewest draws: PSIS fits a Pareto tail to the largest ratios
MIN_DRAWS = 100


@dataclass(frozen=True)
class VariationalPSIS:
    """PSIS of the posterior against a guide (see the module docstring).

    Attributes:
        pareto_k: :math:`\\hat k` of the importance ratios.
        ess: effective sample size of the Pareto-smoothed normalised weights,
            :math:`1/\\sum_s w_s^2`.
        num_draws: :math:`S`.
        log_ratios: the raw :math:`\\log r_s`, ``(S,)``.
    """

    pareto_k: float
    ess: float
    num_draws: int
    log_ratios: np.ndarray


def log_importance_ratios(model: ModuleBNN, guide: DropoutGuide, x: Inputs, y: torch.Tensor,
                          num_draws: int = 2000, seed: int = 0) -> np.ndarray:
    r""":math:`\log p(\mathbf{y}, \mathbf{W}_s \mid \mathbf{x}) - \log q(\mathbf{W}_s)` for
    ``num_draws`` draws of the guide (Pyro's ``vectorized_importance_weights``, chunks of
    :data:`CHUNK` draws; the random stream is Pyro's, seeded ``seed``, and the global one is
    restored after).

    Returns:
        ``(num_draws,)`` float64.
    """
    if not isinstance(model, ModuleBNN):
        raise ValueError(f"model must be a ModuleBNN (or BayesianMLP), got {type(model).__name__}")
    if not isinstance(guide, DropoutGuide):
        raise ValueError(f"guide must be a DropoutGuide, got {type(guide).__name__}")
    guide.check_model(model)
    num_draws = check_int(num_draws, "num_draws", minimum=MIN_DRAWS)
    seed = check_int(seed, "seed")
    out = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        pyro.set_rng_seed(seed)
        done = 0
        while done < num_draws:
            n = min(CHUNK, num_draws - done)
            log_weights, _, _ = vectorized_importance_weights(
                model, guide, x, y, num_samples=n, max_plate_nesting=1)
            out.append(log_weights.reshape(n).to(torch.float64))
            done += n
    ratios = torch.cat(out).numpy()
    if not np.isfinite(ratios).all():
        raise ValueError(f"{int((~np.isfinite(ratios)).sum())} of {num_draws} log importance "
                         f"ratios are not finite")
    return ratios


def variational_psis(model: ModuleBNN, guide: DropoutGuide, x: Inputs, y: torch.Tensor, *,
                     num_draws: int = 2000, seed: int = 0) -> VariationalPSIS:
    r"""PSIS of the posterior of ``model`` given ``(x, y)`` against ``guide``: :math:`\hat k` and
    the effective sample size (see the module docstring).

    Args:
        model, guide: the Pyro model and the MC dropout guide (:math:`\theta > 0`).
        x, y: the data the posterior conditions on (the model's input form; ``N x D`` targets).
        num_draws: :math:`S`; PSIS needs a few hundred at least.
        seed: the draws' seed.
    """
    import arviz as az

    ratios = log_importance_ratios(model, guide, x, y, num_draws=num_draws, seed=seed)
    smoothed, k = az.psislw(ratios.copy(), reff=1.0)
    weights = np.exp(np.asarray(smoothed, dtype=np.float64))
    weights = weights / weights.sum()
    return VariationalPSIS(pareto_k=float(k), ess=float(1.0 / np.sum(weights**2)),
                           num_draws=num_draws, log_ratios=ratios)
