"""The HMC references committed under ``docs/reference/hmc`` are what their manifests and the docs
say: every file's SHA-256 matches its manifest, the convergence gate recomputed from the draws in
the file passes (R-hat <= 1.01, bulk and tail ESS >= 400 for ``f`` at every test point, no
divergence), the manifest says ``"converged": true``, and the prior is the one the docs state
(``l = 1``; ``l = 2`` on Concrete). The gate is recomputed on the file's thinned draws (at most
4,000), not on all the draws the manifest summarises, so R-hat and ESS differ a little from the
manifest's; both must pass.
"""

from __future__ import annotations

import warnings

import pytest

from comparisons.reference.reference_file import convergence_summary, load_reference
from tests.common import REPO

REFERENCES = REPO / "docs" / "reference" / "hmc"
#: data set folder -> the prior length scale the docs state for its reference
PRIORS = {"toy1d": 1.0, "yacht": 1.0, "bostonHousing": 1.0, "energy": 1.0,
          "wine-quality-red": 1.0, "concrete": 2.0}


def test_the_six_references_are_committed():
    found = {p.parent.name for p in REFERENCES.glob("*/split-00.nc")}
    assert found == set(PRIORS)


@pytest.mark.parametrize("dataset", sorted(PRIORS))
def test_committed_reference_is_intact_and_converged(dataset):
    path = REFERENCES / dataset / "split-00.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        idata, manifest = load_reference(
            path, expect={"dataset": dataset, "split": 0,
                          "prior_length_scale": PRIORS[dataset]})
        report = convergence_summary(idata)
    assert manifest["convergence"]["converged"] is True
    assert report.converged, report.reasons
    assert report.max_r_hat <= 1.01 and report.divergences == 0
    assert min(report.min_ess_bulk, report.min_ess_tail) >= 400
    assert report.r_hat.size == manifest["num_test"]

