"""Append-only, crash-safe store of tidy result records, one JSON file per finished cell.

Layout under the output folder ``out``::

    out/cells/<slug>-<hash>.json      one finished cell: {"cell_id", "written_at", "records"}
    out/failures/<slug>-<hash>.json   one failed cell (removed when the cell later succeeds)
    out/failures.json                 all current failures (rewritten after each change)
    out/records.csv, records.json     written by :meth:`ResultsStore.export`

Every file is written atomically: to a temporary file in the same folder, flushed, fsync'ed,
then ``os.replace``'d onto its final name (and the folder fsync'ed). A run killed at any
moment therefore leaves each cell either complete or absent, never partial; re-running skips
the complete ones, and since a cell has exactly one file there are no duplicated rows.

A record is a dict with at least ``dataset``, ``method``, ``split``, ``metric`` and ``value``
(optional fields such as ``config``, ``epochs_multiplier`` or ``wall_time_s`` are kept).

Example:
    >>> store = ResultsStore("/tmp/run")  # doctest: +SKIP
    >>> cid = make_cell_id("yacht", 0, {"p": 0.05})  # doctest: +SKIP
    >>> if not store.is_done(cid):  # doctest: +SKIP
    ...     store.write_cell(cid, [{"dataset": "yacht", "method": "mc", "split": 0,
    ...                             "metric": "rmse", "value": 0.9}])
    >>> store.load_records()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "REQUIRED_FIELDS",
    "ResultsStore",
    "make_cell_id",
    "config_hash",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_savefig",
    "validate_records",
]

REQUIRED_FIELDS: tuple[str, ...] = ("dataset", "method", "split", "metric", "value")
_TMP_PREFIX = ".tmp-"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, replace).

    The file is created with mode 0644; its folder is created if needed. Returns the path.

    Example:
        >>> atomic_write_bytes("/tmp/x.bin", b"abc")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`.

    Example:
        >>> atomic_write_text("/tmp/x.json", "{}")  # doctest: +SKIP
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savefig(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Save a matplotlib figure atomically (rendered in memory, then :func:`atomic_write_bytes`).

    ``savefig_kwargs`` go to ``fig.savefig`` (e.g. ``dpi``); the format follows the suffix.
    """
    import io

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", **savefig_kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and other simple types without importing numpy here
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"record value of type {type(obj).__name__} is not JSON serialisable")


