"""``evidence monitor`` against a real HTTP server (the Flask app served by werkzeug on a free port), and the
``/v1/ledger/proof`` endpoint.

The ledger is then rewritten behind the service's back: another data dir with a different history signed by
the same key, served on the same port (a fork at the same size, a longer fork, a shorter one), or rows edited in
the database; the monitor exits 1 each time, naming what the log did.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from service import sealing
from service.api import create_app
from service.config import Settings
from service.core.errors import LogInconsistency
from service.core.formats import LedgerEntry, utc_now
from service.keys import rotate_signing_key
from service.runtime import Runtime
from service.storage import db, ledger
from service.tenants import create_tenant, hash_api_key
from service.trust import tlog_proof
from service.trust.monitor import MonitorState, check_once


class Ledger:
    """One embedded deployment (SQLite data dir) with a tenant, and its Flask app."""

    def __init__(self, data_dir: Path, key_from: Path | None = None) -> None:
        settings = Settings(data_dir=data_dir)
        db.upgrade(settings.database_url)
        if key_from is not None:  # same signing key as another deployment
            data_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(key_from, settings.signing_key_file)
        self.runtime = Runtime.from_settings(settings)
        self.runtime.prepare_signing()
        with self.runtime.engine.begin() as conn:
            tenant = ledger.tenant_for_key_hash(conn, hash_api_key(create_tenant(conn, "acme", utc_now())))
        assert tenant is not None
        self.tenant = tenant
        self.app: Flask = create_app(runtime=self.runtime, start_sealer=False)

    def seal(self, batches: int = 1) -> None:
        for _ in range(batches):
            with self.runtime.engine.begin() as conn:
                items = [(hashlib.sha256(os.urandom(8)).digest(), None) for _ in range(3)]
                sealing.record_evidence(conn, self.tenant, items, utc_now())
            assert sealing.seal_pending(self.runtime.engine, self.runtime.signer, max_leaves=10, max_age=1, force=True)

    def close(self) -> None:
        self.runtime.engine.dispose()


class Server:
    """A werkzeug server on a free port whose app can be swapped: 'the same URL, another history'."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _dispatch(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def original(tmp_path: Path) -> Iterator[Ledger]:
    lg = Ledger(tmp_path / "original")
    yield lg
    lg.close()


@pytest.fixture
def server(original: Ledger) -> Iterator[Server]:
    srv = Server(original.app)
    yield srv
    srv.close()


def fork(tmp_path: Path, original: Ledger, batches: int) -> Ledger:
    """Another history, signed with the original's key."""
    other = Ledger(tmp_path / f"fork-{batches}", key_from=original.runtime.settings.signing_key_file)
    other.seal(batches)
    return other


