r"""Checkpoints of a training state: written atomically with a checksum, verified when read.

One file holds one state (a mapping of tensors, numbers, strings, lists and dicts of them, such
as a model's and an optimizer's ``state_dict``, a generator's state and a loss history) and a
small JSON header:

.. code-block:: text

    VIDROPOUT-CHECKPOINT 1\n
    {"sha256": "<64 hex digits>", "bytes": <payload length>, "meta": {...}}\n
    <payload: torch.save(state)>

The file is written by :func:`vi_dropout.io.atomic_write_bytes` (temporary file, fsync,
rename), so a run killed at any moment leaves the previous checkpoint or the new one, never a
mix. On reading, the magic line, the header, the payload length and its SHA-256 are checked
before anything is unpickled, and the payload is loaded with ``torch.load(weights_only=True)``
(tensors and plain containers only: no code runs from a checkpoint file). ``meta`` is a small
JSON mapping (e.g. the step and whether the run finished) that :func:`read_checkpoint_meta`
returns without reading the payload.

:func:`settings_changes` and :class:`CheckpointMismatch` compare the settings a checkpoint was
written with against the current ones and name every difference.

Example:
    >>> import torch
    >>> state, meta = {"w": torch.ones(2)}, {"step": 3}
    >>> path = save_checkpoint("/tmp/ck/net.ckpt", state, meta=meta)  # doctest: +SKIP
    >>> load_checkpoint(path)["w"]  # doctest: +SKIP
    tensor([1., 1.])
    >>> read_checkpoint_meta(path)  # doctest: +SKIP
    {'step': 3}
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vi_dropout.io import atomic_write_bytes

__all__ = [
    "MAGIC",
    "CheckpointError",
    "CheckpointMismatch",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_meta",
    "settings_changes",
    "check_settings",
]

#: first line of every checkpoint file (the trailing number is the format version)
MAGIC = b"VIDROPOUT-CHECKPOINT 1\n"

#: the header line is at most this long (it holds a checksum, a length and a small ``meta``)
_MAX_HEADER = 1 << 16


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: unreadable, not a checkpoint, truncated, or its
    checksum does not match (the message names the file and what is wrong).

    Attributes:
        path: the file.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        super().__init__(f"checkpoint {self.path} is damaged or not a checkpoint: {problem} "
                         "(delete it to start again)")


class CheckpointMismatch(ValueError):
    """A checkpoint was written with other settings than the current ones.

    Attributes:
        path: the file.
        changes: ``{setting: (in the checkpoint, now)}`` for every differing setting.
    """

    def __init__(self, path: str | os.PathLike, changes: Mapping[str, tuple[Any, Any]]):
        self.path, self.changes = Path(path), dict(changes)
        listed = "; ".join(f"{k}: {old!r} in the checkpoint, {new!r} now"
                           for k, (old, new) in self.changes.items())
        super().__init__(f"checkpoint {self.path} was written with other settings ({listed}): "
                         "resume with the same settings, or delete it to start again")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any], *,
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``state`` to ``path`` atomically, with its SHA-256 and ``meta`` in the header.

    Args:
        path: the file (its folder is created if needed; an existing file is replaced).
        state: a mapping that ``torch.load(weights_only=True)`` can read back: tensors (any
            device: they are saved as they are), numbers, strings, ``None`` and lists, tuples
            and dicts of these.
        meta: a small JSON-serialisable mapping readable without the payload
            (:func:`read_checkpoint_meta`).

    Returns:
        The path written.

    Raises:
        TypeError: ``meta`` is not JSON-serialisable.

    Example:
        >>> save_checkpoint("/tmp/ck/a.ckpt", {"step": 1})  # doctest: +SKIP
    """
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    payload = buf.getvalue()
    header = {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload),
              "meta": dict(meta or {})}
    line = json.dumps(header, sort_keys=True, allow_nan=False).encode("utf-8") + b"\n"
    if len(line) > _MAX_HEADER:
        raise ValueError(f"checkpoint meta is too large ({len(line)} bytes of header)")
    return atomic_write_bytes(path, MAGIC + line + payload)


def _read_header(path: Path, fh) -> dict:
    if fh.read(len(MAGIC)) != MAGIC:
        raise CheckpointError(path, "it does not start with the checkpoint magic line")
    line = fh.readline(_MAX_HEADER)
    if not line.endswith(b"\n"):
        raise CheckpointError(path, "its header line is truncated")
    try:
        header = json.loads(line)
    except ValueError:
        raise CheckpointError(path, "its header is not JSON") from None
    if (not isinstance(header, dict) or not isinstance(header.get("sha256"), str)
            or not isinstance(header.get("bytes"), int)
            or not isinstance(header.get("meta"), dict)):
        raise CheckpointError(path, "its header lacks sha256, bytes or meta")
    return header


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` mapping of a checkpoint, read from its header only (the payload is not
    verified: :func:`load_checkpoint` does that).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is not a checkpoint or its header is damaged.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        return dict(_read_header(path, fh)["meta"])


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying it first.

    Args:
        path: the file.
        map_location: as for ``torch.load`` (e.g. ``"cpu"``; default: where the tensors were).

    Returns:
        The state (a ``dict``).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: not a checkpoint, a damaged header, a payload of the wrong length
            (truncated or appended to), a SHA-256 mismatch, or a payload ``torch.load`` refuses.

    Example:
        >>> load_checkpoint("/tmp/ck/a.ckpt")  # doctest: +SKIP
        {'step': 1}
    """
    path = Path(path)
    with open(path, "rb") as fh:
        header = _read_header(path, fh)
        payload = fh.read()
    if len(payload) != header["bytes"]:
        raise CheckpointError(path, f"its payload has {len(payload)} bytes, the header says "
                                    f"{header['bytes']}")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CheckpointError(path, "its payload does not match its SHA-256 checksum")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(path, f"torch.load failed: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"it holds a {type(state).__name__}, not a dict")
    return state


def settings_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict:
    """``{key: (saved, current)}`` for every key whose value differs (``"<unset>"`` where a key
    is missing on one side); values are compared after a JSON round trip, so tuples equal lists.

    Example:
        >>> settings_changes({"lr": 0.001, "hidden": (8,)}, {"lr": 0.01, "hidden": [8]})
        {'lr': (0.001, 0.01)}
    """
    def plain(value):
        return json.loads(json.dumps(value))

    changes = {}
    for key in list(saved) + [k for k in current if k not in saved]:
        old = plain(saved[key]) if key in saved else "<unset>"
        new = plain(current[key]) if key in current else "<unset>"
        if old != new:
            changes[key] = (old, new)
    return changes


def check_settings(path: str | os.PathLike, saved: Mapping[str, Any],
                   current: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointMismatch` naming every setting in which ``saved`` (read from the
    checkpoint at ``path``) and ``current`` differ; return ``None`` when they agree."""
    changes = settings_changes(saved, current)
    if changes:
        raise CheckpointMismatch(path, changes)
