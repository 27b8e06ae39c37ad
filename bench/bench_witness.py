"""Witness and tile benchmarks (issue 13). Every figure is printed with a baseline from the same run and the ratio:

(a) sealing throughput with 3 witnesses against none: the embedded sealer's loop (``sealing.seal_pending`` of 10
    fresh digests per batch, one transaction each, SQLite) for ``--seconds``; with witnesses, the in-process
    ``WitnessThread`` asks three real ``evidence witness serve`` processes (127.0.0.1) after every seal, as
    ``evidence serve`` does. Rounds interleaved. Target ratio >= 0.9.
(b) seal -> quorum: batches sealed every 50 ms for ``--seconds`` with the witnesses of (a) (quorum: all three);
    for every ledger size, the time from its checkpoint being signed until some checkpoint covering it had the
    quorum stored (the moment a receipt stops answering 202). Median and p99. Target p99 <= 200 ms on loopback.
(c) tile serving: ``evidence serve`` (gunicorn, 2 workers x 4 threads) answering ``GET /log/tile/...`` for every
    tile and entry bundle of a 70,000-entry ledger, round robin (wrk + ``bench/wrk/tiles.lua``), against
    ``python -m http.server`` serving the directory ``evidence tiles export`` wrote. Target ratio >= 0.5.

    .venv/bin/python bench/bench_witness.py                 # about 3 minutes here
    .venv/bin/python bench/bench_witness.py --seconds 5 --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from bench_service import run_wrk  # noqa: E402

from service import sealing  # noqa: E402
from service.config import Settings  # noqa: E402
from service.core.formats import utc_now  # noqa: E402
from service.core.policy import parse_policy  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.storage import db, ledger  # noqa: E402
from service.tenants import create_tenant, hash_api_key  # noqa: E402
from service.witnessing import WitnessThread  # noqa: E402
from tests.integration.test_tiles import grow  # noqa: E402
from tests.support.processes import ServeProcess, WitnessProcess, child_env, free_port, http  # noqa: E402

TILES_LUA = BENCH / "wrk" / "tiles.lua"


def make_runtime(directory: Path, policy_text: str | None = None) -> Runtime:
    url = f"sqlite:///{directory}/evidence.db"
    db.upgrade(url)
    settings = Settings(data_dir=directory, database_url=url)
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    return runtime


def tenant_of(runtime: Runtime) -> int:
    with runtime.engine.begin() as conn:
        row = ledger.get_tenant_by_name(conn, "bench")
        if row is not None:
            return int(row.id)
        tenant_id = ledger.tenant_for_key_hash(conn, hash_api_key(create_tenant(conn, "bench", utc_now())))
        assert tenant_id is not None
        return tenant_id


def seal_one(runtime: Runtime, tenant: int, leaves: int = 10) -> None:
    with runtime.engine.begin() as conn:
        digests = [(hashlib.sha256(secrets.token_bytes(16)).digest(), None) for _ in range(leaves)]
        sealing.record_evidence(conn, tenant, digests, utc_now())
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=leaves, max_age=1.0, force=True)


def seal_for(runtime: Runtime, tenant: int, seconds: float, thread: WitnessThread | None) -> float:
    """Seals per second for ``seconds``, poking the witness thread after each seal as the Sealer does."""
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        seal_one(runtime, tenant)
        count += 1
        if thread is not None:
            thread.poke()
    return count / (time.perf_counter() - start)


def witnesses(tmp: Path, runtime: Runtime, n: int = 3) -> tuple[list[WitnessProcess], str]:
    procs = [
        WitnessProcess(tmp / f"w{i}", [runtime.signer.verifier.vkey], name=f"w{i}.bench/witness") for i in range(n)
    ]
    for p in procs:
        p.start()
    text = "".join(f"witness w{i} {p.vkey} {p.url}\n" for i, p in enumerate(procs))
    text += "group all-of-them all " + " ".join(f"w{i}" for i in range(n)) + "\nquorum all-of-them\n"
    return procs, text


def quorum_latencies(runtime: Runtime, n: int, since: int) -> list[float]:
    """For each ledger size > since: seconds from its checkpoint until a covering checkpoint had n cosignatures."""
    with runtime.engine.connect() as conn:
        created = {int(r.size): int(r.created_us) for r in ledger.checkpoints_from(conn, since + 1, 10**7)}
        rows = conn.execute(ledger.cosignatures.select().where(ledger.cosignatures.c.size > since)).all()
    by_size: dict[int, list[int]] = {}
    for r in rows:
        by_size.setdefault(int(r.size), []).append(int(r.created_us))
    quorum_at = {s: sorted(v)[n - 1] for s, v in by_size.items() if len(v) >= n}
    out = []
    best: int | None = None
    for size in sorted(created, reverse=True):  # the earliest quorum among checkpoints >= size
        if size in quorum_at:
            best = quorum_at[size] if best is None else min(best, quorum_at[size])
        if best is not None:
            out.append((best - created[size]) / 1e6)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_sealing(tmp: Path, seconds: float, rounds: int) -> None:
    runtime = make_runtime(tmp / "ledger")
    tenant = tenant_of(runtime)
    procs, policy_text = witnesses(tmp, runtime)
    policy = parse_policy(policy_text)
    try:
        with_w: list[float] = []
        without: list[float] = []
        seal_one(runtime, tenant)
        for _ in range(rounds):
            without.append(seal_for(runtime, tenant, seconds, None))
            thread = WitnessThread(runtime.engine, policy, wait=10.0, timeout=5.0)
            thread.start()
            with_w.append(seal_for(runtime, tenant, seconds, thread))
            thread.stop()
        a, b = statistics.median(with_w), statistics.median(without)
        print(f"(a) sealing, batches/s (10 leaves each), {rounds} interleaved rounds of {seconds:g} s:")
        print(f"    with 3 witnesses {a:8.1f}   without {b:8.1f}   ratio {a / b:.2f}   (target >= 0.9)")
        print(f"    rounds with: {[round(x, 1) for x in with_w]}  without: {[round(x, 1) for x in without]}")

        with runtime.engine.connect() as conn:
            start_size = ledger.ledger_size(conn)
        thread = WitnessThread(runtime.engine, policy, wait=10.0, timeout=5.0)
        thread.start()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            seal_one(runtime, tenant)
            thread.poke()
            time.sleep(0.05)
        time.sleep(1.0)
        thread.stop()
        lat = quorum_latencies(runtime, 3, start_size)
        print(f"(b) seal -> quorum of 3 witnesses, a batch every 50 ms for {seconds:g} s, {len(lat)} ledger sizes:")
        print(
            f"    median {statistics.median(lat) * 1000:.1f} ms   p99 {pct(lat, 0.99) * 1000:.1f} ms   "
            f"max {max(lat) * 1000:.1f} ms   (target p99 <= 200 ms)"
        )
    finally:
        for p in procs:
            p.stop()
        runtime.engine.dispose()


def bench_tiles(tmp: Path, seconds: float, rounds: int) -> None:
    data = tmp / "tiles-ledger"
    runtime = make_runtime(data)
    grow(runtime, {}, 0, 70_000)
    runtime.engine.dispose()
    out = tmp / "export"
    done = subprocess.run(
        [sys.executable, "-m", "service", "tiles", "export", str(out), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    paths = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "checkpoint")
    listing = tmp / "tiles.txt"
    listing.write_text("\n".join(paths) + "\n")
    serve = ServeProcess(data, {"EVIDENCE_RATE_LIMIT": "0"}, workers=2).start()
    port = free_port()
    static = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert http("GET", f"{serve.url}/log/{paths[0]}")[0] == 200
        os.environ["BENCH_TILE_LIST"] = str(listing)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(rounds):
            os.environ["BENCH_TILE_PREFIX"] = "/log/"
            r = run_wrk(f"{serve.url}/", seconds=seconds, connections=8, threads=2, script=TILES_LUA)
            if r.errors:
                raise SystemExit(f"tile serving answered {r.errors} errors")
            ours.append(r.rps)
            os.environ["BENCH_TILE_PREFIX"] = "/"
            r = run_wrk(f"http://127.0.0.1:{port}/", seconds=seconds, connections=8, threads=2, script=TILES_LUA)
            if r.errors:
                raise SystemExit(f"the static server answered {r.errors} errors")
            theirs.append(r.rps)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"(c) tile serving, requests/s over {len(paths)} tiles of a 70,000-entry ledger, {rounds} rounds:")
        print(
            f"    evidence serve /log/ {a:8.1f}   python -m http.server {b:8.1f}   ratio {a / b:.2f}   (target >= 0.5)"
        )
    finally:
        static.terminate()
        static.wait(timeout=10)
        serve.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["sealing", "tiles"], default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None and args.only != "sealing":
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print(f"load average before: {os.getloadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-witness-"))
    try:
        if args.only in (None, "sealing"):
            bench_sealing(tmp, args.seconds, args.rounds)
        if args.only in (None, "tiles"):
            bench_tiles(tmp, args.seconds, args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    threading.excepthook = lambda a: print(f"thread failed: {a.exc_value}", file=sys.stderr)
    main()
