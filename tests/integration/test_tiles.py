"""The static read path (SPEC §10, C2SP tlog-tiles) on a ledger of 70,000 entries (three tile levels, partial tiles):
every tile and entry bundle served at /log/ equals one rebuilt independently (hashlib only) from
/v1/ledger/entries; ``evidence tiles export`` writes the same bytes, incrementally, and ``python -m http.server``
serving that directory gives the same bytes again."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.api import create_app
from service.config import Settings
from service.core import merkle
from service.core.formats import Checkpoint, LedgerEntry, utc_now
from service.core.note import sign_note
from service.runtime import Runtime
from service.storage import db, ledger
from service.storage.codec import to_us
from tests.support.processes import child_env, free_port, http

pytestmark = pytest.mark.slow

SIZE = 70_000


def grow(runtime: Runtime, nodes: dict[tuple[int, int], bytes], start: int, end: int) -> None:
    """Append ledger entries [start, end) straight into storage (as sealing would), then sign the checkpoint."""
    t0 = to_us(utc_now())
    batches: list[dict[str, Any]] = []
    new_nodes: list[dict[str, Any]] = []
    for seq in range(start, end):
        entry = LedgerEntry(seq, 1 + seq % 7, hashlib.sha256(b"batch %d" % seq).digest(), utc_now()).to_bytes()
        batches.append(
            {
                "seq": seq,
                "size": 1 + seq % 7,
                "root": hashlib.sha256(b"batch %d" % seq).digest(),
                "sealed_us": t0,
                "entry": entry,
                "ledger_proof": b"",
            }
        )
        for key, h in merkle.append_nodes(seq, merkle.leaf_hash(entry), nodes):
            nodes[key] = h
            new_nodes.append({"level": key[0], "idx": key[1], "hash": h})
    root = merkle.hash_range(0, end, nodes)
    with runtime.engine.begin() as conn:
        conn.execute(ledger.batches.insert(), batches)
        conn.execute(ledger.ledger_nodes.insert(), new_nodes)
        note = sign_note(Checkpoint(runtime.signer.name, end, root).to_bytes(), [runtime.signer])
        ledger.insert_checkpoint(conn, end, root, note, runtime.signer.key_hash, t0)


@pytest.fixture(scope="module")
def big(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Runtime, FlaskClient, dict[tuple[int, int], bytes]]]:
    tmp = tmp_path_factory.mktemp("tiles")
    url = f"sqlite:///{tmp}/evidence.db"
    db.upgrade(url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp, database_url=url))
    runtime.prepare_signing()
    nodes: dict[tuple[int, int], bytes] = {}
    grow(runtime, nodes, 0, SIZE)
    yield runtime, create_app(runtime=runtime, start_sealer=False).test_client(), nodes
    runtime.engine.dispose()


# --- an independent tile builder: hashlib and the C2SP text, nothing from service/ ----------------------------


def fetch_entries(client: FlaskClient, size: int) -> list[bytes]:
    entries: list[bytes] = []
    while len(entries) < size:
        page = client.get(f"/v1/ledger/entries?start={len(entries)}&end={size}").get_json()
        entries += [base64.b64decode(e) for e in page["entries"]]
    return entries


def c2sp_index(n: int) -> str:
    s = f"{n:d}"
    s = "0" * (-len(s) % 3) + s
    parts = [s[i : i + 3] for i in range(0, len(s), 3)]
    return "/".join(["x" + p for p in parts[:-1]] + [parts[-1]])


def independent_tiles(entries: list[bytes]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for n in range(0, len(entries), 256):
        chunk = entries[n : n + 256]
        suffix = "" if len(chunk) == 256 else f".p/{len(chunk)}"
        out[f"tile/entries/{c2sp_index(n // 256)}{suffix}"] = b"".join(len(e).to_bytes(2, "big") + e for e in chunk)
    row = [hashlib.sha256(b"\x00" + e).digest() for e in entries]  # level 0: RFC 6962 leaf hashes
    level = 0
    while row:
        if level % 8 == 0:
            for n in range(0, len(row), 256):
                chunk = row[n : n + 256]
                suffix = "" if len(chunk) == 256 else f".p/{len(chunk)}"
                out[f"tile/{level // 8}/{c2sp_index(n // 256)}{suffix}"] = b"".join(chunk)
        row = [hashlib.sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
        level += 1
    return out


def test_every_tile_matches_an_independent_rebuild(big: tuple[Runtime, FlaskClient, Any]) -> None:
    _runtime, client, _ = big
    expected = independent_tiles(fetch_entries(client, SIZE))
    assert len(expected) == 274 + 274 + 2 + 1  # entries, level 0, level 1, level 2
    assert {"tile/0/273.p/112", "tile/1/001.p/17", "tile/2/000.p/1", "tile/entries/273.p/112"} <= set(expected)
    for path, data in expected.items():
        response = client.get(f"/log/{path}")
        assert response.status_code == 200, path
        assert response.data == data, path
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.content_type == "application/octet-stream"
    # served again from the app's tile cache (the WSGI fast path): the same bytes and headers
    again = client.get("/log/tile/1/000")
    assert again.data == expected["tile/1/000"] and again.headers["Cache-Control"].endswith("immutable")
    assert again.headers["Content-Length"] == str(256 * 32)
    # a prefix of a tile is served as the partial tile of that width; beyond the ledger: 404
    assert client.get("/log/tile/0/000.p/3").data == expected["tile/0/000"][: 3 * 32]
    for missing in [
        "tile/0/274",
        "tile/0/273",
        "tile/0/273.p/113",
        "tile/3/000.p/1",
        "tile/1/002.p/1",
        "tile/0/x000/001",
    ]:
        response = client.get(f"/log/{missing}")
        assert response.status_code == 404 and response.content_type == "application/problem+json", missing
    checkpoint = client.get("/log/checkpoint")
    assert checkpoint.data.startswith(b"localhost/evidence-ledger\n70000\n")
    assert checkpoint.headers["Cache-Control"] == "no-cache"


def test_export_incrementally_and_serve_with_a_static_file_server(
    big: tuple[Runtime, FlaskClient, dict[tuple[int, int], bytes]], tmp_path: Path
) -> None:
    runtime, client, nodes = big
    out = tmp_path / "log"
    env = {**child_env(), "DATABASE_URL": runtime.settings.database_url}
    run = subprocess.run(
        [sys.executable, "-m", "service", "tiles", "export", str(out), "--data-dir", str(runtime.settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "552 files written" in run.stdout
    first = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert len(first) == 552 and not [p for p in first if ".tmp" in p]

    grow(runtime, nodes, SIZE, SIZE + 300)  # the ledger grows: export again, only the new tiles are written
    run = subprocess.run(
        [sys.executable, "-m", "service", "tiles", "export", str(out), "--data-dir", str(runtime.settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "6 files written (tiles new since size 70000" in run.stdout
    after = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert {p for p in after if after[p] != first.get(p)} == {
        "tile/entries/273",
        "tile/entries/274.p/156",
        "tile/0/273",
        "tile/0/274.p/156",
        "tile/1/001.p/18",
        "checkpoint",
    }

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                http("GET", f"http://127.0.0.1:{port}/checkpoint", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        expected = independent_tiles(fetch_entries(client, SIZE + 300))
        for path, data in expected.items():
            status, _, body = http("GET", f"http://127.0.0.1:{port}/{path}")
            assert status == 200 and body == data == client.get(f"/log/{path}").data, path
        status, _, body = http("GET", f"http://127.0.0.1:{port}/checkpoint")
        assert status == 200 and body == client.get("/log/checkpoint").data
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_mirror_copies_and_verifies_every_tile_over_http(
    big: tuple[Runtime, FlaskClient, dict[tuple[int, int], bytes]], tmp_path: Path
) -> None:
    from werkzeug.serving import make_server

    runtime, client, nodes = big
    server = make_server("127.0.0.1", 0, client.application, threaded=True)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/log"
    vkey = runtime.signer.verifier.vkey
    out = tmp_path / "mirror"
    try:

        def mirror() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "service", "mirror", url, str(out), "--key", vkey, "--once"],
                capture_output=True,
                text=True,
                env=child_env(),
                timeout=600,
            )

        run = mirror()
        assert run.returncode == 0, run.stdout + run.stderr
        size = int(client.get("/log/checkpoint").data.split(b"\n")[1])
        files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        expected = {t for t in independent_tiles(fetch_entries(client, size))}
        assert expected | {"checkpoint", ".mirror-state.json"} == files
        for path in expected:
            assert (out / path).read_bytes() == client.get(f"/log/{path}").data, path
        grow(runtime, nodes, size, size + 10)
        again = mirror()
        assert again.returncode == 0 and "(2 tiles copied)" in again.stdout, again.stdout + again.stderr
        assert (out / "checkpoint").read_bytes() == client.get("/log/checkpoint").data
    finally:
        server.shutdown()
