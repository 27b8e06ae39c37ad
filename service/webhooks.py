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

Outbound safety (``service.outbound``): the host is resolved at delivery time and the connection goes to the
address that was checked; only global unicast addresses are reached unless the operator allow-lists networks
(``EVIDENCE_WEBHOOK_ALLOW_NETWORKS``); a numeric non-public host is already refused at registration. The delivery
log (``GET /v1/webhook``) holds only a short category (``connection refused``, ``timeout``, ``HTTP 500``...), never
the exception text, which goes to the operator's log.

Parallel delivery (``DeliveryPool``): attempts run in a pool of threads, at most ``PER_TENANT`` at once for one
webhook (one active webhook per tenant), each with a total deadline of ``TIMEOUT`` seconds, so a slow or trickling
endpoint holds only its own tenant's slots.

Must not import: Flask, Celery. SQL lives in ``service.storage.ledger``; HTTP is ``service.outbound``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import Connection, Engine

from service import outbound
from service.background import Loop
from service.config import Settings
from service.core.errors import InvalidInput, NotFound
from service.core.formats import format_time, utc_now
from service.storage import db, ledger
from service.storage.codec import from_us, to_us
from service.storage.records import Webhook

__all__ = [
    "RETRY_DELAYS",
    "SIGNATURE_HEADER",
    "Delivery",
    "DeliveryPool",
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
TIMEOUT = 10.0  # seconds per attempt, in total (connect, TLS, send, status line)
WORKERS = 16  # delivery threads of one pool
PER_TENANT = 2  # attempts of one webhook (one tenant) running at once
MAX_URL_LENGTH = 2000
SIGNATURE_TOLERANCE = 300  # seconds a receiver should accept between t= and its own clock


# --- registration ---------------------------------------------------------------------------------


def check_url(url: str, allow: Sequence[outbound.IPNetwork] = ()) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host and no credentials or fragment, whose host is
    not a non-public numeric address (unless in ``allow``). Host names are checked at every delivery.

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
    try:
        outbound.check_literal_host(parts.hostname, allow)
    except outbound.OutboundError:
        raise InvalidInput(
            f"'url' must point to a public address: {parts.hostname[:100]!r} is loopback, private, link-local or "
            "otherwise not globally reachable"
        ) from None
    return url


def _webhook_json(row: Webhook) -> dict[str, Any]:
    return {"url": row.url, "created_at": format_time(row.created)}


def register_webhook(
    conn: Connection, tenant_id: int, url: str, now: datetime, allow: Sequence[outbound.IPNetwork] = ()
) -> tuple[dict[str, Any], str]:
    """Make ``url`` the tenant's callback (replacing any earlier one) and return ``(description, secret)``.

    The secret is returned only here: keep it to check signatures. A new registration gets a new secret.
    ``allow``: the operator's allowed non-public networks (``Settings.webhook_allow_networks``).
    """
    url = check_url(url, allow)
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
        "sealed_at": format_time(batch.sealed),
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


@dataclass(frozen=True)
class Transport:
    """How attempts reach receivers: the deadline, the allowed non-public networks, and (tests) the resolver,
    connector and TLS context handed to ``outbound.post``."""

    timeout: float = TIMEOUT
    allow: tuple[outbound.IPNetwork, ...] = ()
    resolver: outbound.Resolver | None = None
    connector: outbound.Connector | None = None
    ssl_context: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Transport:
        return cls(allow=tuple(settings.webhook_allow_networks), **overrides)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> outbound.Response:
        options: dict[str, Any] = {}
        if self.resolver is not None:
            options["resolver"] = self.resolver
        if self.connector is not None:
            options["connector"] = self.connector
        return outbound.post(
            url, body, headers, timeout=self.timeout, allow=self.allow, ssl_context=self.ssl_context, **options
        )


def deliver(engine: Engine, delivery: Delivery, public_url: str, transport: Transport) -> bool:
    """Make one attempt: POST the signed event, append its row to ``webhook_deliveries``; True on a 2xx.

    The row's ``error`` is a short category for the tenant; the full reason is logged for the operator.
    """
    with db.read_only(engine).connect() as conn:
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
    detail = ""
    try:
        status = transport.post(hook.url, body, headers).status
        if not 200 <= status < 300:
            error = detail = f"HTTP {status}"
    except outbound.OutboundError as exc:
        error, detail = exc.category, str(exc)
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
            detail,
        )
    return error is None


