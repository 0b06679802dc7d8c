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

arviz-stats' fit returns NaN where the largest ratios are no generalised Pareto tail at all:
when a quarter of them are tied at the smallest excess, which for continuous ratios means they
underflow to zero weight against the largest one (log ratios spread over more than ~745, one
draw carrying everything). :func:`variational_psis` reports that as :math:`\hat k = \infty`
(ArviZ 0.x fitted finite values far above 1 there, e.g. 157). The same NaN comes from ratios
that are constant up to rounding (:math:`q` is the posterior; float32 networks spread them by
~1e-5): a spread below :data:`RATIO_SPREAD_CONSTANT` gives :math:`\hat k = -\infty`.

The model and the guide are the toolkit's one stack (:class:`~vi_dropout.models.ModuleBNN` /
:class:`~vi_dropout.models.BayesianMLP` and :class:`~vi_dropout.guides.DropoutGuide`); the draws
are made and scored by Pyro itself (``pyro.infer.importance.vectorized_importance_weights``), the
smoothing is arviz-stats' ``psislw`` (the ``.azstats`` accessor).

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

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import torch
import xarray as xr
from pyro.infer.importance import vectorized_importance_weights
from pyro.infer.util import plate_log_prob_sum

from comparisons.inference_data.loo import checked_loo
from vi_dropout.guides import DropoutGuide
from vi_dropout.inputs import Inputs
from vi_dropout.models import ModuleBNN
from vi_dropout.validation import check_int

__all__ = ["ImportanceDraws", "VariationalPSIS", "importance_draws", "log_importance_ratios",
           "variational_psis"]

#: draws per vectorised chunk (the model runs once per chunk)
CHUNK = 500
#: the fewest draws: PSIS fits a Pareto tail to the largest ratios
MIN_DRAWS = 100
#: where arviz-stats' tail fit gives NaN, log ratios spread less than this are bounded weights
#: (all within a factor e of each other: q is the posterior up to rounding, float32 included),
#: more than this an overflowing tail (the NaN needs a spread of ~745)
RATIO_SPREAD_CONSTANT = 1.0


@dataclass(frozen=True)
class VariationalPSIS:
    """PSIS of the posterior against a guide (see the module docstring).

    Attributes:
        pareto_k: :math:`\\hat k` of the importance ratios.
        ess: effective sample size of the Pareto-smoothed normalised weights,
            :math:`1/\\sum_s w_s^2`.
        num_draws: :math:`S`.
        log_ratios: the raw :math:`\\log r_s`, ``(S,)``.
        loo: arviz-stats' ``loo_approximate_posterior`` of the same draws: PSIS-LOO of the
            posterior with the draws of :math:`q` reweighted by :math:`p/q` (``ELPDData``;
            ``None`` unless asked for).
        loo_of_q: plain PSIS-LOO of the same draws, as if :math:`q` were the posterior
            (:func:`~comparisons.inference_data.loo.checked_loo`'s ``ELPDData``: points whose
            tail fit fails keep their raw weights with :math:`\\hat k = \\infty`; ``None``
            unless asked for). The gap to ``loo`` is what treating
            :math:`q` as the posterior costs the LOO estimate.
    """

    pareto_k: float
    ess: float
    num_draws: int
    log_ratios: np.ndarray = field(repr=False)
    loo: Any = field(default=None, repr=False)
    loo_of_q: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class ImportanceDraws:
    """Draws :math:`\\mathbf{W}_s \\sim q` scored by Pyro (:func:`importance_draws`).

    Attributes:
        log_p: :math:`\\log p(\\mathbf{y}, \\mathbf{W}_s \\mid \\mathbf{x})`, ``(S,)``.
        log_q: :math:`\\log q(\\mathbf{W}_s)`, ``(S,)``.
        log_lik: pointwise :math:`\\log p(\\mathbf{y}_n \\mid \\mathbf{x}_n,
            \\mathbf{W}_s)`, ``S x N``.
    """

    log_p: np.ndarray = field(repr=False)
    log_q: np.ndarray = field(repr=False)
    log_lik: np.ndarray = field(repr=False)

    @property
    def log_ratios(self) -> np.ndarray:
        return self.log_p - self.log_q