def monitor_cli(url: str, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "monitor", url, "--state", str(state), "--once", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_monitor_follows_growth_then_catches_a_fork_at_the_same_size(
    tmp_path: Path, original: Ledger, server: Server
) -> None:
    state = tmp_path / "monitor.json"
    first = monitor_cli(server.url, state)
    assert first.returncode == 0, first.stderr
    assert "trusting on first use" in first.stdout and original.runtime.signer.verifier.fingerprint in first.stdout
    saved = json.loads(state.read_text())
    assert saved["size"] == 0 and saved["keys"] == [original.runtime.signer.verifier.vkey]

    original.seal(2)
    grown = monitor_cli(server.url, state)
    assert grown.returncode == 0, grown.stderr
    assert "size 2 verified: 2 new entries" in grown.stdout
    original.seal(1)
    assert monitor_cli(server.url, state).returncode == 0
    assert json.loads(state.read_text())["size"] == 3
    assert monitor_cli(server.url, state).returncode == 0  # nothing new: still fine

    other = fork(tmp_path, original, 3)
    server.app = other.app
    before = state.read_text()
    forked = monitor_cli(server.url, state)
    other.close()
    assert forked.returncode == 1, forked.stdout + forked.stderr
    assert "INCONSISTENT" in forked.stderr and "the log forked: at size 3" in forked.stderr
    assert state.read_text() == before  # the state keeps the last good checkpoint


@pytest.mark.parametrize(("batches", "words"), [(5, "is not consistent"), (1, "the log shrank")])
def test_monitor_catches_a_longer_or_shorter_rewrite(
    tmp_path: Path, original: Ledger, server: Server, batches: int, words: str
) -> None:
    original.seal(3)
    state = MonitorState(url=server.url)
    state = check_once(server.url, state)
    assert state.size == 3
    other = fork(tmp_path, original, batches)
    server.app = other.app
    try:
        with pytest.raises(LogInconsistency, match=words):
            check_once(server.url, state)
    finally:
        other.close()


def test_monitor_catches_entries_edited_in_the_database(tmp_path: Path, original: Ledger, server: Server) -> None:
    original.seal(3)
    row = None
    with original.runtime.engine.connect() as conn:
        row = ledger.get_batch(conn, 1)
    assert row is not None
    forged = LedgerEntry(1, int(row.size), hashlib.sha256(b"x").digest(), row.sealed)
    raw = sqlite3.connect(original.runtime.engine.url.database or "", isolation_level=None)
    try:
        for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            raw.execute(f'DROP TRIGGER "{name}"')
        raw.execute("UPDATE batches SET entry = ? WHERE seq = 1", (forged.to_bytes(),))
    finally:
        raw.close()
    with pytest.raises(LogInconsistency, match="do not hash to the signed root"):
        check_once(server.url, MonitorState(url=server.url))


def test_monitor_with_a_pinned_key_rejects_another_signer(tmp_path: Path, original: Ledger, server: Server) -> None:
    original.seal(1)
    stranger = Ledger(tmp_path / "stranger")  # same origin name, another key
    try:
        result = monitor_cli(server.url, tmp_path / "s.json", "--key", stranger.runtime.signer.verifier.vkey)
    finally:
        stranger.close()
    assert result.returncode == 1
    assert "not signed by a trusted key" in result.stderr
    pinned = monitor_cli(server.url, tmp_path / "p.json", "--key", original.runtime.signer.verifier.vkey)
    assert pinned.returncode == 0 and "keys: pinned" in pinned.stdout


def test_monitor_accepts_a_rotated_key_it_finds_published(tmp_path: Path, original: Ledger, server: Server) -> None:
    original.seal(1)
    notices: list[str] = []
    state = check_once(server.url, MonitorState(url=server.url), say=notices.append)
    old_vkey = original.runtime.signer.verifier.vkey
    rotate_signing_key(original.runtime.settings)
    restarted = Ledger.__new__(Ledger)  # a restarted service: same database, new key loaded
    restarted.runtime = Runtime.from_settings(original.runtime.settings)
    restarted.runtime.prepare_signing()
    restarted.tenant = original.tenant
    restarted.app = create_app(runtime=restarted.runtime, start_sealer=False)
    server.app = restarted.app
    restarted.seal(1)
    try:
        state = check_once(server.url, state, say=notices.append)
        assert state.size == 2 and any("NOTICE" in n for n in notices)
        assert state.keys == [old_vkey, restarted.runtime.signer.verifier.vkey]
        pinned_old = [original.runtime.signer.verifier]
        with pytest.raises(LogInconsistency, match="not signed by a trusted key"):
            check_once(server.url, state, pinned=pinned_old)
    finally:
        restarted.close()


def test_monitor_unreachable_server_exits_2(tmp_path: Path) -> None:
    result = monitor_cli("http://127.0.0.1:9", tmp_path / "s.json")
    assert result.returncode == 2 and "could not be reached" in result.stderr
    assert not (tmp_path / "s.json").exists()


# --- GET /v1/ledger/proof ------------------------------------------------------------------------


def test_proof_endpoint_serves_verifiable_tlog_proofs(original: Ledger) -> None:
    original.seal(3)
    client = original.app.test_client()
    keys = [original.runtime.signer.verifier]
    for seq in range(3):
        response = client.get(f"/v1/ledger/proof?seq={seq}")
        assert response.status_code == 200
        assert response.content_type == "text/plain; charset=utf-8"
        proof = tlog_proof.TlogProof.from_bytes(response.data)
        checkpoint = tlog_proof.verify(proof, keys)
        assert (proof.index, checkpoint.size) == (seq, seq + 1)
    later = tlog_proof.TlogProof.from_bytes(client.get("/v1/ledger/proof?seq=0&size=3").data)
    assert tlog_proof.verify(later, keys).size == 3
    with original.runtime.engine.connect() as conn:
        doc = sealing.receipt_for(conn, original.tenant, str(conn.execute(ledger.evidence.select().limit(1)).one().id))
    assert doc is not None
    assert tlog_proof.from_receipt(doc) == tlog_proof.TlogProof.from_bytes(client.get("/v1/ledger/proof?seq=0").data)


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("seq=9", 404, "no ledger entry 9"),
        ("seq=0&size=9", 404, "no checkpoint of size 9"),
        ("seq=abc", 400, "non-negative integer"),
        ("", 400, "'seq' is required"),
        ("seq=1&size=1", 400, "above seq"),
    ],
)
def test_proof_endpoint_errors_are_problem_documents(original: Ledger, query: str, status: int, words: str) -> None:
    original.seal(2)
    response = original.app.test_client().get(f"/v1/ledger/proof?{query}")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert words in response.get_json()["detail"]


