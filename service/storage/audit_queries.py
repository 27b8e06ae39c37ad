"""The read-only SELECT statements of ``evidence audit`` (``service.trust.audit``), and its snapshot.

Owns: opening one consistent, read-only view of the database (``snapshot``; PostgreSQL can share it with worker
processes through ``export_snapshot`` / ``import_snapshot``), and every query the audit runs, streamed in the
order the audit checks them. The audit checks what is *stored*, so these functions return the stored forms
(microsecond integers, blobs, raw ids) untouched: decoding them is part of what the audit verifies. The leaf rows
of the hot loop come as plain DBAPI tuples grouped by batch (``leaf_groups``), with no per-row Python object
beyond the tuple.

Must not import: Flask, Celery, the API, trust, workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, and_, cast, exists, func, literal, select
from sqlalchemy.engine import Connection, Engine

from service.storage import ledger
from service.storage.ledger import AnyRow

__all__ = [
    "FETCH_ROWS",
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
    "leaf_groups",
    "leaf_seq_span",
    "node_rows",
    "sealed_leaf_count",
    "signing_key_rows",
    "snapshot",
    "timestamp_rows",
]

FETCH_ROWS = 10_000  # rows per round trip of a streaming cursor

LeafRow = tuple[Any, ...]
"""``(batch_seq, leaf_index, evidence_pk, proof, id, sha256, received_us, label, v2_pk, attestation, case_id,
phase, phase_name, cosigns)``; the evidence columns are None when the ``batch_leaves`` row points to no evidence
row, the last seven (from ``v2_pk``) when the deposit has no v2 part (a v1 leaf)."""


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read-only, consistent view of the database (PostgreSQL REPEATABLE READ; SQLite a deferred read)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            conn = conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
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


def _raw_groups(conn: Connection, stmt: Any, name: str) -> Iterator[tuple[int, list[LeafRow]]]:
    """``(batch_seq, rows)`` groups of a parameterless SELECT whose first column is ``batch_seq``, read through
    a DBAPI cursor (PostgreSQL: a named, server-side cursor) in the connection's transaction: plain tuples, no
    per-row Python objects beyond them (this is the audit's hot loop)."""
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))  # integer bounds only
    raw = conn.connection.driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        cursor = raw.cursor(name=name)
        cursor.itersize = FETCH_ROWS
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(sql)

        def rows() -> Iterator[LeafRow]:
            while chunk := cursor.fetchmany(FETCH_ROWS):
                yield from chunk

        for seq, group in groupby(rows(), key=itemgetter(0)):
            yield int(seq), list(group)
    finally:
        cursor.close()


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


def leaf_groups(
    conn: Connection, low: int | None = None, high: int | None = None
) -> Iterator[tuple[int, list[LeafRow]]]:
    """``(batch_seq, rows)`` for every batch's evidence leaves (``batch_leaves`` outer-joined to ``evidence``), in
    ``(batch_seq, leaf_index)`` order; with ``low``/``high``, only ``low <= batch_seq <= high``. Rows are
    ``LeafRow`` tuples."""
    e, bl, v2 = ledger.evidence, ledger.batch_leaves, ledger.evidence_v2
    stmt = select(
        bl.c.batch_seq,
        bl.c.leaf_index,
        bl.c.evidence_pk,
        bl.c.proof,
        e.c.id,
        e.c.sha256,
        e.c.received_us,
        e.c.label,
        *ledger.V2_COLUMNS,
    ).select_from(bl.outerjoin(e, e.c.pk == bl.c.evidence_pk).outerjoin(v2, v2.c.evidence_pk == bl.c.evidence_pk))
    name = "audit_leaves"
    if low is not None and high is not None:
        stmt = stmt.where(bl.c.batch_seq.between(low, high))
        name = "audit_leaf_range"
    return _raw_groups(conn, stmt.order_by(bl.c.batch_seq, bl.c.leaf_index), name)


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


def evidence_counts(conn: Connection) -> tuple[int, int, int]:
    """``(evidence rows, sealed evidence rows, pending rows)``."""
    e, bl, p = ledger.evidence, ledger.batch_leaves, ledger.pending
    total = int(conn.execute(select(func.count()).select_from(e)).scalar_one())
    sealed = int(conn.execute(select(func.count()).select_from(bl.join(e, e.c.pk == bl.c.evidence_pk))).scalar_one())
    pending = int(conn.execute(select(func.count()).select_from(p)).scalar_one())
    return total, sealed, pending


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
