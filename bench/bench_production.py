"""Service benchmark of the production path (issue 4): PostgreSQL + Celery (Redis broker), 2 sealing workers.

The deployment of docs/operations.md, on a throwaway database ``evidence_bench_<random>`` and its own broker
queue: the key made with ``evidence keys init``, ``evidence db upgrade``, ``evidence keys publish``, ``evidence
tenant create``; then README's ``gunicorn --worker-class gthread --workers 4 --threads 4 "service.api:create_app()"``,
2 ``celery -A workers.celery_app worker --concurrency=1`` processes and one ``celery beat``.
``EVIDENCE_RATE_LIMIT=0``: the bench measures the service, not the per-key limiter.

(a) sustained hash-only ``POST /v1/evidence`` at a fixed offered rate (default 300/s for 25 s, an open-loop
    Python generator: each request is sent at its scheduled time by one of 16 threads with keep-alive
    connections) and at max rate (wrk, 16 connections). Seal latency: a watcher polls ``batches`` every 20 ms
    and notes when each batch becomes visible (= its receipts can be fetched); latency = visible - scheduled
    send time (fixed rate) or - ``received_us`` (max rate); also the stored ``sealed_us - received_us``.
    Target p99 ≤ 2 s at 300/s.
(b) the same gunicorn command serving a tiny Flask app doing one bare INSERT per request (``insert_app``,
    psycopg2, one committed transaction) as the baseline of single-submission throughput, rounds interleaved
    with (a)'s max rate; same server, so the same ``synchronous_commit``/``fsync`` (printed). Target ratio ≥ 0.7.
(c) bulk: digests/s through ``POST /v1/evidence/batch`` (10,000 items per request, over HTTP) against
    PostgreSQL's own ``COPY FROM STDIN`` of the same evidence + pending rows (pks from the sequence, rows formatted
    before the clock: only the COPYs and COMMIT are timed), interleaved.
    Target ratio ≥ 0.3. The Celery workers seal what both paths insert while the rounds run.

    .venv/bin/python bench/bench_production.py              # about 3 minutes here
    .venv/bin/python bench/bench_production.py --quick

Load generators (wrk, this process) share the machine's CPUs with gunicorn, Celery and PostgreSQL.
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench_service import (  # same directory: shared process, wrk and percentile helpers
    BENCH,
    GUNICORN,
    WrkResult,
    clean_env,
    evidence_cli,
    free_port,
    pct,
    process,
    require_tools,
    run_wrk,
)
from rich.console import Console
from rich.table import Table

CELERY = str(Path(sys.executable).with_name("celery"))
PG_ADMIN_DSN = os.environ.get("EVIDENCE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("EVIDENCE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ORIGIN = "bench.example.org/evidence-ledger"


# --- the apps gunicorn loads ---------------------------------------------------------------------------


def production_app() -> Any:
    """``service.api:create_app()``, as gunicorn loads it."""
    from service.api import create_app

    return create_app()


def insert_app() -> Any:
    """Baseline: parse the JSON digest, one INSERT in its own committed transaction, answer 202 with a small JSON."""
    import psycopg2
    from flask import Flask, jsonify, request

    dsn = os.environ["BENCH_BASELINE_DSN"]
    app = Flask("baseline_insert")
    local = threading.local()

    @app.post("/v1/evidence")
    def deposit() -> Any:
        body = request.get_json(force=True)
        digest = bytes.fromhex(body["sha256"])
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = local.conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO bench_scratch (sha256, received_us) VALUES (%s, %s) RETURNING id",
                (digest, time.time_ns() // 1000),
            )
            (row_id,) = cur.fetchone()
        response = jsonify({"id": row_id, "sha256": body["sha256"], "status": "pending"})
        response.status_code = 202
        return response

    return app


# --- database -------------------------------------------------------------------------------------------


def dsn_for(name: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


@contextmanager
def throwaway_db() -> Iterator[str]:
    import psycopg2

    name = f"evidence_bench_{secrets.token_hex(4)}"
    admin = psycopg2.connect(PG_ADMIN_DSN)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield dsn_for(name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def connect(dsn: str, autocommit: bool = True) -> Any:
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = autocommit
    return conn


def query(dsn: str, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def execute(dsn: str, sql: str) -> None:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


class BatchWatcher(threading.Thread):
    """Polls ``batches`` every ``interval`` s and notes the wall time at which each seq became visible."""

    def __init__(self, dsn: str, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.interval = interval
        self.visible: dict[int, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = connect(self.dsn)
        last = -1
        try:
            with conn.cursor() as cur:
                while not self._stop_event.is_set():
                    cur.execute("SELECT seq FROM batches WHERE seq > %s ORDER BY seq", (last,))
                    now = time.time()
                    for (seq,) in cur.fetchall():
                        self.visible[seq] = now
                        last = seq
                    self._stop_event.wait(self.interval)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def wait_drained(dsn: str, watcher: BatchWatcher, timeout: float = 120) -> float:
    """Wait (bounded) until nothing is pending and the watcher saw the last batch; return the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ((pending, last),) = query(dsn, "SELECT (SELECT count(*) FROM pending), (SELECT max(seq) FROM batches)")
        if pending == 0 and (last is None or last in watcher.visible):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit(f"still {pending} pending after {timeout} s: are the Celery workers running?")


