"""``evidence serve`` for real: gunicorn over a socket, ``tenant create``, upload, seal, ``evidence verify``.

Every command runs as a subprocess of the installed ``evidence`` entry point (``python -m service``), with a
fresh data dir and a free port, the way an operator and a user would run them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ENV_KEYS_TO_DROP = ("DATABASE_URL", "EVIDENCE_BROKER_URL", "EVIDENCE_DATA_DIR", "EVIDENCE_SIGNING_KEY_FILE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def evidence(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def http(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_KEYS_TO_DROP}
    environ["EVIDENCE_BATCH_MAX_AGE"] = "0.3"
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return environ


@pytest.fixture
def server(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    data_dir = tmp_path / "data"
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--workers",
                "2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited early:\n{log_path.read_text()}"
            try:
                if http("GET", f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"serve not ready in 30 s:\n{log_path.read_text()}"
            time.sleep(0.1)
        yield base, data_dir, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_serve_tenant_upload_seal_and_verify_offline(
    tmp_path: Path, env: dict[str, str], server: tuple[str, Path, subprocess.Popen[bytes]]
) -> None:
    base, data_dir, process = server
    assert (data_dir / "evidence.db").exists() and (data_dir / "signing.key").exists()
    assert (data_dir / "signing.key").stat().st_mode & 0o077 == 0

    created = evidence("tenant", "create", "court-7", "--data-dir", str(data_dir), env=env)
    assert created.returncode == 0, created.stderr
    api_key = created.stdout.splitlines()[-1]
    assert api_key.startswith("evl_") and len(api_key) == 4 + 43
    again = evidence("tenant", "create", "court-7", "--data-dir", str(data_dir), env=env)
    assert again.returncode == 2 and "already exists" in again.stderr

    evidence_file = tmp_path / "exhibit-a.pdf"
    evidence_file.write_bytes(b"%PDF-1.7 exhibit A " + os.urandom(200_000))
    status, headers, body = http(
        "POST",
        f"{base}/v1/evidence?label=exhibit%20A",
        body=evidence_file.read_bytes(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/octet-stream"},
    )
    assert status == 202, body
    deposit = json.loads(body)
    assert headers["Location"] == f"/v1/evidence/{deposit['id']}"

    status, _h, body = http(
        "POST", f"{base}/v1/evidence", body=b"x", headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 401 and json.loads(body)["status"] == 401

    # The in-process sealer (one, in whichever worker holds the lock) seals within max age.
    receipt_url = f"{base}/v1/evidence/{deposit['id']}/receipt"
    deadline = time.monotonic() + 15
    while True:
        status, _h, body = http("GET", receipt_url, headers={"Authorization": f"Bearer {api_key}"})
        if status == 200:
            break
        assert status == 202, body
        assert time.monotonic() < deadline, "not sealed within 15 s"
        time.sleep(0.1)
    receipt_path = tmp_path / "exhibit-a.receipt.json"
    receipt_path.write_bytes(body)

    keys: list[dict[str, Any]] = json.loads(http("GET", f"{base}/v1/keys")[2])["keys"]
    assert len(keys) == 1
    verified = evidence("verify", str(receipt_path), str(evidence_file), "--key", keys[0]["vkey"], env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VALID" in verified.stdout

    # A different file does not verify against this receipt.
    other = tmp_path / "other.pdf"
    other.write_bytes(b"something else")
    refused = evidence("verify", str(receipt_path), str(other), "--key", keys[0]["vkey"], env=env)
    assert refused.returncode == 1 and "INVALID at step 1" in refused.stdout

    # Clean shutdown on SIGTERM.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_one_sealer_among_workers(server: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    base, data_dir, _process = server
    # The sealer lock file is held by exactly one process: a non-blocking lock attempt from here fails.
    import fcntl

    with open(data_dir / "sealer.lock", "ab") as f:
        with pytest.raises(BlockingIOError):
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert http("GET", f"{base}/healthz")[0] == 200


def test_readme_curl_upload_with_a_mistyped_path_fails_loudly(
    tmp_path: Path, env: dict[str, str], server: tuple[str, Path, subprocess.Popen[bytes]]
) -> None:
    """The README's upload command, run as written against a real server with the file path mistyped: curl sends
    0 bytes, the service refuses them with 400 and curl exits non-zero showing why (no deposit of SHA-256(b''))."""
    base, data_dir, _process = server
    key = evidence("tenant", "create", "readme", "--data-dir", str(data_dir), env=env).stdout.splitlines()[-1]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index('curl -sS --fail-with-body -H "Authorization: Bearer $KEY" --data-binary @contract.pdf')
    first, second = readme[start:].splitlines()[:2]
    command = (first.rstrip("\\") + " " + second.strip()).replace("http://127.0.0.1:8000", base)
    command = command.replace("@contract.pdf", "@contrat.pdf")  # the typo: no such file in tmp_path
    run = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, env={**env, "KEY": key}, timeout=30
    )
    assert run.returncode == 22, run
    problem = json.loads(run.stdout)
    assert problem["status"] == 400
    assert problem["detail"] == "the upload was empty (0 bytes): check the file path"
    (tmp_path / "contract.pdf").write_bytes(b"%PDF-1.7 the real contract")
    ok = subprocess.run(
        ["bash", "-c", command.replace("@contrat.pdf", "@contract.pdf")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "KEY": key},
        timeout=30,
    )
    assert ok.returncode == 0, ok
    assert json.loads(ok.stdout)["status"] == "pending"


def test_serve_log_has_one_time_format_request_ids_4xx_reasons_and_no_glyph_noise(
    tmp_path: Path, env: dict[str, str], server: tuple[str, Path, subprocess.Popen[bytes]]
) -> None:
    import re

    base, data_dir, _process = server
    key = evidence("tenant", "create", "logs", "--data-dir", str(data_dir), env=env).stdout.splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    status, _h, _b = http(
        "POST",
        f"{base}/v1/evidence",
        body=b"",
        headers={**headers, "Content-Type": "application/octet-stream", "X-Request-ID": "court-7-rid-1"},
    )
    assert status == 400
    status, _h, body = http("POST", f"{base}/v1/evidence", body=b"%PDF-1.7 x", headers=headers)
    assert status == 202
    evidence_id = json.loads(body)["id"]
    deadline = time.monotonic() + 15
    while (got := http("GET", f"{base}/v1/evidence/{evidence_id}/certificate.pdf", headers=headers))[0] != 200:
        assert got[0] == 202 and time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(0.3)  # let the access line of the last request reach the log
    log = (tmp_path / "serve.log").read_text()
    lines = [line for line in log.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)]
    # every log line (ours and gunicorn's) starts with one RFC 3339 UTC time; the banner lines are not log lines
    assert any("gunicorn" in line for line in lines) and any("evidence.access" in line for line in lines)
    stamped = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
    assert all(stamped.match(line) for line in lines), [line for line in lines if not stamped.match(line)]
    assert not re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\]", log, re.M)  # no gunicorn-style time
    # the 4xx access line names the request id and the reason
    refused = [line for line in lines if "evidence.access" in line and " 400 " in line]
    assert refused and "[court-7-rid-1]" in refused[0]
    assert "reason='the upload was empty (0 bytes): check the file path'" in refused[0]
    # fontTools subsetting the certificate's fonts logs nothing at INFO
    assert "fontTools" not in log
