"""The witness's decisions (C2SP tlog-witness add-checkpoint, SPEC §9): every status code, durability of the
remembered size, never two roots for one size, fork attempts kept as evidence."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from service.core import merkle
from service.core.cosignature import WitnessSigner, check_cosignatures
from service.core.formats import Checkpoint
from service.core.note import Signer, sign_note
from service.core.tlog_witness import AddCheckpoint, parse_size_body
from service.witness.state import Witness, load_or_create_key

LOG = Signer("example.org/ledger", bytes([5]) * 32)


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def signed(n: int, salt: bytes = b"", signer: Signer = LOG) -> bytes:
    root = merkle.BatchTree(leaves(n, salt)).root if n else merkle.EMPTY_ROOT
    return sign_note(Checkpoint(signer.name, n, root).to_bytes(), [signer])


def request(old: int, new: int, salt: bytes = b"", proof: list[bytes] | None = None) -> bytes:
    if proof is None:
        proof = merkle.BatchTree(leaves(new, salt)).consistency_proof(old) if 0 < old < new else []
    return AddCheckpoint.build(old, proof, signed(new, salt)).to_bytes()


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    return Witness(tmp_path, WitnessSigner("w.example/witness", bytes([8]) * 32), [LOG.verifier], clock=lambda: 1.8e9)


def test_cosigns_consistent_growth_and_the_cosignature_verifies(witness: Witness) -> None:
    a = witness.add_checkpoint(request(0, 3))
    assert a.status == 200
    [check] = check_cosignatures(signed(3) + a.body, [witness.signer.verifier])
    assert check.valid and check.timestamp == 1_800_000_000
    for old, new in [(3, 7), (7, 8), (8, 100), (100, 100)]:
        assert witness.add_checkpoint(request(old, new)).status == 200, (old, new)
    assert witness.state(LOG.name).size == 100


def test_stale_old_size_gets_409_with_the_witness_size(witness: Witness) -> None:
    assert witness.add_checkpoint(request(0, 5)).status == 200
    a = witness.add_checkpoint(request(3, 9))
    assert a.status == 409 and a.media_type == "text/x.tlog.size" and parse_size_body(a.body) == 5
    assert witness.add_checkpoint(request(5, 9)).status == 200


def test_same_size_other_root_is_a_fork_refused_and_kept_as_evidence(witness: Witness) -> None:
    assert witness.add_checkpoint(request(0, 5)).status == 200
    a = witness.add_checkpoint(request(5, 5, salt=b"forked"))
    assert a.status == 422 and "fork" in a.detail
    assert [m["kind"] for m in witness.misbehaviour()] == ["fork"]
    assert witness.state(LOG.name).size == 5


def test_growth_from_a_forked_history_fails_the_proof_and_is_kept(witness: Witness) -> None:
    assert witness.add_checkpoint(request(0, 5)).status == 200
    forked_tree = merkle.BatchTree(leaves(9, b"forked"))
    a = witness.add_checkpoint(
        AddCheckpoint.build(5, forked_tree.consistency_proof(5), signed(9, b"forked")).to_bytes()
    )
    assert a.status == 422 and "does not verify" in a.detail
    assert [m["kind"] for m in witness.misbehaviour()] == ["inconsistent"]


def test_a_shorter_ledger_is_refused(witness: Witness) -> None:
    assert witness.add_checkpoint(request(0, 5)).status == 200
    assert witness.add_checkpoint(request(5, 9)).status == 200
    # the operator deleted the newest batches and signed size 5 again from the same history: old 9 > size 5
    assert witness.add_checkpoint(request(9, 5)).status == 400
    # a rolled-back ledger re-grown to a cosigned size with another root is a fork, whatever 'old' says
    a = witness.add_checkpoint(request(3, 5, salt=b"regrown"))
    assert a.status == 409 and parse_size_body(a.body) == 9
    assert [m["kind"] for m in witness.misbehaviour()] == ["fork"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"garbage", 400, "malformed"),
        (b"old 01\n\n" + signed(1), 400, "leading zeros"),
        (b"old 0\nnot base64!\n\n" + signed(1), 400, "base64"),
        (b"old 2\n\n" + signed(1), 400, "larger than"),
        (b"old 0\n\nnot a note\n", 400, "malformed"),
        (
            AddCheckpoint.build(0, [], signed(3, signer=Signer("other.example/log", bytes([1]) * 32))).to_bytes(),
            404,
            "origin",
        ),
        (AddCheckpoint.build(0, [], signed(3, signer=Signer(LOG.name, bytes([2]) * 32))).to_bytes(), 403, "not signed"),
        (b"old 0\n" + b"A" * 43 + b"=\n\n" + signed(3), 422, "from size 0"),
        (
            AddCheckpoint.build(0, [], sign_note(Checkpoint(LOG.name, 0, b"\1" * 32).to_bytes(), [LOG])).to_bytes(),
            422,
            "size 0",
        ),
    ],
)
def test_refusals(witness: Witness, body: bytes, status: int, words: str) -> None:
    a = witness.add_checkpoint(body)
    assert a.status == status and words in a.detail, a


def test_a_tampered_log_signature_is_403(witness: Witness) -> None:
    note = bytearray(signed(3))
    note[-5] = ord("A") if note[-5] != ord("A") else ord("B")
    a = witness.add_checkpoint(AddCheckpoint.build(0, [], bytes(note)).to_bytes())
    assert a.status == 403


def test_state_survives_a_restart_and_the_database_refuses_two_roots(tmp_path: Path) -> None:
    signer = load_or_create_key(tmp_path, "w.example/witness")
    assert load_or_create_key(tmp_path, None).verifier == signer.verifier
    assert (tmp_path / "witness.key").stat().st_mode & 0o077 == 0
    w = Witness(tmp_path, signer, [LOG.verifier])
    assert w.add_checkpoint(request(0, 5)).status == 200
    again = Witness(tmp_path, signer, [LOG.verifier])
    assert again.state(LOG.name).size == 5
    assert again.add_checkpoint(request(0, 9)).status == 409
    db = sqlite3.connect(tmp_path / "witness.db")
    with pytest.raises(sqlite3.IntegrityError, match="another root"):
        db.execute(
            "INSERT INTO cosigned (origin, size, root, note, timestamp, cosignature) VALUES (?, 5, ?, x'', 1, x'')",
            (LOG.name, b"\0" * 32),
        )
    with pytest.raises(sqlite3.IntegrityError, match="only grow"):
        db.execute("UPDATE latest SET size = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM cosigned")


def test_concurrent_submissions_of_the_same_step_cosign_once(witness: Witness) -> None:
    assert witness.add_checkpoint(request(0, 4)).status == 200
    bodies = [request(4, 10 + i) for i in range(8)]
    results: list[int] = []
    threads = [threading.Thread(target=lambda b=b: results.append(witness.add_checkpoint(b).status)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * 7  # the compare-and-swap lets exactly one through