class DeliveryPool:
    """Attempts in parallel: ``workers`` threads, at most ``per_tenant`` attempts of one webhook at once.

    ``submit`` queues due deliveries (one already queued or running is not queued again, nor an attempt number
    already made by this pool) and returns at once; ``wait`` blocks until given deliveries are done.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        workers: int = WORKERS,
        per_tenant: int = PER_TENANT,
        transport: Transport | None = None,
    ) -> None:
        self.engine = engine
        self.public_url = settings.public_url
        self.transport = transport or Transport.from_settings(settings)
        self.per_tenant = per_tenant
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evidence-webhook")
        self._cond = threading.Condition()
        self._queues: dict[int, deque[Delivery]] = {}
        self._running: dict[int, int] = {}
        self._open: set[tuple[int, int]] = set()  # (webhook_id, batch_seq) queued or running
        self._made: OrderedDict[tuple[int, int], int] = OrderedDict()  # last attempt number made, bounded
        self._results: dict[Delivery, bool] = {}

    def submit(self, due: Iterable[Delivery]) -> list[Delivery]:
        """Queue ``due``; returns the deliveries actually queued."""
        queued: list[Delivery] = []
        with self._cond:
            for d in due:
                key = (d.webhook_id, d.batch_seq)
                if key in self._open or self._made.get(key, 0) >= d.attempt:
                    continue
                self._open.add(key)
                self._queues.setdefault(d.webhook_id, deque()).append(d)
                queued.append(d)
            for webhook_id, queue in self._queues.items():
                start = min(self.per_tenant - self._running.get(webhook_id, 0), len(queue))
                for _ in range(max(0, start)):
                    self._running[webhook_id] = self._running.get(webhook_id, 0) + 1
                    self._executor.submit(self._run, webhook_id)
        return queued

    def _run(self, webhook_id: int) -> None:
        while True:
            with self._cond:
                queue = self._queues.get(webhook_id)
                if not queue:
                    self._running[webhook_id] -= 1
                    if not self._running[webhook_id]:
                        del self._running[webhook_id]
                        self._queues.pop(webhook_id, None)
                    return
                d = queue.popleft()
            ok = False
            try:
                ok = deliver(self.engine, d, self.public_url, self.transport)
            except Exception:
                log.exception("webhook %d batch %d attempt %d failed", d.webhook_id, d.batch_seq, d.attempt)
            with self._cond:
                key = (d.webhook_id, d.batch_seq)
                self._open.discard(key)
                self._made[key] = d.attempt
                self._made.move_to_end(key)
                while len(self._made) > 10_000:
                    self._made.popitem(last=False)
                self._results[d] = ok
                self._cond.notify_all()

    def wait(self, deliveries: Sequence[Delivery], timeout: float | None = None) -> int:
        """Block until ``deliveries`` were attempted; returns how many of them were delivered (2xx)."""
        with self._cond:
            self._cond.wait_for(lambda: all(d in self._results for d in deliveries), timeout)
            return sum(self._results.pop(d, False) for d in deliveries)

    def forget_results(self) -> None:
        with self._cond:
            self._results.clear()

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


def dispatch_due(
    engine: Engine,
    settings: Settings,
    *,
    delays: Sequence[float] = RETRY_DELAYS,
    clock: Callable[[], datetime] = utc_now,
    limit: int = 100,
    transport: Transport | None = None,
) -> int:
    """One sweep: make every attempt that is due (in parallel, per-tenant cap) and wait; returns how many were
    delivered."""
    with db.read_only(engine).connect() as conn:
        due = due_deliveries(conn, clock(), delays, limit)
    if not due:
        return 0
    pool = DeliveryPool(engine, settings, transport=transport)
    try:
        return pool.wait(pool.submit(due))
    finally:
        pool.shutdown()


class WebhookDispatcher(Loop):
    """The embedded default's delivery thread: every ``interval`` seconds, queues what is due into a
    ``DeliveryPool`` without waiting for earlier attempts (a slow endpoint delays only its own tenant)."""

    what = "webhook sweep"

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        interval: float = 1.0,
        delays: Sequence[float] = RETRY_DELAYS,
        transport: Transport | None = None,
    ) -> None:
        super().__init__("evidence-webhooks", interval)
        self.engine = engine
        self.settings = settings
        self.delays = tuple(delays)
        self.pool = DeliveryPool(engine, settings, transport=transport)

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)

    def after_stop(self) -> None:
        self.pool.shutdown(wait=True)  # running attempts end within their deadline

    def step(self) -> None:
        with db.read_only(self.engine).connect() as conn:
            due = due_deliveries(conn, utc_now(), self.delays)
        self.pool.submit(due)
        self.pool.forget_results()
