# Quickstart: `make demo` and `make test` both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test verify lint docs clean

install: $(STAMP)

# The laplace extra pins torchvision==0.28.* only so that pip keeps torch at $(TORCH_VERSION);
# PyPI's torchvision wheels are CUDA builds that cannot load next to the CPU torch, and
# torchmetrics (a laplace-torch dependency) imports an installed torchvision: remove it again
# (nothing here uses it).
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev,distributed,laplace,jax]" torch==$(TORCH_VERSION)
	$(PY) -m pip uninstall -y -q torchvision
	$(PY) -m ipykernel install --user --name python3 >/dev/null 2>&1 || true
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m comparisons demo --out outputs/demo

verify: $(STAMP)
	$(PY) -m vi_dropout verify --json outputs/verify.json

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

# The documentation site (Sphinx + myst-nb, furo theme) into docs/_build/html; warnings are
# errors. DOCS_EXECUTE_NOTEBOOKS=1 also runs the notebooks (minutes); by default they are
# rendered as stored.
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

lint: $(STAMP)
	$(PY) -m ruff check vi_dropout comparisons tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache docs/_build docs/notebooks
