"""The read-only SELECT statements of ``evidence audit`` (``service.trust.audit``), and its snapshot.

Owns: opening one consistent, read-only view of the database (``snapshot``; PostgreSQL can share it with worker
processes through ``export_snapshot`` / ``import_snapshot``), and every query the audit runs, streamed in the
order the audit checks them. The audit checks what is *stored*, so these functions return the stored forms
(microsecond integers, blobs, raw ids) untouched: decoding them is part of what the audit verifies. The leaf rows
of the hot loop come column by column, one ``LeafBatch`` per batch (``leaf_batches``): on PostgreSQL by binary
COPY parsed without Python code per row, on SQLite as plain DBAPI tuples transposed.

Must not import: Flask, Celery, the API, trust, workers.
"""

from __future__ import annotations

import io
import re
import struct
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, and_, cast, exists, func, literal, select, true
from sqlalchemy.engine import Connection, Engine

from service.storage import ledger
from service.storage.ledger import AnyRow

__all__ = [
    "FETCH_ROWS",
    "ROWS_PER_COPY",
    "V2_PART",
    "LeafBatch",
    "batch_rows",
    "batch_rows_between",
    "batches_without_token",
    "checkpoint_rows",
    "evidence_counts",
    "export_snapshot",
    "first_dropped_evidence",
    "first_dangling_pending",
    "first_sealed_and_pending",
    "import_snapshot",
    "is_in_memory",
    "leaf_batches",
    "leaf_seq_span",
    "node_rows",
    "parse_bytea_copy",
    "parse_evidence_copy",
    "parse_key_copy",
    "parse_leaf_copy",
    "sealed_leaf_count",
    "signing_key_rows",
    "snapshot",
    "tile_groups",
    "timestamp_rows",
]

FETCH_ROWS = 10_000  # rows per round trip of a streaming cursor

ROWS_PER_COPY = 50_000  # leaf rows per binary COPY (PostgreSQL), in whole batches: bounds the memory of a read
SPAN_PER_LEAF = 2  # evidence pks read per leaf at most when joining on the client (``_copy_columns``)


@dataclass(slots=True)
class LeafBatch:
    """The stored leaf rows of one ``batch_seq``, column by column in ``leaf_index`` order, as stored (the audit
    decodes and checks them): ``ids``, ``digests`` and ``received`` (microseconds) are None where the
    ``batch_leaves`` row points to no evidence row; ``v2`` maps the ``evidence_pk`` of each leaf that has a v2
    part to its (label, attestation, case_id, phase, phase_name, cosigns, sm3)."""

    seq: int
    indexes: list[Any]
    pks: list[Any]
    ids: list[Any]
    digests: list[Any]
    received: list[Any]
    proofs: list[Any]
    v2: dict[Any, tuple[Any, ...]]


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only, consistent view of the database (PostgreSQL REPEATABLE READ; SQLite a deferred read)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            conn = conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # index lookups whose estimated cost (in the millions for a range of leaves) would have them
                # JIT-compiled: 7-100 ms of compiling per range for nothing
                conn.exec_driver_sql("SET LOCAL jit = off")
            yield conn


def export_snapshot(conn: Connection) -> str | None:
    """An id other connections can pass to ``import_snapshot`` to read this transaction's snapshot (PostgreSQL);
    None where snapshots cannot be shared (SQLite)."""
    if conn.dialect.name != "postgresql":
        return None
    return str(conn.execute(select(func.pg_export_snapshot())).scalar_one())


def import_snapshot(conn: Connection, snapshot_id: str | None) -> None:
    """Make this (just begun) transaction read the snapshot ``export_snapshot`` returned (no-op for None)."""
    if snapshot_id is not None:
        conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")


def is_in_memory(conn: Connection) -> bool:
    """True for an in-memory SQLite database (another process cannot open it)."""
    database = conn.engine.url.database or ""
    return conn.dialect.name == "sqlite" and (database in ("", ":memory:") or "memory" in database)


def _stream(conn: Connection, stmt: Any) -> Iterator[AnyRow]:
    result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(stmt)
    for partition in result.partitions():
        yield from partition


