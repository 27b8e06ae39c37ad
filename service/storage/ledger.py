"""The ledger's tables and every SQL statement the service runs (SQLAlchemy Core).

Owns: ``metadata`` (with a naming convention, so constraint names are the same on every database), the
``Table`` objects of docs/design.md, and named query functions. Each function takes a ``Connection`` and
never commits: the caller owns the transaction (``with engine.begin() as conn:``). The two exceptions are the
group committer's hot path, ``insert_deposits_committed_pg`` / ``_sqlite``: they take the engine and commit one
group of single deposits themselves (one round trip on PostgreSQL, the sqlite3 connection on SQLite). PostgreSQL-only
statements (advisory lock, ``unnest`` bulk inserts, ``FOR UPDATE SKIP LOCKED``) live here behind those
functions, never inline elsewhere.

Times are integer microseconds since the Unix epoch; hashes are 32-byte blobs; proofs are concatenated
32-byte hashes. The main read paths (evidence, ledger entries, checkpoints, signing keys, tenants, API keys, webhooks)
return the decoded, typed records of ``service.storage.records`` instead, so use cases never handle those stored
forms; writes still take the stored forms (``service.storage.codec`` converts). The append-only tables
(``APPEND_ONLY_TABLES``) are guarded by triggers and grants set by the migrations, not by this module.

Must not import: Flask, Celery, the API or workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql import Select

from service.core.errors import InvalidInput
from service.storage.codec import from_us, split_hashes
from service.storage.records import (
    ApiKey,
    Batch,
    Evidence,
    Sha256,
    SigningKey,
    StoredCheckpoint,
    Tenant,
    TreeHash,
    Webhook,
)

__all__ = [
    "APPEND_ONLY_TABLES",
    "LEDGER_LOCK_ID",
    "EvidenceRow",
    "metadata",
]

# Ledger lock for pg_advisory_xact_lock: b"EVLG" as an integer, one sealer at a time.
LEDGER_LOCK_ID = 0x45564C47

# Deterministic constraint names: Alembic migrations and `alembic check` depend on them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# 64-bit keys that are still SQLite's rowid alias (only "INTEGER PRIMARY KEY" autoincrements there).
BigKey = BigInteger().with_variant(Integer(), "sqlite")


def _hash_check(column: str) -> CheckConstraint:
    return CheckConstraint(f"length({column}) = 32", name=f"{column}_is_sha256")


tenants = Table(
    "tenants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False, comment="microseconds since the epoch"),
    Column("revoked_at", BigInteger, nullable=True, comment="microseconds since the epoch"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("key_hash", LargeBinary, nullable=False, unique=True, comment="SHA-256 of the API key"),
    Column("prefix", Text, nullable=False, comment="first characters of the key, for display"),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)

evidence = Table(
    "evidence",
    metadata,
    Column("pk", BigKey, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("sha256", LargeBinary, nullable=False),
    Column("label", Text, nullable=True),
    Column("received_us", BigInteger, nullable=False),
    _hash_check("sha256"),
    Index(None, "tenant_id", "sha256"),
)

cases = Table(
    "cases",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("id", Text, nullable=False, unique=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("reference", Text, nullable=True),
    Column("created_us", BigInteger, nullable=False),
)

# A deposit with a row here has a v2 leaf (SPEC §2.1) built from its evidence row and this one.
evidence_v2 = Table(
    "evidence_v2",
    metadata,
    Column("evidence_pk", BigKey, ForeignKey("evidence.pk"), primary_key=True, autoincrement=False),
    Column("attestation", LargeBinary, nullable=True, comment="the exact SPEC §2.2 attestation bytes"),
    Column("case_id", Text, ForeignKey("cases.id"), nullable=True),
    Column("phase", BigInteger, nullable=True),
    Column("phase_name", Text, nullable=True),
    Column("cosigns", Text, nullable=True, index=True, comment="evidence id of the deposit countersigned"),
    Column("sm3", LargeBinary, nullable=True, comment="SM3 (GB/T 32905) of the file, 32 bytes"),
    CheckConstraint("phase IS NULL OR phase >= 1", name="phase_positive"),
    CheckConstraint("sm3 IS NULL OR length(sm3) = 32", name="sm3_is_32_bytes"),
    # One first-party deposit per phase of a case (countersignatures repeat their deposit's phase).
    Index(
        "uq_evidence_v2_case_phase",
        "case_id",
        "phase",
        unique=True,
        sqlite_where=text("cosigns IS NULL"),
        postgresql_where=text("cosigns IS NULL"),
    ),
)

depositor_keys = Table(
    "depositor_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("public_key", LargeBinary, nullable=False, comment="32-byte Ed25519 public key"),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger, nullable=True),
    CheckConstraint("length(public_key) = 32", name="public_key_is_ed25519"),
    UniqueConstraint("tenant_id", "public_key"),
)

pending = Table(
    "pending",
    metadata,
    Column("evidence_pk", BigKey, ForeignKey("evidence.pk"), primary_key=True, autoincrement=False),
    Column("received_us", BigInteger, nullable=False, index=True),
)

batches = Table(
    "batches",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("size", Integer, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("sealed_us", BigInteger, nullable=False),
    Column("entry", LargeBinary, nullable=False, comment="the exact SPEC §3 ledger entry bytes"),
    Column("ledger_proof", LargeBinary, nullable=False, comment="inclusion of entry seq in log of seq+1"),
    _hash_check("root"),
    CheckConstraint("size >= 1", name="size_positive"),
    CheckConstraint("seq >= 0", name="seq_non_negative"),
)

batch_leaves = Table(
    "batch_leaves",
    metadata,
    Column("evidence_pk", BigKey, ForeignKey("evidence.pk"), primary_key=True, autoincrement=False),
    Column("batch_seq", BigInteger, ForeignKey("batches.seq"), nullable=False),
    Column("leaf_index", Integer, nullable=False),
    Column(
        "proof",
        LargeBinary,
        nullable=True,
        comment="the leaf's audit path, stored by releases before 0007; NULL: computed from batch_tiles",
    ),
    UniqueConstraint("batch_seq", "leaf_index"),
)

batch_tiles = Table(
    "batch_tiles",
    metadata,
    Column("batch_seq", BigInteger, ForeignKey("batches.seq"), nullable=False),
    Column("level", Integer, nullable=False, comment="k: the tile holds nodes of tree level 8k (0: leaf hashes)"),
    Column("idx", Integer, nullable=False),
    Column("hashes", LargeBinary, nullable=False, comment="up to 256 node hashes, concatenated"),
    PrimaryKeyConstraint("batch_seq", "level", "idx"),
    CheckConstraint("level >= 0", name="level_not_negative"),
)

ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", Integer, nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("level", "idx"),
    _hash_check("hash"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", LargeBinary, nullable=False, comment="the signed note, exact bytes"),
    Column("key_hash", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    _hash_check("root"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_hash", BigInteger, nullable=False, index=True),
    Column("vkey", Text, nullable=False, unique=True),
    Column("origin", Text, nullable=False),
    Column("valid_from_us", BigInteger, nullable=False),
    Column("valid_until_us", BigInteger, nullable=True),
)

timestamps = Table(
    "timestamps",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("batch_seq", BigInteger, ForeignKey("batches.seq"), nullable=False),
    Column("tsa", Text, nullable=False),
    Column("token", LargeBinary, nullable=False, comment="DER TimeStampToken"),
    Column("gen_time_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("batch_seq", "tsa"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", LargeBinary, nullable=False),
    Column("response", Text, nullable=False, comment="JSON answer replayed for the same request"),
    Column("body_zlib", LargeBinary, nullable=True, comment="the answer's body, zlib; response then holds its status"),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False, index=True),
    PrimaryKeyConstraint("tenant_id", "key"),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant_id", Integer, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("disabled_us", BigInteger, nullable=True),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("webhook_id", Integer, ForeignKey("webhooks.id"), nullable=False, index=True),
    Column("batch_seq", BigInteger, ForeignKey("batches.seq"), nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_us", BigInteger, nullable=False),
)

cosignatures = Table(
    "cosignatures",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("size", BigInteger, ForeignKey("checkpoints.size"), nullable=False, index=True),
    Column("witness", Text, nullable=False, comment="the witness's name in the policy file"),
    Column("vkey", Text, nullable=False, comment="the witness's cosignature/v1 verifier key"),
    Column("timestamp", BigInteger, nullable=False, comment="the cosignature's time, POSIX seconds"),
    Column("line", LargeBinary, nullable=False, comment="the note signature line, exact bytes with its newline"),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("size", "vkey"),
)

# Rows here are never updated or deleted (triggers; on PostgreSQL also grants to evidence_app).
APPEND_ONLY_TABLES: tuple[str, ...] = (
    "evidence",
    "cases",
    "evidence_v2",
    "batches",
    "batch_leaves",
    "batch_tiles",
    "ledger_nodes",
    "checkpoints",
    "timestamps",
    "webhook_deliveries",
    "cosignatures",
)

# Plain result rows; columns are reached by name (row.batch_seq).
AnyRow = Row[*tuple[Any, ...]]


class EvidenceRow(TypedDict):
    """One item for ``insert_evidence``."""

    id: str
    tenant_id: int
    sha256: bytes
    label: str | None
    received_us: int


def _is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# --- rows -> records (service.storage.records): the only place stored forms are decoded ---------------------


def _maybe_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(int(us))


def _hashes(blob: bytes | None) -> tuple[TreeHash, ...]:
    return () if blob is None else tuple(map(TreeHash, split_hashes(bytes(blob))))


def _maybe_hashes(blob: bytes | None) -> tuple[TreeHash, ...] | None:
    return None if blob is None else _hashes(blob)


def _tenant(row: AnyRow) -> Tenant:
    return Tenant(int(row.id), str(row.name), from_us(int(row.created_at)), _maybe_time(row.revoked_at))


def _api_key(row: AnyRow) -> ApiKey:
    return ApiKey(
        int(row.id),
        int(row.tenant_id),
        str(row.name),
        str(row.prefix),
        from_us(int(row.created_at)),
        _maybe_time(row.revoked_at),
    )


def _evidence(row: AnyRow) -> Evidence:
    return Evidence(
        int(row.pk),
        str(row.id),
        int(row.tenant_id),
        Sha256(bytes(row.sha256)),
        row.label,
        from_us(int(row.received_us)),
        None if row.batch_seq is None else int(row.batch_seq),
        None if row.leaf_index is None else int(row.leaf_index),
        _maybe_hashes(row.proof),
        row.v2_pk is not None,
        None if row.attestation is None else bytes(row.attestation),
        row.case_id,
        None if row.phase is None else int(row.phase),
        row.phase_name,
        row.cosigns,
        None if row.sm3 is None else bytes(row.sm3),
    )


def _batch(row: AnyRow) -> Batch:
    return Batch(
        int(row.seq),
        int(row.size),
        TreeHash(bytes(row.root)),
        from_us(int(row.sealed_us)),
        bytes(row.entry),
        _hashes(row.ledger_proof),
    )


def _checkpoint(row: AnyRow) -> StoredCheckpoint:
    return StoredCheckpoint(
        int(row.size), TreeHash(bytes(row.root)), bytes(row.note), int(row.key_hash), from_us(int(row.created_us))
    )


def _webhook(row: AnyRow) -> Webhook:
    return Webhook(
        int(row.id),
        int(row.tenant_id),
        str(row.url),
        str(row.secret),
        from_us(int(row.created_us)),
        _maybe_time(row.disabled_us),
    )


def _signing_key(row: AnyRow) -> SigningKey:
    return SigningKey(
        int(row.id),
        str(row.vkey),
        str(row.origin),
        int(row.key_hash),
        from_us(int(row.valid_from_us)),
        _maybe_time(row.valid_until_us),
    )


# --- tenants and API keys ------------------------------------------------------------------------


def insert_tenant(conn: Connection, name: str, now_us: int) -> int:
    """Create a tenant and return its id.

    :raise InvalidInput: a tenant of that name exists (revoked or not: names are never reused).
    """
    if get_tenant_by_name(conn, name) is not None:
        raise InvalidInput(
            f"tenant {name!r} already exists; to give it another API key: evidence tenant key add {name}"
        )
    result = conn.execute(insert(tenants).values(name=name, created_at=now_us).returning(tenants.c.id))
    return int(result.scalar_one())


def get_tenant_by_name(conn: Connection, name: str) -> Tenant | None:
    """The tenant named ``name``, or None."""
    row = conn.execute(select(tenants).where(tenants.c.name == name)).one_or_none()
    return None if row is None else _tenant(row)


def list_tenants(conn: Connection) -> list[Tenant]:
    """Every tenant, by id."""
    return [_tenant(row) for row in conn.execute(select(tenants).order_by(tenants.c.id))]


def revoke_tenant(conn: Connection, name: str, now_us: int) -> bool:
    """Mark the tenant revoked (its keys stop working). False if no such active tenant."""
    result = conn.execute(
        update(tenants).where(tenants.c.name == name, tenants.c.revoked_at.is_(None)).values(revoked_at=now_us)
    )
    return result.rowcount == 1


def insert_api_key(conn: Connection, tenant_id: int, key_hash: bytes, prefix: str, now_us: int) -> int:
    """Store the SHA-256 of a new API key for a tenant; returns the key's row id."""
    result = conn.execute(
        insert(api_keys)
        .values(tenant_id=tenant_id, key_hash=key_hash, prefix=prefix, created_at=now_us)
        .returning(api_keys.c.id)
    )
    return int(result.scalar_one())


