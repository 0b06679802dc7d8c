r"""Reference files: a convergence gate for HMC draws, and checked, atomic reference files.

A reference posterior (e.g. the NUTS draws of :mod:`comparisons.reference.nuts` as the
``DataTree`` of :func:`~comparisons.inference_data.io_nuts.from_nuts`) is only a
reference if its chains converged. :func:`convergence_summary` computes, per test point, the
rank-normalised split :math:`\hat R` and the bulk and tail ESS (Vehtari et al. 2021) of the
predictive ``f`` and counts the divergent transitions; :func:`require_converged` turns a failed
gate into a :class:`ReferenceNotConverged` error, so an unconverged run is never used silently.

:func:`save_reference` writes the draws as compressed NetCDF (h5netcdf, zlib) atomically, with
``<path>.manifest.json`` next to it: the caller's manifest (data set, split, prior length scale,
tau, architecture, sampler settings, ...), the SHA-256 and size of the ``.nc`` file and the
convergence summary. The manifest is bound to its file twice: it carries the SHA-256 of its
own content (``manifest_sha256``), and the ``.nc`` file (covered by ``sha256``) holds a copy of
it in the attributes of the group of the draws. :func:`load_reference` checks both checksums
and the expected settings before it returns the draws, so an edited manifest (a changed
``tau_standardized`` or ``seed``) is refused, naming the keys that differ from the saved copy.
:func:`thin_draws` keeps a bounded number of draws.

Example:
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict({"posterior": {"f": rng.standard_normal((4, 500, 3))},
    ...                      "sample_stats": {"diverging": np.zeros((4, 500), dtype=bool)}})
    >>> report = convergence_summary(idata, thresholds=ConvergenceThresholds(ess_bulk_min=100,
    ...                                                                      ess_tail_min=100))
    >>> report.converged, report.reasons
    (True, [])

Why one module of this size: the reference file: its manifest, writing, reading, checks and the
convergence gate, one file format.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

from comparisons.inference_data.base import datatree
from comparisons.inference_data.netcdf import read_datatree, render_datatree
from vi_dropout.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "MANIFEST_SUFFIX",
    "ConvergenceReport",
    "ConvergenceThresholds",
    "ReferenceFileError",
    "ReferenceMismatch",
    "ReferenceNotConverged",
    "convergence_summary",
    "draws_to_converge",
    "load_reference",
    "MANIFEST_ATTR",
    "manifest_checksum",
    "manifest_path",
    "saved_manifest",
    "require_converged",
    "save_reference",
    "thin_draws",
]

#: the manifest of ``ref.nc`` is ``ref.nc.manifest.json``
MANIFEST_SUFFIX = ".manifest.json"
#: version of the manifest layout (2: bound to its file by ``manifest_sha256`` and a copy in
#: the ``.nc`` file's attributes)
_MANIFEST_FORMAT = 2
#: manifest keys written by :func:`save_reference` (a caller's manifest may not use them)
_RESERVED = ("manifest_format", "file", "sha256", "size_bytes", "convergence",
             "manifest_sha256")
#: attribute of the draws' group that holds the saved manifest (without the file's checksum)
MANIFEST_ATTR = "reference_manifest"
#: groups searched for the predictive variable, in this order
_F_GROUPS = ("posterior", "posterior_predictive")


class ReferenceNotConverged(ValueError):
    """The draws fail the convergence gate (R-hat, ESS or divergences) of a reference."""


class ReferenceFileError(ValueError):
    """A reference file or its manifest is missing, unreadable, or changed since it was saved."""


class ReferenceMismatch(ValueError):
    """A reference file was made with other settings than the ones the caller expects."""


# ------------------------------------------------------------------------ convergence gate
@dataclass(frozen=True)
class ConvergenceThresholds:
    """What a converged reference must satisfy (defaults: Vehtari et al. 2021, no divergences).

    Attributes:
        r_hat_max: largest allowed rank-normalised split R-hat at any test point.
        ess_bulk_min, ess_tail_min: smallest allowed bulk / tail ESS at any test point.
        max_divergences: largest allowed number of divergent transitions (all chains).
    """

    r_hat_max: float = 1.01
    ess_bulk_min: float = 400
    ess_tail_min: float = 400
    max_divergences: int = 0

    def __post_init__(self):
        if not (math.isfinite(self.r_hat_max) and self.r_hat_max >= 1.0):
            raise ValueError(f"r_hat_max must be a finite number >= 1, got {self.r_hat_max}")
        for name in ("ess_bulk_min", "ess_tail_min"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if isinstance(self.max_divergences, bool) or int(self.max_divergences) != \
                self.max_divergences or self.max_divergences < 0:
            raise ValueError(
                f"max_divergences must be an integer >= 0, got {self.max_divergences}")


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _extreme(values: np.ndarray, largest: bool) -> float:
    """Max (or min) of ``values``, NaN if any is not finite (or there are none)."""
    if values.size == 0 or not np.all(np.isfinite(values)):
        return float("nan")
    return float(values.max() if largest else values.min())


@dataclass
class ConvergenceReport:
    """The result of :func:`convergence_summary`.

    Attributes:
        var_name, group: the variable checked and the ``DataTree`` group it was found in.
        num_chains, num_draws: draws per chain and number of chains.
        r_hat, ess_bulk, ess_tail: per test point (the variable's non-chain/draw dims,
            flattened).
        divergences: number of divergent transitions over all chains.
        thresholds: the gate.
        converged: whether every check passed; reasons: one line per failed check.
    """

    var_name: str
    group: str
    num_chains: int
    num_draws: int
    r_hat: np.ndarray = field(repr=False)  # the repr shows the extremes (properties) only
    ess_bulk: np.ndarray = field(repr=False)
    ess_tail: np.ndarray = field(repr=False)
    divergences: int
    thresholds: ConvergenceThresholds
    converged: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def max_r_hat(self) -> float:
        """Largest R-hat over the test points (NaN if any is not finite)."""
        return _extreme(self.r_hat, largest=True)

    @property
    def min_ess_bulk(self) -> float:
        """Smallest bulk ESS over the test points (NaN if any is not finite)."""
        return _extreme(self.ess_bulk, largest=False)

    @property
    def min_ess_tail(self) -> float:
        """Smallest tail ESS over the test points (NaN if any is not finite)."""
        return _extreme(self.ess_tail, largest=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready summary written into a reference manifest (non-finite -> ``None``).

        Example:
            >>> rng = np.random.default_rng(0)
            >>> idata = az.from_dict({"posterior": {"f": rng.standard_normal((2, 50, 2))},
            ...                      "sample_stats": {"diverging": np.zeros((2, 50), dtype=bool)}})
            >>> sorted(convergence_summary(idata).to_dict())[:3]
            ['converged', 'divergences', 'group']
        """
        return {
            "var_name": self.var_name,
            "group": self.group,
            "num_chains": self.num_chains,
            "num_draws": self.num_draws,
            "num_test_points": int(self.r_hat.size),
            "max_r_hat": _finite_or_none(self.max_r_hat),
            "min_ess_bulk": _finite_or_none(self.min_ess_bulk),
            "min_ess_tail": _finite_or_none(self.min_ess_tail),
            "divergences": self.divergences,
            "converged": self.converged,
            "reasons": list(self.reasons),
            "thresholds": asdict(self.thresholds),
        }