def signing_key_rows(conn: Connection) -> list[AnyRow]:
    """Every ``signing_keys`` row as stored (id, vkey, origin, key_hash, valid_from_us, valid_until_us), oldest
    first."""
    k = ledger.signing_keys
    return list(conn.execute(select(k).order_by(k.c.valid_from_us, k.c.id)).all())


# --- ledger entries, evidence leaves, log nodes, checkpoints ---------------------------------------------


def sealed_leaf_count(conn: Connection) -> int:
    """The number of ``batch_leaves`` rows (sealed evidence)."""
    return int(conn.execute(select(func.count()).select_from(ledger.batch_leaves)).scalar_one())


def batch_rows(conn: Connection) -> Iterator[AnyRow]:
    """Every ``batches`` row (seq, size, root, sealed_us, entry, ledger_proof), in ``seq`` order, streamed."""
    b = ledger.batches
    return _stream(
        conn, select(b.c.seq, b.c.size, b.c.root, b.c.sealed_us, b.c.entry, b.c.ledger_proof).order_by(b.c.seq)
    )


def batch_rows_between(conn: Connection, low: int, high: int) -> Iterator[AnyRow]:
    """The ``batches`` rows (seq, size, root, entry) with ``low <= seq <= high``, in ``seq`` order, streamed."""
    b = ledger.batches
    return _stream(
        conn, select(b.c.seq, b.c.size, b.c.root, b.c.entry).where(b.c.seq.between(low, high)).order_by(b.c.seq)
    )


def leaf_batches(conn: Connection, low: int | None = None, high: int | None = None) -> Iterator[LeafBatch]:
    """Every batch's evidence leaves (``batch_leaves`` outer-joined to ``evidence``) as one ``LeafBatch`` per
    ``batch_seq``, in ``(batch_seq, leaf_index)`` order; with ``low``/``high``, only ``low <= batch_seq <= high``.

    Read in ranges of whole batches of about ``ROWS_PER_COPY`` leaves, each range column by column, with no Python
    code per row: PostgreSQL by binary ``COPY`` parsed in one regex pass (``parse_leaf_copy``; bytea travels as
    raw bytes rather than hex text), SQLite (and a PostgreSQL range whose bytes are not the strict well-formed shape:
    a missing evidence row, an id that is no valid evidence id...) by a cursor's rows transposed. Either way the
    values handed over are the ones the cursor gives.
    """
    span = (low, high) if low is not None and high is not None else leaf_seq_span(conn)
    if span is None:
        return
    for lo, hi in _read_ranges(conn, *span):
        yield from _range_batches(conn, lo, hi)


def _leaf_select(conn: Connection, low: int, high: int) -> Any:
    """(batch_seq, leaf_index, evidence_pk, id, sha256, received_us) of the leaves of ``low..high``, in order.

    PostgreSQL: the evidence row of each leaf is looked up through its primary key (a LATERAL subquery that
    ``OFFSET 0`` keeps from being flattened), in the order of the ``(batch_seq, leaf_index)`` index, so a range
    costs its own rows; a plain join is planned as a hash join over the whole evidence table for every range."""
    e, bl = ledger.evidence, ledger.batch_leaves
    if conn.dialect.name == "postgresql":
        ev = select(e.c.id, e.c.sha256, e.c.received_us).where(e.c.pk == bl.c.evidence_pk).offset(0).lateral("ev")
        joined: Any = bl.outerjoin(ev, true())
        columns: tuple[Any, ...] = (ev.c.id, ev.c.sha256, ev.c.received_us)
    else:
        joined = bl.outerjoin(e, e.c.pk == bl.c.evidence_pk)
        columns = (e.c.id, e.c.sha256, e.c.received_us)
    return (
        select(bl.c.batch_seq, bl.c.leaf_index, bl.c.evidence_pk, *columns)
        .select_from(joined)
        .where(bl.c.batch_seq.between(low, high))
        .order_by(bl.c.batch_seq, bl.c.leaf_index)
    )


