"""The Celery application of the production deployment: built from ``Settings``, no Flask, no result backend.

Owns: ``make_celery(settings)`` (broker, delivery guarantees, the beat schedule) and the module-level ``app``
that ``celery -A workers.celery_app worker|beat`` loads. ``app`` is built lazily from the environment
(``Settings.from_env(os.environ)``) on first attribute access, so importing this module reads nothing.

Delivery: the database is the queue (``pending`` rows), not the broker. A message only says "look for
work"; losing one, or running one twice, seals nothing twice (``service.sealing.seal_batch`` holds the
ledger lock and the unique keys are the last defence). Hence: acks late, re-delivery when a worker dies, one
message prefetched at a time, results ignored (status lives in PostgreSQL), and beat messages that expire
instead of piling up while the broker or the workers are away.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from service.config import Settings
from service.maintenance import MAINTENANCE_INTERVAL

__all__ = ["SEAL_NOW", "SEAL_PENDING", "beat_interval", "make_celery", "send_seal_now"]

SEAL_PENDING = "workers.tasks.seal_pending"
SEAL_NOW = "workers.tasks.seal_now"
MAINTAIN = "workers.tasks.maintain"
# Defined in workers.timestamp_tasks (RFC 3161, SPEC §5); named here so the app needs no import of it.
TIMESTAMP_ENTRY = "workers.timestamp_tasks.timestamp_entry"
TIMESTAMP_PENDING = "workers.timestamp_tasks.timestamp_pending"
# Defined in workers.witness_tasks (SPEC §9).
WITNESS_CHECKPOINT = "workers.witness_tasks.witness_checkpoint"
WITNESS_SWEEP = "workers.witness_tasks.witness_sweep"
WITNESS_SWEEP_INTERVAL = 5.0  # seconds: a witness that was down catches up at most this long after it is back
TIMESTAMP_SWEEP_INTERVAL = 60.0  # seconds: catches entries whose timestamp_entry message ran out of retries

DEFAULT_QUEUE = "evidence"
# The one variable read outside service.config: it names a broker queue, not a setting of the ledger.
QUEUE_ENV = "EVIDENCE_CELERY_QUEUE"

MIN_BEAT_INTERVAL = 0.5  # seconds: a "nothing to do" check costs two indexed queries
MAX_BEAT_INTERVAL = 30.0


def beat_interval(settings: Settings) -> float:
    """Seconds between two ``seal_pending`` runs: half the batch age limit, between 0.5 s and 30 s.

    Half, so that a leaf waits at most about ``1.5 × batch_max_age`` before its batch is sealed.
    """
    return min(MAX_BEAT_INTERVAL, max(MIN_BEAT_INTERVAL, settings.batch_max_age / 2))


def make_celery(settings: Settings, *, queue: str = DEFAULT_QUEUE) -> Celery:
    """A Celery app for ``settings.broker_url`` (Redis or AMQP) with the sealing beat schedule.

    Every task goes to ``queue``, so deployments (or test runs) sharing one broker stay apart.

    :raise ValueError: the settings have no broker (the embedded deployment seals in-process).
    """
    if settings.broker_url is None:
        raise ValueError("EVIDENCE_BROKER_URL is not set: the embedded deployment seals in-process")
    interval = beat_interval(settings)
    app = Celery(
        "evidence",
        broker=settings.broker_url,
        include=["workers.tasks", "workers.timestamp_tasks", "workers.webhook_tasks", "workers.witness_tasks"],
        set_as_current=False,
    )
    schedule: dict[str, dict[str, object]] = {
        "seal-pending": {
            "task": SEAL_PENDING,
            "schedule": interval,
            # A tick nobody picked up in time is useless: the next one does the same work.
            "options": {"expires": max(10.0, interval * 10)},
        },
    }
    # Housekeeping (service.maintenance): expired Idempotency-Key answers.
    schedule["maintain"] = {"task": MAINTAIN, "schedule": MAINTENANCE_INTERVAL, "options": {"expires": 60.0}}
    # Webhook deliveries due now (first attempts and retries with backoff), from the delivery log.
    schedule["dispatch-webhooks"] = {
        "task": "workers.webhook_tasks.dispatch_webhooks",
        "schedule": 5.0,
        "options": {"expires": 20.0},
    }
    if settings.tsa:
        schedule["timestamp-pending"] = {
            "task": TIMESTAMP_PENDING,
            "schedule": TIMESTAMP_SWEEP_INTERVAL,
            "options": {"expires": TIMESTAMP_SWEEP_INTERVAL},
        }
    if settings.witness_policy is not None and settings.witness_policy.witnesses:
        # A witness that was down catches up (the sealing task also asks after each seal).
        schedule["witness-sweep"] = {
            "task": WITNESS_SWEEP,
            "schedule": WITNESS_SWEEP_INTERVAL,
            "options": {"expires": WITNESS_SWEEP_INTERVAL * 2},
        }
    app.conf.update(
        # No result backend: evidence status is read from the database.
        result_backend=None,
        task_ignore_result=True,
        # A task is acknowledged after it ran; a worker killed mid-task (SIGKILL, OOM) gets it re-delivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Keep trying to reach the broker at start-up and after losing it (Redis/RabbitMQ restarts).
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        # Redis: an unacknowledged message comes back after this many seconds (a sealing run is short).
        broker_transport_options={"visibility_timeout": 300},
        # On losing the broker, stop the tasks running with late acks (they go back to the queue): a sealing
        # run that is cut off rolls back and is simply done again (Celery 6's default; no warning).
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_default_queue=queue,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        beat_schedule=schedule,
    )
    return app


def send_seal_now(app: Celery) -> None:
    """Ask a worker to seal the full batches now (the API calls this when ``batch_max_size`` leaves wait).

    Fire and forget: if the message is lost, the next beat tick seals the same rows.
    """
    app.send_task(SEAL_NOW, expires=60)


def __getattr__(name: str) -> Any:
    # PEP 562: `app` (and `celery`, which the Celery CLI also looks for) are made on first access.
    if name in ("app", "celery"):
        global _app
        if _app is None:
            queue = os.environ.get(QUEUE_ENV, "").strip() or DEFAULT_QUEUE
            _app = make_celery(Settings.from_env(os.environ), queue=queue)
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_app: Celery | None = None
