"""One id, label and colour per method: the map itself, its users and the committed records."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from comparisons.experiments.diagnose import DIAGNOSE_METHODS, DRAW_METHODS
from comparisons.experiments.gp_vs_dropout import GP_METHODS
from comparisons.experiments.mauna_loa import METHODS as MAUNA_LOA_METHODS
from comparisons.report.styles import (
    METHOD_STYLES,
    method_color,
    method_label,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
IDS = ("mc_dropout", "standard_dropout", "gp_arccos1", "gp_arccos1_prior", "gp_se",
       "gp_rf_prior", "hmc", "pyro_mc_dropout", "pyro_standard_dropout", "concrete_dropout",
       "full_elbo", "mfvi", "deep_ensemble", "laplace", "laplace_kfac")


def test_one_label_and_one_colour_per_method():
    # the built-in ids first; methods registered in this process (register_style) come after
    assert tuple(METHOD_STYLES)[:len(IDS)] == IDS
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", m) for m in METHOD_STYLES)
    labels = [METHOD_STYLES[m].label for m in IDS]
    colors = [METHOD_STYLES[m].color for m in IDS]
    assert len(set(labels)) == len(labels) and len(set(colors)) == len(colors)
    assert method_label("hmc") == "HMC (NUTS)" and method_color("gp_se") == "tab:brown"
    # unknown names (older spellings too: method ids only) are drawn as they are
    assert method_label("a") == "a" and method_color("a") is None
    assert method_color("a", "k") == "k"
    assert method_color("gp-arccos1") is None and method_label("nuts") == "nuts"


def test_the_runners_use_the_ids():
    assert set(GP_METHODS) | set(DIAGNOSE_METHODS) | set(DRAW_METHODS) <= set(METHOD_STYLES)


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "docs").rglob("*records*.csv")),
                         ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_committed_records_spell_every_method_as_its_id(path):
    frame = pd.read_csv(path)
    if "method" not in frame.columns:
        pytest.skip("no method column")
    # besides the ids: the Mauna Loa variants (activation in the id), the pitfalls'
    # exact-ELBO quantity and the rotated digit's paired differences between two methods
    allowed = (set(METHOD_STYLES) | set(MAUNA_LOA_METHODS) | {"exact_elbo"}
               | {f"pyro_vs_plain_{m}" for m in ("mc_dropout", "standard_dropout")})
    assert set(frame["method"]) <= allowed