def _key_select(low: int, high: int) -> Any:
    bl = ledger.batch_leaves
    return (
        select(bl.c.batch_seq, bl.c.leaf_index, bl.c.evidence_pk)
        .where(bl.c.batch_seq.between(low, high))
        .order_by(bl.c.batch_seq, bl.c.leaf_index)
    )


def _evidence_select(low: int, high: int) -> Any:
    e = ledger.evidence
    return select(e.c.pk, e.c.id, e.c.sha256, e.c.received_us).where(e.c.pk.between(low, high)).order_by(e.c.pk)


def _proof_select(low: int, high: int) -> Any:
    bl = ledger.batch_leaves
    return select(bl.c.proof).where(bl.c.batch_seq.between(low, high)).order_by(bl.c.batch_seq, bl.c.leaf_index)


def _v2_select(low: int, high: int) -> Any:
    """The leaves of ``low..high`` that have a v2 part: (batch_seq, evidence_pk, label, the v2 columns)."""
    e, bl, v2 = ledger.evidence, ledger.batch_leaves, ledger.evidence_v2
    return (
        select(bl.c.batch_seq, bl.c.evidence_pk, e.c.label, *V2_PART)
        .select_from(bl.join(v2, v2.c.evidence_pk == bl.c.evidence_pk).outerjoin(e, e.c.pk == bl.c.evidence_pk))
        .where(bl.c.batch_seq.between(low, high))
        .order_by(bl.c.batch_seq, bl.c.leaf_index)
    )


V2_PART = tuple(c for c in ledger.V2_COLUMNS if c.name != "v2_pk")
"""The v2 columns of ``LeafBatch.v2`` values, after the label: attestation, case_id, phase, phase_name, cosigns,
sm3."""


def _sql(conn: Connection, stmt: Any) -> str:
    return str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))  # integer bounds only


def _raw(conn: Connection) -> Any:
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw


def _fetchall(conn: Connection, stmt: Any) -> list[tuple[Any, ...]]:
    """The rows of a parameterless SELECT, as the DBAPI cursor gives them, in the connection's transaction."""
    cursor = _raw(conn).cursor()
    try:
        cursor.execute(_sql(conn, stmt))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _read_ranges(conn: Connection, low: int, high: int) -> Iterator[tuple[int, int]]:
    """``low..high`` cut into ranges of whole batches of about ``ROWS_PER_COPY`` leaves (by the stored batch sizes:
    they only plan the reads, every leaf row of the span is read whatever they say)."""
    b = ledger.batches
    start, rows = low, 0
    for seq, size in _stream(conn, select(b.c.seq, b.c.size).where(b.c.seq.between(low, high)).order_by(b.c.seq)):
        rows += max(int(size), 1)
        if rows >= ROWS_PER_COPY and seq < high:
            yield start, int(seq)
            start, rows = int(seq) + 1, 0
    yield start, high


def _copy(conn: Connection, stmt: Any) -> bytes:
    buffer = io.BytesIO()
    cursor = _raw(conn).cursor()
    try:
        cursor.copy_expert(f"COPY ({_sql(conn, stmt)}) TO STDOUT (FORMAT binary)", buffer)
    finally:
        cursor.close()
    return buffer.getvalue()


def _copy_columns(conn: Connection, low: int, high: int) -> Any:
    """The columns of ``_leaf_select`` by binary COPY, or None if a row is not of the shape the parsers accept.

    The join is done here rather than on the server: the leaf keys (batch_seq, leaf_index, evidence_pk) of the range
    in index order, then the evidence rows of their ``pk`` span in ``pk`` order, matched by ``pk`` in C-level
    passes (two index range scans on the server instead of one index lookup per leaf). A span much wider than the
    range's leaves (evidence sealed far apart) is joined on the server instead.
    """
    keys = parse_key_copy(_copy(conn, _key_select(low, high)))
    if keys is None:
        return None
    seqs, indexes, pks = keys
    if not pks or max(pks) - min(pks) >= SPAN_PER_LEAF * len(pks):
        return parse_leaf_copy(_copy(conn, _leaf_select(conn, low, high)))
    found = parse_evidence_copy(_copy(conn, _evidence_select(min(pks), max(pks))))
    if found is None:
        return None
    evidence_pks, ids, digests, received = found
    if evidence_pks == pks:  # the usual case: the range's leaves are its span's evidence rows, in pk order
        return seqs, indexes, pks, ids, digests, received
    at: list[Any] = list(map(dict(zip(evidence_pks, range(len(evidence_pks)), strict=True)).get, pks))
    if None in at:  # a leaf whose evidence row is missing: the cursor path hands over its NULLs
        return None
    return (
        seqs,
        indexes,
        pks,
        list(map(ids.__getitem__, at)),
        list(map(digests.__getitem__, at)),
        list(map(received.__getitem__, at)),
    )