def tenant_for_key_hash(conn: Connection, key_hash: bytes) -> int | None:
    """The tenant id owning this key hash, if neither the key nor the tenant is revoked."""
    stmt = (
        select(tenants.c.id)
        .select_from(api_keys.join(tenants, api_keys.c.tenant_id == tenants.c.id))
        .where(
            api_keys.c.key_hash == key_hash,
            api_keys.c.revoked_at.is_(None),
            tenants.c.revoked_at.is_(None),
        )
    )
    value = conn.execute(stmt).scalar_one_or_none()
    return None if value is None else int(value)


# --- evidence and the pending queue ------------------------------------------------------------


def insert_evidence(conn: Connection, rows: Sequence[EvidenceRow]) -> list[int]:
    """Insert evidence rows and their ``pending`` rows; return the new pks in the order of ``rows``.

    PostgreSQL: one statement, one round trip (``unnest`` of arrays, both INSERTs in one CTE).
    SQLite: two multi-row INSERTs (SQLAlchemy's insertmanyvalues).
    """
    if not rows:
        return []
    if _is_postgres(conn):
        return _insert_evidence_pg(conn, rows)
    result = conn.execute(
        insert(evidence).returning(evidence.c.pk, sort_by_parameter_order=True),
        [dict(r) for r in rows],
    )
    pks = [int(pk) for pk in result.scalars().all()]
    conn.execute(
        insert(pending),
        [{"evidence_pk": pk, "received_us": r["received_us"]} for pk, r in zip(pks, rows, strict=True)],
    )
    return pks


