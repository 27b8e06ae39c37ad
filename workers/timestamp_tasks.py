"""Celery tasks for RFC 3161 time-stamps: thin adapters over ``service.timestamping``.

- ``timestamp_entry(seq)``: sent after a batch is sealed; asks every configured TSA lacking a token for ledger
  entry ``seq``. A ``TimestampError`` (TSA down, 503, refused or unverifiable token) is retried automatically
  with exponential backoff and full jitter, up to ``MAX_RETRIES`` times; after that the periodic sweep keeps
  trying, so a long TSA outage only delays tokens.
- ``timestamp_pending()``: the periodic sweep (beat): every entry still lacking a token, oldest first.

Tasks run outside any sealing transaction and never hold the ledger lock. Both reuse the worker process's
``Runtime`` from ``workers.tasks.get_runtime``. Registered with ``shared_task`` (like ``workers.tasks``), so they
bind to ``workers.celery_app.app`` once that app includes this module.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from service import timestamping
from service.core.errors import TimestampError
from workers.tasks import get_runtime

__all__ = ["TIMESTAMP_ENTRY", "TIMESTAMP_PENDING", "timestamp_entry", "timestamp_pending"]

log = logging.getLogger(__name__)

TIMESTAMP_ENTRY = "workers.timestamp_tasks.timestamp_entry"
TIMESTAMP_PENDING = "workers.timestamp_tasks.timestamp_pending"

MAX_RETRIES = 10
RETRY_BACKOFF_MAX = 600  # seconds: 1, 2, 4, ... capped at 10 minutes, each randomised (jitter)


def _timestamp_entry(seq: int) -> int:
    """Time-stamp ledger entry ``seq`` with every configured TSA lacking a token; return the tokens stored.

    :raise TimestampError: some TSA failed (retried by Celery with backoff).
    """
    runtime = get_runtime()
    stored = timestamping.timestamp_batch(runtime.engine, runtime.settings, seq)
    return len(stored)


def _timestamp_pending() -> int:
    """Sweep: time-stamp entries still lacking tokens; failures are logged and left for the next sweep."""
    runtime = get_runtime()
    report = timestamping.timestamp_pending(runtime.engine, runtime.settings)
    for seq, tsa, reason in report.failed:
        log.warning("time-stamp of ledger entry %d by %s failed: %s", seq, tsa, reason)
    return len(report.stored)


# Celery is untyped: registering by call (not decorator) keeps the functions above typed.
timestamp_entry: Any = shared_task(
    name=TIMESTAMP_ENTRY,
    autoretry_for=(TimestampError,),
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
    acks_late=True,
    ignore_result=True,
)(_timestamp_entry)

timestamp_pending: Any = shared_task(name=TIMESTAMP_PENDING, acks_late=True, ignore_result=True)(_timestamp_pending)
