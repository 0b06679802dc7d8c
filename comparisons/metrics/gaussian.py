r"""The Gaussian log-likelihood of held-out targets: written once, used by every method.

.. math::
    \log p(y^\text{orig}) = -\tfrac12\log(2\pi v) - \frac{(y - \mu)^2}{2 v} - \log s,

with predictive mean :math:`\mu`, variance :math:`v` and target :math:`y` on the scale the model
was fitted on, and :math:`y^\text{orig} = \bar y + s\,y` (an affine map of the density gains
:math:`-\log s`; :math:`\bar y` does not enter).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vi_dropout.validation import check_positive

__all__ = ["gaussian_log_likelihood"]


def gaussian_log_likelihood(mean, variance, y, y_scale: float = 1.0):
    r"""Per-point Gaussian log predictive density :math:`\log\mathcal{N}(y; \mu, v) - \log s`.

    .. math::
        -\tfrac12\log(2\pi v) - \frac{(y - \mu)^2}{2 v} - \log s

    Args:
        mean: :math:`\mu`, predictive means.
        variance: :math:`v > 0`, predictive variances (observation noise included).
        y: targets on the same scale.
        y_scale: :math:`s > 0`, the target standardisation (1: the densities on that scale).

    Shapes: ``mean``, ``variance`` and ``y`` must have the SAME shape (never broadcast: an
    ``M x 1`` target against ``M`` moments would score every point against every target; call
    ``np.broadcast_to`` first where broadcasting is meant). Torch tensors give a tensor, anything
    else a float64 numpy array, of that shape.

    Example:
        >>> round(float(gaussian_log_likelihood(np.zeros(1), np.ones(1), np.zeros(1))[0]), 4)
        -0.9189
    """
    y_scale = check_positive(y_scale, "y_scale")
    is_torch = all(isinstance(t, torch.Tensor) for t in (mean, variance, y))
    if not is_torch:
        mean, variance, y = (np.asarray(t, dtype=np.float64) for t in (mean, variance, y))
    for t, name in ((mean, "mean"), (variance, "variance"), (y, "y")):
        finite = torch.isfinite(t).all() if is_torch else np.isfinite(t).all()
        if not bool(finite):
            raise ValueError(f"{name} must be finite, but it holds NaN or inf")
    if not mean.shape == variance.shape == y.shape:
        raise ValueError(
            f"mean, variance and y must have the same shape (no broadcasting), got "
            f"{tuple(mean.shape)}, {tuple(variance.shape)} and {tuple(y.shape)}"
        )
    if bool((variance <= 0).any()):
        raise ValueError(f"variance must be > 0 everywhere, got minimum {float(variance.min()):g}")
    log = torch.log if is_torch else np.log
    return -0.5 * log(2 * math.pi * variance) - 0.5 * (y - mean) ** 2 / variance - math.log(y_scale)
