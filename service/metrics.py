"""Prometheus metrics of the service (API processes and Celery workers).

Owns: the metric objects, the helpers that record them (``record_submissions``, ``record_error``,
``observe_batches``), a collector that reads the pending depth and the ledger size from the database at scrape
time. ``service.api.observability`` adds ``GET /metrics`` to the Flask app.

Multi-process servers (gunicorn with several workers, Celery's prefork pool): set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory, private to the host/container, before the processes start; ``/metrics`` then sums every
process's counters and histograms (prometheus_client's multiprocess mode). The two gauges come from the
database, so they are right whichever process answers.

Must not import: Celery or Flask (workers use this module).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from service.storage import db, ledger

if TYPE_CHECKING:
    from service.sealing import SealResult

__all__ = [
    "BATCH_SIZE",
    "ERRORS",
    "HTTP_REQUESTS",
    "RATELIMIT_FAIL_OPEN",
    "SEAL_LATENCY",
    "SUBMISSIONS",
    "DatabaseCollector",
    "observe_batches",
    "record_error",
    "record_ratelimit_fail_open",
    "record_submissions",
    "render",
]

SUBMISSIONS = Counter(
    "evidence_submissions",
    "Evidence accepted (acknowledged with 202), by kind: file, digest, batch item",
    ["kind"],
)
ERRORS = Counter(
    "evidence_errors",
    "Errors by kind (http_4xx, http_5xx, seal_db, seal_failed, ...)",
    ["kind"],
)
RATELIMIT_FAIL_OPEN = Counter(
    "evidence_ratelimit_fail_open",
    "Requests let through unlimited because the rate limit store failed, by reason (timeout, error, backoff)",
    ["reason"],
)
HTTP_REQUESTS = Counter(
    "evidence_http_requests",
    "HTTP requests answered, by method, endpoint and status class",
    ["method", "endpoint", "status"],
)
SEAL_LATENCY = Histogram(
    "evidence_seal_latency_seconds",
    "Time from submission to sealing, observed per batch for its oldest leaf",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
BATCH_SIZE = Histogram(
    "evidence_batch_size",
    "Leaves per sealed batch",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10_000, 50_000),
)


WITNESS_REQUESTS = Counter(
    "evidence_witness_requests",
    "add-checkpoint requests to witnesses, by witness and outcome (cosigned, conflict, refused, unavailable)",
    ["witness", "outcome"],
)
WITNESS_QUORUM_LATENCY = Histogram(
    "evidence_witness_quorum_seconds",
    "Time from signing a checkpoint to its witness quorum",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
)
WITNESS_SHORTFALL = Counter(
    "evidence_witness_shortfall",
    "Checkpoints still without their witness quorum when the configured wait ran out",
)


def record_submissions(kind: str, count: int = 1) -> None:
    """Count ``count`` acknowledged submissions of ``kind`` (``file``, ``digest`` or ``batch``)."""
    SUBMISSIONS.labels(kind).inc(count)


def record_ratelimit_fail_open(reason: str) -> None:
    """Count one request let through because the rate limit store (Redis, the limits file) failed."""
    RATELIMIT_FAIL_OPEN.labels(reason).inc()


def record_error(kind: str) -> None:
    """Count one error of ``kind``."""
    ERRORS.labels(kind).inc()


def observe_batches(results: Sequence[SealResult]) -> None:
    """Record batches just sealed: their size and how long their oldest leaf waited (received → sealed)."""
    for r in results:
        BATCH_SIZE.observe(r.size)
        SEAL_LATENCY.observe(max(0.0, (r.sealed - r.oldest_received).total_seconds()))


class DatabaseCollector(Collector):
    """Reads ``evidence_pending`` and ``evidence_ledger_size`` from the database at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        pending = GaugeMetricFamily("evidence_pending", "Evidence waiting to be sealed")
        size = GaugeMetricFamily("evidence_ledger_size", "Ledger entries (sealed batches)")
        up = GaugeMetricFamily("evidence_database_up", "1 if the database answered this scrape")
        try:
            with db.read_only(self.engine).connect() as conn:
                pending.add_metric([], ledger.pending_count(conn))
                size.add_metric([], ledger.ledger_size(conn))
        except SQLAlchemyError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [pending, size, up]


def _process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def render(engine: Engine | None) -> bytes:
    """The Prometheus text exposition of the process(es) metrics plus the database gauges."""
    out = generate_latest(_process_registry())
    if engine is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(DatabaseCollector(engine))
        out += generate_latest(extra)
    return out
