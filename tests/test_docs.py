"""The documentation site builds from the code with no warning (Sphinx ``-W``), the math is
typeset and every page of the site exists. Notebooks are rendered as stored (no execution here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PAGES = ["index", "conventions", "verify", "api/vi_dropout", "api/comparisons",
         "experiments/uci", "experiments/gp_vs_dropout", "experiments/diagnose",
         "experiments/pitfalls", "experiments/mauna_loa", "experiments/classification",
         "benchmarks", "notebooks", "notebooks/01_elbo_equals_dropout"]


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    """Sphinx reads and resolves every page (``-b dummy``: the reading, autodoc, cross-reference
    and notebook phases of ``make docs``, where its warnings arise, without writing HTML, which
    took half of the build); the doctrees show the pages and the typeset math."""
    import pickle

    doctrees = tmp_path / "doctrees"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "dummy",
         "-d", str(doctrees), str(ROOT / "docs"), str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT),
                                                      **_env()})
    assert proc.returncode == 0, proc.stderr[-4000:]
    for page in PAGES:
        assert (doctrees / f"{page}.doctree").is_file(), page
    api = pickle.loads((doctrees / "api" / "vi_dropout.doctree").read_bytes())
    assert "vi_dropout.distributions.dropout_normal.DropoutNormal" in api.astext()
    # the docstrings' ``.. math::`` blocks are math nodes (MathJax typesets them in HTML)
    assert any(node.tagname == "math_block" for node in api.findall())
    comparisons = pickle.loads((doctrees / "api" / "comparisons.doctree").read_bytes())
    assert "ArcCosineKernel" in comparisons.astext()
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert '"sphinx.ext.mathjax"' in conf


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_your_network_page_code_runs():
    """The Pyro walk-through of docs/your_network.md runs as written."""
    import re
    import warnings

    text = (ROOT / "docs" / "your_network.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = blocks[0].replace("range(500)", "range(50)")  # fewer steps: same code path
        exec(compile(code, "your_network.md", "exec"), namespace)  # noqa: S102
    assert tuple(namespace["f"].shape) == (100, 200, 1)
    assert "log_likelihood" in namespace["idata"].children
