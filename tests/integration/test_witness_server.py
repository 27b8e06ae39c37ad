"""``evidence witness key`` and ``evidence witness serve`` as real processes on 127.0.0.1 (SPEC §9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.core.cosignature import WitnessKey, check_cosignatures
from tests.support.processes import WitnessProcess, evidence, http
from tests.unit.test_witness_state import LOG, request, signed

pytestmark = pytest.mark.slow


@pytest.fixture
def witness(tmp_path: Path) -> Iterator[WitnessProcess]:
    w = WitnessProcess(tmp_path / "w1", [LOG.verifier.vkey], name="court.example/witness")
    try:
        yield w.start()
    finally:
        w.stop()


def test_key_command_prints_the_vkey_alone_on_the_last_line_and_keeps_it(tmp_path: Path) -> None:
    first = evidence("witness", "key", "--data-dir", str(tmp_path / "w"), "--name", "notary.example/w")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    key = WitnessKey.from_vkey(lines[-1])
    assert key.name == "notary.example/w" and key.fingerprint in first.stdout
    again = evidence("witness", "key", "--data-dir", str(tmp_path / "w"))
    assert again.stdout.splitlines()[-1] == lines[-1]
    other = evidence("witness", "key", "--data-dir", str(tmp_path / "w"), "--name", "someone.else/w")
    assert other.returncode == 2 and "named" in other.stderr


def test_serve_usage_errors(tmp_path: Path) -> None:
    run = evidence("witness", "serve", "--port", "1", "--data-dir", str(tmp_path), "--log", "not+a+key")
    assert run.returncode == 2 and "bad log key" in run.stderr
    run = evidence("witness", "serve", "--port", "1", "--data-dir", str(tmp_path))
    assert run.returncode == 2 and "--log" in run.stderr


def test_http_status_codes_and_media_types(witness: WitnessProcess) -> None:
    status, headers, body = witness.add_checkpoint(request(0, 4))
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    [check] = check_cosignatures(signed(4) + body, [WitnessKey.from_vkey(witness.vkey)])
    assert check.valid
    status, headers, body = witness.add_checkpoint(request(1, 6))
    assert status == 409 and headers["Content-Type"] == "text/x.tlog.size" and body == b"4\n"
    status, headers, body = witness.add_checkpoint(request(4, 4, salt=b"fork"))
    assert status == 422 and headers["Content-Type"] == "application/problem+json" and b"fork" in body
    assert witness.add_checkpoint(b"nonsense")[0] == 400
    assert witness.add_checkpoint(b"x" * 70_000)[0] == 413
    assert http("GET", f"{witness.url}/add-checkpoint")[0] == 405
    status, _, body = http("GET", witness.url + "/")
    assert status == 200 and witness.vkey.encode() in body and LOG.verifier.vkey.encode() in body


def test_state_survives_kill_9(witness: WitnessProcess) -> None:
    assert witness.add_checkpoint(request(0, 10))[0] == 200
    witness.kill()
    witness.start()
    status, _, body = witness.add_checkpoint(request(0, 12))
    assert status == 409 and body == b"10\n"
    assert witness.add_checkpoint(request(10, 12))[0] == 200
    assert "MISBEHAVIOUR" not in witness.log_path.read_text()
    assert witness.add_checkpoint(request(12, 12, salt=b"fork"))[0] == 422
    assert "MISBEHAVIOUR of log example.org/ledger (fork)" in witness.log_path.read_text()