_INSERT_EVIDENCE_PG = text(
    """
    WITH new AS (
        INSERT INTO evidence (id, tenant_id, sha256, label, received_us)
        SELECT id, tenant_id, sha256, label, received_us
        FROM unnest(CAST(:ids AS text[]), CAST(:tenant_ids AS integer[]), CAST(:sha256s AS bytea[]),
                    CAST(:labels AS text[]), CAST(:received AS bigint[]))
             AS t(id, tenant_id, sha256, label, received_us)
        RETURNING pk, id, received_us
    ), queued AS (
        INSERT INTO pending (evidence_pk, received_us) SELECT pk, received_us FROM new
    )
    SELECT id, pk FROM new
    """
)


def _insert_evidence_pg(conn: Connection, rows: Sequence[EvidenceRow]) -> list[int]:
    params = {
        "ids": [r["id"] for r in rows],
        "tenant_ids": [r["tenant_id"] for r in rows],
        "sha256s": [r["sha256"] for r in rows],
        "labels": [r["label"] for r in rows],
        "received": [r["received_us"] for r in rows],
    }
    # RETURNING order is not promised by PostgreSQL: map by the unique id instead.
    by_id = {str(i): int(pk) for i, pk in conn.execute(_INSERT_EVIDENCE_PG, params)}
    return [by_id[r["id"]] for r in rows]


# Single deposits on PostgreSQL (``insert_deposits_committed_pg``): the evidence, pending and (for a label or an
# SM3 digest) evidence_v2 rows of a whole group in ONE statement, prepared once per connection and run in
# autocommit mode. One statement is one transaction: when it returns, every row of it is committed (durable as
# any COMMIT under the server's synchronous_commit), and a failure stores none of it. The v2 part repeats what
# ``sealing.record_deposits`` inserts through ``insert_evidence_v2`` (only ``sm3`` set, the rest NULL).
DEPOSIT_STATEMENT = "evidence_single_deposits"
_PREPARE_DEPOSITS_PG = f"""
PREPARE {DEPOSIT_STATEMENT} (text[], integer[], bytea[], text[], bigint[], bytea[]) AS
WITH t AS (
    SELECT * FROM unnest($1, $2, $3, $4, $5, $6) AS t(id, tenant_id, sha256, label, received_us, sm3)
), new AS (
    INSERT INTO evidence (id, tenant_id, sha256, label, received_us)
    SELECT id, tenant_id, sha256, label, received_us FROM t
    RETURNING pk, id, received_us
), queued AS (
    INSERT INTO pending (evidence_pk, received_us) SELECT pk, received_us FROM new
), v2 AS (
    INSERT INTO evidence_v2 (evidence_pk, sm3)
    SELECT new.pk, t.sm3 FROM new JOIN t ON t.id = new.id
    WHERE t.label IS NOT NULL OR t.sm3 IS NOT NULL
)
SELECT id, pk FROM new
"""
_EXECUTE_DEPOSITS_PG = (
    f"EXECUTE {DEPOSIT_STATEMENT} (%s::text[], %s::integer[], %s::bytea[], %s::text[], %s::bigint[], %s::bytea[])"
)
_PREPARED_ON = "evidence_single_deposits_prepared_on"  # pool entry info: the DBAPI connection it was prepared on


def _dbapi_error(engine: Engine, statement: str, params: Any, exc: Exception, invalidated: bool) -> StatementError:
    """``exc`` of the DBAPI as SQLAlchemy's ``DBAPIError`` subclass, as ``Connection.execute`` would raise it."""
    return DBAPIError.instance(
        statement,
        params,
        exc,
        engine.dialect.loaded_dbapi.Error,
        hide_parameters=engine.hide_parameters,
        connection_invalidated=invalidated,
        dialect=engine.dialect,
    )


def insert_deposits_committed_pg(engine: Engine, rows: Sequence[EvidenceRow], sm3: Sequence[bytes | None]) -> list[int]:
    """Insert and COMMIT single deposits on PostgreSQL (psycopg2) in one round trip; return their pks in order.

    The statement is prepared the first time a pooled connection runs it (one more round trip, once). Errors are
    raised as SQLAlchemy's ``DBAPIError`` subclasses (``OperationalError`` for a lost server or a lock timeout),
    as a ``Connection.execute`` would raise them, and the connection is discarded from the pool.
    """
    if not rows:
        return []
    params = (
        [r["id"] for r in rows],
        [r["tenant_id"] for r in rows],
        [r["sha256"] for r in rows],
        [r["label"] for r in rows],
        [r["received_us"] for r in rows],
        list(sm3),
    )
    pooled = engine.raw_connection()
    try:
        dbapi: Any = pooled.driver_connection  # a psycopg2 connection
        cursor = None
        statement = _EXECUTE_DEPOSITS_PG
        try:
            dbapi.autocommit = True  # no BEGIN and no COMMIT round trip: the one statement commits itself
            cursor = dbapi.cursor()
            if pooled.info.get(_PREPARED_ON) is not dbapi:
                statement = _PREPARE_DEPOSITS_PG
                cursor.execute(statement)
                pooled.info[_PREPARED_ON] = dbapi
                statement = _EXECUTE_DEPOSITS_PG
            cursor.execute(statement, params)
            by_id = {str(i): int(pk) for i, pk in cursor.fetchall()}
            cursor.close()
            dbapi.autocommit = False  # back to the pool as SQLAlchemy expects it
        except engine.dialect.loaded_dbapi.Error as exc:
            invalidated = engine.dialect.is_disconnect(exc, dbapi, cursor)
            if invalidated:  # as Connection.execute does: every pooled connection older than this one goes too
                engine.pool._invalidate(pooled, exc)
            else:  # never reuse it: its session state (autocommit, prepared) is unknown
                pooled.invalidate(exc)
            raise _dbapi_error(engine, statement, params, exc, invalidated) from exc
        except BaseException as exc:
            pooled.invalidate(exc)
            raise
    finally:
        pooled.close()
    return [by_id[r["id"]] for r in rows]


