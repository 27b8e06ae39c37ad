"""Bytes per deposit (per table) and receipt fetch from one large batch, on SQLite and PostgreSQL (issue 15).

For each database (a fresh SQLite file in a temporary directory; a throwaway PostgreSQL database
``evidence_storage_<random>`` on $EVIDENCE_TEST_PG_ADMIN_URL, dropped at the end):

1. ``--rows`` deposits through ``POST /v1/evidence/batch`` (Flask test client in this process, 10,000 items and an
   ``Idempotency-Key`` per request, so the stored answers count as they would in production within their TTL);
2. one ``sealing.seal_pending`` of all of them: ONE batch of ``--rows`` leaves (process CPU seconds printed);
3. receipt fetch from that batch: ``GET /v1/evidence/{id}/receipt`` of ``--fetches`` random ids, with this
   process's tile cache emptied before each fetch ("cold": every fetch reads its tiles) and as it comes ("warm"),
   p50 / p99 wall ms and process CPU ms per fetch; ``POST /v1/receipts`` of 1,000 random ids (cold), ms per request;
4. bytes per deposit: the database's growth over the freshly migrated schema / rows, and per table (with its
   indexes and TOAST), after ``VACUUM ANALYZE`` (PostgreSQL) / a WAL checkpoint and ``dbstat`` (SQLite; no VACUUM,
   the file as the service leaves it).

Durability as configured (SQLite ``synchronous`` and PostgreSQL ``synchronous_commit`` printed); the client runs
in the same process, so CPU per fetch includes the test client's share.

    .venv/bin/python bench/bench_storage.py                          # 10^5 rows, both databases (~3 min here)
    .venv/bin/python bench/bench_storage.py --rows 1000000           # 10^6 rows, one batch of 10^6 (~25 min here)
    .venv/bin/python bench/bench_storage.py --db sqlite --rows 1000000

Baseline (the release before batch tiles, stored proofs): run this file from a checkout of that commit, e.g.
``git worktree add /tmp/old 66c82d4 && cp bench/bench_storage.py bench/bench_scale.py /tmp/old/bench/ &&
.venv/bin/python /tmp/old/bench/bench_storage.py --db postgresql --rows 200000`` (``bench_scale.py`` brings the
bulk fill; their own code comes first on ``sys.path``; SQLite there cannot seal a batch above 250,000 leaves).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_scale import deposit_random, pct  # noqa: E402  (same directory: the bulk fill and percentile)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from service import sealing  # noqa: E402
from service.api import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.core.formats import utc_now  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.storage import db  # noqa: E402
from service.tenants import create_tenant  # noqa: E402

PG_ADMIN_URL = os.environ.get("EVIDENCE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
CACHE = getattr(sealing, "TILE_CACHE", None)  # None: a release before the tiles (run from its tree, as a baseline)


def sqlite_sizes(url: str) -> tuple[int, dict[str, int]]:
    """(file bytes after a WAL checkpoint, bytes per table with its indexes from dbstat)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            owner = dict(conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master").all())
            tables: dict[str, int] = {}
            for name, size in conn.exec_driver_sql("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").all():
                table = owner.get(name, name)
                tables[table] = tables.get(table, 0) + int(size)
            page = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
            count = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    finally:
        engine.dispose()
    return int(page) * int(count), tables


def pg_sizes(url: str) -> tuple[int, dict[str, int]]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
            total = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            rows = conn.execute(
                text(
                    "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
                    "AND relnamespace = 'public'::regnamespace"
                )
            ).all()
            # each index and each table's heap (+ TOAST) on its own, as "table/index" and "table/heap"
            parts = conn.execute(
                text(
                    "SELECT t.relname || '/' || i.relname, pg_relation_size(i.oid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
                    "WHERE t.relnamespace = 'public'::regnamespace UNION ALL "
                    "SELECT relname || '/heap', pg_table_size(oid) FROM pg_class WHERE relkind = 'r' "
                    "AND relnamespace = 'public'::regnamespace"
                )
            ).all()
    finally:
        engine.dispose()
    return int(total), {str(name): int(size) for name, size in [*rows, *parts]}


def run(kind: str, url: str, data_dir: Path, rows: int, fetches: int, console: Console) -> dict[str, Any]:
    db.upgrade(url)
    sizes = sqlite_sizes if kind == "sqlite" else pg_sizes
    empty_total, empty_tables = sizes(url)
    settings = Settings(data_dir=data_dir, database_url=url, rate_limit=0, batch_max_size=rows, batch_max_age=3600.0)
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    try:
        with runtime.engine.begin() as conn:
            key = create_tenant(conn, "storage", utc_now())
            setting = "PRAGMA synchronous" if kind == "sqlite" else "SHOW synchronous_commit"
            durability = str(conn.exec_driver_sql(setting).scalar_one())
        client = create_app(runtime=runtime, start_sealer=False).test_client()
        headers = {"Authorization": f"Bearer {key}"}
        t0 = time.perf_counter()
        ids = deposit_random(client, headers, rows)
        console.print(f"{kind}: {rows:,} deposits in {time.perf_counter() - t0:.1f} s (load {os.getloadavg()[0]:.1f})")
        c0, t0 = time.process_time(), time.perf_counter()
        sealed = sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=rows, max_age=3600.0, force=True)
        seal_cpu, seal_wall = time.process_time() - c0, time.perf_counter() - t0
        assert [s.size for s in sealed] == [rows], [s.size for s in sealed]
        console.print(f"{kind}: sealed one batch of {rows:,} in {seal_wall:.1f} s, {seal_cpu:.1f} s CPU")

        rng = random.Random(7)
        result: dict[str, Any] = {"db": kind, "rows": rows, "durability": durability, "seal_cpu": seal_cpu}
        for mode in ("cold", "warm"):
            wall, cpu = [], []
            for evidence_id in rng.sample(ids, min(fetches, rows)):
                if mode == "cold" and CACHE is not None:
                    CACHE.clear()
                c0, f0 = time.process_time(), time.perf_counter()
                r = client.get(f"/v1/evidence/{evidence_id}/receipt", headers=headers)
                wall.append((time.perf_counter() - f0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"receipt {evidence_id}: {r.status_code}")
            result[mode] = (statistics.median(wall), pct(wall, 99), statistics.mean(cpu))
        bulk_ms = []
        for _ in range(5):
            if CACHE is not None:
                CACHE.clear()
            f0 = time.perf_counter()
            r = client.post("/v1/receipts", json={"ids": rng.sample(ids, 1000)}, headers=headers)
            bulk_ms.append((time.perf_counter() - f0) * 1000)
            if r.status_code != 200 or len(r.get_json()["items"]) != 1000:
                raise SystemExit(f"bulk receipts: {r.status_code}")
        result["bulk"] = statistics.median(bulk_ms)
    finally:
        runtime.engine.dispose()
    total, tables = sizes(url)
    result["bytes"] = (total - empty_total) / rows
    grown = {t: (b - empty_tables.get(t, 0)) / rows for t, b in tables.items()}
    result["tables"] = {t: v for t, v in sorted(grown.items(), key=lambda kv: -kv[1]) if v >= 0.5 and "/" not in t}
    result["parts"] = {t: round(v, 1) for t, v in sorted(grown.items()) if v >= 0.5 and "/" in t}
    result["load"] = os.getloadavg()[0]
    console.print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("both", "sqlite", "postgresql"), default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--fetches", type=int, default=1000)
    args = parser.parse_args()
    console = Console(width=160)
    results = []
    if args.db in ("both", "sqlite"):
        tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
        try:
            results.append(
                run("sqlite", f"sqlite:///{tmp}/evidence.db", tmp / "data", args.rows, args.fetches, console)
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.db in ("both", "postgresql"):
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"evidence_storage_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
        try:
            results.append(run("postgresql", url, tmp, args.rows, args.fetches, console))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    table = Table(title=f"bench_storage.py: {args.rows:,} deposits sealed as one batch")
    for col in (
        "database (durability)",
        "bytes/deposit",
        "per table (bytes/deposit)",
        "receipt cold p50 / p99 ms, CPU ms",
        "warm p50 / p99 ms, CPU ms",
        "1,000 receipts cold ms",
        "seal CPU µs/leaf",
        "load",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            f"{r['db']} ({r['durability']})",
            f"{r['bytes']:,.0f}",
            ", ".join(f"{t} {v:,.0f}" for t, v in r["tables"].items()),
            "{:.2f} / {:.2f}, {:.2f}".format(*r["cold"]),
            "{:.2f} / {:.2f}, {:.2f}".format(*r["warm"]),
            f"{r['bulk']:,.0f}",
            f"{r['seal_cpu'] / r['rows'] * 1e6:.1f}",
            f"{r['load']:.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