def _range_batches(conn: Connection, low: int, high: int, *, copy: bool = True) -> list[LeafBatch]:
    """``leaf_batches`` of ``low..high``; ``copy``: by binary COPY where the database is PostgreSQL and the bytes
    are of the shape the parsers accept (``copy=False``: always through the cursor)."""
    columns: Any = None
    proofs: list[Any] | None = None
    if copy and conn.dialect.name == "postgresql":
        columns = _copy_columns(conn, low, high)
        proofs = parse_bytea_copy(_copy(conn, _proof_select(low, high)))
    if columns is None:
        rows = _fetchall(conn, _leaf_select(conn, low, high))
        columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 6
    seqs, indexes, pks, ids, digests, received = columns
    if proofs is None or len(proofs) != len(seqs):
        proofs = list(map(itemgetter(0), _fetchall(conn, _proof_select(low, high))))
        if proofs and not isinstance(proofs[0], bytes | None):  # psycopg2's memoryview: bytes, as COPY gives
            proofs = [None if p is None else bytes(p) for p in proofs]
    v2: dict[Any, dict[Any, tuple[Any, ...]]] = {}
    for row in _fetchall(conn, _v2_select(low, high)):
        v2.setdefault(row[0], {})[row[1]] = row[2:]
    batches = []
    end = 0
    for seq in dict.fromkeys(seqs):  # distinct, in order (seqs is sorted)
        start, end = end, bisect_right(seqs, seq, end)
        batches.append(
            LeafBatch(
                seq,
                indexes[start:end],
                pks[start:end],
                ids[start:end],
                digests[start:end],
                received[start:end],
                proofs[start:end],
                v2.get(seq, {}),
            )
        )
    return batches


# PostgreSQL's binary COPY format: an 11-byte signature, flags and header-extension length (both 0 here), then per
# row a 16-bit field count and each field as a 32-bit length (-1: NULL) and its bytes, big-endian; -1 ends it.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_LEAF_ROW = re.compile(
    rb"\x00\x06"
    rb"\x00\x00\x00\x08(.{8})"  # batch_seq, int8
    rb"\x00\x00\x00\x04(.{4})"  # leaf_index, int4
    rb"\x00\x00\x00\x08(.{8})"  # evidence_pk, int8
    rb"\x00\x00\x00([\x01-\x40])([A-Za-z0-9_-]+)"  # id, text: 1-64 bytes of a valid evidence id
    rb"\x00\x00\x00\x20(.{32})"  # sha256, bytea of 32 bytes
    rb"\x00\x00\x00\x08(.{8})",  # received_us, int8
    re.DOTALL,
)
_LEAF_ROW_FIXED = 2 + 12 + 8 + 12 + 4 + 36 + 12  # the bytes of a _LEAF_ROW besides its id


