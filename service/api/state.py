"""What the views of one app share: the runtime, a read-only engine, trusted TSA roots, the sealer.

Owns: the ``ApiState`` kept in ``app.extensions`` and its accessor for views. No connection is kept on ``g``:
each view opens its own transaction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy.engine import Engine

from service import revocations
from service.ingest import GroupCommitter
from service.revocations import RevocationWatcher
from service.runtime import Runtime

if TYPE_CHECKING:
    from service.embedded import Sealer

EXTENSION_KEY = "evidence_ledger"

# Accepted API keys are remembered for a few seconds so a deposit costs one database transaction, not two. A
# revocation (``evidence tenant revoke`` / ``tenant key revoke``) is announced to every API process, which then
# forgets them (``service.revocations``: immediate on the embedded default, within 1 s through Redis); only on
# PostgreSQL without Redis does a revoked key work on for up to this long.
KEY_CACHE_SECONDS = revocations.KEY_CACHE_SECONDS
KEY_CACHE_MAX = 10_000


class KeyCache:
    """API key -> tenant id for keys found valid in the last ``KEY_CACHE_SECONDS`` (unknown keys are not kept)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[int, float]] = {}

    def get(self, token: str, now: float) -> int | None:
        with self._lock:
            hit = self._entries.get(token)
            if hit is None or hit[1] <= now:
                return None
            return hit[0]

    def put(self, token: str, tenant_id: int, now: float) -> None:
        with self._lock:
            if len(self._entries) >= KEY_CACHE_MAX:
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= KEY_CACHE_MAX:
                    self._entries.clear()
            self._entries[token] = (tenant_id, now + KEY_CACHE_SECONDS)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class ApiState:
    runtime: Runtime
    # Reads begin with a deferred BEGIN on SQLite, so they never wait for (or block) the write lock.
    reader: Engine
    tsa_roots: list[Any] = field(default_factory=list)
    sealer: Sealer | None = None
    accepted_keys: KeyCache = field(default_factory=KeyCache)
    # Single deposits are committed in groups by one writer thread per process (started on first use).
    committer: GroupCommitter | None = None
    # Announced revocations make ``accepted_keys`` forget (set by create_app).
    revocations: RevocationWatcher | None = None

    @property
    def engine(self) -> Engine:
        """The engine for write transactions (``BEGIN IMMEDIATE`` on SQLite)."""
        return self.runtime.engine


def runtime_state() -> ApiState:
    """The state of the app serving the current request."""
    state = current_app.extensions[EXTENSION_KEY]
    assert isinstance(state, ApiState)
    return state
