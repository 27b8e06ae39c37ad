"""``evidence submit`` and ``evidence receipts fetch`` as subprocesses against a real running service.

The service is the real app (``create_app`` with the embedded sealer thread, bulk blueprint registered) served by
werkzeug's threaded server on 127.0.0.1 in this process; the client is ``python -m service`` in a subprocess, so a
crash is a real SIGKILL. Receipts are checked with ``evidence verify`` (also a subprocess).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer, make_server

from service.api import create_app, stop_sealer
from service.commands.client import STATE_NAME, State
from service.config import Settings
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    url: str
    key: str
    vkey: str
    runtime: Runtime
    batch_posts: list[int] = field(default_factory=list)  # status of every POST /v1/evidence/batch
    # When set, the second batch POST is stored by the app but its answer is held until `release` is set.
    hold_second: bool = False
    stored: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    receipt_posts: list[int] = field(default_factory=list)  # receipts in each answer of POST /v1/receipts
    # When set, the answer of the second POST /v1/receipts that carries receipts is held until `release`.
    hold_receipts: bool = False


@pytest.fixture
def live(tmp_path: Path, db_url: str) -> Iterator[Live]:
    db.upgrade(db_url)
    runtime = Runtime.from_settings(
        Settings(data_dir=tmp_path / "server", database_url=db_url, batch_max_age=0.2, rate_limit=0)
    )
    runtime.prepare_signing()
    with runtime.engine.begin() as conn:
        key = create_tenant(conn, "acme", utc_now())
    app = create_app(runtime=runtime, start_sealer=True)
    state = Live("", key, runtime.signer.verifier.vkey, runtime)

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/v1/evidence/batch":
            captured: dict[str, Any] = {}

            def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
                captured["args"] = (status, headers, exc_info)
                return lambda data: None

            body = b"".join(app.wsgi_app(environ, capture))  # the app has committed when this returns
            status, headers, exc_info = captured["args"]
            state.batch_posts.append(int(status.split()[0]))
            if state.hold_second and len(state.batch_posts) == 2:
                state.stored.set()
                state.release.wait(30)
            start_response(status, headers, exc_info)
            return [body]
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/v1/receipts":
            captured = {}

            def capture_receipts(status: str, headers: Any, exc_info: Any = None) -> Any:
                captured["args"] = (status, headers, exc_info)
                return lambda data: None

            body = b"".join(app.wsgi_app(environ, capture_receipts))
            receipts = sum(1 for item in json.loads(body).get("items", []) if "format" in item)
            state.receipt_posts.append(receipts)
            if state.hold_receipts and sum(1 for n in state.receipt_posts if n) == 2:
                state.stored.set()
                state.release.wait(30)
            start_response(*captured["args"])
            return [body]
        return app.wsgi_app(environ, start_response)

    server: BaseWSGIServer = make_server("127.0.0.1", 0, middleware, threaded=True)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    stop_sealer(app)
    runtime.engine.dispose()


def make_tree(root: Path, n: int) -> list[Path]:
    files = []
    for i in range(n):
        p = root / f"dir{i % 3}" / ("sub" if i % 2 else "") / f"file {i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"evidence file {i}\n".encode() * (i + 1))
        files.append(p)
    return files


def evidence(live: Live, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVIDENCE_URL": live.url, "EVIDENCE_API_KEY": live.key}
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, **kw
    )


def popen(live: Live, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EVIDENCE_URL": live.url, "EVIDENCE_API_KEY": live.key}
    return subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def deposits_of(live: Live, path: Path) -> list[dict[str, Any]]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    r = requests.get(
        f"{live.url}/v1/evidence",
        params={"sha256": digest},
        headers={"Authorization": f"Bearer {live.key}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def assert_receipts_verify(live: Live, files: list[Path], receipt_of: Callable[[Path], Path]) -> None:
    for f in files:
        receipt = receipt_of(f)
        assert receipt.is_file(), receipt
        doc = json.loads(receipt.read_text())
        assert doc["evidence"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    # `evidence verify` in a subprocess for a few of them (each is a fresh interpreter).
    for f in files[:: max(1, len(files) // 4)]:
        done = subprocess.run(
            [sys.executable, "-m", "service", "verify", str(receipt_of(f)), str(f), "--key", live.vkey],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_submit_a_tree_writes_a_receipt_beside_each_file(tmp_path: Path, live: Live) -> None:
    files = make_tree(tmp_path / "case", 23)
    done = evidence(live, "submit", str(tmp_path / "case"), "--chunk", "5", "--label-from", "path")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "receipts written" in done.stdout and "23" in done.stdout
    assert_receipts_verify(live, files, lambda f: Path(str(f) + ".receipt.json"))
    assert (tmp_path / "case" / STATE_NAME).is_file()
    assert live.batch_posts == [202] * 5
    first = deposits_of(live, files[4])
    assert len(first) == 1 and first[0]["label"] == "dir1/file 4.bin" and first[0]["status"] == "sealed"
    # A second run finds everything done: nothing is sent again, receipts and state are not duplicated.
    again = evidence(live, "submit", str(tmp_path / "case"), "--chunk", "5")
    assert again.returncode == 0, again.stderr
    assert live.batch_posts == [202] * 5
    assert all(len(deposits_of(live, f)) == 1 for f in files)
    assert not any(p.name.endswith(".receipt.json.receipt.json") for p in (tmp_path / "case").rglob("*"))


def test_killed_after_the_server_stored_a_chunk_then_rerun_makes_no_duplicates(tmp_path: Path, live: Live) -> None:
    files = make_tree(tmp_path / "case", 12)
    out = tmp_path / "receipts"
    live.hold_second = True
    proc = popen(live, "submit", str(tmp_path / "case"), "--chunk", "4", "--out", str(out))
    try:
        # The server committed chunk 1 (the second) but the client has not got the answer: kill it now.
        assert live.stored.wait(60), "the second chunk never arrived"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # reaps it and closes the pipes
    assert proc.returncode == -signal.SIGKILL
    # The snapshot plus its journal, as the re-run reads them.
    recorded = State.load(out / STATE_NAME)
    assert len(recorded.chunks) == 2  # chunk 1 was recorded before it was sent
    acknowledged = [f for f in recorded.files.values() if f.id is not None]
    assert len(acknowledged) == 4  # only chunk 0's answer was recorded
    live.hold_second = False
    live.release.set()

    done = evidence(live, "submit", str(tmp_path / "case"), "--chunk", "4", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    # Chunk 1 was resent with the same key and body (a replay); chunk 2 was new. Chunk 0 was not resent.
    assert live.batch_posts == [202, 202, 202, 202]
    for f in files:
        deposits = deposits_of(live, f)
        assert len(deposits) == 1, (f, deposits)
    assert_receipts_verify(live, files, lambda f: out / (f.relative_to(tmp_path / "case").as_posix() + ".receipt.json"))
    assert not any(Path(str(f) + ".receipt.json").exists() for f in files)


def test_no_wait_then_receipts_fetch(tmp_path: Path, live: Live) -> None:
    files = make_tree(tmp_path / "case", 7)
    single = tmp_path / "single.pdf"
    single.write_bytes(b"%PDF-1.7 not really")
    done = evidence(live, "submit", str(tmp_path / "case"), "--no-wait")
    assert done.returncode == 0, done.stderr
    assert not any(Path(str(f) + ".receipt.json").exists() for f in files)
    fetched = evidence(live, "receipts", "fetch", str(tmp_path / "case"))
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert_receipts_verify(live, files, lambda f: Path(str(f) + ".receipt.json"))
    # A single file: the state goes beside it.
    one = evidence(live, "submit", str(single), "--no-wait")
    assert one.returncode == 0 and (tmp_path / STATE_NAME).is_file()
    fetched = evidence(live, "receipts", "fetch", str(tmp_path / STATE_NAME))
    assert fetched.returncode == 0, fetched.stderr
    assert Path(str(single) + ".receipt.json").is_file()


def test_usage_errors_exit_2_and_server_problems_are_shown(tmp_path: Path, live: Live) -> None:
    (tmp_path / "a.txt").write_text("a")
    env = {k: v for k, v in os.environ.items() if k not in ("EVIDENCE_URL", "EVIDENCE_API_KEY")}
    no_server = subprocess.run(
        [sys.executable, "-m", "service", "submit", str(tmp_path / "a.txt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert no_server.returncode == 2 and "EVIDENCE_URL" in no_server.stderr
    missing = evidence(live, "submit", str(tmp_path / "nothing-here"))
    assert missing.returncode == 2
    bad_chunk = evidence(live, "submit", str(tmp_path / "a.txt"), "--chunk", "10001")
    assert bad_chunk.returncode == 2
    bad_key = evidence(live, "submit", str(tmp_path / "a.txt"), "--api-key", "evl_" + "x" * 43)
    assert bad_key.returncode == 1
    assert "HTTP 401" in bad_key.stderr and "not valid" in bad_key.stderr


def test_killed_while_writing_receipts_then_rerun_writes_every_receipt(tmp_path: Path, live: Live) -> None:
    files = make_tree(tmp_path / "case", 12)
    out = tmp_path / "receipts"
    live.hold_receipts = True
    proc = popen(live, "submit", str(tmp_path / "case"), "--chunk", "4", "--out", str(out))
    try:
        # The first answer with receipts was written (the chunks' probes); the next page is held: kill now.
        assert live.stored.wait(60), "no second page of receipts was asked for"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    written_before = {p: p.read_bytes() for p in out.rglob("*.receipt.json")}
    assert 1 <= len(written_before) < len(files)
    live.hold_receipts = False
    live.release.set()
    posts = list(live.batch_posts)

    done = evidence(live, "submit", str(tmp_path / "case"), "--chunk", "4", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert live.batch_posts == posts  # nothing deposited again
    assert all(len(deposits_of(live, f)) == 1 for f in files)
    assert_receipts_verify(live, files, lambda f: out / (f.relative_to(tmp_path / "case").as_posix() + ".receipt.json"))
    for p, data in written_before.items():
        assert p.read_bytes() == data  # a receipt never changes once issued
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    state = json.loads((out / STATE_NAME).read_text())
    assert all(f["receipt"] is not None for f in state["files"].values())


def test_bulk_receipts_are_the_bytes_of_the_single_get_and_lost_or_torn_files_are_fetched_again(
    tmp_path: Path, live: Live
) -> None:
    files = make_tree(tmp_path / "case", 5)
    done = evidence(live, "submit", str(tmp_path / "case"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sum(live.receipt_posts) == 5  # every receipt came through POST /v1/receipts
    state = json.loads((tmp_path / "case" / STATE_NAME).read_text())
    for f in files:
        entry = state["files"][str(f)]
        single = requests.get(
            f"{live.url}/v1/evidence/{entry['id']}/receipt", headers={"Authorization": f"Bearer {live.key}"}, timeout=10
        )
        assert single.status_code == 200
        assert Path(str(f) + ".receipt.json").read_bytes() == single.content
    lost = Path(str(files[2]) + ".receipt.json")
    lost.unlink()
    # What a power cut can leave: the rename reached the disk, the data did not.
    torn = Path(str(files[3]) + ".receipt.json")
    torn_bytes = torn.read_bytes()
    torn.write_bytes(b"")
    # A leftover temp file of a killed run is neither submitted nor kept as a receipt.
    (tmp_path / "case" / f".{files[0].name}.receipt.json.999.tmp").write_text("{")
    fetched = evidence(live, "receipts", "fetch", str(tmp_path / "case"))
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert lost.is_file()
    assert torn.read_bytes() == torn_bytes
    again = evidence(live, "submit", str(tmp_path / "case"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(len(deposits_of(live, f)) == 1 for f in files)
    state = json.loads((tmp_path / "case" / STATE_NAME).read_text())
    assert sorted(state["files"]) == sorted(map(str, files))


def test_one_contract_one_command_receipt_and_certificate_beside_it(tmp_path: Path, live: Live) -> None:
    case = tmp_path / "case"  # (tmp_path also holds the server's data: its certificate cache, its database)
    case.mkdir()
    contract = case / "买卖合同.pdf"
    contract.write_bytes(b"%PDF-1.7 the one contract " + os.urandom(1000))
    done = evidence(live, "submit", str(contract))
    assert done.returncode == 0, done.stdout + done.stderr
    receipt = case / "买卖合同.pdf.receipt.json"
    certificate = case / "买卖合同.pdf.certificate.pdf"
    assert receipt.is_file() and certificate.read_bytes().startswith(b"%PDF-")
    assert re.search(r"new: 1, already done in an earlier run: 0 in \d+\.\d s", done.stdout), done.stdout
    assert f"verify offline: evidence verify {receipt} --key" in done.stdout
    # the certificate alone verifies, finding the contract beside it
    checked = subprocess.run(
        [sys.executable, "-m", "service", "verify", str(certificate), "--key", live.vkey],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert checked.returncode == 0 and "Using the file beside the receipt" in checked.stderr, checked
    again = evidence(live, "submit", str(contract))
    assert again.returncode == 0 and "new: 0, already done in an earlier run: 1" in again.stdout
    # a directory run does not deposit the receipts and certificates it finds
    tree = evidence(live, "submit", str(case), "--no-certificates")
    assert tree.returncode == 0, tree.stdout + tree.stderr
    assert len(deposits_of(live, certificate)) == 0 and len(deposits_of(live, receipt)) == 0


def test_ctrl_c_says_how_to_resume_and_the_rerun_finishes_without_duplicates(tmp_path: Path, live: Live) -> None:
    files = make_tree(tmp_path / "case", 12)
    live.hold_second = True
    proc = popen(live, "submit", str(tmp_path / "case"), "--chunk", "4")
    try:
        assert live.stored.wait(60), "the second chunk never arrived"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        live.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert "Interrupted. Nothing is lost: run the same command again to resume" in err
    live.hold_second = False
    again = evidence(live, "submit", str(tmp_path / "case"), "--chunk", "4")
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(len(deposits_of(live, f)) == 1 for f in files)


def test_submit_sign_attests_each_file_with_the_depositors_own_key(tmp_path: Path, live: Live) -> None:
    """Issue 14: `evidence submit --sign KEY` signs client-side (the private key never leaves this machine); each
    receipt carries the attestation, and one by a key the tenant never registered is refused, naming the check."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    from service.core.receipt import load_json
    from service.core.verify import verify_receipt
    from service.deposits import add_depositor_key

    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "depositor.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    tree = tmp_path / "signed"
    files = make_tree(tree, 3)
    refused = evidence(live, "submit", str(tree), "--sign", str(key_file), "--label-from", "name", "--no-wait")
    assert (
        refused.returncode == 1 and "not a registered depositor key of this tenant" in refused.stderr + refused.stdout
    )
    with live.runtime.engine.begin() as conn:
        add_depositor_key(conn, "acme", key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw), utc_now())
    (tree / ".evidence-submit.json").unlink()
    for journal in tree.glob(".evidence-submit*"):
        journal.unlink()
    done = evidence(live, "submit", str(tree), "--sign", str(key_file), "--label-from", "name")
    assert done.returncode == 0, done.stdout + done.stderr
    for f in files:
        doc = load_json((f.parent / f"{f.name}.receipt.json").read_bytes())
        result = verify_receipt(
            doc, sha256=hashlib.sha256(f.read_bytes()).digest(), trusted_keys=[live.runtime.signer.verifier]
        )
        assert result.valid and result.label == f.name
        assert result.depositor is not None and result.depositor.kind == "ed25519-key"
