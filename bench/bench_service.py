"""Service benchmark of the embedded default (issue 3): ``evidence serve`` (gunicorn, SQLite, in-process sealing).

Every figure is printed with a baseline measured in the same run, and their ratio:

(a) single hash-only submissions/s (``POST /v1/evidence`` with JSON ``{"sha256"}``, a distinct digest per
    request, wrk + ``bench/wrk/post_digest.lua``) against a Flask JSON POST handler doing ONE INSERT + COMMIT per
    request into SQLite with the product's durability (WAL and the ``synchronous`` level the product's engine
    sets, read from it and printed) (this module's ``baseline_app``), served by gunicorn with the worker class and
    counts of ``evidence serve``
    (gthread, 2 workers x 4 threads) and the same access logging; rounds interleaved. Target ratio ≥ 0.6.
(b) upload hashing MB/s: ``curl -T`` of a generated file (application/octet-stream, default 1 GiB) to the same
    server, against hashlib computing the same digests of the same file in this process (page cache warm for
    both), rounds interleaved: with ``--upload-sm3 on`` (the product's default ``EVIDENCE_UPLOAD_SM3``) SHA-256
    and SM3 in one pass, with ``--upload-sm3 off`` ``hashlib.file_digest`` SHA-256 alone; the gunicorn
    workers' RSS is sampled during the upload (growth = flat memory or not).
    Target ratio ≥ 0.85.
(c) receipt fetch latency for a 100,000-leaf batch: before the server starts, 100,000 digests are recorded with
    ``sealing.record_evidence`` in the data dir's SQLite database and sealed into ONE batch with
    ``sealing.seal_pending(force=True, max_leaves=100_000)``; then ``GET /v1/evidence/{id}/receipt`` for random
    ids over one keep-alive connection, one request at a time: median and p99. Target median ≤ 20 ms.

    .venv/bin/python bench/bench_service.py                       # about 2.5 minutes here
    .venv/bin/python bench/bench_service.py --quick               # shorter rounds, 256 MiB upload

The load generator (wrk, ``apt-get install wrk``; curl) runs on the same machine and shares its CPUs with the
server: on a 2-core box every absolute figure is lower than on a dedicated server, for the baseline alike.
``EVIDENCE_RATE_LIMIT=0`` is set for the server (the default 100 requests/s per key would measure the limiter).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
POST_DIGEST_LUA = BENCH / "wrk" / "post_digest.lua"
# Variables of the calling shell that would point the server somewhere else.
ENV_KEYS_TO_DROP = (
    "DATABASE_URL",
    "EVIDENCE_BROKER_URL",
    "EVIDENCE_DATA_DIR",
    "EVIDENCE_SIGNING_KEY_FILE",
    "EVIDENCE_REDIS_URL",
    "EVIDENCE_CELERY_QUEUE",
    "PROMETHEUS_MULTIPROC_DIR",
)
MiB = 1024 * 1024


# --- the baseline app (loaded by gunicorn: "bench_service:baseline_app()") ----------------------------


BASELINE_DB_ENV = "BENCH_BASELINE_DB"
BASELINE_SYNC_ENV = "BENCH_BASELINE_SYNCHRONOUS"


def baseline_app() -> Any:
    """The fair baseline: a Flask JSON POST handler doing ONE INSERT + COMMIT per request into SQLite (WAL, the
    ``synchronous`` level of ``$BENCH_BASELINE_SYNCHRONOUS``, the product's own: FULL fsyncs the WAL at every
    commit), then answering 202 with a small JSON document. One connection per gunicorn thread."""
    import sqlite3

    from flask import Flask, jsonify, request

    path = os.environ[BASELINE_DB_ENV]
    synchronous = os.environ.get(BASELINE_SYNC_ENV, "FULL")
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
            local.conn = conn
        return conn

    with sqlite3.connect(path) as init:
        init.execute("PRAGMA journal_mode=WAL")
        init.execute(
            "CREATE TABLE IF NOT EXISTS evidence (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
            "sha256 BLOB NOT NULL, received_us INTEGER NOT NULL)"
        )

    app = Flask("baseline")

    @app.post("/v1/evidence")
    def deposit() -> Any:
        body = request.get_json(force=True)
        evidence_id = secrets.token_urlsafe(16)
        conn = connection()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO evidence (id, sha256, received_us) VALUES (?, ?, ?)",
            (evidence_id, bytes.fromhex(body["sha256"]), time.time_ns() // 1000),
        )
        conn.execute("COMMIT")
        response = jsonify({"id": evidence_id, "sha256": body.get("sha256"), "status": "pending"})
        response.status_code = 202
        return response

    return app


def product_synchronous(data_dir: Path) -> str:
    """The ``synchronous`` level the service sets on its SQLite connections (read from its own engine)."""
    from service.config import Settings
    from service.storage import db

    engine = db.make_engine(Settings(data_dir=data_dir).database_url)
    try:
        with engine.connect() as conn:
            level = int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
            journal = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar_one())
    finally:
        engine.dispose()
    return f"journal_mode={journal.upper()}, synchronous=" + {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[level]


# --- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS_TO_DROP}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def http_get_status(url: str) -> int:
    parts = url.split("/", 3)
    host, port = parts[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/" + (parts[3] if len(parts) > 3 else ""))
        return conn.getresponse().status
    finally:
        conn.close()


@contextmanager
def process(
    args: list[str],
    *,
    env: dict[str, str],
    log: Path,
    ready_url: str | None = None,
    cwd: Path = ROOT,
    timeout: float = 60,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` in its own session (logging to ``log``), wait for ``ready_url`` to answer 200, stop it after."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if ready_url is not None:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"{args[0]} exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
                try:
                    if http_get_status(ready_url) in (200, 404, 405):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{args[0]} not ready in {timeout} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process group we started, SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def evidence_cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    if done.returncode != 0:
        raise SystemExit(f"evidence {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --- wrk -------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers + socket errors
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per group during the run (run_wrk)

    def cpu_ms(self, group: str) -> float:
        """CPU milliseconds of ``group`` per request."""
        return self.cpu.get(group, 0.0) * 1000 / max(1, self.requests)

    @staticmethod
    def parse(out: str) -> WrkResult:
        def ms(label: str) -> float:
            m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
            if m is None:
                return float("nan")
            return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        count = re.search(r"(\d+) requests in", out)
        if rps is None or count is None:
            raise SystemExit(f"cannot read wrk's output:\n{out}")
        errors = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
        sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if sock:
            errors += sum(int(g) for g in sock.groups())
        return WrkResult(float(rps.group(1)), int(count.group(1)), ms("50"), ms("99"), errors)


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    api_key: str = "",
    script: Path = POST_DIGEST_LUA,
    cpu: dict[str, Any] | None = None,
) -> WrkResult:
    """One bounded wrk run (``-d``); wrk stops by itself, and a hard timeout guards against a hang.

    ``cpu``: groups for ``cpu_seconds`` measured around the run; the result's ``cpu`` has them plus ``wrk``.
    """
    env = {**os.environ, "BENCH_API_KEY": api_key, "BENCH_NONCE": secrets.token_hex(4)}
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    before = cpu_snapshot(cpu or {})
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=seconds + 60)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = cpu_delta(before, cpu_snapshot(cpu or {}))
    used["wrk"] = (after_children.ru_utime + after_children.ru_stime) - (children.ru_utime + children.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr}")
    result = WrkResult.parse(done.stdout)
    result.cpu = used
    return result


# --- CPU accounting ----------------------------------------------------------------------------------


def _tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_snapshot(groups: dict[str, Any]) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) per process, per group. A group is a list of root pids (each with its
    descendants) or a process name (every process of that name on the machine, e.g. "postgres");
    ``"machine"`` is added: busy CPU seconds of the whole machine (all CPUs), others' load included."""
    import psutil

    out: dict[str, dict[int, float]] = {}
    for name, spec in groups.items():
        procs = (
            [p for p in psutil.process_iter(["name"]) if p.info["name"] == spec]
            if isinstance(spec, str)
            else [p for pid in spec for p in _tree(pid)]
        )
        times: dict[int, float] = {}
        for p in procs:
            try:
                t = p.cpu_times()
                times[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        out[name] = times
    total = psutil.cpu_times()
    out["machine"] = {
        0: total.user + total.system + total.nice + getattr(total, "irq", 0.0) + getattr(total, "softirq", 0.0)
    }
    return out


def cpu_delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """Seconds used per group between two snapshots (processes born in between count from zero)."""
    return {
        name: sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in times.items()) for name, times in after.items()
    }


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (Debian: apt-get install -y {' '.join(missing)})")


