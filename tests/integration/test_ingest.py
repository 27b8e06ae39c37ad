"""service.ingest.GroupCommitter on real SQLite and PostgreSQL: group commit of single deposits.

Acknowledged = committed: a deposit returned by ``submit`` is in the database (seen from another connection)
exactly once and pending; a group whose transaction fails fails every request in it and stores none; ``stop``
commits or fails what is queued and no thread is left hanging. The database is made to wait or refuse by
holding its write lock (SQLite ``BEGIN IMMEDIATE``) or a table lock (PostgreSQL ``LOCK TABLE evidence``) from
another connection.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from service import sealing
from service.api import create_app, stop_sealer
from service.api.state import EXTENSION_KEY, ApiState
from service.config import Settings
from service.core.errors import Pushback
from service.core.formats import utc_now
from service.ingest import GroupCommitter
from service.runtime import Runtime
from service.sealing import Deposit
from service.storage import db, ledger
from service.storage.codec import to_us
from service.tenants import create_tenant

JOIN_TIMEOUT = 60.0


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_tenants(engine: Engine, *names: str) -> list[int]:
    ids = []
    with engine.begin() as conn:
        for name in names:
            create_tenant(conn, name, utc_now())
            tenant = ledger.get_tenant_by_name(conn, name)
            assert tenant is not None
            ids.append(int(tenant.id))
    return ids


def digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


@contextmanager
def database_held(url: str) -> Iterator[None]:
    """Another connection holds what a deposit transaction needs until the block ends."""
    holder = db.make_engine(url)
    try:
        with holder.connect() as conn:
            if is_sqlite(url):
                conn.begin()  # BEGIN IMMEDIATE: the write lock
            else:
                conn.begin()
                conn.execute(text("LOCK TABLE evidence IN EXCLUSIVE MODE"))  # conflicts with INSERT's lock
            try:
                yield
            finally:
                conn.rollback()
    finally:
        holder.dispose()


def impatient_engine(url: str, seconds: float) -> Engine:
    """An engine whose transactions give up waiting for a lock after ``seconds``."""
    if is_sqlite(url):
        return db.make_engine(url, sqlite_busy_timeout=seconds)
    return create_engine(url, connect_args={"options": f"-c lock_timeout={int(seconds * 1000)}"})


def stored(engine: Engine) -> dict[str, tuple[int, bytes, str | None, int, bool]]:
    """id -> (tenant_id, sha256, label, received_us, pending) of every evidence row."""
    query = select(
        ledger.evidence.c.id,
        ledger.evidence.c.tenant_id,
        ledger.evidence.c.sha256,
        ledger.evidence.c.label,
        ledger.evidence.c.received_us,
        ledger.pending.c.evidence_pk.is_not(None),
    ).outerjoin(ledger.pending, ledger.pending.c.evidence_pk == ledger.evidence.c.pk)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        total = conn.execute(select(func.count()).select_from(ledger.evidence)).scalar_one()
    assert total == len(rows)
    out = {str(r[0]): (int(r[1]), bytes(r[2]), r[3], int(r[4]), bool(r[5])) for r in rows}
    assert len(out) == len(rows), "an evidence id is stored twice"
    return out


def run_threads(target: Callable[[int], None], n: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    return threads


def join_all(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a request thread hangs"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


def start_behind_a_blocked_writer(
    committer: GroupCommitter, work: Callable[[int], None], n: int
) -> tuple[threading.Thread, list[threading.Thread]]:
    """With the database held: request 0 is taken by the writer (which then waits for the database), requests
    1..n-1 are queued behind it. Returns (thread of request 0, the other threads)."""
    (first,) = run_threads(work, 1)
    wait_until(lambda: committer.in_flight() == 1, "the writer took the first request")
    rest = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(1, n)]
    for t in rest:
        t.start()
    wait_until(lambda: committer.waiting() == n - 1, "every other request is queued")
    return first, rest


def test_concurrent_deposits_are_each_committed_once_with_distinct_ids(engine: Engine) -> None:
    tenants = make_tenants(engine, "acme", "globex")
    committer = GroupCommitter(engine)
    reader = engine.execution_options(sqlite_begin="DEFERRED")
    n_threads, per_thread = 24, 10
    barrier = threading.Barrier(n_threads)
    acknowledged: list[tuple[Deposit, int, bytes, str | None]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        try:
            barrier.wait()
            for j in range(per_thread):
                tenant, sha, label = tenants[k % 2], digest(k, j), (f"file-{k}-{j}" if j % 2 else None)
                deposit = committer.submit(tenant, sha, label, timeout=30)
                if j == 0:  # acknowledged = committed: another connection sees it now (SQLite: without waiting
                    # for the write lock, which a plain BEGIN IMMEDIATE would do)
                    with reader.connect() as conn:
                        seen = conn.execute(
                            select(ledger.evidence.c.sha256).where(ledger.evidence.c.id == deposit.id)
                        ).scalar_one_or_none()
                    assert seen is not None and bytes(seen) == sha
                with lock:
                    acknowledged.append((deposit, tenant, sha, label))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            with lock:
                failures.append(exc)

    join_all(run_threads(work, n_threads))
    assert failures == []
    ids = [d.id for d, *_ in acknowledged]
    assert len(ids) == n_threads * per_thread and len(set(ids)) == len(ids)

    rows = stored(engine)
    assert set(rows) == set(ids)  # nothing extra, nothing missing
    for deposit, tenant, sha, label in acknowledged:
        assert deposit.sha256 == sha and deposit.label == label
        assert rows[deposit.id] == (tenant, sha, label, to_us(deposit.received), True)

    stats = committer.stats()
    assert stats.rows == len(ids) and stats.failed_rows == 0
    assert stats.groups <= len(ids)
    committer.stop()
    assert not committer.running()


def test_requests_waiting_while_the_writer_is_busy_share_one_transaction(engine: Engine, migrated_db_url: str) -> None:
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    n = 20
    results: dict[int, Deposit] = {}

    def work(k: int) -> None:
        results[k] = committer.submit(tenant, digest(k), f"#{k}", timeout=30)

    with database_held(migrated_db_url):
        first, rest = start_behind_a_blocked_writer(committer, work, n)
    join_all([first, *rest])

    stats = committer.stats()
    assert (stats.groups, stats.rows, stats.largest) == (2, n, n - 1)
    later = {results[k].received for k in range(1, n)}
    assert len(later) == 1  # one transaction, one received time
    assert set(stored(engine)) == {d.id for d in results.values()}
    committer.stop()


def test_a_failed_transaction_fails_every_request_of_its_group_and_stores_none(
    engine: Engine, migrated_db_url: str
) -> None:
    (tenant,) = make_tenants(engine, "acme")
    impatient = impatient_engine(migrated_db_url, 0.5)
    committer = GroupCommitter(impatient)
    n = 16
    barrier = threading.Barrier(n)
    outcomes: dict[int, BaseException | Deposit] = {}

    def work(k: int) -> None:
        barrier.wait()
        try:
            outcomes[k] = committer.submit(tenant, digest(k), None, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcomes[k] = exc

    try:
        with database_held(migrated_db_url):
            join_all(run_threads(work, n))
        assert len(outcomes) == n
        for outcome in outcomes.values():
            assert isinstance(outcome, OperationalError), outcome  # locked / lock timeout: the API's 503
        assert stored(engine) == {}  # nothing acknowledged, nothing stored
        stats = committer.stats()
        assert stats.failed_rows == n and stats.rows == 0
        assert stats.failed_groups < n  # some group held several requests, and all of them failed

        # The writer goes on with the next group once the database accepts writes again.
        deposit = committer.submit(tenant, digest("after"), None, timeout=30)
        assert list(stored(engine)) == [deposit.id]
    finally:
        committer.stop()
        impatient.dispose()


def test_a_request_withdrawn_by_its_timeout_is_not_stored(engine: Engine, migrated_db_url: str) -> None:
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    first: dict[str, Deposit] = {}

    def work(_k: int) -> None:
        first["deposit"] = committer.submit(tenant, digest("first"), None, timeout=30)

    with database_held(migrated_db_url):
        threads = run_threads(work, 1)
        wait_until(lambda: committer.in_flight() == 1, "the writer took the first request")
        t0 = time.monotonic()
        with pytest.raises(Pushback, match="withdrawn: not recorded"):
            committer.submit(tenant, digest("late"), None, timeout=0.3)
        assert time.monotonic() - t0 < 5
    join_all(threads)
    committer.stop()
    assert list(stored(engine)) == [first["deposit"].id]  # the writer skipped the withdrawn request


def test_stop_commits_the_queued_requests_then_refuses_new_ones(engine: Engine, migrated_db_url: str) -> None:
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    n = 10
    results: dict[int, Deposit] = {}

    def work(k: int) -> None:
        results[k] = committer.submit(tenant, digest(k), None, timeout=30)

    with database_held(migrated_db_url):
        first, rest = start_behind_a_blocked_writer(committer, work, n)
        stopper = threading.Thread(target=committer.stop, kwargs={"timeout": 30.0}, daemon=True)
        stopper.start()
        time.sleep(0.2)  # stop() is now waiting for the writer, which waits for the database
        assert stopper.is_alive()
    join_all([first, *rest, stopper])
    assert len(results) == n
    assert set(stored(engine)) == {d.id for d in results.values()}
    assert not committer.running()
    with pytest.raises(Pushback, match="shutting down"):
        committer.submit(tenant, digest("late"), None, timeout=1)


def test_stop_fails_what_a_stuck_writer_has_not_taken(engine: Engine, migrated_db_url: str) -> None:
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    n = 10
    outcomes: dict[int, BaseException | Deposit] = {}

    def work(k: int) -> None:
        try:
            outcomes[k] = committer.submit(tenant, digest(k), None, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcomes[k] = exc

    with database_held(migrated_db_url):
        first, rest = start_behind_a_blocked_writer(committer, work, n)
        t0 = time.monotonic()
        committer.stop(timeout=0.3)
        assert time.monotonic() - t0 < 5
        join_all(rest)  # failed at once, while the writer is still stuck
        assert first.is_alive()  # its transaction is still waiting: its outcome is that transaction's
    join_all([first])
    wait_until(lambda: not committer.running(), "the writer exits after its last transaction")

    assert isinstance(outcomes[0], Deposit)
    for k in range(1, n):
        outcome = outcomes[k]
        assert isinstance(outcome, Pushback) and "stopped before" in outcome.reason
    assert list(stored(engine)) == [outcomes[0].id]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_writer(engine: Engine) -> None:
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    parent = committer.submit(tenant, digest("parent"), None, timeout=30)
    assert committer.running()
    pid = os.fork()
    if pid == 0:  # the child: the parent's writer thread does not exist here
        code = 1
        try:
            engine.dispose(close=False)  # never use the parent's pooled connections
            committer.submit(tenant, digest("child"), None, timeout=20)
            code = 0 if committer.running() else 3
        except BaseException:  # noqa: BLE001 - the exit code reports it
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rows = stored(engine)
    assert parent.id in rows and sorted(r[1] for r in rows.values()) == sorted([digest("parent"), digest("child")])
    committer.stop()


def test_the_deposit_view_commits_through_the_apps_committer(tmp_path: Path, migrated_db_url: str) -> None:
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=migrated_db_url))
    runtime.prepare_signing()
    app = create_app(runtime=runtime, start_sealer=False)
    try:
        with runtime.engine.begin() as conn:
            key = create_tenant(conn, "acme", utc_now())
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        threaded = {"wsgi.multithread": True}  # as under gunicorn gthread (the test client says False)
        # A single-threaded server: committed inline, the committer's writer is never started.
        inline = client.post("/v1/evidence", json={"sha256": "ef" * 32}, headers=headers)
        assert inline.status_code == 202, inline.get_data(as_text=True)
        state = app.extensions[EXTENSION_KEY]
        assert isinstance(state, ApiState) and state.committer is not None
        assert not state.committer.running() and state.committer.stats().rows == 0

        response = client.post(
            "/v1/evidence?label=a.pdf", json={"sha256": "ab" * 32}, headers=headers, environ_overrides=threaded
        )
        assert response.status_code == 202, response.get_data(as_text=True)
        body = response.get_json()
        assert response.headers["Location"].endswith(f"/v1/evidence/{body['id']}")
        assert state.committer.stats().rows == 1
        assert stored(runtime.engine)[body["id"]][1:3] == (bytes.fromhex("ab" * 32), "a.pdf")
        stop_sealer(app)
        assert not state.committer.running()
        refused = client.post("/v1/evidence", json={"sha256": "cd" * 32}, headers=headers, environ_overrides=threaded)
        assert refused.status_code == 503 and refused.headers["Retry-After"]
    finally:
        stop_sealer(app)
        runtime.engine.dispose()


# --- PostgreSQL: one round trip per group ---------------------------------------------------------------------


class _CountingConnection(psycopg2.extensions.connection):  # type: ignore[misc]
    """psycopg2 connection that notes every statement sent (with whether it ran in autocommit) and every commit."""

    log: list[tuple[str, bool]]

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cursor_factory", _CountingCursor)
        return super().cursor(*args, **kwargs)

    def commit(self) -> None:
        self.log.append(("COMMIT", self.autocommit))
        super().commit()


class _CountingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
    def execute(self, query: Any, vars: Any = None) -> Any:  # noqa: A002 - psycopg2's own parameter name
        self.connection.log.append((str(query).split()[0].upper(), self.connection.autocommit))
        return super().execute(query, vars)


@pytest.mark.postgres
def test_a_group_on_postgres_is_one_autocommit_statement(pg_migrated_url: str) -> None:
    """BEGIN, INSERT, COMMIT were three round trips per group (psycopg2 sends BEGIN before the first statement of
    a transaction); one prepared statement in autocommit mode is one, and it commits the whole group."""
    log: list[tuple[str, bool]] = []

    def connect(*args: Any, **kwargs: Any) -> _CountingConnection:
        conn = _CountingConnection(*args, **kwargs)
        conn.log = log
        return conn

    counting = create_engine(pg_migrated_url, connect_args={"connection_factory": connect}, pool_size=1)
    (tenant,) = make_tenants(counting, "acme")
    committer = GroupCommitter(counting)
    try:
        log.clear()
        first = committer.submit(tenant, digest("first"), None, timeout=30)
        assert log == [("PREPARE", True), ("EXECUTE", True)]  # prepared once per connection
        log.clear()
        labelled = committer.submit(tenant, digest("second"), "a.pdf", timeout=30, sm3=b"\x07" * 32)
        assert log == [("EXECUTE", True)]  # no BEGIN (autocommit), no COMMIT: one round trip
        rows = stored(counting)
        assert rows[first.id][1:3] == (digest("first"), None) and rows[first.id][4]
        assert rows[labelled.id][1:3] == (digest("second"), "a.pdf") and rows[labelled.id][4]
        # The pooled connection went back in transaction mode, as SQLAlchemy's other users expect it.
        with counting.connect() as conn:
            assert conn.connection.driver_connection.autocommit is False
            # The v2 row that binds the label and the SM3 digest (SPEC §2.1), only where there is one.
            v2 = dict(
                conn.execute(
                    select(ledger.evidence.c.id, ledger.evidence_v2.c.sm3).join(
                        ledger.evidence_v2, ledger.evidence_v2.c.evidence_pk == ledger.evidence.c.pk
                    )
                ).all()
            )
        assert v2 == {labelled.id: b"\x07" * 32}
    finally:
        committer.stop()
        counting.dispose()


@pytest.mark.postgres
def test_a_lost_postgres_connection_fails_its_group_as_a_database_error_and_is_replaced(pg_migrated_url: str) -> None:
    engine = create_engine(pg_migrated_url, pool_size=1)
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    try:
        committer.submit(tenant, digest("before"), None, timeout=30)
        with engine.connect() as conn:  # the one pooled connection: the committer's
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        admin = create_engine(pg_migrated_url)
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        admin.dispose()
        with pytest.raises(OperationalError) as failed:  # the API answers it 503 with Retry-After
            committer.submit(tenant, digest("lost"), None, timeout=30)
        assert failed.value.connection_invalidated
        after = committer.submit(tenant, digest("after"), None, timeout=30)  # a new connection, prepared again
        rows = stored(engine)
        assert after.id in rows and digest("lost") not in {r[1] for r in rows.values()}
    finally:
        committer.stop()
        engine.dispose()


# --- SQLite: the background writers queue on one lock ----------------------------------------------------------


def _holds_write_lock_elsewhere(engine: Engine) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """Another thread takes ``db.write_lock(engine)`` and holds it until the returned ``release`` is set."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write_lock(engine):
            taken.set()
            release.wait(JOIN_TIMEOUT)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(JOIN_TIMEOUT)
    return taken, release, holder


