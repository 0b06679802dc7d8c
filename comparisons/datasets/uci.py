"""The nine UCI regression benchmarks with their standard train/test splits.

The data ship with the package (``comparisons/datasets/data/<name>.npz`` plus ``uci_manifest.json``,
built by ``comparisons/datasets/data/build_uci_archive.py``) and are read through
``importlib.resources``, so a fresh clone or an installed wheel works offline. Every load
checks the file's SHA-256 against the manifest and refuses a corrupt or missing file (a
:class:`UCIDataError`, an ``OSError``: the command line reports it in one line, exit code 2).
The environment variable ``COMPARISONS_UCI_DATA_DIR`` points the loaders at another folder of
archives and manifest (e.g. a test's copy); the manifest is read when a data set is looked up,
not on import.

Canonical names (``UCI_DATASETS``) and accepted aliases (``UCI_ALIASES``, case-insensitive):

=============================  ==============================================================
canonical name                 aliases
=============================  ==============================================================
bostonHousing                  boston, boston-housing, housing
concrete                       concrete-strength
energy                         energy-efficiency
kin8nm                         kin8
naval-propulsion-plant         naval, naval-propulsion
power-plant                    power, ccpp
protein-tertiary-structure     protein, protein-structure
wine-quality-red               wine, wine-red, red-wine
yacht                          yacht-hydrodynamics
=============================  ==============================================================

Example:
    >>> split = load_uci("boston", 0)
    >>> split.x_train.shape, split.y_train.shape, split.x_test.shape
    ((455, 13), (455, 1), (51, 13))
    >>> validation_split(split).x_test.shape  # last 20% of the training rows
    (91, 13)
    >>> z = standardize(split)  # training mean/std of x and y

Why one module of this size: the UCI data sets: their manifest, loading and checks of the
packaged files, the standard splits and the standardisation, which every protocol reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import numbers
import os
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = [
    "UCI_DATASETS",
    "UCI_ALIASES",
    "UCISplit",
    "UCIInfo",
    "StandardizedSplit",
    "UCIDataError",
    "resolve_uci_name",
    "uci_info",
    "load_uci",
    "check_uci_archives",
    "own_datasets",
    "register_dataset",
    "standardize",
    "validation_split",
]

UCI_DATASETS: tuple[str, ...] = (
    "bostonHousing",
    "concrete",
    "energy",
    "kin8nm",
    "naval-propulsion-plant",
    "power-plant",
    "protein-tertiary-structure",
    "wine-quality-red",
    "yacht",
)

UCI_ALIASES: dict[str, str] = {
    "boston": "bostonHousing",
    "boston-housing": "bostonHousing",
    "housing": "bostonHousing",
    "concrete-strength": "concrete",
    "energy-efficiency": "energy",
    "kin8": "kin8nm",
    "naval": "naval-propulsion-plant",
    "naval-propulsion": "naval-propulsion-plant",
    "power": "power-plant",
    "ccpp": "power-plant",
    "protein": "protein-tertiary-structure",
    "protein-structure": "protein-tertiary-structure",
    "wine": "wine-quality-red",
    "wine-red": "wine-quality-red",
    "red-wine": "wine-quality-red",
    "yacht-hydrodynamics": "yacht",
}

_MANIFEST = "uci_manifest.json"
#: environment variable naming another folder of archives and manifest (default: the package's)
DATA_DIR_ENV = "COMPARISONS_UCI_DATA_DIR"
#: the keys of each data set's entry in the manifest
_ENTRY_KEYS = ("file", "sha256", "rows", "n_features", "n_splits", "n_hidden", "n_epochs",
               "dropout_rates", "tau_values", "train_sizes", "test_sizes")
_REBUILD_HINT = (
    "Restore it with `git checkout -- comparisons/datasets/data` (or reinstall the package), or rebuild "
    "the archives with `python comparisons/datasets/data/build_uci_archive.py --source <uci folder>`."
)

DataDir = str | PathLike | Traversable

#: data sets of your own (:mod:`comparisons.datasets.own_data`): name -> (manifest entry, arrays)
_OWN: dict[str, tuple[dict, dict[str, np.ndarray]]] = {}


def register_dataset(name: str, arrays: dict[str, np.ndarray], *, sha256: str,
                     source: str = "") -> None:
    """Register a data set of your own in the archive layout (``data``, ``features``,
    ``target``, ``train_K`` / ``test_K``, ``n_splits``, ``n_hidden``, ``n_epochs``,
    ``dropout_rates``, ``tau_values``); :func:`comparisons.datasets.own_data.load_dataset_file`
    builds it from a file. Registering the same name again with the same data is a no-op; from
    the same file with new contents, it replaces the old data (a results folder made with the old
    file refuses the new one: ``uci`` records each file's SHA-256 in its settings).

    Raises:
        ValueError: ``name`` is a standard UCI name or alias, or registered from another file.
    """
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if name in UCI_DATASETS or key in UCI_ALIASES or key in (n.lower() for n in UCI_DATASETS):
        raise ValueError(f"data set name {name!r} is a standard UCI data set; choose another")
    old = _OWN.get(name)
    if old is not None and old[0]["sha256"] != sha256 and old[0]["source"] != source:
        raise ValueError(f"data set {name!r} is already registered from another file "
                         f"({old[0]['source']}); choose another name")
    n_splits = int(arrays["n_splits"])
    entry = {"file": source, "source": source, "sha256": sha256,
             "rows": int(arrays["data"].shape[0]), "n_features": int(len(arrays["features"])),
             "n_splits": n_splits, "n_hidden": int(arrays["n_hidden"]),
             "n_epochs": int(arrays["n_epochs"]),
             "dropout_rates": [float(v) for v in arrays["dropout_rates"]],
             "tau_values": [float(v) for v in arrays["tau_values"]],
             "train_sizes": [int(len(arrays[f"train_{k}"])) for k in range(n_splits)],
             "test_sizes": [int(len(arrays[f"test_{k}"])) for k in range(n_splits)]}
    _OWN[name] = (entry, dict(arrays))


def own_datasets() -> dict[str, str]:
    """The registered data sets of your own: ``{name: sha256 of their file}``."""
    return {name: entry["sha256"] for name, (entry, _) in _OWN.items()}


class UCIDataError(RuntimeError, OSError):
    """A packaged UCI archive or its manifest is missing, corrupt or inconsistent.

    Also an ``OSError`` (an unusable file, not a bug): the command line reports it as one line
    ``error: ...`` and exit code 2 (:func:`vi_dropout.cli.run_reporting_errors`).
    """


@dataclass(frozen=True, eq=False)
class UCISplit:
    """One train/test split of a UCI data set (arrays are read-only float64).

    Attributes:
        name: canonical data set name.
        split: split index, 0 .. n_splits - 1.
        x_train: inputs, shape (n_train, n_features).
        y_train: targets, shape (n_train, 1).
        x_test: inputs, shape (n_test, n_features).
        y_test: targets, shape (n_test, 1).
        n_hidden: hidden units used in the published experiments (50; 100 for protein).
        n_epochs: base number of epochs (40; 20 for protein).
        dropout_rates: dropout rates of the published grid.
        tau_values: model precisions of the published grid (target scale).
        n_splits: number of standard splits of this data set.
        holdout: ``"test"`` for a standard split, ``"validation"`` when ``x_test`` / ``y_test``
            hold the validation rows made by :func:`validation_split`.

    Example:
        >>> s = load_uci("yacht", 3)
        >>> s.x_train.shape, s.y_test.shape
        ((277, 6), (31, 1))
    """

    name: str
    split: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_hidden: int
    n_epochs: int
    dropout_rates: tuple[float, ...]
    tau_values: tuple[float, ...]
    n_splits: int
    holdout: str = "test"

    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return int(self.x_train.shape[1])


@dataclass(frozen=True)
class UCIInfo:
    """Metadata of one packaged UCI data set (from the manifest; no data are loaded).

    Attributes:
        name: canonical name.
        file: archive file name inside ``comparisons/datasets/data``.
        sha256: expected SHA-256 of the archive.
        rows: number of examples.
        n_features: number of input columns.
        n_splits: number of standard splits.
        n_hidden: hidden units of the published experiments.
        n_epochs: base epochs of the published experiments.
        dropout_rates: dropout grid.
        tau_values: tau grid.
        train_sizes: training rows per split.
        test_sizes: test rows per split.

    Example:
        >>> uci_info("protein").n_splits
        5
    """

    name: str
    file: str
    sha256: str
    rows: int
    n_features: int
    n_splits: int
    n_hidden: int
    n_epochs: int
    dropout_rates: tuple[float, ...]
    tau_values: tuple[float, ...]
    train_sizes: tuple[int, ...]
    test_sizes: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class StandardizedSplit:
    """A split standardised with its training statistics (as in the published code).

    ``x_* = (x - x_mean) / x_std`` and ``y_* = (y - y_mean) / y_std``, with population standard
    deviations (ddof=0) and the std of a constant input column replaced by 1. Map predictions
    back with ``y_pred * y_std + y_mean``.

    Attributes:
        x_train: shape (n_train, d).
        y_train: shape (n_train, 1).
        x_test: shape (n_test, d).
        y_test: shape (n_test, 1).
        x_mean: shape (d,).
        x_std: shape (d,).
        y_mean: scalar training mean of y.
        y_std: scalar training std of y.
        source: the split these came from.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    source: UCISplit


def resolve_uci_name(name: str) -> str:
    """Map a data set name or alias (case-insensitive) to its canonical name.

    Args:
        name: e.g. ``"bostonHousing"``, ``"boston"``, ``"Wine"``.

    Returns:
        The canonical name, one of ``UCI_DATASETS``.

    Raises:
        ValueError: unknown name; the message lists the valid names and aliases.

    Example:
        >>> resolve_uci_name("naval")
        'naval-propulsion-plant'
    """
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a string, got {type(name).__name__}")
    if name in UCI_DATASETS or name in _OWN:
        return name
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    for canonical in UCI_DATASETS:
        if canonical.lower() == key:
            return canonical
    if key in UCI_ALIASES:
        return UCI_ALIASES[key]
    own = f"; yours: {', '.join(_OWN)}" if _OWN else ""
    raise ValueError(
        f"unknown UCI data set {name!r}; valid names: {', '.join(UCI_DATASETS)} "
        f"(aliases: {', '.join(sorted(UCI_ALIASES))}){own}"
    )


def _data_root(data_dir: DataDir | None) -> Traversable | Path:
    if data_dir is None:
        if os.environ.get(DATA_DIR_ENV):
            return Path(os.environ[DATA_DIR_ENV])
        return files("comparisons.datasets.data")
    if isinstance(data_dir, str | PathLike):
        return Path(data_dir)
    return data_dir


def _read_manifest(root: Traversable | Path) -> dict:
    """The manifest's ``datasets`` (name -> entry), its form checked: a :class:`UCIDataError`
    names the file and what is wrong with it."""
    entry = root / _MANIFEST
    if not entry.is_file():
        raise UCIDataError(f"UCI manifest not found: {entry}. {_REBUILD_HINT}")
    try:
        manifest = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UCIDataError(f"UCI manifest {entry} is unreadable ({type(exc).__name__}: {exc}). "
                           f"{_REBUILD_HINT}") from exc
    datasets = manifest.get("datasets") if isinstance(manifest, dict) else None
    if not isinstance(datasets, dict):
        raise UCIDataError(f"UCI manifest {entry} is malformed: it must be a JSON object with a "
                           f"'datasets' object (name -> entry). {_REBUILD_HINT}")
    for name, e in datasets.items():
        missing = [k for k in _ENTRY_KEYS if k not in e] if isinstance(e, dict) else _ENTRY_KEYS
        if missing:
            raise UCIDataError(f"UCI manifest {entry} is malformed: the entry of {name!r} lacks "
                               f"{', '.join(missing)}. {_REBUILD_HINT}")
    return datasets


def _entry(name: str, data_dir: DataDir | None) -> tuple[str, dict, Traversable | Path]:
    canonical = resolve_uci_name(name)
    if canonical in _OWN:
        return canonical, _OWN[canonical][0], None
    root = _data_root(data_dir)
    datasets = _read_manifest(root)
    if canonical not in datasets:
        raise UCIDataError(f"{canonical!r} is not listed in {root / _MANIFEST}. {_REBUILD_HINT}")
    return canonical, datasets[canonical], root


def check_uci_archives(names, data_dir: DataDir | None = None) -> None:
    """Check, before any work, that the archives of the data sets ``names`` (names or aliases)
    are listed in the manifest, present and match its SHA-256.

    Raises:
        ValueError: an unknown name.
        UCIDataError: the manifest or an archive missing or corrupt (one message naming the
            file and what is wrong).

    Example:
        >>> check_uci_archives(["yacht", "boston"])
    """
    for name in dict.fromkeys(names):
        canonical, entry, root = _entry(name, data_dir)
        _verified_bytes(canonical, entry, root)


def uci_info(name: str, data_dir: DataDir | None = None) -> UCIInfo:
    """Metadata of a data set, read from the manifest.

    Args:
        name: canonical name or alias.
        data_dir: folder with the archives and manifest; default the packaged
            ``comparisons/datasets/data``.

    Returns:
        A :class:`UCIInfo`.

    Example:
        >>> info = uci_info("boston")
        >>> info.rows, info.n_features, info.n_splits, info.train_sizes[0]
        (506, 13, 20, 455)
    """
    canonical, e, _ = _entry(name, data_dir)
    return UCIInfo(
        name=canonical,
        file=e["file"],
        sha256=e["sha256"],
        rows=int(e["rows"]),
        n_features=int(e["n_features"]),
        n_splits=int(e["n_splits"]),
        n_hidden=int(e["n_hidden"]),
        n_epochs=int(e["n_epochs"]),
        dropout_rates=tuple(float(v) for v in e["dropout_rates"]),
        tau_values=tuple(float(v) for v in e["tau_values"]),
        train_sizes=tuple(int(v) for v in e["train_sizes"]),
        test_sizes=tuple(int(v) for v in e["test_sizes"]),
    )


def _check_split(split: object, canonical: str, n_splits: int) -> int:
    if isinstance(split, bool) or not isinstance(split, numbers.Integral):
        raise TypeError(
            f"split must be an integer in 0..{n_splits - 1} for {canonical}, "
            f"got {split!r} ({type(split).__name__})"
        )
    k = int(split)
    if not 0 <= k < n_splits:
        raise ValueError(
            f"split {k} out of range for {canonical}: valid splits are 0..{n_splits - 1} "
            f"({n_splits} splits)"
        )
    return k


def _verified_bytes(canonical: str, entry: dict, root: Traversable | Path) -> bytes:
    if canonical in _OWN:  # read and hashed when it was registered
        return b""
    path = root / entry["file"]
    expected = entry["sha256"]
    if not path.is_file():
        raise UCIDataError(
            f"UCI archive for {canonical} is missing: {path} (expected SHA-256 {expected}). "
            f"{_REBUILD_HINT}"
        )
    blob = path.read_bytes()
    actual = hashlib.sha256(blob).hexdigest()
    if actual != expected:
        raise UCIDataError(
            f"UCI archive for {canonical} is corrupt: {path} has SHA-256 {actual}, expected "
            f"{expected}. {_REBUILD_HINT}"
        )
    return blob


def _load_verified(canonical: str, entry: dict, root: Traversable | Path) -> dict[str, np.ndarray]:
    if canonical in _OWN:
        return _OWN[canonical][1]
    # Parse the bytes that were hashed (no second read of the file).
    blob = _verified_bytes(canonical, entry, root)
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def load_uci(name: str, split: int, data_dir: DataDir | None = None) -> UCISplit:
    """Load one standard train/test split of a UCI regression data set.

    Args:
        name: canonical name (see ``UCI_DATASETS``) or alias (``"boston"``, ``"wine"``, ...).
        split: split index, ``0 .. n_splits - 1`` (20 splits; 5 for protein).
        data_dir: folder with the ``.npz`` archives and ``uci_manifest.json``; default the
            packaged ``comparisons/datasets/data`` (through ``importlib.resources``).

    Returns:
        A :class:`UCISplit` with read-only float64 arrays: ``x_train`` (n_train, d),
        ``y_train`` (n_train, 1), ``x_test`` (n_test, d), ``y_test`` (n_test, 1), and the
        published hyper-parameters.

    Raises:
        ValueError: unknown name (lists the valid names) or split out of range.
        TypeError: non-integer split.
        UCIDataError: archive or manifest missing, or archive SHA-256 mismatch.

    Example:
        >>> s = load_uci("concrete", 0)
        >>> s.x_train.shape, s.x_test.shape, s.n_splits
        ((927, 8), (103, 8), 20)
    """
    canonical, entry, root = _entry(name, data_dir)
    k = _check_split(split, canonical, int(entry["n_splits"]))
    arrays = _load_verified(canonical, entry, root)
    data = np.asarray(arrays["data"], dtype=np.float64)
    features = arrays["features"].astype(np.intp)
    target = arrays["target"].astype(np.intp)
    train = arrays[f"train_{k}"].astype(np.intp)
    test = arrays[f"test_{k}"].astype(np.intp)

    def ro(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.float64)
        a.setflags(write=False)
        return a

    return UCISplit(
        name=canonical,
        split=k,
        x_train=ro(data[np.ix_(train, features)]),
        y_train=ro(data[np.ix_(train, target[:1])]),
        x_test=ro(data[np.ix_(test, features)]),
        y_test=ro(data[np.ix_(test, target[:1])]),
        n_hidden=int(arrays["n_hidden"]),
        n_epochs=int(arrays["n_epochs"]),
        dropout_rates=tuple(float(v) for v in arrays["dropout_rates"]),
        tau_values=tuple(float(v) for v in arrays["tau_values"]),
        n_splits=int(arrays["n_splits"]),
    )


def standardize(split: UCISplit) -> StandardizedSplit:
    """Standardise inputs and targets with the training split's mean and std.

    As in the published MC dropout code: population std (ddof=0) per input column, a zero
    std (constant column) replaced by 1; the target uses its scalar training mean and std.

    Args:
        split: a :class:`UCISplit` (a standard split or one from :func:`validation_split`).

    Returns:
        A :class:`StandardizedSplit`; ``x_mean``/``x_std`` have shape (d,), ``y_mean``/``y_std``
        are floats.

    Example:
        >>> z = standardize(load_uci("yacht", 0))
        >>> bool(abs(z.x_train.mean(0)).max() < 1e-12), round(float(z.y_train.std()), 6)
        (True, 1.0)
    """
    x_mean = split.x_train.mean(axis=0)
    x_std = split.x_train.std(axis=0)
    x_std = np.where(x_std == 0.0, 1.0, x_std)
    y_mean = float(split.y_train.mean())
    y_std = float(split.y_train.std())
    if y_std == 0.0:
        y_std = 1.0
    return StandardizedSplit(
        x_train=(split.x_train - x_mean) / x_std,
        y_train=(split.y_train - y_mean) / y_std,
        x_test=(split.x_test - x_mean) / x_std,
        y_test=(split.y_test - y_mean) / y_std,
        x_mean=x_mean,
        x_std=x_std,
        y_mean=y_mean,
        y_std=y_std,
        source=split,
    )


def validation_split(split: UCISplit, fraction: float = 0.2) -> UCISplit:
    """Hold out the LAST ``fraction`` of the training rows as a validation set.

    The published protocol keeps the first ``int(0.8 * n_train)`` rows for training and
    validates on the rest (no shuffling). The test rows are not used.

    Args:
        split: a standard :class:`UCISplit`.
        fraction: share of training rows held out, in (0, 1).

    Returns:
        A :class:`UCISplit` whose ``x_train``/``y_train`` are the first rows and whose
        ``x_test``/``y_test`` are the held-out last rows (``holdout == "validation"``).

    Example:
        >>> v = validation_split(load_uci("boston", 0))
        >>> v.x_train.shape[0], v.x_test.shape[0]
        (364, 91)
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"fraction must be a number in (0, 1), got {fraction!r}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = split.x_train.shape[0]
    n_fit = int((1.0 - float(fraction)) * n)
    if n_fit < 1 or n_fit >= n:
        raise ValueError(f"fraction {fraction} leaves an empty part of {n} training rows")
    return UCISplit(
        name=split.name,
        split=split.split,
        x_train=split.x_train[:n_fit],
        y_train=split.y_train[:n_fit],
        x_test=split.x_train[n_fit:],
        y_test=split.y_train[n_fit:],
        n_hidden=split.n_hidden,
        n_epochs=split.n_epochs,
        dropout_rates=split.dropout_rates,
        tau_values=split.tau_values,
        n_splits=split.n_splits,
        holdout="validation",
    )
