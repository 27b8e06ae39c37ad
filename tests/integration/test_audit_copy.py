"""The PostgreSQL read of ``evidence audit``: leaf rows by binary COPY, parsed column-wise (issue 15).

``audit_queries.leaf_batches`` reads each range of batches with ``COPY (...) TO STDOUT (FORMAT binary)`` and parses
it with one regex pass (``parse_leaf_copy``); rows it does not accept go through the cursor instead. These tests
compare the two reads on a real server, check that a tampered row read through COPY is named (with the values
the binary parse decoded), and that malformed COPY bytes are refused rather than misread.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from service import sealing
from service.core.formats import format_time, utc_now
from service.runtime import Runtime
from service.storage import audit_queries as q
from service.storage import ledger
from service.storage.codec import from_us
from service.tenants import create_tenant, hash_api_key
from service.trust.audit import audit_ledger
from tests.factories import make_runtime, seal_as_before_0007

BATCHES = (5, 3, 4)  # batch 1 is labelled: v2 leaves


@pytest.fixture
def runtime(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """Batch 0 sealed as before migration 0007 (a stored proof per leaf), the others with NULL proofs and tiles."""
    rt = make_runtime(tmp_path, pg_url)
    with rt.engine.begin() as conn:
        tenant_id = ledger.tenant_for_key_hash(conn, hash_api_key(create_tenant(conn, "acme", utc_now())))
    assert tenant_id is not None
    for n in BATCHES:
        with rt.engine.begin() as conn:
            digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(n)]
            labels = [f"合同 {i}.pdf" if n == BATCHES[1] else None for i in range(n)]
            sealing.record_evidence(conn, tenant_id, list(zip(digests, labels, strict=True)), utc_now())
        if n == BATCHES[0]:
            seal_as_before_0007(rt, monkeypatch, n)
        else:
            sealing.seal_pending(rt.engine, rt.signer, max_leaves=100, max_age=1, force=True)
    yield rt
    rt.engine.dispose()


def stored(rt: Runtime) -> list[tuple[Any, ...]]:
    """(batch_seq, leaf_index, evidence_pk, id, sha256, received_us, proof) of every leaf, read plainly."""
    with rt.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT b.batch_seq, b.leaf_index, b.evidence_pk, e.id, e.sha256, e.received_us, b.proof "
                "FROM batch_leaves b JOIN evidence e ON e.pk = b.evidence_pk ORDER BY b.batch_seq, b.leaf_index"
            )
        ).all()
    return [(*row[:4], bytes(row[4]), row[5], None if row[6] is None else bytes(row[6])) for row in rows]


def flat(batches: list[q.LeafBatch]) -> list[tuple[Any, ...]]:
    out = []
    for b in batches:
        for i in range(len(b.pks)):
            out.append(
                (
                    b.seq,
                    b.indexes[i],
                    b.pks[i],
                    b.ids[i],
                    bytes(b.digests[i]),
                    b.received[i],
                    None if b.proofs[i] is None else bytes(b.proofs[i]),
                )
            )
    return out


def copy_read(rt: Runtime) -> tuple[list[q.LeafBatch] | None, list[q.LeafBatch]]:
    """The leaves read by COPY (None if the parse refused a range: the audit reads it through the cursor) and
    through the cursor, in one snapshot."""
    with q.snapshot(rt.engine) as conn:
        span = q.leaf_seq_span(conn)
        assert span is not None
        ranges = list(q._read_ranges(conn, *span))
        accepted = True
        for lo, hi in ranges:
            columns = q._copy_columns(conn, lo, hi)
            proofs = q.parse_bytea_copy(q._copy(conn, q._proof_select(lo, hi)))
            accepted &= columns is not None and proofs is not None and len(proofs) == len(columns[0])
        copied = [b for lo, hi in ranges for b in q._range_batches(conn, lo, hi)]
        via_cursor = [b for lo, hi in ranges for b in q._range_batches(conn, lo, hi, copy=False)]
        return copied if accepted else None, via_cursor


def tamper(rt: Runtime, sql: str, **params: Any) -> None:
    with rt.engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(sql), params)


def victim(rt: Runtime, seq: int, index: int) -> Any:
    with rt.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT e.pk, e.id, e.received_us FROM evidence e JOIN batch_leaves b ON b.evidence_pk = e.pk "
                "WHERE b.batch_seq = :s AND b.leaf_index = :i"
            ),
            {"s": seq, "i": index},
        ).one()


@pytest.mark.postgres
@pytest.mark.parametrize("span_per_leaf", [2, 0], ids=["join-here", "join-on-server"])
@pytest.mark.parametrize("rows_per_copy", [50_000, 4, 1])
def test_copy_read_equals_the_stored_rows(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, rows_per_copy: int, span_per_leaf: int
) -> None:
    """Every value the binary parse returns is the stored one, in ledger order, one LeafBatch per batch, also when
    the span is cut into several COPY ranges (of whole batches of 5, 3 and 4 leaves)."""
    monkeypatch.setattr(q, "ROWS_PER_COPY", rows_per_copy)
    monkeypatch.setattr(q, "SPAN_PER_LEAF", span_per_leaf)
    with q.snapshot(runtime.engine) as conn:
        ranges = list(q._read_ranges(conn, 0, 2))
    assert ranges == {50_000: [(0, 2)], 4: [(0, 0), (1, 2)], 1: [(0, 0), (1, 1), (2, 2)]}[rows_per_copy]
    copied, via_cursor = copy_read(runtime)
    assert copied is not None, "the COPY parse refused a well-formed ledger"
    assert [b.seq for b in copied] == [0, 1, 2]
    assert [len(b.pks) for b in copied] == list(BATCHES)
    assert flat(copied) == stored(runtime) == flat(via_cursor)
    assert all(type(v) is int for b in copied for v in (*b.indexes, *b.pks, *b.received))
    assert all(type(v) is str for b in copied for v in b.ids)
    # the v2 parts (labelled batch 1) are the cursor's
    assert [b.v2 for b in copied] == [{k: tuple(map(_plain, v)) for k, v in b.v2.items()} for b in via_cursor]
    assert not copied[0].v2 and set(copied[1].v2) == set(copied[1].pks)


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


@pytest.mark.postgres
@pytest.mark.parametrize("rows_per_copy", [50_000, 4])
def test_a_tampered_digest_read_by_copy_is_named(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, rows_per_copy: int
) -> None:
    monkeypatch.setattr(q, "ROWS_PER_COPY", rows_per_copy)
    row = victim(runtime, 2, 3)
    tamper(runtime, "UPDATE evidence SET sha256 = :d WHERE pk = :pk", d=hashlib.sha256(b"forged").digest(), pk=row.pk)
    copied, _ = copy_read(runtime)
    assert copied is not None  # still the well-formed shape: the COPY path read it
    assert copied[2].digests[3] == hashlib.sha256(b"forged").digest()
    report = audit_ledger(runtime.engine, jobs=1)
    assert report.finding_count == 1
    first = report.first
    assert first is not None
    assert (first.table, first.key) == ("evidence", f"pk={row.pk} (id {row.id})"), str(first)
    assert "leaf 3 of batch 2" in first.problem


@pytest.mark.postgres
def test_a_late_received_time_read_by_copy_is_named_with_its_value(runtime: Runtime) -> None:
    """The int8 columns are decoded exactly: the finding quotes the stored microsecond."""
    row = victim(runtime, 0, 2)
    with runtime.engine.connect() as conn:
        sealed_us = conn.execute(text("SELECT sealed_us FROM batches WHERE seq = 0")).scalar_one()
    late = int(sealed_us) + 1
    tamper(runtime, "UPDATE evidence SET received_us = :r WHERE pk = :pk", r=late, pk=row.pk)
    copied, _ = copy_read(runtime)
    assert copied is not None and copied[0].received[2] == late
    report = audit_ledger(runtime.engine, jobs=1)
    first = report.first
    assert first is not None
    assert (first.table, first.key) == ("evidence", f"pk={row.pk} (id {row.id})"), str(first)
    assert f"received {format_time(from_us(late))} after its batch 0 was sealed" in first.problem


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE evidence SET id = 'with space' WHERE pk = :pk",
        "UPDATE evidence SET id = repeat('x', 65) WHERE pk = :pk",
        "DELETE FROM evidence WHERE pk = :pk",
    ],
    ids=["invalid-id", "long-id", "missing-evidence"],
)
def test_rows_outside_the_copy_shape_go_through_the_cursor(runtime: Runtime, sql: str) -> None:
    row = victim(runtime, 1, 1)
    tamper(runtime, sql, pk=row.pk)
    copied, _ = copy_read(runtime)
    assert copied is None
    report = audit_ledger(runtime.engine, jobs=1)
    assert not report.ok
    assert report.first is not None and str(row.pk) in report.first.key


# --- the parser on hand-built bytes ----------------------------------------------------------------------

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def field(value: bytes | None) -> bytes:
    return struct.pack(">i", -1) if value is None else struct.pack(">i", len(value)) + value


def row(seq: int, index: int, pk: int, eid: bytes | None, digest: bytes | None, received: int) -> bytes:
    return struct.pack(">h", 6) + b"".join(
        field(v)
        for v in (
            struct.pack(">q", seq),
            struct.pack(">i", index),
            struct.pack(">q", pk),
            eid,
            digest,
            struct.pack(">q", received),
        )
    )


D = hashlib.sha256(b"x").digest()
GOOD = [row(7, 0, 41, b"a" * 64, D, -5), row(7, 1, 2**40, b"B-_9", D[::-1], 2**62)]


def test_parse_leaf_copy_decodes_every_column() -> None:
    assert q.parse_leaf_copy(HEADER + b"".join(GOOD) + b"\xff\xff") == (
        [7, 7],
        [0, 1],
        [41, 2**40],
        ["a" * 64, "B-_9"],
        [D, D[::-1]],
        [-5, 2**62],
    )
    assert q.parse_leaf_copy(HEADER + b"\xff\xff") == ([], [], [], [], [], [])


@pytest.mark.parametrize(
    "data",
    [
        HEADER + b"".join(GOOD),  # no trailer
        HEADER[:-1] + b"\x01" + b"".join(GOOD) + b"\xff\xff",  # a header extension
        HEADER + GOOD[0] + b"\x00" + GOOD[1] + b"\xff\xff",  # a stray byte between rows
        HEADER + GOOD[0][:-1] + b"\xff\xff",  # a truncated row
        HEADER + row(1, 0, 1, None, D, 1) + b"\xff\xff",  # NULL evidence columns
        HEADER + row(1, 0, 1, b"ab", D, 1).replace(b"\x00\x00\x00\x02ab", b"\x00\x00\x00\x03ab") + b"\xff\xff",
        HEADER + row(1, 0, 1, b"a b", D, 1) + b"\xff\xff",  # not an evidence id
        HEADER + row(1, 0, 1, b"x" * 65, D, 1) + b"\xff\xff",  # too long
        HEADER + row(1, 0, 1, b"ab", D[:31], 1) + b"\xff\xff",  # a 31-byte digest
    ],
    ids=["no-trailer", "extension", "stray-byte", "truncated", "null", "id-length", "bad-id", "long-id", "digest"],
)
def test_parse_leaf_copy_refuses_what_it_cannot_read_exactly(data: bytes) -> None:
    assert q.parse_leaf_copy(data) is None


def test_parse_bytea_copy() -> None:
    values = [b"", b"\x00\x01" * 40, None, os.urandom(448)]
    data = HEADER + b"".join(struct.pack(">h", 1) + field(v) for v in values) + b"\xff\xff"
    assert q.parse_bytea_copy(data) == values
    assert q.parse_bytea_copy(HEADER + (struct.pack(">h", 1) + field(None)) * 3 + b"\xff\xff") == [None] * 3
    assert q.parse_bytea_copy(HEADER + b"\xff\xff") == []
    assert q.parse_bytea_copy(data[:-1]) is None
    assert q.parse_bytea_copy(data[:-3] + b"\xff\xff") is None  # the last value cut short
    assert q.parse_bytea_copy(HEADER + struct.pack(">h", 2) + field(b"a") + field(b"b") + b"\xff\xff") is None


def test_parse_bytea_copy_runs_of_lengths() -> None:
    """Runs of one length are read at a stride (up to 4,096 rows a pass): every run boundary, NULL runs, empty
    values and runs longer than a pass come out as the row-by-row reading gives them."""
    rng = random.Random(15)
    for _ in range(60):
        values: list[bytes | None] = []
        for _ in range(rng.randrange(0, 6)):
            length = rng.choice([None, 0, 5, 32, 64, 448])
            count = rng.choice([1, 2, 3, 4096, 5000])
            values += [None if length is None else rng.randbytes(length) for _ in range(count)]
        data = HEADER + b"".join(struct.pack(">h", 1) + field(v) for v in values) + b"\xff\xff"
        assert q.parse_bytea_copy(data) == values
        if values:
            assert q.parse_bytea_copy(data[:-3] + b"\xff\xff") is None


def test_parse_key_and_evidence_copy() -> None:
    keys = [(3, 0, 17), (3, 1, 2**40), (4, 0, 1)]
    data = HEADER + b"".join(struct.pack(">hiqiiiq", 3, 8, s, 4, i, 8, pk) for s, i, pk in keys) + b"\xff\xff"
    assert q.parse_key_copy(data) == ([3, 3, 4], [0, 1, 0], [17, 2**40, 1])
    assert q.parse_key_copy(HEADER + b"\xff\xff") == ([], [], [])
    assert q.parse_key_copy(data[:-3] + b"\xff\xff") is None
    null_pk = HEADER + struct.pack(">hiqii", 3, 8, 3, 4, 0) + struct.pack(">i", -1) + bytes(8) + b"\xff\xff"
    assert q.parse_key_copy(null_pk) is None
    rows = [(41, b"a" * 64, D, -5), (2**40, b"B-_9", D[::-1], 2**62)]
    data = HEADER + b"".join(
        struct.pack(">h", 4) + field(struct.pack(">q", pk)) + field(eid) + field(d) + field(struct.pack(">q", r))
        for pk, eid, d, r in rows
    )
    assert q.parse_evidence_copy(data + b"\xff\xff") == ([41, 2**40], ["a" * 64, "B-_9"], [D, D[::-1]], [-5, 2**62])
    assert q.parse_evidence_copy(data) is None
    assert q.parse_evidence_copy(data.replace(b"\x00\x00\x00\x04B-_9", b"\x00\x00\x00\x05B-_9") + b"\xff\xff") is None


@pytest.mark.postgres
def test_leaves_out_of_pk_order_are_matched_by_pk(runtime: Runtime) -> None:
    """Two leaves whose evidence rows were swapped (so the leaf order is not the pk order): the client-side join
    matches each leaf to its own evidence row, as the server's join does, and the audit names the batch."""
    first, second = victim(runtime, 2, 0), victim(runtime, 2, 1)
    with runtime.engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        for old, new in ((first.pk, -1), (second.pk, first.pk), (-1, second.pk)):
            conn.execute(
                text("UPDATE batch_leaves SET evidence_pk = :new WHERE evidence_pk = :old"), {"old": old, "new": new}
            )
    copied, via_cursor = copy_read(runtime)
    assert copied is not None
    assert copied[2].pks[:2] == [second.pk, first.pk]
    assert flat(copied) == flat(via_cursor)
    assert copied[2].ids[:2] == [second.id, first.id]
    first_finding = audit_ledger(runtime.engine, jobs=1).first
    assert first_finding is not None and "leaf 0 of batch 2" in first_finding.problem, str(first_finding)