_INSERT_EVIDENCE_SQLITE = "INSERT INTO evidence (id, tenant_id, sha256, label, received_us) VALUES (?, ?, ?, ?, ?)"
_INSERT_PENDING_SQLITE = "INSERT INTO pending (evidence_pk, received_us) VALUES (?, ?)"
_INSERT_V2_SQLITE = "INSERT INTO evidence_v2 (evidence_pk, sm3) VALUES (?, ?)"


def insert_deposits_committed_sqlite(
    engine: Engine, rows: Sequence[EvidenceRow], sm3: Sequence[bytes | None]
) -> list[int]:
    """Insert and COMMIT single deposits on SQLite through the sqlite3 connection itself: ``BEGIN IMMEDIATE``, one
    INSERT per evidence row (its pk is the rowid), the ``pending`` and ``evidence_v2`` rows (as
    ``sealing.record_deposits`` makes them) by ``executemany``, ``COMMIT``; return the pks in order.

    The same rows and transaction as ``insert_evidence`` + ``insert_evidence_v2`` in ``engine.begin()``, without
    SQLAlchemy's statement and result handling (a third of the group committer's CPU). Errors are raised as
    SQLAlchemy's ``DBAPIError`` subclasses (``OperationalError`` for "database is locked"), after a ROLLBACK.
    """
    if not rows:
        return []
    pooled = engine.raw_connection()
    try:
        dbapi: Any = pooled.driver_connection  # a sqlite3 connection, isolation_level None (see db.make_engine)
        cursor = dbapi.cursor()
        statement = "BEGIN IMMEDIATE"
        try:
            cursor.execute(statement)
            statement = _INSERT_EVIDENCE_SQLITE
            pks: list[int] = []
            for r in rows:
                cursor.execute(statement, (r["id"], r["tenant_id"], r["sha256"], r["label"], r["received_us"]))
                pks.append(int(cursor.lastrowid))
            statement = _INSERT_PENDING_SQLITE
            cursor.executemany(statement, [(pk, r["received_us"]) for pk, r in zip(pks, rows, strict=True)])
            v2 = [
                (pk, value)
                for pk, r, value in zip(pks, rows, sm3, strict=True)
                if r["label"] is not None or value is not None
            ]
            if v2:
                statement = _INSERT_V2_SQLITE
                cursor.executemany(statement, v2)
            statement = "COMMIT"
            cursor.execute(statement)
        except engine.dialect.loaded_dbapi.Error as exc:
            if dbapi.in_transaction:
                dbapi.rollback()
            raise _dbapi_error(engine, statement, None, exc, engine.dialect.is_disconnect(exc, dbapi, cursor)) from exc
        except BaseException:
            if dbapi.in_transaction:
                dbapi.rollback()
            raise
        finally:
            cursor.close()
    finally:
        pooled.close()
    return pks


_EVIDENCE_COLUMNS = (
    evidence.c.pk,
    evidence.c.id,
    evidence.c.tenant_id,
    evidence.c.sha256,
    evidence.c.label,
    evidence.c.received_us,
    batch_leaves.c.batch_seq,
    batch_leaves.c.leaf_index,
    batch_leaves.c.proof,
)
# The v2 part of a deposit (SPEC §2.1): v2_pk is None for a v1 deposit.
V2_COLUMNS = (
    evidence_v2.c.evidence_pk.label("v2_pk"),
    evidence_v2.c.attestation,
    evidence_v2.c.case_id,
    evidence_v2.c.phase,
    evidence_v2.c.phase_name,
    evidence_v2.c.cosigns,
    evidence_v2.c.sm3,
)


def _evidence_select() -> Select[Any]:
    return select(*_EVIDENCE_COLUMNS, *V2_COLUMNS).select_from(
        evidence.outerjoin(batch_leaves, batch_leaves.c.evidence_pk == evidence.c.pk).outerjoin(
            evidence_v2, evidence_v2.c.evidence_pk == evidence.c.pk
        )
    )


def get_evidence(conn: Connection, tenant_id: int, evidence_id: str) -> Evidence | None:
    """One tenant's evidence (pending or sealed). Another tenant's evidence is None, exactly like a missing id."""
    stmt = _evidence_select().where(evidence.c.id == evidence_id, evidence.c.tenant_id == tenant_id)
    row = conn.execute(stmt).one_or_none()
    return None if row is None else _evidence(row)


def get_evidence_matching(conn: Connection, evidence_id: str, sha256: bytes) -> Evidence | None:
    """The evidence (any tenant) with this id AND this SHA-256, else None: one query that cannot tell an unknown id
    from a known id with another digest (public checking, SPEC-ext /v1/check)."""
    stmt = _evidence_select().where(evidence.c.id == evidence_id, evidence.c.sha256 == sha256)
    row = conn.execute(stmt).one_or_none()
    return None if row is None else _evidence(row)


def get_evidence_many(conn: Connection, tenant_id: int, evidence_ids: Sequence[str]) -> dict[str, Evidence]:
    """Those of ``evidence_ids`` that exist for this tenant, by id, in one query. Ids that are unknown or another
    tenant's are simply absent: the caller cannot tell them apart."""
    wanted = list(dict.fromkeys(evidence_ids))
    if not wanted:
        return {}
    stmt = _evidence_select().where(evidence.c.tenant_id == tenant_id, evidence.c.id.in_(wanted))
    return {row.id: _evidence(row) for row in conn.execute(stmt)}


def timestamps_for_batches(conn: Connection, batch_seqs: Iterable[int]) -> dict[int, list[bytes]]:
    """Tokens of several ledger entries, each list in id order (as ``timestamps_for_batch``)."""
    seqs = sorted(set(batch_seqs))
    out: dict[int, list[bytes]] = {seq: [] for seq in seqs}
    if not seqs:
        return out
    stmt = (
        select(timestamps.c.batch_seq, timestamps.c.token)
        .where(timestamps.c.batch_seq.in_(seqs))
        .order_by(timestamps.c.batch_seq, timestamps.c.id)
    )
    for seq, token in conn.execute(stmt):
        out[int(seq)].append(bytes(token))
    return out


def find_evidence_by_sha256(conn: Connection, tenant_id: int, sha256: bytes) -> list[Evidence]:
    """The tenant's evidence with this file digest, oldest first."""
    stmt = (
        _evidence_select()
        .where(evidence.c.tenant_id == tenant_id, evidence.c.sha256 == sha256)
        .order_by(evidence.c.received_us, evidence.c.pk)
    )
    return [_evidence(row) for row in conn.execute(stmt)]


