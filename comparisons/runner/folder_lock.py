"""The advisory lock of a results folder: one run at a time writes into it.

Every command that writes results into a folder (``uci``, ``reference-scores``,
``hmc-reference``, ``mauna-loa``, ...) holds ``<folder>/.lock`` for the whole run: a
non-blocking ``flock`` on that file, which also records the holder's pid and start time for the
refusal message. A second run on the same folder is refused at once
(:class:`ResultsFolderBusy`, a ``ValueError``: one line on the command line), never queued. The
lock is released (and the file removed) when the run ends, also on an exception, and by the
operating system if the process dies, so a killed run never leaves a folder locked. A no-op
where ``fcntl`` is missing (Windows).

Example:
    >>> with FolderLock("/tmp/run"):  # doctest: +SKIP
    ...     ...  # write into /tmp/run
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
from pathlib import Path

try:  # advisory locks; absent on Windows, where the folder lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover - platform dependent
    fcntl = None

__all__ = ["FolderLock", "ResultsFolderBusy", "LOCK_NAME"]

#: the lock file's name inside the folder
LOCK_NAME = ".lock"


class ResultsFolderBusy(ValueError):
    """Another run holds the lock of the results folder.

    Attributes:
        out: the results folder.
        pid: process id of the run holding it (``None`` if unknown).
        started_at: when that run took the lock (ISO 8601 text, ``None`` if unknown).
    """

    def __init__(self, out: Path, pid: int | None = None, started_at: str | None = None):
        self.out, self.pid, self.started_at = out, pid, started_at
        holder = ", ".join(x for x in (f"pid {pid}" if pid is not None else "",
                                       f"started {started_at}" if started_at else "") if x)
        super().__init__(
            f"results folder {out} is in use by another run ({holder or 'holder unknown'}); "
            "wait for it to finish or choose another --out"
        )


class FolderLock:
    """The advisory lock ``<folder>/.lock`` (see the module docstring); re-entrant for the
    same object, exclusive between objects and processes. Folders it had to create are removed
    on release when the run left them empty.

    Args:
        folder: the results folder (created if missing).

    Raises:
        ResultsFolderBusy: on entering, when another run (or another lock object) holds it.

    Example:
        >>> lock = FolderLock("/tmp/run")  # doctest: +SKIP
        >>> with lock, lock:  # re-entrant  # doctest: +SKIP
        ...     pass
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._fd: int | None = None
        self._depth = 0
        self._made: list[Path] = []

    @property
    def path(self) -> Path:
        """``<folder>/.lock``."""
        return self.folder / LOCK_NAME

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._depth > 0

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock (again, when this object holds it already).

        Raises:
            ResultsFolderBusy: another run holds it.
        """
        if self._depth > 0 or fcntl is None:
            self._depth += 1
            return
        # the folders this lock makes are removed again if the run leaves them empty (a run
        # refused after the lock, e.g. for a bad input file, leaves nothing behind)
        missing = [d for d in (self.folder, *self.folder.parents) if not d.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._made = missing
        path = self.path
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise ResultsFolderBusy(self.folder, *read_lock_holder(path)) from None
            try:  # the holder unlinks the file on release: lock only the file at the path now
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "started_at": started}).encode(), 0)
        except BaseException:
            os.close(fd)  # closing the descriptor releases the lock
            raise
        self._fd, self._depth = fd, 1

    def release(self) -> None:
        """Give the lock back (the file is removed when the outermost holder releases it)."""
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth > 0 or self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):  # remove it while still holding it
                os.unlink(self.path)
        finally:
            os.close(fd)
        for folder in self._made:  # innermost first; stops at the first one with files
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []


def read_lock_holder(path: str | os.PathLike) -> tuple[int | None, str | None]:
    """``(pid, started_at)`` written by the lock's holder (``None`` when unknown)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        pid = info.get("pid")
        return (int(pid) if pid is not None else None), info.get("started_at")
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError):
        return None, None
