"""Webhooks end to end: registration through the API, events queued in the sealing transaction, delivery to a real
HTTP receiver on 127.0.0.1 that fails the first attempts, signatures, the append-only delivery log, a restart in
the middle of the retries, and the Celery task body called directly (no broker). SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from service import sealing, webhooks
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import ledger
from tests.factories import auth, make_runtime, new_key

FAST = (0, 0.2, 0.2, 0.2, 0.2)  # retry delays for the tests: five attempts, 0.2 s apart


@dataclass
class Receiver:
    """A real HTTP server that answers 500 to the first ``fail`` requests, then 200; records what it got."""

    fail: int
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/evidence"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(fail=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.requests.append(({k: v for k, v in self.headers.items()}, body))
            status = 500 if len(rec.requests) <= rec.fail else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    rt = make_runtime(
        tmp_path,
        db_url,
        rate_limit=0,
        public_url="https://evidence.example",
        webhook_allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),  # the receiver is on 127.0.0.1
    )
    yield rt
    rt.engine.dispose()


def tenant(runtime: Runtime, name: str) -> dict[str, str]:
    return auth(new_key(runtime, name))


def deposit(client: FlaskClient, headers: dict[str, str], n: int, salt: str) -> list[str]:
    items = [{"sha256": hashlib.sha256(f"{salt}{i}".encode()).hexdigest()} for i in range(n)]
    r = client.post("/v1/evidence/batch", json={"items": items}, headers=headers)
    assert r.status_code == 202, r.get_data(as_text=True)
    return [i["id"] for i in r.get_json()["items"]]


def seal_and_enqueue(runtime: Runtime) -> sealing.SealResult:
    """What the sealing path does: seal a batch and queue its events in the same transaction."""
    with runtime.engine.begin() as conn:
        result = sealing.seal_batch(conn, runtime.signer, utc_now(), runtime.settings.batch_max_size)
        assert result is not None
        webhooks.enqueue_seal_events(conn, result.seq)
    return result


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_register_get_and_delete_webhook(runtime: Runtime, client: FlaskClient) -> None:
    acme = tenant(runtime, "acme")
    assert client.get("/v1/webhook", headers=acme).status_code == 404
    r = client.put("/v1/webhook", json={"url": "https://hooks.example/x"}, headers=acme)
    assert r.status_code == 201
    created = r.get_json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    shown = client.get("/v1/webhook", headers=acme).get_json()
    assert shown["url"] == "https://hooks.example/x" and "secret" not in shown and shown["deliveries"] == []
    replaced = client.put("/v1/webhook", json={"url": "https://hooks.example/y"}, headers=acme).get_json()
    assert replaced["secret"] != created["secret"]
    assert client.get("/v1/webhook", headers=acme).get_json()["url"] == "https://hooks.example/y"
    for bad in ["ftp://x/", "http://user:pw@host/", "not a url", "https://host/#frag", 42]:
        r = client.put("/v1/webhook", json={"url": bad}, headers=acme)
        assert r.status_code == 400, bad
    assert client.delete("/v1/webhook", headers=acme).status_code == 204
    assert client.get("/v1/webhook", headers=acme).status_code == 404
    assert client.delete("/v1/webhook", headers=acme).status_code == 404


def test_event_is_delivered_after_failures_signed_and_every_attempt_logged(
    runtime: Runtime, client: FlaskClient, receiver: Receiver
) -> None:
    acme, other, silent = tenant(runtime, "acme"), tenant(runtime, "other"), tenant(runtime, "silent")
    secret = client.put("/v1/webhook", json={"url": receiver.url}, headers=acme).get_json()["secret"]
    client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/never"}, headers=other)  # refused connections
    acme_ids = deposit(client, acme, 3, "acme")
    deposit(client, other, 2, "other")
    deposit(client, silent, 2, "silent")
    result = seal_and_enqueue(runtime)

    dispatcher = webhooks.WebhookDispatcher(runtime.engine, runtime.settings, interval=0.05, delays=FAST)
    dispatcher.start()
    try:
        wait_for(lambda: len(receiver.requests) >= 3)
        time.sleep(0.5)  # a delivered event is not sent again
    finally:
        dispatcher.stop()
    assert len(receiver.requests) == 3
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1  # every attempt sends the same bytes
    body = bodies.pop()
    event = json.loads(body)
    assert event["type"] == "evidence.sealed"
    assert event["batch_seq"] == result.seq
    assert [e["id"] for e in event["evidence"]] == acme_ids  # only this tenant's evidence, in leaf order
    assert event["evidence"][0]["receipt_url"] == f"https://evidence.example/v1/evidence/{acme_ids[0]}/receipt"
    assert event["sealed_at"].endswith("Z")
    for n, (headers, sent) in enumerate(receiver.requests, start=1):
        assert webhooks.verify_signature(secret, headers[webhooks.SIGNATURE_HEADER], sent)
        assert not webhooks.verify_signature("whsec_wrong", headers[webhooks.SIGNATURE_HEADER], sent)
        assert not webhooks.verify_signature(secret, headers[webhooks.SIGNATURE_HEADER], sent + b" ")
        assert headers["Evidence-Delivery-Attempt"] == str(n)
        assert headers["Evidence-Event-Id"] == event["id"]

    log = client.get("/v1/webhook", headers=acme).get_json()["deliveries"]
    assert [(d["attempt"], d["status_code"]) for d in reversed(log)] == [(0, None), (1, 500), (2, 500), (3, 200)]
    assert all(d["batch_seq"] == result.seq for d in log)

    # The unreachable webhook of "other" used up its attempts, each logged with the error, then stopped.
    def nothing_due() -> bool:
        with runtime.engine.connect() as conn:
            return not webhooks.due_deliveries(conn, utc_now() + timedelta(hours=1), FAST)

    dispatcher = webhooks.WebhookDispatcher(runtime.engine, runtime.settings, interval=0.05, delays=FAST)
    dispatcher.start()
    try:
        wait_for(nothing_due)
    finally:
        dispatcher.stop()
    other_log = client.get("/v1/webhook", headers=other).get_json()["deliveries"]
    assert [d["attempt"] for d in reversed(other_log)] == [0, 1, 2, 3, 4, 5]  # len(FAST) attempts
    assert all(d["status_code"] is None and d["error"] == "connection refused" for d in other_log[:-1])


def test_retries_continue_after_a_restart(runtime: Runtime, client: FlaskClient, receiver: Receiver) -> None:
    receiver.fail = 1
    acme = tenant(runtime, "acme")
    client.put("/v1/webhook", json={"url": receiver.url}, headers=acme)
    deposit(client, acme, 1, "restart")
    seal_and_enqueue(runtime)
    slow = (0, 3600, 0.1)  # after the first failure, the next attempt is an hour away
    assert webhooks.dispatch_due(runtime.engine, runtime.settings, delays=slow) == 0
    assert len(receiver.requests) == 1
    runtime.engine.dispose()  # "restart": a new engine, nothing kept in memory
    fresh = Runtime.from_settings(runtime.settings)
    try:
        later = lambda: utc_now() + timedelta(hours=1, seconds=1)  # noqa: E731
        assert webhooks.dispatch_due(fresh.engine, fresh.settings, delays=slow, clock=later) == 1
        assert webhooks.dispatch_due(fresh.engine, fresh.settings, delays=slow, clock=later) == 0
    finally:
        fresh.engine.dispose()
    assert len(receiver.requests) == 2
    assert receiver.requests[1][0]["Evidence-Delivery-Attempt"] == "2"


def test_delivery_log_is_append_only(runtime: Runtime, client: FlaskClient) -> None:
    acme = tenant(runtime, "acme")
    client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/"}, headers=acme)
    deposit(client, acme, 1, "ao")
    seal_and_enqueue(runtime)
    for statement in ("UPDATE webhook_deliveries SET status_code = 200", "DELETE FROM webhook_deliveries"):
        with pytest.raises(DatabaseError):
            with runtime.engine.begin() as conn:
                conn.execute(text(statement))


def test_celery_task_body_sweeps_due_deliveries(runtime: Runtime, client: FlaskClient, receiver: Receiver) -> None:
    from workers import tasks, webhook_tasks

    receiver.fail = 0
    acme = tenant(runtime, "acme")
    client.put("/v1/webhook", json={"url": receiver.url}, headers=acme)
    deposit(client, acme, 2, "celery")
    seal_and_enqueue(runtime)
    tasks.use_runtime(runtime)
    try:
        assert webhook_tasks.run_dispatch(runtime) == 1
        assert webhook_tasks.run_dispatch(runtime) == 0
    finally:
        tasks.use_runtime(None)
    assert len(receiver.requests) == 1
    assert webhook_tasks.DISPATCH_WEBHOOKS_SCHEDULE["dispatch-webhooks"]["task"] == webhook_tasks.DISPATCH_WEBHOOKS


def test_no_webhook_no_event(runtime: Runtime, client: FlaskClient) -> None:
    acme = tenant(runtime, "acme")
    deposit(client, acme, 1, "none")
    with runtime.engine.begin() as conn:
        result = sealing.seal_batch(conn, runtime.signer, utc_now(), 100)
        assert result is not None
        assert webhooks.enqueue_seal_events(conn, result.seq) == 0
    with runtime.engine.connect() as conn:
        assert ledger.open_webhook_deliveries(conn, 5) == []
