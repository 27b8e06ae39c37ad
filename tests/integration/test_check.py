"""Public checking (核验) by certificate number: ``POST /v1/check`` (issue 12 item 7), through Flask's test client.

The browser test of ``/check`` is in tests/browser/test_verify_page.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service import sealing
from service.api import create_app
from service.config import Settings
from service.core.formats import utc_now
from service.core.note import Verifier
from service.core.receipt import load_json
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant


def make(tmp_path: Path, url: str, **overrides: object) -> Runtime:
    db.upgrade(url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=url, **overrides))  # type: ignore[arg-type]
    runtime.prepare_signing()
    return runtime


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    rt = make(tmp_path, db_url)
    yield rt
    rt.engine.dispose()


def deposit(client: FlaskClient, key: str, data: bytes) -> str:
    response = client.post(
        "/v1/evidence", json={"sha256": hashlib.sha256(data).hexdigest()}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 202
    return str(response.get_json()["id"])


def seal(runtime: Runtime) -> None:
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=1000, max_age=1.0, force=True)


def check(client: FlaskClient, evidence_id: str, digest: str, addr: str = "192.0.2.1") -> tuple[int, bytes]:
    response = client.post("/v1/check", json={"id": evidence_id, "sha256": digest}, environ_base={"REMOTE_ADDR": addr})
    return response.status_code, response.get_data()


def test_check_returns_the_receipt_only_when_id_and_file_both_match(runtime: Runtime) -> None:
    client = create_app(runtime=runtime, start_sealer=False).test_client()
    with runtime.engine.begin() as conn:
        key_a = create_tenant(conn, "court-a", utc_now())
        key_b = create_tenant(conn, "firm-b", utc_now())
    contract, annex = b"%PDF the contract", b"%PDF annex 1"
    mine = deposit(client, key_a, contract)
    theirs = deposit(client, key_b, annex)
    seal(runtime)
    late = deposit(client, key_a, b"deposited after the seal")  # pending

    status, body = check(client, mine, hashlib.sha256(contract).hexdigest())
    assert status == 200
    served = client.get(f"/v1/evidence/{mine}/receipt", headers={"Authorization": f"Bearer {key_a}"}).get_data()
    assert body == served  # exactly the receipt its owner gets
    trusted = [Verifier.from_vkey(runtime.signer.verifier.vkey)]
    assert verify_receipt(load_json(body), sha256=hashlib.sha256(contract).digest(), trusted_keys=trusted).valid
    # upper case (Windows certutil) is the same digest
    assert check(client, mine, hashlib.sha256(contract).hexdigest().upper())[0] == 200
    # another tenant's deposit is public to whoever holds its number and its file: no key is involved
    assert check(client, theirs, hashlib.sha256(annex).hexdigest())[0] == 200

    # every mismatch: the same status and the same bytes
    misses = [
        check(client, mine, hashlib.sha256(annex).hexdigest()),  # right id, wrong file
        check(client, theirs, hashlib.sha256(contract).hexdigest()),  # another's id with my file
        check(client, "01NOSUCHIDAAAAAAAAAAAAAAAA"[: len(mine)], hashlib.sha256(contract).hexdigest()),  # unknown id
        check(client, late, hashlib.sha256(b"deposited after the seal").hexdigest()),  # still pending
    ]
    assert {status for status, _ in misses} == {404}
    assert len({body for _, body in misses}) == 1, misses
    assert b"no sealed evidence has this id and this SHA-256" in misses[0][1]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        ('{"id": "x"}', "application/json", 400, "'sha256'"),
        ('{"sha256": "' + "a" * 64 + '"}', "application/json", 400, "'id'"),
        ('{"id": "a.b", "sha256": "' + "a" * 64 + '"}', "application/json", 400, "'id'"),
        ('{"id": "abc", "sha256": "xyz"}', "application/json", 400, "'sha256'"),
        ('{"id": "abc", "sha256": "' + "a" * 64 + '", "tenant": 1}', "application/json", 400, "unknown field"),
        ("id=abc", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
def test_malformed_checks_are_400_about_the_request_only(
    runtime: Runtime, body: str, content_type: str, status: int, words: str
) -> None:
    client = create_app(runtime=runtime, start_sealer=False).test_client()
    response = client.post("/v1/check", data=body, content_type=content_type)
    assert response.status_code == status and response.mimetype == "application/problem+json"
    assert words in response.get_json()["detail"]


def test_checks_are_rate_limited_per_client_address(tmp_path: Path, sqlite_url: str) -> None:
    runtime = make(tmp_path, sqlite_url, check_rate_limit=0.01)
    try:
        client = create_app(runtime=runtime, start_sealer=False).test_client()
        digest = "a" * 64
        statuses = [check(client, "unknownid", digest, addr="198.51.100.7")[0] for _ in range(12)]
        assert statuses[:10] == [404] * 10 and statuses[10:] == [429, 429]
        limited = client.post(
            "/v1/check", json={"id": "unknownid", "sha256": digest}, environ_base={"REMOTE_ADDR": "198.51.100.7"}
        )
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "this address" in limited.get_json()["detail"]
        # a malformed request counts too (nothing is learned by probing the parser instead)
        assert client.post("/v1/check", data="x", environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 429
        # another address is not affected
        assert check(client, "unknownid", digest, addr="198.51.100.8")[0] == 404
    finally:
        runtime.engine.dispose()


def test_check_page_is_the_verify_page_with_the_check_panel(runtime: Runtime) -> None:
    client = create_app(runtime=runtime, start_sealer=False).test_client()
    response = client.get("/check?id=abc")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'id="check-panel"' in page and 'id="receipt-input"' in page
    assert runtime.signer.verifier.vkey in page  # the server's keys embedded, as on /verify
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
