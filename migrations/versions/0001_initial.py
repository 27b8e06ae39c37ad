"""Initial schema: tenants, evidence, the ledger tables, append-only triggers, evidence_app grants.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

WARNING: this migration runs while the previous release of the code is still serving requests
(the one-shot `migrate` role runs before rollout). It must keep working with that code: add columns
nullable or with defaults, never drop or rename something the running code still uses. Breaking
changes ship in steps (add, backfill, switch the code, then remove in a later release).
The ledger tables are append-only: never UPDATE or DELETE their rows here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy (a migration must not change when service.storage.ledger changes later).
APPEND_ONLY_TABLES = (
    "evidence",
    "batches",
    "batch_leaves",
    "ledger_nodes",
    "checkpoints",
    "timestamps",
    "webhook_deliveries",
)
MUTABLE_TABLES = (
    "tenants",
    "api_keys",
    "pending",
    "signing_keys",
    "idempotency_keys",
    "webhooks",
)
APP_ROLE = "evidence_app"
REJECT_FUNCTION = "evidence_reject_change"


def upgrade() -> None:
    _create_tables()
    if op.get_context().dialect.name == "postgresql":
        _postgres_append_only()
        _postgres_grants()
    else:
        _sqlite_append_only()


def downgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for table in reversed(APPEND_ONLY_TABLES):
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if postgres:
        op.execute(f"DROP FUNCTION IF EXISTS {REJECT_FUNCTION}()")
    # The evidence_app role is cluster-wide and may serve other databases: it stays.
    for table in (
        "webhook_deliveries",
        "pending",
        "batch_leaves",
        "webhooks",
        "timestamps",
        "idempotency_keys",
        "evidence",
        "api_keys",
        "tenants",
        "signing_keys",
        "ledger_nodes",
        "checkpoints",
        "batches",
    ):
        op.drop_table(table)


def _sqlite_append_only() -> None:
    for table in APPEND_ONLY_TABLES:
        message = f"evidence ledger tables are append-only: {table}"
        for action in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action} BEFORE {action.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def _postgres_append_only() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {REJECT_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'evidence ledger tables are append-only: %', TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END
        $$
        """
    )
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {REJECT_FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {REJECT_FUNCTION}()"
        )


def _postgres_grants() -> None:
    # Roles are cluster-wide: create it only once (NOLOGIN; deployments GRANT it to their login user).
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY_TABLES)} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(MUTABLE_TABLES)} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT ON alembic_version TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")


def _create_tables() -> None:
    op.create_table(
        "batches",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_us", sa.BigInteger(), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False, comment="the exact SPEC §3 ledger entry bytes"),
        sa.Column("ledger_proof", sa.LargeBinary(), nullable=False, comment="inclusion of entry seq in log of seq+1"),
        sa.CheckConstraint("length(root) = 32", name=op.f("ck_batches_root_is_sha256")),
        sa.CheckConstraint("seq >= 0", name=op.f("ck_batches_seq_non_negative")),
        sa.CheckConstraint("size >= 1", name=op.f("ck_batches_size_positive")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_batches")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False, comment="the signed note, exact bytes"),
        sa.Column("key_hash", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("length(root) = 32", name=op.f("ck_checkpoints_root_is_sha256")),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("length(hash) = 32", name=op.f("ck_ledger_nodes_hash_is_sha256")),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_ledger_nodes")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.BigInteger(), nullable=False),
        sa.Column("vkey", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("valid_from_us", sa.BigInteger(), nullable=False),
        sa.Column("valid_until_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("vkey", name=op.f("uq_signing_keys_vkey")),
    )
    op.create_index(op.f("ix_signing_keys_key_hash"), "signing_keys", ["key_hash"], unique=False)

    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False, comment="microseconds since the epoch"),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True, comment="microseconds since the epoch"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_tenants_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(), nullable=False, comment="SHA-256 of the API key"),
        sa.Column("prefix", sa.Text(), nullable=False, comment="first characters of the key, for display"),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_api_keys_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant_id"), "api_keys", ["tenant_id"], unique=False)

    op.create_table(
        "evidence",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("length(sha256) = 32", name=op.f("ck_evidence_sha256_is_sha256")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_evidence_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_evidence")),
        sa.UniqueConstraint("id", name=op.f("uq_evidence_id")),
    )
    op.create_index(op.f("ix_evidence_tenant_id_sha256"), "evidence", ["tenant_id", "sha256"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False, comment="JSON answer replayed for the same request"),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_idempotency_keys_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_expires_us"), "idempotency_keys", ["expires_us"], unique=False)

    op.create_table(
        "timestamps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("batch_seq", sa.BigInteger(), nullable=False),
        sa.Column("tsa", sa.Text(), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False, comment="DER TimeStampToken"),
        sa.Column("gen_time_us", sa.BigInteger(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["batch_seq"], ["batches.seq"], name=op.f("fk_timestamps_batch_seq_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timestamps")),
        sa.UniqueConstraint("batch_seq", "tsa", name=op.f("uq_timestamps_batch_seq_tsa")),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("disabled_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name=op.f("fk_webhooks_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_tenant_id"), "webhooks", ["tenant_id"], unique=False)

    op.create_table(
        "batch_leaves",
        sa.Column(
            "evidence_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("batch_seq", sa.BigInteger(), nullable=False),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("proof", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["batch_seq"], ["batches.seq"], name=op.f("fk_batch_leaves_batch_seq_batches")),
        sa.ForeignKeyConstraint(["evidence_pk"], ["evidence.pk"], name=op.f("fk_batch_leaves_evidence_pk_evidence")),
        sa.PrimaryKeyConstraint("evidence_pk", name=op.f("pk_batch_leaves")),
        sa.UniqueConstraint("batch_seq", "leaf_index", name=op.f("uq_batch_leaves_batch_seq_leaf_index")),
    )
    op.create_table(
        "pending",
        sa.Column(
            "evidence_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["evidence_pk"], ["evidence.pk"], name=op.f("fk_pending_evidence_pk_evidence")),
        sa.PrimaryKeyConstraint("evidence_pk", name=op.f("pk_pending")),
    )
    op.create_index(op.f("ix_pending_received_us"), "pending", ["received_us"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("batch_seq", sa.BigInteger(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["batch_seq"], ["batches.seq"], name=op.f("fk_webhook_deliveries_batch_seq_batches")),
        sa.ForeignKeyConstraint(
            ["webhook_id"], ["webhooks.id"], name=op.f("fk_webhook_deliveries_webhook_id_webhooks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(op.f("ix_webhook_deliveries_webhook_id"), "webhook_deliveries", ["webhook_id"], unique=False)
