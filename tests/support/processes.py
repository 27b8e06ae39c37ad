"""Real ``evidence witness serve`` processes on 127.0.0.1 for tests: start, kill -9, bring back on the same port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def evidence(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, env=child_env(), timeout=timeout
    )


class WitnessProcess:
    """``evidence witness serve`` in ``data_dir`` on a fixed free port; ``kill`` and ``start`` again keep both."""

    def __init__(self, data_dir: Path, log_vkeys: list[str], *, name: str) -> None:
        self.data_dir = data_dir
        self.log_vkeys = log_vkeys
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        run = evidence("witness", "key", "--data-dir", str(data_dir), "--name", name)
        assert run.returncode == 0, run.stderr
        self.vkey = run.stdout.strip().splitlines()[-1]

    def start(self) -> WitnessProcess:
        args = [sys.executable, "-m", "service", "witness", "serve", "--port", str(self.port)]
        args += ["--data-dir", str(self.data_dir), "--threads", "4"]
        for v in self.log_vkeys:
            args += ["--log", v]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"witness exited early:\n{self.log_path.read_text()}"
            try:
                if http("GET", f"{self.url}/healthz", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"witness not ready in 30 s:\n{self.log_path.read_text()}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the arbiter and its worker (their own process group): no clean shutdown, as a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the worker dies with the arbiter; wait until the port is free
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                return

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def add_checkpoint(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return http("POST", f"{self.url}/add-checkpoint", body=body)


class ServeProcess:
    """``evidence serve`` (the embedded default) in ``data_dir`` with extra environment variables."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, *, workers: int = 1) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**child_env(), **(env or {})}
        self.workers = workers
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        args = [sys.executable, "-m", "service", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        args += ["--workers", str(self.workers)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"serve exited early:\n{self.log_path.read_text()}"
            try:
                if http("GET", f"{self.url}/readyz", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"serve not ready in 60 s:\n{self.log_path.read_text()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def tenant(self, name: str = "acme") -> str:
        run = subprocess.run(
            [sys.executable, "-m", "service", "tenant", "create", name, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()[-1]
