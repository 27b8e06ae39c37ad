"""Revoked API keys and tenants stop working in every API process: announcing a revocation, and watching for one.

API processes remember accepted keys for a few seconds (``service.api.state.KEY_CACHE_SECONDS``) so a deposit
costs one transaction, not two. A revocation (``evidence tenant revoke``, ``evidence tenant key revoke``) is
announced after it committed, and every API process forgets what it remembered:

- **Embedded default (SQLite)**: the command rewrites ``<database>-revocations`` beside the database file; every API
  process looks at that file's identity (one ``stat``) before it trusts a remembered key, so the very next request
  after the command finished is checked against the database: immediate.
- **Production with ``EVIDENCE_REDIS_URL``**: the command publishes on the Redis channel ``CHANNEL``; every API
  process keeps a subscription and forgets its remembered keys when a message arrives (milliseconds; the tests
  require under 1 s). A process whose subscription is not live (Redis down, reconnecting) remembers no key at all,
  so it checks every request against the database: a missed message cannot keep a key alive.
- **PostgreSQL without Redis**: nothing to announce through; a revoked key works until the process's memory of it
  expires, at most ``KEY_CACHE_SECONDS`` (5 s).

Must not import: Flask, Celery. (``redis`` is imported only when a Redis URL is configured.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from service.config import Settings

__all__ = ["CHANNEL", "KEY_CACHE_SECONDS", "Announcement", "RevocationWatcher", "announce", "signal_file"]

log = logging.getLogger(__name__)

CHANNEL = "evidence:revocations"
# API processes remember an accepted key this long (service.api.state.KeyCache); the bound without Redis.
KEY_CACHE_SECONDS = 5.0
REDIS_TIMEOUT = 1.0  # seconds the command waits for Redis when it announces


def signal_file(settings: Settings) -> Path | None:
    """The file a revocation rewrites for the embedded database (None for a server database or in-memory)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database.startswith(("file:", ":memory:")):
        return None
    database = Path(url.database).expanduser().absolute()
    return database.with_name(database.name + "-revocations")


@dataclass(frozen=True)
class Announcement:
    """What ``announce`` did, for the command to say exactly what happens next."""

    file: Path | None  # the embedded signal file rewritten
    listeners: int | None  # API processes the Redis message reached (None: not published)
    redis_error: str | None  # why publishing failed

    def effect(self, cache_seconds: float) -> str:
        """One sentence: when API processes refuse the revoked key(s)."""
        if self.file is not None:
            return "API processes using this data directory refuse them from their next request."
        if self.listeners is not None:
            return (
                f"The revocation was announced through Redis to {self.listeners} API process(es), which refuse them "
                "within 1 s; an API process not connected to Redis remembers no keys, so it refuses them at once."
            )
        if self.redis_error is not None:
            return (
                f"Redis could not be told ({self.redis_error}): API processes refuse them within {cache_seconds:g} s "
                "(the time they remember an accepted key)."
            )
        return (
            f"API processes refuse them within {cache_seconds:g} s (the time they remember an accepted key); set "
            "EVIDENCE_REDIS_URL to announce revocations to them at once."
        )


def announce(settings: Settings) -> Announcement:
    """Tell every API process that keys were revoked. Call it after the revocation committed."""
    path = signal_file(settings)
    if path is not None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{time.time_ns()}\n", encoding="ascii")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)  # a new inode: every watcher sees the change, even within one mtime tick
        return Announcement(path, None, None)
    if settings.redis_url:
        import redis

        try:
            client = redis.Redis.from_url(
                settings.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            try:
                listeners = int(client.publish(CHANNEL, str(time.time_ns())))
            finally:
                client.close()
        except redis.RedisError as exc:
            return Announcement(None, None, exc.__class__.__name__)
        return Announcement(None, listeners, None)
    return Announcement(None, None, None)


class RevocationWatcher:
    """One API process's view of revocations: ``may_remember()`` before trusting a remembered key (it calls
    ``forget`` when a revocation was announced since the last look). ``close()`` stops the Redis subscriber."""

    def __init__(self, settings: Settings, forget: Callable[[], None], *, retry: float = 0.5) -> None:
        self._forget = forget
        self._file = signal_file(settings)
        self._seen = self._identity()
        self._redis_url = settings.redis_url if self._file is None else None
        self._live = threading.Event()
        self._stop = threading.Event()
        self._retry = retry
        self._thread: threading.Thread | None = None
        if self._redis_url:
            self._thread = threading.Thread(target=self._subscribe, name="evidence-revocations", daemon=True)
            self._thread.start()

    def _identity(self) -> tuple[int, int, int] | None:
        if self._file is None:
            return None
        try:
            st = os.stat(self._file)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def may_remember(self) -> bool:
        """True if remembered keys may be used now (after forgetting them if a revocation was announced)."""
        if self._file is not None:
            identity = self._identity()
            if identity != self._seen:
                self._seen = identity
                self._forget()
            return True
        if self._redis_url:
            return self._live.is_set()
        return True  # PostgreSQL without Redis: the cache's expiry is the bound

    @property
    def live(self) -> bool:
        """Whether the Redis subscription is up (always False without Redis)."""
        return self._live.is_set()

    def _subscribe(self) -> None:
        import redis

        assert self._redis_url is not None
        while not self._stop.is_set():
            client = redis.Redis.from_url(
                self._redis_url, socket_connect_timeout=REDIS_TIMEOUT, health_check_interval=5
            )
            pubsub = client.pubsub(ignore_subscribe_messages=False)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        pubsub.ping()  # notices a dead connection within the loop, not only on the next message
                        continue
                    if message["type"] == "subscribe":
                        self._forget()  # messages may have been missed while not subscribed
                        self._live.set()
                    elif message["type"] == "message":
                        self._forget()
            except (redis.RedisError, OSError) as exc:
                if self._live.is_set():
                    log.warning("revocation channel lost (%s): checking every API key against the database", exc)
                self._live.clear()
            finally:
                self._live.clear()
                try:
                    pubsub.close()
                    client.close()
                except (redis.RedisError, OSError):
                    pass
            self._stop.wait(self._retry)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