def sealed_rows(dsn: str, where: str, args: Any) -> list[tuple[str, int, int, int]]:
    """(id, received_us, batch_seq, sealed_us) of sealed evidence matching ``where``."""
    return [
        tuple(r)
        for r in query(  # type: ignore[misc]
            dsn,
            "SELECT e.id, e.received_us, bl.batch_seq, b.sealed_us FROM evidence e "
            "JOIN batch_leaves bl ON bl.evidence_pk = e.pk JOIN batches b ON b.seq = bl.batch_seq WHERE " + where,
            args,
        )
    ]


# --- (a) fixed-rate generator ------------------------------------------------------------------------------


def fixed_rate(
    port: int, api_key: str, rate: float, seconds: float, threads: int = 16
) -> tuple[list[tuple[str, float, float]], float, int]:
    """Send ``rate * seconds`` submissions, request i at t0 + i/rate (open loop, bounded by ``threads`` in flight).

    Returns ([(evidence id, scheduled wall time, response seconds)], achieved elapsed seconds, errors).
    """
    total = int(rate * seconds)
    counter = itertools.count()
    results: list[tuple[str, float, float]] = []
    errors = [0]
    lock = threading.Lock()
    nonce = secrets.token_hex(4)
    t0_wall = time.time() + 0.2
    t0 = time.perf_counter() + 0.2
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while (i := next(counter)) < total:
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                body = json.dumps({"sha256": f"{nonce}{i:056x}"})
                try:
                    start = time.perf_counter()
                    conn.request("POST", "/v1/evidence", body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    done = time.perf_counter()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    with lock:
                        errors[0] += 1
                    continue
                if response.status != 202:
                    with lock:
                        errors[0] += 1
                    continue
                # Response time is measured from the scheduled time (no coordinated omission when we fall behind).
                with lock:
                    results.append((json.loads(data)["id"], t0_wall + i / rate, done - min(start, due)))
        finally:
            conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=seconds + 120)
    return results, time.perf_counter() - t0, errors[0]


# --- (c) bulk vs COPY -----------------------------------------------------------------------------------------


def bulk_body(n: int) -> bytes:
    return json.dumps(
        {"items": [{"sha256": os.urandom(32).hex(), "label": f"file-{i:06d}.bin"} for i in range(n)]}
    ).encode()


def post_bulk(port: int, api_key: str, body: bytes) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Idempotency-Key": secrets.token_hex(8),
    }
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/evidence/batch", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    if response.status != 202:
        raise SystemExit(f"POST /v1/evidence/batch: {response.status} {data[:300]!r}")
    return elapsed


def copy_rows(dsn: str, tenant_id: int, n: int) -> float:
    """COPY of n evidence rows + their pending rows, one transaction; only the COPYs and the COMMIT are timed
    (the pks are drawn from the sequence and the rows formatted before the clock starts)."""
    conn = connect(dsn, autocommit=False)
    rows = [(os.urandom(32), f"file-{i:06d}.bin") for i in range(n)]
    now_us = time.time_ns() // 1000
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT nextval('evidence_pk_seq') FROM generate_series(1, %s)", (n,))
            pks = [r[0] for r in cur.fetchall()]
        conn.commit()
        ev = io.StringIO()
        pe = io.StringIO()
        for pk, (digest, label) in zip(pks, rows, strict=True):
            ev.write(f"{pk}\t{secrets.token_urlsafe(16)}\t{tenant_id}\t\\\\x{digest.hex()}\t{label}\t{now_us}\n")
            pe.write(f"{pk}\t{now_us}\n")
        ev.seek(0)
        pe.seek(0)
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            cur.copy_expert("COPY evidence (pk, id, tenant_id, sha256, label, received_us) FROM STDIN", ev)
            cur.copy_expert("COPY pending (evidence_pk, received_us) FROM STDIN", pe)
        conn.commit()
        return time.perf_counter() - t0
    finally:
        conn.close()


