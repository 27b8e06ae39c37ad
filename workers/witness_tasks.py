"""Celery tasks for witnesses (SPEC §9): thin adapters over ``service.witnessing``.

- ``witness_checkpoint()``: sent after a batch is sealed (outside the sealing transaction); asks every witness of
  the policy (``EVIDENCE_WITNESS_POLICY``) to cosign the latest checkpoint, in parallel, and stores the
  cosignatures; then sends ``witness_shortfall(size)`` to run once the configured wait has passed.
- ``witness_shortfall(size)``: a metric and a WARNING line if no checkpoint covering ``size`` has its quorum.
- ``witness_sweep()``: beat, every few seconds: the same as ``witness_checkpoint`` without the shortfall check, so a
  witness that was down catches up (from the size it remembers, answered with 409).
Registered with ``shared_task`` like the other task modules.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from service import witnessing
from workers.tasks import get_runtime

__all__ = ["WITNESS_CHECKPOINT", "WITNESS_SHORTFALL", "WITNESS_SWEEP"]

log = logging.getLogger(__name__)

WITNESS_CHECKPOINT = "workers.witness_tasks.witness_checkpoint"
WITNESS_SHORTFALL = "workers.witness_tasks.witness_shortfall"
WITNESS_SWEEP = "workers.witness_tasks.witness_sweep"


def _ask() -> list[witnessing.WitnessOutcome]:
    runtime = get_runtime()
    policy = runtime.settings.witness_policy
    if policy is None or not policy.witnesses:
        return []
    return witnessing.cosign_checkpoint(runtime.engine, policy, timeout=runtime.settings.witness_timeout)


def _witness_checkpoint(self: Any) -> int:
    outcomes = _ask()
    if outcomes:
        settings = get_runtime().settings
        try:
            self.app.send_task(WITNESS_SHORTFALL, args=(outcomes[0].size,), countdown=settings.witness_wait)
        except Exception as exc:  # noqa: BLE001 - the broker may be down: only the shortfall report is lost
            log.warning("could not schedule the witness shortfall check: %s", exc)
    return sum(1 for o in outcomes if o.outcome == "cosigned")


def _witness_shortfall(size: int) -> bool:
    runtime = get_runtime()
    policy = runtime.settings.witness_policy
    if policy is None:
        return False
    return witnessing.check_shortfall(runtime.engine, policy, size, wait=runtime.settings.witness_wait)


def _witness_sweep() -> int:
    return sum(1 for o in _ask() if o.outcome == "cosigned")


# Celery is untyped: registering by call (not decorator) keeps the functions above typed.
witness_checkpoint: Any = shared_task(name=WITNESS_CHECKPOINT, bind=True, acks_late=True, ignore_result=True)(
    _witness_checkpoint
)
witness_shortfall: Any = shared_task(name=WITNESS_SHORTFALL, acks_late=True, ignore_result=True)(_witness_shortfall)
witness_sweep: Any = shared_task(name=WITNESS_SWEEP, acks_late=True, ignore_result=True)(_witness_sweep)
