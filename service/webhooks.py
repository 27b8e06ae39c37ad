"""Webhooks: a tenant's callback URL is told when its evidence is sealed, with a signed JSON event.

Owns: registering a callback (one active per tenant; its secret is shown once), queueing one event per sealed
batch per tenant (``enqueue_seal_events``, called by the sealing path), building and signing the event, one
delivery attempt, the retry schedule, and the embedded default's delivery thread. The Celery side
(``workers/webhook_tasks.py``) runs the same functions.

Persistence: ``webhook_deliveries`` is append-only. Queueing an event inserts attempt 0 (no status: "queued");
every real attempt appends a row with its number, the HTTP status or the error. The schedule is derived from
those rows: an event is delivered once a row has a 2xx status; otherwise attempt ``k + 1`` is due
``RETRY_DELAYS[k]`` seconds after the row of attempt ``k``, until ``len(RETRY_DELAYS)`` attempts were made. So a
restart loses nothing: the next sweep finds what is due. Delivery is at least once (a crash between the POST and
its row, or two sweepers, may send an attempt twice): receivers deduplicate on the event ``id``.

Signature (documented in docs/batch.md): header ``Evidence-Signature: t=<unix seconds>,v1=<hex>`` where hex is
HMAC-SHA256 with the webhook secret over ``"<t>." + body`` (the exact body bytes).

Must not import: Flask, Celery. SQL lives in ``service.storage.ledger``; HTTP is ``requests`` (imported when sending).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import Connection, Engine

from service.config import Settings
from service.core.errors import InvalidInput, NotFound
from service.core.formats import format_time, utc_now
from service.storage import ledger
from service.storage.codec import from_us, to_us

__all__ = [
    "RETRY_DELAYS",
    "SIGNATURE_HEADER",
    "Delivery",
    "WebhookDispatcher",
    "deliver",
    "delete_webhook",
    "dispatch_due",
    "due_deliveries",
    "enqueue_seal_events",
    "event_body",
    "get_webhook",
    "register_webhook",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Evidence-Signature"
SECRET_PREFIX = "whsec_"
# Seconds between attempt k and attempt k+1 (k = 0 is the queueing): 11 attempts over about 17 hours.
RETRY_DELAYS: tuple[float, ...] = (0, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 36000)
TIMEOUT = 10.0  # seconds per attempt (connect and read)
MAX_URL_LENGTH = 2000
SIGNATURE_TOLERANCE = 300  # seconds a receiver should accept between t= and its own clock


# --- registration ---------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host and no credentials or fragment.

    :raise InvalidInput: saying what is wrong.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"'url' must be an http(s) URL of 1-{MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidInput(f"'url' is not a valid URL: {url[:100]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"'url' must be an absolute http:// or https:// URL with a host, found {url[:100]!r}")
    if parts.username or parts.password:
        raise InvalidInput("'url' must not carry a user name or password")
    if parts.fragment:
        raise InvalidInput("'url' must not have a #fragment")
    return url


def _webhook_json(row: Any) -> dict[str, Any]:
    return {"url": row.url, "created_at": format_time(from_us(row.created_us))}


def register_webhook(conn: Connection, tenant_id: int, url: str, now: datetime) -> tuple[dict[str, Any], str]:
    """Make ``url`` the tenant's callback (replacing any earlier one) and return ``(description, secret)``.

    The secret is returned only here: keep it to check signatures. A new registration gets a new secret.
    """
    url = check_url(url)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    ledger.disable_webhooks(conn, tenant_id, to_us(now))
    ledger.insert_webhook(conn, tenant_id, url, secret, to_us(now))
    row = ledger.active_webhook(conn, tenant_id)
    assert row is not None
    return _webhook_json(row), secret


def get_webhook(conn: Connection, tenant_id: int) -> dict[str, Any]:
    """The tenant's callback (url, created_at) and its recent delivery attempts, newest first.

    :raise NotFound: no callback registered.
    """
    row = ledger.active_webhook(conn, tenant_id)
    if row is None:
        raise NotFound('no webhook is registered for this tenant: PUT /v1/webhook {"url": ...}')
    out = _webhook_json(row)
    out["deliveries"] = [
        {
            "batch_seq": d.batch_seq,
            "attempt": d.attempt,
            "status_code": d.status_code,
            "error": d.error,
            "at": format_time(from_us(d.created_us)),
        }
        for d in ledger.webhook_delivery_log(conn, row.id, limit=100)
    ]
    return out


def delete_webhook(conn: Connection, tenant_id: int, now: datetime) -> None:
    """Stop calling the tenant's callback (queued events for it are dropped).

    :raise NotFound: no callback registered.
    """
    if ledger.disable_webhooks(conn, tenant_id, to_us(now)) == 0:
        raise NotFound("no webhook is registered for this tenant")


# --- queueing and events ----------------------------------------------------------------------------


def enqueue_seal_events(conn: Connection, batch_seq: int) -> int:
    """Queue one event per tenant with a webhook and evidence in the sealed batch; returns how many.

    Call it in the sealing transaction (right after ``seal_batch`` returned, before commit), so a sealed batch
    and its queued events are committed together.
    """
    hooks = ledger.webhooks_for_batch(conn, batch_seq)
    now_us = to_us(utc_now())
    for webhook_id in hooks:
        ledger.insert_webhook_delivery(conn, webhook_id, batch_seq, 0, None, "queued", now_us)
    return len(hooks)


def event_body(conn: Connection, webhook_id: int, batch_seq: int, public_url: str) -> bytes | None:
    """The event JSON (exact bytes, the same on every attempt) or None if the webhook or batch is gone."""
    hook = ledger.get_webhook_by_id(conn, webhook_id)
    batch = ledger.get_batch(conn, batch_seq)
    if hook is None or batch is None:
        return None
    base = public_url.rstrip("/")
    ids = ledger.evidence_ids_in_batch(conn, hook.tenant_id, batch_seq)
    event = {
        "id": f"evt_{webhook_id}_{batch_seq}",
        "type": "evidence.sealed",
        "batch_seq": batch_seq,
        "sealed_at": format_time(from_us(batch.sealed_us)),
        "ledger_size": batch_seq + 1,
        "evidence": [
            {"id": i, "sha256": bytes(h).hex(), "receipt_url": f"{base}/v1/evidence/{i}/receipt"} for i, h in ids
        ],
    }
    return json.dumps(event, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Evidence-Signature`` header value: ``t=<timestamp>,v1=<HMAC-SHA256(secret, "<t>." + body) hex>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = SIGNATURE_TOLERANCE
) -> bool:
    """What a receiver does: parse the header, recompute the HMAC, compare in constant time, check freshness."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


