"""How the costs grow with the ledger: fill PostgreSQL through the bulk API with sealing on, measure at each size.

A throwaway database ``evidence_scale_<random>`` on $EVIDENCE_TEST_PG_ADMIN_URL (default postgres@127.0.0.1),
dropped at the end. The app is ``create_app`` in this process (Flask test client: the whole ``POST
/v1/evidence/batch`` request, JSON parse, validation, idempotency row, one round trip), its in-process sealer
thread seals while the deposits arrive (``EVIDENCE_BATCH_MAX_SIZE`` 10,000, ``EVIDENCE_BATCH_MAX_AGE`` 1 s).
At each size (default 10^5 and 10^6 evidence rows; ``--sizes`` adds 10^7 where there is time and disk):

- deposit rate: digests/s of the bulk requests that grew the ledger to this size (10,000 per request);
- receipt fetch: ``GET /v1/evidence/{id}/receipt`` of random sealed ids, one at a time, p50 / p99;
- audit rate: ``evidence audit``'s ``audit_ledger`` (one process) over the whole ledger, rows/s;
- bytes per deposit: (``pg_database_size`` - the size of the freshly migrated database) / evidence rows after
  ``VACUUM ANALYZE``, and the largest tables' ``pg_total_relation_size`` / evidence rows.

Durability: PostgreSQL as configured (``synchronous_commit`` is printed). A plot ``bench/scale.png`` shows the
four figures against the size (log x axis), so the growth of each (flat, log, linear) is visible.

    .venv/bin/python bench/bench_scale.py                      # 10^5 and 10^6 (about 10 minutes on 2 cores)
    .venv/bin/python bench/bench_scale.py --sizes 100000,1000000,10000000
"""

from __future__ import annotations

import argparse
import json
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

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from service.api import create_app, stop_sealer  # noqa: E402
from service.config import Settings  # noqa: E402
from service.core.formats import utc_now  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.storage import db  # noqa: E402
from service.tenants import create_tenant  # noqa: E402
from service.trust.audit import audit_ledger  # noqa: E402

PG_ADMIN_URL = os.environ.get("EVIDENCE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
CHUNK = 10_000


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def deposit_random(client: Any, headers: dict[str, str], count: int) -> list[str]:
    """Deposit ``count`` random digests through ``POST /v1/evidence/batch`` (Flask test client), ``CHUNK`` per
    request, each with its own Idempotency-Key as a client would send; return the evidence ids in order."""
    ids: list[str] = []
    while len(ids) < count:
        n = min(CHUNK, count - len(ids))
        body = json.dumps({"items": [{"sha256": os.urandom(32).hex()} for _ in range(n)]})
        r = client.post(
            "/v1/evidence/batch",
            data=body,
            headers={**headers, "Idempotency-Key": secrets.token_hex(8)},
            content_type="application/json",
        )
        if r.status_code != 202:
            raise SystemExit(f"batch: {r.status_code} {r.get_data(as_text=True)[:300]}")
        ids.extend(item["id"] for item in r.get_json()["items"])
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--fetches", type=int, default=1000)
    parser.add_argument("--plot", default=str(Path(__file__).with_name("scale.png")))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    console = Console(width=150)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"evidence_scale_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    rows: list[dict[str, float]] = []
    try:
        db.upgrade(url)
        with admin.connect() as conn:  # the empty schema's own size is not a cost per deposit
            empty_bytes = conn.execute(text(f"SELECT pg_database_size('{name}')")).scalar_one()
        tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
        settings = Settings(data_dir=tmp, database_url=url, rate_limit=0, batch_max_size=CHUNK, batch_max_age=1.0)
        runtime = Runtime.from_settings(settings)
        runtime.prepare_signing()
        with runtime.engine.begin() as conn:
            key = create_tenant(conn, "scale", utc_now())
            sync = conn.execute(text("SHOW synchronous_commit")).scalar_one()
        app = create_app(runtime=runtime, start_sealer=True)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        ids: list[str] = []
        rng = random.Random(7)
        try:
            for size in sizes:
                t0 = time.perf_counter()
                grown = size - len(ids)
                ids.extend(deposit_random(client, headers, grown))
                deposit_rate = grown / (time.perf_counter() - t0)
                while True:  # let the sealer finish
                    with runtime.engine.connect() as conn:
                        if conn.execute(text("SELECT count(*) FROM pending")).scalar_one() == 0:
                            break
                    time.sleep(0.5)
                latencies = []
                for evidence_id in rng.sample(ids, min(args.fetches, len(ids))):
                    f0 = time.perf_counter()
                    r = client.get(f"/v1/evidence/{evidence_id}/receipt", headers=headers)
                    latencies.append((time.perf_counter() - f0) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"receipt {evidence_id}: {r.status_code}")
                report = audit_ledger(runtime.engine)
                if not report.ok:
                    raise SystemExit(f"audit found problems: {report.findings[:3]}")
                with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM ANALYZE"))
                    db_bytes = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
                    tables = conn.execute(
                        text(
                            "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relkind = 'r' "
                            "AND relnamespace = 'public'::regnamespace ORDER BY 2 DESC LIMIT 4"
                        )
                    ).all()
                rows.append(
                    {
                        "size": size,
                        "deposit_rate": deposit_rate,
                        "p50": statistics.median(latencies),
                        "p99": pct(latencies, 99),
                        "audit_rate": size / report.seconds,
                        "bytes": (db_bytes - empty_bytes) / size,
                        "tables": ", ".join(f"{t} {b / size:,.0f}" for t, b in tables),  # type: ignore[dict-item]
                        "load": os.getloadavg()[0],
                    }
                )
                console.print(rows[-1])
        finally:
            stop_sealer(app)
            runtime.engine.dispose()
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    table = Table(title=f"bench_scale.py: PostgreSQL (synchronous_commit={sync}), bulk API, sealing on")
    for col in (
        "evidence rows",
        "deposit digests/s",
        "receipt p50 / p99 ms",
        "audit rows/s",
        "bytes/deposit",
        "largest tables (bytes/deposit)",
        "load avg",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{int(r['size']):,}",
            f"{r['deposit_rate']:,.0f}",
            f"{r['p50']:.2f} / {r['p99']:.2f}",
            f"{r['audit_rate']:,.0f}",
            f"{r['bytes']:,.0f}",
            str(r["tables"]),
            f"{r['load']:.1f}",
        )
    console.print(table)
    plot(rows, Path(args.plot))
    console.print(f"plot: {args.plot}")


def plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = (
        ("deposit digests/s", [r["deposit_rate"] for r in rows], None),
        ("receipt fetch ms (p50, p99)", [r["p50"] for r in rows], [r["p99"] for r in rows]),
        ("audit rows/s", [r["audit_rate"] for r in rows], None),
        ("bytes per deposit", [r["bytes"] for r in rows], None),
    )
    for ax, (title, ys, ys2) in zip(axes, panels, strict=True):
        ax.plot(sizes, ys, marker="o")
        if ys2 is not None:
            ax.plot(sizes, ys2, marker="s", linestyle="--")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("evidence rows")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