def lock_ledger(conn: Connection) -> None:
    """Serialise sealers for the rest of the transaction.

    PostgreSQL: ``pg_advisory_xact_lock``. SQLite: nothing to do, the transaction began with
    ``BEGIN IMMEDIATE`` (``service.storage.db.make_engine``) and already holds the database's write lock.
    """
    if _is_postgres(conn):
        conn.execute(select(func.pg_advisory_xact_lock(LEDGER_LOCK_ID)))


def select_pending(conn: Connection, limit: int) -> list[AnyRow]:
    """Up to ``limit`` pending evidence rows (pk, id, sha256, received_us, label and ``V2_COLUMNS``), oldest first.

    PostgreSQL locks the pending rows (``FOR UPDATE SKIP LOCKED``).
    """
    stmt = (
        select(evidence.c.pk, evidence.c.id, evidence.c.sha256, evidence.c.received_us, evidence.c.label, *V2_COLUMNS)
        .select_from(
            pending.join(evidence, evidence.c.pk == pending.c.evidence_pk).outerjoin(
                evidence_v2, evidence_v2.c.evidence_pk == evidence.c.pk
            )
        )
        .order_by(pending.c.received_us, pending.c.evidence_pk)
        .limit(limit)
    )
    if _is_postgres(conn):
        stmt = stmt.with_for_update(skip_locked=True, of=pending)
    return list(conn.execute(stmt).all())


def oldest_pending_us(conn: Connection) -> int | None:
    """``received_us`` of the oldest pending evidence, or None when nothing waits."""
    value = conn.execute(select(func.min(pending.c.received_us))).scalar_one()
    return None if value is None else int(value)


def pending_count(conn: Connection) -> int:
    """How many evidence rows wait to be sealed."""
    return int(conn.execute(select(func.count()).select_from(pending)).scalar_one())


def delete_pending(conn: Connection, evidence_pks: Iterable[int]) -> int:
    """Remove sealed evidence from the queue; returns the number of rows deleted.

    SQLite: in statements of at most ``SQLITE_IN_CHUNK`` values (it allows 250,000 variables per statement, fewer
    than the leaves of a batch may be)."""
    pks = list(evidence_pks)
    step = SQLITE_IN_CHUNK if conn.dialect.name == "sqlite" else max(len(pks), 1)
    deleted = 0
    for start in range(0, len(pks), step):
        result = conn.execute(delete(pending).where(pending.c.evidence_pk.in_(pks[start : start + step])))
        deleted += int(result.rowcount)
    return deleted


SQLITE_IN_CHUNK = 100_000


# --- batches (ledger entries) and their leaves ----------------------------------------------------


def last_batch(conn: Connection) -> Batch | None:
    """The newest ledger entry, or None."""
    row = conn.execute(select(batches).order_by(batches.c.seq.desc()).limit(1)).one_or_none()
    return None if row is None else _batch(row)


def get_batch(conn: Connection, seq: int) -> Batch | None:
    """The ledger entry ``seq``, or None."""
    row = conn.execute(select(batches).where(batches.c.seq == seq)).one_or_none()
    return None if row is None else _batch(row)


def insert_batch(
    conn: Connection, seq: int, size: int, root: bytes, sealed_us: int, entry: bytes, ledger_proof: bytes
) -> None:
    """Append ledger entry ``seq`` (IntegrityError if ``seq`` exists: the last line of defence)."""
    conn.execute(
        insert(batches).values(
            seq=seq, size=size, root=root, sealed_us=sealed_us, entry=entry, ledger_proof=ledger_proof
        )
    )


