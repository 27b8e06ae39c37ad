"""Per-API-key rate limits: a GCRA in one Redis Lua script (production, shared by every API process and host), a
GCRA in a small SQLite file (the embedded default: shared by every worker process of the machine), or a
thread-safe token bucket in one process's memory (tests, tools).

Owns: the limiter backends, ``make_limiter(settings)`` (which one a deployment uses) and ``enforce`` (raise
``RateLimited`` with the seconds to wait). Limits are keyed by the SHA-256 of the API key, never the key itself.
Every backend allows ``rate`` requests per second on average with bursts of up to ``burst`` requests.

Failing open: a rate limit protects capacity, it does not decide what is true, so its store must never slow down or
stop a deposit. The Redis limiter waits at most ``REDIS_TIMEOUT`` seconds for Redis; on a timeout or an error it
lets the request through, counts it (``on_fail_open``, the ``evidence_ratelimit_fail_open_total`` metric) and
does not ask Redis again for ``REDIS_BACKOFF`` seconds (every request in that window is let through at once,
also counted). The file limiter does the same if its file is locked for longer than ``FILE_TIMEOUT``.

Must not import: Flask, SQLAlchemy, Celery. (``redis`` is imported only when a Redis limiter is made.)
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from service.config import Settings
from service.core.errors import RateLimited

if TYPE_CHECKING:
    import redis

__all__ = [
    "BURST_SECONDS",
    "FileRateLimiter",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "enforce",
    "make_limiter",
    "shared_file_limiter",
]

log = logging.getLogger(__name__)

# A key may send this many seconds' worth of requests at once (bursts), then ``rate`` per second.
BURST_SECONDS = 2.0
# The memory backend forgets idle buckets (they are full again anyway) once it tracks this many keys.
MAX_MEMORY_KEYS = 10_000
REDIS_PREFIX = "evidence:ratelimit:"
REDIS_TIMEOUT = 0.1  # seconds a request waits for Redis before it is let through
REDIS_BACKOFF = 1.0  # seconds Redis is not asked after it failed or timed out
FILE_TIMEOUT = 0.1  # seconds a request waits for the limits file's lock before it is let through
FILE_NAME = "ratelimit.sqlite"


class RateLimiter(Protocol):
    rate: float
    burst: int

    def acquire(self, key: str) -> float:
        """Take one request for ``key``: 0.0 when allowed, else the seconds until one would be (nothing taken)."""
        ...


def limit_key(api_key: str) -> str:
    """The identity a key is limited under: SHA-256 of the key, hex (the key itself is never stored)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def burst_for(rate: float) -> int:
    return max(1, math.ceil(rate * BURST_SECONDS))


