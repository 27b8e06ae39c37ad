"""Housekeeping that keeps the database from growing without bound: expired idempotency answers, the SQLite WAL.

Owns: ``run_maintenance`` (one round: forget ``Idempotency-Key`` answers whose TTL is over, then on SQLite a
``wal_checkpoint(TRUNCATE)`` so the WAL file shrinks back to nothing once every reader has moved on). The embedded
sealer runs a round every ``MAINTENANCE_INTERVAL`` seconds; production runs it from Celery beat
(``workers.tasks``). PostgreSQL's side (autovacuum of the ``pending`` queue) is a storage parameter set by
migration 0002.
Must not import: Flask or Celery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from service.storage import ledger
from service.storage.codec import to_us

__all__ = ["MAINTENANCE_INTERVAL", "MaintenanceResult", "run_maintenance"]

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 60.0  # seconds between rounds (embedded sealer, Celery beat)


@dataclass(frozen=True)
class MaintenanceResult:
    idempotency_expired: int
    wal_checkpointed: bool  # SQLite only: the WAL was checkpointed completely and truncated


def run_maintenance(engine: Engine, now: datetime) -> MaintenanceResult:
    """One round of housekeeping (see the module docstring); safe to run at any time, from any process."""
    with engine.begin() as conn:
        expired = ledger.delete_expired_idempotency(conn, to_us(now))
    truncated = False
    if engine.dialect.name == "sqlite":
        truncated = ledger.checkpoint_sqlite_wal(engine)
    if expired:
        log.info("maintenance: forgot %d expired idempotency answers", expired)
    return MaintenanceResult(expired, truncated)
