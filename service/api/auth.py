"""Bearer API keys -> tenant id (SPEC §7: ``Authorization: Bearer <api key>``), and the per-key rate limit.

Owns: reading the Authorization header and refusing requests without a valid key (``Unauthorized``, which
``service.api.errors`` turns into 401 with ``WWW-Authenticate: Bearer``), and ``init_rate_limit``: the app-wide
``before_request`` hook that counts every request carrying a Bearer key against that key's limit (429 with
``Retry-After``), before the key is even looked up. The key lookup is ``service.tenants.tenant_for_api_key``;
the limiter backends are ``service.ratelimit``.
"""

from __future__ import annotations

import time

from flask import Flask, current_app, request

from service.api.state import EXTENSION_KEY, ApiState, runtime_state
from service.core.errors import Unauthorized
from service.metrics import record_ratelimit_fail_open
from service.ratelimit import RateLimiter, enforce, make_limiter
from service.tenants import tenant_for_api_key

LIMITER_KEY = "evidence_ratelimit"


def forget_accepted_keys(app: Flask) -> None:
    """Make ``app`` check every key against the database again on its next request (see ``KeyCache``)."""
    state = app.extensions[EXTENSION_KEY]
    assert isinstance(state, ApiState)
    state.accepted_keys.clear()


def bearer_token() -> str:
    """The token of the request's ``Authorization: Bearer`` header.

    :raise Unauthorized: the header is missing (reason starts with "missing") or is not a Bearer credential.
    """
    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <api key>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "the Authorization header must be 'Bearer <API key>' (an API key from 'evidence tenant create')"
        )
    return token


def require_tenant() -> int:
    """The id of the tenant whose API key authenticates this request.

    :raise Unauthorized: no key, a malformed header, or a key that is unknown or revoked.
    """
    token = bearer_token()
    state = runtime_state()
    now = time.monotonic()
    remember = state.revocations is None or state.revocations.may_remember()
    tenant_id = state.accepted_keys.get(token, now) if remember else None
    if tenant_id is not None:
        return tenant_id
    with state.reader.begin() as conn:
        tenant_id = tenant_for_api_key(conn, token)
    if tenant_id is None:
        raise Unauthorized(
            "the API key is not valid (unknown or revoked). A key made with 'evidence tenant create' works only on "
            "a server using the database that command names: run it with --data-dir set to this server's data dir"
        )
    if remember:
        state.accepted_keys.put(token, tenant_id, now)
    return tenant_id


# --- rate limit -------------------------------------------------------------------------------------


def init_rate_limit(app: Flask) -> None:
    """Make the settings' limiter (none when ``rate_limit`` is 0) count every request of ``app`` that carries a
    Bearer key. ``create_app`` calls this after storing the ``ApiState``."""
    state = app.extensions[EXTENSION_KEY]
    assert isinstance(state, ApiState)
    limiter = make_limiter(state.runtime.settings, on_fail_open=record_ratelimit_fail_open)
    app.extensions[LIMITER_KEY] = limiter
    if limiter is not None:  # no limit (rate_limit 0): no hook, nothing to do per request
        app.before_request(_rate_limit)


def limiter_of(app: Flask) -> RateLimiter | None:
    limiter: RateLimiter | None = app.extensions.get(LIMITER_KEY)
    return limiter


def _rate_limit() -> None:
    """Every request with ``Authorization: Bearer <key>`` counts against that key (public calls without it don't)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        enforce(limiter_of(current_app), token.strip())
