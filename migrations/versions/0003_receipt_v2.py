"""Receipt format v2: cases, the v2 leaf and depositor attestation of a deposit, tenants' depositor keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Adds three tables, changes none: ``cases`` and ``evidence_v2`` are append-only (guarded by triggers like the
ledger tables of 0001), ``depositor_keys`` is mutable (a key can be revoked). A deposit with an ``evidence_v2``
row has a v2 leaf (SPEC §2.1) made of its ``evidence`` row (id, sha256, received, label) and that row (case,
phase, phase name, countersigned id, attestation); one without keeps its v1 leaf (SPEC §2), so the code before
this release keeps working against the new schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies (a migration must not change when service.storage.ledger changes later).
APPEND_ONLY_TABLES = ("cases", "evidence_v2")
MUTABLE_TABLES = ("depositor_keys",)
APP_ROLE = "evidence_app"
REJECT_FUNCTION = "evidence_reject_change"  # created by 0001


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_cases_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_cases")),
        sa.UniqueConstraint("id", name=op.f("uq_cases_id")),
    )
    op.create_index(op.f("ix_cases_tenant_id"), "cases", ["tenant_id"], unique=False)
    op.create_table(
        "evidence_v2",
        sa.Column(
            "evidence_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("attestation", sa.LargeBinary(), nullable=True, comment="the exact SPEC §2.2 attestation bytes"),
        sa.Column("case_id", sa.Text(), nullable=True),
        sa.Column("phase", sa.BigInteger(), nullable=True),
        sa.Column("phase_name", sa.Text(), nullable=True),
        sa.Column("cosigns", sa.Text(), nullable=True, comment="evidence id of the deposit countersigned"),
        sa.CheckConstraint("phase IS NULL OR phase >= 1", name=op.f("ck_evidence_v2_phase_positive")),
        sa.ForeignKeyConstraint(["evidence_pk"], ["evidence.pk"], name=op.f("fk_evidence_v2_evidence_pk_evidence")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_evidence_v2_case_id_cases")),
        sa.PrimaryKeyConstraint("evidence_pk", name=op.f("pk_evidence_v2")),
    )
    op.create_index(op.f("ix_evidence_v2_cosigns"), "evidence_v2", ["cosigns"], unique=False)
    # One first-party deposit per phase of a case (countersignatures repeat their deposit's phase).
    op.create_index(
        "uq_evidence_v2_case_phase",
        "evidence_v2",
        ["case_id", "phase"],
        unique=True,
        sqlite_where=sa.text("cosigns IS NULL"),
        postgresql_where=sa.text("cosigns IS NULL"),
    )
    op.create_table(
        "depositor_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False, comment="32-byte Ed25519 public key"),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("revoked_us", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("length(public_key) = 32", name=op.f("ck_depositor_keys_public_key_is_ed25519")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_depositor_keys_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_depositor_keys")),
        sa.UniqueConstraint("tenant_id", "public_key", name=op.f("uq_depositor_keys_tenant_id_public_key")),
    )
    if op.get_context().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {REJECT_FUNCTION}()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {REJECT_FUNCTION}()"
            )
        op.execute(f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY_TABLES)} TO {APP_ROLE}")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(MUTABLE_TABLES)} TO {APP_ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    else:
        for table in APPEND_ONLY_TABLES:
            message = f"evidence ledger tables are append-only: {table}"
            for action in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action} BEFORE {action.upper()} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )


def downgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for table in APPEND_ONLY_TABLES:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.drop_table("depositor_keys")
    op.drop_index("uq_evidence_v2_case_phase", table_name="evidence_v2")
    op.drop_index(op.f("ix_evidence_v2_cosigns"), table_name="evidence_v2")
    op.drop_table("evidence_v2")
    op.drop_index(op.f("ix_cases_tenant_id"), table_name="cases")
    op.drop_table("cases")