def test_sqlite_group_commits_and_seals_wait_in_line_on_the_write_lock(tmp_path: Path) -> None:
    """The group committer and the sealer queue on ``<database>-writelock`` (a kernel lock: a waiter is woken when
    it is released) instead of polling SQLite's write lock with growing sleeps, where the other process's writer
    re-took it first again and again (deposit p99 0.4-2 s in bench_service.py (a))."""
    url = f"sqlite:///{tmp_path}/evidence.db"
    db.upgrade(url)
    engine = db.make_engine(url)
    lock_file = db.write_lock_path(engine)
    assert lock_file == tmp_path / "evidence.db-writelock"
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    try:
        _, release, holder = _holds_write_lock_elsewhere(engine)
        done: dict[str, Deposit] = {}
        (waiter,) = run_threads(lambda k: done.setdefault("d", committer.submit(tenant, digest(k), None, 30)), 1)
        wait_until(lambda: committer.in_flight() == 1, "the writer took the request")
        time.sleep(0.3)
        assert not done and stored(engine) == {}  # in line behind the holder, not in SQLite's busy loop
        release.set()
        join_all([waiter, holder])
        assert list(stored(engine)) == [done["d"].id]
        assert oct(lock_file.stat().st_mode & 0o777) == "0o600"

        runtime = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=url))
        runtime.prepare_signing()
        _, release, holder = _holds_write_lock_elsewhere(engine)
        sealed: list[object] = []
        sealer = threading.Thread(
            target=lambda: sealed.extend(
                sealing.seal_pending(engine, runtime.signer, max_leaves=100, max_age=0.0, force=True)
            ),
            daemon=True,
        )
        sealer.start()
        time.sleep(0.3)
        assert sealer.is_alive() and not sealed
        release.set()
        join_all([sealer, holder])
        assert len(sealed) == 1
        runtime.engine.dispose()
    finally:
        committer.stop()
        engine.dispose()