def parse_leaf_copy(data: bytes) -> tuple[list[int], list[int], list[int], list[str], list[bytes], list[int]] | None:
    """The columns (batch_seq, leaf_index, evidence_pk, id, sha256, received_us) of the binary COPY of
    ``_leaf_select``, or None unless every row is well-formed: no NULL, an id of 1-64 ``[A-Za-z0-9_-]``, a 32-byte
    digest (anything else is for the cursor path, whose values the audit then reports).

    One C-level ``findall`` does the parsing; it is exact because the matches must tile the body: they do not
    overlap, their lengths (from the ids' lengths) add up to the body's, and each id's length field equals its
    length, so every match starts where the previous row ended and reads each field at its length."""
    body = len(data) - len(_COPY_TRAILER)
    if not data.startswith(_COPY_HEADER) or not data.endswith(_COPY_TRAILER) or body < len(_COPY_HEADER):
        return None
    found = _LEAF_ROW.findall(data, len(_COPY_HEADER), body)
    if not found:
        return ([], [], [], [], [], []) if body == len(_COPY_HEADER) else None
    seqs, indexes, pks, id_lengths, ids, digests, received = zip(*found, strict=True)
    n = len(found)
    if _LEAF_ROW_FIXED * n + sum(map(len, ids)) != body - len(_COPY_HEADER):
        return None
    if b"".join(id_lengths) != bytes(map(len, ids)):
        return None
    return (
        list(struct.unpack(f">{n}q", b"".join(seqs))),
        list(struct.unpack(f">{n}i", b"".join(indexes))),
        list(struct.unpack(f">{n}q", b"".join(pks))),
        b"\n".join(ids).decode("ascii").split("\n"),
        list(digests),
        list(struct.unpack(f">{n}q", b"".join(received))),
    )


_EVIDENCE_ROW = re.compile(
    rb"\x00\x04"
    rb"\x00\x00\x00\x08(.{8})"  # pk, int8
    rb"\x00\x00\x00([\x01-\x40])([A-Za-z0-9_-]+)"  # id, text: 1-64 bytes of a valid evidence id
    rb"\x00\x00\x00\x20(.{32})"  # sha256, bytea of 32 bytes
    rb"\x00\x00\x00\x08(.{8})",  # received_us, int8
    re.DOTALL,
)
_EVIDENCE_ROW_FIXED = 2 + 12 + 4 + 36 + 12  # the bytes of an _EVIDENCE_ROW besides its id


def parse_evidence_copy(data: bytes) -> tuple[list[int], list[str], list[bytes], list[int]] | None:
    """The columns (pk, id, sha256, received_us) of the binary COPY of ``_evidence_select``, or None unless every
    row is well-formed (as ``parse_leaf_copy``, which explains why the one ``findall`` is exact)."""
    body = len(data) - len(_COPY_TRAILER)
    if not data.startswith(_COPY_HEADER) or not data.endswith(_COPY_TRAILER) or body < len(_COPY_HEADER):
        return None
    found = _EVIDENCE_ROW.findall(data, len(_COPY_HEADER), body)
    if not found:
        return ([], [], [], []) if body == len(_COPY_HEADER) else None
    pks, id_lengths, ids, digests, received = zip(*found, strict=True)
    n = len(found)
    if _EVIDENCE_ROW_FIXED * n + sum(map(len, ids)) != body - len(_COPY_HEADER):
        return None
    if b"".join(id_lengths) != bytes(map(len, ids)):
        return None
    return (
        list(struct.unpack(f">{n}q", b"".join(pks))),
        b"\n".join(ids).decode("ascii").split("\n"),
        list(digests),
        list(struct.unpack(f">{n}q", b"".join(received))),
    )


_KEY_ROW = struct.Struct(">hiqiiiq")  # 3 fields: batch_seq int8, leaf_index int4, evidence_pk int8


def parse_key_copy(data: bytes) -> tuple[list[int], list[int], list[int]] | None:
    """The columns (batch_seq, leaf_index, evidence_pk) of the binary COPY of ``_key_select`` (rows of one fixed
    layout, unpacked by ``struct.iter_unpack``), or None if any row's field count or lengths are not that layout."""
    body = memoryview(data)[len(_COPY_HEADER) : len(data) - len(_COPY_TRAILER)]
    if not data.startswith(_COPY_HEADER) or not data.endswith(_COPY_TRAILER) or len(body) % _KEY_ROW.size:
        return None
    if not body:
        return [], [], []
    count, seq_len, seqs, index_len, indexes, pk_len, pks = zip(*_KEY_ROW.iter_unpack(body), strict=True)
    if {*count} != {3} or {*seq_len} != {8} or {*index_len} != {4} or {*pk_len} != {8}:
        return None
    return list(seqs), list(indexes), list(pks)


