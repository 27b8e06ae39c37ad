"""Benchmark of the production write path on PostgreSQL: deposits per second and sealing time per batch.

Usage: python bench/bench_ingest_pg.py [--admin-url URL] [--deposits 100000] [--per-txn 1,100,1000]
                                       [--batch 10000] [--producers 1]

In a throwaway database (created and dropped on the server of --admin-url, default the test server):
- ingest: ``sealing.record_evidence`` of ``per_txn`` digests per committed transaction (what one API request
  of the single POST, resp. a batch POST, costs in the database), by ``producers`` threads; deposits/s;
- seal: ``sealing.seal_batch`` of ``--batch`` pending leaves in one transaction (tree, proofs, ledger nodes,
  checkpoint signature, pending delete), repeated until nothing is pending; leaves/s and seconds per batch.
First figures (2026-11-29, --deposits 50000, 2 CPUs shared with other test runs, load average 7-8): 261
deposits/s at 1 per transaction (a commit each), 6,260/s at 100, 13,600/s at 1000; sealing 7,800 leaves/s,
median 1.12 s per batch of 10,000 (tree, proofs, ledger nodes, signed checkpoint).
Owns: nothing the service imports. Must not be imported by service code.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from service import sealing  # noqa: E402
from service.core.formats import utc_now  # noqa: E402
from service.core.note import Signer  # noqa: E402
from service.storage import db, ledger  # noqa: E402
from service.storage.codec import to_us  # noqa: E402

DEFAULT_ADMIN = os.environ.get("EVIDENCE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def ingest(url: str, tenant_id: int, total: int, per_txn: int, producers: int) -> float:
    """Deposit ``total`` digests, ``per_txn`` per transaction, from ``producers`` threads; seconds taken."""
    engine = db.make_engine(url)
    per_thread = total // producers // per_txn

    def produce() -> None:
        for _ in range(per_thread):
            items: list[tuple[bytes, str | None]] = [(os.urandom(32), None) for _ in range(per_txn)]
            with engine.begin() as conn:
                sealing.record_evidence(conn, tenant_id, items, utc_now())

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def seal_all(url: str, batch: int) -> list[tuple[int, float]]:
    """Seal everything pending in batches of ``batch``; (size, seconds) of each batch."""
    engine = db.make_engine(url)
    signer = Signer.generate("bench/evidence-ledger")
    out: list[tuple[int, float]] = []
    while True:
        t0 = time.perf_counter()
        with engine.begin() as conn:
            result = sealing.seal_batch(conn, signer, utc_now(), batch)
        if result is None:
            break
        out.append((result.size, time.perf_counter() - t0))
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN)
    parser.add_argument("--deposits", type=int, default=100_000)
    parser.add_argument("--per-txn", default="1,100,1000")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--producers", type=int, default=1)
    args = parser.parse_args()

    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"evidence_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        db.upgrade(url)
        engine = db.make_engine(url)
        with engine.begin() as conn:
            tenant_id = ledger.insert_tenant(conn, "bench", to_us(utc_now()))
        engine.dispose()
        print("| per txn | deposits | producers | seconds | deposits/s |\n|---|---|---|---|---|")
        for per_txn in (int(x) for x in args.per_txn.split(",")):
            total = args.deposits if per_txn > 1 else min(args.deposits, 5_000)
            seconds = ingest(url, tenant_id, total, per_txn, args.producers)
            done = total // args.producers // per_txn * per_txn * args.producers
            print(f"| {per_txn} | {done} | {args.producers} | {seconds:.2f} | {done / seconds:,.0f} |")
        batches = seal_all(url, args.batch)
        full = [s for n, s in batches if n == args.batch] or [s for _, s in batches]
        leaves = sum(n for n, _ in batches)
        seconds = sum(s for _, s in batches)
        print(
            f"\nsealed {leaves} leaves in {len(batches)} batches, {seconds:.2f} s: {leaves / seconds:,.0f} leaves/s; "
            f"median {statistics.median(full):.3f} s per batch of {args.batch}"
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