def test_the_write_lock_is_a_no_op_without_a_database_file(tmp_path: Path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:", "postgresql+psycopg2://nobody@127.0.0.1:1/none"):
        engine = create_engine(url)
        assert db.write_lock_path(engine) is None
        with db.write_lock(engine), db.write_lock(engine):  # nothing taken, so nesting cannot block
            pass
        engine.dispose()


def test_a_group_stores_the_v2_row_of_each_labelled_or_sm3_deposit_and_no_other(engine: Engine) -> None:
    """The group paths (PostgreSQL: one prepared statement; SQLite: the sqlite3 connection itself) store what
    ``sealing.record_deposits`` stores: a v2 row, with the SM3 digest if any, for a label or an SM3 digest."""
    (tenant,) = make_tenants(engine, "acme")
    committer = GroupCommitter(engine)
    plans = {0: (None, None), 1: ("a.pdf", None), 2: (None, b"\x05" * 32), 3: ("b.pdf", b"\x06" * 32)}
    results: dict[int, Deposit] = {}
    barrier = threading.Barrier(len(plans))

    def work(k: int) -> None:
        barrier.wait()
        label, sm3 = plans[k]
        results[k] = committer.submit(tenant, digest(k), label, timeout=30, sm3=sm3)

    try:
        join_all(run_threads(work, len(plans)))
        rows = stored(engine)
        for k, (label, _) in plans.items():
            assert rows[results[k].id][1:3] == (digest(k), label) and rows[results[k].id][4]
        with engine.connect() as conn:
            v2 = dict(
                conn.execute(
                    select(ledger.evidence.c.id, ledger.evidence_v2.c.sm3).join(
                        ledger.evidence_v2, ledger.evidence_v2.c.evidence_pk == ledger.evidence.c.pk
                    )
                ).all()
            )
        assert v2 == {results[k].id: plans[k][1] for k in (1, 2, 3)}
    finally:
        committer.stop()


def test_the_write_lock_keeps_no_file_open(tmp_path: Path) -> None:
    """Opened per use: a long-lived thread writing to many databases (a test run, a CLI) piles up no descriptors."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    engines = [create_engine(f"sqlite:///{tmp_path}/db{k}.db") for k in range(20)]
    before = len(list(fds.iterdir()))
    for engine in engines:
        with db.write_lock(engine):
            pass
    assert len(list(fds.iterdir())) == before
    for engine in engines:
        engine.dispose()
