"""PostgreSQL: vacuum the ``pending`` queue by a fixed number of dead rows, not by a fraction of its size.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

``pending`` is a queue: every row is inserted once and deleted by the sealing transaction soon after, so the
table is nearly empty while its dead rows pile up (75 MB held by an empty table after 10^6 deposits with the
default ``autovacuum_vacuum_scale_factor`` of 0.2 of a tiny ``reltuples``). Vacuum it every 2,000 dead rows with
no cost delay, and analyze it as often. Storage parameters only: nothing the running code uses changes; SQLite
has no autovacuum of this kind (the WAL is kept bounded by service.maintenance instead).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000, "
    "autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 2000, "
    "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000, autovacuum_vacuum_cost_delay = 0"
)
PARAMETERS = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_vacuum_insert_threshold",
    "autovacuum_analyze_scale_factor",
    "autovacuum_analyze_threshold",
    "autovacuum_vacuum_cost_delay",
)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE pending SET ({PENDING_AUTOVACUUM})")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE pending RESET ({', '.join(PARAMETERS)})")
