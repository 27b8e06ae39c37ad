"""A burst of certificate requests against a real ``evidence serve`` leaves health checks fast (issue 11 item 3).

50 certificates are requested at once from gunicorn (2 workers x 4 threads, the default) while ``/healthz`` is
polled. Each worker draws at most ``EVIDENCE_CERTIFICATE_RENDERS`` (1) certificates at a time and answers the rest
``503`` + ``Retry-After`` (problem+json); the clients retry as told. Every certificate arrives, ``/healthz`` stays
within 200 ms at the median throughout, and a second burst is served entirely from the certificate cache.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.court.certificate import extract_receipt

pytestmark = pytest.mark.slow

BURST = 50
ENV_KEYS_TO_DROP = ("DATABASE_URL", "EVIDENCE_BROKER_URL", "EVIDENCE_DATA_DIR", "EVIDENCE_SIGNING_KEY_FILE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str, *, body: bytes | None = None, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of ``evidence serve`` on a free port with a fresh data dir."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS_TO_DROP}
    env.update(EVIDENCE_BATCH_MAX_AGE="0.3", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    data_dir, port, log_path = tmp_path / "data", _free_port(), tmp_path / "serve.log"
    command = [sys.executable, "-m", "service", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*command, "--workers", "2"], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited early:\n{log_path.read_text()}"
            try:
                if _http(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"serve not ready in 30 s:\n{log_path.read_text()}"
            time.sleep(0.1)
        created = subprocess.run(
            [sys.executable, "-m", "service", "tenant", "create", "burst", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        yield base, created.stdout.splitlines()[-1]
        noisy = [line for line in log_path.read_text().splitlines() if "fontTools" in line]
        assert noisy == [], noisy[:5]  # no per-glyph INFO lines from the font subsetter
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _fetch_certificate(base: str, key: str, evidence_id: str, refusals: list[float]) -> bytes:
    """GET the certificate, retrying each 503 after its Retry-After, as a client is told to."""
    deadline = time.monotonic() + 240
    while True:
        status, headers, body = _http(f"{base}/v1/evidence/{evidence_id}/certificate.pdf", key=key)
        if status == 200:
            return body
        assert status == 503, (status, body[:300])
        assert headers["Content-Type"] == "application/problem+json" and json.loads(body)["status"] == 503
        retry_after = float(headers["Retry-After"])
        refusals.append(retry_after)
        assert time.monotonic() < deadline, "certificate not served within 240 s"
        time.sleep(retry_after)


def _burst(base: str, key: str, ids: list[str]) -> tuple[list[bytes], list[float], list[float], float]:
    """Fetch every certificate at once while polling /healthz: (PDFs, health latencies, refusals, seconds)."""
    latencies: list[float] = []
    refusals: list[float] = []
    done = threading.Event()

    def poll_health() -> None:
        while not done.is_set() or len(latencies) < 20:
            started = time.perf_counter()
            status, _h, _b = _http(f"{base}/healthz")
            latencies.append(time.perf_counter() - started)
            assert status == 200
            done.wait(0.05)

    poller = threading.Thread(target=poll_health)
    started = time.perf_counter()
    poller.start()
    try:
        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            pdfs = list(pool.map(lambda eid: _fetch_certificate(base, key, eid, refusals), ids))
    finally:
        done.set()
        poller.join()
    return pdfs, latencies, refusals, time.perf_counter() - started


def test_health_checks_stay_fast_during_a_burst_of_certificates(served: tuple[str, str]) -> None:
    base, key = served
    ids = []
    for n in range(BURST):
        body = json.dumps({"sha256": f"{n:064x}", "label": f"合同 {n}"}).encode()
        status, _h, answer = _http(f"{base}/v1/evidence", body=body, key=key)
        assert status == 202, answer
        ids.append(json.loads(answer)["id"])
    deadline = time.monotonic() + 30
    while _http(f"{base}/v1/evidence/{ids[-1]}/receipt", key=key)[0] != 200:
        assert time.monotonic() < deadline, "not sealed within 30 s"
        time.sleep(0.1)

    pdfs, latencies, refusals, seconds = _burst(base, key, ids)
    for evidence_id, pdf in zip(ids, pdfs, strict=True):
        assert json.loads(extract_receipt(pdf))["evidence"]["id"] == evidence_id
    p50 = statistics.median(latencies)
    print(
        f"first burst: {BURST} certificates in {seconds:.1f} s, {len(refusals)} answers 503, /healthz "
        f"p50 {p50 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over {len(latencies)} checks"
    )
    assert len(latencies) >= 5
    assert p50 < 0.2, f"/healthz p50 {p50 * 1000:.0f} ms during the burst"
    assert all(r >= 1 for r in refusals)

    again, latencies, refusals, seconds = _burst(base, key, ids)
    print(f"second burst (cached): {BURST} certificates in {seconds:.2f} s, {len(refusals)} answers 503")
    assert refusals == [] and again == pdfs  # every one from the cache: same bytes, no drawing slot needed
    assert statistics.median(latencies) < 0.2
