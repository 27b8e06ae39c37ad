"""Proofs on demand (issue 15): batches sealed since migration 0007 keep tiles, not a proof per leaf.

Receipts must be byte-identical to what the sealer that stored every leaf's proof produced for the same data, and
batches sealed that way (rows with a stored proof) must still be served from their stored proofs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from service import sealing
from service.core import merkle
from service.core.formats import utc_now
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.storage import ledger
from tests.factories import make_runtime, seal_as_before_0007

# Sizes around every tile edge a test of this length can reach: 1..40, then both sides of 2**k and of 256.
SIZES = [*range(1, 41), 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 511, 512, 513, 600]


@pytest.fixture
def runtime(tmp_path: Path, migrated_db_url: str) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path, migrated_db_url)
    yield rt
    rt.engine.dispose()


def _deposit(conn: Connection, tenant: int, n: int, tag: str) -> list[str]:
    items = [(hashlib.sha256(f"{tag}/{i}".encode()).digest(), None if i % 3 else f"label {i}") for i in range(n)]
    sm3 = [hashlib.sha256(f"sm3 {tag}/{i}".encode()).digest() if i % 5 == 1 else None for i in range(n)]
    return [d.id for d in sealing.record_evidence(conn, tenant, items, utc_now(), sm3=sm3)]


def _tenant(rt: Runtime) -> int:
    with rt.engine.begin() as conn:
        return ledger.insert_tenant(conn, "acme", 0)


def _seal(rt: Runtime, n: int) -> sealing.SealResult:
    with rt.engine.begin() as conn:
        result = sealing.seal_batch(conn, rt.signer, utc_now(), n)
    assert result is not None and result.size == n
    return result


def _expected_proofs(rt: Runtime, tenant: int, ids: Sequence[str]) -> list[list[str]]:
    """Every leaf's audit path as the sealer before 0007 computed and stored it: ``BatchTree(leaf hashes)
    .inclusion_proof(i)`` over the batch's leaves (``ids``: all of one batch, in leaf order)."""
    with rt.engine.connect() as conn:
        rows = ledger.get_evidence_many(conn, tenant, ids)
    assert [rows[i].leaf_index for i in ids] == list(range(len(ids)))
    tree = merkle.BatchTree(merkle.leaf_hashes([sealing.leaf_of_evidence(rows[i]).to_bytes() for i in ids]))
    return [[base64.b64encode(h).decode() for h in tree.inclusion_proof(i)] for i in range(len(ids))]