def importance_draws(model: ModuleBNN, guide: DropoutGuide, x: Inputs, y: torch.Tensor,
                     num_draws: int = 2000, seed: int = 0) -> ImportanceDraws:
    r"""``num_draws`` draws of the guide scored by the model: Pyro's
    ``vectorized_importance_weights`` in chunks of :data:`CHUNK` draws (the random stream is
    Pyro's, seeded ``seed``; the global one is restored after). :math:`\log q` is the guide
    trace's density per draw (Pyro's ``plate_log_prob_sum``), :math:`\log p` Pyro's log weight
    plus it, and the pointwise log-likelihood is the ``"obs"`` site's.
    """
    if not isinstance(model, ModuleBNN):
        raise ValueError(f"model must be a ModuleBNN (or BayesianMLP), got {type(model).__name__}")
    if not isinstance(guide, DropoutGuide):
        raise ValueError(f"guide must be a DropoutGuide, got {type(guide).__name__}")
    guide.check_model(model)
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be the targets the posterior conditions on (an N x D "
                         f"torch.Tensor), got {type(y).__name__}")
    model.check_data(x, y)  # before Pyro's trace, whose errors carry its shape table
    num_draws = check_int(num_draws, "num_draws", minimum=MIN_DRAWS)
    seed = check_int(seed, "seed", minimum=0)
    log_p, log_q, log_lik = [], [], []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        pyro.set_rng_seed(seed)
        done = 0
        while done < num_draws:
            n = min(CHUNK, num_draws - done)
            log_weights, model_trace, guide_trace = vectorized_importance_weights(
                model, guide, x, y, num_samples=n, max_plate_nesting=1)
            # Pyro's own per-draw sum over the guide's sites, and the log densities its
            # traces already hold
            lq = plate_log_prob_sum(
                guide_trace, guide_trace.plate_to_symbol["num_particles_vectorized"])
            log_q.append(lq.reshape(n).to(torch.float64))
            log_p.append(log_weights.reshape(n).to(torch.float64) + log_q[-1])
            log_lik.append(model_trace.nodes["obs"]["log_prob"].to(torch.float64).reshape(n, -1))
            done += n
    out = ImportanceDraws(torch.cat(log_p).numpy(), torch.cat(log_q).numpy(),
                          torch.cat(log_lik).numpy())
    bad = int((~np.isfinite(out.log_ratios)).sum())
    if bad:
        raise ValueError(f"{bad} of {num_draws} log importance ratios are not finite")
    return out


def log_importance_ratios(model: ModuleBNN, guide: DropoutGuide, x: Inputs, y: torch.Tensor,
                          num_draws: int = 2000, seed: int = 0) -> np.ndarray:
    r""":math:`\log p(\mathbf{y}, \mathbf{W}_s \mid \mathbf{x}) - \log q(\mathbf{W}_s)` for
    ``num_draws`` draws of the guide (:func:`importance_draws`).

    Returns:
        ``(num_draws,)`` float64.
    """
    return importance_draws(model, guide, x, y, num_draws, seed).log_ratios


def variational_psis(model: ModuleBNN, guide: DropoutGuide, x: Inputs, y: torch.Tensor, *,
                     num_draws: int = 2000, seed: int = 0, loo: bool = False) -> VariationalPSIS:
    r"""PSIS of the posterior of ``model`` given ``(x, y)`` against ``guide``: :math:`\hat k` and
    the effective sample size (see the module docstring), and with ``loo`` the PSIS-LOO of the
    posterior from the same draws (arviz-stats' ``loo_approximate_posterior``, Magnusson et al.
    2019) beside the plain PSIS-LOO that takes :math:`q` for the posterior.

    Args:
        model, guide: the Pyro model and the MC dropout guide (:math:`\theta > 0`).
        x, y: the data the posterior conditions on (the model's input form; ``N x D`` targets).
        num_draws: :math:`S`; PSIS needs a few hundred at least.
        seed: the draws' seed.
        loo: also compute ``loo`` and ``loo_of_q``.
    """
    import arviz as az

    draws = importance_draws(model, guide, x, y, num_draws=num_draws, seed=seed)
    ratios = draws.log_ratios
    num_draws = len(ratios)
    # arviz-stats' psislw takes a log-likelihood and smooths the weights exp(-value): pass -r
    smoothed, k = xr.DataArray(-ratios, dims=["draw"]).azstats.psislw(dim="draw", r_eff=1.0)
    weights = np.exp(np.asarray(smoothed.values, dtype=np.float64))
    weights = weights / weights.sum()
    pareto_k = float(k.values)
    if not np.isfinite(pareto_k):  # arviz-stats: the tail is no generalised Pareto at all
        pareto_k = -np.inf if np.ptp(ratios) < RATIO_SPREAD_CONSTANT else np.inf
    loo_p = loo_q = None
    if loo:
        tree = az.from_dict({"log_likelihood": {"y": draws.log_lik[None]}},
                            dims={"y": ["obs"]},
                            attrs={"log_likelihood": {"method": "dropout family q",
                                                      "draws_independent": 1}})
        sample = {"dims": ["chain", "draw"]}
        log_p = xr.DataArray(draws.log_p[None], **sample)
        log_q = xr.DataArray(draws.log_q[None], **sample)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # k is reported, not warned
            loo_p = az.loo_approximate_posterior(tree, log_p, log_q, pointwise=True)
            loo_q = checked_loo(tree, min_draws=MIN_DRAWS)  # finite where the tail fit fails
    return VariationalPSIS(pareto_k=pareto_k, ess=float(1.0 / np.sum(weights**2)),
                           num_draws=num_draws, log_ratios=ratios, loo=loo_p, loo_of_q=loo_q)
