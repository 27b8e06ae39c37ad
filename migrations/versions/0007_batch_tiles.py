"""Proofs on demand (issue 15): ``batch_tiles``, ``batch_leaves.proof`` nullable, compressed idempotency answers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

The sealer stopped storing every leaf's audit path (about 55% of the bytes per deposit). A batch now keeps its
tree's nodes of levels 0 (the leaf hashes), 8, 16, ... as tiles of up to 256 hashes (``batch_tiles``, append-only
like the other ledger tables) and receipts compute each proof from the tiles above its leaf
(``service.core.merkle``).
Rows sealed before keep their stored proof, from which their receipts stay byte-identical; new rows store NULL.
``idempotency_keys.body_zlib`` holds a new answer's body compressed (``response`` then holds only its status).

PostgreSQL: ``DROP NOT NULL`` (no table rewrite). SQLite cannot drop a NOT NULL constraint in place: ``batch_leaves``
is rebuilt from its own stored ``CREATE TABLE`` text with the one constraint removed (same constraint names, same
rows), and its append-only triggers (0001) and REPLACE guards (0005), which ``DROP TABLE`` removed, are created
again exactly as those migrations made them. The rebuild copies every row once (a few seconds per million).

WARNING: runs while the previous release still serves (see 0001): that release writes a proof for every leaf and
never reads the new table or column, so it keeps working against this schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "evidence_app"
REJECT_FUNCTION = "evidence_reject_change"
PROOF_COMMENT = "the leaf's audit path, stored by releases before 0007; NULL: computed from batch_tiles"
# Frozen copies of 0001's and 0005's SQLite guards of batch_leaves, and 0005's for the new table.
LEAVES_KEYS: tuple[tuple[str, ...], ...] = (("evidence_pk",), ("batch_seq", "leaf_index"))
TILES_KEYS: tuple[tuple[str, ...], ...] = (("batch_seq", "level", "idx"),)


def _sqlite_guards(table: str, keys: tuple[tuple[str, ...], ...]) -> None:
    message = f"evidence ledger tables are append-only: {table}"
    for action in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{action} BEFORE {action.upper()} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    for n, columns in enumerate(keys):
        match = " AND ".join(f"{c} = NEW.{c}" for c in columns)
        op.execute(
            f"CREATE TRIGGER {table}_no_replace_{n} BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {match}) "
            f"BEGIN SELECT RAISE(ABORT, '{message} (existing key)'); END"
        )


def _sqlite_rebuild_batch_leaves(nullable: bool) -> None:
    conn = op.get_bind()
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'batch_leaves'").scalar()
    assert isinstance(sql, str), "no batch_leaves table"
    old, new = ("proof BLOB NOT NULL", "proof BLOB") if nullable else ("proof BLOB", "proof BLOB NOT NULL")
    header = next(
        (h for h in ("CREATE TABLE batch_leaves (", 'CREATE TABLE "batch_leaves" (') if sql.startswith(h)), None
    )
    if sql.count(old) != 1 or header is None:
        raise RuntimeError(f"batch_leaves is not as migration 0001 created it: {sql}")
    head, tail = sql.split(old)
    if not nullable and tail.startswith(" NOT NULL"):
        raise RuntimeError("batch_leaves.proof is already NOT NULL")
    op.execute("CREATE TABLE _batch_leaves_0007 (" + head.removeprefix(header) + new + tail)
    op.execute(
        "INSERT INTO _batch_leaves_0007 (evidence_pk, batch_seq, leaf_index, proof) "
        "SELECT evidence_pk, batch_seq, leaf_index, proof FROM batch_leaves ORDER BY evidence_pk"
    )
    op.execute("DROP TABLE batch_leaves")  # drops its triggers too; DROP fires no DELETE trigger
    op.execute("ALTER TABLE _batch_leaves_0007 RENAME TO batch_leaves")
    _sqlite_guards("batch_leaves", LEAVES_KEYS)


def upgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    if postgres:
        op.alter_column("batch_leaves", "proof", existing_type=sa.LargeBinary(), nullable=True, comment=PROOF_COMMENT)
    else:
        _sqlite_rebuild_batch_leaves(nullable=True)
    op.create_table(
        "batch_tiles",
        sa.Column("batch_seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "level", sa.Integer(), nullable=False, comment="k: the tile holds nodes of tree level 8k (0: leaf hashes)"
        ),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False, comment="up to 256 node hashes, concatenated"),
        sa.CheckConstraint("level >= 0", name=op.f("ck_batch_tiles_level_not_negative")),
        sa.ForeignKeyConstraint(["batch_seq"], ["batches.seq"], name=op.f("fk_batch_tiles_batch_seq_batches")),
        sa.PrimaryKeyConstraint("batch_seq", "level", "idx", name=op.f("pk_batch_tiles")),
    )
    op.add_column(
        "idempotency_keys",
        sa.Column(
            "body_zlib",
            sa.LargeBinary(),
            nullable=True,
            comment="the answer's body, zlib; response then holds its status",
        ),
    )
    if postgres:
        # Tiles are random hashes: no use trying to compress them.
        op.execute("ALTER TABLE batch_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL")
        op.execute(
            "CREATE TRIGGER batch_tiles_append_only BEFORE UPDATE OR DELETE ON batch_tiles "
            f"FOR EACH ROW EXECUTE FUNCTION {REJECT_FUNCTION}()"
        )
        op.execute(
            "CREATE TRIGGER batch_tiles_no_truncate BEFORE TRUNCATE ON batch_tiles "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {REJECT_FUNCTION}()"
        )
        op.execute(f"GRANT SELECT, INSERT ON batch_tiles TO {APP_ROLE}")
    else:
        _sqlite_guards("batch_tiles", TILES_KEYS)


def downgrade() -> None:
    # Only while no batch was sealed without stored proofs: the old code cannot serve those receipts.
    conn = op.get_bind()
    unproven = conn.exec_driver_sql("SELECT count(*) FROM batch_leaves WHERE proof IS NULL").scalar()
    if unproven:
        raise RuntimeError(f"{unproven} sealed leaves have no stored proof: the release before 0007 cannot serve them")
    postgres = op.get_context().dialect.name == "postgresql"
    op.drop_column("idempotency_keys", "body_zlib")
    if postgres:
        op.execute("DROP TRIGGER IF EXISTS batch_tiles_append_only ON batch_tiles")
        op.execute("DROP TRIGGER IF EXISTS batch_tiles_no_truncate ON batch_tiles")
    op.drop_table("batch_tiles")  # SQLite drops its triggers with it
    if postgres:
        op.alter_column("batch_leaves", "proof", existing_type=sa.LargeBinary(), nullable=False, comment=None)
    else:
        _sqlite_rebuild_batch_leaves(nullable=False)
