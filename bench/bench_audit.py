"""Benchmark ``evidence audit``: audited evidence rows per second on a generated ledger, against a baseline.

    .venv/bin/python bench/bench_audit.py [--rows 200000] [--batch 10000] [--db URL] [--repeat 3] [--jobs 1,2]

Generates a ledger through the real code path (``sealing.record_evidence`` then ``sealing.seal_pending``) in a
throwaway SQLite file (default) or the PostgreSQL database ``--db`` (it must be empty: it is migrated here and
left filled), then times ``audit.audit_ledger`` for each ``--jobs`` value, the values interleaved run by run
(median and best of ``--repeat`` each). The baseline is the bare work the audit
cannot avoid for those rows: building each leaf's bytes from its columns, hashing it and building each batch
tree from the in-memory rows (no database, no proof comparison). Target (issue 15): >= 250,000 audited rows/s on
PostgreSQL, >= 300,000 on SQLite.

Because the machine may be shared, each audit is also timed in CPU seconds: this process and its worker processes
(``getrusage``), and, for ``--jobs 1`` on a PostgreSQL server on this machine, the server process serving the audit
(``/proc/<pid>/stat`` of ``pg_backend_pid()``; workers' server processes are not counted). The load average is
printed with the figures.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import resource
import statistics
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from service import sealing  # noqa: E402
from service.config import Settings  # noqa: E402
from service.core import merkle  # noqa: E402
from service.core.formats import format_time, leaf_bytes_columns, utc_now  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.storage import db, ledger  # noqa: E402
from service.storage.codec import from_us  # noqa: E402
from service.tenants import create_tenant, hash_api_key  # noqa: E402
from service.trust.audit import audit_ledger  # noqa: E402

TARGET = {"postgresql": 250_000, "sqlite": 300_000}  # issue 15, at 10^6 rows


def generate(runtime: Runtime, rows: int, batch: int) -> float:
    started = time.perf_counter()
    with runtime.engine.begin() as conn:
        tenant = ledger.tenant_for_key_hash(conn, hash_api_key(create_tenant(conn, "bench", utc_now())))
    assert tenant is not None
    done = 0
    while done < rows:
        n = min(batch, rows - done)
        with runtime.engine.begin() as conn:
            items = [(hashlib.sha256(os.urandom(16)).digest(), None) for _ in range(n)]
            sealing.record_evidence(conn, tenant, items, utc_now())
        sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=batch, max_age=3600, force=True)
        done += n
    return time.perf_counter() - started


def client_cpu() -> float:
    """CPU seconds of this process and its waited-for children (the audit's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def backend_pid(runtime: Runtime) -> int | None:
    """The pid of the PostgreSQL server process of the engine's pooled connection (the one a serial audit uses),
    if the server runs on this machine (its /proc entry is readable), else None."""
    if runtime.engine.dialect.name != "postgresql":
        return None
    with runtime.engine.connect() as conn:
        pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return pid if server_cpu(pid) is not None else None


def server_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def baseline(runtime: Runtime) -> tuple[float, float]:
    """Seconds and CPU seconds to rebuild every leaf and batch tree from rows already in memory (best of 3)."""
    e, bl = ledger.evidence, ledger.batch_leaves
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            e.select()
            .with_only_columns(bl.c.batch_seq, e.c.id, e.c.sha256, e.c.received_us)
            .select_from(bl.join(e, e.c.pk == bl.c.evidence_pk))
            .order_by(bl.c.batch_seq, bl.c.leaf_index)
        ).all()
    batches: dict[int, list[tuple[str, bytes, int]]] = {}
    for seq, id_, digest, received in rows:
        batches.setdefault(int(seq), []).append((str(id_), bytes(digest), int(received)))
    time_text = functools.lru_cache(maxsize=65_536)(lambda us: format_time(from_us(us)))  # as the audit does
    best = best_cpu = float("inf")
    for _ in range(3):
        started, cpu = time.perf_counter(), time.process_time()
        for items in batches.values():
            ids, digests, received = zip(*items, strict=True)
            times = list(map(time_text, received))
            leaves = leaf_bytes_columns(ids, digests, times)
            merkle.BatchTree([sha256(b"\x00" + x).digest() for x in leaves])
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--db", default="", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", default="1,2", help="comma-separated worker process counts to time (1: serial)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        url = args.db or f"sqlite:///{tmp}/evidence.db"
        db.upgrade(url)
        runtime = Runtime.from_settings(Settings(data_dir=Path(tmp), database_url=url))
        runtime.prepare_signing()
        try:
            generated = generate(runtime, args.rows, args.batch)
            job_counts = [int(j) for j in args.jobs.split(",")]
            times: dict[int, list[float]] = {j: [] for j in job_counts}
            cpus: dict[int, list[float]] = {j: [] for j in job_counts}
            servers: dict[int, list[float]] = {j: [] for j in job_counts}
            audit_ledger(runtime.engine, jobs=1)  # warm-up: imports, caches, the pooled connection
            pid = backend_pid(runtime)
            loads = [os.getloadavg()[0]]
            for _ in range(args.repeat):
                for jobs in job_counts:  # interleaved: a noisy machine slows every variant alike
                    cpu, server = client_cpu(), server_cpu(pid)
                    report = audit_ledger(runtime.engine, jobs=jobs)
                    cpus[jobs].append(client_cpu() - cpu)
                    after = server_cpu(pid)
                    if jobs == 1 and server is not None and after is not None:
                        servers[jobs].append(after - server)
                    if not report.ok:
                        print(f"audit (jobs={jobs}) found problems: {report.first}", file=sys.stderr)
                        return 1
                    times[jobs].append(report.seconds)
                loads.append(os.getloadavg()[0])
            base, base_cpu = baseline(runtime)
        finally:
            runtime.engine.dispose()

    table = Table(
        title=f"evidence audit on {runtime.engine.dialect.name}: {args.rows:,} rows in batches of {args.batch:,}"
    )
    for column in ("measure", "seconds", "rows/s", "CPU s (audit processes)", "CPU s (PostgreSQL server)"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    table.add_row("generate (record + seal)", f"{generated:.2f}", f"{args.rows / generated:,.0f}", "", "")
    rates = {}
    for jobs, runs in times.items():
        median, best = statistics.median(runs), min(runs)
        rates[jobs] = args.rows / median
        server = f"{statistics.median(servers[jobs]):.3f}" if servers[jobs] else "-"
        table.add_row(
            f"audit_ledger --jobs {jobs} (median; best of {args.repeat})",
            f"{median:.3f} ({best:.3f})",
            f"{args.rows / median:,.0f} ({args.rows / best:,.0f})",
            f"{statistics.median(cpus[jobs]):.3f}",
            server,
        )
    table.add_row(
        "baseline: leaf bytes + hashing + batch trees",
        f"{base:.3f}",
        f"{args.rows / base:,.0f}",
        f"{base_cpu:.3f}",
        "",
    )
    target = TARGET.get(runtime.engine.dialect.name, TARGET["postgresql"])
    table.add_row("target", "", f"{target:,}", "", "")
    Console(width=150).print(table)
    print(f"load average (1 min) during the audits: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    best_jobs = max(rates, key=lambda j: rates[j])
    print(
        " ".join(f"audit_jobs{j}_rows_per_s={r:.0f}" for j, r in rates.items()),
        f"RESULT audit_rows_per_s={rates[best_jobs]:.0f} (jobs={best_jobs}, median) "
        f"baseline_rows_per_s={args.rows / base:.0f} target={target} "
        f"{'PASS' if rates[best_jobs] >= target else 'BELOW TARGET'}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
