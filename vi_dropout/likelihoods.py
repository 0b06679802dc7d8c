r"""The two likelihoods of the toolkit and their per-example data term, written once.

.. math::
    \ell(\mathbf{y}, \hat{\mathbf{y}}) =
    \begin{cases}\tfrac12\|\mathbf{y} - \hat{\mathbf{y}}\|^2 & \text{gaussian (precision }
    \tau\text{ applied by the caller)}\\
    -\log \operatorname{softmax}(\hat{\mathbf{y}})_{y} & \text{categorical}\end{cases}

Example:
    >>> import torch
    >>> float(data_term(torch.zeros(2, 1), torch.ones(2, 1)))
    0.5
"""

from __future__ import annotations

import math

import torch

from vi_dropout.validation import check_targets

__all__ = ["LIKELIHOODS", "check_likelihood", "data_term", "negative_log_likelihood"]

#: the likelihood names every model, objective and protocol accepts
LIKELIHOODS = ("gaussian", "categorical")


def check_likelihood(likelihood: str, name: str = "likelihood") -> str:
    """``likelihood`` if it is one of :data:`LIKELIHOODS`; else ``ValueError`` naming it."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"{name} must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def data_term(y: torch.Tensor, y_hat: torch.Tensor, likelihood: str = "gaussian") -> torch.Tensor:
    r"""Mean over examples of :math:`\tfrac12\|\mathbf{y}-\hat{\mathbf{y}}\|^2` (Gaussian) or of
    the cross-entropy (categorical: ``y`` holds class indices, ``y_hat`` logits).

    Args:
        y: ``N x D`` targets (Gaussian) or ``N`` class indices (categorical).
        y_hat: ``... x N x D`` predictions or ``... x N x C`` logits.

    Returns:
        a tensor of the leading shape ``...`` of ``y_hat``.
    """
    if check_likelihood(likelihood) == "gaussian":
        check_targets(y, "y", num_rows=y_hat.shape[-2], num_outputs=y_hat.shape[-1])
        if y.shape != y_hat.shape[-y.dim():]:
            raise ValueError(f"y has shape {tuple(y.shape)} but the network outputs {tuple(y_hat.shape)}")
        return 0.5 * (y - y_hat).pow(2).sum(-1).mean(-1)
    check_targets(y, "y", num_rows=y_hat.shape[-2], num_outputs=y_hat.shape[-1],
                  likelihood="categorical")
    logp = torch.log_softmax(y_hat, -1)
    idx = y.long().reshape(*([1] * (logp.dim() - 2)), -1, 1).expand(*logp.shape[:-1], 1)
    return -logp.gather(-1, idx).squeeze(-1).mean(-1)


def negative_log_likelihood(y: torch.Tensor, y_hat: torch.Tensor, likelihood: str = "gaussian",
                            tau: float | torch.Tensor = 1.0) -> torch.Tensor:
    r"""Mean over examples of :math:`-\log p(\mathbf{y}_n \mid \hat{\mathbf{y}}_n)`:

    .. math::
        \tau\,\tfrac12\|\mathbf{y} - \hat{\mathbf{y}}\|^2 + \tfrac{D}{2}\log\tfrac{2\pi}{\tau}
        \quad\text{(gaussian)}, \qquad
        -\log \operatorname{softmax}(\hat{\mathbf{y}})_{y} \quad\text{(categorical)}.

    Args:
        y, y_hat: as :func:`data_term` (``D`` is the last dim of ``y_hat``).
        tau: the precision :math:`\tau > 0`, a float or a (learned) tensor broadcasting against
            the result; ignored for categorical.

    Example:
        >>> round(float(negative_log_likelihood(torch.zeros(2, 1), torch.zeros(2, 1), tau=1.0)), 4)
        0.9189
    """
    if check_likelihood(likelihood) == "categorical":
        return data_term(y, y_hat, "categorical")
    d = y_hat.shape[-1]
    log_norm = (torch.log(2 * math.pi / tau) if isinstance(tau, torch.Tensor)
                else math.log(2 * math.pi / tau))
    return tau * data_term(y, y_hat, "gaussian") + 0.5 * d * log_norm
