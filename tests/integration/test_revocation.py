"""Revocation reaches every API process: at once on the embedded default, within 1 s through Redis in production,
and a process that cannot hear Redis remembers no key. Two apps stand for two API processes (each has its own key
memory); the revocations are made by the real ``evidence tenant ... revoke`` commands, whose output is checked."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from service.api import create_app, stop_sealer
from service.config import Settings
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db
from service.tenants import add_tenant_key, create_tenant
from tests.integration.test_ratelimit_shared import own_redis  # noqa: F401 - pytest fixture

DIGEST = hashlib.sha256(b"revocation").hexdigest()
ENV_DROP = ("DATABASE_URL", "EVIDENCE_BROKER_URL", "EVIDENCE_DATA_DIR", "EVIDENCE_REDIS_URL")


def evidence(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    environ.update(env)
    run = subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, env=environ, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return run


def status(client: FlaskClient, key: str) -> int:
    return client.get(f"/v1/evidence?sha256={DIGEST}", headers={"Authorization": f"Bearer {key}"}).status_code


def two_api_processes(settings: Settings) -> tuple[Runtime, list[Flask]]:
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    return runtime, [create_app(runtime=runtime, start_sealer=False) for _ in range(2)]


def keys_of(runtime: Runtime) -> tuple[str, str]:
    with runtime.engine.begin() as conn:
        first = create_tenant(conn, "acme", utc_now())
        second = add_tenant_key(conn, "acme", utc_now())
    return first, second


def wait_until(predicate: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - started


def test_embedded_revocation_is_immediate_in_every_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, rate_limit=0)
    db.upgrade(settings.database_url)
    runtime, apps = two_api_processes(settings)
    try:
        first, second = keys_of(runtime)
        clients = [app.test_client() for app in apps]
        assert [status(c, k) for c in clients for k in (first, second)] == [200] * 4  # both remembered now

        run = evidence("tenant", "key", "revoke", first[:8], "--data-dir", str(data_dir))
        assert [status(c, first) for c in clients] == [401, 401]  # no wait at all
        assert "refuse them from their next request" in run.stdout, run.stdout
        assert [status(c, second) for c in clients] == [200, 200]

        run = evidence("tenant", "revoke", "acme", "--data-dir", str(data_dir))
        assert [status(c, second) for c in clients] == [401, 401]
        assert "refuse them from their next request" in run.stdout, run.stdout
    finally:
        for app in apps:
            stop_sealer(app)
        runtime.engine.dispose()


def test_production_revocation_through_redis_within_a_second(
    tmp_path: Path,
    pg_migrated_url: str,
    own_redis: tuple[str, subprocess.Popen[bytes]],  # noqa: F811 - the fixture
) -> None:
    redis_url, redis_process = own_redis
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_migrated_url, redis_url=redis_url, rate_limit=0)
    runtime, apps = two_api_processes(settings)
    try:
        first, second = keys_of(runtime)
        clients = [app.test_client() for app in apps]
        watchers = [app.extensions["evidence_ledger"].revocations for app in apps]
        wait_until(lambda: all(w.live for w in watchers), 10)
        assert [status(c, first) for c in clients] == [200, 200]

        run = evidence("tenant", "key", "revoke", first[:8], DATABASE_URL=pg_migrated_url, EVIDENCE_REDIS_URL=redis_url)
        assert "announced through Redis to 2 API process(es), which refuse them within 1 s" in run.stdout, run.stdout
        took = wait_until(lambda: all(status(c, first) == 401 for c in clients), 1.0)
        assert took < 1.0
        assert [status(c, second) for c in clients] == [200, 200]

        # Redis gone: the processes cannot hear announcements, so they remember no key and check every request.
        redis_process.send_signal(signal.SIGTERM)
        redis_process.wait(10)
        wait_until(lambda: not any(w.live for w in watchers), 10)
        assert [status(c, second) for c in clients] == [200, 200]
        run = evidence("tenant", "revoke", "acme", DATABASE_URL=pg_migrated_url, EVIDENCE_REDIS_URL=redis_url)
        assert "Redis could not be told" in run.stdout and "within 5 s" in run.stdout, run.stdout
        assert [status(c, second) for c in clients] == [401, 401]  # at once: nothing was remembered
    finally:
        for app in apps:
            stop_sealer(app)
        runtime.engine.dispose()


def test_postgres_without_redis_says_five_seconds(tmp_path: Path, pg_migrated_url: str) -> None:
    with Runtime.from_settings(Settings(data_dir=tmp_path / "d", database_url=pg_migrated_url)).engine.begin() as c:
        key = create_tenant(c, "acme", utc_now())
    run = evidence("tenant", "key", "revoke", key[:8], DATABASE_URL=pg_migrated_url)
    assert "refuse them within 5 s" in run.stdout and "set EVIDENCE_REDIS_URL" in run.stdout, run.stdout
