"""Run experiment cells locally or on Ray, resumably, writing each finished cell as it lands.

A *cell* is any picklable object with a stable id (a :class:`Cell`, a mapping with a
``"cell_id"`` key, or any object with a ``cell_id`` attribute); a *cell function*
``fn(cell) -> list[dict]`` computes its tidy records (see
:mod:`comparisons.runner.store`). :func:`run_cells` skips cells already in the store,
runs the others on an executor, writes every finished cell to the store at once (so an
interruption loses at most the cells in flight), and isolates failures: a cell that raises
is recorded in ``failures.json`` (cell id, error, traceback) and the run goes on. It holds the
results folder's lock for the whole run (a second run into the same folder stops at once with
:class:`~comparisons.runner.folder_lock.ResultsFolderBusy`), checks the store's settings
(:class:`~comparisons.runner.store.SettingsMismatch`), re-runs the cells of damaged cell
files, and turns Ctrl-C into a one-line :class:`RunInterrupted`.

Executors:

- :class:`LocalExecutor` ``(num_workers=1)``: in-process loop; a process pool when
  ``num_workers > 1`` (the cell function and cells must then be picklable). Its workers ignore
  Ctrl-C (the parent stops them), and die with the parent if it is killed.
- :class:`RayExecutor` ``(address=None | "auto" | "host:port" | "ray://host:port", num_cpus=None)``:
  one Ray task per cell, on an existing cluster or a local instance (``pip install
  .[distributed]``). A ``host:port`` that does not answer is refused within seconds
  (:func:`check_ray_address`), not after Ray's minutes of retries.

Example:
    >>> def fn(cell):  # doctest: +SKIP
    ...     return [{"dataset": cell.dataset, "method": "dummy", "split": cell.split,
    ...              "metric": "rmse", "value": float(cell.split)}]
    >>> cells = [Cell("yacht", k, "dummy", {}) for k in range(3)]  # doctest: +SKIP
    >>> run_cells(cells, fn, ResultsStore("/tmp/run"), LocalExecutor())  # doctest: +SKIP
    RunSummary(done=3, skipped=0, failed=0, failed_cells=())

Why one module of this size: the cells, groups and the local and Ray executors of
:func:`run_cells`, which share one failure and progress contract.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from comparisons.runner.store import ResultsStore, make_cell_id, validate_records

__all__ = [
    "Cell",
    "CellGroup",
    "CellError",
    "CellOutcome",
    "RunSummary",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "check_ray_address",
    "RunInterrupted",
    "cell_id_of",
    "run_cells",
]

CellFn = Callable[[Any], list[dict]]


@dataclass(frozen=True, eq=False)
class Cell:
    """One unit of work: a data set split under one method and configuration.

    Attributes:
        dataset: data set name.
        split: split index.
        method: method name.
        config: JSON-serialisable configuration (hashed into the id; key order irrelevant).

    Example:
        >>> Cell("yacht", 0, "mc_dropout", {"epochs_multiplier": 1}).cell_id
        'yacht/mc_dropout/split-00/2ea7d43f27f8'
    """

    dataset: str
    split: int
    method: str = "default"
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cell_id(self) -> str:
        """Stable id ``dataset/method/split-KK/<config hash>``."""
        return make_cell_id(self.dataset, self.split, self.config, method=self.method)


@dataclass(frozen=True, eq=False)
class CellGroup:
    """Cells computed together by one call of the cell function (e.g. the splits of one data
    set trained as one batched computation), each still written and resumed on its own.

    :func:`run_cells` forms groups from the PENDING cells only (``group_by``), so a cell function
    used with groups must give every cell the same records whatever group it is computed in. The
    function returns one entry per cell, in order: its records, or a :class:`CellError` for a
    cell that failed (the others of the group are kept).

    Attributes:
        cells: the cells, in order.
    """

    cells: tuple

    @property
    def cell_id(self) -> str:
        """``group:<first cell id>+<count - 1>``."""
        return f"group:{cell_id_of(self.cells[0])}+{len(self.cells) - 1}"


@dataclass(frozen=True)
class CellError:
    """The failure of one cell of a :class:`CellGroup` (recorded in ``failures.json``)."""

    error: str
    traceback: str = ""


def cell_id_of(cell: Any) -> str:
    """The id of a cell: its ``cell_id`` attribute or ``"cell_id"`` key.

    Raises:
        TypeError: the cell carries no id.

    Example:
        >>> cell_id_of({"cell_id": "a/0"})
        'a/0'
    """
    if isinstance(cell, Mapping) and "cell_id" in cell:
        return str(cell["cell_id"])
    cid = getattr(cell, "cell_id", None)
    if cid is None:
        raise TypeError(
            f"cannot find the id of cell {cell!r}: use comparisons.runner.executors.Cell, a mapping "
            "with a 'cell_id' key, an object with a cell_id attribute, or pass cell_id=..."
        )
    return str(cid)


@dataclass(frozen=True)
class CellOutcome:
    """Result of running one cell (success: ``records``; failure: ``error``/``traceback``).

    Attributes:
        index: position of the cell in the submitted list.
        records: the cell function's records, or None on failure.
        error: ``"ExcType: message"`` on failure, else None.
        traceback: formatted traceback on failure, else ``""``.
        wall_time_s: seconds spent in the cell function.
    """

    index: int
    records: list[dict] | None
    error: str | None = None
    traceback: str = ""
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the cell succeeded."""
        return self.error is None


