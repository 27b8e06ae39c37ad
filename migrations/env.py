"""Alembic environment of Evidence Ledger (one history for SQLite and PostgreSQL).

The URL comes from the Config (``service.storage.db.upgrade(url)`` passes it as an attribute, or a
``sqlalchemy.url`` main option), else from ``DATABASE_URL`` through ``service.config.Settings``.
Engines are made by ``service.storage.db.make_engine``, so SQLite migrations run inside ``BEGIN IMMEDIATE``.
On PostgreSQL a session advisory lock keeps concurrent migrators apart, and lock/statement timeouts stop
a migration from queueing behind (and in front of) live traffic for long. Each migration runs in its own
transaction.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text

from service.config import Settings
from service.storage import ledger
from service.storage.db import make_engine

# pg_advisory_lock key for migrations: b"EVMG" (distinct from ledger.LEDGER_LOCK_ID).
MIGRATION_LOCK_ID = 0x45564D47
LOCK_TIMEOUT = "10s"
STATEMENT_TIMEOUT = "5min"

config = context.config
if config.config_file_name is not None:  # the alembic CLI; service.storage.db builds its Config in code
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = ledger.metadata


def database_url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    return Settings.from_env(os.environ).database_url


def run_migrations_offline() -> None:
    """Emit SQL (``alembic upgrade head --sql``) instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        transaction_per_migration=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                # Taken before lock_timeout is set: a second migrator waits for the first to finish.
                connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
                connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
                connection.execute(text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
                # Session settings stay; committing leaves no open transaction, so that
                # transaction_per_migration really gives each migration its own transaction.
                connection.commit()
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                transaction_per_migration=True,
                # SQLite DDL is transactional too (Alembic assumes not); each migration is all or nothing.
                transactional_ddl=True,
                render_as_batch=not postgres,
                compare_type=True,
            )
            try:
                with context.begin_transaction():
                    context.run_migrations()
            finally:
                if postgres:
                    connection.rollback()
                    connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                    connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
