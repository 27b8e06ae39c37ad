"""Rate limits that hold across processes, and a deposit path that never waits on a stalled Redis.

- The embedded default's limits file is shared by separate OS processes (gunicorn workers): two processes
  together get one burst, not one each.
- A Redis that stops answering (SIGSTOP of a redis-server this test starts for itself on a free 127.0.0.1 port;
  the machine's shared Redis is never touched) does not slow deposits down: the limiter lets them through after
  a short timeout, counts them in ``evidence_ratelimit_fail_open_total``, and asks Redis again once it answers.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.api import create_app
from service.config import Settings
from service.core.formats import utc_now
from service.keys import load_or_create_signer
from service.metrics import RATELIMIT_FAIL_OPEN
from service.ratelimit import FileRateLimiter, MemoryRateLimiter, make_limiter
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant


def _take(path: str, n: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = FileRateLimiter(Path(path), rate=0.01, burst=20)  # no refill to speak of during the test
    results.put(sum(1 for _ in range(n) if limiter.acquire("shared-key") == 0.0))


def test_limits_file_is_shared_between_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # real separate interpreters, as gunicorn workers are
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    path = str(tmp_path / "ratelimit.sqlite")
    workers = [context.Process(target=_take, args=(path, 30, results)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    allowed = [results.get(timeout=5) for _ in workers]
    assert sum(allowed) == 20, allowed  # one burst between them (per-process buckets would allow 60)


def test_limits_file_refills_at_the_rate_and_forgets_nothing_across_instances(tmp_path: Path) -> None:
    now = [1_000_000.0]
    a = FileRateLimiter(tmp_path / "r.sqlite", rate=10, burst=5, clock=lambda: now[0])
    b = FileRateLimiter(tmp_path / "r.sqlite", rate=10, burst=5, clock=lambda: now[0])  # another process's view
    assert [a.acquire("k") for _ in range(3)] + [b.acquire("k") for _ in range(2)] == [0.0] * 5
    wait = b.acquire("k")
    assert 0.09 < wait <= 0.1 + 1e-9
    now[0] += 0.1
    assert a.acquire("k") == 0.0 and b.acquire("k") > 0
    assert a.acquire("other") == 0.0
    assert oct((tmp_path / "r.sqlite").stat().st_mode & 0o777) == "0o600"


def test_embedded_default_uses_the_shared_file(tmp_path: Path) -> None:
    limiter = make_limiter(Settings(data_dir=tmp_path / "data", rate_limit=5))
    assert isinstance(limiter, FileRateLimiter) and limiter.path == tmp_path / "data" / "ratelimit.sqlite"
    (tmp_path / "a-file").write_text("")
    fallback = make_limiter(Settings(data_dir=tmp_path / "a-file" / "data", rate_limit=5))  # cannot be made
    assert isinstance(fallback, MemoryRateLimiter)  # the app still starts; limits per process (warned)


# --- a stalled Redis ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test alone (never the shared one on 6379): SIGSTOP affects nobody else."""
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=0.5).ping()
                break
            except redis.RedisError:
                assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield url, process
    finally:
        if process.poll() is None:  # a test may have stopped it already
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            process.wait(10)


def fail_opens() -> float:
    return sum(
        sample.value
        for metric in RATELIMIT_FAIL_OPEN.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def test_deposits_do_not_wait_on_a_stalled_redis(
    tmp_path: Path, own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = own_redis
    settings = Settings(
        data_dir=tmp_path / "data",
        redis_url=url,
        broker_url=url.replace("/0", "/1"),  # production shape: the broker is the same stalled Redis
        rate_limit=1000,
        batch_max_size=5,  # full batches wait: the API must not block on telling the workers
    )
    db.upgrade(settings.database_url)
    load_or_create_signer(settings.signing_key_file, settings.origin)  # production: the operator provisions it
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    app = create_app(runtime=runtime, start_sealer=False)
    client = app.test_client()
    with runtime.engine.begin() as conn:
        headers = {"Authorization": f"Bearer {create_tenant(conn, 'acme', utc_now())}"}

    def deposit(n: int) -> float:
        started = time.monotonic()
        r = client.post("/v1/evidence", json={"sha256": hashlib.sha256(b"%d" % n).hexdigest()}, headers=headers)
        assert r.status_code == 202, r.get_data(as_text=True)
        return time.monotonic() - started

    try:
        for n in range(3):
            deposit(n)
        checker = redis.Redis.from_url(url, socket_timeout=1)
        assert list(checker.scan_iter("evidence:ratelimit:*"))  # the limiter did use Redis
        before = fail_opens()

        os.kill(process.pid, signal.SIGSTOP)
        stalled = [deposit(100 + n) for n in range(30)]
        # The old limiter waited 1 s per request (socket_timeout=1.0): 30 s. Now one short timeout, then none.
        assert sum(stalled) < 3.0, stalled
        assert max(stalled) < 0.8, stalled
        assert fail_opens() - before == 30  # every request let through was counted

        os.kill(process.pid, signal.SIGCONT)
        time.sleep(1.2)  # the back-off ends: Redis is asked again
        checker.flushdb()
        deposit(999)
        assert list(checker.scan_iter("evidence:ratelimit:*"))
        assert fail_opens() - before == 30
        metrics = client.get("/metrics").get_data(as_text=True)
        assert "evidence_ratelimit_fail_open_total" in metrics
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
        from service.api import stop_sealer

        stop_sealer(app)
        runtime.engine.dispose()
