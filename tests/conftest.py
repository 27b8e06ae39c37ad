"""Shared fixtures: databases.

- ``sqlite_url``: a fresh SQLite file in ``tmp_path``.
- ``pg_url``: a throwaway PostgreSQL database ``evidence_test_<random>`` on the server of
  ``EVIDENCE_TEST_PG_ADMIN_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), dropped
  afterwards. Unreachable server: the test is skipped with the reason, unless
  ``EVIDENCE_REQUIRE_SERVICES=1`` (CI), which turns the skip into a failure.
- ``db_url``: both of the above, ids ``sqlite`` and ``postgres`` (the latter marked ``postgres``); empty.
- ``migrated_db_url``: like ``db_url`` but migrated to head. PostgreSQL ones are cloned from a template
  database migrated once per session (``CREATE DATABASE ... TEMPLATE``), which is much faster.
- ``engine``: an engine on ``migrated_db_url`` (a fresh database per test), disposed afterwards.
- ``conn``: a connection in a transaction on a database migrated once per session and backend, rolled
  back after the test (warehouse's pattern). For tests that never commit; those that do use ``engine``.
- ``app`` / ``client``: the Flask app (no in-process sealer) and its test client, built from the ``runtime``
  fixture of the test module (each module says which database and settings; ``tests.factories.make_runtime``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.runtime import Runtime
from service.storage import db
from tests.factories import make_app

# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2 (as service.storage.db.make_engine does).
PG_ADMIN_URL = (
    make_url(os.environ.get("EVIDENCE_TEST_PG_ADMIN_URL") or "postgresql://postgres@127.0.0.1:5432/postgres")
    .set(drivername="postgresql+psycopg2")
    .render_as_string(hide_password=False)
)


def services_required() -> bool:
    """True when tests must fail, not skip, if a service (PostgreSQL, Redis...) is unreachable."""
    return os.environ.get("EVIDENCE_REQUIRE_SERVICES", "") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the test with ``reason``, or fail it when EVIDENCE_REQUIRE_SERVICES=1."""
    if services_required():
        pytest.fail(f"{reason} (EVIDENCE_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{os.fspath(tmp_path)}/evidence.db"


@contextmanager
def _throwaway_pg_database(template: str | None = None) -> Iterator[str]:
    # pre-ping: a session-scoped template database outlives the crash tests' PostgreSQL restart
    admin = create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True, connect_args={"connect_timeout": 3}
    )
    name = f"evidence_test_{secrets.token_hex(6)}"
    clause = f' TEMPLATE "{template}"' if template else ""
    try:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        except OperationalError as exc:
            skip_or_fail(f"PostgreSQL unreachable at {make_url(PG_ADMIN_URL).render_as_string()}: {exc.orig}")
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with _throwaway_pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """Name of a database migrated to head once per session, to clone (nothing may stay connected)."""
    with _throwaway_pg_database() as url:
        db.upgrade(url)
        name = make_url(url).database
        assert name is not None
        yield name


@pytest.fixture
def pg_migrated_url(pg_template: str) -> Iterator[str]:
    with _throwaway_pg_database(template=pg_template) as url:
        yield url


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def migrated_db_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_migrated_url"))
    url = str(request.getfixturevalue("sqlite_url"))
    db.upgrade(url)
    return url


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[Engine]:
    eng = db.make_engine(migrated_db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def shared_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with ExitStack() as stack:
        if request.param == "postgres":
            url = stack.enter_context(_throwaway_pg_database())
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('shared')}/evidence.db"
        db.upgrade(url)
        eng = db.make_engine(url)
        stack.callback(eng.dispose)
        yield eng


@pytest.fixture
def conn(shared_engine: Engine) -> Iterator[Connection]:
    with shared_engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return make_app(runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the crash tests last: they restart PostgreSQL and stop Redis, which would break the pooled connections
    of session-scoped fixtures used by the tests after them."""
    items.sort(key=lambda item: item.get_closest_marker("crash") is not None)