# --- delivery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """An event whose next attempt is due."""

    webhook_id: int
    batch_seq: int
    attempt: int  # the number of the attempt to make now (1, 2, ...)


def due_deliveries(
    conn: Connection, now: datetime, delays: Sequence[float] = RETRY_DELAYS, limit: int = 100
) -> list[Delivery]:
    """Events not yet delivered whose next attempt is due at ``now`` (active webhooks only), oldest first."""
    now_us = to_us(now)
    due: list[Delivery] = []
    for row in ledger.open_webhook_deliveries(conn, len(delays)):
        last_attempt = int(row.last_attempt)
        if int(row.last_us) + delays[last_attempt] * 1_000_000 <= now_us:
            due.append(Delivery(int(row.webhook_id), int(row.batch_seq), last_attempt + 1))
            if len(due) >= limit:
                break
    return due


def deliver(engine: Engine, delivery: Delivery, public_url: str, *, timeout: float = TIMEOUT) -> bool:
    """Make one attempt: POST the signed event, append its row to ``webhook_deliveries``; True on a 2xx."""
    import requests

    with ledger.read_only(engine).connect() as conn:
        hook = ledger.get_webhook_by_id(conn, delivery.webhook_id)
        body = event_body(conn, delivery.webhook_id, delivery.batch_seq, public_url)
    if hook is None or body is None:
        return False
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "evidence-ledger-webhook/1",
        SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
        "Evidence-Event-Id": f"evt_{delivery.webhook_id}_{delivery.batch_seq}",
        "Evidence-Delivery-Attempt": str(delivery.attempt),
    }
    status: int | None = None
    error: str | None = None
    try:
        response = requests.post(hook.url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except requests.RequestException as exc:
        error = f"{exc.__class__.__name__}: {str(exc)[:300]}"
    with engine.begin() as conn:
        ledger.insert_webhook_delivery(
            conn, delivery.webhook_id, delivery.batch_seq, delivery.attempt, status, error, to_us(utc_now())
        )
    if error is not None:
        log.warning(
            "webhook %d batch %d attempt %d failed: %s",
            delivery.webhook_id,
            delivery.batch_seq,
            delivery.attempt,
            error,
        )
    return error is None


def dispatch_due(
    engine: Engine,
    settings: Settings,
    *,
    delays: Sequence[float] = RETRY_DELAYS,
    clock: Callable[[], datetime] = utc_now,
    limit: int = 100,
) -> int:
    """One sweep: make every attempt that is due; returns how many were delivered."""
    with ledger.read_only(engine).connect() as conn:
        due = due_deliveries(conn, clock(), delays, limit)
    return sum(deliver(engine, d, settings.public_url) for d in due)


class WebhookDispatcher(threading.Thread):
    """The embedded default's delivery thread: sweeps every ``interval`` seconds until ``stop()``."""

    def __init__(
        self, engine: Engine, settings: Settings, *, interval: float = 1.0, delays: Sequence[float] = RETRY_DELAYS
    ) -> None:
        super().__init__(name="evidence-webhooks", daemon=True)
        self.engine = engine
        self.settings = settings
        self.interval = interval
        self.delays = tuple(delays)
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                dispatch_due(self.engine, self.settings, delays=self.delays)
            except Exception:
                log.exception("webhook sweep failed; retrying in %.1f s", self.interval)
            self._stop_event.wait(self.interval)
