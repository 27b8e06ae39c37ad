"""Tenants and their API keys: creating a tenant (with its first key) and finding the tenant of a key.

Owns: the API key format (``evl_`` + 256 random bits, URL-safe base64) and how a key is stored (its SHA-256
only; the key itself is shown once, at creation). Shared by ``evidence tenant create`` and the tests.
Must not import: Flask or Celery. Functions take a Connection and never commit.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy.engine import Connection

from service.core.errors import InvalidInput
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