# --- memory sampling ---------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Samples the RSS of a process tree's children every ``interval`` s; ``growth`` = max over children of
    (peak RSS - RSS when sampling started)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        import psutil

        self.children = psutil.Process(pid).children(recursive=True)
        self.start_rss = {p.pid: p.memory_info().rss for p in self.children}
        self.peak = dict(self.start_rss)
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for p in self.children:
                try:
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
                except Exception:  # noqa: BLE001 - a worker may be recycled; keep sampling the others
                    pass
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak[pid] - self.start_rss[pid] for pid in self.start_rss)


# --- (c) preparation: 100,000 leaves in one batch ----------------------------------------------------


def prepare_big_batch(data_dir: Path, tenant_name: str, leaves: int) -> tuple[list[str], float]:
    """Record ``leaves`` digests for the tenant and seal them into one batch; return the ids and the seal time."""
    from service import sealing
    from service.config import Settings
    from service.core.formats import utc_now
    from service.runtime import Runtime
    from service.storage import ledger

    settings = Settings(data_dir=data_dir, batch_max_size=leaves)
    runtime = Runtime.from_settings(settings)
    try:
        signer = runtime.prepare_signing()  # the embedded default creates the key; serve loads the same file
        with runtime.engine.begin() as conn:
            tenant = ledger.get_tenant_by_name(conn, tenant_name)
            assert tenant is not None
        ids: list[str] = []
        for start in range(0, leaves, 10_000):
            n = min(10_000, leaves - start)
            with runtime.engine.begin() as conn:
                deposits = sealing.record_evidence(
                    conn, tenant.id, [(os.urandom(32), None) for _ in range(n)], utc_now()
                )
            ids.extend(d.id for d in deposits)
        t0 = time.perf_counter()
        results = sealing.seal_pending(runtime.engine, signer, max_leaves=leaves, max_age=3600.0, force=True)
        seal_s = time.perf_counter() - t0
        if [r.size for r in results] != [leaves]:
            raise SystemExit(f"expected one batch of {leaves} leaves, sealed {[r.size for r in results]}")
        return ids, seal_s
    finally:
        runtime.engine.dispose()


