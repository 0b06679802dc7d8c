"""Atomic file writing: the one writer every result file of the toolkit goes through.

A file is written to a temporary file in the same folder (name starting with
:data:`TEMP_PREFIX`), flushed and fsync'ed, then ``os.replace``'d onto its final name and the
folder fsync'ed: a run killed at any moment leaves the file either complete or absent.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["TEMP_PREFIX", "fsync_dir", "atomic_write_bytes", "atomic_write_text"]

#: prefix of the temporary files (a folder scan can recognise and remove stale ones)
TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """fsync a folder, so that a rename inside it is durable (a no-op where unsupported)."""
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".part")
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
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`.

    Example:
        >>> atomic_write_text("/tmp/x.json", "{}")  # doctest: +SKIP
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


