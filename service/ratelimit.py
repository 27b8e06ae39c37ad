"""Per-API-key rate limits: a GCRA in one Redis Lua script (production) or a thread-safe token bucket in memory
(the embedded default).

Owns: the two limiter backends, ``make_limiter(settings)`` (which one a deployment uses) and ``enforce`` (raise
``RateLimited`` with the seconds to wait). Limits are keyed by the SHA-256 of the API key, never the key itself.
Both backends allow ``rate`` requests per second on average with bursts of up to ``burst`` requests.

If Redis is unreachable the request is let through and a warning is logged: a rate limit protects capacity, it
does not decide what is true, so an outage of it should not take the API down with it.

Must not import: Flask, SQLAlchemy, Celery. (``redis`` is imported only when a Redis limiter is made.)
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from service.config import Settings
from service.core.errors import RateLimited

if TYPE_CHECKING:
    import redis

__all__ = ["BURST_SECONDS", "MemoryRateLimiter", "RateLimiter", "RedisRateLimiter", "enforce", "make_limiter"]

log = logging.getLogger(__name__)

# A key may send this many seconds' worth of requests at once (bursts), then ``rate`` per second.
BURST_SECONDS = 2.0
# The memory backend forgets idle buckets (they are full again anyway) once it tracks this many keys.
MAX_MEMORY_KEYS = 10_000
REDIS_PREFIX = "evidence:ratelimit:"


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
    """GCRA in Redis: every web process (and host) shares the same limits. Times come from Redis's own clock."""

    def __init__(self, client: redis.Redis, rate: float, burst: int | None = None, prefix: str = REDIS_PREFIX):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else burst_for(rate)
        self.prefix = prefix
        self._client = client
        self._script = client.register_script(_GCRA)
        self._interval_us = max(1, round(1_000_000 / rate))

    def acquire(self, key: str) -> float:
        import redis

        try:
            wait_us = self._script(keys=[self.prefix + key], args=[self._interval_us, self._interval_us * self.burst])
        except redis.RedisError as exc:
            log.warning("rate limit not applied: Redis unavailable (%s)", exc.__class__.__name__)
            return 0.0
        return int(wait_us) / 1_000_000


def make_limiter(settings: Settings) -> RateLimiter | None:
    """The deployment's limiter: Redis when ``redis_url`` is set, memory otherwise; None if ``rate_limit`` is 0."""
    if settings.rate_limit <= 0:
        return None
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        return RedisRateLimiter(client, settings.rate_limit)
    return MemoryRateLimiter(settings.rate_limit)


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
