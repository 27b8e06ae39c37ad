"""Celery side of webhooks (production): a periodic sweep that makes every delivery attempt that is due.

The retry schedule is not kept in the broker but in ``webhook_deliveries`` (append-only; see
``service.webhooks``): attempt ``k + 1`` is due ``RETRY_DELAYS[k]`` seconds after attempt ``k`` (10 s, 30 s, 1 min,
5 min ... 10 h: exponential backoff), so a lost message, a restarted worker or a broker outage loses nothing: the
next sweep finds what is due. The task itself is retried by Celery, with exponential backoff, only when the
database is unreachable.

Register it with beat by adding ``DISPATCH_WEBHOOKS_SCHEDULE`` to ``beat_schedule`` in ``workers/celery_app.py``
and ``"workers.webhook_tasks"`` to the app's ``include``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from sqlalchemy.exc import OperationalError

from service import webhooks
from service.runtime import Runtime
from workers.tasks import MAX_RETRIES, get_runtime, retry_delay

__all__ = ["DISPATCH_WEBHOOKS", "DISPATCH_WEBHOOKS_SCHEDULE", "dispatch_webhooks", "run_dispatch"]

log = logging.getLogger(__name__)

DISPATCH_WEBHOOKS = "workers.webhook_tasks.dispatch_webhooks"
SWEEP_INTERVAL = 5.0  # seconds between two sweeps (the shortest retry delay is 10 s)
DISPATCH_WEBHOOKS_SCHEDULE: dict[str, Any] = {
    "dispatch-webhooks": {
        "task": DISPATCH_WEBHOOKS,
        "schedule": SWEEP_INTERVAL,
        # A sweep nobody ran in time is useless: the next one does the same work.
        "options": {"expires": SWEEP_INTERVAL * 4},
    }
}


def run_dispatch(runtime: Runtime, *, limit: int = 100) -> int:
    """One sweep over due deliveries; returns how many were delivered (2xx)."""
    delivered = webhooks.dispatch_due(runtime.engine, runtime.settings, limit=limit)
    if delivered:
        log.info("webhooks delivered", extra={"delivered": delivered})
    return delivered


def _dispatch_webhooks(self: Any) -> int:
    """Beat's periodic task: make every delivery attempt that is due."""
    try:
        return run_dispatch(get_runtime())
    except OperationalError as exc:
        log.warning("database unavailable while delivering webhooks (retry %d): %s", self.request.retries + 1, exc.orig)
        raise self.retry(exc=exc, countdown=retry_delay(self.request.retries), max_retries=MAX_RETRIES) from None


# Celery is untyped: registering by call (not decorator) keeps the function above typed.
dispatch_webhooks = shared_task(name=DISPATCH_WEBHOOKS, bind=True, acks_late=True, ignore_result=True)(
    _dispatch_webhooks
)
