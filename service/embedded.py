"""The in-process sealer of the embedded default (no broker): a daemon thread calling ``sealing.seal_pending``.

Owns: the polling loop (every ``min(batch_max_age / 4, 0.25)`` seconds), its error handling (log, keep going)
and, when several processes serve the same data dir (gunicorn workers), which one seals: the holder of an
exclusive ``flock`` on a lock file. The others retry the lock now and then, so if the sealing process dies its
lock is released with it and another takes over. Sealing stays correct even if two sealers ran:
``seal_batch`` takes the ledger lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock).
Must not import: Flask.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import IO

from service import metrics
from service.background import Loop
from service.core.formats import utc_now
from service.maintenance import MAINTENANCE_INTERVAL, run_maintenance
from service.runtime import Runtime
from service.sealing import seal_pending
from service.timestamping import TimestampThread
from service.webhooks import WebhookDispatcher
from service.witnessing import WitnessThread

log = logging.getLogger(__name__)

MAX_INTERVAL = 0.25  # seconds between two looks at the pending queue
LOCK_RETRY = 1.0  # seconds between two attempts to become the sealing process


def poll_interval(batch_max_age: float) -> float:
    return min(batch_max_age / 4, MAX_INTERVAL)


class Sealer(Loop):
    """Seals due batches until ``stop()``; never dies of an error in one round.

    ``lock_path``: when given, seal only while holding an exclusive lock on that file (one sealer among the
    processes sharing it).
    """

    what = "sealing"

    def __init__(self, runtime: Runtime, *, lock_path: Path | None = None, interval: float | None = None) -> None:
        super().__init__(
            "evidence-sealer", interval if interval is not None else poll_interval(runtime.settings.batch_max_age)
        )
        self.runtime = runtime
        self.lock_path = lock_path
        self._lock_file: IO[bytes] | None = None
        self._next_maintenance = 0.0
        # RFC 3161 tokens are fetched after sealing, outside the sealing transaction, by the sealing process only.
        self.timestamper = TimestampThread(runtime.engine, runtime.settings) if runtime.settings.tsa else None
        # Webhook deliveries (with retries persisted in the delivery log), also by the sealing process only.
        self.dispatcher = WebhookDispatcher(runtime.engine, runtime.settings)
        # Witnesses (SPEC §9) are asked after each seal, outside the sealing transaction, by the sealing process.
        policy = runtime.settings.witness_policy
        self.witnesses = (
            WitnessThread(
                runtime.engine,
                policy,
                wait=runtime.settings.witness_wait,
                timeout=runtime.settings.witness_timeout,
            )
            if policy is not None and policy.witnesses
            else None
        )

    def _helpers(self) -> list[Loop]:
        return [t for t in (self.timestamper, self.witnesses, self.dispatcher) if t is not None]

    def start_loop(self) -> bool:
        if self.lock_path is not None and not self._acquire_lock():
            return False
        log.info("sealer started (every %.3f s)", self.interval)
        for helper in self._helpers():
            helper.start()
        self._next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
        return True

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self._lock_file is not None:
                self._lock_file.close()  # releases the flock

    def after_stop(self) -> None:
        for helper in self._helpers():
            helper.stop()

    def step(self) -> None:
        self.seal_once()
        if time.monotonic() >= self._next_maintenance:
            self.maintain_once()
            self._next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL

    def seal_once(self) -> None:
        """One round: seal every batch that is due; log errors instead of raising."""
        settings = self.runtime.settings
        try:
            results = seal_pending(
                self.runtime.engine,
                self.runtime.signer,
                max_leaves=settings.batch_max_size,
                max_age=settings.batch_max_age,
                cosigners=self.runtime.cosigners,
            )
        except Exception:
            self.errors += 1
            log.exception("sealing failed; retrying in %.3f s", self.interval)
            return
        metrics.observe_batches(results)
        if results:
            for helper in (self.timestamper, self.witnesses):
                if helper is not None:
                    helper.poke()
        for r in results:
            log.info("sealed batch %d: %d leaves, ledger size %d", r.seq, r.size, r.ledger_size)

    def maintain_once(self) -> None:
        """One round of ``service.maintenance`` (expired idempotency answers, WAL truncation); errors are logged."""
        try:
            run_maintenance(self.runtime.engine, utc_now())
        except Exception:
            log.exception("maintenance failed; retrying in %.0f s", MAINTENANCE_INTERVAL)

    def _acquire_lock(self) -> bool:
        """Wait until this process holds the sealer lock; False if stopped first."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock; the ledger lock still keeps sealing safe
            return True
        assert self.lock_path is not None
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.lock_path, "ab")  # noqa: SIM115 - held open for the thread's life
        while not self.stopping:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.pause(LOCK_RETRY)
                continue
            self._lock_file = f
            log.info("process %d is the sealer (lock %s)", os.getpid(), self.lock_path)
            return True
        f.close()
        return False