def _call_cell(fn: CellFn, cell: Any, index: int) -> CellOutcome:
    """Run ``fn(cell)`` catching ordinary exceptions (KeyboardInterrupt etc. propagate)."""
    start = time.perf_counter()
    try:
        records = list(fn(cell))
    except Exception as exc:  # noqa: BLE001 - failures are isolated by design
        return CellOutcome(index, None, f"{type(exc).__name__}: {exc}",
                           traceback.format_exc(), time.perf_counter() - start)
    return CellOutcome(index, records, None, "", time.perf_counter() - start)


def _set_torch_threads(num_threads: int | None) -> int | None:
    """Set torch's intra-op threads (``None``: leave them); returns the previous setting."""
    if num_threads is None:
        return None
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    return previous


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCHDOG_PERIOD_S = 0.5


def _exit_with_parent(parent_pid: int | None) -> None:
    """Make this (worker) process die when its parent process does.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill it the moment its parent
    exits (strictly: the parent's thread that started it; the pool is started and consumed by
    the thread running the cells); everywhere, a daemon thread also polls ``os.getppid()`` and
    exits the process once the parent is gone (re-parented processes see another parent id).

    Args:
        parent_pid: the pid of the process that started the pool, which must be this
            process's parent ("spawn", "fork"); ``None`` watches whatever parent it has now
            (the fork server with "forkserver", which exits with the main process).
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no usable libc
            pass
    if parent_pid is None:
        parent_pid = os.getppid()
    elif os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watchdog() -> None:
        while True:
            time.sleep(_WATCHDOG_PERIOD_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def _init_worker(num_threads: int | None, parent_pid: int | None) -> None:
    """Pool worker initializer: die with the parent, ignore Ctrl-C, set torch threads.

    Ctrl-C in a terminal reaches the whole process group; the workers ignore it so that only
    the parent reacts (it stops the workers and reports), instead of every worker printing
    a traceback.
    """
    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_torch_threads(num_threads)


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Stop a process pool now: cancel queued cells and kill the running workers."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        try:
            proc.terminate()
        except (OSError, ValueError):  # pragma: no cover - already gone or closed
            pass
    deadline = time.monotonic() + 5.0
    for proc in processes:
        try:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():  # pragma: no cover - SIGTERM ignored
                proc.kill()
                proc.join(timeout=1.0)
        except (OSError, ValueError):  # pragma: no cover
            pass


class Executor(abc.ABC):
    """Runs cells and yields a :class:`CellOutcome` for each as it completes (any order)."""

    @abc.abstractmethod
    def run(self, fn: CellFn, cells: Sequence[Any]) -> Iterator[CellOutcome]:
        """Yield one outcome per cell of ``cells`` (``outcome.index`` is its position)."""


class LocalExecutor(Executor):
    """Run cells on this machine: in-process, or in a process pool when ``num_workers > 1``.

    Args:
        num_workers: 1 runs the cells one after another in this process (easiest to debug);
            more uses a :class:`concurrent.futures.ProcessPoolExecutor`.
        mp_context: multiprocessing start method for the pool (default ``"spawn"``, safe
            with threads and torch).
        threads_per_worker: torch intra-op threads in each worker (``None``: torch's default).
            The networks of the protocol are small: 1 thread per process, and as many
            processes as cores, is much faster than threads (which also oversubscribe a shared
            machine).

    Example:
        >>> ex = LocalExecutor(num_workers=2)  # doctest: +SKIP
    """

    def __init__(self, num_workers: int = 1, mp_context: str = "spawn",
                 threads_per_worker: int | None = 1) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}")
        if threads_per_worker is not None and (
            isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int)
            or threads_per_worker < 1
        ):
            raise ValueError(
                f"threads_per_worker must be a positive integer or None, got {threads_per_worker!r}"
            )
        self.num_workers = num_workers
        self.mp_context = mp_context
        self.threads_per_worker = threads_per_worker

    def __repr__(self) -> str:
        return (f"LocalExecutor(num_workers={self.num_workers}, "
                f"threads_per_worker={self.threads_per_worker})")

    def run(self, fn: CellFn, cells: Sequence[Any]) -> Iterator[CellOutcome]:
        """Yield outcomes as cells finish (in order when ``num_workers == 1``)."""
        if self.num_workers == 1:
            previous = _set_torch_threads(self.threads_per_worker)
            try:
                for i, cell in enumerate(cells):
                    yield _call_cell(fn, cell, i)
            finally:
                _set_torch_threads(previous)
            return
        ctx = multiprocessing.get_context(self.mp_context)
        parent_pid = None if ctx.get_start_method() == "forkserver" else os.getpid()
        pool = cf.ProcessPoolExecutor(max_workers=self.num_workers, mp_context=ctx,
                                      initializer=_init_worker,
                                      initargs=(self.threads_per_worker, parent_pid))
        futures = {}
        finished = False
        try:
            futures = {pool.submit(_call_cell, fn, cell, i): i for i, cell in enumerate(cells)}
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    yield fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. unpicklable result, dead worker
                    yield CellOutcome(i, None, f"{type(exc).__name__}: {exc}",
                                      traceback.format_exc())
            finished = True
        finally:
            for fut in futures:
                fut.cancel()
            if finished:
                pool.shutdown(wait=True, cancel_futures=True)
            else:  # interrupted or closed early: do not wait for the cells in flight
                _stop_pool(pool)


class RayExecutor(Executor):
    """Run each cell as a Ray remote task, on an existing cluster or a local instance.

    Args:
        address: ``None`` starts a local Ray instance (unless Ray is already initialised);
            ``"auto"`` joins the cluster running on this machine; ``"host:6379"`` joins the
            cluster whose head listens there; ``"ray://host:10001"`` connects through Ray
            Client. A ``host:port`` is probed at once (:func:`check_ray_address`).
        num_cpus: CPUs of a local instance (ignored when joining a cluster).
        num_cpus_per_cell: CPUs reserved by each cell's task.
        max_in_flight: at most this many tasks submitted at once (default: all).
        init_kwargs: extra keyword arguments for ``ray.init`` (e.g. ``include_dashboard``).
        shutdown: shut Ray down after the run if this executor started it.
        connect_timeout: seconds the probe of ``address`` waits for an answer.

    Raises:
        ValueError: Ray is not installed (``pip install .[distributed]``); nothing answers at
            ``address`` within ``connect_timeout`` seconds.

    Example:
        >>> ex = RayExecutor(num_cpus=1, init_kwargs={"include_dashboard": False})  # doctest: +SKIP
        >>> ex = RayExecutor(address="ray://head-node:10001")  # doctest: +SKIP
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 num_cpus_per_cell: float = 1, max_in_flight: int | None = None,
                 init_kwargs: Mapping[str, Any] | None = None, shutdown: bool = True,
                 connect_timeout: float = 3.0) -> None:
        self._ray = _import_ray()
        check_ray_address(address, connect_timeout)
        self.address = address
        self.num_cpus = num_cpus
        self.num_cpus_per_cell = num_cpus_per_cell
        self.max_in_flight = max_in_flight
        self.init_kwargs = dict(init_kwargs or {})
        self.shutdown = shutdown

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus!r})"

    def _ensure_init(self) -> bool:
        ray = self._ray
        if ray.is_initialized():
            return False
        kwargs = dict(self.init_kwargs)
        if self.address is None:
            kwargs.setdefault("num_cpus", self.num_cpus)
        else:
            kwargs["address"] = self.address
        ray.init(**kwargs)
        return True

    def run(self, fn: CellFn, cells: Sequence[Any]) -> Iterator[CellOutcome]:
        """Submit the cells as Ray tasks and yield outcomes as they complete."""
        ray = self._ray
        started = self._ensure_init()
        pending: dict[Any, int] = {}
        try:
            remote = ray.remote(num_cpus=self.num_cpus_per_cell, max_retries=0)(_call_cell)
            fn_ref = ray.put(fn)
            todo = list(enumerate(cells))
            todo.reverse()
            limit = self.max_in_flight or len(todo) or 1
            while todo or pending:
                while todo and len(pending) < limit:
                    i, cell = todo.pop()
                    pending[remote.remote(fn_ref, cell, i)] = i
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - worker crash, pickling error
                        yield CellOutcome(i, None, f"{type(exc).__name__}: {exc}",
                                          traceback.format_exc())
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001, S110 - best effort on interruption
                    pass
            if started and self.shutdown:
                ray.shutdown()


