"""Benchmark of batch anchoring (issue 7): ``evidence submit`` end to end, and bulk ingest against COPY.

1. ``evidence submit`` over N files of 100 KB (generated in a temp dir) against the embedded service (SQLite,
   in-process sealer) served by werkzeug's threaded server in this process; the client is a subprocess. Reported:
   files/s of the whole run (hash, submit, wait for sealing, fetch and write every receipt) and of ``--no-wait``
   (hash + submit), each against hashing the same files locally in the same run with the same thread count.
2. Bulk ingest digests/s: ``bulk.record_batch`` (what ``POST /v1/evidence/batch`` runs: one round trip for
   evidence + pending) and the whole request in-process (Flask test client: JSON parse, validation, idempotency
   row, response), on SQLite and PostgreSQL, against PostgreSQL's own ``COPY`` of the same rows (evidence and
   pending, pks taken from the sequence) in the same run.

    .venv/bin/python bench/bench_submit.py                 # 10,000 files, 10 x 10,000 ingest rows
    .venv/bin/python bench/bench_submit.py --files 2000 --ingest-rounds 3

PostgreSQL: a throwaway database on $EVIDENCE_TEST_PG_ADMIN_URL (default postgres@127.0.0.1:5432), dropped after.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from service import bulk, sealing  # noqa: E402
from service.api import create_app, stop_sealer  # noqa: E402
from service.config import Settings  # noqa: E402
from service.core.formats import new_evidence_id, utc_now  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.storage import db, ledger  # noqa: E402
from service.tenants import create_tenant  # noqa: E402

PG_ADMIN_URL = os.environ.get("EVIDENCE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
FILE_SIZE = 100 * 1024
WORKERS = min(8, os.cpu_count() or 1)


def generate(root: Path, n: int) -> list[Path]:
    files = []
    block = os.urandom(FILE_SIZE + 4096)
    for i in range(n):
        p = root / f"d{i // 1000:03d}" / f"f{i:06d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        # Distinct contents without paying for 1 GB of urandom: a random block, shifted, plus the index.
        off = i % 4096
        p.write_bytes(i.to_bytes(8, "big") + block[off : off + FILE_SIZE - 8])
        files.append(p)
    return files


def hash_locally(files: list[Path]) -> float:
    def one(p: Path) -> str:
        with open(p, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    c0 = _cpu(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, files))
    elapsed = time.perf_counter() - t0
    HASH_CPU.append(_cpu(resource.RUSAGE_SELF) - c0)
    return elapsed


HASH_CPU: list[float] = []  # CPU seconds of each local hashing run


@contextmanager
def embedded_server(data: Path) -> Iterator[tuple[str, str]]:
    from werkzeug.serving import make_server

    settings = Settings(data_dir=data, rate_limit=0)
    db.upgrade(settings.database_url)
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    with runtime.engine.begin() as conn:
        key = create_tenant(conn, f"bench-{secrets.token_hex(3)}", utc_now())
    app = create_app(runtime=runtime, start_sealer=True)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", key
    finally:
        server.shutdown()
        stop_sealer(app)
        runtime.engine.dispose()


def sqlite_synchronous(data: Path) -> str:
    """The synchronous level the service's engine sets on its SQLite connections (0 OFF, 1 NORMAL, 2 FULL)."""
    engine = db.make_engine(Settings(data_dir=data).database_url)
    try:
        with engine.connect() as conn:
            level = int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
    finally:
        engine.dispose()
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(level, str(level))


