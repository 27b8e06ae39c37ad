"""Tenant administration beyond ``tenant create``: ``evidence tenant list|revoke`` and API key rotation with
``evidence tenant key add NAME`` / ``evidence tenant key revoke PREFIX``.

The commands are added to the ``tenant`` group of ``service.commands.admin`` (which owns ``tenant create``), and
``service.cli`` loads the group from here, so every ``tenant`` subcommand is one group. A tenant may hold several
keys at once (rotation: add the new key, deploy it, revoke the old one). Keys are 256 random bits, stored only as
their SHA-256; a new key is printed once, alone on the last line of stdout.
"""

from __future__ import annotations

import click

from service.commands.admin import DATA_DIR_HELP, database_name, settings_for, tenant, transaction
from service.core.errors import InvalidInput, NotFound

__all__ = ["tenant"]


def _time(us: int | None) -> str:
    from service.core.formats import format_time
    from service.storage.codec import from_us

    return "-" if us is None else format_time(from_us(us))[:19] + "Z"


@tenant.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def tenant_list(data_dir: str | None) -> None:
    """List tenants with their state and active API key prefixes."""
    from service.storage import ledger

    with transaction(data_dir) as conn:
        tenants = ledger.list_tenants(conn)
        keys = ledger.list_api_keys(conn)
    active: dict[int, list[str]] = {}
    for k in keys:
        if k.revoked_at is None:
            active.setdefault(k.tenant_id, []).append(k.prefix)
    click.echo(f"{'NAME':<24} {'STATE':<8} {'CREATED':<21} {'KEYS':>4}  PREFIXES")
    for t in tenants:
        state = "active" if t.revoked_at is None else "revoked"
        prefixes = active.get(t.id, [])
        click.echo(f"{t.name:<24} {state:<8} {_time(t.created_at):<21} {len(prefixes):>4}  {' '.join(prefixes)}")


@tenant.command("revoke")
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def tenant_revoke(name: str, data_dir: str | None) -> None:
    """Revoke tenant NAME: all its API keys stop working at once (its evidence stays in the ledger)."""
    from service.core.formats import utc_now
    from service.storage import ledger
    from service.storage.codec import to_us

    with transaction(data_dir) as conn:
        row = ledger.get_tenant_by_name(conn, name)
        if row is None:
            raise NotFound(f"no tenant named {name!r} (see 'evidence tenant list')")
        if not ledger.revoke_tenant(conn, name, to_us(utc_now())):
            raise InvalidInput(f"tenant {name!r} is already revoked")
    click.echo(
        f"Revoked tenant {name!r} in the database {database_name(settings_for(data_dir))}: its API keys no longer work."
    )


@tenant.group("key")
def key_group() -> None:
    """Manage a tenant's API keys (several may be active at once, for rotation)."""


@key_group.command("add")
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def key_add(name: str, data_dir: str | None) -> None:
    """Add a new API key to tenant NAME and print it (alone, on the last line; it is shown only now)."""
    from service.core.formats import utc_now
    from service.storage import ledger
    from service.tenants import DISPLAY_PREFIX_LENGTH, add_api_key

    with transaction(data_dir) as conn:
        row = ledger.get_tenant_by_name(conn, name)
        if row is None:
            raise NotFound(f"no tenant named {name!r} (see 'evidence tenant list')")
        if row.revoked_at is not None:
            raise InvalidInput(f"tenant {name!r} is revoked; a revoked tenant gets no new keys")
        api_key = add_api_key(conn, row.id, utc_now())
    click.echo(
        f"Added an API key to tenant {name!r} (prefix {api_key[:DISPLAY_PREFIX_LENGTH]}) in the database "
        f"{database_name(settings_for(data_dir))}. It is shown only now; keep it secret:"
    )
    click.echo(api_key)


@key_group.command("revoke")
@click.argument("prefix")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def key_revoke(prefix: str, data_dir: str | None) -> None:
    """Revoke the API key shown with PREFIX in 'evidence tenant list' (or given whole)."""
    from service.core.formats import utc_now
    from service.storage import ledger
    from service.storage.codec import to_us
    from service.tenants import DISPLAY_PREFIX_LENGTH, hash_api_key

    with transaction(data_dir) as conn:
        if len(prefix) > DISPLAY_PREFIX_LENGTH:
            found = ledger.active_key_by_hash(conn, hash_api_key(prefix))
            matches = [] if found is None else [found]
        else:
            matches = ledger.active_keys_by_prefix(conn, prefix)
        if not matches:
            raise NotFound(f"no active API key with prefix {prefix!r} (see 'evidence tenant list')")
        if len(matches) > 1:
            owners = ", ".join(sorted({m.name for m in matches}))
            raise InvalidInput(
                f"{len(matches)} active keys start with {prefix!r} (tenants: {owners}); "
                "give the whole key to say which one"
            )
        (match,) = matches
        ledger.revoke_api_key(conn, match.id, to_us(utc_now()))
        left = sum(1 for k in ledger.list_api_keys(conn, match.tenant_id) if k.revoked_at is None)
    click.echo(
        f"Revoked API key {match.prefix} of tenant {match.name!r} in the database "
        f"{database_name(settings_for(data_dir))}; {left} active key(s) left."
    )
    if left == 0:
        click.echo(f"warning: tenant {match.name!r} has no active key now ('evidence tenant key add')", err=True)
