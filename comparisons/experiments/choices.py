"""The fixed choices of the experiments that ``python -m comparisons`` offers in its options and
help: here, without the experiments' imports (torch, Pyro, ArviZ), so that the command line
parses its arguments before any of them loads. The experiments import them from here.
"""

from __future__ import annotations

__all__ = ["REFERENCE_BACKENDS", "SCORED_METHODS"]

#: NUTS back-ends a reference can be sampled with (see :mod:`comparisons.reference.nuts`)
REFERENCE_BACKENDS = ("numpyro", "potential")

#: the methods scored against the reference by default (``hmc`` itself is always included); any
#: other registered method with a split predictive may be asked for
#: (:mod:`comparisons.experiments.reference_scores`)
SCORED_METHODS = ("mc_dropout", "standard_dropout", "concrete_dropout", "full_elbo", "mfvi",
                  "deep_ensemble", "laplace", "laplace_kfac", "gp_arccos1_prior", "gp_arccos1",
                  "gp_se")
