"""POST /v1/evidence/batch, Idempotency-Key and GET /v1/evidence?sha256= on SQLite and PostgreSQL (real databases).

The app is ``create_app`` with the bulk blueprint registered (a no-op once ``create_app`` registers it itself).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from service import bulk, sealing
from service.api.auth import forget_accepted_keys
from service.config import Settings
from service.core import receipt as receipt_module
from service.core.errors import EvidenceError
from service.core.formats import utc_now
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.storage import ledger
from tests.factories import auth, make_app, make_runtime, new_key


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path, db_url, rate_limit=0)
    yield rt
    rt.engine.dispose()


def digest(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"{salt}file {i}".encode()).hexdigest()


def body_of(n: int, salt: str = "", label: bool = True) -> bytes:
    items = [{"sha256": digest(i, salt), **({"label": f"f{i}.pdf"} if label else {})} for i in range(n)]
    return json.dumps({"items": items}).encode()


def evidence_count(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ledger.evidence)).scalar_one())


def post_batch(client: FlaskClient, key: str, body: bytes, idem: str | None = None) -> Any:
    return client.post("/v1/evidence/batch", data=body, headers=auth(key, idem), content_type="application/json")


# --- the batch itself ------------------------------------------------------------------------------


def test_batch_answers_every_item_in_request_order_shaped_like_the_single_post(
    runtime: Runtime, client: FlaskClient
) -> None:
    key = new_key(runtime)
    r = post_batch(client, key, body_of(5))
    assert r.status_code == 202, r.get_data(as_text=True)
    items = r.get_json()["items"]
    assert [i["sha256"] for i in items] == [digest(i) for i in range(5)]
    assert [i["label"] for i in items] == [f"f{i}.pdf" for i in range(5)]
    single = client.post("/v1/evidence", json={"sha256": digest(99), "label": "x"}, headers=auth(key)).get_json()
    for item in items:
        assert set(item) == set(single)
        assert item["status"] == "pending"
    assert len({i["id"] for i in items}) == 5
    assert evidence_count(runtime) == 6


def test_bad_item_is_422_naming_its_index_and_nothing_is_stored(runtime: Runtime, client: FlaskClient) -> None:
    key = new_key(runtime)
    items: list[dict[str, Any]] = [{"sha256": digest(i)} for i in range(10)]
    items[7] = {"sha256": "z" + digest(7)[1:]}  # not hex (upper-case hex is accepted and normalised since 40d4dd2)
    r = post_batch(client, key, json.dumps({"items": items}).encode())
    assert r.status_code == 422
    assert r.mimetype == "application/problem+json"
    assert "items[7]" in r.get_json()["detail"]
    items[7] = {"sha256": digest(7), "label": "bad\nlabel"}
    r = post_batch(client, key, json.dumps({"items": items}).encode())
    assert r.status_code == 422 and "items[7].label" in r.get_json()["detail"]
    items[7] = {"sha256": digest(7), "colour": "red"}
    r = post_batch(client, key, json.dumps({"items": items}).encode())
    assert r.status_code == 422 and "'colour'" in r.get_json()["detail"]
    assert evidence_count(runtime) == 0
    found = client.get(f"/v1/evidence?sha256={digest(0)}", headers=auth(key)).get_json()
    assert found["items"] == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not JSON"),
        (b'{"items": []}', "1 to 10000"),
        (b'{"items": {}}', "array"),
        (b'{"items": [], "items": []}', "twice"),
        (b'{"things": []}', "unknown"),
    ],
)
def test_malformed_batch_bodies_are_400(runtime: Runtime, client: FlaskClient, body: bytes, words: str) -> None:
    key = new_key(runtime)
    r = post_batch(client, key, body)
    assert r.status_code == 400
    assert words in r.get_json()["detail"]


def test_more_than_10000_items_is_refused_and_10000_are_stored_at_once(runtime: Runtime, client: FlaskClient) -> None:
    key = new_key(runtime)
    r = post_batch(client, key, body_of(10_001, label=False))
    assert r.status_code == 400 and "10000" in r.get_json()["detail"]
    t0 = time.perf_counter()
    r = post_batch(client, key, body_of(10_000))
    elapsed = time.perf_counter() - t0
    assert r.status_code == 202
    assert len(r.get_json()["items"]) == 10_000
    assert evidence_count(runtime) == 10_000
    print(f"10,000-item batch on {runtime.engine.dialect.name}: {elapsed:.3f} s")


def test_batch_without_a_valid_key_is_401(runtime: Runtime, client: FlaskClient) -> None:
    r = client.post("/v1/evidence/batch", data=body_of(1), content_type="application/json")
    assert r.status_code == 401


def test_deposits_of_a_digest_are_listed_with_status_for_their_tenant_only(
    runtime: Runtime, client: FlaskClient
) -> None:
    acme, other = new_key(runtime, "acme"), new_key(runtime, "other")
    first = post_batch(client, acme, body_of(2)).get_json()["items"]
    s = runtime.settings
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=s.batch_max_size, max_age=1, force=True)
    second = post_batch(client, acme, body_of(1)).get_json()["items"]
    post_batch(client, other, body_of(1))
    listed = client.get(f"/v1/evidence?sha256={digest(0)}", headers=auth(acme)).get_json()
    assert [i["id"] for i in listed["items"]] == [first[0]["id"], second[0]["id"]]
    assert [i["status"] for i in listed["items"]] == ["sealed", "pending"]
    assert listed["items"][0]["batch_seq"] == 0
    r = client.get("/v1/evidence?sha256=abc", headers=auth(acme))
    assert r.status_code == 400 and "sha256" in r.get_json()["detail"]
    receipt = client.get(f"/v1/evidence/{first[0]['id']}/receipt", headers=auth(acme)).get_json()
    vkey = runtime.signer.verifier
    assert verify_receipt(receipt, sha256=bytes.fromhex(digest(0)), trusted_keys=[vkey]).valid


# --- Idempotency-Key ---------------------------------------------------------------------------------


def test_same_key_and_body_replays_the_same_answer_and_stores_once(runtime: Runtime, client: FlaskClient) -> None:
    key = new_key(runtime)
    body = body_of(3)
    first = post_batch(client, key, body, "chunk-0001")
    again = post_batch(client, key, body, "chunk-0001")
    assert first.status_code == again.status_code == 202
    assert first.get_data() == again.get_data()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert evidence_count(runtime) == 3
    # The key is per tenant: another tenant with the same key gets its own deposits.
    other = new_key(runtime, "other")
    theirs = post_batch(client, other, body, "chunk-0001")
    assert theirs.status_code == 202 and theirs.get_data() != first.get_data()
    assert evidence_count(runtime) == 6


def test_answers_are_stored_compressed_and_replayed_byte_for_byte(runtime: Runtime, client: FlaskClient) -> None:
    """Issue 15: the stored answer of a bulk request was its JSON body quoted inside more JSON (187 bytes per item);
    now the status as JSON and the body zlib-compressed. Answers stored before (body in ``response``) replay too."""
    key = new_key(runtime)
    items = [{"sha256": digest(i, "z"), "label": f"合同 {i} ✓.pdf"} for i in range(500)]
    body = json.dumps({"items": items}).encode()
    first = post_batch(client, key, body, "compressed")
    assert first.status_code == 202
    with runtime.engine.connect() as conn:
        row = conn.execute(select(ledger.idempotency_keys).where(ledger.idempotency_keys.c.key == "compressed")).one()
    assert json.loads(row.response) == {"status": 202}
    assert zlib.decompress(bytes(row.body_zlib)) == first.get_data()
    assert len(row.body_zlib) < len(first.get_data()) / 2
    again = post_batch(client, key, body, "compressed")
    assert (again.status_code, again.get_data()) == (202, first.get_data())
    assert again.headers.get("Idempotent-Replayed") == "true"

    # an answer stored by a release before migration 0007: the body as a JSON string in ``response``
    old_body = '{"items":[{"id":"x","label":"合同"}]}'
    tenant = int(row.tenant_id)
    with runtime.engine.begin() as conn:
        ledger.insert_idempotency(
            conn,
            tenant,
            "old-row",
            bulk.request_hash("POST", "/v1/evidence/batch", body_of(1)),
            json.dumps({"status": 202, "body": old_body}),
            0,
            2**62,
        )
    replayed = post_batch(client, key, body_of(1), "old-row")
    assert (replayed.status_code, replayed.get_data()) == (202, old_body.encode())
    assert evidence_count(runtime) == 500


def test_same_key_with_another_body_is_409_and_stores_nothing(runtime: Runtime, client: FlaskClient) -> None:
    key = new_key(runtime)
    assert post_batch(client, key, body_of(3), "k1").status_code == 202
    r = post_batch(client, key, body_of(4), "k1")
    assert r.status_code == 409
    assert r.mimetype == "application/problem+json" and "k1" in r.get_json()["detail"]
    # Even a body with the same JSON meaning but other bytes is another request.
    r = post_batch(client, key, body_of(3).replace(b", ", b","), "k1")
    assert r.status_code == 409
    assert evidence_count(runtime) == 3


def test_idempotency_survives_a_restart(tmp_path: Path, runtime: Runtime, client: FlaskClient) -> None:
    key = new_key(runtime)
    first = post_batch(client, key, body_of(2), "restart-key")
    runtime.engine.dispose()
    fresh = Runtime.from_settings(runtime.settings)
    try:
        again = post_batch(make_app(fresh).test_client(), key, body_of(2), "restart-key")
    finally:
        fresh.engine.dispose()
    assert again.get_data() == first.get_data()


@pytest.mark.parametrize("value", ["", "has space", "x" * 256, "ключ"])
def test_bad_idempotency_keys_are_400(runtime: Runtime, client: FlaskClient, value: str) -> None:
    key = new_key(runtime)
    headers = auth(key)
    r = client.post(
        "/v1/evidence/batch",
        data=body_of(1),
        headers=[*headers.items(), ("Idempotency-Key", value)],
        content_type="application/json",
    )
    assert r.status_code == 400 and "Idempotency-Key" in r.get_json()["detail"]


def test_an_expired_key_is_a_new_request(runtime: Runtime) -> None:
    with runtime.engine.begin() as conn:
        tenant_id = ledger.insert_tenant(conn, "acme", sealing.to_us(utc_now()))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = [start]
    req = bulk.request_hash("POST", "/v1/evidence/batch", b"body")

    def produce(conn: Connection, now: datetime) -> bulk.Answer:
        deposits = bulk.record_batch(conn, tenant_id, [(bytes(32), None)], now)
        return bulk.Answer(202, json.dumps([d.to_json() for d in deposits]))

    ttl = 24 * 3600
    a, replayed_a = bulk.run_idempotent(runtime.engine, tenant_id, "k", req, ttl, produce, lambda: clock[0])
    clock[0] = start + timedelta(seconds=ttl - 1)
    b, replayed_b = bulk.run_idempotent(runtime.engine, tenant_id, "k", req, ttl, produce, lambda: clock[0])
    clock[0] = start + timedelta(seconds=ttl)
    c, replayed_c = bulk.run_idempotent(runtime.engine, tenant_id, "k", req, ttl, produce, lambda: clock[0])
    assert (replayed_a, replayed_b, replayed_c) == (False, True, False)
    assert a == b and c != a
    assert evidence_count(runtime) == 2


def test_concurrent_requests_with_one_key_insert_once(runtime: Runtime) -> None:
    """Both requests run past the lookup before either inserts (a barrier in ``produce``); the primary key lets
    only one commit, the other rolls back and answers with the stored answer. On SQLite, BEGIN IMMEDIATE already
    serialises the two transactions, so only PostgreSQL can reach the barrier with both."""
    with runtime.engine.begin() as conn:
        tenant_id = ledger.insert_tenant(conn, "acme", sealing.to_us(utc_now()))
    postgres = runtime.engine.dialect.name == "postgresql"
    barrier = threading.Barrier(2, timeout=10)
    produced: list[int] = []
    req = bulk.request_hash("POST", "/v1/evidence/batch", b"same body")
    items = [(hashlib.sha256(str(i).encode()).digest(), None) for i in range(50)]

    def produce(conn: Connection, now: datetime) -> bulk.Answer:
        produced.append(1)
        deposits = bulk.record_batch(conn, tenant_id, items, now)
        answer = bulk.Answer(202, json.dumps([d.to_json() for d in deposits]))
        if postgres and len(produced) <= 2:
            barrier.wait()
        return answer

    results: list[tuple[bulk.Answer, bool]] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(bulk.run_idempotent(runtime.engine, tenant_id, "race", req, 86_400, produce, utc_now))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 2
    assert results[0][0] == results[1][0]
    assert sorted(r[1] for r in results) == [False, True]
    assert evidence_count(runtime) == 50
    if postgres:
        assert len(produced) == 2  # both really inserted evidence before the key decided


# --- tenants and key rotation (evidence tenant ...) ----------------------------------------------------


def test_key_rotation_and_tenant_revocation_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from service.cli import cli

    data = str(tmp_path / "data")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, [*args, "--data-dir", data])
        assert result.exit_code == code, result.output
        if code:  # our errors reach service.cli.main (which prints the reason and exits 2) as EvidenceError
            assert isinstance(result.exception, EvidenceError), result.exception
        return result.output

    first = run("tenant", "create", "acme").splitlines()[-1]
    second = run("tenant", "key", "add", "acme").splitlines()[-1]
    assert first != second and second.startswith("evl_") and len(second) == 47
    listing = run("tenant", "list")
    assert "acme" in listing and first[:8] in listing and second[:8] in listing

    runtime = Runtime.from_settings(Settings(data_dir=Path(data), rate_limit=0))
    runtime.prepare_signing()
    try:
        app = make_app(runtime)
        client = app.test_client()
        assert post_batch(client, first, body_of(1)).status_code == 202
        assert post_batch(client, second, body_of(1)).status_code == 202
        out = run("tenant", "key", "revoke", first[:8])
        assert "1 active key(s) left" in out
        # API processes remember accepted keys for auth.KEY_CACHE_SECONDS; skip that wait here
        forget_accepted_keys(app)
        assert post_batch(client, first, body_of(1)).status_code == 401
        assert post_batch(client, second, body_of(1)).status_code == 202
        run("tenant", "key", "revoke", first[:8], code=1)
        run("tenant", "revoke", "acme")
        forget_accepted_keys(app)
        assert post_batch(client, second, body_of(1)).status_code == 401
        run("tenant", "key", "add", "acme", code=1)
        run("tenant", "revoke", "nobody", code=1)
    finally:
        runtime.engine.dispose()


# --- POST /v1/receipts ------------------------------------------------------------------------------


def post_receipts(client: FlaskClient, key: str, ids: Any) -> Any:
    return client.post(
        "/v1/receipts", data=json.dumps({"ids": ids}), headers=auth(key), content_type="application/json"
    )


def test_bulk_receipts_answer_in_request_order_byte_for_byte_like_the_single_get(
    runtime: Runtime, client: FlaskClient
) -> None:
    key = new_key(runtime)
    other = new_key(runtime, "other")
    sealed_ids = [i["id"] for i in post_batch(client, key, body_of(6)).get_json()["items"]]
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=4, max_age=0, force=True)  # two batches
    foreign_id = post_batch(client, other, body_of(1, salt="o")).get_json()["items"][0]["id"]
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=4, max_age=0, force=True)
    pending_id = post_batch(client, key, body_of(1, salt="q")).get_json()["items"][0]["id"]
    ids = [sealed_ids[5], pending_id, foreign_id, "never-issued", sealed_ids[0], sealed_ids[5], *sealed_ids[1:5]]
    r = post_receipts(client, key, ids)
    assert r.status_code == 200, r.get_data(as_text=True)
    items = r.get_json()["items"]
    assert len(items) == len(ids)
    # Another tenant's id and an id never issued get the very same answer: nothing tells them apart.
    assert items[2] == {"id": foreign_id, "status": "not_found"}
    assert items[3] == {"id": "never-issued", "status": "not_found"}
    single_status = client.get(f"/v1/evidence/{pending_id}/receipt", headers=auth(key))
    assert single_status.status_code == 202 and items[1] == single_status.get_json()
    for i in (0, 4, 5, 6, 7, 8, 9):
        single = client.get(f"/v1/evidence/{ids[i]}/receipt", headers=auth(key))
        assert single.status_code == 200
        # A client writing `dump_json(item)` writes exactly the bytes the single GET serves.
        assert receipt_module.dump_json(items[i]) == single.get_data()
        assert verify_receipt(items[i], trusted_keys=[runtime.signer.verifier]).valid
    assert {items[0]["batch"]["seq"], items[4]["batch"]["seq"]} == {0, 1}
    # The other tenant sees its own evidence, and ours as not found.
    theirs = post_receipts(client, other, [foreign_id, sealed_ids[0]]).get_json()["items"]
    # a labelled deposit has a v2 leaf: the ledger binds its label (SPEC §2.1)
    assert theirs[0]["format"] == "evidence-receipt/v2" and theirs[0]["evidence"]["label"] == "f0.pdf"
    assert theirs[1] == {"id": sealed_ids[0], "status": "not_found"}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"ids": []}', 400, "1 to 1000"),
        (json.dumps({"ids": ["a"] * 1001}).encode(), 400, "found 1001"),
        (b'{"ids": "abc"}', 400, "array"),
        (b'{"ids": ["abc"], "more": 1}', 400, "unknown field"),
        (b'{"ids": ["ok", 5]}', 422, "ids[1]"),
        (b'{"ids": ["ok", "bad id"]}', 422, "ids[1]"),
        (b"[1]", 400, "object"),
    ],
)
def test_bad_bulk_receipt_requests_are_refused_with_a_reason(
    runtime: Runtime, client: FlaskClient, body: bytes, status: int, words: str
) -> None:
    key = new_key(runtime)
    r = client.post("/v1/receipts", data=body, headers=auth(key), content_type="application/json")
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/problem+json"
    assert words in r.get_json()["detail"]
    assert client.post("/v1/receipts", data=b'{"ids": ["x"]}', content_type="application/json").status_code == 401


def test_bulk_receipts_take_1000_ids_at_once(runtime: Runtime, client: FlaskClient) -> None:
    key = new_key(runtime)
    ids = [i["id"] for i in post_batch(client, key, body_of(1000, label=False)).get_json()["items"]]
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=10_000, max_age=0, force=True)
    items = post_receipts(client, key, ids).get_json()["items"]
    assert [item["evidence"]["id"] for item in items] == ids
    assert verify_receipt(items[777], trusted_keys=[runtime.signer.verifier]).valid
