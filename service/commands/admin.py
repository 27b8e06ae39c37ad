"""Operator commands: ``evidence tenant create NAME`` (SPEC §8) and ``evidence db upgrade|check``.

``tenant create`` works on the database ``evidence serve`` uses (the data dir's embedded database, or
``DATABASE_URL``) and prints the new API key alone on the last line of stdout: it is stored only as a hash,
so this is the one time it is shown. Commands that write say which database they used, and none creates a new
embedded database unless told (``--data-dir`` or ``--init``): run from another folder, they would otherwise
start an empty ledger beside the real one and print keys the running server refuses. Errors propagate to
``service.cli.main`` (exit 2), except a schema that differs from the code (``db check``), which exits 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.config import Settings
from service.core.errors import ConfigError, SchemaDrift

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

DATA_DIR_HELP = "Data directory (embedded database and signing key); default $EVIDENCE_DATA_DIR or ./evidence-data."
INIT_HELP = "Create the embedded database if the data dir has none (never done silently)."


def settings_for(data_dir: str | None) -> Settings:
    """Settings from the environment, with ``--data-dir`` (when given) taking the place of EVIDENCE_DATA_DIR."""
    environ = dict(os.environ)
    if data_dir is not None:
        environ["EVIDENCE_DATA_DIR"] = data_dir
    return Settings.from_env(environ)


def is_sqlite(settings: Settings) -> bool:
    return settings.database_url.startswith("sqlite")


def sqlite_file(settings: Settings) -> Path | None:
    """The file of an embedded (SQLite) database, None for a server database or an in-memory one."""
    from sqlalchemy.engine import make_url

    if not is_sqlite(settings):
        return None
    database = make_url(settings.database_url).database
    return Path(database).absolute() if database and database != ":memory:" else None


def database_name(settings: Settings) -> str:
    """The database as a person recognises it: the embedded file's path, or the URL without its password."""
    from sqlalchemy.engine import make_url

    path = sqlite_file(settings)
    if path is not None:
        return str(path)
    return make_url(settings.database_url).render_as_string(hide_password=True)


def refuse_new_database(settings: Settings, *, told: bool) -> None:
    """Refuse to open an embedded database that does not exist yet unless ``told`` (``--data-dir``/``--init``).

    :raise ConfigError: naming the path looked at and the three ways on.
    """
    path = sqlite_file(settings)
    if told or path is None or path.exists():
        return
    raise ConfigError(
        f"there is no Evidence Ledger database at {path}. Run this command where 'evidence serve' runs, or give "
        "the server's data directory with --data-dir DIR (or set DATABASE_URL), or pass --init to create a new, "
        "empty database there"
    )


def ensure_schema(settings: Settings) -> None:
    """The embedded SQLite database is migrated on first use; another database must be migrated already.

    :raise ConfigError: a PostgreSQL database that is not at the head revision (run ``evidence db upgrade``).
    """
    from service.storage import db

    if is_sqlite(settings):
        db.upgrade(settings.database_url)
        return
    engine = db.make_engine(settings)
    try:
        with engine.connect() as conn:
            current = db.current_revision(conn)
    finally:
        engine.dispose()
    if current not in db.heads():
        raise ConfigError(
            f"the database is at revision {current or 'none (empty)'}, not at head {', '.join(db.heads())}: "
            "run 'evidence db upgrade' first"
        )


@contextmanager
def transaction(data_dir: str | None, *, init: bool = False) -> Iterator[Connection]:
    """One transaction on the database ``evidence serve`` uses (schema ensured first); the engine is closed after.

    :raise ConfigError: the embedded database does not exist and neither ``data_dir`` nor ``init`` was given.
    """
    from service.storage import db

    settings = settings_for(data_dir)
    refuse_new_database(settings, told=data_dir is not None or init)
    ensure_schema(settings)
    engine = db.make_engine(settings)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@click.group()
def tenant() -> None:
    """Manage tenants (each tenant has its own API keys and sees only its own evidence)."""


@tenant.command("create")
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option("--init", is_flag=True, help=INIT_HELP)
def tenant_create(name: str, data_dir: str | None, init: bool) -> None:
    """Create tenant NAME and print its new API key (alone, on the last line).

    The key works only on a server using the same database: the command says which one it used.
    """
    from service.core.formats import utc_now
    from service.tenants import create_tenant

    with transaction(data_dir, init=init) as conn:
        api_key = create_tenant(conn, name, utc_now())
    click.echo(f"Created tenant {name!r} in the database {database_name(settings_for(data_dir))}.")
    click.echo("Its API key works on a server using that database, and is shown only now; keep it secret:")
    click.echo(api_key)


@click.group("db")
def db_group() -> None:
    """Database schema migrations."""


@db_group.command("upgrade")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option("--init", is_flag=True, help=INIT_HELP)
def db_upgrade(data_dir: str | None, init: bool) -> None:
    """Migrate the database to the latest schema."""
    from service.storage import db

    settings = settings_for(data_dir)
    refuse_new_database(settings, told=data_dir is not None or init)
    db.upgrade(settings.database_url)
    click.echo(f"database {database_name(settings)} at head {', '.join(db.heads())}")


@db_group.command("check")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def db_check(data_dir: str | None) -> None:
    """Migrate, then check the database schema equals the code's tables (exit 1 if not)."""
    from service.storage import db

    settings = settings_for(data_dir)
    refuse_new_database(settings, told=data_dir is not None)
    try:
        db.check(settings.database_url)
    except SchemaDrift as exc:
        click.echo(f"schema drift: {exc.reason}", err=True)
        raise click.exceptions.Exit(1) from None
    click.echo("database schema matches the code")
