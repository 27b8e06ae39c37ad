"""``evidence audit`` on SQLite and PostgreSQL: a sound ledger passes; each kind of tampering is caught and named.

Tampering bypasses the append-only triggers the way an attacker with database superuser rights would:
PostgreSQL ``SET session_replication_role = replica`` (no triggers, no foreign keys), SQLite a raw connection
that drops the triggers and turns foreign keys off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from service import sealing
from service.config import TimestampAuthority
from service.core import merkle
from service.core.formats import Checkpoint, Leaf, utc_now
from service.core.note import Signer, sign_note
from service.runtime import Runtime
from service.storage import ledger
from service.tenants import create_tenant, hash_api_key
from service.timestamping import load_tsa_roots, timestamp_pending
from service.trust import audit as audit_module
from service.trust.audit import AuditReport, _leaf_hashes, audit_ledger
from tests.factories import make_runtime, seal_as_before_0007
from tests.support.local_tsa import LocalTSA

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl binary is not installed")
BATCHES = (5, 3, 4)


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl binary is not installed")
    with LocalTSA(name="Audit TSA") as authority:
        yield authority


@pytest.fixture(params=[1, 2], ids=["serial", "jobs2"])
def jobs(request: pytest.FixtureRequest) -> int:
    """Every audit test runs serially and with two worker processes (one range per batch here): same findings."""
    return int(request.param)


@pytest.fixture
def runtime(tmp_path: Path, db_url: str, tsa: LocalTSA, jobs: int) -> Iterator[Runtime]:
    """A ledger of three batches (5, 3 and 4 leaves), two evidence rows pending, every entry time-stamped."""
    rt = make_runtime(tmp_path, db_url, tsa=(TimestampAuthority("tsa0", tsa.url),), tsa_ca_files=(tsa.ca_cert_path,))
    with rt.engine.begin() as conn:
        tenant_id = ledger.tenant_for_key_hash(conn, hash_api_key(create_tenant(conn, "acme", utc_now())))
    assert tenant_id is not None
    for n in (*BATCHES, 2):
        with rt.engine.begin() as conn:
            digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(n)]
            # batch 1 is labelled: its deposits have v2 leaves, which bind the label (SPEC §2.1)
            labels = [f"合同 {i}.pdf" if n == BATCHES[1] else None for i in range(n)]
            sealing.record_evidence(conn, tenant_id, list(zip(digests, labels, strict=True)), utc_now())
        if n != 2:
            sealing.seal_pending(rt.engine, rt.signer, max_leaves=100, max_age=1, force=True)
    assert len(timestamp_pending(rt.engine, rt.settings).stored) == len(BATCHES)
    yield rt
    rt.engine.dispose()


def run_audit(rt: Runtime, *, jobs: int, grace: float = 3600.0, roots: bool = True) -> AuditReport:
    return audit_ledger(
        rt.engine,
        jobs=jobs,
        tsa_names=[t.name for t in rt.settings.tsa],
        tsa_roots=load_tsa_roots(rt.settings.tsa_ca_files) if roots else [],
        token_grace=grace,
    )


def tamper(engine: Engine, *statements: str, params: dict[str, Any] | None = None) -> None:
    """Run ``statements`` as a database superuser would, bypassing the append-only triggers."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for sql in statements:
                conn.execute(text(sql), params or {})
        return
    raw = sqlite3.connect(url.database or "", isolation_level=None)
    try:
        raw.execute("PRAGMA foreign_keys = OFF")
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            raw.execute(f'DROP TRIGGER "{name}"')
        for sql in statements:
            # sqlite3 uses :name too; SQLAlchemy's text() is not in the way here
            raw.execute(sql, params or {})
    finally:
        raw.close()


def sealed_evidence(rt: Runtime, seq: int, index: int) -> Any:
    with rt.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT e.pk, e.id FROM evidence e JOIN batch_leaves b ON b.evidence_pk = e.pk "
                "WHERE b.batch_seq = :s AND b.leaf_index = :i"
            ),
            {"s": seq, "i": index},
        ).one()


def assert_first(report: AuditReport, table: str, key: str, *words: str) -> None:
    assert not report.ok
    first = report.first
    assert first is not None
    assert first.table == table, str(first)
    assert key in first.key, str(first)
    for word in words:
        assert word in first.problem, str(first)


# --- the hot path agrees with the reference implementations -----------------------------------------