def insert_batch_leaves(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows of (evidence_pk, batch_seq, leaf_index, and optionally proof: the concatenated audit path, which
    the sealer no longer stores (NULL: computed from ``batch_tiles``)); one round trip on PostgreSQL."""
    if not rows:
        return
    with_proofs = any(r.get("proof") is not None for r in rows)
    if _is_postgres(conn):
        params = {
            "pks": [r["evidence_pk"] for r in rows],
            "seqs": [r["batch_seq"] for r in rows],
            "indexes": [r["leaf_index"] for r in rows],
        }
        if with_proofs:
            params["proofs"] = [r.get("proof") for r in rows]
            conn.execute(_INSERT_LEAVES_WITH_PROOFS_PG, params)
        else:
            conn.execute(_INSERT_LEAVES_PG, params)
        return
    columns = (
        ("evidence_pk", "batch_seq", "leaf_index", "proof")
        if with_proofs
        else ("evidence_pk", "batch_seq", "leaf_index")
    )
    conn.execute(insert(batch_leaves), [{c: r.get(c) for c in columns} for r in rows])


_INSERT_LEAVES_PG = text(
    "INSERT INTO batch_leaves (evidence_pk, batch_seq, leaf_index) "
    "SELECT * FROM unnest(CAST(:pks AS bigint[]), CAST(:seqs AS bigint[]), CAST(:indexes AS integer[]))"
)
_INSERT_LEAVES_WITH_PROOFS_PG = text(
    "INSERT INTO batch_leaves (evidence_pk, batch_seq, leaf_index, proof) "
    "SELECT * FROM unnest(CAST(:pks AS bigint[]), CAST(:seqs AS bigint[]), "
    "CAST(:indexes AS integer[]), CAST(:proofs AS bytea[]))"
)


def insert_batch_tiles(conn: Connection, batch_seq: int, tiles: Sequence[tuple[int, int, bytes]]) -> None:
    """Store the tiles ``(level, idx, hashes)`` of batch ``batch_seq``'s tree (``merkle.batch_tiles``)."""
    if tiles:
        conn.execute(
            insert(batch_tiles), [{"batch_seq": batch_seq, "level": k, "idx": t, "hashes": h} for k, t, h in tiles]
        )


def get_batch_tiles(conn: Connection, batch_seq: int, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored tiles of batch ``batch_seq`` among ``keys`` (level, idx), in one query (one primary-key lookup per
    key: a ``UNION ALL`` of one ``idx IN (...)`` per level, as a row-value IN made SQLite scan the batch's tiles);
    missing keys absent."""
    by_level: dict[int, list[int]] = {}
    for level, idx in dict.fromkeys(keys):
        by_level.setdefault(level, []).append(idx)
    if not by_level:
        return {}
    t = batch_tiles
    parts = [
        select(t.c.level, t.c.idx, t.c.hashes).where(t.c.batch_seq == batch_seq, t.c.level == level, t.c.idx.in_(idxs))
        for level, idxs in sorted(by_level.items())
    ]
    stmt = parts[0] if len(parts) == 1 else union_all(*parts)
    return {(int(k), int(i)): bytes(h) for k, i, h in conn.execute(stmt)}


def ledger_size(conn: Connection) -> int:
    """Number of ledger entries (= next ``seq``)."""
    value = conn.execute(select(func.max(batches.c.seq))).scalar_one()
    return 0 if value is None else int(value) + 1


def entries_range(conn: Connection, start: int, end: int) -> list[bytes]:
    """Ledger entry bytes of ``seq`` in [start, end), in order (shorter if the ledger is shorter)."""
    stmt = select(batches.c.entry).where(batches.c.seq >= start, batches.c.seq < end).order_by(batches.c.seq)
    return [bytes(e) for e in conn.execute(stmt).scalars()]


# --- ledger log nodes -------------------------------------------------------------------------


def nodes_range(conn: Connection, level: int, start: int, end: int) -> list[bytes]:
    """The stored hashes of level ``level`` with index in [start, end), in index order (a C2SP tile's row)."""
    stmt = (
        select(ledger_nodes.c.hash)
        .where(ledger_nodes.c.level == level, ledger_nodes.c.idx >= start, ledger_nodes.c.idx < end)
        .order_by(ledger_nodes.c.idx)
    )
    return [bytes(h) for h in conn.execute(stmt).scalars()]


def get_nodes(conn: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored perfect-subtree hashes among ``keys`` (level, idx), in one query; missing keys absent."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    stmt = select(ledger_nodes.c.level, ledger_nodes.c.idx, ledger_nodes.c.hash).where(
        tuple_(ledger_nodes.c.level, ledger_nodes.c.idx).in_(wanted)
    )
    return {(int(level), int(idx)): bytes(h) for level, idx, h in conn.execute(stmt)}


def insert_nodes(conn: Connection, items: Iterable[tuple[tuple[int, int], bytes]]) -> None:
    """Insert ((level, idx), hash) nodes of the ledger log."""
    values = [{"level": level, "idx": idx, "hash": h} for (level, idx), h in items]
    if values:
        conn.execute(insert(ledger_nodes), values)


# --- checkpoints and signing keys -------------------------------------------------------------


def insert_checkpoint(conn: Connection, size: int, root: bytes, note: bytes, key_hash: int, created_us: int) -> None:
    """Store the signed checkpoint of ledger size ``size`` (one per size)."""
    conn.execute(insert(checkpoints).values(size=size, root=root, note=note, key_hash=key_hash, created_us=created_us))


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    """The checkpoint of the largest size, or None."""
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).one_or_none()
    return None if row is None else _checkpoint(row)


def checkpoint_at(conn: Connection, size: int) -> StoredCheckpoint | None:
    """The checkpoint of exactly this ledger size, or None."""
    row = conn.execute(select(checkpoints).where(checkpoints.c.size == size)).one_or_none()
    return None if row is None else _checkpoint(row)


def checkpoints_from(conn: Connection, min_size: int, limit: int) -> list[AnyRow]:
    """Checkpoints (size, note, created_us) of size >= ``min_size``, smallest first, at most ``limit``."""
    return list(
        conn.execute(
            select(checkpoints.c.size, checkpoints.c.note, checkpoints.c.created_us)
            .where(checkpoints.c.size >= min_size)
            .order_by(checkpoints.c.size)
            .limit(limit)
        )
    )


# --- witness cosignatures (SPEC §9) --------------------------------------------------------------


def insert_cosignature(
    conn: Connection, size: int, witness: str, vkey: str, timestamp: int, line: bytes, created_us: int
) -> None:
    """Store one witness's cosignature of the checkpoint of ``size`` (one per witness key and size)."""
    conn.execute(
        insert(cosignatures).values(
            size=size, witness=witness, vkey=vkey, timestamp=timestamp, line=line, created_us=created_us
        )
    )


def cosignatures_at(conn: Connection, size: int) -> list[AnyRow]:
    """The cosignatures (witness, vkey, timestamp, line) of the checkpoint of ``size``, oldest first."""
    return list(
        conn.execute(
            select(cosignatures.c.witness, cosignatures.c.vkey, cosignatures.c.timestamp, cosignatures.c.line)
            .where(cosignatures.c.size == size)
            .order_by(cosignatures.c.id)
        )
    )


def cosigned_sizes_from(conn: Connection, min_size: int, limit: int) -> list[AnyRow]:
    """(size, vkey) of stored cosignatures of checkpoints of size >= ``min_size``, smallest size first."""
    return list(
        conn.execute(
            select(cosignatures.c.size, cosignatures.c.vkey)
            .where(cosignatures.c.size >= min_size)
            .order_by(cosignatures.c.size, cosignatures.c.id)
            .limit(limit)
        )
    )


def cosigned_sizes_below(conn: Connection, size: int, limit: int) -> list[AnyRow]:
    """(size, vkey) of stored cosignatures of checkpoints smaller than ``size``, largest size first."""
    return list(
        conn.execute(
            select(cosignatures.c.size, cosignatures.c.vkey)
            .where(cosignatures.c.size < size)
            .order_by(cosignatures.c.size.desc(), cosignatures.c.id)
            .limit(limit)
        )
    )


def witness_size(conn: Connection, vkey: str) -> int:
    """The largest checkpoint size cosigned by the witness key ``vkey`` (0 if none)."""
    value = conn.execute(select(func.max(cosignatures.c.size)).where(cosignatures.c.vkey == vkey)).scalar()
    return int(value or 0)


def insert_signing_key(conn: Connection, vkey: str, origin: str, key_hash: int, valid_from_us: int) -> bool:
    """Record a published verifier key; a vkey already recorded is left as it is. True if inserted."""
    exists = conn.execute(select(signing_keys.c.id).where(signing_keys.c.vkey == vkey)).first()
    if exists is not None:
        return False
    conn.execute(insert(signing_keys).values(vkey=vkey, origin=origin, key_hash=key_hash, valid_from_us=valid_from_us))
    return True


def list_signing_keys(conn: Connection) -> list[SigningKey]:
    """All published verifier keys with their validity windows, oldest first."""
    stmt = select(signing_keys).order_by(signing_keys.c.valid_from_us, signing_keys.c.id)
    return [_signing_key(row) for row in conn.execute(stmt)]


def close_signing_key(conn: Connection, key_hash: int, valid_until_us: int) -> int:
    """End the validity of the open key(s) with this key hash; returns how many rows changed."""
    result = conn.execute(
        update(signing_keys)
        .where(signing_keys.c.key_hash == key_hash, signing_keys.c.valid_until_us.is_(None))
        .values(valid_until_us=valid_until_us)
    )
    return int(result.rowcount)


# --- RFC 3161 timestamps ---------------------------------------------------------------------


def insert_timestamp(
    conn: Connection, batch_seq: int, tsa: str, token: bytes, gen_time_us: int, created_us: int
) -> int:
    """Store a TimeStampToken for ledger entry ``batch_seq`` from authority ``tsa``; returns its id."""
    result = conn.execute(
        insert(timestamps)
        .values(batch_seq=batch_seq, tsa=tsa, token=token, gen_time_us=gen_time_us, created_us=created_us)
        .returning(timestamps.c.id)
    )
    return int(result.scalar_one())


def timestamps_for_batch(conn: Connection, batch_seq: int) -> list[AnyRow]:
    """Tokens of one ledger entry (id, batch_seq, tsa, token, gen_time_us, created_us), by id."""
    stmt = select(timestamps).where(timestamps.c.batch_seq == batch_seq).order_by(timestamps.c.id)
    return list(conn.execute(stmt).all())


def batches_without_timestamp(conn: Connection, tsa: str, limit: int) -> list[int]:
    """Seqs of ledger entries that have no token from ``tsa`` yet, oldest first."""
    stmt = (
        select(batches.c.seq)
        .select_from(
            batches.outerjoin(timestamps, and_(timestamps.c.batch_seq == batches.c.seq, timestamps.c.tsa == tsa))
        )
        .where(timestamps.c.id.is_(None))
        .order_by(batches.c.seq)
        .limit(limit)
    )
    return [int(s) for s in conn.execute(stmt).scalars()]


# --- idempotency keys ------------------------------------------------------------------------


def get_idempotency(conn: Connection, tenant_id: int, key: str, now_us: int) -> AnyRow | None:
    """The unexpired stored answer (request_hash, response, body_zlib, created_us, expires_us) for this key."""
    stmt = select(idempotency_keys).where(
        idempotency_keys.c.tenant_id == tenant_id,
        idempotency_keys.c.key == key,
        idempotency_keys.c.expires_us > now_us,
    )
    return conn.execute(stmt).one_or_none()


def insert_idempotency(
    conn: Connection,
    tenant_id: int,
    key: str,
    request_hash: bytes,
    response: str,
    created_us: int,
    expires_us: int,
    body_zlib: bytes | None = None,
) -> None:
    """Remember the answer to an idempotent request (an expired row of the same key is replaced): ``response`` its
    JSON, and ``body_zlib`` its body compressed when ``response`` holds only the status (``bulk.Answer``)."""
    conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.tenant_id == tenant_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.expires_us <= created_us,
        )
    )
    conn.execute(
        insert(idempotency_keys).values(
            tenant_id=tenant_id,
            key=key,
            request_hash=request_hash,
            response=response,
            body_zlib=body_zlib,
            created_us=created_us,
            expires_us=expires_us,
        )
    )


def delete_expired_idempotency(conn: Connection, now_us: int) -> int:
    """Forget answers whose time is up; returns how many."""
    result = conn.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_us <= now_us))
    return int(result.rowcount)