def test_cli_tlog_proof_from_a_receipt(tmp_path: Path, original: Ledger) -> None:
    original.seal(2)
    with original.runtime.engine.connect() as conn:
        ev = conn.execute(ledger.evidence.select().order_by(ledger.evidence.c.pk.desc()).limit(1)).one()
        doc = sealing.receipt_for(conn, original.tenant, str(ev.id))
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "r.tlog-proof"
    result = subprocess.run(
        [sys.executable, "-m", "service", "tlog-proof", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    proof = tlog_proof.TlogProof.from_bytes(out.read_bytes())
    assert proof.index == 1 and tlog_proof.verify(proof, [original.runtime.signer.verifier]).size == 2
    path.write_text("{}")
    bad = subprocess.run(
        [sys.executable, "-m", "service", "tlog-proof", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1 and "not a usable receipt" in bad.stderr


# --- reading through tiles (SPEC §10) -------------------------------------------------------------------------


def test_monitor_reads_tiles_from_the_server_and_from_an_exported_directory(
    tmp_path: Path, original: Ledger, server: Server
) -> None:
    from service.tiles import export_tiles

    vkey = original.runtime.signer.verifier.vkey
    state = tmp_path / "tiles.json"
    refused = monitor_cli(server.url + "/log", state, "--tiles")
    assert refused.returncode == 2 and "--key" in refused.stderr
    original.seal(257)  # two entry bundles, the first one full
    first = monitor_cli(server.url + "/log", state, "--tiles", "--key", vkey)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(state.read_text())["size"] == 257
    original.seal(3)
    assert monitor_cli(server.url + "/log", state, "--tiles", "--key", vkey).returncode == 0
    assert json.loads(state.read_text())["size"] == 260

    out = tmp_path / "exported"
    export_tiles(original.runtime.engine, original.runtime.settings, out)
    directory_state = tmp_path / "dir.json"
    run = monitor_cli(str(out), directory_state, "--tiles", "--key", vkey)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(directory_state.read_text())["size"] == 260

    # a tile edited in the exported tree: the level-0 hashes no longer match the entries
    (out / "tile" / "0" / "001.p" / "4").write_bytes(b"\x00" * 32 * 4)
    edited = monitor_cli(str(out), tmp_path / "fresh.json", "--tiles", "--key", vkey)
    assert edited.returncode == 1 and "does not hold the leaf hashes" in edited.stderr

    # another history at the same URL, read through tiles: a fork
    other = fork(tmp_path, original, 260)
    server.app = other.app
    try:
        forked = monitor_cli(server.url + "/log", state, "--tiles", "--key", vkey)
    finally:
        other.close()
    assert forked.returncode == 1 and "the log forked: at size 260" in forked.stderr


def test_mirror_keeps_its_last_verified_copy_when_the_source_forks(
    tmp_path: Path, original: Ledger, server: Server
) -> None:
    vkey = original.runtime.signer.verifier.vkey
    out = tmp_path / "mirror"

    def mirror(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service", "mirror", server.url + "/log", str(out), "--once", *extra],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert mirror().returncode == 2  # no key
    original.seal(4)
    run = mirror("--key", vkey)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".mirror-state.json",
        "checkpoint",
        "tile/0/000.p/4",
        "tile/entries/000.p/4",
    ]
    good = (out / "checkpoint").read_bytes()
    other = fork(tmp_path, original, 6)
    server.app = other.app
    try:
        forked = mirror("--key", vkey)
    finally:
        other.close()
    assert forked.returncode == 1 and "INCONSISTENT" in forked.stderr, forked.stdout + forked.stderr
    assert (out / "checkpoint").read_bytes() == good
