r"""KL(q || prior) for the MC dropout family: exact by Monte Carlo, the large-width closed form
(Gal & Ghahramani's appendix, Proposition 1) and the gap between them.

For one weight matrix with ``Q`` columns of length ``K`` and prior
:math:`p(\mathbf{W}) = \mathcal{N}(\mathbf{0}, l^{-2} \mathbf{I})`, write
:math:`q = \sum_z \pi_z q_z` for each column's mixture. Then, exactly,

.. math::
    \mathrm{KL}(q \,\|\, p) = \underbrace{\sum_a \Big[\sum_z \pi_z \mathrm{KL}(q_{a,z} \,\|\, p)
        - H(\pi)\Big]}_{\text{Proposition 1}}
        + \underbrace{\sum_a \mathbb{E}_{q}\big[-\log r_z(\mathbf{w}_a)\big]}_{\text{gap} \,\ge\, 0},

where :math:`r_z(\mathbf{w}) = q(z \mid \mathbf{w})` is the responsibility of the component that
generated :math:`\mathbf{w}` (the gap is the conditional entropy :math:`H(z \mid \mathbf{w})`).
With :math:`\mathrm{KL}(q_{a,1}\|p) = \tfrac{l^2}{2}\|\mathbf{m}_a\|^2 + \tfrac{K}{2}(l^2\theta^2
- 1 - \log l^2\theta^2)` and :math:`\mathrm{KL}(q_{a,0}\|p)` the same without the mean term,

.. math::
    \text{Prop. 1} = \frac{\pi l^2}{2}\|\mathbf{M}\|^2
        + Q\Big[\frac{K}{2}\big(l^2\theta^2 - 1 - \log(l^2\theta^2)\big) - H(\pi)\Big].

So Proposition 1 is a *lower bound* that becomes exact as the components separate
(:math:`\|\mathbf{m}_a\| / \theta \to \infty`, e.g. as ``K`` grows), and the gap never exceeds
:math:`Q\,H(\pi)`.

Why nothing is registered with ``torch.distributions.kl.register_kl``: the exact KL between the
mixture and the Gaussian prior has no closed form, and registering the Proposition 1 lower bound
would make ``kl_divergence`` (and Pyro's ``TraceMeanField_ELBO``) silently return an
approximation. Use :func:`kl_large_width` when you want Gal's objective and
:func:`kl_monte_carlo` for the exact value.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributions as tdist

from vi_dropout.distributions import DropoutNormal
from vi_dropout.validation import check_positive, check_positive_int

__all__ = [
    "MonteCarloEstimate",
    "binary_entropy",
    "prior_precision",
    "gaussian_kl_terms",
    "large_width_terms",
    "gaussian_kl_to_prior",
    "mean_field_kl_to_prior",
    "kl_large_width",
    "cross_entropy_to_prior",
    "kl_monte_carlo",
    "kl_gap",
]


class MonteCarloEstimate(NamedTuple):
    """A Monte Carlo estimate with its standard error (both shaped like the batch)."""

    estimate: torch.Tensor
    stderr: torch.Tensor


def binary_entropy(keep_prob: torch.Tensor) -> torch.Tensor:
    r""":math:`H(\pi) = -\pi\log\pi - (1-\pi)\log(1-\pi)` in nats, with :math:`0 \log 0 = 0`."""
    keep_prob = torch.as_tensor(keep_prob)
    return -(torch.special.xlogy(keep_prob, keep_prob) + torch.special.xlogy(1 - keep_prob, 1 - keep_prob))


def prior_precision(prior_length_scale) -> float:
    r"""The prior precision :math:`l^2` of :math:`\mathcal{N}(0, l^{-2})`, checking :math:`l > 0`."""
    return check_positive(prior_length_scale, "prior_length_scale") ** 2


def gaussian_kl_terms(scale, prior_length_scale, dim: int, dtype=None):
    r"""``(coef, const)`` with :func:`gaussian_kl_to_prior` ``= coef * ||m||^2 + const``:
    :math:`l^2/2` and :math:`\tfrac{D}{2}(l^2 s^2 - 1 - \log l^2 s^2)`, ``dim`` = :math:`D`,
    :math:`s` = ``scale`` (the family's biases: :math:`s = \theta`). The terms that do not depend
    on the means, for callers that compute them once."""
    l2 = prior_precision(prior_length_scale)
    s2 = l2 * torch.as_tensor(scale, dtype=dtype).pow(2)
    return 0.5 * l2, 0.5 * dim * (s2 - 1 - torch.log(s2))


def large_width_terms(keep_prob: torch.Tensor, theta: torch.Tensor, prior_length_scale,
                      num_rows: int, num_cols: int):
    r"""``(coef, const)`` with :func:`kl_large_width` ``= coef * ||M||^2 + const``:
    :math:`\pi l^2/2` and :math:`Q[\tfrac{K}{2}(l^2\theta^2 - 1 - \log l^2\theta^2) - H(\pi)]`
    (``num_rows`` = :math:`K`, ``num_cols`` = :math:`Q`). The terms that do not depend on the
    means, for callers that compute them once."""
    l2 = prior_precision(prior_length_scale)
    s2 = l2 * theta.pow(2)
    coef = 0.5 * keep_prob * l2
    const = num_cols * (0.5 * num_rows * (s2 - 1 - torch.log(s2)) - binary_entropy(keep_prob))
    return coef, const


def gaussian_kl_to_prior(loc: torch.Tensor, scale, prior_length_scale) -> torch.Tensor:
    r"""KL(N(loc, scale^2 I) || N(0, l^-2 I)) summed over the last dim (used for biases).

    .. math::
        \tfrac{l^2}{2}\|\mathbf{m}\|^2 + \tfrac{D}{2}(l^2\theta^2 - 1 - \log l^2\theta^2)
    """
    coef, const = gaussian_kl_terms(scale, prior_length_scale, loc.shape[-1], loc.dtype)
    return coef * loc.pow(2).sum(-1) + const


def mean_field_kl_to_prior(loc: torch.Tensor, scale: torch.Tensor, prior_length_scale,
                           event_dims: int = 1) -> torch.Tensor:
    r"""KL(N(loc, diag scale^2) || N(0, l^-2 I)) with PER-ENTRY scales, summed over the last
    ``event_dims`` dims (:func:`gaussian_kl_to_prior` takes one scale for all entries).

    .. math::
        \sum_j \mathrm{KL}\big(\mathcal{N}(m_j, s_j^2)\,\|\,\mathcal{N}(0, l^{-2})\big)
        = \sum_j \tfrac12\big(l^2 m_j^2 + l^2 s_j^2 - 1 - \log l^2 s_j^2\big)

    Args:
        loc: means :math:`m_j`, ``batch x event`` (e.g. ``E x out x in`` for ``E`` weight
            matrices with ``event_dims=2``).
        scale: standard deviations :math:`s_j > 0`, broadcastable to ``loc`` (not checked: pass
            e.g. a softplus).
        prior_length_scale: :math:`l > 0`.
        event_dims: how many trailing dims are summed (0: the KL of every entry).

    Returns:
        The KL, of ``loc``'s (broadcast) shape without its last ``event_dims`` dims.

    References:
        Graves (2011), "Practical Variational Inference for Neural Networks";
        Blundell et al. (2015), "Weight Uncertainty in Neural Networks".

    Example:
        >>> m = torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> round(float(mean_field_kl_to_prior(m, torch.ones(2, dtype=torch.float64), 1.0)), 6)
        0.5
    """
    l2 = prior_precision(prior_length_scale)
    scale = torch.as_tensor(scale, dtype=loc.dtype)
    s2 = l2 * scale.pow(2)
    per_entry = 0.5 * (l2 * loc.pow(2) + s2 - 1 - torch.log(s2))
    if event_dims < 0 or event_dims > per_entry.dim():
        raise ValueError(f"event_dims must be in 0..{per_entry.dim()}, got {event_dims}")
    return per_entry.sum(tuple(range(-event_dims, 0))) if event_dims else per_entry


def kl_large_width(q: DropoutNormal, prior_length_scale) -> torch.Tensor:
    r"""Proposition 1 (generalised to prior variance :math:`l^{-2}`), shape ``batch``.

    .. math::
        \frac{\pi l^2}{2}\|\mathbf{M}\|^2 + Q\Big[\frac{K}{2}\big(l^2\theta^2 - 1
        - \log(l^2\theta^2)\big) - H(\pi)\Big]

    Args:
        q: the variational factor of one weight matrix (``K x Q``).
        prior_length_scale: :math:`l` of the prior :math:`\mathcal{N}(0, l^{-2})`.
    """
    coef, const = large_width_terms(q.keep_prob, q.theta, prior_length_scale, q.num_rows,
                                    q.num_cols)
    return coef * q.loc.pow(2).sum((-1, -2)) + const


def _prior(q: DropoutNormal, prior_length_scale) -> tdist.Distribution:
    std = 1.0 / check_positive(prior_length_scale, "prior_length_scale")
    return tdist.Independent(tdist.Normal(torch.zeros_like(q.loc), std), 2)


def _mean_and_se(samples: torch.Tensor) -> MonteCarloEstimate:
    n = samples.shape[0]
    mean = samples.mean(0)
    se = samples.std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.full_like(mean, math.inf)
    return MonteCarloEstimate(mean, se)


def cross_entropy_to_prior(q: DropoutNormal, prior_length_scale) -> torch.Tensor:
    r""":math:`-\mathbb{E}_q[\log p(\mathbf{W})]` in closed form for the prior
    :math:`\mathcal{N}(0, l^{-2}\mathbf{I})`:
    :math:`\tfrac{KQ}{2}\log(2\pi l^{-2}) + \tfrac{l^2}{2}(\pi\|\mathbf{M}\|^2 + KQ\theta^2)`."""
    l2 = prior_precision(prior_length_scale)
    kq = q.num_rows * q.num_cols
    second_moment = q.keep_prob * q.loc.pow(2).sum((-1, -2)) + kq * q.theta.pow(2)
    return 0.5 * kq * math.log(2 * math.pi / l2) + 0.5 * l2 * second_moment


def kl_monte_carlo(
    q: DropoutNormal, prior_length_scale, num_samples: int = 10_000, generator=None,
    chunk_size: int = 4096, cross_entropy: str = "analytic",
) -> MonteCarloEstimate:
    r"""Exact KL by Monte Carlo with the exact mixture log density.

    ``cross_entropy="monte-carlo"``: :math:`\frac1S\sum_s[\log q(\mathbf{W}_s) -
    \log p(\mathbf{W}_s)]`, :math:`\mathbf{W}_s\sim q` (fully sampled).
    ``cross_entropy="analytic"`` (default): :math:`\frac1S\sum_s \log q(\mathbf{W}_s)
    - \mathbb{E}_q[\log p]` with the second term in closed form
    (:func:`cross_entropy_to_prior`): still exact, with a much smaller standard error when
    :math:`\|\mathbf{M}\|` is large.

    Returns the estimate and its standard error (sample std / sqrt(S)), each of shape ``batch``.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    if cross_entropy not in ("analytic", "monte-carlo"):
        raise ValueError(f"cross_entropy must be 'analytic' or 'monte-carlo', got {cross_entropy!r}")
    prior = _prior(q, prior_length_scale)
    vals = []
    with torch.no_grad():
        for start in range(0, num_samples, chunk_size):
            s = min(chunk_size, num_samples - start)
            w = q.rsample((s,), generator=generator)
            if cross_entropy == "analytic":
                vals.append(q.log_prob(w) + cross_entropy_to_prior(q, prior_length_scale))
            else:
                vals.append(q.log_prob(w) - prior.log_prob(w))
    return _mean_and_se(torch.cat(vals))


def kl_gap(
    q: DropoutNormal, num_samples: int = 1_000, generator=None, estimator: str = "rao-blackwell",
    differentiable: bool = False,
) -> MonteCarloEstimate:
    r"""The gap :math:`\mathrm{KL}(q\|p) - \text{Prop.1} = \sum_a \mathbb{E}_q[-\log r_z(\mathbf{w}_a)]
    \ge 0`, with its standard error.

    Two estimators:

    * ``"naive"``: :math:`-\log r_{z_s}(\mathbf{w}_s)` at the component :math:`z_s` that generated
      each draw.
    * ``"rao-blackwell"`` (default, lower variance): the entropy of the responsibilities,
      :math:`-\sum_z r_z(\mathbf{w}_s) \log r_z(\mathbf{w}_s)`, which has the same expectation
      (it integrates :math:`z` out given :math:`\mathbf{w}`).

    The gap does not depend on the prior. Set ``differentiable=True`` to keep the graph (for
    training with the exact KL); the draws are then reparameterised in ``loc`` and ``theta``.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    if estimator not in ("naive", "rao-blackwell"):
        raise ValueError(f"estimator must be 'naive' or 'rao-blackwell', got {estimator!r}")
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        mask = q.sample_mask((num_samples,), generator=generator)
        w = q.rsample((num_samples,), mask=mask, generator=generator)
        log_r = torch.log_softmax(q.component_log_probs(w), dim=-2)  # S x batch x 2 x Q
        if estimator == "naive":
            z = mask.squeeze(-2).long()  # S x batch x Q
            per_col = -torch.gather(log_r, -2, z.unsqueeze(-2)).squeeze(-2)
        else:
            # A component of weight 0 (keep_prob = 1: a one-component family) has r = 0 and
            # log r = -inf; 0 * log 0 = 0, with a zero (not NaN) gradient: mask before multiplying.
            finite = torch.isfinite(log_r)
            safe_log_r = torch.where(finite, log_r, torch.zeros_like(log_r))
            per_col = -(safe_log_r.exp() * safe_log_r).masked_fill(~finite, 0.0).sum(-2)
        vals = per_col.sum(-1)
    return _mean_and_se(vals)