def checkpoint_sqlite_wal(engine: Engine) -> bool:
    """SQLite: copy the WAL into the database and truncate the WAL file to zero bytes
    (``PRAGMA wal_checkpoint(TRUNCATE)``, outside any transaction). False when a reader or writer kept it from
    completing (it is retried at the next round); the WAL is then still bounded by ``journal_size_limit``."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            busy, _log_frames, _checkpointed = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            cursor.close()
    return int(busy) == 0


# --- API keys (issue 7: tenant list / key add / key revoke) ----------------------------------------


_API_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.tenant_id,
    tenants.c.name,
    api_keys.c.prefix,
    api_keys.c.created_at,
    api_keys.c.revoked_at,
)


def list_api_keys(conn: Connection, tenant_id: int | None = None) -> list[ApiKey]:
    """API keys of one tenant or all, by id."""
    stmt = (
        select(*_API_KEY_COLUMNS)
        .select_from(api_keys.join(tenants, api_keys.c.tenant_id == tenants.c.id))
        .order_by(api_keys.c.id)
    )
    if tenant_id is not None:
        stmt = stmt.where(api_keys.c.tenant_id == tenant_id)
    return [_api_key(row) for row in conn.execute(stmt)]


def active_keys_by_prefix(conn: Connection, prefix: str) -> list[ApiKey]:
    """Unrevoked API keys whose display prefix is ``prefix``, by id."""
    stmt = (
        select(*_API_KEY_COLUMNS)
        .select_from(api_keys.join(tenants, api_keys.c.tenant_id == tenants.c.id))
        .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
        .order_by(api_keys.c.id)
    )
    return [_api_key(row) for row in conn.execute(stmt)]


def active_key_by_hash(conn: Connection, key_hash: bytes) -> ApiKey | None:
    """The unrevoked API key with this SHA-256, or None."""
    stmt = (
        select(*_API_KEY_COLUMNS)
        .select_from(api_keys.join(tenants, api_keys.c.tenant_id == tenants.c.id))
        .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    )
    row = conn.execute(stmt).one_or_none()
    return None if row is None else _api_key(row)


def revoke_api_key(conn: Connection, key_id: int, now_us: int) -> bool:
    """Mark one API key revoked; False if it was revoked already."""
    result = conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now_us)
    )
    return result.rowcount == 1


# --- webhooks (issue 7) ----------------------------------------------------------------------------


def insert_webhook(conn: Connection, tenant_id: int, url: str, secret: str, now_us: int) -> int:
    """Register a callback URL and its signing secret for a tenant; returns the webhook id."""
    result = conn.execute(
        insert(webhooks).values(tenant_id=tenant_id, url=url, secret=secret, created_us=now_us).returning(webhooks.c.id)
    )
    return int(result.scalar_one())


def disable_webhooks(conn: Connection, tenant_id: int, now_us: int) -> int:
    """Disable the tenant's active webhooks; returns how many."""
    result = conn.execute(
        update(webhooks)
        .where(webhooks.c.tenant_id == tenant_id, webhooks.c.disabled_us.is_(None))
        .values(disabled_us=now_us)
    )
    return int(result.rowcount)


def active_webhook(conn: Connection, tenant_id: int) -> Webhook | None:
    """The tenant's newest active webhook, or None."""
    stmt = (
        select(webhooks)
        .where(webhooks.c.tenant_id == tenant_id, webhooks.c.disabled_us.is_(None))
        .order_by(webhooks.c.id.desc())
        .limit(1)
    )
    row = conn.execute(stmt).one_or_none()
    return None if row is None else _webhook(row)


def get_webhook_by_id(conn: Connection, webhook_id: int) -> Webhook | None:
    """The webhook if it is still active, else None."""
    stmt = select(webhooks).where(webhooks.c.id == webhook_id, webhooks.c.disabled_us.is_(None))
    row = conn.execute(stmt).one_or_none()
    return None if row is None else _webhook(row)


def webhooks_for_batch(conn: Connection, batch_seq: int) -> list[int]:
    """Ids of the active webhooks of every tenant with evidence in batch ``batch_seq``."""
    tenant_ids = (
        select(evidence.c.tenant_id)
        .select_from(batch_leaves.join(evidence, evidence.c.pk == batch_leaves.c.evidence_pk))
        .where(batch_leaves.c.batch_seq == batch_seq)
        .distinct()
    )
    stmt = (
        select(webhooks.c.id)
        .where(webhooks.c.tenant_id.in_(tenant_ids), webhooks.c.disabled_us.is_(None))
        .order_by(webhooks.c.id)
    )
    return [int(i) for i in conn.execute(stmt).scalars()]


