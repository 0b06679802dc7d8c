"""Append-only, crash-safe store of tidy result records, one JSON file per finished cell.

Layout under the output folder ``out``::

    out/cells/<slug>-<hash>.json      one finished cell: {"cell_id", "written_at", "records",
                                      "records_sha256", "complete", and for a store with
                                      settings "settings" and "settings_sha256"}
    out/failures/<slug>-<hash>.json   one failed cell (removed when the cell later succeeds)
    out/failures.json                 all current failures (rewritten after each change)
    out/damaged/<name>                damaged cell files, moved aside before their cells re-run
    out/settings.json                 the run settings the folder was filled with (optional)
    out/.lock                         advisory lock of the run writing into the folder (removed
                                      when the run ends)
    out/records.csv, records.json     written by :meth:`ResultsStore.export`

Every file is written atomically: to a temporary file in the same folder, flushed, fsync'ed,
then ``os.replace``'d onto its final name (and the folder fsync'ed). A run killed at any
moment therefore leaves each cell either complete or absent, never partial; re-running skips
the complete ones, and since a cell has exactly one file there are no duplicated rows.

Every cell file is verified when read: it must parse, carry valid records (see
:func:`validate_records`), be named after its ``cell_id``, and match the SHA-256 of its
records (``records_sha256``, required: a file without it, e.g. one whose values were edited
and its checksum removed, is damaged). A damaged file (truncated by a full disk, edited by
hand, copied half-way) counts as not done: readers skip it with a :class:`DamagedCellWarning`
naming it, and :meth:`ResultsStore.quarantine_damaged` (or :meth:`ResultsStore.write_cell`,
when it finds one in the way) moves it to ``out/damaged/`` so its cell runs again.

One run at a time writes into a folder (:meth:`ResultsStore.lock`,
:class:`~comparisons.runner.folder_lock.ResultsFolderBusy`),
and a store given ``settings`` refuses to mix results made with other settings
(:meth:`ResultsStore.check_settings`, :class:`SettingsMismatch`): each cell file carries the
settings it was made with, so a deleted or replaced ``settings.json`` cannot let a run with
another seed add its cells next to the old ones. :meth:`ResultsStore.writing` does all of it
at the start of a run (lock, settings, stale temporary files, damaged cells).

A record is a dict with at least ``dataset``, ``method``, ``split``, ``metric`` and ``value``
(optional fields such as ``config``, ``epochs_multiplier`` or ``wall_time_s`` are kept).

Example:
    >>> store = ResultsStore("/tmp/run")  # doctest: +SKIP
    >>> cid = make_cell_id("yacht", 0, {"p": 0.05})  # doctest: +SKIP
    >>> if not store.is_done(cid):  # doctest: +SKIP
    ...     store.write_cell(cid, [{"dataset": "yacht", "method": "mc", "split": 0,
    ...                             "metric": "rmse", "value": 0.9}])
    >>> store.load_records()  # doctest: +SKIP

Why one module of this size: the results store: cells, settings, checksums, the lock and the
quarantine of damaged files, one on-disk format.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import numbers
import os
import re
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from comparisons.runner.folder_lock import (
    FolderLock,
    ResultsFolderBusy,  # noqa: F401  (its old home)
)
from vi_dropout.io import TEMP_PREFIX, atomic_write_bytes, atomic_write_text, fsync_dir

__all__ = [
    "REQUIRED_FIELDS",
    "ResultsStore",
    "DamagedCellWarning",
    "SettingsMismatch",
    "records_checksum",
    "make_cell_id",
    "config_hash",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_savefig",
    "validate_records",
]

REQUIRED_FIELDS: tuple[str, ...] = ("dataset", "method", "split", "metric", "value")
_SETTINGS_NAME = "settings.json"


class DamagedCellWarning(UserWarning):
    """A results file could not be verified (truncated, unparsable, checksum mismatch...).

    The message names every damaged file and why it was rejected; the files are skipped by
    readers and their cells count as not done.
    """


class SettingsMismatch(ValueError):
    """The results folder was filled with other run settings (see
    :meth:`ResultsStore.check_settings`).

    Attributes:
        out: the results folder.
        changes: ``{key: (old, new)}`` for every differing key (``"<unset>"`` when absent).
    """

    def __init__(self, message: str, out: Path, changes: Mapping[str, tuple[Any, Any]]):
        super().__init__(message)
        self.out, self.changes = out, dict(changes)


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


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default,
                      allow_nan=True)


def records_checksum(records: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``records`` (as they read back from a cell file).

    The records go through a JSON round trip first, so numpy scalars, tuples and their plain
    Python equivalents give the same checksum; key order does not matter.

    Args:
        records: list of record dicts.

    Returns:
        64 hex digits.

    Example:
        >>> records_checksum([{"value": 1.0, "metric": "rmse"}]) == records_checksum(
        ...     [{"metric": "rmse", "value": 1.0}])
        True
    """
    plain = json.loads(_canonical_json(list(records)))
    return hashlib.sha256(_canonical_json(plain).encode("utf-8")).hexdigest()


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
        settings: the run settings that must not change within this folder (e.g. epochs
            multiplier, number of MC samples, seed, methods), as a JSON-serialisable mapping;
            ``None`` skips the check. Leave out what a resume may legitimately extend (data
            sets, splits). Checked and recorded by :meth:`check_settings`, which
            :func:`~comparisons.runner.executors.run_cells` calls at its start.
        allow_settings_change: accept settings that differ from the folder's recorded ones
            (the new settings are recorded and appended to the history in ``settings.json``).

    Raises:
        TypeError: ``settings`` is not a mapping.
        ValueError: ``settings`` is not JSON-serialisable.

    Example:
        >>> store = ResultsStore("/tmp/run", settings={"epochs_multiplier": 1})  # doctest: +SKIP
        >>> store.write_cell("c1", [{"dataset": "d", "method": "m", "split": 0,
        ...                          "metric": "rmse", "value": 1.0}])  # doctest: +SKIP
        >>> store.is_done("c1")  # doctest: +SKIP
        True
    """

    def __init__(self, out: str | os.PathLike, *, settings: Mapping[str, Any] | None = None,
                 allow_settings_change: bool = False) -> None:
        self.out = Path(out)
        self.cells_dir = self.out / "cells"
        self.failures_dir = self.out / "failures"
        self.damaged_dir = self.out / "damaged"
        if settings is not None:
            if not isinstance(settings, Mapping):
                raise TypeError(f"settings must be a mapping or None, got "
                                f"{type(settings).__name__}")
            try:
                settings = json.loads(_canonical_json(dict(settings)))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"settings must be JSON-serialisable: {exc}") from exc
        self.settings: dict[str, Any] | None = settings
        self.allow_settings_change = bool(allow_settings_change)
        self._lock = FolderLock(self.out)
        # the folders are made by the first write, not here: a run refused by the lock or by
        # its settings leaves the folder as it found it

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
        """Whether ``cell_id`` has a verified cell file (False for a missing or damaged one).

        Damaged files are not reported here (see :meth:`damaged_cells`).
        """
        path = self.cell_path(cell_id)
        if not path.is_file():
            return False
        doc, problem = self._read_cell_file(path)
        return problem is None and doc["cell_id"] == cell_id

    def done_cells(self) -> set[str]:
        """The ids of all finished cells (damaged files skipped with a
        :class:`DamagedCellWarning`)."""
        return {doc["cell_id"] for doc in self._iter_cell_docs()}

    def write_cell(self, cell_id: str, records: Iterable[Mapping[str, Any]],
                   overwrite: bool = False) -> Path:
        """Atomically record a finished cell and its records (with their SHA-256).

        Args:
            cell_id: stable id (e.g. from :func:`make_cell_id`).
            records: list of record dicts (see :func:`validate_records`); may be empty.
            overwrite: replace an existing cell (default: refuse, the store is append-only).

        Returns:
            The cell's file path.

        A damaged file in the cell's place (see :meth:`verify_cell_file`) is moved to
        ``out/damaged/`` first, with a :class:`DamagedCellWarning`: it is not a result.

        Raises:
            FileExistsError: the cell is already done (its file verifies) and ``overwrite`` is
                False.
        """
        rows = validate_records(records)
        path = self.cell_path(cell_id)
        if path.exists() and not overwrite:
            problem = self._read_cell_file(path)[1]
            if problem is None:
                raise FileExistsError(f"cell {cell_id!r} is already recorded in {path}")
            self._move_aside({path: problem})
        rows = json.loads(json.dumps(rows, default=_json_default, allow_nan=True))
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        doc = {"cell_id": cell_id, "written_at": time.time(), "records": rows,
               "records_sha256": records_checksum(rows), "complete": True}
        if self.settings is not None:
            doc["settings"] = self.settings
            doc["settings_sha256"] = _fingerprint(self.settings)
        atomic_write_text(path, json.dumps(doc, default=_json_default, allow_nan=True))
        self.clear_failure(cell_id)
        return path

    def verify_cell_file(self, path: str | os.PathLike) -> str | None:
        """Why the cell file at ``path`` is damaged, or None when it verifies.

        A cell file verifies when it parses as JSON, holds a ``cell_id`` string and valid
        records, is named after its ``cell_id``, its ``records_sha256`` matches the records,
        its ``complete`` flag (when present) is true, and the settings it carries (when
        present) match their ``settings_sha256``.

        Example:
            >>> store.verify_cell_file(store.cell_path("c1")) is None  # doctest: +SKIP
            True
        """
        return self._read_cell_file(Path(path))[1]

    def _read_cell_file(self, path: Path) -> tuple[dict[str, Any] | None, str | None]:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"unreadable ({type(exc).__name__}: {exc})"
        if not isinstance(doc, dict):
            return None, f"expected a JSON object, found {type(doc).__name__}"
        cid, records = doc.get("cell_id"), doc.get("records")
        if not isinstance(cid, str) or not cid:
            return None, f"no cell_id string (found {cid!r})"
        if path.name != self._filename(cid):
            return None, f"file name does not match its cell_id {cid!r}"
        if not isinstance(records, list):
            return None, f"'records' is not a list (found {type(records).__name__})"
        if "complete" in doc and doc["complete"] is not True:
            return None, f"not marked complete (complete={doc['complete']!r})"
        try:
            rows = validate_records(records)
        except (TypeError, ValueError) as exc:
            return None, f"invalid records ({exc})"
        expected = doc.get("records_sha256")
        if not isinstance(expected, str):
            return None, "no records_sha256 checksum: its records cannot be verified"
        if records_checksum(records) != expected:
            return None, "records do not match their records_sha256 checksum"
        if "settings" in doc or "settings_sha256" in doc:
            settings = doc.get("settings")
            if (not isinstance(settings, dict)
                    or _fingerprint(settings) != doc.get("settings_sha256")):
                return None, "its settings do not match their settings_sha256 checksum"
        return {**doc, "records": rows}, None

    def damaged_cells(self) -> dict[Path, str]:
        """Damaged cell files and why: ``{path: reason}``, sorted by path.

        Example:
            >>> store.damaged_cells()  # doctest: +SKIP
            {PosixPath('out/cells/yacht_0-ab12.json'): 'unreadable (JSONDecodeError: ...)'}
        """
        return {path: problem for path in self._cell_files()
                if (problem := self._read_cell_file(path)[1]) is not None}

    def quarantine_damaged(self) -> dict[Path, Path]:
        """Move damaged cell files to ``out/damaged/`` (so their cells run again), warning.

        Nothing is deleted: a file whose name is already taken in ``out/damaged/`` gets a
        numbered suffix. Call it only while holding :meth:`lock` (``run_cells`` does).

        Returns:
            ``{original path: new path}`` of the moved files (empty when none is damaged).

        Example:
            >>> store.quarantine_damaged()  # doctest: +SKIP
            {PosixPath('out/cells/a.json'): PosixPath('out/damaged/a.json')}
        """
        return self._move_aside(self.damaged_cells())

    def _move_aside(self, damaged: Mapping[Path, str]) -> dict[Path, Path]:
        """Move the ``{path: reason}`` damaged cell files to ``out/damaged/``, warning."""
        moved: dict[Path, Path] = {}
        for path in damaged:
            self.damaged_dir.mkdir(parents=True, exist_ok=True)
            dest, k = self.damaged_dir / path.name, 1
            while dest.exists():
                dest, k = self.damaged_dir / f"{path.name}.{k}", k + 1
            os.replace(path, dest)
            moved[path] = dest
        if moved:
            fsync_dir(self.cells_dir)
            fsync_dir(self.damaged_dir)
            _warn_damaged({p: f"{damaged[p]}; moved to {d}" for p, d in moved.items()},
                          action="re-running the cells of", stacklevel=4)
        return moved

    def _cell_files(self) -> list[Path]:
        return sorted(p for p in self.cells_dir.glob("*.json")
                      if not p.name.startswith(TEMP_PREFIX))

    def _iter_cell_docs(self) -> Iterator[dict[str, Any]]:
        """The verified cell documents; damaged files are named in one warning at the end."""
        docs, damaged = [], {}
        for path in self._cell_files():
            doc, problem = self._read_cell_file(path)
            if problem is None:
                docs.append(doc)
            else:
                damaged[path] = problem
        if damaged:
            _warn_damaged(damaged, stacklevel=4)
        return iter(docs)

    def load_records(self) -> pd.DataFrame:
        """All records of all finished cells as a tidy DataFrame (one row per record).

        Damaged cell files are skipped and named in a :class:`DamagedCellWarning`.

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
                      for p in d.glob(f"{TEMP_PREFIX}*"))

    def remove_stale_temp_files(self) -> int:
        """Delete :meth:`stale_temp_files` (only when no writer is running); returns count."""
        stale = self.stale_temp_files()
        for p in stale:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return len(stale)

    # ---------------------------------------------------------------- lock and settings
    @contextlib.contextmanager
    def lock(self) -> Iterator[ResultsStore]:
        """Hold the folder's advisory lock (``out/.lock``) for one run; refuse if it is taken.

        Non-blocking ``flock`` on ``out/.lock``, which records the holder's pid and start time
        for the refusal message. The lock is released (and the file removed) when the block
        ends, also on an exception, and by the operating system if the process dies. Re-entrant for the same
        store object (``run_cells`` inside ``with store.lock():`` is fine); two store objects,
        or two processes, on the same folder exclude each other. A no-op where ``fcntl`` is
        missing.

        Raises:
            ResultsFolderBusy: another run holds the lock.

        Example:
            >>> with ResultsStore("out").lock():  # doctest: +SKIP
            ...     run_cells(cells, fn, store)
        """
        with self._lock:
            yield self

    @contextlib.contextmanager
    def writing(self) -> Iterator[ResultsStore]:
        """Everything a run does before it writes: hold :meth:`lock`, :meth:`check_settings`,
        delete :meth:`stale_temp_files` and :meth:`quarantine_damaged` cells; the lock is
        released when the block ends.

        Raises:
            ResultsFolderBusy: another run holds the folder.
            SettingsMismatch: see :meth:`check_settings`.

        Example:
            >>> with ResultsStore("out", settings={"seed": 0}).writing() as store:  # doctest: +SKIP
            ...     store.write_cell("c1", records)
        """
        with self.lock():
            self.check_settings()
            self.remove_stale_temp_files()
            self.quarantine_damaged()
            yield self

    @property
    def settings_path(self) -> Path:
        """``out/settings.json``: the settings the folder's cells were made with."""
        return self.out / _SETTINGS_NAME

    def check_settings(self) -> dict[str, Any] | None:
        """Compare the store's ``settings`` with the folder's, recording them on first use.

        Writes ``out/settings.json`` atomically as ``{"fingerprint": sha256 of the canonical
        JSON of the settings, "settings": {...}, "history": [{"fingerprint", "settings",
        "recorded_at"}, ...]}``. Call it under :meth:`lock` before any work
        (:func:`~comparisons.runner.executors.run_cells` does). Does nothing when the store was made
        without ``settings``.

        Returns:
            The settings now recorded for the folder (``None`` without ``settings``).

        Raises:
            SettingsMismatch: the folder holds results made with other settings (or its
                ``settings.json`` is unreadable) and ``allow_settings_change`` is False.

        Example:
            >>> ResultsStore("out", settings={"seed": 0}).check_settings()  # doctest: +SKIP
            {'seed': 0}
            >>> ResultsStore("out", settings={"seed": 1}).check_settings()  # doctest: +SKIP
            Traceback (most recent call last):
            SettingsMismatch: results folder out holds results made with other settings (seed 0 -> 1); ...
        """
        if self.settings is None:
            return None
        new_fp = _fingerprint(self.settings)
        path = self.settings_path
        entry = {"fingerprint": new_fp, "settings": self.settings,
                 "recorded_at": datetime.datetime.now().astimezone().isoformat(
                     timespec="seconds")}
        how = ("use another --out, or pass --allow-settings-change to add these cells to the "
               "same folder")
        history: list[Any] = []
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                old = doc["settings"]
                if not isinstance(old, dict):
                    raise TypeError(f"'settings' is a {type(old).__name__}, expected an object")
                history = list(doc.get("history") or [])
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
                if not self.allow_settings_change:
                    raise SettingsMismatch(
                        f"cannot read the settings of results folder {self.out} from {path} "
                        f"({type(exc).__name__}: {exc}); repair or delete that file, {how}",
                        self.out, {}) from None
                warnings.warn(f"replacing unreadable {path} ({type(exc).__name__}: {exc})",
                              DamagedCellWarning, stacklevel=2)
            else:
                if _fingerprint(old) == new_fp:
                    if not self.allow_settings_change:
                        self._check_cells_settings(new_fp, how, history, vouched=True)
                    return self.settings
                changes = {k: (old.get(k, "<unset>"), self.settings.get(k, "<unset>"))
                           for k in sorted(set(old) | set(self.settings))
                           if _canonical_json(old.get(k, "<unset>"))
                           != _canonical_json(self.settings.get(k, "<unset>"))}
                if not self.allow_settings_change and self._cell_files():
                    # (a folder without cells holds no results: e.g. a run that failed to start
                    # wrote settings.json; its settings are simply replaced)
                    diff = ", ".join(f"{k} {_short(a)} -> {_short(b)}"
                                     for k, (a, b) in changes.items())
                    raise SettingsMismatch(
                        f"results folder {self.out} holds results made with other settings "
                        f"({diff}); {how}", self.out, changes)
                if not history:  # a file written without history: keep its settings in it
                    history = [{"fingerprint": _fingerprint(old), "settings": old,
                                "recorded_at": None}]
        if not self.allow_settings_change:
            self._check_cells_settings(new_fp, how, history, vouched=False)
        doc = {"fingerprint": new_fp, "settings": self.settings, "history": [*history, entry]}
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True,
                                           default=_json_default) + "\n")
        return self.settings

    def _check_cells_settings(self, new_fp: str, how: str, history: list[Any], *,
                              vouched: bool) -> None:
        """Refuse when a cell file was made with other settings than the store's (or than
        earlier settings the folder's ``settings.json`` history accepted with
        ``allow_settings_change``): a missing or replaced ``settings.json`` cannot vouch for the
        cells, the cells witness themselves. Cells that do not say (written before cells carried
        their settings) are trusted only when the folder's ``settings.json`` matches
        (``vouched``), as they were then."""
        accepted = {new_fp} | {h.get("fingerprint") for h in history if isinstance(h, dict)}
        other: dict[str, dict[str, Any]] = {}
        unknown = 0
        for path in self._cell_files():
            doc, problem = self._read_cell_file(path)
            if problem is not None:
                continue  # damaged: moved aside and recomputed, never read
            if "settings_sha256" not in doc:
                unknown += 1
            elif doc["settings_sha256"] not in accepted:
                other.setdefault(doc["settings_sha256"], doc["settings"])
        if other:
            old = next(iter(other.values()))
            diff = ", ".join(f"{k} {_short(old.get(k, '<unset>'))} -> "
                             f"{_short(self.settings.get(k, '<unset>'))}"
                             for k in sorted(set(old) | set(self.settings))
                             if _canonical_json(old.get(k, "<unset>"))
                             != _canonical_json(self.settings.get(k, "<unset>")))
            raise SettingsMismatch(
                f"results folder {self.out} holds cells made with other settings ({diff}; "
                f"{self.settings_path.name} does not say so: it is missing or was replaced); "
                f"{how}", self.out, {})
        if unknown and not vouched:
            raise SettingsMismatch(
                f"results folder {self.out} holds {unknown} cell file(s) that do not say which "
                f"settings they were made with (written before cells carried them), and its "
                f"{self.settings_path.name} is missing or new, so nothing says it either; "
                f"{how}", self.out, {})

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
        self.failures_dir.mkdir(parents=True, exist_ok=True)
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
        docs, damaged = [], {}
        for path in sorted(self.failures_dir.glob("*.json")):
            if path.name.startswith(TEMP_PREFIX):
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    doc = json.load(fh)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                damaged[path] = f"unreadable ({type(exc).__name__}: {exc})"
                continue
            if isinstance(doc, dict) and isinstance(doc.get("cell_id"), str):
                docs.append(doc)
            else:
                damaged[path] = "not a failure record (no cell_id)"
        if damaged:
            _warn_damaged(damaged, what="failure")
        return sorted(docs, key=lambda d: d["cell_id"])

    def write_failures_json(self) -> Path:
        """Atomically (re)write ``out/failures.json`` from the per-cell failure files."""
        self.out.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(self.out / "failures.json",
                                 json.dumps(self.failures(), indent=2, default=_json_default))

    # ---------------------------------------------------------------- export
    def export(self, out: str | os.PathLike | None = None) -> dict[str, Path]:
        """Write ``records.csv`` and ``records.json`` atomically.

        Args:
            out: destination folder (default: the store's folder).

        Damaged cell files are left out and named in a :class:`DamagedCellWarning`.

        Returns:
            ``{"csv": path, "json": path}``. Non-scalar fields (e.g. a ``config`` dict) are
            JSON-encoded in the CSV; NaN values become empty cells / ``null``.
        """
        dest = Path(out) if out is not None else self.out
        dest.mkdir(parents=True, exist_ok=True)
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


def _fingerprint(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical_json(dict(settings)).encode("utf-8")).hexdigest()


def _short(value: Any, width: int = 60) -> str:
    text = value if value == "<unset>" else json.dumps(value, sort_keys=True,
                                                       default=_json_default)
    return text if len(text) <= width else text[: width - 3] + "..."


def _warn_damaged(damaged: Mapping[Path, str], what: str = "cell", action: str = "skipping",
                  stacklevel: int = 3) -> None:
    listed = "; ".join(f"{path}: {why}" for path, why in damaged.items())
    warnings.warn(f"{action} {len(damaged)} damaged {what} file(s): {listed}",
                  DamagedCellWarning, stacklevel=stacklevel)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
