"""Celery tasks: thin adapters over ``service.sealing.seal_pending`` (the one sealing function).

Tasks take no evidence ids: they re-read the ``pending`` table, and "nothing to do" is the normal outcome.
Only transient database errors (``OperationalError``: server restarting, connection lost) are retried, with
exponential backoff; anything else is a bug, logged and counted, and the next beat tick tries again.

Each worker process has one ``Runtime`` (engine + signing key), built on first use from the environment. The
signing key is loaded from ``EVIDENCE_SIGNING_KEY_FILE`` and never created here: production provisions it
(``evidence keys init``).
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from celery import shared_task, signals
from sqlalchemy.exc import OperationalError

from service import metrics, sealing
from service.config import Settings
from service.core.formats import utc_now
from service.logs import configure_logging
from service.maintenance import run_maintenance
from service.runtime import Runtime
from workers.celery_app import MAINTAIN, SEAL_NOW, SEAL_PENDING, TIMESTAMP_ENTRY, WITNESS_CHECKPOINT

__all__ = ["get_runtime", "retry_delay", "run_sealer", "seal_now", "seal_pending", "use_runtime"]

log = logging.getLogger(__name__)

MAX_RETRIES = 8
_runtime: Runtime | None = None


def use_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` this process's runtime (tests), or forget it (None) so the next task builds one."""
    global _runtime
    _runtime = runtime


def get_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use, with its key published.

    :raise ConfigError: bad settings or no usable signing key file.
    """
    global _runtime
    if _runtime is None:
        runtime = Runtime.from_settings(Settings.from_env(os.environ))
        runtime.prepare_signing()  # serialised by the ledger lock: workers starting together publish once
        _runtime = runtime
    return _runtime


def retry_delay(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: 0.5, 1, 2, 4... capped at 30, with ±25 % jitter."""
    base = min(30.0, 0.5 * 2.0 ** min(retries, 16))
    return base * random.uniform(0.75, 1.25)


def run_sealer(runtime: Runtime, *, force: bool = False) -> list[sealing.SealResult]:
    """Seal every due batch (all pending evidence with ``force``); return the batches sealed."""
    settings = runtime.settings
    results = sealing.seal_pending(
        runtime.engine,
        runtime.signer,
        max_leaves=settings.batch_max_size,
        max_age=settings.batch_max_age,
        force=force,
        cosigners=runtime.cosigners,
    )
    metrics.observe_batches(results)
    for r in results:
        log.info(
            "sealed batch",
            extra={
                "seq": r.seq,
                "size": r.size,
                "ledger_size": r.ledger_size,
                "wait_s": (r.sealed - r.oldest_received).total_seconds(),
            },
        )
    return results


def _seal(task: Any, force: bool) -> int:
    try:
        runtime = get_runtime()
        results = run_sealer(runtime, force=force)
    except OperationalError as exc:
        metrics.record_error("seal_db")
        log.warning("database unavailable while sealing (retry %d): %s", task.request.retries + 1, exc.orig)
        delay = retry_delay(task.request.retries)
        raise task.retry(exc=exc, countdown=delay, max_retries=MAX_RETRIES) from None
    except Exception:
        metrics.record_error("seal_failed")
        raise
    if runtime.settings.tsa:
        _request_timestamps(task, [r.seq for r in results])
    policy = runtime.settings.witness_policy
    if results and policy is not None and policy.witnesses:
        # After the sealing transaction committed; a lost message only delays cosignatures (the sweep catches up).
        try:
            task.app.send_task(WITNESS_CHECKPOINT)
        except Exception as exc:  # noqa: BLE001 - the broker may be down
            log.warning("could not ask the witnesses: %s", exc)
    return sum(r.size for r in results)


def _request_timestamps(task: Any, seqs: list[int]) -> None:
    # After the sealing transaction committed: a lost message only delays tokens (the beat sweep catches up).
    for seq in seqs:
        try:
            task.app.send_task(TIMESTAMP_ENTRY, args=(seq,))
        except Exception as exc:  # noqa: BLE001 - the broker may be down; the sweep will do it
            log.warning("could not request time-stamps for ledger entry %d: %s", seq, exc)


def _seal_pending(self: Any, force: bool = False) -> int:
    """Beat's periodic task: seal the batches that are due (size or age). Returns the leaves sealed."""
    return _seal(self, force)


def _seal_now(self: Any, force: bool = False) -> int:
    """Sent by the API when a full batch is waiting: seal it without waiting for beat's next tick."""
    return _seal(self, force)


def _maintain() -> int:
    """Beat's housekeeping (``service.maintenance``): expired idempotency answers. Returns how many were removed."""
    result = run_maintenance(get_runtime().engine, utc_now())
    return result.idempotency_expired


# Celery is untyped: registering by call (not decorator) keeps the functions above typed.
seal_pending = shared_task(name=SEAL_PENDING, bind=True, acks_late=True, ignore_result=True)(_seal_pending)
seal_now = shared_task(name=SEAL_NOW, bind=True, acks_late=True, ignore_result=True)(_seal_now)
maintain = shared_task(name=MAINTAIN, ignore_result=True)(_maintain)


def _forget_parent_runtime(**_kwargs: Any) -> None:
    # A forked pool process must not share the parent's database connections: build its own on first use.
    global _runtime
    if _runtime is not None:
        _runtime.engine.dispose(close=False)
    _runtime = None


def _setup_logging(**_kwargs: Any) -> None:
    # Connected, so Celery leaves the root logger to us: same format (JSON or text) as the API.
    configure_logging(Settings.from_env(os.environ))


signals.worker_process_init.connect(_forget_parent_runtime, weak=False)
signals.setup_logging.connect(_setup_logging, weak=False)
