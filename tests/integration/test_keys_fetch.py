"""``evidence keys fetch URL`` against a real server on 127.0.0.1 (issue 12 item 8)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from werkzeug.serving import make_server

from service.api import create_app
from service.cli import cli
from service.config import Settings
from service.core.note import parse_vkeys
from service.runtime import Runtime
from service.storage import db

GOLDEN = Path(__file__).resolve().parents[1] / "vectors" / "receipts"


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, Runtime]]:
    db.upgrade(sqlite_url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=sqlite_url))
    runtime.prepare_signing()
    http = make_server("127.0.0.1", 0, Flask("placeholder"), threaded=True)
    http.app = create_app(runtime=runtime, start_sealer=False)  # type: ignore[attr-defined]
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}", runtime
    finally:
        http.shutdown()
        thread.join(10)
        http.server_close()
        runtime.engine.dispose()


def test_keys_fetch_shows_fingerprints_and_saves_a_trust_file_verify_accepts(
    server: tuple[str, Runtime], tmp_path: Path
) -> None:
    base, runtime = server
    out = tmp_path / "ledger.keys"
    result = CliRunner().invoke(cli, ["keys", "fetch", base, "-o", str(out)])
    assert result.exit_code == 0, result.output
    verifier = runtime.signer.verifier
    assert f"fingerprint {verifier.fingerprint}" in result.stdout
    assert "compare each fingerprint" in result.stderr
    text = out.read_text()
    assert [v.vkey for v in parse_vkeys(text)] == [verifier.vkey]
    assert verifier.fingerprint in text  # as a comment beside the key

    # the trust file is what evidence verify --key takes (a wrong key, here: the golden receipt is not ours)
    refused = CliRunner().invoke(
        cli, ["verify", str(GOLDEN / "single.json"), str(GOLDEN / "contract.txt"), "--key", str(out)]
    )
    assert refused.exit_code == 1 and "INVALID" in refused.stdout


def test_keys_fetch_says_what_went_wrong(server: tuple[str, Runtime], tmp_path: Path) -> None:
    base, _runtime = server
    runner = CliRunner()
    not_keys = runner.invoke(cli, ["keys", "fetch", base + "/openapi.json/v1/keys", "-o", str(tmp_path / "k")])
    assert not_keys.exit_code == 1 and "404" in not_keys.output
    refused = runner.invoke(cli, ["keys", "fetch", "ftp://example", "-o", str(tmp_path / "k")])
    assert refused.exit_code == 2 and "http://" in refused.output
    assert not (tmp_path / "k").exists()
