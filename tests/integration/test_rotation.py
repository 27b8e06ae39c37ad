"""Signing key rotation (``evidence keys rotate``): seal, rotate, seal again; both receipts verify with their
keys, ``/v1/keys`` lists both with their windows, and the audit passes across the rotation (and catches a process
that kept signing with the retired key).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service import sealing
from service.api import create_app
from service.config import Settings
from service.core.errors import ConfigError
from service.core.formats import parse_time, utc_now
from service.core.note import Verifier
from service.core.verify import verify_receipt
from service.keys import rotate_signing_key
from service.runtime import Runtime
from service.storage import db, ledger
from service.tenants import create_tenant, hash_api_key
from service.trust.audit import audit_ledger


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    db.upgrade(db_url)
    return Settings(data_dir=tmp_path / "data", database_url=db_url)


def start(settings: Settings) -> Runtime:
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    return runtime


@pytest.fixture
def tenant_id(settings: Settings) -> Iterator[int]:
    rt = start(settings)
    with rt.engine.begin() as conn:
        tid = ledger.tenant_for_key_hash(conn, hash_api_key(create_tenant(conn, "acme", utc_now())))
    rt.engine.dispose()
    assert tid is not None
    yield tid


def deposit_and_seal(rt: Runtime, tenant_id: int) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        [d] = sealing.record_evidence(conn, tenant_id, [(hashlib.sha256(os.urandom(8)).digest(), None)], utc_now())
    assert sealing.seal_pending(rt.engine, rt.signer, max_leaves=10, max_age=1, force=True)
    with rt.engine.connect() as conn:
        doc = sealing.receipt_for(conn, tenant_id, d.id)
    assert doc is not None
    return doc


def test_receipts_before_and_after_rotation_verify_with_their_keys(settings: Settings, tenant_id: int) -> None:
    before = start(settings)
    old_key = before.signer.verifier
    receipt_a = deposit_and_seal(before, tenant_id)
    before.engine.dispose()

    rotation = rotate_signing_key(settings)
    assert rotation.old == old_key and rotation.new != old_key
    assert rotation.retired.read_text().strip().startswith("PRIVATE+KEY+")
    assert oct(settings.signing_key_file.stat().st_mode & 0o777) == "0o600"

    after = start(settings)  # a restarted process loads the new key
    new_key = after.signer.verifier
    assert new_key == rotation.new
    receipt_b = deposit_and_seal(after, tenant_id)
    try:
        with after.engine.connect() as conn:
            latest = ledger.latest_checkpoint(conn)
        assert latest is not None and int(latest.key_hash) == new_key.key_hash

        assert verify_receipt(receipt_a, trusted_keys=[old_key]).valid
        assert verify_receipt(receipt_b, trusted_keys=[new_key]).valid
        for doc in (receipt_a, receipt_b):  # a keys file holding both
            assert verify_receipt(doc, trusted_keys=[old_key, new_key]).valid
        wrong = verify_receipt(receipt_a, trusted_keys=[new_key])
        assert not wrong.valid and wrong.step == 6
        assert verify_receipt(receipt_b, trusted_keys=[old_key]).step == 6

        # /v1/keys publishes both, with windows that meet at the rotation time
        client = create_app(runtime=after, start_sealer=False).test_client()
        published = client.get("/v1/keys").get_json()["keys"]
        assert [k["vkey"] for k in published] == [old_key.vkey, new_key.vkey]
        assert published[0]["valid_until"] == published[1]["valid_from"]
        assert published[1]["valid_until"] is None
        assert parse_time(published[0]["valid_from"]) <= parse_time(published[0]["valid_until"])

        report = audit_ledger(after.engine)
        assert report.ok, [str(f) for f in report.findings]
        assert report.checked["checkpoint signatures verify"] == 3  # sizes 0 and 1 old key, 2 new key
    finally:
        after.engine.dispose()


def test_audit_flags_a_process_still_signing_with_the_retired_key(settings: Settings, tenant_id: int) -> None:
    stale = start(settings)
    deposit_and_seal(stale, tenant_id)
    rotate_signing_key(settings)
    deposit_and_seal(stale, tenant_id)  # never restarted: signs size 2 with the old key
    try:
        report = audit_ledger(stale.engine)
    finally:
        stale.engine.dispose()
    assert not report.ok
    first = report.first
    assert first is not None and first.table == "checkpoints" and first.key == "size=2"
    assert "outside its validity window" in first.problem


def test_rotation_refuses_an_unpublished_key_and_leaves_the_file(settings: Settings) -> None:
    rt = Runtime.from_settings(settings)
    signer = rt.signer  # key file created, never published
    rt.engine.dispose()
    with pytest.raises(ConfigError, match="not published"):
        rotate_signing_key(settings)
    assert settings.signing_key_file.read_text().strip() == signer.skey
    assert list(settings.signing_key_file.parent.glob("*.retired")) == []


def evidence(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": "", **(env or {})},
        timeout=120,
        check=False,
    )


def test_cli_rotate_and_list(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    db.upgrade(settings.database_url)
    rt = start(settings)
    old = rt.signer.verifier
    rt.engine.dispose()

    # a running `evidence serve` holds the sealer lock: rotating under it is refused
    data.mkdir(exist_ok=True)
    with open(data / "sealer.lock", "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        refused = evidence("keys", "rotate", "--data-dir", str(data))
    assert refused.returncode == 2 and "is running" in refused.stderr

    done = evidence("keys", "rotate", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    new = Verifier.from_vkey(done.stdout.strip().splitlines()[-1])
    assert new != old and new.name == old.name
    assert "restart" in done.stderr

    listed = evidence("keys", "list", "--data-dir", str(data), "--json")
    assert listed.returncode == 0, listed.stderr
    import json

    keys = json.loads(listed.stdout)["keys"]
    assert [k["vkey"] for k in keys] == [old.vkey, new.vkey]
    assert keys[0]["valid_until"] == keys[1]["valid_from"]
    table = evidence("keys", "list", "--data-dir", str(data))
    assert table.returncode == 0 and old.fingerprint in table.stdout and "(current)" in table.stdout

    audited = evidence("audit", "--data-dir", str(data))
    assert audited.returncode == 0, audited.stdout + audited.stderr
