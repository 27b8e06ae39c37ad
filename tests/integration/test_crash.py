"""Production-path fault tests: real Celery workers and beat, the real PostgreSQL and broker of this machine.

Each test gets its own throwaway database and broker queue, starts `celery -A workers.celery_app worker -c 1`
processes and `celery beat` with the environment pointing at them, and runs a producer thread that deposits
evidence (``sealing.record_evidence`` in committed transactions) while something goes wrong:

- nothing (4 workers, Redis), and a smaller RabbitMQ run;
- the worker process holding the ledger lock is SIGKILLed, again and again, in the middle of sealing;
- PostgreSQL is restarted under load (the producer retries; only committed deposits are acknowledged);
- the Redis broker is stopped for a few seconds, then started again.

Afterwards, once the workers drained the queue, ``check_ledger`` proves: every acknowledged deposit is sealed
exactly once (and nothing else is), the ledger has seq 0..n-1 with no gap and one checkpoint per size 0..n,
receipts verify (a sample of 200 plus every leaf of the last batch) against the server's key, and the ledger
log recomputed from the entries gives the latest checkpoint's root, whose signature verifies.

Services are always left running: every stop is undone in a ``finally``. Note that restarting PostgreSQL and
stopping Redis briefly disturbs whatever else uses them on this machine at that moment.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from service import keys, sealing
from service.core import merkle
from service.core.formats import Checkpoint, LedgerEntry, utc_now
from service.core.note import Signer, open_note
from service.core.verify import verify_receipt
from service.storage import db, ledger
from service.storage.codec import to_us
from tests.conftest import PG_ADMIN_URL, skip_or_fail

pytestmark = [pytest.mark.crash, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
REDIS_URL = os.environ.get("EVIDENCE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("EVIDENCE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
ORIGIN = "localhost/evidence-ledger"
REDIS_START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


# --- services ------------------------------------------------------------------------------------


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pg_cluster() -> str:
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
    return versions[-1]


def pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", pg_cluster(), "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def ensure_postgres_running() -> None:
    if not port_open("127.0.0.1", 5432):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", pg_cluster(), "main", "start"],
            capture_output=True,
            timeout=60,
        )
    wait_until(lambda: port_open("127.0.0.1", 5432), 60, "PostgreSQL to accept connections")


def redis_up() -> bool:
    return (
        subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True, timeout=5).stdout.strip()
        == "PONG"
    )


def ensure_redis_running() -> None:
    if not redis_up():
        os.makedirs("/var/lib/redis", exist_ok=True)
        os.makedirs("/var/log/redis", exist_ok=True)
        subprocess.run(REDIS_START, check=True, capture_output=True, timeout=30)
    wait_until(redis_up, 30, "Redis to answer PING")


@pytest.fixture
def crash_db() -> Iterator[str]:
    """A throwaway database; the admin engine has no pool, so a PostgreSQL restart cannot break the drop."""
    admin = create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 3}
    )
    name = f"evidence_crash_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        skip_or_fail(f"PostgreSQL unreachable: {exc.orig}")
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        ensure_postgres_running()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- the deployment under test -------------------------------------------------------------------


@dataclass
class Deployment:
    url: str
    broker: str
    queue: str
    tmp: Path
    signer: Signer
    engine: Engine
    tenant_id: int
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beat: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        # Own session: the whole worker (main process and pool child) can be stopped by its process group.
        with open(self.tmp / log_name, "ab") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                [CELERY, "-A", "workers.celery_app", *args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_worker(self) -> subprocess.Popen[bytes]:
        i = len(self.workers)
        proc = self._spawn(
            [
                "worker",
                "-c",
                "1",
                "-P",
                "prefork",
                "-n",
                f"w{i}-{self.queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            f"worker-{i}.log",
        )
        self.workers.append(proc)
        return proc

    def start_beat(self) -> None:
        self.beat = self._spawn(
            [
                "beat",
                "-s",
                str(self.tmp / "beat-schedule"),
                "--pidfile",
                str(self.tmp / "beat.pid"),
                "--loglevel",
                "INFO",
            ],
            "beat.log",
        )

    def pool_processes(self) -> list[psutil.Process]:
        """The pool child of each live worker (the process that runs the tasks)."""
        children: list[psutil.Process] = []
        for proc in self.workers:
            if proc.poll() is None:
                try:
                    children.extend(psutil.Process(proc.pid).children(recursive=True))
                except psutil.NoSuchProcess:
                    pass
        return children

    def stop(self) -> None:
        procs = [p for p in [*self.workers, self.beat] if p is not None]
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)

    def logs(self) -> str:
        parts = []
        for f in sorted(self.tmp.glob("*.log")):
            parts.append(f"==== {f.name} (tail)\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


@pytest.fixture
def deploy(crash_db: str, tmp_path: Path) -> Iterator[object]:
    """A factory: deploy(broker=..., batch_max_size=...) -> Deployment; everything is stopped afterwards."""
    made: list[Deployment] = []

    def make(*, broker: str = REDIS_URL, batch_max_size: int = 2000, batch_max_age: float = 1.0) -> Deployment:
        host, port = ("127.0.0.1", 6379) if broker.startswith("redis") else ("127.0.0.1", 5672)
        if not port_open(host, port):
            skip_or_fail(f"broker unreachable at {host}:{port}")
        db.upgrade(crash_db)
        key_file = tmp_path / "signing.key"
        signer = Signer.generate(ORIGIN)
        keys.write_signer(key_file, signer)
        engine = db.make_engine(crash_db)
        with engine.begin() as conn:
            tenant_id = ledger.insert_tenant(conn, "crash", to_us(utc_now()))
        queue = f"evidence-crash-{secrets.token_hex(4)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EVIDENCE_", "DATABASE_URL", "PROMETHEUS_"))}
        env.update(
            {
                "DATABASE_URL": crash_db,
                "EVIDENCE_BROKER_URL": broker,
                "EVIDENCE_CELERY_QUEUE": queue,
                "EVIDENCE_DATA_DIR": str(tmp_path),
                "EVIDENCE_SIGNING_KEY_FILE": str(key_file),
                "EVIDENCE_BATCH_MAX_SIZE": str(batch_max_size),
                "EVIDENCE_BATCH_MAX_AGE": str(batch_max_age),
                "EVIDENCE_ORIGIN": ORIGIN,
                "PYTHONPATH": str(ROOT),
            }
        )
        d = Deployment(crash_db, broker, queue, tmp_path, signer, engine, tenant_id, env)
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            d.stop()
            d.engine.dispose()
            if d.broker.startswith("amqp"):
                _delete_amqp_queue(d.broker, d.queue)
        ensure_postgres_running()
        ensure_redis_running()


def _delete_amqp_queue(url: str, queue: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.default_channel.queue_delete(queue)
    except Exception:  # noqa: BLE001 - best effort cleanup of a test queue
        pass


# --- the producer --------------------------------------------------------------------------------


class Producer(threading.Thread):
    """Deposits ``per_txn`` evidence per committed transaction until stopped, retrying through outages.

    ``acked``: ids whose transaction committed (what the API would have answered 202 for). ``ambiguous``: ids
    whose COMMIT failed with a lost connection: the server may or may not have committed them.
    """

    def __init__(self, url: str, tenant_id: int, per_txn: int = 100, pause: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.engine = db.make_engine(url)
        self.tenant_id = tenant_id
        self.per_txn = per_txn
        self.pause = pause
        self.acked: list[str] = []
        self.ambiguous: set[str] = set()
        self.failures = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            deposits: list[sealing.Deposit] | None = None
            items: list[tuple[bytes, str | None]] = [(os.urandom(32), None) for _ in range(self.per_txn)]
            try:
                with self.engine.begin() as conn:
                    deposits = sealing.record_evidence(conn, self.tenant_id, items, utc_now())
            except DBAPIError:
                self.failures += 1
                if deposits is not None:  # failed at COMMIT: outcome unknown
                    self.ambiguous.update(d.id for d in deposits)
                time.sleep(0.1)
                continue
            self.acked.extend(d.id for d in deposits)
            time.sleep(self.pause)

    def finish(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        assert not self.is_alive(), "producer did not stop"
        self.engine.dispose()


# --- the checks ----------------------------------------------------------------------------------


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return ledger.pending_count(conn)


def drain(d: Deployment, timeout: float = 60) -> None:
    """Wait until the workers (driven by beat) have sealed everything."""
    try:
        wait_until(
            lambda: pending_count(d.engine) == 0, timeout, "the workers to seal every pending deposit", interval=0.25
        )
    except AssertionError:
        raise AssertionError(f"{pending_count(d.engine)} still pending\n{d.logs()}") from None


def check_ledger(d: Deployment, producer: Producer, *, sample: int = 200) -> dict[str, int]:
    acked = set(producer.acked)
    assert len(acked) == len(producer.acked), "evidence ids must be unique"
    verifier = d.signer.verifier
    with d.engine.connect() as conn:
        q = lambda sql: conn.execute(text(sql)).all()  # noqa: E731
        assert q("SELECT count(*) FROM pending")[0][0] == 0
        stored = {r[0] for r in q("SELECT id FROM evidence")}
        sealed_rows = q(
            "SELECT e.id, b.batch_seq, b.leaf_index FROM evidence e JOIN batch_leaves b ON b.evidence_pk = e.pk"
        )
        sealed_ids = [r[0] for r in sealed_rows]
        # Exactly once: every acknowledged deposit is sealed, once; nothing unacknowledged but ambiguous is.
        assert len(sealed_ids) == len(set(sealed_ids)), "an evidence was sealed twice"
        assert acked <= set(sealed_ids), f"{len(acked - set(sealed_ids))} acknowledged deposits not sealed"
        assert set(sealed_ids) == stored, "stored evidence not sealed"
        assert stored - acked <= producer.ambiguous, "evidence nobody deposited"
        if not producer.ambiguous:
            assert len(sealed_ids) == len(acked)

        batches = q("SELECT seq, size, entry FROM batches ORDER BY seq")
        n = len(batches)
        assert n > 0
        assert [b.seq for b in batches] == list(range(n)), "gap in the ledger's seq"
        by_batch: dict[int, list[int]] = {}
        for _id, seq, index in sealed_rows:
            by_batch.setdefault(seq, []).append(index)
        prev_sealed = None
        for b in batches:
            assert sorted(by_batch[b.seq]) == list(range(b.size)), f"batch {b.seq} leaf indexes"
            entry = LedgerEntry.from_bytes(bytes(b.entry))
            assert (entry.seq, entry.size) == (b.seq, b.size)
            assert prev_sealed is None or entry.sealed >= prev_sealed
            prev_sealed = entry.sealed
        checkpoints = q("SELECT size, root, note FROM checkpoints ORDER BY size")
        assert [c.size for c in checkpoints] == list(range(n + 1)), "one checkpoint per ledger size"

        # The ledger log recomputed from the entries gives the latest checkpoint, signed by the server's key.
        entry_hashes = [merkle.leaf_hash(bytes(b.entry)) for b in batches]
        root = merkle.root_from_leaf_hashes(entry_hashes)
        latest = checkpoints[-1]
        signed = open_note(bytes(latest.note), [verifier])
        assert signed.verified == (verifier,)
        body = Checkpoint.from_bytes(signed.text)
        assert (body.origin, body.size, body.root) == (ORIGIN, n, root)
        assert bytes(latest.root) == root
        for c in checkpoints[:-1]:  # every older checkpoint is a signed prefix of the same log
            cp = Checkpoint.from_bytes(open_note(bytes(c.note), [verifier]).text)
            assert cp.root == merkle.root_from_leaf_hashes(entry_hashes[: c.size])

        last_seq = n - 1
        chosen = {i for i, seq, _ in sealed_rows if seq == last_seq}
        chosen |= set(random.sample(sealed_ids, min(sample, len(sealed_ids))))
        for evidence_id in chosen:
            receipt = sealing.receipt_for(conn, d.tenant_id, evidence_id, keys=[verifier.vkey])
            assert receipt is not None
            result = verify_receipt(receipt, trusted_keys=[verifier])
            assert result.valid, (evidence_id, result.step, result.reason)
    return {"acked": len(acked), "sealed": len(sealed_ids), "batches": n, "receipts": len(chosen)}


def run_load(
    d: Deployment, seconds: float, during: object = None, *, per_txn: int = 100, pause: float = 0.02
) -> Producer:
    producer = Producer(d.url, d.tenant_id, per_txn=per_txn, pause=pause)
    producer.start()
    try:
        if during is not None:
            during(seconds)  # type: ignore[operator]
        else:
            time.sleep(seconds)
    finally:
        producer.finish()
    return producer


def start(d: Deployment, workers: int) -> None:
    for _ in range(workers):
        d.start_worker()
    d.start_beat()


def assert_sealing_started(d: Deployment, timeout: float = 30) -> None:
    def sealed_something() -> bool:
        with d.engine.connect() as conn:
            return ledger.ledger_size(conn) > 0

    try:
        wait_until(sealed_something, timeout, "the first batch")
    except AssertionError:
        raise AssertionError(d.logs()) from None


# --- the tests -----------------------------------------------------------------------------------


def test_four_workers_and_beat_seal_every_deposit_exactly_once(deploy: object) -> None:
    d: Deployment = deploy()  # type: ignore[operator]
    start(d, 4)
    producer = run_load(d, 6)
    assert_sealing_started(d)
    drain(d)
    stats = check_ledger(d, producer)
    assert stats["acked"] > 1000
    assert stats["batches"] >= 3


def test_worker_killed_while_holding_the_ledger_lock_loses_and_duplicates_nothing(deploy: object) -> None:
    # Big batches make every sealing run long; the killer SIGKILLs the very process inside a sealing
    # transaction (found through pg_locks -> client port -> the worker's socket), again and again.
    d: Deployment = deploy(batch_max_size=5000)  # type: ignore[operator]
    start(d, 4)
    kills: list[int] = []
    whole_worker_killed = False

    def killer(seconds: float) -> None:
        nonlocal whole_worker_killed
        deadline = time.monotonic() + seconds
        with d.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            while time.monotonic() < deadline:
                holder = lock_holder(d, conn)
                if holder is None:
                    time.sleep(0.02)
                    continue
                if not whole_worker_killed and len(kills) == 2:
                    # Once: kill a whole worker (main process and pool child), then start a new one.
                    parent = holder.parent()
                    if parent is not None:
                        os.killpg(parent.pid, signal.SIGKILL)
                        whole_worker_killed = True
                        d.start_worker()
                else:
                    holder.send_signal(signal.SIGKILL)
                kills.append(holder.pid)
                time.sleep(random.uniform(0.2, 0.6))

    producer = run_load(d, 10, killer, per_txn=200, pause=0.01)
    assert len(kills) >= 3, f"only {len(kills)} workers killed mid-seal\n{d.logs()}"
    assert whole_worker_killed
    drain(d)
    stats = check_ledger(d, producer)
    assert stats["acked"] > 5000


def lock_holder(d: Deployment, conn: object) -> psutil.Process | None:
    """The worker pool process whose database session holds the ledger lock right now (mid-sealing)."""
    lock = ledger.LEDGER_LOCK_ID
    row = conn.execute(  # type: ignore[attr-defined]
        text(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"hi": lock >> 32, "lo": lock & 0xFFFFFFFF},
    ).first()
    if row is None or row[0] is None:
        return None
    for proc in d.pool_processes():
        try:
            for c in proc.net_connections(kind="tcp"):
                if c.laddr and c.laddr.port == row[0] and c.raddr and c.raddr.port == 5432:
                    return proc
        except psutil.Error:
            continue
    return None


def test_postgres_restart_under_load_loses_and_duplicates_nothing(deploy: object) -> None:
    d: Deployment = deploy(batch_max_size=3000)  # type: ignore[operator]
    start(d, 4)

    def restart_postgres(seconds: float) -> None:
        assert_sealing_started(d)
        time.sleep(seconds / 2)
        try:
            pg_ctl("restart")
        finally:
            ensure_postgres_running()
        time.sleep(seconds / 2)

    producer = run_load(d, 6, restart_postgres)
    assert producer.failures > 0, "the restarts should have interrupted the producer"
    d.engine.dispose()  # its pooled connections died with the server
    drain(d)
    stats = check_ledger(d, producer)
    assert stats["acked"] > 1000


def test_redis_broker_stopped_then_started_under_load_loses_and_duplicates_nothing(deploy: object) -> None:
    d: Deployment = deploy()  # type: ignore[operator]
    start(d, 4)
    sealed_before_stop: list[int] = []

    def stop_redis(seconds: float) -> None:
        assert_sealing_started(d)  # the workers are up and sealing through the broker
        time.sleep(seconds / 3)
        with d.engine.connect() as conn:
            sealed_before_stop.append(ledger.ledger_size(conn))
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=10)
        try:
            wait_until(lambda: not port_open("127.0.0.1", 6379), 10, "Redis to stop")
            time.sleep(4)
            with d.engine.connect() as conn:  # nothing is sealed without the broker...
                assert ledger.pending_count(conn) > 0
        finally:
            ensure_redis_running()
        time.sleep(seconds / 3)

    producer = run_load(d, 9, stop_redis)
    assert sealed_before_stop[0] > 0, d.logs()
    drain(d)  # ...and everything is sealed once it is back.
    check_ledger(d, producer)


@pytest.mark.rabbitmq
def test_rabbitmq_broker_two_workers_seal_exactly_once(deploy: object) -> None:
    d: Deployment = deploy(broker=AMQP_URL, batch_max_size=1000)  # type: ignore[operator]
    start(d, 2)
    producer = run_load(d, 4)
    assert_sealing_started(d)
    drain(d)
    stats = check_ledger(d, producer)
    assert stats["acked"] > 500
