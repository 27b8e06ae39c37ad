"""The dual digest (issue 16): uploads hashed with SHA-256 and SM3 in one pass, hash-only deposits that send
``sm3``, the bulk API's ``sm3`` items, ``evidence submit --sm3``; the v2 leaf binds the SM3 (SPEC §2.1), the
receipt carries it in ``evidence.digests``, verification step 1 checks it against the file, and the audit names
an SM3 edited in the database. SM3 values are checked against OpenSSL's (hashlib) on the same bytes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service import sealing
from service.api import create_app
from service.config import Settings
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.trust.audit import audit_ledger
from tests.integration.test_api import MAX_UPLOAD, auth, make_runtime, new_key
from tests.integration.test_audit import tamper
from tests.integration.test_submit import Live, evidence, live  # noqa: F401


def sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


@pytest.fixture
def rt(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, db_url, max_upload_bytes=MAX_UPLOAD)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def client(rt: Runtime) -> FlaskClient:
    return create_app(runtime=rt, start_sealer=False).test_client()


def _seal(rt: Runtime) -> None:
    sealing.seal_pending(rt.engine, rt.signer, max_leaves=1000, max_age=1, force=True)


def _receipt(client: FlaskClient, key: str, evidence_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/evidence/{evidence_id}/receipt", headers=auth(key))
    assert r.status_code == 200, r.json
    doc = r.json
    assert isinstance(doc, dict)
    return doc


def _leaf_lines(doc: dict[str, Any]) -> list[str]:
    return base64.b64decode(doc["evidence"]["leaf"]).decode().splitlines()


@pytest.mark.parametrize("how", ["raw", "multipart"])
def test_uploads_are_hashed_with_sha256_and_sm3_and_the_leaf_binds_the_sm3(
    rt: Runtime, client: FlaskClient, how: str
) -> None:
    key = new_key(rt)
    data = os.urandom(300_000)
    if how == "raw":
        made = client.post("/v1/evidence", data=data, headers={**auth(key), "Content-Type": "application/octet-stream"})
    else:
        made = client.post(
            "/v1/evidence",
            data={"file": (io.BytesIO(data), "c.pdf")},
            headers=auth(key),
            content_type="multipart/form-data",
        )
    assert made.status_code == 202, made.json
    body = made.json
    assert body is not None and body["sha256"] == hashlib.sha256(data).hexdigest() and body["sm3"] == sm3(data).hex()
    _seal(rt)
    doc = _receipt(client, key, body["id"])
    assert doc["format"] == "evidence-receipt/v2"
    assert doc["evidence"]["digests"] == {"sm3": sm3(data).hex()}
    assert f"sm3 {sm3(data).hex()}" == _leaf_lines(doc)[4]
    result = verify_receipt(
        doc, sha256=hashlib.sha256(data).digest(), file_digests={"sm3": sm3(data)}, trusted_keys=[rt.signer.verifier]
    )
    assert result.valid, result.to_json()
    status = client.get(f"/v1/evidence/{body['id']}", headers=auth(key)).json
    assert status is not None and status["sm3"] == sm3(data).hex() and status["status"] == "sealed"


def test_upload_sm3_can_be_turned_off(tmp_path: Path, sqlite_url: str) -> None:
    runtime = make_runtime(tmp_path, sqlite_url, upload_sm3=False)
    try:
        client = create_app(runtime=runtime, start_sealer=False).test_client()
        key = new_key(runtime)
        made = client.post(
            "/v1/evidence", data=b"abc", headers={**auth(key), "Content-Type": "application/octet-stream"}
        )
        assert made.status_code == 202 and made.json is not None and "sm3" not in made.json
        _seal(runtime)
        assert _receipt(client, key, made.json["id"])["format"] == "evidence-receipt/v1"
    finally:
        runtime.engine.dispose()
    assert Settings.from_env({"EVIDENCE_UPLOAD_SM3": "0"}).upload_sm3 is False
    assert Settings.from_env({}).upload_sm3 is True


def test_hash_only_deposit_may_send_sm3(rt: Runtime, client: FlaskClient) -> None:
    key = new_key(rt)
    data = b"contract text"
    made = client.post(
        "/v1/evidence",
        json={"sha256": hashlib.sha256(data).hexdigest(), "sm3": sm3(data).hex().upper(), "label": "合同.pdf"},
        headers=auth(key),
    )
    assert made.status_code == 202, made.json
    assert made.json is not None and made.json["sm3"] == sm3(data).hex()
    _seal(rt)
    doc = _receipt(client, key, made.json["id"])
    lines = _leaf_lines(doc)
    assert lines[4] == f"sm3 {sm3(data).hex()}" and lines[5].startswith("label-sha256 ")  # digest lines first
    assert verify_receipt(
        doc, file_digests={"sm3": sm3(data)}, sha256=hashlib.sha256(data).digest(), trusted_keys=[rt.signer.verifier]
    ).valid
    wrong = verify_receipt(
        doc,
        file_digests={"sm3": sm3(b"other")},
        sha256=hashlib.sha256(data).digest(),
        trusted_keys=[rt.signer.verifier],
    )
    assert not wrong.valid and wrong.step == 1


@pytest.mark.parametrize(
    ("sm3_value", "detail"),
    [
        (5, "'sm3' must be a string of 64 hex digits"),
        ("ab" * 31, "64 hex digits, 62 given"),
        ("zz" * 32, "not a hex digit"),
    ],
)
def test_bad_sm3_is_refused_and_nothing_is_stored(
    rt: Runtime, client: FlaskClient, sm3_value: Any, detail: str
) -> None:
    key = new_key(rt)
    r = client.post("/v1/evidence", json={"sha256": "00" * 32, "sm3": sm3_value}, headers=auth(key))
    assert r.status_code == 400 and r.json is not None and detail in r.json["detail"]
    found = client.get("/v1/evidence?sha256=" + "00" * 32, headers=auth(key))
    assert found.status_code in (200, 404)
    if found.status_code == 200:
        assert found.json is not None and found.json["items"] == []


def test_bulk_items_may_send_sm3(rt: Runtime, client: FlaskClient) -> None:
    key = new_key(rt)
    files = [os.urandom(100) for _ in range(3)]
    items: list[dict[str, str]] = [{"sha256": hashlib.sha256(f).hexdigest(), "sm3": sm3(f).hex()} for f in files]
    del items[1]["sm3"]
    made = client.post("/v1/evidence/batch", json={"items": items}, headers=auth(key))
    assert made.status_code == 202, made.json
    answered = made.json["items"]  # type: ignore[index]
    assert [a.get("sm3") for a in answered] == [sm3(files[0]).hex(), None, sm3(files[2]).hex()]
    _seal(rt)
    docs = [_receipt(client, key, a["id"]) for a in answered]
    assert [d["format"] for d in docs] == ["evidence-receipt/v2", "evidence-receipt/v1", "evidence-receipt/v2"]
    bad = client.post(
        "/v1/evidence/batch", json={"items": [items[0], {"sha256": items[1]["sha256"], "sm3": "12"}]}, headers=auth(key)
    )
    assert bad.status_code == 422 and bad.json is not None and "items[1].sm3" in bad.json["detail"]


def test_audit_rebuilds_sm3_leaves_and_names_an_edited_sm3(rt: Runtime, client: FlaskClient, db_url: str) -> None:
    key = new_key(rt)
    for data in (b"one", b"two"):
        made = client.post("/v1/evidence", data=data, headers={**auth(key), "Content-Type": "application/octet-stream"})
        assert made.status_code == 202
    _seal(rt)
    report = audit_ledger(rt.engine)
    assert report.ok, report.findings
    tamper(rt.engine, "UPDATE evidence_v2 SET sm3 = :v", params={"v": sm3(b"forged")})
    report = audit_ledger(rt.engine)
    assert not report.ok
    assert report.first is not None and report.first.table in ("batch_leaves", "evidence", "evidence_v2"), (
        report.findings
    )


def test_evidence_submit_sm3(tmp_path: Path, live: Live) -> None:  # noqa: F811
    tree = tmp_path / "docs"
    tree.mkdir()
    contents = {"a.txt": b"alpha", "b.bin": os.urandom(70_000)}
    for name, data in contents.items():
        (tree / name).write_bytes(data)
    done = evidence(live, "submit", str(tree), "--sm3", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    for name, data in contents.items():
        receipt = tree / f"{name}.receipt.json"
        doc = json.loads(receipt.read_text())
        assert doc["format"] == "evidence-receipt/v2" and doc["evidence"]["digests"] == {"sm3": sm3(data).hex()}
        checked = evidence(live, "verify", str(receipt), str(tree / name), "--key", live.vkey, "--json")
        assert checked.returncode == 0, checked.stdout
        step1 = [c for c in json.loads(checked.stdout)["checks"] if c["step"] == 1][0]
        assert f"its SM3 {sm3(data).hex()} equals evidence.digests.sm3" in step1["detail"]


def test_an_attested_deposit_states_its_sm3_and_a_countersignature_repeats_it(tmp_path: Path, db_url: str) -> None:
    """SPEC §2.2: the statement's lines are the leaf's (the sm3 digest line included); a statement without the sm3
    line is refused before anything is stored; a co-deposit repeats the first deposit's digest lines."""
    import datetime as dt

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from service.core import attestation
    from service.core.formats import claim_lines
    from tests.integration.test_deposits_v2 import register

    runtime = make_runtime(tmp_path, db_url)
    try:
        client = create_app(runtime=runtime, start_sealer=False).test_client()
        key = new_key(runtime)
        signer, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        register(runtime, tmp_path, signer)
        (tmp_path / "second").mkdir()
        register(runtime, tmp_path / "second", other)
        data = b"signed contract"
        digest, sm3v = hashlib.sha256(data).digest(), sm3(data)

        def att(k: Ed25519PrivateKey, lines: list[str]) -> str:
            stmt = attestation.build_statement(lines, dt.datetime.now(dt.UTC))
            return base64.b64encode(attestation.sign_statement(stmt, k)).decode()

        without_sm3 = att(signer, claim_lines(digest, (), None, None, None))
        refused = client.post(
            "/v1/evidence",
            json={"sha256": digest.hex(), "sm3": sm3v.hex(), "attestation": without_sm3},
            headers=auth(key),
        )
        assert refused.status_code == 422, refused.get_data(as_text=True)
        good = att(signer, claim_lines(digest, (("sm3", sm3v),), None, None, None))
        made = client.post(
            "/v1/evidence", json={"sha256": digest.hex(), "sm3": sm3v.hex(), "attestation": good}, headers=auth(key)
        )
        assert made.status_code == 202, made.get_data(as_text=True)
        first = made.json["id"]  # type: ignore[index]
        co = att(other, claim_lines(digest, (("sm3", sm3v),), None, None, first))
        cosigned = client.post(f"/v1/evidence/{first}/cosign", json={"attestation": co}, headers=auth(key))
        assert cosigned.status_code == 202, cosigned.get_data(as_text=True)
        _seal(runtime)
        for evidence_id in (first, cosigned.json["id"]):  # type: ignore[index]
            doc = _receipt(client, key, evidence_id)
            assert doc["evidence"]["digests"] == {"sm3": sm3v.hex()}
            result = verify_receipt(
                doc, sha256=digest, file_digests={"sm3": sm3v}, trusted_keys=[runtime.signer.verifier]
            )
            assert result.valid, result.to_json()
            assert result.depositor is not None
    finally:
        runtime.engine.dispose()


def test_evidence_submit_sm3_with_sign_states_the_sm3(tmp_path: Path, live: Live) -> None:  # noqa: F811
    """--sm3 with --sign: the client's attestation states the sm3 line too, so the service accepts it and every
    receipt verifies with its depositor and its SM3."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    from service.core.formats import utc_now
    from service.deposits import add_depositor_key

    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "depositor.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with live.runtime.engine.begin() as conn:
        add_depositor_key(conn, "acme", key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw), utc_now())
    tree = tmp_path / "signed"
    tree.mkdir()
    (tree / "c.pdf").write_bytes(b"%PDF contract")
    done = evidence(live, "submit", str(tree), "--sm3", "--sign", str(key_file), "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((tree / "c.pdf.receipt.json").read_text())
    assert doc["evidence"]["digests"] == {"sm3": sm3(b"%PDF contract").hex()} and "attestation" in doc["evidence"]
    checked = evidence(live, "verify", str(tree / "c.pdf.receipt.json"), str(tree / "c.pdf"), "--key", live.vkey)
    assert checked.returncode == 0, checked.stdout
