"""Tenants and their API keys: creating, listing and revoking tenants, adding and revoking keys, and finding the
tenant of a key.

Owns: the API key format (``evl_`` + 256 random bits, URL-safe base64), how a key is stored (its SHA-256 only; the
key itself is shown once, at creation), and the tenant rules of ``evidence tenant ...`` (a revoked tenant gets no
new key; a key is named by its display prefix or given whole; an ambiguous prefix names nothing). The CLI
(``service.commands.admin`` / ``service.commands.tenants``) only parses arguments and prints these results.
Must not import: Flask or Celery. Functions take a Connection and never commit.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from service.core.errors import InvalidInput, NotFound
from service.storage import ledger
from service.storage.codec import to_us

API_KEY_PREFIX = "evl_"
# evl_ + token_urlsafe(32) is 4 + 43 characters; anything far longer is not one of our keys.
MAX_API_KEY_LENGTH = 128
DISPLAY_PREFIX_LENGTH = 8
MAX_TENANT_NAME_LENGTH = 100


def new_api_key() -> str:
    """A fresh API key: ``evl_`` followed by 256 random bits (43 URL-safe base64 characters)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> bytes:
    """The SHA-256 of the key's UTF-8 bytes: the only form in which a key is stored."""
    return hashlib.sha256(api_key.encode("utf-8")).digest()


def check_tenant_name(name: str) -> str:
    """Return ``name`` if it is 1-100 printable characters without leading or trailing spaces.

    :raise InvalidInput: saying what is wrong with it.
    """
    if not name:
        raise InvalidInput("the tenant name is empty")
    if len(name) > MAX_TENANT_NAME_LENGTH:
        raise InvalidInput(f"the tenant name is {len(name)} characters long, at most {MAX_TENANT_NAME_LENGTH}")
    if not name.isprintable():
        raise InvalidInput("the tenant name contains a control or other non-printable character")
    if name != name.strip():
        raise InvalidInput("the tenant name starts or ends with a space")
    return name


def create_tenant(conn: Connection, name: str, now: datetime) -> str:
    """Create the tenant ``name`` with one API key and return that key (it is stored only as a hash).

    :raise InvalidInput: a bad name, or a tenant of that name exists already.
    """
    tenant_id = ledger.insert_tenant(conn, check_tenant_name(name), to_us(now))
    return add_api_key(conn, tenant_id, now)


def add_api_key(conn: Connection, tenant_id: int, now: datetime) -> str:
    """Give tenant ``tenant_id`` a new API key and return it (stored only as its hash, with a display prefix)."""
    api_key = new_api_key()
    ledger.insert_api_key(conn, tenant_id, hash_api_key(api_key), api_key[:DISPLAY_PREFIX_LENGTH], to_us(now))
    return api_key


def tenant_for_api_key(conn: Connection, api_key: str) -> int | None:
    """The id of the active tenant owning ``api_key``, or None (unknown, revoked or malformed key).

    The lookup is by the key's SHA-256 through a unique index, so no secret is compared byte by byte here.
    """
    if not api_key.startswith(API_KEY_PREFIX) or len(api_key) > MAX_API_KEY_LENGTH:
        return None
    return ledger.tenant_for_key_hash(conn, hash_api_key(api_key))


# --- administration (evidence tenant list|revoke, tenant key add|revoke) ------------------------------------


@dataclass(frozen=True)
class TenantSummary:
    """One tenant as ``evidence tenant list`` shows it: its active keys' display prefixes, oldest first."""

    name: str
    created: datetime
    revoked: datetime | None
    active_prefixes: tuple[str, ...]


def list_tenants(conn: Connection) -> list[TenantSummary]:
    """Every tenant, oldest first, with the display prefixes of its active API keys."""
    active: dict[int, list[str]] = {}
    for k in ledger.list_api_keys(conn):
        if k.revoked is None:
            active.setdefault(k.tenant_id, []).append(k.prefix)
    return [TenantSummary(t.name, t.created, t.revoked, tuple(active.get(t.id, []))) for t in ledger.list_tenants(conn)]


def _no_such_tenant(name: str) -> NotFound:
    return NotFound(f"no tenant named {name!r} (see 'evidence tenant list')")


def revoke_tenant(conn: Connection, name: str, now: datetime) -> None:
    """Revoke tenant ``name``: all its API keys stop working at once (its evidence stays in the ledger).

    :raise NotFound: no such tenant. :raise InvalidInput: it is revoked already.
    """
    if ledger.get_tenant_by_name(conn, name) is None:
        raise _no_such_tenant(name)
    if not ledger.revoke_tenant(conn, name, to_us(now)):
        raise InvalidInput(f"tenant {name!r} is already revoked")


def add_tenant_key(conn: Connection, name: str, now: datetime) -> str:
    """Give tenant ``name`` a new API key and return it (shown once; stored as its hash).

    :raise NotFound: no such tenant. :raise InvalidInput: the tenant is revoked.
    """
    row = ledger.get_tenant_by_name(conn, name)
    if row is None:
        raise _no_such_tenant(name)
    if row.revoked is not None:
        raise InvalidInput(f"tenant {name!r} is revoked; a revoked tenant gets no new keys")
    return add_api_key(conn, row.id, now)


@dataclass(frozen=True)
class RevokedKey:
    """The key ``revoke_tenant_key`` revoked: its display prefix, its tenant, and how many active keys are left."""

    prefix: str
    tenant: str
    active_left: int


def revoke_tenant_key(conn: Connection, prefix: str, now: datetime) -> RevokedKey:
    """Revoke the active API key shown with display prefix ``prefix`` (or given whole, when longer).

    :raise NotFound: no active key matches. :raise InvalidInput: the prefix matches several active keys.
    """
    if len(prefix) > DISPLAY_PREFIX_LENGTH:
        found = ledger.active_key_by_hash(conn, hash_api_key(prefix))
        matches = [] if found is None else [found]
    else:
        matches = ledger.active_keys_by_prefix(conn, prefix)
    if not matches:
        raise NotFound(f"no active API key with prefix {prefix!r} (see 'evidence tenant list')")
    if len(matches) > 1:
        owners = ", ".join(sorted({m.tenant_name for m in matches}))
        raise InvalidInput(
            f"{len(matches)} active keys start with {prefix!r} (tenants: {owners}); give the whole key to say which one"
        )
    (match,) = matches
    ledger.revoke_api_key(conn, match.id, to_us(now))
    left = sum(1 for k in ledger.list_api_keys(conn, match.tenant_id) if k.revoked is None)
    return RevokedKey(match.prefix, match.tenant_name, left)