def _ray_address_target(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a concrete Ray address (``host:port``, ``ray://host:port``,
    ``[ipv6]:port``); ``None`` for ``"auto"``, ``"local"`` and the forms Ray resolves itself."""
    text = address.strip()
    client = text.startswith("ray://")
    if client:
        text = text[len("ray://"):]
    text = text.split("/", 1)[0]
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = (text, "10001") if client else ("", "")  # Ray Client's default port
    host = host.strip("[]")
    if not host or not port.isdigit():
        return None
    return host, int(port)


#: the HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, 3.4)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Refuse at once a Ray ``address`` where nothing answers, or where something that is not a
    Ray cluster answers: a TCP connection to its ``host:port`` within ``timeout`` seconds, then
    an HTTP/2 preface that a Ray GCS or Ray Client server (gRPC) answers with a SETTINGS frame
    (``ray.init`` would retry for minutes, repeating warnings). ``None``, ``"auto"`` and
    ``"local"`` are left to Ray.

    Raises:
        ValueError: no answer (refused, unreachable, unknown host or timed out), naming the
            address and the cause.

    Example:
        >>> check_ray_address(None)
        >>> check_ray_address("127.0.0.1:1", timeout=1)  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: Ray address '127.0.0.1:1': nothing answers at 127.0.0.1:1 ...
    """
    target = None if address is None else _ray_address_target(address)
    if target is None:
        return
    host, port = target
    if not 0 < port < 65536:
        raise ValueError(f"Ray address {address!r}: the port must be in 1..65535, got {port}")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            # a Ray cluster (its GCS, or the Ray Client server) speaks gRPC: to the HTTP/2
            # client preface it answers with a SETTINGS frame; anything else (a dashboard, a
            # web server) would keep ray.init retrying for minutes
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE)
            head = b""
            with contextlib.suppress(OSError):
                while len(head) < 9:
                    chunk = sock.recv(9 - len(head))
                    if not chunk:
                        break
                    head += chunk
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            cause = f"no answer within {timeout:g} s"
        else:
            cause = getattr(exc, "strerror", None) or str(exc)
        raise ValueError(
            f"Ray address {address!r}: nothing answers at {host}:{port} ({cause}); start the "
            f"cluster there (`ray start --head`), or leave the address out to start a local Ray "
            f"instance") from None
    if len(head) < 9 or head[3] != 0x04:
        raise ValueError(
            f"Ray address {address!r}: something answers at {host}:{port}, but not a Ray cluster "
            f"(no gRPC answer{': it sent ' + repr(head[:12]) if head else ''}); give the "
            f"address `ray start --head` printed (the GCS port, 6379 by default; not the "
            f"dashboard's), or leave the address out to start a local Ray instance")