def test_on_demand_proofs_equal_the_stored_ones_for_every_batch_size(runtime: Runtime) -> None:
    tenant = _tenant(runtime)
    for n in SIZES:
        with runtime.engine.begin() as conn:
            ids = _deposit(conn, tenant, n, f"size {n}")
        result = _seal(runtime, n)
        with runtime.engine.connect() as conn:
            stored = ledger.get_batch_tiles(conn, result.seq, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (2, 0)])
            no_proofs = conn.execute(
                select(func.count())
                .select_from(ledger.batch_leaves)
                .where(ledger.batch_leaves.c.batch_seq == result.seq, ledger.batch_leaves.c.proof.is_(None))
            ).scalar_one()
            sealing.TILE_CACHE.clear()
            bulk = sealing.receipts_for(conn, tenant, ids)
            single = [sealing.receipt_for(conn, tenant, i) for i in ids]  # now from the process cache
        assert no_proofs == n
        assert set(stored) == {(0, t) for t in range(-(-n // 256))} | ({(1, 0)} if n > 256 else set()), n
        assert [r["batch"]["index"] for r in bulk] == list(range(n))
        assert [r["batch"]["proof"] for r in bulk] == _expected_proofs(runtime, tenant, ids), n
        assert [json.dumps(r, sort_keys=True) for r in single] == [json.dumps(r, sort_keys=True) for r in bulk]
        for r in bulk[:3] + bulk[-3:]:
            assert verify_receipt(r, trusted_keys=[runtime.signer.verifier]).valid


def test_batches_with_stored_proofs_are_served_from_them(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = _tenant(runtime)
    with runtime.engine.begin() as conn:
        old_ids = _deposit(conn, tenant, 300, "old")
    old = seal_as_before_0007(runtime, monkeypatch, 300)
    with runtime.engine.begin() as conn:
        new_ids = _deposit(conn, tenant, 300, "new")
    new = _seal(runtime, 300)
    with runtime.engine.connect() as conn:
        assert ledger.get_batch_tiles(conn, old.seq, [(0, 0), (1, 0)]) == {}
        assert set(ledger.get_batch_tiles(conn, new.seq, [(0, 0), (1, 0)])) == {(0, 0), (1, 0)}
        rows = ledger.get_evidence_many(conn, tenant, old_ids + new_ids)
        assert all(rows[i].proof is not None for i in old_ids) and all(rows[i].proof is None for i in new_ids)
        receipts = sealing.receipts_for(conn, tenant, [*old_ids[::7], *new_ids[::7], *old_ids[1::7]])
    by_id = {r["evidence"]["id"] if "evidence" in r else r["id"]: r for r in receipts}
    assert len(by_id) == len(receipts)
    with runtime.engine.connect() as conn:
        old_all = sealing.receipts_for(conn, tenant, old_ids)
        new_all = sealing.receipts_for(conn, tenant, new_ids)
    assert [r["batch"]["proof"] for r in old_all] == _expected_proofs(runtime, tenant, old_ids)
    assert [r["batch"]["proof"] for r in new_all] == _expected_proofs(runtime, tenant, new_ids)
    for r in receipts:
        assert verify_receipt(r, trusted_keys=[runtime.signer.verifier]).valid


def test_a_missing_tile_is_an_error_not_a_wrong_receipt(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = _tenant(runtime)
    with runtime.engine.begin() as conn:
        ids = _deposit(conn, tenant, 260, "untiled")
    insert_tiles = ledger.insert_batch_tiles
    with monkeypatch.context() as m:  # the sealer's tiles without the last one, (1, 0)
        m.setattr(ledger, "insert_batch_tiles", lambda conn, seq, tiles: insert_tiles(conn, seq, tiles[:-1]))
        _seal(runtime, 260)
    sealing.TILE_CACHE.clear()
    with runtime.engine.connect() as conn, pytest.raises(RuntimeError, match=r"no tile \(1, 0\)"):
        sealing.receipt_for(conn, tenant, ids[0])


def test_a_changed_tile_is_an_error_not_a_receipt_that_does_not_verify(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = _tenant(runtime)
    with runtime.engine.begin() as conn:
        ids = _deposit(conn, tenant, 40, "forged")
    insert_tiles = ledger.insert_batch_tiles

    def forge(conn: Connection, seq: int, tiles: list[tuple[int, int, bytes]]) -> None:
        (k, t, hashes), *rest = tiles  # leaf 1's hash, the first sibling on leaf 0's path, changed
        insert_tiles(conn, seq, [(k, t, hashes[:32] + bytes(32) + hashes[64:]), *rest])

    with monkeypatch.context() as m:
        m.setattr(ledger, "insert_batch_tiles", forge)
        result = _seal(runtime, 40)
    sealing.TILE_CACHE.clear()
    with runtime.engine.connect() as conn:
        with pytest.raises(RuntimeError, match=rf"tiles of batch {result.seq} do not prove evidence {ids[0]}"):
            sealing.receipt_for(conn, tenant, ids[0])
        with pytest.raises(RuntimeError, match="do not prove"):
            sealing.receipts_for(conn, tenant, ids[:3])
        # Leaf 1's own proof does not contain its (changed) stored hash: it is still served, and verifies.
        receipt = sealing.receipt_for(conn, tenant, ids[1])
    assert verify_receipt(receipt, trusted_keys=[runtime.signer.verifier]).valid
