"""``evidence audit --checkpoint FILE / --checkpoint-url URL``: a checkpoint kept outside the database catches what a
self-consistent database hides (the newest entries removed with their checkpoints, rewritten entries), and the
report states what no audit of the database can see. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from service import sealing
from service.config import Settings
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db, ledger
from service.tenants import create_tenant, hash_api_key
from service.trust.audit import audit_ledger
from service.trust.reference import check_reference, parse_reference
from tests.integration.test_audit import evidence, tamper


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    """Three sealed batches (2, 3 and 2 leaves)."""
    db.upgrade(db_url)
    rt = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=db_url))
    rt.prepare_signing()
    with rt.engine.begin() as conn:
        tenant_id = ledger.tenant_for_key_hash(conn, hash_api_key(create_tenant(conn, "acme", utc_now())))
    assert tenant_id is not None
    for n in (2, 3, 2):
        with rt.engine.begin() as conn:
            items = [(hashlib.sha256(os.urandom(16)).digest(), None) for _ in range(n)]
            sealing.record_evidence(conn, tenant_id, items, utc_now())
        sealing.seal_pending(rt.engine, rt.signer, max_leaves=100, max_age=1, force=True)
    yield rt
    rt.engine.dispose()


def saved_checkpoint(rt: Runtime, path: Path) -> bytes:
    """What an outsider keeps: the latest signed checkpoint (GET /v1/checkpoint)."""
    with rt.engine.connect() as conn:
        row = ledger.latest_checkpoint(conn)
    assert row is not None and row.size == 3
    note = bytes(row.note)
    path.write_bytes(note)
    return note


def env_of(rt: Runtime) -> dict[str, str]:
    url = make_url(str(rt.settings.database_url)).render_as_string(hide_password=False)
    return {"DATABASE_URL": url, "EVIDENCE_DATA_DIR": str(rt.settings.data_dir), "EVIDENCE_TSA": ""}


def remove_newest_entry(rt: Runtime) -> None:
    """What someone with write access to the database can do: drop the newest batch, its leaves, evidence, log
    nodes and checkpoint. What remains is a consistent, shorter ledger."""
    tamper(
        rt.engine,
        "DELETE FROM webhook_deliveries WHERE batch_seq = 2",
        "DELETE FROM evidence WHERE pk IN (SELECT evidence_pk FROM batch_leaves WHERE batch_seq = 2)",
        "DELETE FROM batch_leaves WHERE batch_seq = 2",
        "DELETE FROM timestamps WHERE batch_seq = 2",
        "DELETE FROM cosignatures WHERE size = 3",
        "DELETE FROM checkpoints WHERE size = 3",
        "DELETE FROM ledger_nodes WHERE (idx + 1) * (1 << level) > 2",
        "DELETE FROM batches WHERE seq = 2",
    )


def test_removed_newest_entry_passes_alone_and_fails_against_the_outside_checkpoint(
    runtime: Runtime, tmp_path: Path
) -> None:
    reference = tmp_path / "checkpoint.txt"
    saved_checkpoint(runtime, reference)
    env = env_of(runtime)
    ok = evidence("audit", "--jobs=1", "--checkpoint", str(reference), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "outside reference root" in ok.stdout and "outside reference signature" in ok.stdout
    assert "not visible to this audit: labels and tenant ids are not signed under receipt format v1" in ok.stdout

    remove_newest_entry(runtime)
    alone = evidence("audit", "--jobs=1", env=env)
    assert alone.returncode == 0, alone.stdout + alone.stderr  # the gap the reference closes
    assert "without an outside reference" in alone.stdout

    bad = evidence("audit", "--jobs=1", "--checkpoint", str(reference), env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "the database's ledger has 2 entries but the checkpoint file" in bad.stderr
    assert "entries 2..2 (and their checkpoints) are missing" in bad.stderr


def test_rewritten_entry_does_not_have_the_outside_root(runtime: Runtime, tmp_path: Path) -> None:
    note = saved_checkpoint(runtime, tmp_path / "c.txt")
    with runtime.engine.connect() as conn:
        entry = ledger.entries_range(conn, 1, 2)[0]
    tamper(runtime.engine, "UPDATE batches SET entry = :e WHERE seq = 1", params={"e": entry + b"x"})
    report = audit_ledger(runtime.engine)
    check_reference(runtime.engine, report, parse_reference(note, "the saved checkpoint"))
    problems = [str(f) for f in report.findings if "saved checkpoint" in f.problem]
    assert problems == [
        "batches size=3: the ledger log recomputed from the database's first 3 entries does not have the root of "
        "the saved checkpoint: entries were changed, removed or reordered"
    ]


def test_reference_forms_and_mismatches(runtime: Runtime, tmp_path: Path) -> None:
    note = saved_checkpoint(runtime, tmp_path / "c.txt")
    body = note.partition(b"\n\n")[0] + b"\n"

    def findings(raw: bytes) -> list[str]:
        report = audit_ledger(runtime.engine)
        check_reference(runtime.engine, report, parse_reference(raw, "the reference"))
        return [f.problem for f in report.findings] + [f"note: {n}" for n in report.notes if "reference" in n]

    assert findings(note) == []
    assert findings(body) == ["note: the reference carries no signature: only its size and root were compared"]
    state = {"format": "evidence-monitor/v1", "checkpoint": note.decode(), "url": "https://x"}
    assert findings(json.dumps(state).encode()) == []
    other_origin = body.replace(body.split(b"\n")[0], b"elsewhere.example/log", 1)
    assert findings(other_origin)[0].startswith("the reference is a checkpoint of 'elsewhere.example/log'")
    forged_signature = note[: note.rindex(b" ") + 1] + b"AAAA" + note[-40:]
    assert "is not signed by a key this database published" in findings(forged_signature)[0]


def test_checkpoint_url(runtime: Runtime, tmp_path: Path) -> None:
    note = saved_checkpoint(runtime, tmp_path / "c.txt")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = note if self.path == "/checkpoint" else b"not found"
            self.send_response(200 if self.path == "/checkpoint" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        env = env_of(runtime)
        ok = evidence("audit", "--jobs=1", "--checkpoint-url", f"{base}/checkpoint", env=env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        missing = evidence("audit", "--jobs=1", "--checkpoint-url", f"{base}/nothing", env=env)
        assert missing.returncode == 2 and "HTTP 404" in missing.stderr
        remove_newest_entry(runtime)
        bad = evidence("audit", "--jobs=1", "--checkpoint-url", f"{base}/checkpoint", env=env)
        assert bad.returncode == 1 and "entries 2..2" in bad.stderr, bad.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_checkpoint_url_of_an_exported_tile_tree_served_statically(runtime: Runtime, tmp_path: Path) -> None:
    """Issue 13 item 4: the audit's outside reference can be a C2SP tile tree (``evidence tiles export`` served by any
    static web server, or a mirror): its ``checkpoint`` is the cosigned checkpoint the database must still reach."""
    out = tmp_path / "tiles"
    env = env_of(runtime)
    export = evidence("tiles", "export", str(out), "--data-dir", str(runtime.settings.data_dir), env=env)
    assert export.returncode == 0, export.stdout + export.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/checkpoint"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    assert answer.read().startswith(runtime.settings.origin.encode() + b"\n3\n")
                break
            except OSError:
                assert time.monotonic() < deadline, "the static server did not come up"
                time.sleep(0.05)
        ok = evidence("audit", "--jobs=1", "--checkpoint-url", url, env=env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "outside reference root" in ok.stdout
        remove_newest_entry(runtime)
        bad = evidence("audit", "--jobs=1", "--checkpoint-url", url, env=env)
        assert bad.returncode == 1 and "entries 2..2" in bad.stderr, bad.stdout + bad.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