def _find_var(idata, var_name: str):
    groups = list(idata.children)
    for group in _F_GROUPS:
        if group in groups and var_name in idata[group].data_vars:
            return group, idata[group][var_name]
    raise ValueError(
        f"convergence_summary: no variable {var_name!r} in the groups "
        f"{', '.join(_F_GROUPS)} (groups present: {', '.join(groups) or 'none'})"
    )


def _ess_reason(kind: str, ess: np.ndarray, minimum: float) -> str | None:
    n = ess.size
    bad_nan = int(np.sum(~np.isfinite(ess)))
    if bad_nan:
        return f"{kind} ESS is not finite at {bad_nan} of {n} test points"
    low = ess < minimum
    if low.any():
        return (f"min {kind} ESS {ess.min():.0f} < {minimum:g} at {int(low.sum())} of {n} "
                f"test points")
    return None


def convergence_summary(idata, var_name: str = "f",
                        thresholds: ConvergenceThresholds | None = None) -> ConvergenceReport:
    """Per-test-point R-hat and bulk/tail ESS of ``var_name`` and the divergences of a run.

    R-hat is ArviZ's rank-normalised split R-hat (``az.rhat``), the ESS ``az.ess`` with
    ``method="bulk"`` and ``"tail"``; each is computed for every element of ``var_name`` (every
    test point, and every output for several outputs). The divergences are the ``True`` entries
    of ``sample_stats.diverging``.

    Args:
        idata: ``DataTree`` with ``var_name`` (dims ``chain, draw, ...``) in its
            ``posterior`` (where :func:`~comparisons.inference_data.io_nuts.from_nuts` puts
            ``f``) or ``posterior_predictive``, and ``sample_stats.diverging``.
        var_name: the variable to check (default the predictive mean function ``f``).
        thresholds: the gate (default :class:`ConvergenceThresholds`).

    Returns:
        A :class:`ConvergenceReport` with ``converged`` and one reason per failed check.

    Raises:
        ValueError: ``var_name`` is in neither group, ``sample_stats.diverging`` is missing, or
            there are fewer than 2 chains or 4 draws per chain.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> f = rng.standard_normal((4, 200, 5)) + np.arange(4)[:, None, None]  # 4 modes
        >>> idata = az.from_dict({"posterior": {"f": f},
        ...                      "sample_stats": {"diverging": np.zeros((4, 200), dtype=bool)}})
        >>> report = convergence_summary(idata)
        >>> report.converged, report.reasons[0].startswith("max R-hat")
        (False, True)
    """
    thresholds = ConvergenceThresholds() if thresholds is None else thresholds
    group, da = _find_var(idata, var_name)
    if "chain" not in da.dims or "draw" not in da.dims:
        raise ValueError(f"convergence_summary: {group}.{var_name} has dims {da.dims}, "
                         f"expected 'chain' and 'draw'")
    num_chains, num_draws = int(da.sizes["chain"]), int(da.sizes["draw"])
    if num_chains < 2:
        raise ValueError(f"convergence_summary: {group}.{var_name} has {num_chains} chain; "
                         f"R-hat needs at least 2 chains")
    if num_draws < 4:
        raise ValueError(f"convergence_summary: {group}.{var_name} has {num_draws} draws per "
                         f"chain; R-hat and ESS need at least 4")
    if "sample_stats" not in idata.children or "diverging" not in idata.sample_stats.data_vars:
        raise ValueError("convergence_summary: no sample_stats.diverging: a reference must "
                         "record its divergent transitions")
    ds = da.to_dataset(name=var_name)
    with np.errstate(divide="ignore", invalid="ignore"):  # constant draws: NaN, reported below
        r_hat = np.asarray(az.rhat(ds)[var_name].values, dtype=np.float64).ravel()
        ess_bulk = np.asarray(az.ess(ds, method="bulk")[var_name].values,
                              dtype=np.float64).ravel()
        ess_tail = np.asarray(az.ess(ds, method="tail")[var_name].values,
                              dtype=np.float64).ravel()
    divergences = int(np.count_nonzero(np.asarray(idata.sample_stats["diverging"].values)))

    reasons = []
    n = r_hat.size
    not_finite = int(np.sum(~np.isfinite(r_hat)))
    high = r_hat > thresholds.r_hat_max
    if not_finite:
        reasons.append(f"R-hat is not finite at {not_finite} of {n} test points")
    elif high.any():
        reasons.append(f"max R-hat {r_hat.max():.3g} > {thresholds.r_hat_max:g} at "
                       f"{int(high.sum())} of {n} test points")
    for kind, ess, minimum in (("bulk", ess_bulk, thresholds.ess_bulk_min),
                               ("tail", ess_tail, thresholds.ess_tail_min)):
        reason = _ess_reason(kind, ess, minimum)
        if reason:
            reasons.append(reason)
    if divergences > thresholds.max_divergences:
        allowed = f" (at most {thresholds.max_divergences} allowed)" \
            if thresholds.max_divergences else ""
        reasons.append(f"{divergences} divergent transition"
                       f"{'' if divergences == 1 else 's'}{allowed}")
    return ConvergenceReport(var_name, group, num_chains, num_draws, r_hat, ess_bulk, ess_tail,
                             divergences, thresholds, not reasons, reasons)


