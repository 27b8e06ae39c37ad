"""Witness cosignatures (SPEC §9): one row per witness key and checkpoint size, append-only.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

Additive only (a new table): the previous release keeps working while this runs. Append-only like the other
ledger tables: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL); evidence_app may only SELECT and
INSERT.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "cosignatures"
APP_ROLE = "evidence_app"
REJECT_FUNCTION = "evidence_reject_change"  # created by 0001


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("witness", sa.Text(), nullable=False, comment="the witness's name in the policy file"),
        sa.Column("vkey", sa.Text(), nullable=False, comment="the witness's cosignature/v1 verifier key"),
        sa.Column("timestamp", sa.BigInteger(), nullable=False, comment="the cosignature's time, POSIX seconds"),
        sa.Column(
            "line", sa.LargeBinary(), nullable=False, comment="the note signature line, exact bytes with its newline"
        ),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["size"], ["checkpoints.size"], name=op.f("fk_cosignatures_size_checkpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cosignatures")),
        sa.UniqueConstraint("size", "vkey", name=op.f("uq_cosignatures_size_vkey")),
    )
    op.create_index(op.f("ix_cosignatures_size"), TABLE, ["size"], unique=False)
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            f"FOR EACH ROW EXECUTE FUNCTION {REJECT_FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {REJECT_FUNCTION}()"
        )
        op.execute(f"GRANT SELECT, INSERT ON {TABLE} TO {APP_ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    else:
        message = f"evidence ledger tables are append-only: {TABLE}"
        for action in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{action} BEFORE {action.upper()} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
    op.drop_index(op.f("ix_cosignatures_size"), table_name=TABLE)
    op.drop_table(TABLE)
