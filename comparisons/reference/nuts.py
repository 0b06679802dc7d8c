r"""A NUTS reference posterior for the small Bayesian MLPs that MC dropout approximates.

The target is the posterior of :class:`~vi_dropout.models.BayesianMLP` with the same priors
and likelihood as the dropout model,

.. math::
    p(\mathbf{W}, \mathbf{b} \mid X, Y) \propto
    \prod_i \mathcal{N}(\mathbf{W}_i; \mathbf{0}, l^{-2}\mathbf{I})\,
    \mathcal{N}(\mathbf{b}_i; \mathbf{0}, l^{-2}\mathbf{I})
    \prod_n \mathcal{N}(\mathbf{y}_n; f^{\mathbf{W}, \mathbf{b}}(\mathbf{x}_n), \tau^{-1}\mathbf{I}),

sampled with Pyro's NUTS (diagonal mass matrix and step size adapted during warmup).

Three back-ends give the same target (the test suite checks the log densities agree):

* ``backend="potential"`` (default): NUTS on :func:`bnn_potential`, the negative log joint
  written directly with :func:`vi_dropout.network.mlp_forward` (optionally traced with
  ``torch.jit.trace``). It skips Pyro's per-gradient model tracing and is about 2x faster per
  gradient on the small networks used here.
* ``backend="model"``: NUTS on the ``BayesianMLP`` Pyro model itself (Pyro's ``jit_compile``).
  The model works with NUTS unchanged: its weight sites sit outside the ``data`` plate, which
  has no subsampling when ``num_data``/``subsample_size`` are left out.
* ``backend="numpyro"``: NumPyro's NUTS (JAX, CPU) on the same potential written in JAX
  (:mod:`comparisons.reference.numpyro_nuts`; the optional ``jax`` extra). Same seeds, initial
  values, cache and result; the whole trajectory is compiled, which ``benchmarks/bench_hmc.py``
  measures against the default.

:func:`run_nuts` runs one chain per task, in separate ``spawn`` processes when
``num_processes > 1`` (each worker with one torch thread), and caches every finished chain as
``<cache_dir>/nuts-<key>/chain-<c>.npz`` (written atomically), where ``key`` hashes the data
and every setting that changes a chain. A re-run loads the cached chains and samples only the
missing ones; since chain ``c`` does not depend on ``num_chains``, asking for more chains later
reuses the first ones. :func:`hmc_summary` wraps ``az.summary`` and warns
(:class:`HMCDiagnosticsWarning`) when the draws are not a usable reference.

Example:
    >>> result = run_nuts(x, y, hidden=(50,), prior_length_scale=1.0, tau=10.0,
    ...                   num_chains=4, num_warmup=500, num_samples=500,
    ...                   cache_dir="outputs/nuts-cache")  # doctest: +SKIP
    >>> idata = result.to_datatree()  # doctest: +SKIP
    >>> table = hmc_summary(idata, var_names=["f"])  # doctest: +SKIP

Why one module of this size: the NUTS reference: the potential, the kernel that records every
statistic, the chain cache and the multi-process run, one sampler.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pyro
import torch
import xarray as xr
from pyro.infer import MCMC, NUTS

from comparisons.inference_data.base import weight_site_names
from comparisons.inference_data.io_nuts import from_nuts
from comparisons.runner.store import atomic_write_bytes
from vi_dropout.network import Architecture, mlp_forward
from vi_dropout.validation import check_targets

__all__ = [
    "DEFAULT_ESS_PER_CHAIN",
    "DEFAULT_MIN_BFMI",
    "DEFAULT_R_HAT_MAX",
    "HMCDiagnosticsWarning",
    "NUTSResult",
    "SUMMARY_CI_KIND",
    "SUMMARY_CI_PROB",
    "RecordingNUTS",
    "bnn_potential",
    "hmc_summary",
    "jit_potential",
    "nuts_cache_key",
    "run_nuts",
]

#: R-hat above this flags non-convergence (Vehtari et al. 2021 recommend 1.01).
DEFAULT_R_HAT_MAX = 1.01
#: bulk and tail ESS below this times the number of chains are flagged (Vehtari et al. 2021).
DEFAULT_ESS_PER_CHAIN = 100
#: E-BFMI below this flags poor energy exploration (Stan's threshold).
DEFAULT_MIN_BFMI = 0.3

_CACHE_FORMAT = 1
_BACKENDS = ("potential", "model", "numpyro")


class HMCDiagnosticsWarning(UserWarning):
    """The NUTS draws fail a convergence / efficiency check (R-hat, ESS, divergences, E-BFMI)."""


# ------------------------------------------------------------------------------- the target
def bnn_potential(
    x: torch.Tensor,
    y: torch.Tensor,
    architecture: Architecture,
    prior_length_scale: float,
    tau: float,
) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    r"""The negative log joint of :class:`~vi_dropout.models.BayesianMLP` as a NUTS potential.

    .. math::
        U(\mathbf{W}, \mathbf{b}) = -\sum_{\text{params } w}\log\mathcal{N}(w; 0, l^{-2})
        - \sum_{n, d}\log\mathcal{N}(y_{n,d}; f_d(\mathbf{x}_n), \tau^{-1}),

    including every normalising constant, so :math:`-U` equals the log joint that Pyro's trace
    of the model reports.

    Args:
        x: ``N x Q`` inputs; y: ``N x D`` targets (model scale).
        architecture: widths and activation; prior_length_scale: :math:`l`; tau: :math:`\tau`.

    Returns:
        ``potential(params) -> scalar`` for a dict with the sites ``layers.{i}.weight``
        (``out x in``) and ``layers.{i}.bias`` (``out``).

    Example:
        >>> arch = Architecture((1, 3, 1))
        >>> pot = bnn_potential(torch.zeros(4, 1), torch.zeros(4, 1), arch, 1.0, 1.0)
        >>> params = {k: torch.zeros(s) for k, s in [("layers.0.weight", (3, 1)),
        ...           ("layers.0.bias", (3,)), ("layers.1.weight", (1, 3)), ("layers.1.bias", (1,))]}
        >>> round(float(pot(params)), 4)  # 14 terms -log N(0; 0, 1) = 14 * 0.9189
        12.8651
    """
    names = weight_site_names(architecture)
    num_params = sum(o * q + o for o, q in architecture.layer_shapes)
    l2 = float(prior_length_scale) ** 2
    tau = float(tau)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    const = num_params * (half_log_2pi - math.log(prior_length_scale)) + y.numel() * (
        half_log_2pi - 0.5 * math.log(tau))
    activation = architecture.activation

    def potential(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ws = [params[n] for n in names[0::2]]
        bs = [params[n] for n in names[1::2]]
        f = mlp_forward(x, ws, bs, activation)
        prior = sum(t.square().sum() for t in (*ws, *bs))
        return 0.5 * l2 * prior + 0.5 * tau * (y - f).square().sum() + const

    return potential


def jit_potential(
    potential: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
    architecture: Architecture,
    example: Mapping[str, torch.Tensor],
) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None:
    r"""``torch.jit.trace`` of a potential over the weight sites of ``architecture``.

    The potential (e.g. of :func:`bnn_potential`) is traced as a function of the site tensors
    ``layers.{i}.weight``, ``layers.{i}.bias`` (in the order of
    :func:`~comparisons.inference_data.base.weight_site_names`) at the values of ``example``;
    the result takes the same dict of sites and returns the same scalar :math:`U`. This is what
    :func:`run_nuts` runs with ``jit_compile=True``.

    Args:
        potential: ``potential(params) -> scalar``.
        architecture: the network whose sites ``params`` holds.
        example: site name -> tensor of the shape the traced function will be called with.

    Returns:
        The traced potential, or ``None`` (with a ``RuntimeWarning``) if tracing fails on this
        torch build; then use ``potential`` itself.

    Example:
        >>> arch = Architecture((1, 3, 1))
        >>> pot = bnn_potential(torch.zeros(4, 1), torch.zeros(4, 1), arch, 1.0, 1.0)
        >>> params = {k: torch.zeros(s) for k, s in [("layers.0.weight", (3, 1)),
        ...           ("layers.0.bias", (3,)), ("layers.1.weight", (1, 3)), ("layers.1.bias", (1,))]}
        >>> traced = jit_potential(pot, arch, params)
        >>> round(float(traced(params)), 4) == round(float(pot(params)), 4)
        True
    """
    names = weight_site_names(architecture)

    def flat(*tensors):
        return potential(dict(zip(names, tensors)))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(flat, tuple(example[n] for n in names), check_trace=False)
    except Exception as err:  # pragma: no cover - depends on the torch build
        warnings.warn(f"torch.jit.trace of the potential failed ({err}); running eagerly",
                      RuntimeWarning, stacklevel=2)
        return None

    def jitted(params):
        return traced(*(params[n] for n in names))

    return jitted


# ----------------------------------------------------------------------- recording kernel
class RecordingNUTS(NUTS):
    r"""Pyro's :class:`~pyro.infer.mcmc.NUTS` that records Stan-style statistics per iteration.

    Recorded for every warmup and sampling iteration (one list per chain, a new chain starting
    at each ``setup``):

    * ``step_size``: the step size used by the iteration;
    * ``n_steps``: leapfrog steps (= gradient evaluations) of the iteration;
    * ``tree_depth``: number of trajectory doublings (at most ``max_tree_depth``);
    * ``diverging``: whether a subtree diverged (also during warmup, unlike Pyro's
      ``diagnostics``);
    * ``acceptance_rate``: mean Metropolis acceptance probability over the trajectory;
    * ``energy``: the Hamiltonian :math:`U(\mathbf{z}) + K(\mathbf{r})` right after the momentum
      refresh at the start of the iteration (used by ``az.bfmi``);
    * ``lp``: :math:`-U` at the state the iteration returns (the log joint).

    Same arguments as ``NUTS``.
    """

    STATS = ("step_size", "n_steps", "tree_depth", "diverging", "acceptance_rate", "energy", "lp")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chain_records: list[dict[str, list]] = []
        self._tree_level = 0

    def setup(self, warmup_steps, *args, **kwargs):
        self.chain_records.append({k: [] for k in self.STATS})
        self._recorded_warmup = warmup_steps
        super().setup(warmup_steps, *args, **kwargs)

    def _sample_r(self, name):
        r, r_unscaled = super()._sample_r(name)
        pe = self._potential_energy_last
        self._iter_energy = float(self._kinetic_energy(r_unscaled)) + float(pe)
        return r, r_unscaled

    def _build_basetree(self, *args, **kwargs):
        self._iter_steps += 1
        return super()._build_basetree(*args, **kwargs)

    def _build_tree(self, *args, **kwargs):
        self._tree_level += 1
        try:
            tree = super()._build_tree(*args, **kwargs)
        finally:
            self._tree_level -= 1
        if self._tree_level == 0:  # a top-level doubling of the trajectory
            self._iter_depth += 1
            self._iter_diverging = self._iter_diverging or bool(tree.diverging)
            self._iter_accept += float(tree.sum_accept_probs)
            self._iter_proposals += int(tree.num_proposals)
        return tree

    def sample(self, params):
        step_size = float(self.step_size)
        self._iter_steps = self._iter_depth = self._iter_proposals = 0
        self._iter_accept = 0.0
        self._iter_diverging = False
        self._iter_energy = float("nan")
        out = super().sample(params)
        rec = self.chain_records[-1]
        rec["step_size"].append(step_size)
        rec["n_steps"].append(self._iter_steps)
        rec["tree_depth"].append(self._iter_depth)
        rec["diverging"].append(self._iter_diverging)
        rec["acceptance_rate"].append(
            self._iter_accept / self._iter_proposals if self._iter_proposals else float("nan"))
        rec["energy"].append(self._iter_energy)
        rec["lp"].append(-float(self._potential_energy_last))
        return out

    def collected_sample_stats(self, num_samples: int,
                               num_chains: int | None = None) -> dict[str, np.ndarray]:
        """``chain x draw`` arrays of the last ``num_samples`` iterations of the last
        ``num_chains`` recorded chains (default: all); ``{}`` if fewer were recorded."""
        records = self.chain_records if num_chains is None else self.chain_records[-num_chains:]
        if (not records or (num_chains is not None and len(records) < num_chains)
                or any(len(r["lp"]) < num_samples for r in records)):
            return {}
        out = {}
        for key in self.STATS:
            arr = np.stack([np.asarray(r[key][len(r[key]) - num_samples:]) for r in records])
            out[key] = arr.astype(bool if key == "diverging" else
                                  np.int64 if key in ("n_steps", "tree_depth") else np.float64)
        return out


# ---------------------------------------------------------------------------------- result
@dataclass
class NUTSResult:
    """Draws, per-draw statistics and timings of :func:`run_nuts`.

    Attributes:
        samples: site name -> ``chain x draw x ...`` array (``layers.{i}.weight`` is
            ``chain x draw x out x in``).
        sample_stats: ``chain x draw`` arrays (see :class:`RecordingNUTS`).
        x, y: the data the chains were conditioned on (model scale), ``N x Q`` and ``N x D``.
        settings: every setting (widths, activation, prior_length_scale, tau, num_warmup, ...).
        wall_time_s: wall time of the :func:`run_nuts` call (cache loads included).
        chain_wall_times_s: per chain, warmup + sampling wall time when it was computed.
        chain_sampling_times_s: per chain, wall time of the sampling phase only.
        warmup_grad_evals: per chain, leapfrog steps spent in warmup.
        from_cache: per chain, whether it was loaded from the cache.
        cache_files: per chain, its cache file (``None`` without a cache).
    """

    samples: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    settings: dict[str, Any]
    wall_time_s: float
    chain_wall_times_s: np.ndarray
    chain_sampling_times_s: np.ndarray
    warmup_grad_evals: np.ndarray
    from_cache: tuple[bool, ...]
    cache_files: tuple[str | None, ...] = field(default=())

    @property
    def num_chains(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def num_samples(self) -> int:
        return int(next(iter(self.samples.values())).shape[1])

    @property
    def draws_per_second(self) -> float:
        """Post-warmup draws of all chains per second of this call's wall time (meaningless when
        chains came from the cache; see :attr:`chain_wall_times_s`)."""
        return self.num_chains * self.num_samples / self.wall_time_s

    @property
    def seconds_per_draw(self) -> float:
        """Mean sampling-phase seconds per draw and chain (one process's view)."""
        return float(np.mean(self.chain_sampling_times_s)) / self.num_samples

    @property
    def grad_evals_per_draw(self) -> float:
        """Mean leapfrog steps (gradient evaluations) per post-warmup draw."""
        return float(np.mean(self.sample_stats["n_steps"]))

    def to_datatree(self, **kwargs) -> xr.DataTree:
        """:func:`~comparisons.inference_data.io_nuts.from_nuts` of this result (``kwargs``: ``x``,
        ``y`` on the original scale, ``y_mean``, ``y_std``, ``seed``, ``feature_names``)."""
        return from_nuts(self, **kwargs)


# ------------------------------------------------------------------------------ the chains
# Settings added to the chains' settings after the cache format was fixed, with their defaults:
# each enters the settings (and so the cache key) only when it differs from its default, so a
# chain cached before the setting existed, which was made at the default, keeps its key.
_LATER_SETTINGS: dict[str, Any] = {"dense_mass": False}


def _chain_settings(architecture: Architecture, prior_length_scale, tau, num_warmup, num_samples,
                    jit_compile, seed, max_tree_depth, target_accept_prob, init_scale, backend,
                    dense_mass=False):
    settings = {
        "format": _CACHE_FORMAT,
        "widths": list(architecture.widths),
        "activation": architecture.activation,
        "prior_length_scale": float(prior_length_scale),
        "tau": float(tau),
        "num_warmup": int(num_warmup),
        "num_samples": int(num_samples),
        "jit_compile": bool(jit_compile),
        "seed": int(seed),
        "max_tree_depth": int(max_tree_depth),
        "target_accept_prob": float(target_accept_prob),
        "init_scale": float(init_scale),
        "backend": backend,
        "dense_mass": bool(dense_mass),
        "dtype": "float64",
        "torch": torch.__version__.split("+")[0],
        "pyro": pyro.__version__,
        **_numpyro_versions(backend),
    }
    return {k: v for k, v in settings.items()
            if not (k in _LATER_SETTINGS and v == _LATER_SETTINGS[k])}


def _with_later_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with every setting of :data:`_LATER_SETTINGS` it leaves out at its default."""
    return {**_LATER_SETTINGS, **settings}


def _numpyro_versions(backend: str) -> dict[str, str]:
    """``{"jax": ..., "numpyro": ...}`` for the ``numpyro`` backend (an ``ImportError`` saying
    what to install if they are missing), else ``{}``."""
    if backend != "numpyro":
        return {}
    from comparisons.reference.numpyro_nuts import require_jax

    jax, numpyro = require_jax()
    return {"jax": jax.__version__, "numpyro": numpyro.__version__}


def nuts_cache_key(settings: Mapping[str, Any], x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 (hex) of the chain settings and the exact bytes, shapes and dtypes of ``x, y``.

    Example:
        >>> k = nuts_cache_key({"a": 1}, np.zeros((2, 1)), np.zeros((2, 1)))
        >>> len(k), k == nuts_cache_key({"a": 1}, np.zeros((2, 1)), np.ones((2, 1)))
        (64, False)
    """
    h = hashlib.sha256()
    h.update(json.dumps(dict(settings), sort_keys=True).encode())
    for arr in (x, y):
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _chain_seed(seed: int, chain: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(chain)]).generate_state(1)[0])


