"""Group commit of single deposits: many request threads, one write transaction.

Owns: ``GroupCommitter``. Each request thread ``submit``s one digest and blocks until the transaction holding
its row has COMMITTED (it then gets its ``Deposit``) or has failed (it then gets the transaction's error):
"acknowledged = committed" holds for every row. A per-process writer thread takes the first waiting request,
drains whatever else is queued at that moment (no artificial wait) up to ``max_rows``, and inserts them all in
ONE transaction (``sealing.record_deposits_committed``: rows of several tenants, one received time; on
PostgreSQL one prepared statement in autocommit, a single round trip). A failed transaction fails every
request of its group; nothing is retried and the writer goes on with the next group.

Fork safety: the writer thread is started lazily by the first ``submit`` of a process (keyed by
``os.getpid()``); a forked child (gunicorn with preload) starts its own, with a fresh queue.
Must not import: Flask, Celery, the API or workers.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
import weakref
from dataclasses import dataclass
from typing import Final

from sqlalchemy.engine import Engine

from service.core.errors import Pushback
from service.core.formats import utc_now
from service.sealing import Deposit, record_deposits_committed

__all__ = ["GroupCommitter", "GroupStats"]

log = logging.getLogger(__name__)

RETRY_AFTER = 5  # seconds a client is told to wait after a deposit refused for shutdown or timeout

_QUEUED: Final = 0  # waiting in the queue; may still be withdrawn (timeout, stop)
_TAKEN: Final = 1  # in a group whose transaction is running: its outcome is that transaction's
_DONE: Final = 2  # result or error set (or withdrawn before it was taken)


class _Latch:
    """A one-shot ``threading.Event`` made of one C-level lock: ``set`` is a single ``release`` (no Condition, no
    notify loop: waking each waiting request was 16% of the writer's CPU with Events). Set exactly once."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        if self._lock.acquire(timeout=timeout):
            self._lock.release()  # stays set for any later wait or is_set
            return True
        return False

    def is_set(self) -> bool:
        return not self._lock.locked()


class _Request:
    __slots__ = ("tenant_id", "sha256", "label", "sm3", "state", "done", "result", "error")

    def __init__(self, tenant_id: int, sha256: bytes, label: str | None, sm3: bytes | None = None) -> None:
        self.tenant_id = tenant_id
        self.sha256 = sha256
        self.label = label
        self.sm3 = sm3
        self.state = _QUEUED
        self.done = _Latch()
        self.result: Deposit | None = None
        self.error: BaseException | None = None


@dataclass(frozen=True)
class GroupStats:
    """Counters of this process's writer: committed groups and rows, failed groups and rows, largest group."""

    groups: int = 0
    rows: int = 0
    failed_groups: int = 0
    failed_rows: int = 0
    largest: int = 0


_STOP: Final = object()  # queue sentinel: the writer finishes what was queued before it, then exits

# Every committer, so a forked child can forget its parent's writer thread, queue and lock (see _after_fork).
_ALL: weakref.WeakSet[GroupCommitter] = weakref.WeakSet()


class GroupCommitter:
    """Commits single deposits in groups: one transaction for every request waiting when the writer is free."""

    def __init__(self, engine: Engine, *, max_rows: int = 1000) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, found {max_rows}")
        self.engine = engine
        self.max_rows = max_rows
        self._init_process_state()
        _ALL.add(self)

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._stopping = False
        self._stats = GroupStats()
        self._in_flight = 0

    # --- request side -----------------------------------------------------------------------------

    def submit(
        self, tenant_id: int, sha256: bytes, label: str | None, timeout: float, *, sm3: bytes | None = None
    ) -> Deposit:
        """Record one pending evidence (with the file's SM3 if given); return it once its transaction has committed.

        :raise: the group's transaction error (a database error: nothing of that group was stored);
            ``Pushback`` when the committer is stopped, or when ``timeout`` seconds passed (if the request was
            still queued it was withdrawn and is not stored; if its transaction was running, the outcome is
            unknown to this caller and it was not acknowledged).
        """
        request = _Request(tenant_id, sha256, label, sm3)
        with self._lock:
            if self._pid != os.getpid():  # forked without the at-fork hook having run (should not happen)
                self._reset_locked()
            if self._stopping:
                raise Pushback("the server is shutting down; the deposit was not recorded", RETRY_AFTER)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"evidence-group-commit-{os.getpid()}", daemon=True
                )
                self._thread.start()
            self._queue.put(request)
        if not request.done.wait(timeout):
            with self._lock:
                if request.state == _QUEUED:
                    request.state = _DONE
                    raise Pushback(
                        f"the deposit waited {timeout:g} s for the database and was withdrawn: not recorded",
                        RETRY_AFTER,
                    )
            if not request.done.is_set():
                raise Pushback(
                    f"the database did not confirm the deposit within {timeout:g} s; it was not acknowledged "
                    "(it may be stored unacknowledged: submit again)",
                    RETRY_AFTER,
                )
        if request.error is not None:
            own = _own_copy(request.error)
            if own is request.error:
                raise own
            raise own from request.error  # the cause carries the writer's traceback
        assert request.result is not None
        return request.result

    def stats(self) -> GroupStats:
        with self._lock:
            return self._stats

    def waiting(self) -> int:
        """How many requests are queued and not yet taken by the writer (approximate while others submit)."""
        return self._queue.qsize()

    def in_flight(self) -> int:
        """How many requests are in the group whose transaction is running now (0 when the writer is idle)."""
        with self._lock:
            return self._in_flight

    def running(self) -> bool:
        """Whether this process's writer thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # --- lifecycle --------------------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new deposits, commit those already queued, stop the writer.

        Whatever the writer has not taken within ``timeout`` seconds (it is stuck on the database) is failed
        with ``Pushback``: no queued request is left waiting. A group already in its transaction keeps its
        outcome (its requests wait for it, up to their own timeout). Idempotent.
        """
        with self._lock:
            self._stopping = True
            thread = self._thread
            if thread is not None and thread.is_alive():
                self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)
        leftover: list[_Request] = []
        with self._lock:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Request) and item.state == _QUEUED:
                    item.state = _DONE
                    leftover.append(item)
            if thread is not None and thread.is_alive():
                self._queue.put(_STOP)  # the drain above took it: the writer exits once its transaction ends
        for request in leftover:
            request.error = Pushback("the server stopped before the deposit was recorded", RETRY_AFTER)
            request.done.set()

    def _reset_locked(self) -> None:
        """In a forked child: the parent's thread does not exist here and its queued requests are not ours."""
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._pid = os.getpid()
        self._stats = GroupStats()

    # --- writer side ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items = [first]
            stop_after = False
            while len(items) < self.max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                items.append(item)
            group: list[_Request] = []
            with self._lock:
                for item in items:
                    assert isinstance(item, _Request)
                    if item.state == _QUEUED:  # not withdrawn by a timeout or stop()
                        item.state = _TAKEN
                        group.append(item)
                self._in_flight = len(group)
            if group:
                self._commit(group)
            if stop_after:
                return

    def _commit(self, group: list[_Request]) -> None:
        try:
            deposits = record_deposits_committed(
                self.engine, [(r.tenant_id, r.sha256, r.label) for r in group], utc_now(), sm3=[r.sm3 for r in group]
            )
            # It returned: the group's transaction committed. Only now is anything acknowledged.
        except BaseException as exc:  # noqa: BLE001 - every request of the group gets the error; the writer goes on
            log.warning("group commit of %d deposits failed: %s", len(group), exc.__class__.__name__, exc_info=exc)
            with self._lock:
                s = self._stats
                self._stats = GroupStats(s.groups, s.rows, s.failed_groups + 1, s.failed_rows + len(group), s.largest)
                self._in_flight = 0
            for request in group:
                request.error = exc
                request.state = _DONE
                request.done.set()
            return
        with self._lock:
            s = self._stats
            self._stats = GroupStats(
                s.groups + 1, s.rows + len(group), s.failed_groups, s.failed_rows, max(s.largest, len(group))
            )
            self._in_flight = 0
        for request, deposit in zip(group, deposits, strict=True):
            request.result = deposit
            request.state = _DONE
            request.done.set()


def _own_copy(exc: BaseException) -> BaseException:
    """A copy of a group's error for one waiting thread (the threads raise it at once: one traceback each)."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception class that cannot be copied: raise the shared one
        return exc


def _after_fork() -> None:
    for committer in list(_ALL):
        committer._init_process_state()
        # _init_process_state made a new lock and queue: the parent's may have been held or filled at fork.


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
