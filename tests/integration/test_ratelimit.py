"""Per-key rate limits: the memory token bucket and the Redis GCRA script (real Redis at 127.0.0.1:6379), and the
429 problem with Retry-After through the real app."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from service.config import Settings
from service.core.errors import RateLimited
from service.core.formats import utc_now
from service.ratelimit import FileRateLimiter, MemoryRateLimiter, RedisRateLimiter, enforce, make_limiter
from service.runtime import Runtime
from service.tenants import create_tenant
from tests.conftest import skip_or_fail
from tests.factories import make_app, make_runtime, new_key

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis unreachable at {REDIS_URL}: {exc}")
    prefix = f"evidence-test:{secrets.token_hex(4)}:"
    client.prefix_for_test = prefix  # type: ignore[attr-defined]
    yield client
    for k in client.scan_iter(f"{prefix}*"):
        client.delete(k)
    client.close()


# --- memory backend ---------------------------------------------------------------------------------


def test_memory_bucket_allows_the_burst_then_the_rate() -> None:
    now = [100.0]
    limiter = MemoryRateLimiter(rate=10, burst=5, clock=lambda: now[0])
    assert [limiter.acquire("k") for _ in range(5)] == [0.0] * 5
    wait = limiter.acquire("k")
    assert wait == pytest.approx(0.1)
    assert limiter.acquire("other") == 0.0  # keys are independent
    now[0] += 0.1
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0
    now[0] += 10  # refills to the burst, not beyond
    assert [limiter.acquire("k") for _ in range(6)].count(0.0) == 5


def test_memory_bucket_is_thread_safe() -> None:
    limiter = MemoryRateLimiter(rate=0.001, burst=100)  # effectively no refill during the test
    allowed: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        n = sum(1 for _ in range(100) if limiter.acquire("shared") == 0.0)
        with lock:
            allowed.append(n)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 100


def test_enforce_raises_rate_limited_with_whole_seconds() -> None:
    limiter = MemoryRateLimiter(rate=0.5, burst=1)
    enforce(limiter, "evl_key")
    with pytest.raises(RateLimited) as info:
        enforce(limiter, "evl_key")
    assert info.value.retry_after == 2
    assert "0.5 per second" in info.value.reason
    enforce(None, "evl_key")  # no limiter: never limited


def test_make_limiter_picks_the_backend(tmp_path: Path) -> None:
    assert make_limiter(Settings(rate_limit=0)) is None
    assert isinstance(make_limiter(Settings(data_dir=tmp_path, rate_limit=5)), FileRateLimiter)
    assert isinstance(make_limiter(Settings(rate_limit=5, redis_url=REDIS_URL)), RedisRateLimiter)


# --- Redis backend ------------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_gcra_allows_the_burst_then_the_rate(redis_client: Any) -> None:
    limiter = RedisRateLimiter(redis_client, rate=10, burst=5, prefix=redis_client.prefix_for_test)
    results = [limiter.acquire("k") for _ in range(6)]
    assert results[:5] == [0.0] * 5
    assert 0 < results[5] <= 0.1
    assert limiter.acquire("other") == 0.0
    time.sleep(0.12)
    assert limiter.acquire("k") == 0.0
    # The key expires by itself once the bucket would be full again.
    ttl_ms = redis_client.pttl(redis_client.prefix_for_test + "k")
    assert 0 < ttl_ms <= 2000


@pytest.mark.redis
def test_redis_limit_is_shared_by_limiters_and_atomic_under_threads(redis_client: Any) -> None:
    prefix = redis_client.prefix_for_test
    limiters = [
        RedisRateLimiter(redis.Redis.from_url(REDIS_URL), rate=0.01, burst=50, prefix=prefix) for _ in range(4)
    ]  # four "processes"
    allowed: list[int] = []
    lock = threading.Lock()

    def hammer(limiter: RedisRateLimiter) -> None:
        n = sum(1 for _ in range(40) if limiter.acquire("shared") == 0.0)
        with lock:
            allowed.append(n)

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50


def test_redis_unreachable_lets_requests_through() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    limiter = RedisRateLimiter(client, rate=1, burst=1)
    assert limiter.acquire("k") == 0.0 and limiter.acquire("k") == 0.0


# --- through the app ------------------------------------------------------------------------------------


def _app_and_key(tmp_path: Path, url: str, **settings: Any) -> tuple[Any, str, Runtime]:
    runtime = make_runtime(tmp_path, url, **settings)
    return make_app(runtime), new_key(runtime), runtime


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_over_the_limit_is_429_with_retry_after_per_key(
    tmp_path: Path, sqlite_url: str, backend: str, redis_client: Any
) -> None:
    extra: dict[str, Any] = {"rate_limit": 1.0}
    if backend == "redis":
        extra["redis_url"] = REDIS_URL
    app, key, runtime = _app_and_key(tmp_path, sqlite_url, **extra)
    try:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        codes = [client.get("/v1/evidence?sha256=" + "0" * 64, headers=headers).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # burst of 2 s worth at 1/s
        r = client.post("/v1/evidence", json={"sha256": "1" * 64}, headers=headers)
        assert r.status_code == 429
        assert r.mimetype == "application/problem+json"
        assert r.headers["Retry-After"] == "1"
        assert "per second" in r.get_json()["detail"]
        with runtime.engine.begin() as conn:
            other = create_tenant(conn, "other", utc_now())
        ok = client.get("/v1/evidence?sha256=" + "0" * 64, headers={"Authorization": f"Bearer {other}"})
        assert ok.status_code == 200
        assert client.get("/v1/checkpoint").status_code == 200  # public calls without a key are not counted
    finally:
        runtime.engine.dispose()
        if backend == "redis":
            from service.ratelimit import REDIS_PREFIX, limit_key

            redis_client.delete(REDIS_PREFIX + limit_key(key))