def test_the_audits_leaf_hashes_equal_the_reference() -> None:
    """The audit hashes a batch from its columns (``formats.leaf_bytes_columns`` + ``merkle.leaf_hashes``): the
    same hashes as ``merkle.leaf_hash(Leaf(...).to_bytes())``, also for rows sharing one received time."""
    received = utc_now()
    for n in (1, 2, 3, 100):
        leaves = [
            Leaf(f"id-{i}", hashlib.sha256(bytes([i])).digest(), received if i % 2 else utc_now()) for i in range(n)
        ]
        hashes = _leaf_hashes(
            [x.id for x in leaves], [x.sha256 for x in leaves], [sealing.to_us(x.received) for x in leaves]
        )
        assert hashes == [merkle.leaf_hash(x.to_bytes()) for x in leaves]


# --- a sound ledger ----------------------------------------------------------------------------------


def test_a_sound_ledger_passes_every_check(runtime: Runtime, jobs: int) -> None:
    report = run_audit(runtime, jobs=jobs, grace=0)
    assert report.ok, [str(f) for f in report.findings]
    assert report.ledger_size == 3
    checked = report.checked
    assert checked["evidence leaves recompute to their batch root"] == sum(BATCHES)
    assert checked["batch tiles verify"] == len(BATCHES)  # one tile of leaf hashes each: no stored proofs since 0007
    assert "stored leaf proofs verify" not in checked
    assert checked["batch roots recompute"] == 3
    assert checked["checkpoint roots recompute"] == 4  # sizes 0..3
    assert checked["checkpoint signatures verify"] == 4
    assert checked["consecutive checkpoints consistent"] == 3
    assert checked["ledger proofs verify"] == 3
    assert checked["evidence rows sealed exactly once or pending"] == sum(BATCHES) + 2
    assert checked["tokens verify"] == 3
    assert report.unchecked == {}


def test_tokens_without_trusted_roots_are_reported_not_checked(runtime: Runtime, jobs: int) -> None:
    report = run_audit(runtime, jobs=jobs, roots=False)
    assert report.ok
    assert report.unchecked == {"tokens (no trusted TSA certificate given)": 3}


# --- tampering ---------------------------------------------------------------------------------------


def test_changed_digest_is_named(runtime: Runtime, jobs: int) -> None:
    victim = sealed_evidence(runtime, 1, 2)
    tamper(
        runtime.engine,
        "UPDATE evidence SET sha256 = :d WHERE pk = :pk",
        params={"d": hashlib.sha256(b"forged").digest(), "pk": victim.pk},
    )
    report = run_audit(runtime, jobs=jobs)
    assert_first(
        report, "evidence", f"pk={victim.pk} (id {victim.id})", "leaf 2 of batch 1", "sealed in its batch's tiles"
    )
    assert report.finding_count == 1


def test_changed_label_of_a_v2_deposit_is_named(runtime: Runtime, jobs: int) -> None:
    """Issue 14: a label edited in the database was invisible to the audit; a v2 leaf binds it."""
    assert run_audit(runtime, jobs=jobs).ok
    victim = sealed_evidence(runtime, 1, 1)
    tamper(runtime.engine, "UPDATE evidence SET label = 'another label' WHERE pk = :pk", params={"pk": victim.pk})
    report = run_audit(runtime, jobs=jobs)
    assert_first(report, "evidence", f"pk={victim.pk} (id {victim.id})", "leaf 1 of batch 1", "the label")
    assert report.finding_count == 1


def test_v2_part_of_a_labelled_deposit_removed_is_named(runtime: Runtime, jobs: int) -> None:
    victim = sealed_evidence(runtime, 1, 0)
    tamper(runtime.engine, "DELETE FROM evidence_v2 WHERE evidence_pk = :pk", params={"pk": victim.pk})
    report = run_audit(runtime, jobs=jobs)
    assert_first(
        report, "evidence", f"pk={victim.pk} (id {victim.id})", "leaf 0 of batch 1", "sealed in its batch's tiles"
    )


def test_changed_tile_is_named(runtime: Runtime, jobs: int) -> None:
    """Issue 15: batches keep tiles instead of a proof per leaf; a changed leaf hash in them is named."""
    with runtime.engine.connect() as conn:
        tile = ledger.get_batch_tiles(conn, 2, [(0, 0)])[(0, 0)]
    forged = tile[:64] + hashlib.sha256(b"forged").digest() + tile[96:]
    tamper(runtime.engine, "UPDATE batch_tiles SET hashes = :h WHERE batch_seq = 2 AND level = 0", params={"h": forged})
    report = run_audit(runtime, jobs=jobs)
    assert_first(report, "batch_tiles", "batch_seq=2, level=0, idx=0", "tree level 0", "hash 2 differs")
    assert report.finding_count == 1


