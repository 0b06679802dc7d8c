"""Seed every test: each one starts from the same RNG state whatever ran before it."""

import os

# MKL's Conditional Numerical Reproducibility: one code path whatever the CPU's instruction set
# and the matrix sizes, so that a split computed in a group of splits gets the numbers it gets
# alone (tests/comparisons/protocols/test_uci.py) and the frozen records
# (tests/test_frozen_records.py) hold across CPUs as far as MKL goes; without it an AVX-512 CPU
# breaks both. MKL reads it once, when it initialises: it must be set before torch (or numpy) is
# imported, here or in a module this imports; the pytest-xdist workers inherit the environment and
# load this file before any test module. `make test` sets it too, so that it holds whoever imports
# torch first. setdefault: an MKL_CBWR set outside wins (the frozen records then warn and compare
# within their cross-machine tolerance).
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tests and the code they run may call torch.set_num_threads; undo it after each test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny tensors only pay synchronisation on more threads.
    Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