_FIELD_LENGTH = struct.Struct(">i")


_PROBE_ROWS = 4096  # rows whose headers one pass of parse_bytea_copy compares at most


def parse_bytea_copy(data: bytes) -> list[bytes | None] | None:
    """The values of the binary COPY of a one-column bytea query (None for NULL), or None if it is not that.

    Read run by run: consecutive values of one length (the audit paths of a batch have at most a few lengths, in
    runs) sit at a fixed stride, so the six header bytes of up to ``_PROBE_ROWS`` rows are compared as six strided
    slices and the values cut out by C-level maps. Exact: row ``j + 1`` starts at the stride only if row ``j``'s
    header said that length, so the run is the longest prefix whose every header matches the first."""
    end = len(data) - len(_COPY_TRAILER)
    if not data.startswith(_COPY_HEADER) or not data.endswith(_COPY_TRAILER) or end < len(_COPY_HEADER):
        return None
    values: list[bytes | None] = []
    pos = len(_COPY_HEADER)
    while pos < end:
        header = data[pos : pos + 6]
        if header[:2] != b"\x00\x01" or len(header) < 6:
            return None
        (n,) = _FIELD_LENGTH.unpack_from(header, 2)
        stride = 6 + max(n, 0)
        rows = min((end - pos) // stride, _PROBE_ROWS)
        if rows == 0:
            return None
        stop = pos + rows * stride
        for j in range(6):
            column = data[pos + j : stop : stride]
            rows = min(rows, len(column) - len(column.lstrip(header[j : j + 1])))
        stop = pos + rows * stride
        if n < 0:
            values.extend([None] * rows)
        else:
            starts = range(pos + 6, stop + 6, stride)  # exactly ``rows`` values each
            values.extend(map(data.__getitem__, map(slice, starts, range(pos + stride, stop + stride, stride))))
        pos = stop
    return values if pos == end else None


def tile_groups(
    conn: Connection, low: int | None = None, high: int | None = None, *, hashes: bool = True
) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """``(batch_seq, rows)`` for every batch's ``batch_tiles`` rows ``(batch_seq, level, idx, hashes)``, in
    ``(batch_seq, level, idx)`` order; with ``low``/``high``, only ``low <= batch_seq <= high``; without
    ``hashes``, rows ``(batch_seq, level, idx)`` only."""
    t = ledger.batch_tiles
    stmt = select(t.c.batch_seq, t.c.level, t.c.idx, *([t.c.hashes] if hashes else []))
    if low is not None and high is not None:
        stmt = stmt.where(t.c.batch_seq.between(low, high))
    rows = _stream(conn, stmt.order_by(t.c.batch_seq, t.c.level, t.c.idx))  # one row per 256 leaves
    for seq, group in groupby(rows, key=itemgetter(0)):
        yield int(seq), [tuple(r) for r in group]


def leaf_seq_span(conn: Connection) -> tuple[int, int] | None:
    """The smallest and largest ``batch_seq`` of ``batch_leaves``, or None when it is empty."""
    bl = ledger.batch_leaves
    low, high = conn.execute(select(func.min(bl.c.batch_seq), func.max(bl.c.batch_seq))).one()
    return None if low is None else (int(low), int(high))


def node_rows(conn: Connection) -> Iterator[AnyRow]:
    """Every ``ledger_nodes`` row (level, idx, hash, end: one past the last leaf it covers), ordered by ``end``
    then ``level`` (the order in which appending entries completes them), streamed."""
    n = ledger.ledger_nodes
    node_end = (n.c.idx + 1).op("<<")(n.c.level)
    return _stream(conn, select(n.c.level, n.c.idx, n.c.hash, node_end.label("end")).order_by(node_end, n.c.level))


def checkpoint_rows(conn: Connection) -> Iterator[AnyRow]:
    """Every ``checkpoints`` row (size, root, note, key_hash, created_us), in ``size`` order, streamed."""
    c = ledger.checkpoints
    return _stream(conn, select(c.c.size, c.c.root, c.c.note, c.c.key_hash, c.c.created_us).order_by(c.c.size))


# --- evidence accounting ---------------------------------------------------------------------------------


def first_sealed_and_pending(conn: Connection) -> AnyRow | None:
    """The first evidence row (pk, id) that is both sealed and still pending, or None.

    pending -> batch_leaves -> evidence: the planners start from the (short) queue; "WHERE EXISTS (sealed)" made
    SQLite scan every evidence row (0.16 s of 200,000). Same rows: ``batch_leaves.evidence_pk`` is its primary key.
    """
    e, bl, p = ledger.evidence, ledger.batch_leaves, ledger.pending
    return conn.execute(
        select(e.c.pk, e.c.id)
        .select_from(p.join(bl, bl.c.evidence_pk == p.c.evidence_pk).join(e, e.c.pk == p.c.evidence_pk))
        .order_by(p.c.evidence_pk)
        .limit(1)
    ).first()


def first_dangling_pending(conn: Connection) -> AnyRow | None:
    """The first ``pending`` row (evidence_pk) that points to no evidence row, or None."""
    e, p = ledger.evidence, ledger.pending
    return conn.execute(
        select(p.c.evidence_pk)
        .select_from(p.outerjoin(e, e.c.pk == p.c.evidence_pk))
        .where(e.c.pk.is_(None))
        .order_by(p.c.evidence_pk)
        .limit(1)
    ).first()


def evidence_counts(conn: Connection) -> tuple[int, int]:
    """``(evidence rows, pending rows)`` (the sealed ones are counted by the audit as it reads the leaves)."""
    e, p = ledger.evidence, ledger.pending
    total = int(conn.execute(select(func.count()).select_from(e)).scalar_one())
    pending = int(conn.execute(select(func.count()).select_from(p)).scalar_one())
    return total, pending


def first_dropped_evidence(conn: Connection) -> AnyRow | None:
    """The first evidence row (pk, id) that is neither sealed nor pending, or None (a full scan: only run it when
    the counts disagree)."""
    e, bl, p = ledger.evidence, ledger.batch_leaves, ledger.pending
    sealed = exists().where(bl.c.evidence_pk == e.c.pk)
    waiting = exists().where(p.c.evidence_pk == e.c.pk)
    return conn.execute(select(e.c.pk, e.c.id).where(~sealed, ~waiting).order_by(e.c.pk).limit(1)).first()


# --- time-stamp tokens -----------------------------------------------------------------------------------


def timestamp_rows(conn: Connection) -> Iterator[AnyRow]:
    """Every ``timestamps`` row (id, batch_seq, tsa, token, gen_time_us) with its ledger entry's bytes (``entry``,
    None when the entry does not exist), in ``(batch_seq, id)`` order, streamed."""
    t, b = ledger.timestamps, ledger.batches
    return _stream(
        conn,
        select(t.c.id, t.c.batch_seq, t.c.tsa, t.c.token, t.c.gen_time_us, b.c.entry)
        .select_from(t.outerjoin(b, b.c.seq == t.c.batch_seq))
        .order_by(t.c.batch_seq, t.c.id),
    )


def batches_without_token(conn: Connection, tsa: str, sealed_before_us: int) -> tuple[AnyRow | None, int]:
    """For the TSA named ``tsa``: the first ledger entry (seq, sealed_us) sealed before ``sealed_before_us`` that
    has no token from it (or None), and how many entries have none at all."""
    t, b = ledger.timestamps, ledger.batches
    missing = (
        select(b.c.seq, b.c.sealed_us)
        .select_from(b.outerjoin(t, and_(t.c.batch_seq == b.c.seq, t.c.tsa == tsa)))
        .where(t.c.id.is_(None))
    )
    late = conn.execute(
        missing.where(b.c.sealed_us < cast(literal(sealed_before_us), BigInteger)).order_by(b.c.seq).limit(1)
    ).first()
    count = int(conn.execute(select(func.count()).select_from(missing.subquery())).scalar_one())
    return late, count