def draws_to_converge(idata, step: int = 50, var_name: str = "f",
                      thresholds: ConvergenceThresholds | None = None) -> int | None:
    """The fewest draws per chain (a multiple of ``step``, first draws of every chain) whose
    :func:`convergence_summary` passes the gate; ``None`` if even all draws fail it.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> idata = az.from_dict({"posterior": {"f": rng.standard_normal((4, 400, 2))},
        ...                      "sample_stats": {"diverging": np.zeros((4, 400), dtype=bool)}})
        >>> draws_to_converge(idata, step=100)  # 4 x 100 i.i.d. draws: ESS about 400
        200
    """
    if isinstance(step, bool) or int(step) != step or step < 4:
        raise ValueError(f"draws_to_converge: step must be an integer >= 4, got {step!r}")
    num_draws = int(idata.posterior.sizes["draw"])
    for k in range(int(step), num_draws + 1, int(step)):
        if convergence_summary(idata.isel(draw=slice(0, k)), var_name, thresholds).converged:
            return k
    return None


def require_converged(report: ConvergenceReport, what: str) -> ConvergenceReport:
    """Raise unless ``report`` passed the gate: an unconverged run is no reference.

    Args:
        report: a :class:`ConvergenceReport`.
        what: names the run in the message (e.g. ``"NUTS reference, boston split 3"``).

    Returns:
        ``report`` (when converged).

    Raises:
        ReferenceNotConverged: naming ``what`` and every reason.

    Example:
        >>> rng = np.random.default_rng(2)
        >>> idata = az.from_dict({"posterior": {"f": rng.standard_normal((2, 50, 2))},
        ...                      "sample_stats": {"diverging": np.ones((2, 50), dtype=bool)}})
        >>> require_converged(convergence_summary(idata), "toy run")
        Traceback (most recent call last):
        ...
        comparisons.reference.reference_file.ReferenceNotConverged: toy run is not a converged reference: min bulk ESS ... < 400 at 2 of 2 test points; min tail ESS ... < 400 at 2 of 2 test points; 100 divergent transitions
    """  # noqa: E501
    if not report.converged:
        raise ReferenceNotConverged(
            f"{what} is not a converged reference: {'; '.join(report.reasons)}")
    return report


