r"""Converged HMC references on one split: NUTS draws of the predictive at the test inputs,
gated by R-hat and ESS, saved as checked reference files.

:func:`run` conditions the Bayesian MLP of the split (one hidden ReLU layer of the protocol's
width: 50 units on the UCI sets and the toy) on the standardised training data, under the
**shared proper prior** every method can use,

.. math::
    \mathbf{W}_i, \mathbf{b}_i \sim \mathcal{N}(0, l^{-2}\mathbf{I}), \qquad
    y^\text{std}_n \sim \mathcal{N}(f(\mathbf{x}_n), \tau_s^{-1}),

with :math:`l` = ``prior_length_scale`` (default 1: prior sd 1 per weight on the standardised
scale; the dropout-matched :math:`l_\text{eff} \approx 10^{-2}` makes the posterior so diffuse
that NUTS runs at the tree-depth cap without converging, see ``docs/hmc/measurements.md``) and
:math:`\tau_s` the data set's noise precision on the standardised scale. Unless
``tau_standardized`` is given, :math:`\tau_s = \tau s_y^2` with the :math:`\tau` that MC dropout's
grid search (:func:`~comparisons.protocols.uci.fit_mc_dropout`, validation log-likelihood)
selects under the same prior (:func:`~comparisons.protocols.uci.fit_mc_dropout_under_prior`, as
the ``diagnose`` experiment's shared-prior mode), so the reference and the MC dropout it is
compared with share prior and noise.

NUTS (:func:`~comparisons.reference.nuts.run_nuts`; the ``numpyro`` backend by default, see
``benchmarks/bench_hmc.py``) runs ``chains`` chains of ``warmup`` + ``samples`` iterations in
``processes`` processes; finished chains are cached, so an interrupted run resumes. The draws of
:math:`f` at the test inputs (original scale) are checked with
:func:`~comparisons.reference.reference_file.convergence_summary` (R-hat <= 1.01, bulk and tail
ESS >= 400 at every test point, no divergences) on ALL draws, then thinned to at most
``max_draws`` and written by :func:`write_reference` with
:func:`~comparisons.reference.reference_file.save_reference` (compressed NetCDF + manifest with
the prior, noise, data, sampler, convergence summary and SHA-256). The weight draws are not
kept (they would make each file tens of MB). An unconverged run is written too, with
``"converged": false`` in its manifest; :func:`~comparisons.reference.reference_file.require_converged`
is what a consumer calls before treating it as the reference.

Example:
    >>> result = run(ReferenceSettings(dataset="yacht", split=0))  # doctest: +SKIP
    >>> paths = write_reference(result, "docs/reference")  # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.datasets.splits import load_split
from comparisons.datasets.uci import StandardizedSplit, standardize
from comparisons.experiments.choices import REFERENCE_BACKENDS
from comparisons.inference_data.base import datatree
from comparisons.protocols.uci import fit_mc_dropout_under_prior
from comparisons.reference.nuts import run_nuts
from comparisons.reference.reference_file import (
    ConvergenceReport,
    ReferenceFileError,
    ReferenceMismatch,
    convergence_summary,
    draws_to_converge,
    load_reference,
    manifest_path,
    save_reference,
    saved_manifest,
    thin_draws,
)
from vi_dropout.validation import check_positive, check_positive_int

__all__ = ["REFERENCE_BACKENDS", "ReferenceResult", "ReferenceSettings", "existing_reference",
           "is_converged", "reference_files", "reference_path", "run", "write_reference"]



def _non_negative_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"ReferenceSettings: {name} must be an integer >= 0, got {value!r}")


@dataclass(frozen=True)
class ReferenceSettings:
    """What a reference is made of (every field goes into its manifest).

    Attributes:
        dataset: ``"toy1d"`` or a UCI name; split: the split (the toy's data seed).
        prior_length_scale: :math:`l` of the shared prior on the standardised scale.
        tau_standardized: :math:`\\tau_s`; ``None``: selected by MC dropout's grid under the
            same prior (module docstring).
        epochs_multiplier: of that grid search (the protocol's x10 by default).
        chains, warmup, samples: NUTS chains and iterations per chain.
        backend: ``"numpyro"`` (needs the ``jax`` extra) or ``"potential"`` (Pyro).
        max_tree_depth, target_accept_prob: NUTS settings.
        dense_mass: adapt a dense mass matrix instead of a diagonal one
            (:func:`~comparisons.reference.nuts.run_nuts`).
        processes: worker processes for the chains.
        seed: base seed of the chains and the grid search.
        max_draws: draws kept in the file (all chains, thinned evenly).
        toy_num_train: training points of the toy.
    """

    dataset: str = "toy1d"
    split: int = 0
    prior_length_scale: float = 1.0
    tau_standardized: float | None = None
    epochs_multiplier: float = 10.0
    chains: int = 4
    warmup: int = 1000
    samples: int = 1000
    backend: str = "numpyro"
    max_tree_depth: int = 10
    target_accept_prob: float = 0.8
    dense_mass: bool = False
    processes: int = 2
    seed: int = 0
    max_draws: int = 4000
    toy_num_train: int = 200

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"ReferenceSettings: dataset must be a name, got {self.dataset!r}")
        for name in ("split", "warmup", "seed"):
            _non_negative_int(getattr(self, name), name)
        for name in ("chains", "samples", "max_tree_depth", "processes", "max_draws",
                     "toy_num_train"):
            check_positive_int(getattr(self, name), name)
        if self.chains < 2:
            raise ValueError(f"ReferenceSettings: chains must be >= 2 (R-hat compares chains), "
                             f"got {self.chains}")
        check_positive(self.prior_length_scale, "prior_length_scale")
        check_positive(self.epochs_multiplier, "epochs_multiplier")
        if self.tau_standardized is not None:
            check_positive(self.tau_standardized, "tau_standardized")
        if self.backend not in REFERENCE_BACKENDS:
            raise ValueError(f"ReferenceSettings: backend must be one of {REFERENCE_BACKENDS}, "
                             f"got {self.backend!r}")
        if not 0 < float(self.target_accept_prob) < 1:
            raise ValueError(f"ReferenceSettings: target_accept_prob must be in (0, 1), got "
                             f"{self.target_accept_prob!r}")
        if not isinstance(self.dense_mass, bool):
            raise ValueError(f"ReferenceSettings: dense_mass must be True or False, got "
                             f"{self.dense_mass!r}")


@dataclass
class ReferenceResult:
    """What :func:`run` returns.

    Attributes:
        dataset, split: the canonical data set name and the split.
        idata: the reference draws at the test inputs, thinned to ``max_draws``
            (``posterior["f"]``, ``posterior_predictive``, ``log_likelihood``,
            ``sample_stats``, ``observed_data``, ``constant_data``; original scale).
        report: the convergence gate on ALL draws (before thinning).
        manifest: settings, data description, noise and sampler summary for the file.
        wall_time_s: the whole run (grid search for tau included).
    """

    dataset: str
    split: int
    idata: Any
    report: ConvergenceReport
    manifest: dict[str, Any]
    wall_time_s: float
    timings: dict[str, float] = field(default_factory=dict)


def _standardized(settings: ReferenceSettings):
    name, raw, data = load_split(settings.dataset, settings.split,
                                 toy_num_train=settings.toy_num_train)
    std = data if isinstance(data, StandardizedSplit) else standardize(raw)
    return name, raw, std


def _select_tau(settings: ReferenceSettings, raw, y_std: float) -> tuple[float, dict[str, Any]]:
    """:math:`\\tau_s` and where it came from (given, or MC dropout's grid under the prior)."""
    if settings.tau_standardized is not None:
        return float(settings.tau_standardized), {"tau_source": "given"}
    drop, protocol = fit_mc_dropout_under_prior(
        raw, settings.prior_length_scale, y_std, epochs_multiplier=settings.epochs_multiplier,
        seed=settings.seed)
    tau = float(drop.tau)
    return tau * y_std**2, {
        "tau_source": f"MC dropout grid search (validation log-likelihood, epochs "
                      f"x{settings.epochs_multiplier:g}) under the same prior",
        "tau_original_scale": tau, "mc_dropout_dropout_rate": float(drop.dropout_rate),
        "mc_dropout_keras_length_scale": float(protocol.prior_length_scale)}


def run(settings: ReferenceSettings | None = None, *, cache_dir=None,
        progress: bool = False) -> ReferenceResult:
    """Sample, check and thin the reference of one split (see the module docstring).

    Args:
        settings: :class:`ReferenceSettings`.
        cache_dir: NUTS chain cache (a re-run reuses finished chains); ``None``: none.
        progress: print the stages.

    Returns:
        :class:`ReferenceResult`.
    """
    s = ReferenceSettings() if settings is None else settings
    if not isinstance(s, ReferenceSettings):
        raise ValueError(f"settings must be a ReferenceSettings, got {type(s).__name__}")
    t0 = time.perf_counter()
    name, raw, std = _standardized(s)
    tau_s, tau_info = _select_tau(s, raw, float(std.y_std))
    t_tau = time.perf_counter() - t0
    if progress:
        print(f"[{name} split {s.split}] tau_s = {tau_s:.5g} ({tau_info['tau_source']}); NUTS "
              f"{s.chains} x ({s.warmup} + {s.samples}), backend {s.backend}", flush=True)
    res = run_nuts(std.x_train, std.y_train, hidden=(int(raw.n_hidden),), activation="relu",
                   prior_length_scale=s.prior_length_scale, tau=tau_s, num_chains=s.chains,
                   num_warmup=s.warmup, num_samples=s.samples, cache_dir=cache_dir,
                   num_processes=s.processes, seed=s.seed, max_tree_depth=s.max_tree_depth,
                   target_accept_prob=s.target_accept_prob, init_scale=1.0, backend=s.backend,
                   dense_mass=s.dense_mass)
    attrs = {"dataset": name, "split": int(s.split)}
    full = res.to_datatree(x=np.asarray(std.x_test, dtype=np.float64),
                                 y=np.array(raw.y_test, dtype=np.float64),
                                 y_mean=float(std.y_mean), y_std=float(std.y_std), seed=s.seed,
                                 attrs=attrs)
    report = convergence_summary(full)
    step = max(4, s.samples // 20)
    first = draws_to_converge(full, step=step) if report.converged else None
    warm = float(np.mean(res.chain_wall_times_s - res.chain_sampling_times_s))
    per_draw = float(np.mean(res.chain_sampling_times_s)) / s.samples
    idata = _compact(thin_draws(full, s.max_draws))
    stats = res.sample_stats
    manifest = {
        "dataset": name, "split": int(s.split), "settings": asdict(s),
        "prior": f"N(0, l^-2) on every weight and bias, l = {s.prior_length_scale:g} "
                 "(standardised scale)",
        "prior_length_scale": float(s.prior_length_scale),
        "tau_standardized": tau_s, **tau_info,
        "architecture": {"widths": [int(w) for w in res.settings["widths"]],
                         "activation": "relu"},
        "num_train": int(std.x_train.shape[0]), "num_test": int(std.x_test.shape[0]),
        "y_mean": float(std.y_mean), "y_std": float(std.y_std),
        "sampler": {k: res.settings[k] for k in (
            "backend", "num_warmup", "num_samples", "num_chains", "max_tree_depth",
            "target_accept_prob", "dense_mass", "seed", "cache_key") if k in res.settings},
        "sampler_versions": {k: res.settings[k] for k in ("torch", "pyro", "jax", "numpyro")
                             if k in res.settings},
        "draws_kept": int(idata.posterior.sizes["draw"]) * int(idata.posterior.sizes["chain"]),
        "grad_evals_per_draw": float(np.mean(stats["n_steps"])),
        "tree_depth_cap_share": float(np.mean(stats["tree_depth"] >= s.max_tree_depth)),
        "step_size_by_chain": [float(v) for v in stats["step_size"][:, -1]],
        "chain_wall_times_s": [float(v) for v in res.chain_wall_times_s],
        "chains_from_cache": [bool(v) for v in res.from_cache],
        "wall_time_nuts_s": float(res.wall_time_s), "wall_time_tau_s": float(t_tau),
        "draws_to_converge_per_chain": first,
        "chain_time_to_converge_s": None if first is None else warm + first * per_draw,
    }
    return ReferenceResult(name, int(s.split), idata, report, manifest,
                           time.perf_counter() - t0,
                           {"tau_s": t_tau, "nuts_s": float(res.wall_time_s)})


def _compact(idata):
    """What a reference file keeps: ``f`` (float32) at the test inputs, ``sample_stats``,
    ``observed_data`` and ``constant_data``. The weights, ``posterior_predictive`` and
    ``log_likelihood`` are left out: the last two follow from ``f`` and the noise in the
    manifest, and together they would triple the file."""
    posterior = idata.posterior.to_dataset()[["f"]].astype(np.float32)
    posterior.attrs = dict(idata.posterior.attrs, f_dtype="float32 (rounding 6e-8 relative, "
                           "far below the Monte Carlo error)")
    groups = {"posterior": posterior}
    for name in ("sample_stats", "observed_data", "constant_data"):
        if name in idata.children:
            groups[name] = idata[name].to_dataset()
    return datatree(groups, attrs=idata.attrs)


def reference_path(out_dir, dataset: str, split: int) -> Path:
    """Where the reference of ``dataset`` / ``split`` lives under ``out_dir``:
    ``<out_dir>/<dataset>/split-<split>.nc`` (its manifest beside it)."""
    return Path(out_dir) / dataset / f"split-{int(split):02d}.nc"


def reference_files(out_dir) -> list[Path]:
    """Every reference file under ``out_dir`` (``<dataset>/split-<k>.nc`` with its manifest
    beside it), sorted by data set and split: what the summary table lists, whichever command
    wrote each file."""
    return sorted(path for path in Path(out_dir).glob("*/split-*.nc")
                  if manifest_path(path).is_file())


def write_reference(result: ReferenceResult, out_dir) -> Path:
    """Save ``result`` as ``reference_path(out_dir, dataset, split)`` with its manifest
    (:func:`~comparisons.reference.reference_file.save_reference`, atomic) and return the path."""
    manifest = dict(result.manifest, wall_time_s=float(result.wall_time_s))
    return save_reference(result.idata, reference_path(out_dir, result.dataset, result.split),
                          manifest=manifest, report=result.report)


def existing_reference(out_dir, settings: ReferenceSettings, *,
                       replace_other_settings: bool = False) -> Path | None:
    """The reference file of ``settings`` under ``out_dir`` if it exists, is intact and was made
    with exactly these settings; ``None`` when it is missing, or damaged (a changed or truncated
    file, an edited manifest: reported in a ``RuntimeWarning``, it is not a result and will be
    recomputed and replaced).

    Args:
        out_dir: the folder of the reference files.
        settings: the settings the caller needs.
        replace_other_settings: return ``None`` (with a warning) for a file made with other
            settings, so that it is replaced; by default such a file is someone's hours of
            sampling and is refused instead.

    Raises:
        ReferenceMismatch: the file was made with other settings (each named) and
            ``replace_other_settings`` is False.
    """
    name = load_split(settings.dataset, settings.split,
                      toy_num_train=settings.toy_num_train).name
    path = reference_path(out_dir, name, settings.split)
    if not path.is_file() and not manifest_path(path).is_file():
        return None
    try:
        load_reference(path, expect={"settings": _recorded_settings(path, settings)})
    except ReferenceMismatch as err:
        if not replace_other_settings:
            raise ReferenceMismatch(f"{err}; pass --replace to overwrite it, or choose another "
                                    "--out") from None
        warnings.warn(f"recomputing {path}: {err}", RuntimeWarning, stacklevel=2)
        return None
    except ReferenceFileError as err:
        # the manifest missing or edited: the file's own copy says what it was made with, so
        # a file of other settings is still refused (not replaced) without replace_other_settings
        saved = saved_manifest(path) if path.is_file() else None
        expected = _recorded_settings(path, settings)
        if (saved is not None and isinstance(saved.get("settings"), dict)
                and not replace_other_settings):
            problems = [f"settings.{k}: expected {v!r}, the file has "
                        f"{saved['settings'].get(k, '<absent>')!r}"
                        for k, v in _json_settings(expected).items()
                        if saved["settings"].get(k, "<absent>") != v]
            if problems:
                raise ReferenceMismatch(
                    f"{err}; the reference file itself was made with other settings "
                    f"({'; '.join(problems)}); pass --replace to overwrite it, or choose "
                    "another --out") from None
        warnings.warn(f"recomputing {path}: {err}", RuntimeWarning, stacklevel=2)
        return None
    return path


def _json_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from the manifest's JSON (tuples as lists)."""
    import json

    return json.loads(json.dumps(settings))


def _recorded_settings(path: Path, settings: ReferenceSettings) -> dict[str, Any]:
    """``settings`` as the manifest of ``path`` should record them: a field the manifest does not
    record (one added to :class:`ReferenceSettings` after the file was made) is left out when
    ``settings`` has it at its default, which is what the file was made with. An unreadable
    manifest gets every field (:func:`load_reference` then reports what is wrong)."""
    import json
    from dataclasses import MISSING, fields

    expected = asdict(settings)
    try:
        recorded = json.loads(manifest_path(path).read_text(encoding="utf-8"))["settings"]
        recorded_keys = set(recorded)
    except (OSError, ValueError, KeyError, TypeError):
        return expected
    for spec in fields(ReferenceSettings):
        default = (spec.default if spec.default is not MISSING
                   else spec.default_factory() if spec.default_factory is not MISSING
                   else MISSING)
        if (spec.name not in recorded_keys and default is not MISSING
                and expected[spec.name] == default):
            del expected[spec.name]
    return expected


def is_converged(path) -> bool:
    """Whether the manifest of the reference file ``path`` records a passed convergence gate."""
    import json

    manifest = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    return bool(manifest["convergence"]["converged"])