# --- main -----------------------------------------------------------------------------------------------------


def ms_stats(values: list[float]) -> str:
    if not values:
        return "-"
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):,.0f} / {pct(ms, 99):,.0f} / {max(ms):,.0f}"


def wait_for_log(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{path.name}: no {text!r} within {timeout} s:\n{path.read_text(errors='replace')[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="10 s at the fixed rate, 2 max-rate rounds of 5 s, 3 bulk rounds"
    )
    parser.add_argument("--rate", type=float, default=300.0, help="fixed offered rate (submissions/s)")
    parser.add_argument("--rate-seconds", type=float, default=25.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved max-rate rounds (service, baseline)")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per max-rate round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--bulk-rounds", type=int, default=10)
    parser.add_argument("--bulk-size", type=int, default=10_000)
    parser.add_argument(
        "--parts",
        default="abc",
        help="which parts to run (default abc): 'b' alone runs only the interleaved max-rate rounds of (a)/(b)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rate_seconds, args.rounds, args.seconds, args.bulk_rounds = 10.0, 2, 5.0, 3
    require_tools("wrk")
    console = Console(width=150)
    started = time.strftime("%Y-%m-%d %H:%M")
    tmp = Path(tempfile.mkdtemp(prefix="bench-production-"))
    queue = f"evidence-bench-{secrets.token_hex(4)}"
    try:
        with throwaway_db() as dsn, ExitStack() as stack:
            url = "postgresql+psycopg2://" + dsn.split("://", 1)[1]
            key_file = tmp / "secrets" / "signing.key"
            key_file.parent.mkdir(mode=0o700)
            env = clean_env(
                DATABASE_URL=url,
                EVIDENCE_BROKER_URL=REDIS_URL,
                EVIDENCE_CELERY_QUEUE=queue,
                EVIDENCE_SIGNING_KEY_FILE=str(key_file),
                EVIDENCE_ORIGIN=ORIGIN,
                EVIDENCE_DATA_DIR=str(tmp),
                EVIDENCE_RATE_LIMIT="0",
                BENCH_BASELINE_DSN=dsn,
            )
            # First installation, as docs/operations.md says.
            evidence_cli("keys", "init", env=env)
            evidence_cli("db", "upgrade", env=env)
            evidence_cli("keys", "publish", env=env)
            api_key = evidence_cli("tenant", "create", "bench", env=env).splitlines()[-1].strip()
            ((tenant_id,),) = query(dsn, "SELECT id FROM tenants WHERE name = 'bench'")
            execute(
                dsn,
                "CREATE TABLE bench_scratch (id bigserial PRIMARY KEY, sha256 bytea NOT NULL, "
                "received_us bigint NOT NULL)",
            )
            registers_bulk = _create_app_registers_bulk(env)
            durability = ", ".join(
                f"{name}={query(dsn, f'SHOW {name}')[0][0]}"
                for name in ("synchronous_commit", "fsync", "wal_sync_method")
            )

            port, base_port = free_port(), free_port()
            # README's production command, for the service and the baseline alike.
            gunicorn = [
                GUNICORN,
                "--worker-class",
                "gthread",
                "--workers",
                "4",
                "--threads",
                "4",
                "--no-control-socket",
                "--pythonpath",
                str(BENCH),
            ]
            api = stack.enter_context(
                process(
                    [*gunicorn, f"--bind=127.0.0.1:{port}", "service.api:create_app()"],
                    env=env,
                    log=tmp / "api.log",
                    ready_url=f"http://127.0.0.1:{port}/readyz",
                )
            )
            baseline = stack.enter_context(
                process(
                    [*gunicorn, f"--bind=127.0.0.1:{base_port}", "bench_production:insert_app()"],
                    env=env,
                    log=tmp / "baseline.log",
                    ready_url=f"http://127.0.0.1:{base_port}/",
                )
            )
            celery_pids: list[int] = []
            for i in range(2):
                celery_pids.append(
                    stack.enter_context(
                        process(
                            [
                                CELERY,
                                "-A",
                                "workers.celery_app",
                                "worker",
                                "--concurrency=1",
                                "-n",
                                f"bench{i}-{queue}@%h",
                                "--loglevel=INFO",
                            ],
                            env=env,
                            log=tmp / f"worker-{i}.log",
                        )
                    ).pid
                )
            celery_pids.append(
                stack.enter_context(
                    process(
                        [
                            CELERY,
                            "-A",
                            "workers.celery_app",
                            "beat",
                            f"--schedule={tmp / 'celerybeat-schedule'}",
                            "--loglevel=INFO",
                        ],
                        env=env,
                        log=tmp / "beat.log",
                    )
                ).pid
            )
            svc_cpu = {"api": [api.pid], "celery": celery_pids, "postgres": "postgres"}
            base_cpu = {"api": [baseline.pid], "celery": celery_pids, "postgres": "postgres"}
            for i in range(2):
                wait_for_log(tmp / f"worker-{i}.log", "ready.", 60)
            watcher = BatchWatcher(dsn)
            watcher.start()
            stack.callback(watcher.stop)

            svc_url = f"http://127.0.0.1:{port}/v1/evidence"
            base_url = f"http://127.0.0.1:{base_port}/v1/evidence"
            console.print("warm-up ...")
            run_wrk(svc_url, seconds=2, connections=args.connections, api_key=api_key)
            run_wrk(base_url, seconds=2, connections=args.connections)
            wait_drained(dsn, watcher)

            # (a) fixed rate
            results: list[tuple[str, float, float]] = []
            elapsed, fixed_errors = 1.0, 0
            if "a" in args.parts:
                console.print(f"(a) {args.rate:g} submissions/s for {args.rate_seconds:g} s ...")
                results, elapsed, fixed_errors = fixed_rate(port, api_key, args.rate, args.rate_seconds)
                wait_drained(dsn, watcher)
            ids = [r[0] for r in results]
            rows = {r[0]: r for r in sealed_rows(dsn, "e.id = ANY(%s)", (ids,))}
            fixed_visible = [watcher.visible[rows[i][2]] - sched for i, sched, _ in results if i in rows]
            fixed_stored = [(rows[i][3] - rows[i][1]) / 1e6 for i in ids if i in rows]
            fixed_response = [r[2] for r in results]
            fixed_batches = len({rows[i][2] for i in ids if i in rows})

            # (a) max rate + (b) baseline, interleaved
            console.print(f"(a/b) {args.rounds} x {args.seconds:g} s wrk rounds per server ...")
            svc: list[WrkResult] = []
            base: list[WrkResult] = []
            max_visible: list[float] = []
            max_stored: list[float] = []
            max_batches = 0
            for _ in range(args.rounds):
                base.append(run_wrk(base_url, seconds=args.seconds, connections=args.connections, cpu=base_cpu))
                t_start = time.time_ns() // 1000
                svc.append(
                    run_wrk(svc_url, seconds=args.seconds, connections=args.connections, api_key=api_key, cpu=svc_cpu)
                )
                t_end = time.time_ns() // 1000
                wait_drained(dsn, watcher)
                round_rows = sealed_rows(dsn, "e.received_us BETWEEN %s AND %s", (t_start, t_end))
                max_visible += [watcher.visible[seq] - rec / 1e6 for _, rec, seq, _ in round_rows]
                max_stored += [(sealed - rec) / 1e6 for _, rec, _, sealed in round_rows]
                max_batches += len({seq for _, _, seq, _ in round_rows})

            # (c) bulk vs COPY, interleaved
            if "c" in args.parts:
                console.print(f"(c) {args.bulk_rounds} rounds of {args.bulk_size:,} digests ...")
            t_bulk = t_copy = 0.0
            for _ in range(args.bulk_rounds if "c" in args.parts else 0):
                t_bulk += post_bulk(port, api_key, bulk_body(args.bulk_size))
                t_copy += copy_rows(dsn, tenant_id, args.bulk_size)
            wait_drained(dsn, watcher)
            audit = query(
                dsn,
                "SELECT (SELECT count(*) FROM evidence), (SELECT count(*) FROM batch_leaves), "
                "(SELECT count(*) FROM batches)",
            )[0]

        console.print(
            f"[bold]bench_production.py[/bold] {started}, {os.cpu_count()} CPUs, load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; gunicorn --worker-class gthread --workers 4 "
            f"--threads 4 (README) for both; PostgreSQL {durability} for both; "
            f"2 celery workers --concurrency=1 + beat, EVIDENCE_BATCH_MAX_AGE=1.0 (beat every 0.5 s); "
            f"create_app registers the bulk blueprint itself: {registers_bulk}; at the end "
            f"{audit[0]:,} evidence, {audit[1]:,} sealed, {audit[2]:,} batches"
        )
        table = Table(title="(a) seal latency (submit → receipt available), median / p99 / max in ms")
        for col in (
            "offered",
            "achieved /s",
            "errors",
            "HTTP response",
            "submit → batch visible (p99 target ≤ 2 s)",
            "stored sealed − received",
            "batches",
        ):
            table.add_column(col, justify="right")
        if "a" in args.parts:
            table.add_row(
                f"{args.rate:g}/s for {args.rate_seconds:g} s",
                f"{len(results) / elapsed:,.0f}",
                str(fixed_errors),
                ms_stats(fixed_response),
                f"[bold]{ms_stats(fixed_visible)}[/bold]",
                ms_stats(fixed_stored),
                str(fixed_batches),
            )
        total_max = sum(r.requests for r in svc)
        table.add_row(
            f"max (wrk -c{args.connections}, {args.rounds} x {args.seconds:g} s)",
            f"{statistics.median(r.rps for r in svc):,.0f}",
            str(sum(r.errors for r in svc)),
            f"{statistics.median(r.p50_ms for r in svc):,.0f} / {statistics.median(r.p99_ms for r in svc):,.0f} / -",
            ms_stats(max_visible),
            ms_stats(max_stored),
            f"{max_batches} ({total_max:,} submissions)",
        )
        console.print(table)

        table = Table(
            title=f"(b) single submissions/s at max rate: wrk 1 thread, {args.connections} connections, "
            f"{args.seconds:g} s rounds, same gunicorn command"
        )
        for col in (
            "round",
            "service req/s",
            "p50 / p99 ms",
            "CPU ms/req: gunicorn / postgres / celery / wrk",
            "1 INSERT/request req/s",
            "p50 / p99 ms",
            "CPU ms/req: gunicorn / postgres / wrk",
            "machine busy (svc / base)",
            "ratio (target ≥ 0.7)",
        ):
            table.add_column(col, justify="right")

        def busy(r: WrkResult) -> float:
            return r.cpu["machine"] / args.seconds / (os.cpu_count() or 1)

        for i, (s, b) in enumerate(zip(svc, base, strict=True), 1):
            table.add_row(
                str(i),
                f"{s.rps:,.0f}",
                f"{s.p50_ms:.1f} / {s.p99_ms:.1f}",
                " / ".join(f"{s.cpu_ms(g):.2f}" for g in ("api", "postgres", "celery", "wrk")),
                f"{b.rps:,.0f}",
                f"{b.p50_ms:.1f} / {b.p99_ms:.1f}",
                " / ".join(f"{b.cpu_ms(g):.2f}" for g in ("api", "postgres", "wrk")),
                f"{busy(s):.0%} / {busy(b):.0%}",
                f"{s.rps / b.rps:.2f}",
            )
        s_med = statistics.median(r.rps for r in svc)
        b_med = statistics.median(r.rps for r in base)
        table.add_row(
            "median", f"{s_med:,.0f}", "", "", f"{b_med:,.0f}", "", "", "", f"[bold]{s_med / b_med:.2f}[/bold]"
        )
        console.print(table)

        if "c" in args.parts:
            n = args.bulk_rounds * args.bulk_size
            table = Table(title=f"(c) bulk ingest, {args.bulk_rounds} x {args.bulk_size:,} digests, interleaved")
            for col in ("POST /v1/evidence/batch digests/s", "COPY FROM STDIN digests/s", "ratio (target ≥ 0.3)"):
                table.add_column(col, justify="right")
            table.add_row(f"{n / t_bulk:,.0f}", f"{n / t_copy:,.0f}", f"[bold]{t_copy / t_bulk:.2f}[/bold]")
            console.print(table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _create_app_registers_bulk(env: dict[str, str]) -> bool:
    """Whether ``service.api:create_app()`` itself serves POST /v1/evidence/batch (built once, in this process)."""
    from service.api import create_app
    from service.config import Settings

    app = create_app(Settings.from_env(env), start_sealer=False)
    try:
        return "bulk" in app.blueprints
    finally:
        app.extensions["evidence_ledger"].runtime.engine.dispose()


if __name__ == "__main__":
    main()
