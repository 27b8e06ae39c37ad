"""RFC 3161 time-stamping of ledger entries (SPEC §5, §6 step 7) against a real local TSA (openssl ts -reply).

Sealing never waits for a TSA; ``timestamp_pending`` adds tokens afterwards, receipts then carry them, the
offline verifier reports their genTime and authority, and ``openssl ts -verify`` accepts every stored token.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from service import sealing
from service.config import Settings, TimestampAuthority
from service.core.errors import ConfigError, TimestampError
from service.core.formats import format_time, utc_now
from service.core.verify import verify_receipt
from service.runtime import Runtime
from service.storage import db, ledger
from service.tenants import create_tenant, hash_api_key
from service.timestamping import TimestampThread, load_tsa_roots, timestamp_batch, timestamp_pending
from tests import factories
from tests.support.local_tsa import LocalTSA, openssl_verify

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl binary is not installed")


@pytest.fixture
def tsa() -> Iterator[LocalTSA]:
    with LocalTSA(name="Ledger Test TSA") as authority:
        yield authority


def make_runtime(tmp_path: Path, url: str, tsas: list[LocalTSA]) -> Runtime:
    return factories.make_runtime(
        tmp_path,
        url,
        tsa=tuple(TimestampAuthority(f"tsa{i}", t.url) for i, t in enumerate(tsas)),
        tsa_ca_files=tuple(t.ca_cert_path for t in tsas),
    )


@pytest.fixture
def runtime(tmp_path: Path, db_url: str, tsa: LocalTSA) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path, db_url, [tsa])
    yield rt
    rt.engine.dispose()


def deposit_and_seal(runtime: Runtime, n: int = 3, tenant: str = "acme") -> tuple[int, list[str]]:
    with runtime.engine.begin() as conn:
        row = ledger.get_tenant_by_name(conn, tenant)
        if row is None:
            api_key = create_tenant(conn, tenant, utc_now())
            tenant_id = ledger.tenant_for_key_hash(conn, hash_api_key(api_key))
            assert tenant_id is not None
        else:
            tenant_id = int(row.id)
        digests = [hashlib.sha256(f"file {time.monotonic_ns()} {i}".encode()).digest() for i in range(n)]
        deposits = sealing.record_evidence(conn, tenant_id, [(d, None) for d in digests], utc_now())
    results = sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=1000, max_age=1.0, force=True)
    assert len(results) == 1
    return tenant_id, [d.id for d in deposits]


def receipt(runtime: Runtime, tenant_id: int, evidence_id: str) -> dict[str, object]:
    with runtime.engine.connect() as conn:
        doc = sealing.receipt_for(conn, tenant_id, evidence_id)
    assert doc is not None
    return doc


def test_sweep_stores_a_verified_token_and_the_receipt_carries_it(runtime: Runtime, tsa: LocalTSA) -> None:
    tenant_id, ids = deposit_and_seal(runtime)
    assert receipt(runtime, tenant_id, ids[0])["timestamps"] == []

    report = timestamp_pending(runtime.engine, runtime.settings)
    assert [(t.seq, t.tsa) for t in report.stored] == [(0, "tsa0")]
    assert report.failed == []
    assert report.stored[0].authority == "Ledger Test TSA"

    doc = receipt(runtime, tenant_id, ids[1])
    assert len(doc["timestamps"]) == 1  # type: ignore[arg-type]
    roots = load_tsa_roots([tsa.ca_cert_path])
    with runtime.engine.connect() as conn:
        keys = [k.verifier for k in [runtime.signer]]
        stored = ledger.timestamps_for_batch(conn, 0)
    result = verify_receipt(doc, trusted_keys=keys, tsa_roots=roots)
    assert result.valid, result.reason
    gen_time = format_time(result.timestamps[0].gen_time)
    step7 = [c for c in result.checks if c.step == 7]
    assert step7 and step7[0].checked and gen_time in step7[0].detail and "Ledger Test TSA" in step7[0].detail
    assert result.statement is not None
    assert f"no later than {gen_time} per Ledger Test TSA" in result.statement
    # the stored genTime is the token's
    assert stored[0].gen_time_us == sealing.to_us(result.timestamps[0].gen_time)

    # A second sweep finds nothing to do and asks the TSA nothing.
    before = tsa.request_count
    assert timestamp_pending(runtime.engine, runtime.settings).stored == []
    assert tsa.request_count == before


def test_openssl_accepts_every_stored_token(runtime: Runtime, tsa: LocalTSA) -> None:
    for _ in range(3):
        deposit_and_seal(runtime, n=2)
    report = timestamp_pending(runtime.engine, runtime.settings)
    assert sorted(t.seq for t in report.stored) == [0, 1, 2]
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(ledger.timestamps.c.token, ledger.batches.c.entry).join(
                ledger.batches, ledger.batches.c.seq == ledger.timestamps.c.batch_seq
            )
        ).all()
    assert len(rows) == 3
    for token, entry in rows:
        assert openssl_verify(bytes(token), bytes(entry), tsa.ca_cert_path)
        assert not openssl_verify(bytes(token), bytes(entry) + b" ", tsa.ca_cert_path)


def test_a_down_tsa_never_blocks_sealing_and_a_later_sweep_adds_the_token(runtime: Runtime, tsa: LocalTSA) -> None:
    tsa.down("refuse")
    tenant_id, ids = deposit_and_seal(runtime)  # sealing does not talk to the TSA at all
    report = timestamp_pending(runtime.engine, runtime.settings)
    assert report.stored == [] and [(s, n) for s, n, _ in report.failed] == [(0, "tsa0")]
    assert "could not be reached" in report.failed[0][2]
    doc = receipt(runtime, tenant_id, ids[0])
    assert doc["timestamps"] == []
    assert verify_receipt(doc, trusted_keys=[runtime.signer.verifier]).valid

    tsa.up()
    report = timestamp_pending(runtime.engine, runtime.settings)
    assert [t.seq for t in report.stored] == [0]
    later = receipt(runtime, tenant_id, ids[0])
    assert len(later["timestamps"]) == 1  # type: ignore[arg-type]
    result = verify_receipt(later, trusted_keys=[runtime.signer.verifier], tsa_roots=load_tsa_roots([tsa.ca_cert_path]))
    assert result.valid and result.timestamps


def test_timestamp_batch_raises_for_a_503_and_succeeds_on_retry(tmp_path: Path, sqlite_url: str) -> None:
    with LocalTSA(fail_first=2) as flaky:
        rt = make_runtime(tmp_path, sqlite_url, [flaky])
        try:
            deposit_and_seal(rt)
            for _ in range(2):
                with pytest.raises(TimestampError, match="HTTP 503"):
                    timestamp_batch(rt.engine, rt.settings, 0)
            stored = timestamp_batch(rt.engine, rt.settings, 0)
            assert [t.tsa for t in stored] == ["tsa0"]
            assert flaky.request_count == 3
            assert timestamp_batch(rt.engine, rt.settings, 0) == []  # already done: nothing asked
            assert flaky.request_count == 3
        finally:
            rt.engine.dispose()


def test_one_tsa_down_does_not_stop_the_other(tmp_path: Path, sqlite_url: str) -> None:
    with LocalTSA(name="Up TSA") as up, LocalTSA(name="Down TSA") as down:
        rt = make_runtime(tmp_path, sqlite_url, [down, up])
        try:
            deposit_and_seal(rt)
            down.down("503")
            with pytest.raises(TimestampError, match="tsa0"):
                timestamp_batch(rt.engine, rt.settings, 0)
            with rt.engine.connect() as conn:
                assert [t.tsa for t in ledger.timestamps_for_batch(conn, 0)] == ["tsa1"]
            down.up()
            assert [t.tsa for t in timestamp_batch(rt.engine, rt.settings, 0)] == ["tsa0"]
        finally:
            rt.engine.dispose()


def test_a_token_from_an_untrusted_tsa_is_not_stored(tmp_path: Path, sqlite_url: str) -> None:
    with LocalTSA(name="Trusted") as trusted, LocalTSA(name="Impostor") as impostor:
        db.upgrade(sqlite_url)
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=sqlite_url,
            tsa=(TimestampAuthority("main", impostor.url),),
            tsa_ca_files=(trusted.ca_cert_path,),
        )
        rt = Runtime.from_settings(settings)
        rt.prepare_signing()
        try:
            deposit_and_seal(rt)
            with pytest.raises(TimestampError, match="does not verify against the trusted roots"):
                timestamp_batch(rt.engine, settings, 0)
            with rt.engine.connect() as conn:
                assert ledger.timestamps_for_batch(conn, 0) == []
        finally:
            rt.engine.dispose()


def test_tsa_without_trusted_certificate_is_a_config_error(tmp_path: Path, sqlite_url: str, tsa: LocalTSA) -> None:
    db.upgrade(sqlite_url)
    settings = Settings(data_dir=tmp_path, database_url=sqlite_url, tsa=(TimestampAuthority("x", tsa.url),))
    rt = Runtime.from_settings(settings)
    rt.prepare_signing()
    try:
        with pytest.raises(ConfigError, match="EVIDENCE_TSA_CA_FILES"):
            timestamp_pending(rt.engine, settings)
    finally:
        rt.engine.dispose()


def test_timestamp_thread_sweeps_after_a_poke(tmp_path: Path, sqlite_url: str, tsa: LocalTSA) -> None:
    rt = make_runtime(tmp_path, sqlite_url, [tsa])
    thread = TimestampThread(rt.engine, rt.settings, interval=60)
    thread.start()
    try:
        deposit_and_seal(rt)
        thread.poke()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with rt.engine.connect() as conn:
                if ledger.timestamps_for_batch(conn, 0):
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the time-stamp thread stored no token within 20 s")
    finally:
        thread.stop()
        rt.engine.dispose()
    assert not thread.is_alive()
    assert thread.errors == 0


# --- the Celery tasks, called without a broker (eager apply runs the retries in-process) ------------


def test_celery_timestamp_entry_retries_503s_then_stores(tmp_path: Path, sqlite_url: str) -> None:
    from workers import tasks, timestamp_tasks

    with LocalTSA(fail_first=2) as flaky:
        rt = make_runtime(tmp_path, sqlite_url, [flaky])
        tasks.use_runtime(rt)
        try:
            deposit_and_seal(rt)
            result = timestamp_tasks.timestamp_entry.apply(args=[0])
            assert result.successful(), result.traceback
            assert result.get() == 1
            assert flaky.request_count == 3  # two 503s, then the token
            with rt.engine.connect() as conn:
                assert len(ledger.timestamps_for_batch(conn, 0)) == 1
        finally:
            tasks.use_runtime(None)
            rt.engine.dispose()
    options = timestamp_tasks.timestamp_entry
    assert options.autoretry_for == (TimestampError,)
    assert options.retry_backoff is True and options.retry_jitter is True
    assert options.max_retries == timestamp_tasks.MAX_RETRIES


def test_celery_sweep_logs_failures_and_stores_later(tmp_path: Path, sqlite_url: str, tsa: LocalTSA) -> None:
    from workers import tasks, timestamp_tasks

    rt = make_runtime(tmp_path, sqlite_url, [tsa])
    tasks.use_runtime(rt)
    try:
        deposit_and_seal(rt)
        tsa.down("503")
        assert timestamp_tasks.timestamp_pending.apply().get() == 0
        tsa.up()
        assert timestamp_tasks.timestamp_pending.apply().get() == 1
    finally:
        tasks.use_runtime(None)
        rt.engine.dispose()