def _arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of named arrays (names, dtypes, shapes and bytes, in name order): what a cached
    chain's meta records and :func:`_load_chain` checks."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name};{arr.dtype.str}{arr.shape};".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _save_chain(path: Path, chain: Mapping[str, Any]) -> None:
    arrays = {f"sample:{k}": v for k, v in chain["samples"].items()}
    arrays.update({f"stat:{k}": v for k, v in chain["stats"].items()})
    meta = dict(chain["meta"], arrays_sha256=_arrays_sha256(arrays))
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _load_chain(path: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """A cached chain, or None (other settings, or a damaged file: warned, then recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if not isinstance(meta, dict):
                raise ValueError(f"'meta' is a {type(meta).__name__}, expected an object")
            if meta.get("settings") != json.loads(json.dumps(dict(settings))):
                return None
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
        samples = {k[7:]: v for k, v in arrays.items() if k.startswith("sample:")}
        stats = {k[5:]: v for k, v in arrays.items() if k.startswith("stat:")}
        if not samples:
            raise ValueError("no 'sample:*' arrays")
        if meta.get("arrays_sha256") != _arrays_sha256(arrays):
            raise ValueError("its draws do not match the arrays_sha256 of its meta (edited, or "
                             "written before cached chains carried it)")
        meta = {k: v for k, v in meta.items() if k != "arrays_sha256"}
    except Exception as err:  # noqa: BLE001 - any damage (BadZipFile, EOFError, ...) -> recompute
        warnings.warn(f"ignoring unreadable NUTS cache file {path} "
                      f"({type(err).__name__}: {err}); the chain is sampled again and the file "
                      "rewritten", RuntimeWarning, stacklevel=3)
        return None
    return {"samples": samples, "stats": stats, "meta": meta}


@contextlib.contextmanager
def _isolated_rng():
    """Run with private RNG state (torch, numpy, random) and one torch thread; restore after."""
    threads = torch.get_num_threads()
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            random.setstate(py_state)
            np.random.set_state(np_state)


def _sample_chain(job: Mapping[str, Any]) -> dict[str, Any]:
    """Warm up and sample one chain (the body of a worker process)."""
    s = _with_later_defaults(job["settings"])
    arch = Architecture(tuple(s["widths"]), s["activation"])
    x = torch.as_tensor(job["x"], dtype=torch.float64)
    y = torch.as_tensor(job["y"], dtype=torch.float64)
    seed = _chain_seed(s["seed"], job["chain"])
    pyro.set_rng_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    std = s["init_scale"] / s["prior_length_scale"]
    init = {}
    for i, (o, q) in enumerate(arch.layer_shapes):
        init[f"layers.{i}.weight"] = std * torch.randn(o, q, generator=gen, dtype=torch.float64)
        init[f"layers.{i}.bias"] = std * torch.randn(o, generator=gen, dtype=torch.float64)
    if s["backend"] == "numpyro":
        return _finish_chain(job, seed, _sample_chain_numpyro(s, job, init, seed))
    common = dict(max_tree_depth=s["max_tree_depth"], target_accept_prob=s["target_accept_prob"],
                  adapt_step_size=True, adapt_mass_matrix=True,
                  full_mass=s["dense_mass"])
    t_start = time.perf_counter()
    if s["backend"] == "model":
        from vi_dropout.models import BayesianMLP

        model = BayesianMLP(arch, prior_length_scale=s["prior_length_scale"], tau=s["tau"])
        kernel = RecordingNUTS(model, jit_compile=s["jit_compile"], ignore_jit_warnings=True,
                               **common)
        run_args = (x, y)
    else:
        potential = bnn_potential(x, y, arch, s["prior_length_scale"], s["tau"])
        if s["jit_compile"]:
            potential = jit_potential(potential, arch, init) or potential
        kernel = RecordingNUTS(potential_fn=potential, **common)
        run_args = ()
    marks = {}

    def hook(kernel, params, stage, i):
        if stage.startswith("Warmup") and i == s["num_warmup"] - 1:
            marks["warmup_end"] = time.perf_counter()

    mcmc = MCMC(kernel, num_samples=s["num_samples"], warmup_steps=s["num_warmup"],
                initial_params=init, num_chains=1, hook_fn=hook, disable_progbar=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.trace.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        mcmc.run(*run_args)
    t_end = time.perf_counter()
    samples = {k: v.detach().cpu().numpy().astype(np.float64)
               for k, v in mcmc.get_samples().items()}
    records = kernel.chain_records[-1]
    stats = {k: v[0] for k, v in kernel.collected_sample_stats(s["num_samples"], 1).items()}
    warm_end = marks.get("warmup_end", t_start)
    return _finish_chain(job, seed, {
        "samples": samples, "stats": stats, "warmup_time_s": warm_end - t_start,
        "sampling_time_s": t_end - warm_end,
        "warmup_grad_evals": int(sum(records["n_steps"][: s["num_warmup"]]))})


def _sample_chain_numpyro(s, job, init, seed) -> dict[str, Any]:
    """One chain of the ``numpyro`` backend from the same initial values."""
    from comparisons.reference.numpyro_nuts import sample_chain

    return sample_chain(s, job["x"], job["y"], {k: v.numpy() for k, v in init.items()}, seed)


def _finish_chain(job, seed: int, sampled: Mapping[str, Any]) -> dict[str, Any]:
    """The chain record (draws, statistics, meta) of a sampled chain, cached when asked."""
    meta = {
        "settings": job["settings"],
        "chain": job["chain"],
        "chain_seed": seed,
        "wall_time_s": sampled["warmup_time_s"] + sampled["sampling_time_s"],
        "sampling_time_s": sampled["sampling_time_s"],
        "warmup_time_s": sampled["warmup_time_s"],
        "warmup_grad_evals": int(sampled["warmup_grad_evals"]),
        "created_at": time.time(),
    }
    chain = {"samples": sampled["samples"], "stats": sampled["stats"], "meta": meta}
    if job.get("cache_file"):
        _save_chain(Path(job["cache_file"]), chain)
    return chain


def _worker_init():  # pragma: no cover - runs in the spawned workers
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _spawn_worker(job):  # pragma: no cover - runs in the spawned workers
    with _isolated_rng():
        return _sample_chain(job)


def run_nuts(
    x: Any,
    y: Any,
    hidden: Sequence[int] = (50,),
    *,
    activation: str = "relu",
    prior_length_scale: float = 1.0,
    tau: float = 1.0,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    jit_compile: bool = True,
    cache_dir: str | os.PathLike | None = None,
    num_processes: int = 2,
    seed: int = 0,
    max_tree_depth: int = 10,
    target_accept_prob: float = 0.8,
    init_scale: float = 1.0,
    backend: str = "potential",
    dense_mass: bool = False,
) -> NUTSResult:
    r"""NUTS reference posterior of the Bayesian MLP ``Q -> hidden -> D`` with the dropout
    model's priors :math:`\mathcal{N}(0, l^{-2})` and noise precision :math:`\tau`.

    Chain ``c`` starts from a prior-like draw :math:`\mathcal{N}(0, (\text{init\_scale}/l)^2)`
    of every weight and bias and uses its own seed derived from ``(seed, c)``; the step size and
    a diagonal (or, with ``dense_mass``, a dense) mass matrix are adapted during the
    ``num_warmup`` iterations. Chains are
    independent tasks: run in ``num_processes`` ``spawn`` processes (one torch thread each) when
    ``num_processes > 1``, else one after another in this process (same draws either way). A
    script that calls it with ``num_processes > 1`` must guard its top level with
    ``if __name__ == "__main__":`` (the workers re-import it).

    Args:
        x: ``N x Q`` inputs, y: ``N x D`` targets (a 1-D ``y`` is refused), on the scale the model is defined
            on (standardised for UCI data); torch or numpy.
        hidden: hidden widths, e.g. ``(50,)``.
        activation: hidden activation (see :data:`vi_dropout.network.ACTIVATIONS`).
        prior_length_scale: :math:`l`; tau: :math:`\tau` (as for the dropout model).
        num_chains, num_warmup, num_samples: chains, warmup and kept iterations per chain.
        jit_compile: trace the potential (``backend="potential"``) or the model (Pyro's
            ``jit_compile``) with ``torch.jit.trace``.
        cache_dir: folder for the per-chain cache (``None``: no cache).
        num_processes: worker processes (1: run in this process).
        seed: base seed.
        max_tree_depth, target_accept_prob: NUTS settings.
        init_scale: scale of the initial draws relative to the prior standard deviation.
        backend: ``"potential"``, ``"model"`` or ``"numpyro"`` (see the module docstring;
            ``"numpyro"`` needs the ``jax`` extra and ignores ``jit_compile``).
        dense_mass: adapt a dense mass matrix (all posterior covariances; Pyro's
            ``full_mass``, NumPyro's ``dense_mass``) instead of a diagonal one: for posteriors
            with strongly correlated weights, at a cost quadratic in the number of weights.

    Returns:
        :class:`NUTSResult`.

    Example:
        >>> x = torch.linspace(-2, 2, 20, dtype=torch.float64)[:, None]
        >>> result = run_nuts(x, torch.sin(2 * x), hidden=(4,), tau=25.0, num_chains=2,
        ...                   num_warmup=100, num_samples=100, num_processes=1)  # doctest: +SKIP
        >>> result.samples["layers.0.weight"].shape  # doctest: +SKIP
        (2, 100, 4, 1)
    """
    t0 = time.perf_counter()
    x_arr, y_arr = _data_arrays(x, y)
    _check_run_arguments(backend, num_chains=num_chains, num_warmup=num_warmup,
                         num_samples=num_samples, num_processes=num_processes,
                         max_tree_depth=max_tree_depth, prior_length_scale=prior_length_scale,
                         tau=tau, init_scale=init_scale, target_accept_prob=target_accept_prob,
                         dense_mass=dense_mass)
    arch = Architecture((x_arr.shape[1], *tuple(int(h) for h in hidden), y_arr.shape[1]),
                        activation)
    settings = _chain_settings(arch, prior_length_scale, tau, num_warmup, num_samples,
                               jit_compile, seed, max_tree_depth, target_accept_prob, init_scale,
                               backend, dense_mass)
    key = nuts_cache_key(settings, x_arr, y_arr)
    folder = None if cache_dir is None else Path(cache_dir) / f"nuts-{key[:16]}"
    files = [None if folder is None else folder / f"chain-{c}.npz" for c in range(num_chains)]
    chains = [None if path is None or not path.is_file() else _load_chain(path, settings)
              for path in files]
    cached = tuple(chain is not None for chain in chains)
    jobs = [{"settings": settings, "x": x_arr, "y": y_arr, "chain": c,
             "cache_file": None if files[c] is None else str(files[c])}
            for c in range(num_chains) if chains[c] is None]
    for c, chain in _sample_chains(jobs, num_processes).items():
        chains[c] = chain
    samples = {k: np.stack([ch["samples"][k] for ch in chains]) for k in chains[0]["samples"]}
    stats = {k: np.stack([ch["stats"][k] for ch in chains]) for k in chains[0]["stats"]}
    metas = [ch["meta"] for ch in chains]
    return NUTSResult(
        samples=samples,
        sample_stats=stats,
        x=x_arr,
        y=y_arr,
        settings=dict(settings, num_chains=int(num_chains), cache_key=key),
        wall_time_s=time.perf_counter() - t0,
        chain_wall_times_s=np.array([m["wall_time_s"] for m in metas]),
        chain_sampling_times_s=np.array([m["sampling_time_s"] for m in metas]),
        warmup_grad_evals=np.array([m["warmup_grad_evals"] for m in metas]),
        from_cache=cached,
        cache_files=tuple(None if f is None else str(f) for f in files),
    )


def _data_arrays(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (``N x Q``) and ``y`` (``N x D``) as contiguous float64 arrays, checked."""
    x_arr = np.ascontiguousarray(
        x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    y_arr = np.ascontiguousarray(
        y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    check_targets(torch.from_numpy(y_arr), "y", num_rows=x_arr.shape[0] if x_arr.ndim else None)
    if x_arr.ndim != 2 or y_arr.ndim != 2 or x_arr.shape[0] != y_arr.shape[0]:
        raise ValueError(
            f"run_nuts: x must be N x Q and y N x D with the same N, got {x_arr.shape} and "
            f"{y_arr.shape}")
    for arr, name in ((x_arr, "x"), (y_arr, "y")):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(f"run_nuts: {name} has {bad} non-finite value(s)")
    return x_arr, y_arr


def _check_run_arguments(backend: str, *, target_accept_prob: float, dense_mass: bool,
                         **values) -> None:
    """``ValueError`` naming the first bad setting of :func:`run_nuts` (integers >= 1, or
    ``num_warmup >= 0``; finite positive scales; a target acceptance in (0, 1); a boolean
    ``dense_mass``; a known backend)."""
    if backend not in _BACKENDS:
        raise ValueError(f"run_nuts: backend must be one of {_BACKENDS}, got {backend!r}")
    for name in ("num_chains", "num_warmup", "num_samples", "num_processes", "max_tree_depth"):
        value, lowest = values[name], 0 if name == "num_warmup" else 1
        if isinstance(value, bool) or int(value) != value or value < lowest:
            raise ValueError(f"run_nuts: {name} must be an integer >= {lowest}, got {value!r}")
    for name in ("prior_length_scale", "tau", "init_scale"):
        value = values[name]
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"run_nuts: {name} must be a finite number > 0, got {value!r}")
    if not 0 < float(target_accept_prob) < 1:
        raise ValueError(f"run_nuts: target_accept_prob must be in (0, 1), got {target_accept_prob}")
    if not isinstance(dense_mass, bool):
        raise ValueError(f"run_nuts: dense_mass must be True or False, got {dense_mass!r}")


def _sample_chains(jobs: Sequence[Mapping[str, Any]], num_processes: int) -> dict[int, dict]:
    """chain index -> sampled chain of every job: in ``spawn`` worker processes when
    ``num_processes > 1``, else one after another here (the same draws either way)."""
    chains: dict[int, dict] = {}
    if jobs and num_processes > 1:
        ctx = mp.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=min(int(num_processes), len(jobs)),
                                     mp_context=ctx, initializer=_worker_init) as pool:
                futures = {job["chain"]: pool.submit(_spawn_worker, job) for job in jobs}
                for c, fut in futures.items():
                    chains[c] = fut.result()
        except BrokenProcessPool as err:
            raise RuntimeError(
                "run_nuts: a chain's worker process died. With num_processes > 1 the chains run "
                "in 'spawn' processes, which re-import the calling script: guard its top level "
                "with `if __name__ == '__main__':` (or use num_processes=1). Chains finished "
                "before the failure are in the cache."
            ) from err
    else:
        for job in jobs:
            with _isolated_rng():
                chains[job["chain"]] = _sample_chain(job)
    return chains


# --------------------------------------------------------------------------------- summary
#: the interval of :func:`hmc_summary`'s table, stated rather than left to ArviZ's default
SUMMARY_CI_KIND = "eti"
SUMMARY_CI_PROB = 0.89

def hmc_summary(
    idata: xr.DataTree,
    *,
    var_names: Sequence[str] | None = None,
    group: str = "posterior",
    r_hat_max: float = DEFAULT_R_HAT_MAX,
    ess_per_chain: float = DEFAULT_ESS_PER_CHAIN,
    min_bfmi: float = DEFAULT_MIN_BFMI,
    warn: bool = True,
) -> pd.DataFrame:
    r"""arviz-stats' ``summary`` (means, sd, the :data:`SUMMARY_CI_PROB` equal-tailed interval,
    MCSE, bulk/tail ESS, rank-normalised split R-hat) with a verdict on whether the draws are a
    usable reference. The interval is passed explicitly (columns ``eti89_lb``, ``eti89_ub``), so
    a change of ArviZ's default (0.94 HDI in ArviZ 0.x, 0.89 ETI in 1.x) changes no number.

    A :class:`HMCDiagnosticsWarning` is issued (with ``warn``) when any of

    * :math:`\max \hat R >` ``r_hat_max`` (default 1.01), or an R-hat is NaN;
    * :math:`\min \mathrm{ESS}_\text{bulk}` or :math:`\min \mathrm{ESS}_\text{tail} <`
      ``ess_per_chain`` :math:`\times` chains (default :math:`100 \times` chains);
    * there are divergent transitions (``sample_stats["diverging"]``);
    * an E-BFMI (arviz-stats' ``bfmi``, needs ``sample_stats["energy"]``) is below ``min_bfmi`` (0.3).

    Weight-space R-hat of a neural network is pessimistic: hidden units can be permuted and
    (for odd activations) sign-flipped, so chains in equivalent modes disagree on every weight.
    Check the function values too: ``hmc_summary(idata, var_names=["f"])``.

    Returns:
        the ``summary`` table; ``table.attrs["diagnostics"]`` holds ``max_r_hat``,
        ``min_ess_bulk``, ``min_ess_tail``, ``num_divergent``, ``min_bfmi``, ``num_chains``,
        ``num_draws``, ``problems`` (list of strings) and ``ok``.

    Example:
        >>> import numpy as np
        >>> idata = az.from_dict({"posterior": {"w": np.random.default_rng(0).normal(size=(4, 500))}})
        >>> hmc_summary(idata).attrs["diagnostics"]["ok"]
        True
    """
    data = idata[group]
    n_chains, n_draws = int(data.sizes["chain"]), int(data.sizes["draw"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        table = az.summary(idata, var_names=list(var_names) if var_names else None, group=group,
                           kind="all", round_to="none", ci_kind=SUMMARY_CI_KIND,
                           ci_prob=SUMMARY_CI_PROB)
    r_hat = table["r_hat"].to_numpy(dtype=float)
    ess_bulk = table["ess_bulk"].to_numpy(dtype=float)
    ess_tail = table["ess_tail"].to_numpy(dtype=float)
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    num_div = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else 0
    bfmi = None
    if stats is not None and "energy" in stats:
        bfmi = np.atleast_1d(np.asarray(az.bfmi(idata)["energy"].values, dtype=np.float64))
    min_ess = float(ess_per_chain) * n_chains
    problems = []
    if np.isnan(r_hat).any():
        problems.append(f"{int(np.isnan(r_hat).sum())} R-hat value(s) are NaN")
    if np.nanmax(r_hat, initial=-np.inf) > r_hat_max:
        worst = table["r_hat"].sort_values(ascending=False).head(3)
        problems.append(
            f"{int((r_hat > r_hat_max).sum())} of {r_hat.size} R-hat > {r_hat_max} (worst: "
            + ", ".join(f"{k}={v:.3f}" for k, v in worst.items()) + ")")
    for name, ess in (("bulk", ess_bulk), ("tail", ess_tail)):
        if np.nanmin(ess, initial=np.inf) < min_ess:
            worst = table[f"ess_{name}"].sort_values().head(3)
            problems.append(
                f"{int((ess < min_ess).sum())} of {ess.size} {name} ESS < {min_ess:g} "
                f"({ess_per_chain:g} x {n_chains} chains; worst: "
                + ", ".join(f"{k}={v:.0f}" for k, v in worst.items()) + ")")
    if num_div:
        problems.append(f"{num_div} divergent transition(s) of {n_chains * n_draws}")
    if bfmi is not None and (bfmi < min_bfmi).any():
        problems.append(f"E-BFMI below {min_bfmi} in chain(s) "
                        f"{[int(i) for i in np.flatnonzero(bfmi < min_bfmi)]}: {np.round(bfmi, 3)}")
    method = data.attrs.get("method", "draws")
    diagnostics = {
        "max_r_hat": float(np.nanmax(r_hat)) if np.isfinite(r_hat).any() else float("nan"),
        "min_ess_bulk": float(np.nanmin(ess_bulk, initial=np.inf)),
        "min_ess_tail": float(np.nanmin(ess_tail, initial=np.inf)),
        "num_divergent": num_div,
        "min_bfmi": None if bfmi is None else float(bfmi.min()),
        "num_chains": n_chains,
        "num_draws": n_draws,
        "problems": problems,
        "ok": not problems,
    }
    table.attrs["diagnostics"] = diagnostics
    if warn and problems:
        warnings.warn(
            f"hmc_summary ({method}, group {group!r}): not a usable reference yet: "
            + "; ".join(problems) + ". Run longer chains / more warmup, or check the model.",
            HMCDiagnosticsWarning, stacklevel=2)
    return table