def evidence_ids_in_batch(conn: Connection, tenant_id: int, batch_seq: int) -> list[tuple[str, bytes]]:
    """(id, sha256) of one tenant's evidence in batch ``batch_seq``, in leaf order."""
    stmt = (
        select(evidence.c.id, evidence.c.sha256)
        .select_from(batch_leaves.join(evidence, evidence.c.pk == batch_leaves.c.evidence_pk))
        .where(batch_leaves.c.batch_seq == batch_seq, evidence.c.tenant_id == tenant_id)
        .order_by(batch_leaves.c.leaf_index)
    )
    return [(str(i), bytes(h)) for i, h in conn.execute(stmt)]


def insert_webhook_delivery(
    conn: Connection,
    webhook_id: int,
    batch_seq: int | None,
    attempt: int,
    status_code: int | None,
    error: str | None,
    now_us: int,
) -> None:
    """Append one row to the delivery log (attempt 0 = queued)."""
    conn.execute(
        insert(webhook_deliveries).values(
            webhook_id=webhook_id,
            batch_seq=batch_seq,
            attempt=attempt,
            status_code=status_code,
            error=error,
            created_us=now_us,
        )
    )


def open_webhook_deliveries(conn: Connection, max_attempts: int) -> list[AnyRow]:
    """Undelivered events of active webhooks with attempts left: (webhook_id, batch_seq, last_attempt, last_us),
    oldest first. An event is delivered once one of its rows has a 2xx status."""
    delivered = func.sum(
        case((and_(webhook_deliveries.c.status_code >= 200, webhook_deliveries.c.status_code < 300), 1), else_=0)
    )
    stmt = (
        select(
            webhook_deliveries.c.webhook_id,
            webhook_deliveries.c.batch_seq,
            func.max(webhook_deliveries.c.attempt).label("last_attempt"),
            func.max(webhook_deliveries.c.created_us).label("last_us"),
        )
        .select_from(webhook_deliveries.join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id))
        .where(webhooks.c.disabled_us.is_(None), webhook_deliveries.c.batch_seq.is_not(None))
        .group_by(webhook_deliveries.c.webhook_id, webhook_deliveries.c.batch_seq)
        .having(and_(delivered == 0, func.max(webhook_deliveries.c.attempt) < max_attempts))
        .order_by(func.max(webhook_deliveries.c.created_us))
    )
    return list(conn.execute(stmt).all())


def webhook_delivery_log(
    conn: Connection, webhook_id: int, batch_seq: int | None = None, limit: int = 1000
) -> list[AnyRow]:
    """Rows of the delivery log of one webhook (optionally one batch), newest first."""
    stmt = select(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id)
    if batch_seq is not None:
        stmt = stmt.where(webhook_deliveries.c.batch_seq == batch_seq)
    stmt = stmt.order_by(webhook_deliveries.c.id.desc()).limit(limit)
    return list(conn.execute(stmt).all())


# --- receipt format v2: the v2 part of deposits, cases, depositor keys -------------------------------


class EvidenceV2Row(TypedDict):
    """One item for ``insert_evidence_v2``."""

    evidence_pk: int
    attestation: bytes | None
    case_id: str | None
    phase: int | None
    phase_name: str | None
    cosigns: str | None
    sm3: bytes | None


def insert_evidence_v2(conn: Connection, rows: Sequence[EvidenceV2Row]) -> None:
    """Store the v2 part of deposits inserted in the same transaction (a unique (case, phase) is enforced here)."""
    if rows:
        conn.execute(insert(evidence_v2), [dict(r) for r in rows])


def insert_case(conn: Connection, case_id: str, tenant_id: int, title: str, reference: str | None, now_us: int) -> None:
    conn.execute(
        insert(cases).values(id=case_id, tenant_id=tenant_id, title=title, reference=reference, created_us=now_us)
    )


def get_case(conn: Connection, case_id: str) -> AnyRow | None:
    """The case row (id, tenant_id, title, reference, created_us) of any tenant: the caller checks the tenant."""
    return conn.execute(select(cases).where(cases.c.id == case_id)).one_or_none()


def case_deposits(conn: Connection, case_id: str) -> list[AnyRow]:
    """Every deposit of a case (columns as ``get_evidence``), by phase, first parties before countersignatures."""
    stmt = (
        _evidence_select()
        .where(evidence_v2.c.case_id == case_id)
        .order_by(evidence_v2.c.phase, evidence_v2.c.cosigns.is_not(None), evidence.c.received_us, evidence.c.pk)
    )
    return list(conn.execute(stmt).all())


def last_phase(conn: Connection, case_id: str) -> int:
    """The highest phase number deposited in a case by a first party (0 when none)."""
    value = conn.execute(
        select(func.max(evidence_v2.c.phase)).where(evidence_v2.c.case_id == case_id, evidence_v2.c.cosigns.is_(None))
    ).scalar_one()
    return 0 if value is None else int(value)


def phase_evidence_id(conn: Connection, case_id: str, phase: int) -> str | None:
    """The evidence id of a case's first-party deposit of ``phase``, or None."""
    stmt = (
        select(evidence.c.id)
        .select_from(evidence.join(evidence_v2, evidence_v2.c.evidence_pk == evidence.c.pk))
        .where(evidence_v2.c.case_id == case_id, evidence_v2.c.phase == phase, evidence_v2.c.cosigns.is_(None))
    )
    value = conn.execute(stmt).scalar_one_or_none()
    return None if value is None else str(value)


def countersignatures(conn: Connection, evidence_id: str) -> list[AnyRow]:
    """The deposits countersigning ``evidence_id`` (columns as ``get_evidence``), oldest first."""
    stmt = (
        _evidence_select().where(evidence_v2.c.cosigns == evidence_id).order_by(evidence.c.received_us, evidence.c.pk)
    )
    return list(conn.execute(stmt).all())


def insert_depositor_key(conn: Connection, tenant_id: int, public_key: bytes, now_us: int) -> bool:
    """Register an Ed25519 depositor key for a tenant; False when it is registered already (active or not)."""
    exists = conn.execute(
        select(depositor_keys.c.id).where(
            depositor_keys.c.tenant_id == tenant_id, depositor_keys.c.public_key == public_key
        )
    ).first()
    if exists is not None:
        return False
    conn.execute(insert(depositor_keys).values(tenant_id=tenant_id, public_key=public_key, created_us=now_us))
    return True


def depositor_key_active(conn: Connection, tenant_id: int, public_key: bytes) -> bool:
    """Whether ``public_key`` is an active (registered, not revoked) depositor key of the tenant."""
    row = conn.execute(
        select(depositor_keys.c.id).where(
            depositor_keys.c.tenant_id == tenant_id,
            depositor_keys.c.public_key == public_key,
            depositor_keys.c.revoked_us.is_(None),
        )
    ).first()
    return row is not None


def list_depositor_keys(conn: Connection, tenant_id: int) -> list[AnyRow]:
    stmt = select(depositor_keys).where(depositor_keys.c.tenant_id == tenant_id).order_by(depositor_keys.c.id)
    return list(conn.execute(stmt).all())
