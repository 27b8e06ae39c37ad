"""The ledger asking witnesses (SPEC §9), on SQLite and PostgreSQL: cosignatures stored and appended to receipts and
checkpoints, quorum and wait, 409 recovery, forks refused by every witness, unavailable witnesses.

The witnesses here are the real ``service.witness.state.Witness`` (their own SQLite databases) reached without
HTTP through ``post``; tests/integration/test_witness_alliance.py runs them as real processes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service import sealing, witnessing
from service.config import Settings
from service.core import merkle
from service.core.cosignature import WitnessSigner
from service.core.errors import WitnessUnavailable
from service.core.formats import Checkpoint, utc_now
from service.core.note import sign_note
from service.core.policy import Policy, parse_policy
from service.core.tlog_witness import AddCheckpoint
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.storage import db, ledger
from service.storage.codec import to_us
from service.tenants import create_tenant, hash_api_key
from service.witness.state import Witness


class Alliance:
    """Three witnesses in tmp dirs, reachable by URL through ``post`` (down ones raise WitnessUnavailable)."""

    def __init__(self, tmp_path: Path, runtime: Runtime, n: int = 3, quorum: str = "2") -> None:
        self.witnesses: dict[str, Witness] = {}
        self.down: set[str] = set()
        self.calls: list[tuple[str, int]] = []
        lines = [f"log {runtime.signer.verifier.vkey}"]
        for i in range(n):
            signer = WitnessSigner(f"w{i}.example/witness", bytes([60 + i]) * 32)
            url = f"http://127.0.0.1:1/w{i}"
            self.witnesses[url] = Witness(tmp_path / f"w{i}", signer, [runtime.signer.verifier])
            lines.append(f"witness w{i} {signer.verifier.vkey} {url}")
        lines += [f"group alliance {quorum} " + " ".join(f"w{i}" for i in range(n)), "quorum alliance"]
        self.policy = parse_policy("\n".join(lines) + "\n")

    def post(self, url: str, body: bytes, timeout: float) -> tuple[int, str, bytes]:
        self.calls.append((url, AddCheckpoint.from_bytes(body).old))
        if url in self.down:
            raise WitnessUnavailable(f"{url}: connection refused")
        answer = self.witnesses[url].add_checkpoint(body)
        return answer.status, answer.media_type, answer.body if answer.status in (200, 409) else answer.detail.encode()

    def witness(self, i: int) -> Witness:
        return self.witnesses[f"http://127.0.0.1:1/w{i}"]


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    db.upgrade(db_url)
    rt = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=db_url))
    rt.prepare_signing()
    yield rt
    rt.engine.dispose()


def deposit_and_seal(runtime: Runtime, n: int = 3) -> tuple[int, list[str]]:
    with runtime.engine.begin() as conn:
        row = ledger.get_tenant_by_name(conn, "acme")
        if row is None:
            key = create_tenant(conn, "acme", utc_now())
            tenant_id = ledger.tenant_for_key_hash(conn, hash_api_key(key))
            assert tenant_id is not None
        else:
            tenant_id = int(row.id)
        digests = [hashlib.sha256(f"{time.monotonic_ns()} {i}".encode()).digest() for i in range(n)]
        deposits = sealing.record_evidence(conn, tenant_id, [(d, None) for d in digests], utc_now())
    [_] = sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=1000, max_age=1.0, force=True)
    return tenant_id, [d.id for d in deposits]


def receipt(runtime: Runtime, policy: Policy, tenant_id: int, evidence_id: str, wait: float = 10.0) -> Any:
    settings = Settings(data_dir=runtime.settings.data_dir, witness_policy=policy, witness_wait=wait)
    with runtime.engine.connect() as conn:
        doc = sealing.receipt_for(conn, tenant_id, evidence_id)
        assert doc is not None
        return witnessing.receipt_with_cosignatures(conn, settings, doc)


def cosign(runtime: Runtime, alliance: Alliance, **kw: Any) -> list[witnessing.WitnessOutcome]:
    return witnessing.cosign_checkpoint(runtime.engine, alliance.policy, timeout=1.0, post=alliance.post, **kw)


def test_every_witness_cosigns_and_receipts_verify_with_the_policy(tmp_path: Path, runtime: Runtime) -> None:
    alliance = Alliance(tmp_path, runtime)
    tenant, ids = deposit_and_seal(runtime)
    assert receipt(runtime, alliance.policy, tenant, ids[0]) is None  # 202: waiting for witnesses
    outcomes = cosign(runtime, alliance)
    assert [o.outcome for o in outcomes] == ["cosigned"] * 3
    for evidence_id in ids:
        doc = receipt(runtime, alliance.policy, tenant, evidence_id)
        assert doc["ledger"]["checkpoint"].count("\u2014 ") == 4  # the log's signature and three cosignatures
        result = verify_receipt(doc, trusted_keys=[runtime.signer.verifier], policy=alliance.policy)
        assert result.valid, result.to_json()
        assert "cosigned by w0, w1, w2 no later than" in (result.statement or "")
    # the second batch: each witness gets a consistency proof from the size it cosigned
    tenant, more = deposit_and_seal(runtime, 2)
    assert [o.outcome for o in cosign(runtime, alliance)] == ["cosigned"] * 3
    assert sorted(old for _, old in alliance.calls[3:]) == [1, 1, 1]
    assert alliance.witness(0).state(runtime.signer.name).size == 2
    with runtime.engine.connect() as conn:
        served = witnessing.served_checkpoint(conn, alliance.policy, now_us=to_us(utc_now()), wait_us=10**7)
    assert served.count("\u2014 ".encode()) == 4 and b"\n2\n" in served
    # asked again: nothing to do
    assert {o.outcome for o in cosign(runtime, alliance)} == {"present"}


def test_a_receipt_uses_a_later_cosigned_checkpoint_with_a_proof_to_its_size(tmp_path: Path, runtime: Runtime) -> None:
    alliance = Alliance(tmp_path, runtime)
    tenant, first = deposit_and_seal(runtime)
    deposit_and_seal(runtime)
    deposit_and_seal(runtime)  # the witnesses only ever see the checkpoint of size 3
    assert [o.outcome for o in cosign(runtime, alliance)] == ["cosigned"] * 3
    doc = receipt(runtime, alliance.policy, tenant, first[1])
    assert "\n3\n" in doc["ledger"]["checkpoint"]
    result = verify_receipt(doc, trusted_keys=[runtime.signer.verifier], policy=alliance.policy)
    assert result.valid, result.to_json()


def test_stale_witness_size_gets_409_and_the_service_resends_from_there(tmp_path: Path, runtime: Runtime) -> None:
    alliance = Alliance(tmp_path, runtime)
    deposit_and_seal(runtime)
    assert [o.outcome for o in cosign(runtime, alliance)] == ["cosigned"] * 3
    deposit_and_seal(runtime)
    deposit_and_seal(runtime)
    # witness 0 was shown the checkpoint of size 2 by someone else (a monitor, another submitter)
    with runtime.engine.connect() as conn:
        note2 = bytes(ledger.checkpoint_at(conn, 2).note)  # type: ignore[union-attr]
        proof = sealing.consistency_proof(conn, 1, 2)
    assert alliance.witness(0).add_checkpoint(AddCheckpoint.build(1, proof, note2).to_bytes()).status == 200
    alliance.calls.clear()
    outcomes = cosign(runtime, alliance)
    assert [o.outcome for o in outcomes] == ["cosigned"] * 3
    w0 = [old for url, old in alliance.calls if url.endswith("/w0")]
    assert w0 == [1, 2]  # 409 said 2; resent from 2


def test_fork_is_refused_by_every_witness(tmp_path: Path, runtime: Runtime) -> None:
    alliance = Alliance(tmp_path, runtime)
    for _ in range(2):
        deposit_and_seal(runtime)
        assert [o.outcome for o in cosign(runtime, alliance)] == ["cosigned"] * 3
    signer = runtime.signer  # an operator (or a thief of its key) signs another history
    same_size = sign_note(Checkpoint(signer.name, 2, b"\x42" * 32).to_bytes(), [signer])
    forked_leaves = [merkle.leaf_hash(bytes([i])) for i in range(5)]
    longer_tree = merkle.BatchTree(forked_leaves)
    longer = sign_note(Checkpoint(signer.name, 5, longer_tree.root).to_bytes(), [signer])
    shorter = sign_note(Checkpoint(signer.name, 1, b"\x43" * 32).to_bytes(), [signer])
    for w in alliance.witnesses.values():
        assert w.add_checkpoint(AddCheckpoint.build(2, [], same_size).to_bytes()).status == 422
        assert (
            w.add_checkpoint(AddCheckpoint.build(2, longer_tree.consistency_proof(2), longer).to_bytes()).status == 422
        )
        # a shorter ledger whose size-1 root differs from the one cosigned: a fork, whatever 'old' says
        assert w.add_checkpoint(AddCheckpoint.build(2, [], shorter).to_bytes()).status == 422
        assert w.add_checkpoint(AddCheckpoint.build(0, [], shorter).to_bytes()).status == 409
        assert [m["kind"] for m in w.misbehaviour()] == ["fork", "inconsistent", "fork", "fork"]
        assert w.state(signer.name).size == 2


def test_down_witnesses_delay_receipts_by_the_wait_only(tmp_path: Path, runtime: Runtime, caplog: Any) -> None:
    alliance = Alliance(tmp_path, runtime)
    alliance.down = {"http://127.0.0.1:1/w1", "http://127.0.0.1:1/w2"}
    tenant, ids = deposit_and_seal(runtime)
    outcomes = cosign(runtime, alliance)
    assert sorted(o.outcome for o in outcomes) == ["cosigned", "unavailable", "unavailable"]
    assert receipt(runtime, alliance.policy, tenant, ids[0], wait=30) is None  # quorum 2 of 3 not met yet
    doc = receipt(runtime, alliance.policy, tenant, ids[0], wait=0)  # the wait ran out: served as it is
    assert doc is not None and doc["ledger"]["checkpoint"].count("\u2014 ") == 2
    assert verify_receipt(doc, trusted_keys=[runtime.signer.verifier]).valid
    assert not verify_receipt(doc, trusted_keys=[runtime.signer.verifier], policy=alliance.policy).valid
    before = _shortfalls()
    with caplog.at_level("WARNING"):
        assert witnessing.check_shortfall(runtime.engine, alliance.policy, 1, wait=0)
    assert _shortfalls() == before + 1 and "witness shortfall" in caplog.text
    # the witnesses come back: the next round cosigns the latest checkpoint from the sizes they remember
    alliance.down.clear()
    deposit_and_seal(runtime)
    assert [o.outcome for o in cosign(runtime, alliance)] == ["cosigned"] * 3
    doc = receipt(runtime, alliance.policy, tenant, ids[0], wait=30)
    assert verify_receipt(doc, trusted_keys=[runtime.signer.verifier], policy=alliance.policy).valid
    assert not witnessing.check_shortfall(runtime.engine, alliance.policy, 1, wait=0)


def _shortfalls() -> float:
    from service import metrics

    return float(metrics.WITNESS_SHORTFALL._value.get())  # noqa: SLF001


def test_a_witness_answering_garbage_or_refusing_stores_nothing(tmp_path: Path, runtime: Runtime) -> None:
    alliance = Alliance(tmp_path, runtime, n=2, quorum="1")
    deposit_and_seal(runtime)

    def bad(answer: tuple[int, str, bytes]) -> Callable[[str, bytes, float], tuple[int, str, bytes]]:
        return lambda url, body, timeout: answer

    other = WitnessSigner("w0.example/witness", bytes([99]) * 32)  # right name, wrong key
    with runtime.engine.connect() as conn:
        note = bytes(ledger.latest_checkpoint(conn).note)  # type: ignore[union-attr]
    text = note[: note.rindex(b"\n\n") + 1]
    for answer, words in [
        ((200, "text/plain", b"hello"), "not signature lines"),
        ((200, "text/plain", other.cosign(text, 5)), "no valid cosignature"),
        ((403, "application/problem+json", b'{"detail": "not signed by the log"}'), "not signed by the log"),
    ]:
        outcomes = witnessing.cosign_checkpoint(runtime.engine, alliance.policy, timeout=1.0, post=bad(answer))
        assert {o.outcome for o in outcomes} == {"refused"} and all(words in o.detail for o in outcomes), outcomes
    with runtime.engine.connect() as conn:
        assert ledger.cosignatures_at(conn, 1) == []


def test_bulk_receipt_items_wait_for_witnesses_then_carry_cosignatures(tmp_path: Path, runtime: Runtime) -> None:
    alliance = Alliance(tmp_path, runtime)
    tenant, ids = deposit_and_seal(runtime)
    settings = Settings(data_dir=runtime.settings.data_dir, witness_policy=alliance.policy)
    with runtime.engine.connect() as conn:
        items = witnessing.items_with_cosignatures(conn, settings, sealing.receipts_for(conn, tenant, [*ids, "nope"]))
    assert [i.get("waiting_for") for i in items[:3]] == ["witnesses"] * 3 and items[3]["status"] == "not_found"
    assert items[0]["id"] == ids[0] and items[0]["status"] == "sealed"
    cosign(runtime, alliance)
    with runtime.engine.connect() as conn:
        items = witnessing.items_with_cosignatures(conn, settings, sealing.receipts_for(conn, tenant, ids))
    for evidence_id, item in zip(ids, items, strict=True):
        assert item["evidence"]["id"] == evidence_id
        result = verify_receipt(item, trusted_keys=[runtime.signer.verifier], policy=alliance.policy)
        assert result.valid, result.to_json()


def test_api_receipt_certificate_and_bundle_wait_for_witnesses(tmp_path: Path, runtime: Runtime) -> None:
    from service.api import create_app
    from service.tenants import create_tenant as make_tenant

    alliance = Alliance(tmp_path, runtime)
    settings = Settings(
        data_dir=runtime.settings.data_dir, database_url=runtime.settings.database_url, witness_policy=alliance.policy
    )
    rt = Runtime(settings, runtime.engine)
    client = create_app(runtime=rt, start_sealer=False).test_client()
    with runtime.engine.begin() as conn:
        key = make_tenant(conn, "court", utc_now())
    headers = {"Authorization": f"Bearer {key}"}
    evidence_id = client.post("/v1/evidence", json={"sha256": "ab" * 32}, headers=headers).get_json()["id"]
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=10, max_age=0.0, force=True)
    for path in ("receipt", "certificate.pdf", "bundle.zip"):
        response = client.get(f"/v1/evidence/{evidence_id}/{path}", headers=headers)
        assert response.status_code == 202, path
        assert response.get_json()["waiting_for"] == "witnesses"
    assert "\u2014 w" not in client.get("/v1/checkpoint").get_data(as_text=True)
    cosign(runtime, alliance)
    doc = client.get(f"/v1/evidence/{evidence_id}/receipt", headers=headers).get_json()
    assert verify_receipt(doc, trusted_keys=[runtime.signer.verifier], policy=alliance.policy).valid
    for path in ("certificate.pdf", "bundle.zip"):
        response = client.get(f"/v1/evidence/{evidence_id}/{path}", headers=headers)
        assert response.status_code == 200, path
        if path == "certificate.pdf" and shutil.which("pdftotext"):
            text = subprocess.run(["pdftotext", "-", "-"], input=response.data, capture_output=True).stdout.decode()
            assert "Witnessed no later than" in text and "w0.example/witness" not in text  # policy names
            first = alliance.policy.witnesses[0]
            assert "w0 · " in text and first.key.fingerprint in " ".join(text.split())
        response.close()
    assert client.get("/v1/checkpoint").get_data(as_text=True).count("\u2014 ") == 4
    assert client.get("/log/checkpoint").data == client.get("/v1/checkpoint").data
