"""Tenant administration beyond ``tenant create``: ``evidence tenant list|revoke`` and API key rotation with
``evidence tenant key add NAME`` / ``evidence tenant key revoke PREFIX``.

The commands are added to the ``tenant`` group of ``service.commands.admin`` (which owns ``tenant create``), and
``service.cli`` loads the group from here, so every ``tenant`` subcommand is one group. A tenant may hold several
keys at once (rotation: add the new key, deploy it, revoke the old one). Keys are 256 random bits, stored only as
their SHA-256; a new key is printed once, alone on the last line of stdout. The rules are ``service.tenants``:
these commands parse their arguments and print.
"""

from __future__ import annotations

from datetime import datetime

import click

from service.commands.admin import DATA_DIR_HELP, database_name, settings_for, tenant, transaction
from service.config import Settings

__all__ = ["tenant"]


def _time(at: datetime) -> str:
    from service.core.formats import format_time

    return format_time(at)[:19] + "Z"


@tenant.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def tenant_list(data_dir: str | None) -> None:
    """List tenants with their state and active API key prefixes."""
    from service.tenants import list_tenants

    with transaction(data_dir) as conn:
        tenants = list_tenants(conn)
    click.echo(f"{'NAME':<24} {'STATE':<8} {'CREATED':<21} {'KEYS':>4}  PREFIXES")
    for t in tenants:
        state = "active" if t.revoked is None else "revoked"
        prefixes = t.active_prefixes
        click.echo(f"{t.name:<24} {state:<8} {_time(t.created):<21} {len(prefixes):>4}  {' '.join(prefixes)}")


@tenant.command("revoke")
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def tenant_revoke(name: str, data_dir: str | None) -> None:
    """Revoke tenant NAME: all its API keys are refused (its evidence stays in the ledger). Embedded: from the
    server's next request. Production: within 1 s with EVIDENCE_REDIS_URL set (announced through Redis), else
    within 5 s."""
    from service.core.formats import utc_now
    from service.tenants import revoke_tenant

    with transaction(data_dir) as conn:
        revoke_tenant(conn, name, utc_now())
    settings = settings_for(data_dir)
    click.echo(
        f"Revoked tenant {name!r} in the database {database_name(settings)}: its API keys are revoked. "
        + _announce(settings)
    )


def _announce(settings: Settings) -> str:
    """Tell the API processes (see service.revocations) and say when they refuse the revoked keys."""
    from service.revocations import KEY_CACHE_SECONDS, announce

    return announce(settings).effect(KEY_CACHE_SECONDS)


@tenant.group("key")
def key_group() -> None:
    """Manage a tenant's API keys (several may be active at once, for rotation)."""


@key_group.command("add")
@click.argument("name")
@click.option(
    "--depositor-key",
    "depositor_key",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Instead of an API key, register the Ed25519 public key in FILE (PEM, or the 32 bytes as base64) whose "
    "attestations this tenant's deposits may carry (SPEC §2.2). The private key stays with the depositor.",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def key_add(name: str, depositor_key: str | None, data_dir: str | None) -> None:
    """Add a new API key to tenant NAME and print it (alone, on the last line; it is shown only now), or register
    a depositor's Ed25519 public key with --depositor-key."""
    from service.core.formats import utc_now
    from service.tenants import DISPLAY_PREFIX_LENGTH, add_tenant_key

    if depositor_key is not None:
        _add_depositor_key(name, depositor_key, data_dir)
        return
    with transaction(data_dir) as conn:
        api_key = add_tenant_key(conn, name, utc_now())
    click.echo(
        f"Added an API key to tenant {name!r} (prefix {api_key[:DISPLAY_PREFIX_LENGTH]}) in the database "
        f"{database_name(settings_for(data_dir))}. It is shown only now; keep it secret:"
    )
    click.echo(api_key)


def _add_depositor_key(name: str, path: str, data_dir: str | None) -> None:
    import base64
    import binascii
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    from service.commands.verify import UsageFailure
    from service.core.formats import utc_now
    from service.deposits import add_depositor_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageFailure(f"cannot read the depositor key file {path!r}: {exc.strerror}") from None
    if b"-----BEGIN" in data:
        try:
            key = load_pem_public_key(data)
        except (ValueError, TypeError):
            raise UsageFailure(f"{path!r} is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise UsageFailure(
                f"{path!r} is not an Ed25519 public key (an RSA or ECDSA depositor signs with an X.509 certificate "
                "from a CA the service trusts: EVIDENCE_DEPOSITOR_CA_FILES)"
            )
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        try:
            raw = base64.b64decode(data.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise UsageFailure(f"{path!r} holds neither a PEM public key nor a base64 Ed25519 key") from None
        if len(raw) != 32:
            raise UsageFailure(f"{path!r}: an Ed25519 public key is 32 bytes, found {len(raw)}")
    with transaction(data_dir) as conn:
        fingerprint, added = add_depositor_key(conn, name, raw, utc_now())
    groups = " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))
    verb = "Registered" if added else "Already registered:"
    click.echo(
        f"{verb} depositor key {groups} for tenant {name!r} in the database {database_name(settings_for(data_dir))}."
    )


@key_group.command("revoke")
@click.argument("prefix")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def key_revoke(prefix: str, data_dir: str | None) -> None:
    """Revoke the API key shown with PREFIX in 'evidence tenant list' (or given whole). Embedded: refused from the
    server's next request. Production: within 1 s with EVIDENCE_REDIS_URL set (announced through Redis), else
    within 5 s."""
    from service.core.formats import utc_now
    from service.tenants import revoke_tenant_key

    with transaction(data_dir) as conn:
        revoked = revoke_tenant_key(conn, prefix, utc_now())
    settings = settings_for(data_dir)
    click.echo(
        f"Revoked API key {revoked.prefix} of tenant {revoked.tenant!r} in the database "
        f"{database_name(settings)}; {revoked.active_left} active key(s) left. " + _announce(settings)
    )
    if revoked.active_left == 0:
        click.echo(f"warning: tenant {revoked.tenant!r} has no active key now ('evidence tenant key add')", err=True)