# ------------------------------------------------------------------------- reference files
def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest of the reference file ``path``: ``<path>.manifest.json``.

    Example:
        >>> manifest_path("refs/boston-0.nc").name
        'boston-0.nc.manifest.json'
    """
    path = Path(path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON serialisable")


def _json_value(value):
    """``value`` as it reads back from the manifest JSON."""
    return json.loads(json.dumps(value, default=_json_default))


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON without its ``manifest_sha256`` (what
    :func:`save_reference` records there and :func:`load_reference` checks).

    Example:
        >>> len(manifest_checksum({"dataset": "boston", "split": 0}))
        64
    """
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(_json_value(body), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_reference(idata, path: str | os.PathLike, *, manifest: Mapping[str, Any],
                   report: ConvergenceReport | None = None, var_name: str = "f",
                   thresholds: ConvergenceThresholds | None = None) -> Path:
    """Write ``idata`` as compressed NetCDF and its manifest, both atomically.

    The ``.nc`` file (engine h5netcdf, zlib on every numeric variable) is written into a
    temporary folder beside ``path``, then its bytes go through
    :func:`vi_dropout.io.atomic_write_bytes`; ``<path>.manifest.json`` follows (written last,
    so a manifest always describes a complete file). The manifest holds ``manifest`` plus
    ``file`` (the name of the ``.nc``), ``sha256``, ``size_bytes``, ``manifest_format`` and
    ``convergence`` (:meth:`ConvergenceReport.to_dict`). An unconverged run is saved too; its
    manifest says ``"converged": false``.

    Args:
        idata: the reference draws (see :func:`convergence_summary` for what it must hold).
        path: the ``.nc`` file to write (its folder is created if needed).
        manifest: what the draws are (data set, split, prior length scale, tau, architecture,
            sampler settings, ...); JSON-serialisable (numpy scalars and arrays are converted).
        report: the convergence report; default :func:`convergence_summary` of ``idata`` with
            ``var_name`` and ``thresholds``.

    Returns:
        The path of the ``.nc`` file.

    Raises:
        ValueError: ``manifest`` uses a reserved key or is not JSON-serialisable, or the
            convergence summary cannot be computed.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> idata = az.from_dict({"posterior": {"f": rng.standard_normal((2, 50, 3))},
        ...                      "sample_stats": {"diverging": np.zeros((2, 50), dtype=bool)}})
        >>> save_reference(idata, "/tmp/ref.nc", manifest={"tau": 10.0})  # doctest: +SKIP
    """
    path = Path(path)
    clash = sorted(set(manifest) & set(_RESERVED))
    if clash:
        raise ValueError(f"save_reference: the manifest may not set {', '.join(clash)} "
                         f"(written by save_reference)")
    try:
        caller = _json_value(dict(manifest))
    except (TypeError, ValueError) as err:
        raise ValueError(f"save_reference: the manifest is not JSON-serialisable: {err}") from err
    if report is None:
        report = convergence_summary(idata, var_name, thresholds)
    saved = _json_value({**caller, "manifest_format": _MANIFEST_FORMAT, "file": path.name,
                         "convergence": report.to_dict()})
    group = _find_var(idata, var_name)[0]
    idata = idata.copy()  # the copy's group gets the manifest, not the caller's object
    idata[group].attrs[MANIFEST_ATTR] = json.dumps(saved, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = render_datatree(idata, compress=True, folder=path.parent)
    atomic_write_bytes(path, data)
    doc = {**saved, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    doc["manifest_sha256"] = manifest_checksum(doc)
    atomic_write_text(manifest_path(path),
                      json.dumps(doc, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def _differences(key: str, expected, recorded: Mapping[str, Any]) -> list[str]:
    """One line per way ``expected`` differs from ``recorded[key]``; a mapping is compared key by
    key (``settings.samples: expected 4000, the reference has 2000``)."""
    if key not in recorded:
        return [f"{key}: expected {expected!r}, the reference does not record it"]
    value = recorded[key]
    if isinstance(expected, Mapping) and isinstance(value, Mapping):
        lines = [line for sub, exp in expected.items()
                 for line in _differences(sub, exp, value)]
        lines += [f"{sub}: not expected, the reference has {value[sub]!r}"
                  for sub in value if sub not in expected]
        return [f"{key}.{line}" for line in lines]
    if not _same(expected, value):
        return [f"{key}: expected {expected!r}, the reference has {value!r}"]
    return []


def _same(expected, recorded) -> bool:
    expected = _json_value(expected)
    if isinstance(expected, (int, float)) and not isinstance(expected, bool) \
            and isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return math.isclose(expected, recorded, rel_tol=1e-12, abs_tol=0.0) or \
            (math.isnan(expected) and math.isnan(recorded))
    return expected == recorded


def load_reference(path: str | os.PathLike, *, expect: Mapping[str, Any]):
    """Load a reference file after checking its checksum and the settings it was made with.

    Args:
        path: the ``.nc`` file written by :func:`save_reference`.
        expect: manifest key -> the value the caller needs (e.g. ``{"dataset": "boston",
            "split": 3, "prior_length_scale": 0.01}``); numbers compare to a relative 1e-12,
            everything else as it reads back from JSON (tuples as lists).

    Returns:
        ``(idata, manifest)``: the draws (loaded into memory) and the manifest dict.

    Raises:
        ReferenceFileError: the ``.nc`` or its manifest is missing or unreadable, the ``.nc``
            differs from the checksum in the manifest, or the manifest was edited after it
            was saved (its ``manifest_sha256``, or the copy in the ``.nc``, differs; the keys
            that differ from the copy are named).
        ReferenceMismatch: some ``expect`` values differ from the manifest (each is named with
            the expected and the recorded value).

    Example:
        >>> idata, manifest = load_reference("/tmp/ref.nc",
        ...                                  expect={"tau": 10.0})  # doctest: +SKIP
    """
    path = Path(path)
    mpath = manifest_path(path)
    for p, what in ((mpath, "manifest"), (path, "reference file")):
        if not p.is_file():
            raise ReferenceFileError(f"the {what} {p} is missing")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReferenceFileError(f"the manifest {mpath} is unreadable: {err}") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        raise ReferenceFileError(f"the manifest {mpath} records no sha256 of {path.name}")
    try:
        digest = _sha256_file(path)
    except OSError as err:
        raise ReferenceFileError(f"the reference file {path} is unreadable: {err}") from err
    if digest != manifest["sha256"]:
        size = path.stat().st_size
        raise ReferenceFileError(
            f"checksum of {path} differs: the file was changed or truncated (sha256 {digest}, "
            f"{size} bytes; the manifest records {manifest['sha256']}, "
            f"{manifest.get('size_bytes')} bytes)")
    recorded = manifest.get("manifest_sha256")
    if not isinstance(recorded, str):
        raise ReferenceFileError(
            f"the manifest {mpath} records no manifest_sha256: it is not bound to its file "
            "(edited, or written before manifests were checked); make the reference again "
            "with python -m comparisons hmc-reference")
    try:
        idata = read_datatree(path)
    except Exception as err:  # noqa: BLE001 - whatever h5py/xarray raise on a bad file
        raise ReferenceFileError(f"the reference file {path} is unreadable: {err}") from err
    saved = _saved_manifest(idata)
    edited = [] if saved is None else _edited_keys(saved, manifest)
    if manifest_checksum(manifest) != recorded or edited:
        what = ("; ".join(edited) if edited else
                "its content does not match its manifest_sha256")
        raise ReferenceFileError(f"the manifest {mpath} was edited after it was saved ({what}); "
                                 "restore it or make the reference again")
    problems = [line for key, expected in expect.items()
                for line in _differences(key, expected, manifest)]
    if problems:
        raise ReferenceMismatch(f"the reference {path} was made with other settings: "
                                + "; ".join(problems))
    return idata, manifest


def saved_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The copy of the manifest inside the reference file ``path`` (what
    :func:`save_reference` wrote), or ``None`` when the file holds none or cannot be read:
    what the file was made with, even when its manifest is missing.

    Example:
        >>> saved_manifest("/tmp/ref.nc")["settings"]  # doctest: +SKIP
    """
    try:
        idata = read_datatree(path)
    except Exception:  # noqa: BLE001 - an unreadable file holds no manifest we can use
        return None
    return _saved_manifest(idata)


def _saved_manifest(idata) -> dict[str, Any] | None:
    """The manifest copy that :func:`save_reference` put in the draws' group (None in files
    written before the copy existed, whose manifests are bound by their checksum alone)."""
    for group in _F_GROUPS:
        if group in idata.children:
            text = idata[group].attrs.get(MANIFEST_ATTR)
            if isinstance(text, str):
                try:
                    doc = json.loads(text)
                except json.JSONDecodeError:
                    return {"<unreadable saved copy>": text[:40]}
                return doc if isinstance(doc, dict) else {"<saved copy>": doc}
    return None


def _edited_keys(saved: Mapping[str, Any], manifest: Mapping[str, Any],
                 prefix: str = "") -> list[str]:
    """``key: saved 40.0, now 41.0`` for each key of the saved copy that the manifest changed,
    dropped or added, nested keys named in full (``settings.seed: saved 0, now 1``); the file's
    checksum keys are the manifest's own."""
    own = ("sha256", "size_bytes", "manifest_sha256") if not prefix else ()
    out = []
    for k in sorted((set(saved) | set(manifest)) - set(own)):
        a, b = saved.get(k, "<absent>"), manifest.get(k, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _edited_keys(a, b, f"{prefix}{k}.")
        elif _json_value(a) != _json_value(b):
            out.append(f"{prefix}{k}: saved {_short(a)}, now {_short(b)}")
    return out


def _short(value, width: int = 50) -> str:
    text = value if value == "<absent>" else json.dumps(value, sort_keys=True,
                                                        default=_json_default)
    return text if len(text) <= width else text[: width - 3] + "..."


# --------------------------------------------------------------------------------- thinning
def thin_draws(idata, max_draws: int = 4000):
    """Thin every ``chain, draw`` group evenly so that chains x draws <= ``max_draws``.

    Every chain is kept; each keeps every ``k``-th draw (the same ``k`` for all chains of a
    group, the smallest one that fits). Groups without ``chain`` and ``draw`` dims are kept
    whole; a group that already fits is unchanged.

    Args:
        idata: the ``DataTree``.
        max_draws: the largest number of draws over all chains of a group.

    Returns:
        A new ``DataTree``.

    Raises:
        ValueError: ``max_draws`` is smaller than the number of chains of some group.

    Example:
        >>> idata = az.from_dict({"posterior": {"f": np.zeros((4, 1000, 2))},
        ...                      "observed_data": {"y": np.zeros(2)}})
        >>> dict(thin_draws(idata, 1000).posterior.sizes)
        {'chain': 4, 'draw': 250, 'f_dim_0': 2}
    """
    if isinstance(max_draws, bool) or int(max_draws) != max_draws or max_draws < 1:
        raise ValueError(f"thin_draws: max_draws must be a positive integer, got {max_draws}")
    max_draws = int(max_draws)
    groups = {}
    for name in idata.children:
        ds = idata[name].to_dataset()
        if "chain" in ds.dims and "draw" in ds.dims:
            chains, draws = int(ds.sizes["chain"]), int(ds.sizes["draw"])
            per_chain = max_draws // chains
            if per_chain < 1:
                raise ValueError(f"thin_draws: {name} has {chains} chains, more than "
                                 f"max_draws={max_draws} (every chain is kept)")
            if draws > per_chain:
                ds = ds.isel(draw=slice(None, None, math.ceil(draws / per_chain)))
        groups[name] = ds
    return datatree(groups, attrs=idata.attrs)
