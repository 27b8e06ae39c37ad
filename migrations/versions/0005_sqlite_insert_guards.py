"""Append-only also against REPLACE on SQLite: a BEFORE INSERT guard per unique key of every ledger table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

``INSERT OR REPLACE`` (and ``REPLACE``) resolves a key conflict by deleting the old row, and SQLite fires DELETE
triggers for that deletion only when ``PRAGMA recursive_triggers`` is on. The service turns it on for every
connection (``service.storage.db``), and these guards refuse an insert whose key already exists for any other
connection too (an ``sqlite3`` shell, a script): the row that exists is never replaced. The error is a constraint
error, as a plain duplicate insert already was. UPSERT (``ON CONFLICT DO UPDATE``) fires the UPDATE triggers.

PostgreSQL has no REPLACE; its ``ON CONFLICT DO UPDATE`` fires the ``BEFORE UPDATE`` row triggers of 0001, so
nothing changes there.

WARNING: runs while the previous release still serves (see 0001): adding triggers only refuses writes that were
never legitimate.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy: every unique key (primary key, unique constraints and indexes) of every append-only table.
UNIQUE_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "evidence": (("pk",), ("id",)),
    "cases": (("pk",), ("id",)),
    "evidence_v2": (("evidence_pk",), ("case_id", "phase")),  # the latter only among cosigns IS NULL (0003)
    "cosignatures": (("id",), ("size", "vkey")),
    "batches": (("seq",),),
    "batch_leaves": (("evidence_pk",), ("batch_seq", "leaf_index")),
    "ledger_nodes": (("level", "idx"),),
    "checkpoints": (("size",),),
    "timestamps": (("id",), ("batch_seq", "tsa")),
    "webhook_deliveries": (("id",),),
}


def _name(table: str, n: int) -> str:
    return f"{table}_no_replace_{n}"


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table, keys in UNIQUE_KEYS.items():
        message = f"evidence ledger tables are append-only: {table} (existing key)"
        for n, columns in enumerate(keys):
            match = " AND ".join(f"{c} = NEW.{c}" for c in columns)
            if table == "evidence_v2" and columns == ("case_id", "phase"):
                match += " AND cosigns IS NULL AND NEW.cosigns IS NULL"
            op.execute(
                f"CREATE TRIGGER {_name(table, n)} BEFORE INSERT ON {table} "
                f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {match}) "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table, keys in UNIQUE_KEYS.items():
        for n in range(len(keys)):
            op.execute(f"DROP TRIGGER IF EXISTS {_name(table, n)}")