def _import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        # a ValueError: choosing the Ray executor without its extra is the caller's choice
        raise ValueError(
            "executor 'ray' needs Ray, which is not installed: pip install '.[distributed]' "
            "(or use the local executor)"
        ) from exc
    return ray


@dataclass(frozen=True)
class RunSummary:
    """What :func:`run_cells` did.

    Attributes:
        done: cells run and written in this call.
        skipped: cells already in the store.
        failed: cells whose function raised (or returned invalid records).
        failed_cells: ids of the failed cells.
    """

    done: int
    skipped: int
    failed: int
    failed_cells: tuple[str, ...] = ()


class RunInterrupted(KeyboardInterrupt):
    """:func:`run_cells` was interrupted (Ctrl-C); the finished cells are saved.

    ``str()`` is one line for the user, e.g. ``"interrupted: 7 of 20 cells finished (4 already
    done before this run) in out/uci; re-run the same command to resume"``. A subclass of
    :class:`KeyboardInterrupt`, so code that handles Ctrl-C keeps working.

    Attributes:
        finished: cells finished in the folder (before and during this run).
        total: cells of the run.
        done_before: cells already finished when the run started.
        out: the results folder.
    """

    def __init__(self, finished: int, total: int, done_before: int, out: Any) -> None:
        self.finished, self.total, self.done_before, self.out = (finished, total, done_before,
                                                                 out)
        super().__init__(
            f"interrupted: {finished} of {total} cells finished ({done_before} already done "
            f"before this run) in {out}; re-run the same command to resume"
        )

    def __reduce__(self):
        return (type(self), (self.finished, self.total, self.done_before, self.out))