class MemoryRateLimiter:
    """Token bucket per key, in this process's memory, guarded by one lock."""

    def __init__(self, rate: float, burst: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else burst_for(rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def acquire(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0 - 1e-9:  # float error must not refuse a request that is on time
                self._buckets[key] = (max(0.0, tokens - 1.0), now)
                if len(self._buckets) > MAX_MEMORY_KEYS:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely is the same as no bucket at all.
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


# GCRA (generic cell rate algorithm): one value per key, the "theoretical arrival time" in microseconds of
# the Redis server's clock. A request is allowed if it arrives no earlier than TAT - burst tolerance; then TAT
# moves on by one emission interval. Returns 0 (allowed) or the microseconds to wait. Atomic: one script.
_GCRA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local allow_at = tat + interval - tolerance
if allow_at > now then
  return allow_at - now
end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
return 0
"""


class RedisRateLimiter:
    """GCRA in Redis: every web process (and host) shares the same limits. Times come from Redis's own clock.

    Never waits on Redis for more than the client's socket timeout (``make_limiter`` uses ``REDIS_TIMEOUT``), and
    after a failure not at all for ``backoff`` seconds (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        burst: int | None = None,
        prefix: str = REDIS_PREFIX,
        *,
        backoff: float = REDIS_BACKOFF,
        on_fail_open: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else burst_for(rate)
        self.prefix = prefix
        self.backoff = backoff
        self.on_fail_open = on_fail_open
        self._clock = clock
        self._client = client
        self._script = client.register_script(_GCRA)
        self._interval_us = max(1, round(1_000_000 / rate))
        self._skip_until = 0.0

    def _fail_open(self, reason: str) -> float:
        if self.on_fail_open is not None:
            self.on_fail_open(reason)
        return 0.0

    def acquire(self, key: str) -> float:
        import redis

        if self._clock() < self._skip_until:
            return self._fail_open("backoff")
        try:
            wait_us = self._script(keys=[self.prefix + key], args=[self._interval_us, self._interval_us * self.burst])
        except redis.RedisError as exc:
            self._skip_until = self._clock() + self.backoff
            reason = "timeout" if isinstance(exc, redis.TimeoutError) else "error"
            log.warning(
                "rate limit not applied: Redis %s (%s); not asking it for %.1f s",
                reason,
                exc.__class__.__name__,
                self.backoff,
            )
            return self._fail_open(reason)
        return int(wait_us) / 1_000_000


class FileRateLimiter:
    """GCRA in a SQLite file (``<data dir>/ratelimit.sqlite``): every process of the machine that opens the same
    file shares the limits (the embedded default's gunicorn workers). Not durable on purpose (``synchronous=OFF``):
    after a crash the buckets start full, which is what an idle key has anyway. One connection per thread."""

    def __init__(
        self,
        path: Path,
        rate: float,
        burst: int | None = None,
        *,
        timeout: float = FILE_TIMEOUT,
        on_fail_open: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        self.path = path
        self.rate = rate
        self.burst = burst if burst is not None else burst_for(rate)
        self.timeout = timeout
        self.on_fail_open = on_fail_open
        self._clock = clock  # wall time: comparable between processes and across restarts
        self._interval = 1.0 / rate
        self._local = threading.local()
        self._count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connect()  # create the file and table now, not under the first request

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        # A forked worker must not reuse its parent's connection: open its own.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID")
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def acquire(self, key: str) -> float:
        tolerance = self._interval * self.burst
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = self._clock()
                row = conn.execute("SELECT tat FROM buckets WHERE key = ?", (key,)).fetchone()
                tat = now if row is None or row[0] < now or row[0] > now + tolerance else float(row[0])
                allow_at = tat + self._interval - tolerance
                if allow_at > now:
                    conn.execute("ROLLBACK")
                    return allow_at - now
                conn.execute("INSERT OR REPLACE INTO buckets (key, tat) VALUES (?, ?)", (key, tat + self._interval))
                self._count += 1
                if self._count % 1000 == 0:  # a bucket whose TAT has passed is full again: same as no row
                    conn.execute("DELETE FROM buckets WHERE tat < ?", (now,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.warning("rate limit not applied: the limits file %s failed (%s)", self.path, exc)
            if self.on_fail_open is not None:
                self.on_fail_open("error")
            return 0.0
        return 0.0


def make_limiter(settings: Settings, on_fail_open: Callable[[str], None] | None = None) -> RateLimiter | None:
    """The deployment's limiter: Redis when ``redis_url`` is set (shared by every process and host), else the
    limits file in the data directory (shared by the processes of this machine); None if ``rate_limit`` is 0.
    ``on_fail_open(reason)`` is called for every request let through because the store failed."""
    if settings.rate_limit <= 0:
        return None
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        return RedisRateLimiter(client, settings.rate_limit, on_fail_open=on_fail_open)
    return shared_file_limiter(settings, settings.rate_limit, None, on_fail_open)


def shared_file_limiter(
    settings: Settings, rate: float, burst: int | None, on_fail_open: Callable[[str], None] | None = None
) -> RateLimiter:
    """The limits file in the data directory; if it cannot be made there (a read-only working directory in a
    container without Redis), this process's memory, with a warning: limits then hold per process."""
    path = settings.data_dir / FILE_NAME
    try:
        return FileRateLimiter(path, rate, burst, on_fail_open=on_fail_open)
    except (OSError, sqlite3.Error) as exc:
        log.warning("rate limits kept per process: cannot use the limits file %s (%s)", path, exc)
        return MemoryRateLimiter(rate, burst)


def enforce(limiter: RateLimiter | None, api_key: str) -> None:
    """Count one request of ``api_key``.

    :raise RateLimited: over the limit; ``retry_after`` is whole seconds (at least 1, for the Retry-After header).
    """
    if limiter is None:
        return
    wait = limiter.acquire(limit_key(api_key))
    if wait > 0:
        raise RateLimited(
            f"too many requests for this API key: the limit is {limiter.rate:g} per second "
            f"(bursts of {limiter.burst}); retry in {wait:.2f} s",
            retry_after=max(1, math.ceil(wait)),
        )
