"""Seed every test: each one starts from the same RNG state whatever ran before it."""

import os
import tempfile

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
# One torch / MKL / OpenMP thread per test process (and the processes tests start inherit it):
# `make test` runs two pytest-xdist workers on a 2-core machine, and with torch's default of one
# thread per core each worker's second thread waits for a core the other worker holds. Measured
# on the 2-core CPU (2026-12-08, tests/vi_dropout + training + protocols, 841 tests, -n 2):
# 286 s with the default threads, 88 s with one. Tests of thread settings set them explicitly.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# JAX's persistent compilation cache, shared by the workers and the processes they start: NumPyro
# compiles the same NUTS program for every chain of a run (its potential closes over the data),
# and the second chain onwards reads it back (the linear-model NUTS test: 16 s -> 10 s).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "vi-dropout-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

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