def receipt_latencies(port: int, api_key: str, ids: list[str], n: int, expect_size: int) -> list[float]:
    """Seconds per ``GET /v1/evidence/{id}/receipt`` for ``n`` random ids, one keep-alive connection."""
    rng = random.Random(7)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {api_key}"}
    times: list[float] = []
    try:
        for i in range(n):
            evidence_id = rng.choice(ids)
            t0 = time.perf_counter()
            conn.request("GET", f"/v1/evidence/{evidence_id}/receipt", headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - t0
            if response.status != 200:
                raise SystemExit(f"receipt of {evidence_id}: {response.status} {body[:300]!r}")
            if i == 0:  # it is the big batch
                batch = json.loads(body)["batch"]
                if batch["size"] != expect_size:
                    raise SystemExit(f"the receipt is of a batch of {batch['size']} leaves, not {expect_size}")
            times.append(elapsed)
    finally:
        conn.close()
    return times


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


# --- (b) upload -------------------------------------------------------------------------------------


def generate_file(path: Path, size: int) -> None:
    block = 64 * MiB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


def hash_local(path: Path, sm3: bool) -> tuple[float, str]:
    """The same digests the server computes, the fastest plain way: ``hashlib.file_digest`` for SHA-256 alone;
    with SM3, one read pass where SM3 (hashlib/OpenSSL) runs in a helper thread while SHA-256 hashes, one chunk
    in flight (both release the GIL on large buffers). Returns seconds and the SHA-256 hex digest."""
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        if not sm3:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
            return time.perf_counter() - t0, digest
        sha, sm = hashlib.sha256(), hashlib.new("sm3")
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = None
            while chunk := f.read(MiB):
                sha.update(chunk)
                if in_flight is not None:
                    in_flight.result()
                in_flight = pool.submit(sm.update, chunk)
            if in_flight is not None:
                in_flight.result()
    return time.perf_counter() - t0, sha.hexdigest()


@dataclass
class Upload:
    seconds: float
    sha256: str
    rss_growth: int
    cpu: dict[str, float]  # CPU seconds: server (gunicorn tree), curl, machine


def upload(port: int, api_key: str, path: Path, server_pid: int) -> Upload:
    """curl -T the file (streamed from disk cache) to POST /v1/evidence; time, digest, RSS growth, CPU."""
    sampler = RssSampler(server_pid)
    sampler.start()
    before = cpu_snapshot({"server": [server_pid]})
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "-X",
                "POST",
                "-T",
                str(path),
                "-H",
                "Expect:",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                f"Authorization: Bearer {api_key}",
                "-w",
                "\n%{http_code} %{time_total}",
                f"http://127.0.0.1:{port}/v1/evidence?label=upload.bin",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        growth = sampler.stop()
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_delta(before, cpu_snapshot({"server": [server_pid]}))
    cpu["curl"] = (after_children.ru_utime + after_children.ru_stime) - (children.ru_utime + children.ru_stime)
    body, _, tail = done.stdout.rpartition("\n")
    code, seconds = tail.split()
    if done.returncode != 0 or code != "202":
        raise SystemExit(f"upload failed: curl {done.returncode}, HTTP {code}: {body[:300]} {done.stderr}")
    return Upload(float(seconds), json.loads(body)["sha256"], growth, cpu)


# --- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s rounds, 256 MiB upload, 500 receipt fetches")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each comparison")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per round")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (1 wrk thread)")
    parser.add_argument("--upload-mib", type=int, default=1024)
    parser.add_argument("--leaves", type=int, default=100_000)
    parser.add_argument("--fetches", type=int, default=2000)
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. 'a' for submissions only")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker, both servers")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes, both servers")
    parser.add_argument(
        "--upload-sm3",
        choices=("on", "off"),
        default="on",
        help="EVIDENCE_UPLOAD_SM3 for the server (default on, as the product ships); the (b) baseline computes "
        "the same digests (SHA-256 alone, or SHA-256 and SM3)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.upload_mib, args.fetches = 5.0, 256, 500
    require_tools("wrk", "curl")
    console = Console(width=150)
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    started = time.strftime("%Y-%m-%d %H:%M")
    try:
        data = tmp / "data"
        upload_sm3 = args.upload_sm3 == "on"
        env = clean_env(EVIDENCE_RATE_LIMIT="0", EVIDENCE_UPLOAD_SM3="1" if upload_sm3 else "0")
        out = evidence_cli("tenant", "create", "bench", "--data-dir", str(data), env=env)
        api_key = out.splitlines()[-1].strip()
        ids: list[str] = []
        seal_s = 0.0
        if "c" in args.parts:
            console.print(f"(c) recording {args.leaves:,} digests and sealing them into one batch ...")
            ids, seal_s = prepare_big_batch(data, "bench", args.leaves)
            console.print(f"    sealed one batch of {args.leaves:,} leaves in {seal_s:.1f} s")

        upload_file = tmp / "upload.bin"
        if "b" in args.parts:
            console.print(f"generating a {args.upload_mib} MiB upload file ...")
            generate_file(upload_file, args.upload_mib * MiB)
            hash_local(upload_file, upload_sm3)  # page cache warm

        port, base_port = free_port(), free_port()
        serve_args = [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--threads",
            str(args.threads),
            "--workers",
            str(args.workers),
        ]
        # The same gunicorn shape as `evidence serve` (service/commands/serve.py): gthread, 2 workers x 4 threads,
        # access log to stdout, and its malloc settings in the environment.
        base_args = [
            GUNICORN,
            "--bind",
            f"127.0.0.1:{base_port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(args.threads),
            "--access-logfile",
            "-",
            "--no-control-socket",
            "--pythonpath",
            str(BENCH),
            "bench_service:baseline_app()",
        ]
        from service.commands.serve import MALLOC_ENV

        durability = product_synchronous(data)
        sync_level = durability.rpartition("=")[2]
        base_env = clean_env(**MALLOC_ENV, **{BASELINE_DB_ENV: str(tmp / "baseline.db"), BASELINE_SYNC_ENV: sync_level})
        with (
            process(serve_args, env=env, log=tmp / "serve.log", ready_url=f"http://127.0.0.1:{port}/readyz") as srv,
            process(
                base_args,
                env=base_env,
                log=tmp / "baseline.log",
                ready_url=f"http://127.0.0.1:{base_port}/",
            ) as _base,
        ):
            # (c) first, on an idle server
            lat: list[float] = []
            if "c" in args.parts:
                receipt_latencies(port, api_key, ids, 100, args.leaves)  # warm-up (connections, caches)
                lat = receipt_latencies(port, api_key, ids, args.fetches, args.leaves)

            # (a) interleaved rounds
            svc: list[WrkResult] = []
            base: list[WrkResult] = []
            if "a" in args.parts:
                console.print(f"(a) {args.rounds} x {args.seconds:g} s wrk rounds per server ...")
                url = f"http://127.0.0.1:{port}/v1/evidence"
                run_wrk(url, seconds=2, connections=args.connections, api_key=api_key)
                run_wrk(f"http://127.0.0.1:{base_port}/v1/evidence", seconds=2, connections=args.connections)
            for _ in range(args.rounds if "a" in args.parts else 0):
                base.append(
                    run_wrk(
                        f"http://127.0.0.1:{base_port}/v1/evidence",
                        seconds=args.seconds,
                        connections=args.connections,
                        cpu={"server": [_base.pid]},
                    )
                )
                svc.append(
                    run_wrk(
                        f"http://127.0.0.1:{port}/v1/evidence",
                        seconds=args.seconds,
                        connections=args.connections,
                        api_key=api_key,
                        cpu={"server": [srv.pid]},
                    )
                )
            if "a" in args.parts:
                time.sleep(2)  # let the in-process sealer catch up before the uploads

            # (b) interleaved rounds
            if "b" in args.parts:
                console.print(f"(b) {args.rounds} uploads of {args.upload_mib} MiB ...")
                uploads: list[tuple[float, Upload]] = []
                for _ in range(args.rounds):
                    local_s, local_digest = hash_local(upload_file, upload_sm3)
                    up = upload(port, api_key, upload_file, srv.pid)
                    if up.sha256 != local_digest:
                        raise SystemExit(f"server digest {up.sha256} != local {local_digest}")
                    uploads.append((local_s, up))

        console.print(
            f"[bold]bench_service.py[/bold] {started}, {os.cpu_count()} CPUs, load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end"
        )
        console.print(
            f"durability: evidence serve SQLite {durability}; baseline SQLite journal_mode=WAL, "
            f"synchronous={sync_level} (one INSERT + COMMIT per request)"
        )
        table = Table(
            title=f"(a) hash-only submissions/s: wrk, 1 thread, {args.connections} connections, "
            f"{args.seconds:g} s rounds; evidence serve --workers {args.workers} --threads {args.threads} vs gunicorn "
            f"gthread {args.workers} workers x "
            f"{args.threads} threads doing one INSERT per request"
        )
        for col in (
            "round",
            "evidence serve req/s",
            "p50 / p99 ms",
            "server CPU ms/req",
            "errors",
            "1 INSERT/req Flask req/s",
            "p50 / p99 ms",
            "server CPU ms/req",
            "wrk CPU ms/req (svc / base)",
            "machine busy (svc / base)",
            "ratio (target ≥ 0.6)",
        ):
            table.add_column(col, justify="right")

        def busy(r: WrkResult) -> float:
            return r.cpu["machine"] / args.seconds / (os.cpu_count() or 1)

        for i, (s, b) in enumerate(zip(svc, base, strict=True), 1):
            table.add_row(
                str(i),
                f"{s.rps:,.0f}",
                f"{s.p50_ms:.1f} / {s.p99_ms:.1f}",
                f"{s.cpu_ms('server'):.2f}",
                str(s.errors + b.errors),
                f"{b.rps:,.0f}",
                f"{b.p50_ms:.1f} / {b.p99_ms:.1f}",
                f"{b.cpu_ms('server'):.2f}",
                f"{s.cpu_ms('wrk'):.2f} / {b.cpu_ms('wrk'):.2f}",
                f"{busy(s):.0%} / {busy(b):.0%}",
                f"{s.rps / b.rps:.2f}",
            )
        s_med = statistics.median(r.rps for r in svc) if svc else 0.0
        b_med = statistics.median(r.rps for r in base) if base else 1.0
        table.add_row(
            "median",
            f"{s_med:,.0f}",
            "",
            f"{statistics.median(r.cpu_ms('server') for r in svc):.2f}" if svc else "",
            "",
            f"{b_med:,.0f}",
            "",
            f"{statistics.median(r.cpu_ms('server') for r in base):.2f}" if base else "",
            "",
            "",
            f"[bold]{s_med / b_med:.2f}[/bold]",
        )
        if svc:
            console.print(table)

        if "b" in args.parts:
            size_mb = args.upload_mib * MiB / 1e6
            table = Table(
                title=f"(b) upload hashing: {args.upload_mib} MiB raw body (curl -T), server EVIDENCE_UPLOAD_SM3="
                f"{args.upload_sm3}, vs hashlib computing the same digests "
                f"({'SHA-256 and SM3 in one pass' if upload_sm3 else 'SHA-256'}) of the same cached file"
            )
            for col in (
                "round",
                "server MB/s",
                "local MB/s",
                "ratio (target ≥ 0.85)",
                "worker RSS growth",
                "server CPU s",
                "curl CPU s",
                "machine busy",
            ):
                table.add_column(col, justify="right")
            for i, (local_s, up) in enumerate(uploads, 1):
                table.add_row(
                    str(i),
                    f"{size_mb / up.seconds:,.0f}",
                    f"{size_mb / local_s:,.0f}",
                    f"{local_s / up.seconds:.2f}",
                    f"{up.rss_growth / MiB:.1f} MiB",
                    f"{up.cpu['server']:.2f}",
                    f"{up.cpu['curl']:.2f}",
                    f"{up.cpu['machine'] / up.seconds / (os.cpu_count() or 1):.0%}",
                )
            best_up = min(u.seconds for _, u in uploads)
            best_local = min(local_s for local_s, _ in uploads)
            med_ratio = statistics.median(local_s / u.seconds for local_s, u in uploads)
            table.add_row(
                "best / median ratio",
                f"{size_mb / best_up:,.0f}",
                f"{size_mb / best_local:,.0f}",
                f"[bold]{best_local / best_up:.2f}[/bold] / {med_ratio:.2f}",
                f"max {max(u.rss_growth for _, u in uploads) / MiB:.1f} MiB",
                "",
                "",
                "",
            )
            console.print(table)

        if "c" in args.parts:
            table = Table(
                title=f"(c) GET /v1/evidence/{{id}}/receipt, batch of {args.leaves:,} leaves, "
                f"{args.fetches} random ids, 1 keep-alive connection"
            )
            for col in ("median ms (target ≤ 20)", "p90 ms", "p99 ms", "max ms", "seal of the batch"):
                table.add_column(col, justify="right")
            ms = [x * 1000 for x in lat]
            table.add_row(
                f"[bold]{statistics.median(ms):.2f}[/bold]",
                f"{pct(ms, 90):.2f}",
                f"{pct(ms, 99):.2f}",
                f"{max(ms):.2f}",
                f"{seal_s:.1f} s",
            )
            console.print(table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