def config_hash(config: Mapping[str, Any] | None, length: int = 12) -> str:
    """A stable short hash of a configuration mapping (key order does not matter).

    Args:
        config: JSON-serialisable mapping (or None for an empty config).
        length: hex digits kept.

    Returns:
        Hex string of ``length`` characters.

    Example:
        >>> config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
        True
    """
    text = json.dumps(dict(config or {}), sort_keys=True, default=_json_default,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def make_cell_id(dataset: str, split: int, config: Mapping[str, Any] | None = None,
                 method: str | None = None) -> str:
    """Stable identifier of one experiment cell: ``dataset/method/split-KK/<config hash>``.

    Args:
        dataset: data set name.
        split: split index.
        config: configuration mapping (hashed; key order irrelevant).
        method: optional method name.

    Returns:
        The cell id string.

    Example:
        >>> make_cell_id("yacht", 3, {"epochs_multiplier": 1}, method="mc_dropout")
        'yacht/mc_dropout/split-03/2ea7d43f27f8'
    """
    parts = [str(dataset)] + ([str(method)] if method is not None else [])
    parts += [f"split-{int(split):02d}", config_hash(config)]
    return "/".join(parts)


def validate_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check and copy records: a list of dicts with the required fields and a numeric value.

    Args:
        records: iterable of mappings.

    Returns:
        A list of plain dicts (copies).

    Raises:
        TypeError: not an iterable of mappings, or a non-numeric ``value``.
        ValueError: a required field is missing.

    Example:
        >>> validate_records([{"dataset": "d", "method": "m", "split": 0, "metric": "rmse",
        ...                    "value": 1.0}])[0]["value"]
        1.0
    """
    if isinstance(records, Mapping) or isinstance(records, str | bytes):
        raise TypeError("records must be a list of dicts, got a single mapping or string")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise TypeError(f"record {i} is a {type(rec).__name__}, expected a dict")
        missing = [f for f in REQUIRED_FIELDS if f not in rec]
        if missing:
            raise ValueError(f"record {i} lacks required field(s) {missing}: {dict(rec)}")
        value = rec["value"]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"record {i}: value must be a real number, got {value!r}")
        row = dict(rec)
        row["value"] = float(value)
        out.append(row)
    return out


class ResultsStore:
    """Append-only, crash-safe results store under a folder (see the module docstring).

    Args:
        out: output folder (created if missing).

    Example:
        >>> store = ResultsStore("/tmp/run")  # doctest: +SKIP
        >>> store.write_cell("c1", [{"dataset": "d", "method": "m", "split": 0,
        ...                          "metric": "rmse", "value": 1.0}])  # doctest: +SKIP
        >>> store.is_done("c1")  # doctest: +SKIP
        True
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.cells_dir = self.out / "cells"
        self.failures_dir = self.out / "failures"
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        self.failures_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.out)!r})"

    # ---------------------------------------------------------------- cell files
    @staticmethod
    def _filename(cell_id: str) -> str:
        if not isinstance(cell_id, str) or not cell_id:
            raise TypeError(f"cell_id must be a non-empty string, got {cell_id!r}")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", cell_id).strip("._")[:80] or "cell"
        digest = hashlib.sha256(cell_id.encode("utf-8")).hexdigest()[:16]
        return f"{slug}-{digest}.json"

    def cell_path(self, cell_id: str) -> Path:
        """Path of the file that holds ``cell_id`` once finished."""
        return self.cells_dir / self._filename(cell_id)

    def is_done(self, cell_id: str) -> bool:
        """Whether ``cell_id`` has been written (its file exists)."""
        return self.cell_path(cell_id).is_file()

    def done_cells(self) -> set[str]:
        """The ids of all finished cells."""
        return {doc["cell_id"] for doc in self._iter_cell_docs()}

    def write_cell(self, cell_id: str, records: Iterable[Mapping[str, Any]],
                   overwrite: bool = False) -> Path:
        """Atomically record a finished cell and its records.

        Args:
            cell_id: stable id (e.g. from :func:`make_cell_id`).
            records: list of record dicts (see :func:`validate_records`); may be empty.
            overwrite: replace an existing cell (default: refuse, the store is append-only).

        Returns:
            The cell's file path.

        Raises:
            FileExistsError: the cell is already done and ``overwrite`` is False.
        """
        rows = validate_records(records)
        path = self.cell_path(cell_id)
        if path.exists() and not overwrite:
            raise FileExistsError(f"cell {cell_id!r} is already recorded in {path}")
        doc = {"cell_id": cell_id, "written_at": time.time(), "records": rows}
        atomic_write_text(path, json.dumps(doc, default=_json_default, allow_nan=True))
        self.clear_failure(cell_id)
        return path

    def _iter_cell_docs(self) -> Iterable[dict[str, Any]]:
        for path in sorted(self.cells_dir.glob("*.json")):
            if path.name.startswith(_TMP_PREFIX):
                continue
            with open(path, encoding="utf-8") as fh:
                yield json.load(fh)

    def load_records(self) -> pd.DataFrame:
        """All records of all finished cells as a tidy DataFrame (one row per record).

        Returns:
            DataFrame with a ``cell_id`` column, the required fields and any optional ones,
            sorted by cell id (stable across runs). Empty (with the required columns) when
            nothing is recorded.
        """
        rows = []
        for doc in self._iter_cell_docs():
            for rec in doc["records"]:
                rows.append({"cell_id": doc["cell_id"], **rec})
        if not rows:
            return pd.DataFrame(columns=["cell_id", *REQUIRED_FIELDS])
        df = pd.DataFrame(rows)
        return df.sort_values("cell_id", kind="stable").reset_index(drop=True)

    def stale_temp_files(self) -> list[Path]:
        """Temporary files left by a crash between write and replace (ignored by readers)."""
        return sorted(p for d in (self.out, self.cells_dir, self.failures_dir)
                      for p in d.glob(f"{_TMP_PREFIX}*"))

    def remove_stale_temp_files(self) -> int:
        """Delete :meth:`stale_temp_files` (only when no writer is running); returns count."""
        stale = self.stale_temp_files()
        for p in stale:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return len(stale)

    # ---------------------------------------------------------------- failures
    def record_failure(self, cell_id: str, error: str, traceback: str = "",
                       **extra: Any) -> Path:
        """Atomically record that ``cell_id`` failed (and refresh ``failures.json``).

        Args:
            cell_id: the failed cell.
            error: short description, e.g. ``"FloatingPointError: NaN training loss"``.
            traceback: formatted traceback text.
            **extra: further JSON-serialisable fields (e.g. ``wall_time_s``).
        """
        doc = {"cell_id": cell_id, "error": error, "traceback": traceback,
               "failed_at": time.time(), **extra}
        path = self.failures_dir / self._filename(cell_id)
        atomic_write_text(path, json.dumps(doc, default=_json_default))
        self.write_failures_json()
        return path

    def clear_failure(self, cell_id: str) -> None:
        """Forget a recorded failure of ``cell_id`` (done automatically on success)."""
        path = self.failures_dir / self._filename(cell_id)
        if path.exists():
            path.unlink()
            self.write_failures_json()

    def failures(self) -> list[dict[str, Any]]:
        """Currently recorded failures, sorted by cell id."""
        docs = []
        for path in sorted(self.failures_dir.glob("*.json")):
            if not path.name.startswith(_TMP_PREFIX):
                with open(path, encoding="utf-8") as fh:
                    docs.append(json.load(fh))
        return sorted(docs, key=lambda d: d["cell_id"])

    def write_failures_json(self) -> Path:
        """Atomically (re)write ``out/failures.json`` from the per-cell failure files."""
        return atomic_write_text(self.out / "failures.json",
                                 json.dumps(self.failures(), indent=2, default=_json_default))

    # ---------------------------------------------------------------- export
    def export(self, out: str | os.PathLike | None = None) -> dict[str, Path]:
        """Write ``records.csv`` and ``records.json`` atomically.

        Args:
            out: destination folder (default: the store's folder).

        Returns:
            ``{"csv": path, "json": path}``. Non-scalar fields (e.g. a ``config`` dict) are
            JSON-encoded in the CSV; NaN values become empty cells / ``null``.
        """
        dest = Path(out) if out is not None else self.out
        df = self.load_records()
        records = [{k: _clean(v) for k, v in row.items()} for row in df.to_dict("records")]
        json_path = atomic_write_text(dest / "records.json",
                                      json.dumps(records, indent=1, default=_json_default))
        flat = df.copy()
        for col in flat.columns:
            if flat[col].map(lambda v: isinstance(v, Mapping | list | tuple)).any():
                flat[col] = flat[col].map(
                    lambda v: json.dumps(v, sort_keys=True, default=_json_default)
                    if isinstance(v, Mapping | list | tuple) else v)
        csv_path = atomic_write_text(dest / "records.csv", flat.to_csv(index=False))
        return {"csv": csv_path, "json": json_path}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
