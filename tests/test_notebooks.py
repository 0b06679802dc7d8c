"""Every jupytext notebook in ``notebooks/`` executes in smoke mode, draws at least one figure,
and its paired ``.ipynb`` is in sync with the ``.py`` source and has no stored outputs."""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.compare import compare_notebooks
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOK_SOURCES = sorted(NOTEBOOK_DIR.glob("*.py"))
PAIRED_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def test_notebooks_are_discovered():
    assert NOTEBOOK_SOURCES, f"no jupytext notebooks found in {NOTEBOOK_DIR}"
    assert any(p.name == "01_elbo_equals_dropout.py" for p in NOTEBOOK_SOURCES)


def _outputs(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


@pytest.mark.parametrize("path", NOTEBOOK_SOURCES, ids=[p.stem for p in NOTEBOOK_SOURCES])
def test_notebook_executes_in_smoke_mode(path, tmp_path, monkeypatch):
    nb = jupytext.read(path)
    assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    # the kernel is a subprocess: it inherits this process's environment
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    monkeypatch.setenv("VI_DROPOUT_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("VI_DROPOUT_OUTPUT_DIR", str(tmp_path / "figures"))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = _outputs(nb)
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {[e.get('ename') for e in errors]}"
    stderr = [o.get("text", "") for o in outputs
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not any("Traceback" in s for s in stderr), stderr
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, f"{path.name} produced no figure (image/png output)"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "SMOKE=True" in text, "the notebook did not pick up VI_DROPOUT_SMOKE=1"
    # figures were also saved to the output directory
    saved = sorted((tmp_path / "figures").glob("*.png"))
    assert len(saved) >= 1
    assert all(p.stat().st_size > 1000 for p in saved)


def _code_and_markdown(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOK_SOURCES, ids=[p.stem for p in NOTEBOOK_SOURCES])
def test_ipynb_paired_in_sync_and_stripped(path):
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run jupytext --to ipynb {path.name}"
    nb_py = jupytext.read(path)
    nb_ipynb = nbformat.read(ipynb, as_version=4)
    nbformat.validate(nb_ipynb)
    assert _code_and_markdown(nb_ipynb) == _code_and_markdown(nb_py), (
        f"{ipynb.name} is out of sync with {path.name}: "
        f"run jupytext --sync notebooks/{path.name}")
    # jupytext's own comparison (raises on any cell difference)
    compare_notebooks(jupytext.read(ipynb), nb_py, fmt="py:percent")
    assert nb_ipynb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    for cell in nb_ipynb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{ipynb.name} has stored outputs: strip them"
            assert cell.execution_count is None, f"{ipynb.name} has execution counts"


@pytest.mark.parametrize("path", PAIRED_NOTEBOOKS, ids=[p.stem for p in PAIRED_NOTEBOOKS])
def test_every_ipynb_has_a_py_source(path):
    assert path.with_suffix(".py").exists(), f"{path.name} has no jupytext .py source"
