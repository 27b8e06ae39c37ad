"""Least privilege in the reference deployment (no Docker engine here: the files are read, and the role setup runs
for real against the machine's PostgreSQL).

- compose.yaml: ``migrate`` connects as the table owner, api/worker/beat as the least-privilege login role, the
  superuser is nobody's; gunicorn does not trust X-Forwarded-For from everyone.
- deploy/postgres/roles.psql, run by psql as the image would, then the migrations as the owner: the app role can
  do its work, but cannot ``SET session_replication_role``, ``DISABLE TRIGGER``, or UPDATE/DELETE/TRUNCATE the
  ledger. Role names are unique per test run (roles are cluster-wide) and dropped afterwards.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from service.storage import db, ledger
from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_764_000_000_000_000


def compose() -> dict[str, dict[str, dict[str, object]]]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_compose_connects_each_role_as_the_least_privileged_user() -> None:
    services = compose()["services"]
    users = {}
    for name in ("migrate", "api", "worker", "beat"):
        environment = services[name]["environment"]
        assert isinstance(environment, dict), name
        users[name] = make_url(str(environment["DATABASE_URL"])).username
    assert users == {
        "migrate": "evidence_owner",
        "api": "evidence_api",
        "worker": "evidence_api",
        "beat": "evidence_api",
    }
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_USER"] == "postgres"  # type: ignore[index]
    assert "./deploy/postgres:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]  # type: ignore[operator]
    api_command = " ".join(services["api"]["command"])  # type: ignore[arg-type]
    assert "forwarded-allow-ips" not in api_command
    init = (ROOT / "deploy/postgres/10-roles.sh").read_text(encoding="utf-8")
    assert "-v owner=evidence_owner" in init and "-v app=evidence_api" in init and "roles.psql" in init
    assert (ROOT / "deploy/postgres/10-roles.sh").stat().st_mode & 0o111


@pytest.fixture
def roles() -> Iterator[tuple[str, str]]:
    """A throwaway database set up by roles.psql with unique role names; (owner URL, app URL)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    suffix = secrets.token_hex(4)
    database, owner, app = f"evidence_lp_{suffix}", f"evidence_owner_{suffix}", f"evidence_api_{suffix}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    except DBAPIError as exc:
        pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
    base = make_url(PG_ADMIN_URL)
    try:
        run = subprocess.run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-h", base.host or "127.0.0.1", "-p", str(base.port or 5432),
             "-U", base.username or "postgres", "-d", database,
             "-v", f"owner={owner}", "-v", "owner_password=pw-owner", "-v", f"app={app}", "-v", "app_password=pw-app",
             "-f", str(ROOT / "deploy/postgres/roles.psql")],
            capture_output=True, text=True, timeout=60,
            env={"PGPASSWORD": base.password or "", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        owner_url = base.set(database=database, username=owner, password="pw-owner")
        app_url = base.set(database=database, username=app, password="pw-app")
        yield owner_url.render_as_string(hide_password=False), app_url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            for role in (owner, app):
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.mark.postgres
def test_app_role_works_but_cannot_bypass_the_append_only_guards(roles: tuple[str, str]) -> None:
    owner_url, app_url = roles
    db.upgrade(owner_url)  # migrate, as compose's `migrate` does
    owner = create_engine(owner_url)
    app = db.make_engine(app_url)
    try:
        with owner.connect() as conn:
            tables = conn.execute(text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"))
            assert {r[0] for r in tables} == {make_url(owner_url).username}
        with app.connect() as conn:
            flags = conn.execute(
                text(
                    "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
                    "WHERE rolname = current_user"
                )
            ).one()
            assert tuple(flags) == (False, False, False, False)
        with app.begin() as conn:  # its normal work
            tenant = ledger.insert_tenant(conn, "acme", T0)
            ledger.insert_batch(conn, 0, 1, b"r" * 32, T0, b"entry 0\n", b"")
            assert ledger.ledger_size(conn) == 1 and tenant > 0
        forbidden = [
            "SET session_replication_role = replica",
            "ALTER TABLE batches DISABLE TRIGGER USER",
            "ALTER TABLE batches DISABLE TRIGGER ALL",
            "UPDATE batches SET root = root",
            "DELETE FROM batches",
            "TRUNCATE batches CASCADE",
            "DROP TABLE batches CASCADE",
            "CREATE TABLE sneaky (x int)",
        ]
        for statement in forbidden:
            try:
                with app.begin() as conn:
                    conn.execute(text(statement))
            except DBAPIError as exc:
                assert any(w in str(exc.orig) for w in ("permission denied", "must be owner")), (statement, exc)
            else:
                pytest.fail(f"the app role could run: {statement}")
        with app.connect() as conn:
            assert ledger.ledger_size(conn) == 1
    finally:
        owner.dispose()
        app.dispose()