CPU: dict[str, tuple[float, float]] = {}  # run -> (client CPU s, server CPU s)


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_submit(url: str, key: str, *args: str) -> float:
    """Wall seconds of one ``evidence submit`` subprocess; its CPU and the server's (this process: the werkzeug
    threads and the sealer; the main thread only waits) go to ``CPU``."""
    env = {**os.environ, "EVIDENCE_URL": url, "EVIDENCE_API_KEY": key}
    c0, s0 = _cpu(resource.RUSAGE_CHILDREN), _cpu(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "service", "submit", *args, "--workers", str(WORKERS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - t0
    CPU["--no-wait" if "--no-wait" in args else "(full run)"] = (
        _cpu(resource.RUSAGE_CHILDREN) - c0,
        _cpu(resource.RUSAGE_SELF) - s0,
    )
    if done.returncode != 0:
        raise SystemExit(f"submit failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


# --- ingest -------------------------------------------------------------------------------------------


@contextmanager
def throwaway_pg() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"evidence_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def rows_for(n: int) -> list[tuple[bytes, str | None]]:
    return [(os.urandom(32), f"file-{i:06d}.bin") for i in range(n)]


def time_record_batch(runtime: Runtime, tenant_id: int, rows: list[tuple[bytes, str | None]]) -> float:
    t0 = time.perf_counter()
    with runtime.engine.begin() as conn:
        bulk.record_batch(conn, tenant_id, rows, utc_now())
    return time.perf_counter() - t0


def time_http(client: Any, key: str, rows: list[tuple[bytes, str | None]]) -> float:
    body = json.dumps({"items": [{"sha256": d.hex(), "label": lb} for d, lb in rows]}).encode()
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": secrets.token_hex(8)}
    t0 = time.perf_counter()
    r = client.post("/v1/evidence/batch", data=body, headers=headers, content_type="application/json")
    elapsed = time.perf_counter() - t0
    assert r.status_code == 202, r.get_data(as_text=True)
    return elapsed


def time_copy(runtime: Runtime, tenant_id: int, rows: list[tuple[bytes, str | None]]) -> float:
    """PostgreSQL COPY of the same evidence and pending rows; only the COPYs and the COMMIT are timed (the pks are
    drawn from the sequence and the rows formatted before the clock starts)."""
    now_us = sealing.to_us(utc_now())
    raw = runtime.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT nextval('evidence_pk_seq') FROM generate_series(1, %s)", (len(rows),))
        pks = [r[0] for r in cur.fetchall()]
        raw.commit()
        ev = io.StringIO()
        pe = io.StringIO()
        for pk, (digest, label) in zip(pks, rows, strict=True):
            ev.write(f"{pk}\t{new_evidence_id()}\t{tenant_id}\t\\\\x{digest.hex()}\t{label}\t{now_us}\n")
            pe.write(f"{pk}\t{now_us}\n")
        ev.seek(0)
        pe.seek(0)
        t0 = time.perf_counter()
        cur.copy_expert("COPY evidence (pk, id, tenant_id, sha256, label, received_us) FROM STDIN", ev)
        cur.copy_expert("COPY pending (evidence_pk, received_us) FROM STDIN", pe)
        raw.commit()
        return time.perf_counter() - t0
    finally:
        raw.close()


def ingest(url: str, data: Path, rounds: int, size: int, with_copy: bool) -> dict[str, float]:
    db.upgrade(url)
    runtime = Runtime.from_settings(Settings(data_dir=data, database_url=url, rate_limit=0))
    runtime.prepare_signing()
    try:
        with runtime.engine.begin() as conn:
            key = create_tenant(conn, "bench", utc_now())
            tenant = ledger.get_tenant_by_name(conn, "bench")
            assert tenant is not None
        app = create_app(runtime=runtime, start_sealer=False)
        client = app.test_client()
        totals = {"record_batch": 0.0, "http": 0.0, "copy": 0.0}
        for _ in range(rounds):  # interleaved, so load changes hit all three alike
            totals["record_batch"] += time_record_batch(runtime, tenant.id, rows_for(size))
            totals["http"] += time_http(client, key, rows_for(size))
            if with_copy:
                totals["copy"] += time_copy(runtime, tenant.id, rows_for(size))
        n = rounds * size
        return {k: (n / v if v else 0.0) for k, v in totals.items()}
    finally:
        runtime.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--ingest-rounds", type=int, default=10)
    parser.add_argument("--ingest-size", type=int, default=10_000)
    args = parser.parse_args()
    console = Console(width=150)
    tmp = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    try:
        console.print(f"generating {args.files} files of {FILE_SIZE // 1024} KB in {tmp} ...")
        files = generate(tmp / "files", args.files)
        hash_locally(files)  # warm the page cache: both sides read from memory
        os.sync()  # the generated files are on disk before either side is timed
        load_before = f"{os.getloadavg()[0]:.2f}"
        results: list[tuple[str, float, float]] = []
        with embedded_server(tmp / "server") as (url, key):
            h1 = hash_locally(files)
            no_wait = run_submit(url, key, str(tmp / "files"), "--no-wait", "--out", str(tmp / "out-nowait"))
            h2 = hash_locally(files)
            full = run_submit(url, key, str(tmp / "files"), "--out", str(tmp / "out-full"))
            h3 = hash_locally(files)
        written = sum(1 for _ in (tmp / "out-full").rglob("*.receipt.json"))
        assert written == args.files, f"{written} receipts written for {args.files} files"
        hash_s = min(h1, h2, h3)
        hashing = args.files / hash_s
        results.append(("submit --no-wait (hash + submit)", args.files / no_wait, hashing))
        results.append(("submit (… + wait + receipts)", args.files / full, hashing))

        table = Table(title=f"evidence submit, {args.files} files x 100 KB, {WORKERS} hashing threads")
        for col in ("run", "files/s", "local hashing files/s", "ratio", "seconds", "target"):
            table.add_column(col, justify="right")
        for (name, rate, base), seconds, target in zip(
            results,
            (no_wait, full),
            ("ratio ≥ 0.7", f"≤ 1.5 x {hash_s:.2f} + 3 = {1.5 * hash_s + 3:.2f} s"),
            strict=True,
        ):
            table.add_row(name, f"{rate:,.0f}", f"{base:,.0f}", f"{rate / base:.2f}", f"{seconds:.2f}", target)
        console.print(table)
        hash_cpu = min(HASH_CPU[1:])
        for run, (client_cpu, server_cpu) in CPU.items():
            console.print(
                f"CPU s of submit {run}: client {client_cpu:.2f}, server {server_cpu:.2f}, "
                f"sum {client_cpu + server_cpu:.2f}; local hashing alone {hash_cpu:.2f}"
            )
        console.print(
            f"server: embedded SQLite (journal_mode=WAL, synchronous={sqlite_synchronous(tmp / 'server')}), "
            f"batch_max_age {Settings().batch_max_age:g} s; client: receipts written temp+rename, one journal fsync "
            f"per page of 1,000; load average before/after: {load_before} / {os.getloadavg()[0]:.2f}"
        )
        if args.ingest_rounds == 0:
            return

        console.print(f"bulk ingest: {args.ingest_rounds} x {args.ingest_size} rows per backend ...")
        sqlite = ingest(
            f"sqlite:///{tmp / 'ingest' / 'evidence.db'}",
            tmp / "ingest",
            args.ingest_rounds,
            args.ingest_size,
            with_copy=False,
        )
        with throwaway_pg() as pg_url:
            pg = ingest(pg_url, tmp / "ingest-pg", args.ingest_rounds, args.ingest_size, with_copy=True)
        copy = pg["copy"]
        table = Table(title="bulk ingest digests/s (COPY = PostgreSQL COPY of the same evidence + pending rows)")
        for col in ("path", "SQLite", "PostgreSQL", "PG COPY", "SQLite / COPY", "PG / COPY (target ≥ 0.3)"):
            table.add_column(col, justify="right")
        for label, k in (
            ("bulk.record_batch (one round trip)", "record_batch"),
            ("POST /v1/evidence/batch in-process", "http"),
        ):
            table.add_row(
                label,
                f"{sqlite[k]:,.0f}",
                f"{pg[k]:,.0f}",
                f"{copy:,.0f}",
                f"{sqlite[k] / copy:.2f}",
                f"{pg[k] / copy:.2f}",
            )
        console.print(table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