def run_cells(cells: Sequence[Any], fn: CellFn, store: ResultsStore,
              executor: Executor | None = None,
              cell_id: Callable[[Any], str] | None = None,
              progress: bool = True, add_wall_time: bool = True,
              group_by: Callable[[Any], Any] | None = None) -> RunSummary:
    """Run the unfinished cells, writing each to ``store`` as soon as it completes.

    In order: takes the results folder's lock (:meth:`ResultsStore.lock`, held until the
    end), checks the store's settings (:meth:`ResultsStore.check_settings`), moves damaged
    cell files aside (:meth:`ResultsStore.quarantine_damaged`, so their cells run again),
    then runs every cell without a verified file.

    Args:
        cells: the cells (duplicated ids are rejected).
        fn: cell function ``fn(cell) -> list[dict]`` returning tidy records.
        store: a :class:`~comparisons.runner.store.ResultsStore` (give it ``settings`` to
            keep one configuration per folder).
        executor: default ``LocalExecutor()``.
        cell_id: maps a cell to its id (default :func:`cell_id_of`).
        progress: show a tqdm progress bar over cells.
        add_wall_time: add ``wall_time_s`` to records that lack it (a group's time divided by
            its size).
        group_by: ``cell -> key`` (hashable; ``None`` for a cell that runs alone): the pending
            cells of one key run as ONE :class:`CellGroup` (``fn(group)`` returns one entry per
            cell, records or :class:`CellError`); every cell is still written on its own.

    Returns:
        A :class:`RunSummary` (done, skipped, failed, failed_cells).

    Raises:
        ValueError: duplicated cell ids.
        ResultsFolderBusy: another run is writing into the store's folder (nothing ran).
        SettingsMismatch: the folder holds results made with other settings (nothing ran).
        RunInterrupted: Ctrl-C (KeyboardInterrupt) during the run; workers are stopped, the
            finished cells are saved, and a re-run resumes.

    Example:
        >>> run_cells(cells, fn, ResultsStore("out"), LocalExecutor())  # doctest: +SKIP
        RunSummary(done=6, skipped=0, failed=0, failed_cells=())
    """
    executor = executor if executor is not None else LocalExecutor()
    get_id = cell_id or cell_id_of
    if group_by is not None:
        group_by = _checked_group_by(group_by)
    cells = list(cells)
    ids = [get_id(c) for c in cells]
    seen: set[str] = set()
    dups = sorted({i for i in ids if i in seen or seen.add(i)})
    if dups:
        raise ValueError(f"duplicated cell ids: {dups[:5]}")
    with store.writing():
        finished_ids = store.done_cells()
        todo = [k for k, cid in enumerate(ids) if cid not in finished_ids]
        skipped = done_before = len(cells) - len(todo)
        done = 0
        failed: list[str] = []
        bar = tqdm(total=len(cells), initial=skipped, desc="cells", unit="cell",
                   disable=not progress)
        items, members = _work_items([cells[k] for k in todo], group_by)
        outcomes = executor.run(fn, items)
        try:
            for outcome in outcomes:
                for cell_pos, records, error, tb, wall in _member_results(
                        outcome, members[outcome.index], isinstance(items[outcome.index],
                                                                    CellGroup)):
                    cid = ids[todo[cell_pos]]
                    if error is None:
                        try:
                            records = validate_records(records or [])
                            if add_wall_time:
                                for rec in records:
                                    rec.setdefault("wall_time_s", wall)
                            store.write_cell(cid, records)
                            done += 1
                        except FileExistsError:  # finished meanwhile by another writer
                            skipped += 1
                        except (TypeError, ValueError) as exc:
                            error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
                    if error is not None:
                        store.record_failure(cid, error, tb, wall_time_s=wall)
                        failed.append(cid)
                        bar.set_postfix(failed=len(failed))
                    bar.update(1)
        except KeyboardInterrupt as exc:
            if isinstance(exc, RunInterrupted):
                raise
            raise RunInterrupted(done + skipped, len(cells), done_before, store.out) from exc
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:  # stop workers / cancel Ray tasks now, also on interruption
                close()
            bar.close()
    return RunSummary(done=done, skipped=skipped, failed=len(failed),
                      failed_cells=tuple(sorted(failed)))


