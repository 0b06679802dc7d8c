"""The committed long Mauna Loa run (``docs/mauna_loa/long``) is what the docs say: both networks
met the stopping rule on the CPU at the steps the page names; its report's tables are the ones the
report code builds from its records (nothing edited by hand); the Mauna Loa page shows those tables
verbatim; and the claims the page makes about the numbers hold in the records.
"""

from __future__ import annotations

import pandas as pd
import pytest

from comparisons.report.mauna_loa import comparison_markdown, fit_markdown, records_markdown
from tests.common import REPO

LONG = REPO / "docs" / "mauna_loa" / "long"
PAGE = REPO / "docs" / "experiments" / "mauna_loa.md"
#: network method -> the steps at which the page says it met the stopping rule
STEPS = {"mc_dropout_relu": 220_000, "standard_dropout_relu": 220_000,
         "mc_dropout_tanh": 100_000}
WINDOW = 20_000


@pytest.fixture(scope="module")
def records():
    return pd.read_csv(LONG / "records.csv")


@pytest.fixture(scope="module")
def fit():
    return pd.read_csv(LONG / "fit.csv")


def _value(frame, method, split, metric):
    rows = frame[(frame.method == method) & (frame.split == split) & (frame.metric == metric)]
    assert len(rows) == 1, (method, split, metric)
    return float(rows.value.iloc[0])


def test_the_committed_files_are_there():
    assert {p.name for p in LONG.iterdir()} == {"report.md", "records.csv", "fit.csv",
                                                "mauna_loa.png", "losses.png"}


@pytest.mark.parametrize("method", sorted(STEPS))
def test_each_network_met_the_stopping_rule_on_the_cpu(fit, method):
    steps = _value(fit, method, "all", "steps")
    assert steps == STEPS[method] and steps % WINDOW == 0 and steps < 1_000_000
    assert _value(fit, method, "all", "stopped_by_rule") == 1.0
    assert set(fit[fit.method == method].device) == {"cpu"}


def test_report_tables_are_built_from_the_committed_records(records, fit):
    report = (LONG / "report.md").read_text()
    earlier = pd.read_csv(REPO / "docs" / "mauna_loa" / "records.csv")
    tables = {"metrics": records_markdown(records), "fit": fit_markdown(fit),
              "comparison": comparison_markdown({"this run": records, "2500 steps": earlier})}
    for name, table in tables.items():
        assert table in report, name
    page = PAGE.read_text()
    for name in ("fit", "comparison"):  # the page shows these two verbatim
        assert tables[name] in page, name


def test_the_pages_claims_hold_in_the_records(records, fit):
    sd = {split: _value(records, "mc_dropout_relu", split, "mean_sd_ppm")
          for split in ("train", "heldout", "extrapolation")}
    horizon = {m: _value(records, m, "extrapolation", "sd_at_horizon_ppm")
               for m in ("mc_dropout_relu", "mc_dropout_tanh", "gp_arccos1")}
    # ReLU: the sd grows away from the data
    assert sd["train"] < sd["heldout"] < sd["extrapolation"] < horizon["mc_dropout_relu"]
    # tanh: it does not (within 10% of its training-weeks sd at the horizon)
    tanh_train = _value(records, "mc_dropout_tanh", "train", "mean_sd_ppm")
    assert abs(horizon["mc_dropout_tanh"] / tanh_train - 1) < 0.1
    # no network resolves the seasons; the SE GP does
    for method in STEPS:
        assert _value(fit, method, "train", "seasonal_resolved") == 0.0
    assert _value(fit, "gp_se", "train", "seasonal_resolved") == 1.0
    # the MC mean and the weight-averaged mean are more than one MC sd apart at the horizon
    gap = abs(_value(records, "mc_dropout_relu", "extrapolation", "mean_at_horizon_ppm")
              - _value(records, "standard_dropout_relu", "extrapolation", "mean_at_horizon_ppm"))
    assert gap > horizon["mc_dropout_relu"]
    # the arc-cosine GP has the best held-out log-likelihood of all methods
    ll = records[(records.split == "heldout") & (records.metric == "mean_loglik")]
    assert ll.loc[ll.value.idxmax(), "method"] == "gp_arccos1"
