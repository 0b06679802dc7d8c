r"""PSIS-LOO that refuses too few draws and names the method in its warnings.

Example:
    >>> import numpy as np
    >>> from comparisons.inference_data.io_mc_dropout import from_mc_dropout
    >>> draws = 0.1 * np.random.default_rng(0).normal(size=(500, 4, 1))  # T x N x D
    >>> round(float(checked_loo(from_mc_dropout(draws, np.zeros((4, 1)), tau=1.0))["elpd_loo"]), 2)
    -3.7
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np

from comparisons.inference_data.base import CHAIN_DIM, DRAW_DIM

__all__ = ["LOOReliabilityWarning", "checked_loo"]


class LOOReliabilityWarning(UserWarning):
    """PSIS-LOO of a method is unreliable (Pareto :math:`\\hat k` above ArviZ's threshold)."""


def _reissue(caught, result, method: str, n_draws: int) -> None:
    """Re-issue ArviZ's warnings: the Pareto-k one as :class:`LOOReliabilityWarning`."""
    for w in caught:
        if "Pareto" in str(w.message):
            good_k = float(getattr(result, "good_k", 0.7) or 0.7)
            k = getattr(result, "pareto_k", None)
            n_bad = int((np.asarray(k) > good_k).sum()) if k is not None else -1
            n_obs = int(np.asarray(k).size) if k is not None else -1
            warnings.warn(
                f"checked_loo ({method}): PSIS-LOO is unreliable: {n_bad} of {n_obs} "
                f"observations have Pareto k > {good_k:.2f} with {n_draws} draws (more draws, "
                f"or exact LOO / K-fold for those points). ArviZ: {w.message}",
                LOOReliabilityWarning, stacklevel=3,
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def checked_loo(idata: az.InferenceData, *, min_draws: int = 100, var_name: str | None = None,
                pointwise: bool = True, scale: str | None = None):
    r"""``az.loo`` that refuses too few draws and names the method in its warnings.

    PSIS fits a generalised Pareto to the largest importance ratios, :math:`M` of them,

    .. math::
        M = \min(0.2\,S,\ 3\sqrt{S}),

    so with few draws that fit (and its :math:`\hat k` diagnostic, whose threshold
    :math:`\min(1 - 1/\log_{10} S, 0.7)` ArviZ uses) is meaningless: fewer than ``min_draws``
    draws (chains x draws) raise ``ValueError``. ArviZ's Pareto-:math:`\hat k` warning is
    re-issued as :class:`LOOReliabilityWarning` with the method and the number of points above
    the threshold. Draws that are independent by construction (``attrs["draws_independent"]``:
    MC dropout, SVI, GP) use ``reff=1``.

    Args:
        idata: ``InferenceData`` with a ``log_likelihood`` group (``attrs["method"]`` names it).
        min_draws: fewest draws (chains x draws) accepted, default 100.
        var_name, pointwise, scale: as in ``az.loo`` (``var_name`` default: ``"y"``).

    Returns:
        ArviZ's ``ELPDData``.

    Example:
        >>> import numpy as np
        >>> from comparisons.inference_data.io_mc_dropout import from_mc_dropout
        >>> draws = 0.1 * np.random.default_rng(0).normal(size=(500, 4, 1))  # T x N x D
        >>> idata = from_mc_dropout(draws, np.zeros((4, 1)), tau=1.0)
        >>> round(float(checked_loo(idata)["elpd_loo"]), 2)
        -3.7
    """
    if not hasattr(idata, "log_likelihood"):
        raise ValueError("checked_loo: the InferenceData has no log_likelihood group")
    ll = idata.log_likelihood
    method = ll.attrs.get("method", "unknown method")
    var_name = var_name or ("y" if "y" in ll.data_vars else None)
    n_draws = int(ll.sizes.get(CHAIN_DIM, 1) * ll.sizes.get(DRAW_DIM, 1))
    if n_draws < int(min_draws):
        raise ValueError(
            f"checked_loo ({method}): PSIS-LOO needs at least {int(min_draws)} draws (chains x "
            f"draws), got {n_draws}; draw more samples"
        )
    reff = 1.0 if int(ll.attrs.get("draws_independent", 0)) else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = az.loo(idata, pointwise=pointwise, var_name=var_name, reff=reff, scale=scale)
    _reissue(caught, result, method, n_draws)
    return result
