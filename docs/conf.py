"""Sphinx configuration of the documentation site (``make docs`` builds it into docs/_build)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

project = "vi-dropout"
author = "the vi-dropout contributors"
copyright = "2026, the vi-dropout contributors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]

# Google-style "Args:" / "Returns:" sections, the math in ``.. math::`` blocks (MathJax)
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not as a second description of each
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# The notebooks are stored without outputs (tests/test_notebooks.py checks that); they are
# rendered as stored unless DOCS_EXECUTE_NOTEBOOKS=1 asks myst-nb to run them.
nb_execution_mode = "force" if os.environ.get("DOCS_EXECUTE_NOTEBOOKS") == "1" else "off"
nb_execution_timeout = 1800

# The notebooks live in notebooks/ (jupytext pairs); copy the .ipynb files into the source tree.
_NB_OUT = DOCS / "notebooks"
_NB_OUT.mkdir(exist_ok=True)
for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copy2(nb, _NB_OUT / nb.name)

# Result folders hold committed outputs; pages include what they need from them.
exclude_patterns = [
    "_build", "benchmarks", "classification", "diagnose", "gp_vs_dropout", "hmc", "mauna_loa",
    "pitfalls", "reference", "uci", "**/.ipynb_checkpoints",
]
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = "vi-dropout"
