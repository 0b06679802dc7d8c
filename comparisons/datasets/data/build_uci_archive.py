"""Convert the UCI regression benchmark folders into the compressed archives shipped here.

One-off, reproducible conversion: run it once when the source folders change and commit the
output. For every data set folder (``data.txt``, ``index_features.txt``, ``index_target.txt``,
``index_train_K.txt`` / ``index_test_K.txt``, ``n_splits.txt``, ``n_hidden.txt``,
``n_epochs.txt``, ``dropout_rates.txt``, ``tau_values.txt``) it writes ``<name>.npz`` holding

- ``data``: float64, shape (rows, columns), the table exactly as ``np.loadtxt`` parses it;
- ``features`` / ``target``: int64 column indices (0-based);
- ``train_K`` / ``test_K``: 0-based row indices of split K, stored as uint16 when every row
  index fits (all nine sets do), otherwise int64;
- ``n_splits``, ``n_hidden``, ``n_epochs`` (int64 scalars), ``dropout_rates``, ``tau_values``
  (float64 vectors),

and ``uci_manifest.json`` with each file's SHA-256, rows, columns, n_splits and split sizes.
The archives are written with fixed zip timestamps, so re-running on the same sources gives
byte-identical files (and hashes).

Usage::

    python comparisons/datasets/data/build_uci_archive.py --source /work/shared/data/uci
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "read_folder", "write_npz", "build", "main"]

DATASETS = (
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

FORMAT_VERSION = 1
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def _ints(path: Path) -> np.ndarray:
    values = np.atleast_1d(np.loadtxt(path, dtype=np.float64))
    ints = values.astype(np.int64)
    if not np.array_equal(values, ints):
        raise ValueError(f"{path}: expected integers, got non-integer values")
    return ints


def _scalar_int(path: Path) -> int:
    values = _ints(path)
    if values.size != 1:
        raise ValueError(f"{path}: expected one integer, got {values.size} values")
    return int(values[0])


def read_folder(folder: Path) -> dict[str, np.ndarray]:
    """Read one data set folder and check it.

    Args:
        folder: the data set's folder (e.g. ``.../uci/yacht``).

    Returns:
        A dict of arrays with the keys listed in the module docstring.

    Raises:
        ValueError: on inconsistent content (index out of range, overlapping or incomplete
            splits, NaNs in the data).

    Example:
        >>> arrays = read_folder(Path("/work/shared/data/uci/yacht"))  # doctest: +SKIP
        >>> arrays["data"].shape  # doctest: +SKIP
        (308, 7)
    """
    data = np.loadtxt(folder / "data.txt", dtype=np.float64, ndmin=2)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{folder}: data.txt holds non-finite values")
    rows, cols = data.shape
    features = _ints(folder / "index_features.txt")
    target = _ints(folder / "index_target.txt")
    for name, idx in (("features", features), ("target", target)):
        if idx.min() < 0 or idx.max() >= cols:
            raise ValueError(f"{folder}: {name} column index out of range 0..{cols - 1}")
    n_splits = _scalar_int(folder / "n_splits.txt")
    index_dtype = np.uint16 if rows <= np.iinfo(np.uint16).max + 1 else np.int64
    out: dict[str, np.ndarray] = {
        "format_version": np.int64(FORMAT_VERSION),
        "data": data,
        "features": features,
        "target": target,
        "n_splits": np.int64(n_splits),
        "n_hidden": np.int64(_scalar_int(folder / "n_hidden.txt")),
        "n_epochs": np.int64(_scalar_int(folder / "n_epochs.txt")),
        "dropout_rates": np.atleast_1d(np.loadtxt(folder / "dropout_rates.txt")),
        "tau_values": np.atleast_1d(np.loadtxt(folder / "tau_values.txt")),
    }
    for k in range(n_splits):
        train = _ints(folder / f"index_train_{k}.txt")
        test = _ints(folder / f"index_test_{k}.txt")
        both = np.concatenate([train, test])
        if both.min() < 0 or both.max() >= rows:
            raise ValueError(f"{folder}: split {k} has a row index outside 0..{rows - 1}")
        if np.unique(both).size != rows or both.size != rows:
            raise ValueError(f"{folder}: split {k} train/test overlap or do not cover all rows")
        out[f"train_{k}"] = train.astype(index_dtype)
        out[f"test_{k}"] = test.astype(index_dtype)
    return out


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a deflate-compressed ``.npz`` with fixed timestamps (reproducible).

    Args:
        path: output file.
        arrays: name -> array; each becomes ``<name>.npy`` inside the zip.

    Example:
        >>> write_npz(Path("/tmp/x.npz"), {"a": np.arange(3)})  # doctest: +SKIP
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    path.write_bytes(buffer.getvalue())


def build(source: Path, dest: Path) -> dict:
    """Convert every data set under ``source`` into ``dest`` and write the manifest.

    Args:
        source: folder holding one sub-folder per data set.
        dest: output folder (normally ``comparisons/datasets/data``).

    Returns:
        The manifest written to ``dest / "uci_manifest.json"``.

    Example:
        >>> build(Path("/work/shared/data/uci"), Path("comparisons/datasets/data"))  # doctest: +SKIP
    """
    manifest: dict = {
        "format_version": FORMAT_VERSION,
        "description": "UCI regression benchmarks with the standard splits "
        "(Hernandez-Lobato & Adams 2015; Gal & Ghahramani 2016). "
        "Built by comparisons/datasets/data/build_uci_archive.py.",
        "datasets": {},
    }
    for name in DATASETS:
        arrays = read_folder(source / name)
        path = dest / f"{name}.npz"
        write_npz(path, arrays)
        blob = path.read_bytes()
        n_splits = int(arrays["n_splits"])
        manifest["datasets"][name] = {
            "file": path.name,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob),
            "source_sha256": hashlib.sha256((source / name / "data.txt").read_bytes()).hexdigest(),
            "rows": int(arrays["data"].shape[0]),
            "columns": int(arrays["data"].shape[1]),
            "n_features": int(arrays["features"].size),
            "n_splits": n_splits,
            "n_hidden": int(arrays["n_hidden"]),
            "n_epochs": int(arrays["n_epochs"]),
            "dropout_rates": [float(v) for v in arrays["dropout_rates"]],
            "tau_values": [float(v) for v in arrays["tau_values"]],
            "train_sizes": [int(arrays[f"train_{k}"].size) for k in range(n_splits)],
            "test_sizes": [int(arrays[f"test_{k}"].size) for k in range(n_splits)],
        }
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    (dest / "uci_manifest.json").write_text(text, encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data/uci"))
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    manifest = build(args.source, args.dest)
    total = sum(entry["bytes"] for entry in manifest["datasets"].values())
    for name, entry in manifest["datasets"].items():
        print(f"{name:28s} {entry['rows']:6d} x {entry['columns']:2d}  "
              f"{entry['n_splits']:2d} splits  {entry['bytes'] / 1e6:6.2f} MB")
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