def test_deleted_tile_is_named(runtime: Runtime, jobs: int) -> None:
    tamper(runtime.engine, "DELETE FROM batch_tiles WHERE batch_seq = 0")
    report = run_audit(runtime, jobs=jobs)
    assert_first(report, "batch_tiles", "batch_seq=0, level=0, idx=0", "is missing")
    assert report.finding_count == 1


def test_changed_stored_proof_of_a_batch_sealed_before_0007_is_named(
    tmp_path: Path, db_url: str, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches sealed with a stored proof per leaf (before migration 0007) are still checked leaf by leaf."""
    rt = make_runtime(tmp_path, db_url)
    try:
        with rt.engine.begin() as conn:
            tenant_id = ledger.insert_tenant(conn, "acme", 0)
            digests = [hashlib.sha256(bytes([i])).digest() for i in range(6)]
            sealing.record_evidence(conn, tenant_id, [(d, None) for d in digests], utc_now())
        seal_as_before_0007(rt, monkeypatch, 6)
        report = audit_ledger(rt.engine, jobs=jobs)
        assert report.ok, [str(f) for f in report.findings]
        assert report.checked["stored leaf proofs verify"] == 6
        assert "batch tiles verify" not in report.checked
        victim = sealed_evidence(rt, 0, 3)
        tamper(
            rt.engine,
            "UPDATE batch_leaves SET proof = :p WHERE evidence_pk = :pk",
            params={"p": hashlib.sha256(b"x").digest() * 3, "pk": victim.pk},
        )
        report = audit_ledger(rt.engine, jobs=jobs)
        assert_first(report, "evidence", f"pk={victim.pk}", "leaf 3 of batch 0", "stored proof")
        assert report.finding_count == 1
    finally:
        rt.engine.dispose()


def test_deleted_evidence_row_is_named(runtime: Runtime, jobs: int) -> None:
    victim = sealed_evidence(runtime, 0, 4)
    tamper(runtime.engine, "DELETE FROM evidence WHERE pk = :pk", params={"pk": victim.pk})
    assert_first(
        run_audit(runtime, jobs=jobs),
        "batch_leaves",
        f"evidence_pk={victim.pk}",
        "leaf 4 of batch 0",
        "evidence row is missing",
    )


@pytest.mark.parametrize("bad_id", ["with space", "two\nlines", "x" * 65])
def test_invalid_evidence_id_is_named(runtime: Runtime, jobs: int, bad_id: str) -> None:
    """Ids are checked all at once on the hot path (one regex over the joined ids): a newline must not split an
    invalid id into valid-looking lines."""
    victim = sealed_evidence(runtime, 1, 1)
    tamper(runtime.engine, "UPDATE evidence SET id = :id WHERE pk = :pk", params={"id": bad_id, "pk": victim.pk})
    assert_first(
        run_audit(runtime, jobs=jobs), "evidence", f"pk={victim.pk}", "is not a valid evidence id", repr(bad_id)
    )


def test_deleted_leaf_and_evidence_is_named(runtime: Runtime, jobs: int) -> None:
    victim = sealed_evidence(runtime, 2, 1)
    tamper(
        runtime.engine,
        "DELETE FROM batch_leaves WHERE evidence_pk = :pk",
        "DELETE FROM evidence WHERE pk = :pk",
        params={"pk": victim.pk},
    )
    assert_first(
        run_audit(runtime, jobs=jobs),
        "batch_leaves",
        "batch_seq=2",
        "3 leaves stored for a batch of size 4",
        "leaf index 1 is missing",
    )


def test_swapped_batch_root_is_named(runtime: Runtime, jobs: int) -> None:
    with runtime.engine.connect() as conn:
        other = ledger.get_batch(conn, 0)
    assert other is not None
    tamper(runtime.engine, "UPDATE batches SET root = :r WHERE seq = 1", params={"r": bytes(other.root)})
    assert_first(run_audit(runtime, jobs=jobs), "batches", "seq=1", "root column", "differs from the entry's root")


def test_rewritten_entry_is_caught_by_the_log(runtime: Runtime, jobs: int) -> None:
    """A whole new entry (new root, consistent row) no longer matches its leaves, nodes and checkpoints."""
    with runtime.engine.connect() as conn:
        row = ledger.get_batch(conn, 1)
    assert row is not None
    from service.core.formats import LedgerEntry

    forged_root = hashlib.sha256(b"another batch").digest()
    entry = LedgerEntry(1, int(row.size), forged_root, row.sealed).to_bytes()
    tamper(
        runtime.engine, "UPDATE batches SET root = :r, entry = :e WHERE seq = 1", params={"r": forged_root, "e": entry}
    )
    report = run_audit(runtime, jobs=jobs)
    # The leaves still hash to what its tiles sealed: the entry's root is what changed (before 0007, with a proof
    # per leaf, leaf 0 was named: its stored proof no longer reached the root).
    assert_first(report, "batches", "seq=1", "root recomputed from its 3 evidence leaves")
    tables = {f.table for f in report.findings}
    assert {"batches", "ledger_nodes", "checkpoints"} <= tables


def test_forged_checkpoint_is_named(runtime: Runtime, jobs: int) -> None:
    with runtime.engine.connect() as conn:
        row = ledger.checkpoint_at(conn, 2)
    assert row is not None
    attacker = Signer.generate(runtime.signer.name)  # same name, other key
    note = sign_note(Checkpoint(runtime.signer.name, 2, bytes(row.root)).to_bytes(), [attacker])
    tamper(
        runtime.engine,
        "UPDATE checkpoints SET note = :n, key_hash = :k WHERE size = 2",
        params={"n": note, "k": attacker.key_hash},
    )
    assert_first(
        run_audit(runtime, jobs=jobs), "checkpoints", "size=2", "does not verify with any published signing key"
    )


def test_checkpoint_for_another_root_is_named(runtime: Runtime, jobs: int) -> None:
    forged_root = hashlib.sha256(b"fork").digest()
    note = sign_note(Checkpoint(runtime.signer.name, 3, forged_root).to_bytes(), [runtime.signer])
    tamper(
        runtime.engine,
        "UPDATE checkpoints SET note = :n, root = :r WHERE size = 3",
        params={"n": note, "r": forged_root},
    )
    assert_first(run_audit(runtime, jobs=jobs), "checkpoints", "size=3", "differs from the ledger log root")


def test_removed_token_is_named(runtime: Runtime, jobs: int) -> None:
    tamper(runtime.engine, "DELETE FROM timestamps WHERE batch_seq = 1")
    assert_first(run_audit(runtime, jobs=jobs, grace=0), "timestamps", "seq=1", "no token from TSA 'tsa0'")
    # within the grace period the same gap is only a note (the TSA may be catching up)
    report = run_audit(runtime, jobs=jobs, grace=3600)
    assert report.ok and any("wait for a token" in note for note in report.notes)


def test_altered_token_is_named(runtime: Runtime, jobs: int) -> None:
    with runtime.engine.connect() as conn:
        token = bytes(ledger.timestamps_for_batch(conn, 0)[0].token)
    altered = bytearray(token)
    altered[-10] ^= 0x01  # inside the signature
    tamper(runtime.engine, "UPDATE timestamps SET token = :t WHERE batch_seq = 0", params={"t": bytes(altered)})
    assert_first(run_audit(runtime, jobs=jobs), "timestamps", "seq 0, tsa tsa0", "does not verify")


def test_dropped_pending_evidence_is_named(runtime: Runtime, jobs: int) -> None:
    with runtime.engine.connect() as conn:
        pk = conn.execute(text("SELECT min(evidence_pk) FROM pending")).scalar_one()
    tamper(runtime.engine, "DELETE FROM pending WHERE evidence_pk = :pk", params={"pk": pk})
    assert_first(run_audit(runtime, jobs=jobs), "evidence", f"pk={pk}", "neither sealed nor pending")


def test_sealed_evidence_still_pending_is_named(runtime: Runtime, jobs: int) -> None:
    victim = sealed_evidence(runtime, 1, 0)
    tamper(runtime.engine, "INSERT INTO pending (evidence_pk, received_us) VALUES (:pk, 0)", params={"pk": victim.pk})
    assert_first(
        run_audit(runtime, jobs=jobs),
        "pending",
        f"evidence_pk={victim.pk} (id {victim.id})",
        "still pending although it is sealed",
    )


def test_deleted_ledger_node_and_gap_in_seq_are_named(runtime: Runtime, jobs: int) -> None:
    tamper(runtime.engine, "DELETE FROM ledger_nodes WHERE level = 1 AND idx = 0")
    assert_first(run_audit(runtime, jobs=jobs), "ledger_nodes", "(level=1, idx=0)", "is missing")


@pytest.mark.parametrize("jobs", [1], indirect=True, ids=["compares-all-jobs-values"])
def test_parallel_audit_reports_exactly_what_the_serial_one_does(runtime: Runtime, jobs: int) -> None:
    """Findings (all of them, in order) and counts do not depend on --jobs, through tampering that the worker
    ranges see differently: a missing ledger entry (its leaves become orphans), leaves of no batch beyond the last
    one, a batch without leaves and a bad leaf in a later range."""

    def same_everywhere() -> AuditReport:
        serial = run_audit(runtime, jobs=1)
        for n in (2, 3, 5):
            parallel = run_audit(runtime, jobs=n)
            assert parallel.findings == serial.findings, n
            assert parallel.finding_count == serial.finding_count
            assert list(parallel.checked.items()) == list(serial.checked.items())
            assert parallel.ledger_size == serial.ledger_size
        return serial

    assert same_everywhere().ok
    victim = sealed_evidence(runtime, 2, 3)
    tamper(runtime.engine, "UPDATE evidence SET received_us = received_us - 1 WHERE pk = :pk", params={"pk": victim.pk})
    assert_first(same_everywhere(), "evidence", f"pk={victim.pk}", "leaf 3 of batch 2")
    tamper(runtime.engine, "DELETE FROM batches WHERE seq = 1")
    assert_first(same_everywhere(), "batch_leaves", "evidence_pk=", "belongs to batch 1, which is not in the ledger")
    tamper(runtime.engine, "UPDATE batch_leaves SET batch_seq = 7 WHERE batch_seq = 2")
    report = same_everywhere()
    assert any("beyond the last ledger entry" in f.problem for f in report.findings)
    assert any(f.key == "seq=2" and "has no evidence leaves" in f.problem for f in report.findings)


_real_leaf_range = audit_module._audit_leaf_range


def _worker_reading_another_batch_1(url: str, snapshot: str | None, low: int, high: int) -> list[Any]:
    """A worker whose view of batch 1 differs from the main snapshot's (what a SQLite worker could see if a
    superuser rewrote the row in between)."""
    return [
        dataclasses.replace(r, batch=(r.batch[0], bytes(32), r.batch[2])) if r.seq == 1 and r.batch else r
        for r in _real_leaf_range(url, snapshot, low, high)
    ]


@pytest.mark.parametrize("jobs", [2], indirect=True, ids=["jobs2"])
def test_a_worker_that_read_another_batch_row_is_not_trusted(
    runtime: Runtime, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "_audit_leaf_range", _worker_reading_another_batch_1)  # forked: inherited
    report = run_audit(runtime, jobs=jobs)
    assert_first(report, "batches", "seq=1", "changed while the audit ran")
    assert report.finding_count == 1
    assert report.checked["evidence leaves recompute to their batch root"] == sum(BATCHES) - BATCHES[1]


# --- the command -----------------------------------------------------------------------------------


def evidence(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_command_exit_codes_and_first_bad_row(runtime: Runtime, jobs: int) -> None:
    url = make_url(str(runtime.settings.database_url)).render_as_string(hide_password=False)
    env = {
        "DATABASE_URL": url,
        "EVIDENCE_DATA_DIR": str(runtime.settings.data_dir),
        "EVIDENCE_TSA": f"tsa0={runtime.settings.tsa[0].url}",
        "EVIDENCE_TSA_CA_FILES": str(runtime.settings.tsa_ca_files[0]),
    }
    ok = evidence("audit", f"--jobs={jobs}", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "OK: the ledger is consistent (3 entries)" in ok.stdout
    assert "checkpoint signatures verify" in ok.stdout
    assert "\x1b[" not in ok.stdout + ok.stderr  # piped: no progress bar, no colours

    victim = sealed_evidence(runtime, 2, 0)
    tamper(runtime.engine, "UPDATE evidence SET received_us = received_us + 1 WHERE pk = :pk", params={"pk": victim.pk})
    bad = evidence("audit", f"--jobs={jobs}", env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"INCONSISTENT: first bad row: evidence pk={victim.pk} (id {victim.id})" in bad.stderr


def test_command_without_a_database_exits_2(tmp_path: Path) -> None:
    result = evidence("audit", "--data-dir", str(tmp_path / "nothing"), env={"DATABASE_URL": ""})
    assert result.returncode == 2
    assert "no ledger database" in result.stderr
