"""SM3 digests of deposits (issue 16): ``evidence_v2.sm3``, bound by the v2 leaf's ``sm3`` digest line (SPEC §2.1).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

One nullable column, 32 bytes when present (checked by the database). A deposit with an SM3 digest has an
``evidence_v2`` row, so a v2 leaf; deposits without one are unchanged. The code before this release never reads
the column, so it keeps working against the new schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "sm3 IS NULL OR length(sm3) = 32"
CHECK_NAME = "ck_evidence_v2_sm3_is_32_bytes"
COMMENT = "SM3 (GB/T 32905) of the file, 32 bytes"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.add_column("evidence_v2", sa.Column("sm3", sa.LargeBinary(), nullable=True, comment=COMMENT))
        op.create_check_constraint(CHECK_NAME, "evidence_v2", CHECK)
    else:
        # SQLite: the CHECK goes with the column (ALTER TABLE cannot add a constraint; a table rebuild would drop
        # the append-only triggers).
        op.execute(f"ALTER TABLE evidence_v2 ADD COLUMN sm3 BLOB CONSTRAINT {CHECK_NAME} CHECK ({CHECK})")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(CHECK_NAME, "evidence_v2", type_="check")
    op.drop_column("evidence_v2", "sm3")