def _checked_group_by(group_by):
    if not callable(group_by):
        raise ValueError(f"group_by must be a callable cell -> key, got {group_by!r}")
    return group_by


def _work_items(cells: list, group_by) -> tuple[list, list[list[int]]]:
    """The executor's work items and, per item, the positions of its cells in ``cells``:
    one item per cell, or one :class:`CellGroup` per ``group_by`` key (first-seen order)."""
    if group_by is None:
        return cells, [[k] for k in range(len(cells))]
    keyed: dict[Any, list[int]] = {}
    singles: list[list[int]] = []
    order: list[Any] = []
    for k, cell in enumerate(cells):
        key = group_by(cell)
        if key is None:
            singles.append([k])
            order.append(("single", len(singles) - 1))
        else:
            if key not in keyed:
                keyed[key] = []
                order.append(("group", key))
            keyed[key].append(k)
    items, members = [], []
    for kind, ref in order:
        pos = singles[ref] if kind == "single" else keyed[ref]
        items.append(cells[pos[0]] if kind == "single" else
                     CellGroup(tuple(cells[k] for k in pos)))
        members.append(pos)
    return items, members


def _member_results(outcome: CellOutcome, positions: list[int], grouped: bool):
    """``(position, records, error, traceback, wall_time_s)`` per cell of one outcome."""
    if not grouped:
        yield positions[0], outcome.records, outcome.error, outcome.traceback, outcome.wall_time_s
        return
    wall = outcome.wall_time_s / len(positions)
    entries = outcome.records
    if outcome.error is None and (entries is None or len(entries) != len(positions)):
        got = "nothing" if entries is None else f"{len(entries)} entries"
        outcome = CellOutcome(outcome.index, None, f"ValueError: the cell function returned "
                              f"{got} for a group of {len(positions)} cells")
    for j, pos in enumerate(positions):
        if outcome.error is not None:
            yield pos, None, outcome.error, outcome.traceback, wall
        elif isinstance(entries[j], CellError):
            yield pos, None, entries[j].error, entries[j].traceback, wall
        else:
            yield pos, entries[j], None, "", wall
