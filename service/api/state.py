"""What the views of one app share: the runtime, a read-only engine, trusted TSA roots, the sealer.

Owns: the ``ApiState`` kept in ``app.extensions`` and its accessor for views. No connection is kept on ``g``:
each view opens its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app
from sqlalchemy.engine import Engine

from service.runtime import Runtime

if TYPE_CHECKING:
    from service.embedded import Sealer

EXTENSION_KEY = "evidence_ledger"


@dataclass
class ApiState:
    runtime: Runtime
    # Reads begin with a deferred BEGIN on SQLite, so they never wait for (or block) the write lock.
    reader: Engine
    tsa_roots: list[Any] = field(default_factory=list)
    sealer: Sealer | None = None

    @property
    def engine(self) -> Engine:
        """The engine for write transactions (``BEGIN IMMEDIATE`` on SQLite)."""
        return self.runtime.engine


def runtime_state() -> ApiState:
    """The state of the app serving the current request."""
    state = current_app.extensions[EXTENSION_KEY]
    assert isinstance(state, ApiState)
    return state
