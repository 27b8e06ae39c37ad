"""Housekeeping (service.maintenance, migration 0002) on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, text

from service.config import Settings
from service.core.formats import utc_now
from service.maintenance import run_maintenance
from service.runtime import Runtime
from service.storage import db, ledger
from service.storage.codec import to_us
from service.tenants import create_tenant
from workers import celery_app


def test_expired_idempotency_answers_are_forgotten_and_live_ones_kept(tmp_path: Path, db_url: str) -> None:
    db.upgrade(db_url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path, database_url=db_url))
    try:
        now = utc_now()
        with runtime.engine.begin() as conn:
            create_tenant(conn, "acme", now)
            tenant = ledger.get_tenant_by_name(conn, "acme")
            assert tenant is not None
            for key, expires in (("old-1", -10), ("old-2", -1), ("live", 3600)):
                created = to_us(now - timedelta(days=1))
                expires_us = to_us(now + timedelta(seconds=expires))
                ledger.insert_idempotency(conn, tenant.id, key, b"h" * 32, "{}", created, expires_us)
        result = run_maintenance(runtime.engine, now)
        assert result.idempotency_expired == 2
        with runtime.engine.connect() as conn:
            keys = conn.execute(select(ledger.idempotency_keys.c.key)).scalars().all()
        assert keys == ["live"]
        assert run_maintenance(runtime.engine, now).idempotency_expired == 0
    finally:
        runtime.engine.dispose()


def test_sqlite_wal_is_truncated_and_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    db.upgrade(url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path, database_url=url))
    wal = tmp_path / "evidence.db-wal"
    try:
        with runtime.engine.begin() as conn:
            create_tenant(conn, "acme", utc_now())
            limit = conn.exec_driver_sql("PRAGMA journal_size_limit").scalar_one()
        assert limit == db.SQLITE_JOURNAL_SIZE_LIMIT
        for _ in range(5):
            with runtime.engine.begin() as conn:
                conn.execute(
                    ledger.evidence.insert(),
                    [
                        {"id": os.urandom(8).hex(), "tenant_id": 1, "sha256": os.urandom(32), "received_us": 1}
                        for _ in range(2000)
                    ],
                )
        assert wal.stat().st_size > 1_000_000
        result = run_maintenance(runtime.engine, utc_now())
        assert result.wal_checkpointed
        assert wal.stat().st_size == 0
        with runtime.engine.connect() as conn:  # nothing was lost on the way into the database file
            assert conn.execute(select(func.count()).select_from(ledger.evidence)).scalar_one() == 10_000
    finally:
        runtime.engine.dispose()


def test_postgres_pending_queue_is_vacuumed_by_a_fixed_number_of_dead_rows(pg_url: str) -> None:
    db.upgrade(pg_url)
    engine = db.make_engine(pg_url)
    try:
        with engine.connect() as conn:
            options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'pending'")).scalar_one()
        assert "autovacuum_vacuum_scale_factor=0" in options
        assert "autovacuum_vacuum_threshold=2000" in options
        db.upgrade(pg_url, "head")  # idempotent
    finally:
        engine.dispose()


def test_beat_runs_the_maintenance_task(tmp_path: Path) -> None:
    app = celery_app.make_celery(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/15"))
    entry = app.conf.beat_schedule["maintain"]
    assert entry["task"] == celery_app.MAINTAIN
    app.loader.import_default_modules()
    assert celery_app.MAINTAIN in app.tasks
