"""The operator's SM2 key end to end (SPEC §4.1): ``evidence keys init --sm2``, the service signing every checkpoint
with Ed25519 and SM2 once the key exists, ``/v1/keys`` with both keys and both fingerprints, ``evidence verify
--key SM2VKEY`` alone, and the served checkpoints' SM2 lines checked by the ``openssl`` command line."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from service import sealing
from service.api import create_app
from service.commands.keys import keys
from service.commands.verify import verify as verify_command
from service.config import Settings
from service.core.formats import utc_now
from service.core.note import Signer, Sm2Verifier, Verifier, open_note
from service.runtime import Runtime
from service.storage import db, ledger
from service.tenants import create_tenant

ORIGIN = "ledger.example.org"
SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    return {"EVIDENCE_DATA_DIR": str(tmp_path), "DATABASE_URL": sqlite_url, "EVIDENCE_ORIGIN": ORIGIN}


def test_keys_init_sm2_writes_a_pem_and_never_overwrites(tmp_path: Path, env: dict[str, str]) -> None:
    runner = CliRunner()
    made = runner.invoke(keys, ["init", "--sm2"], env=env)
    assert made.exit_code == 0, made.output
    pem = tmp_path / "signing-sm2.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    vkey = made.stdout.strip().splitlines()[-1]
    verifier = Verifier.from_vkey(vkey)
    assert isinstance(verifier, Sm2Verifier) and verifier.name == ORIGIN
    assert verifier.distid == b"1234567812345678"
    assert f"SM3 fingerprint {verifier.fingerprint_sm3}" in made.stderr
    assert not (tmp_path / "signing.key").exists()  # --sm2 creates only the SM2 key
    again = runner.invoke(keys, ["init", "--sm2"], env=env)
    assert again.exit_code != 0 and "already exists" in again.output
    shown = runner.invoke(keys, ["show", "--sm2"], env=env)
    assert shown.exit_code == 0 and shown.stdout.strip().splitlines()[-1] == vkey
    other_id = runner.invoke(keys, ["show", "--sm2"], env={**env, "EVIDENCE_SM2_ID": "ALICE123@YAHOO.COM"})
    other = Verifier.from_vkey(other_id.stdout.strip())
    assert isinstance(other, Sm2Verifier) and other.distid == b"ALICE123@YAHOO.COM"
    assert other.public_key == verifier.public_key and other.key_hash != verifier.key_hash
    bad_id = runner.invoke(keys, ["show", "--sm2"], env={**env, "EVIDENCE_SM2_ID": "has space"})
    assert bad_id.exit_code != 0 and "EVIDENCE_SM2_ID" in f"{bad_id.output}{bad_id.exception}"


def test_sm2_key_readable_by_others_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    assert CliRunner().invoke(keys, ["init", "--sm2"], env=env).exit_code == 0
    (tmp_path / "signing-sm2.pem").chmod(0o644)
    shown = CliRunner().invoke(keys, ["show", "--sm2"], env=env)
    assert shown.exit_code != 0 and "chmod 600" in f"{shown.output}{shown.exception}"


@pytest.fixture
def dual(tmp_path: Path, env: dict[str, str], sqlite_url: str) -> Iterator[Runtime]:
    assert CliRunner().invoke(keys, ["init", "--sm2"], env=env).exit_code == 0
    db.upgrade(sqlite_url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path, database_url=sqlite_url, origin=ORIGIN))
    runtime.prepare_signing()
    yield runtime
    runtime.engine.dispose()


def _deposit_and_seal(runtime: Runtime, data: bytes) -> dict[str, Any]:
    with runtime.engine.begin() as conn:
        api_key = create_tenant(conn, f"t{hashlib.sha256(data).hexdigest()[:8]}", utc_now())
    client = create_app(runtime=runtime, start_sealer=False).test_client()
    auth = {"Authorization": f"Bearer {api_key}"}
    made = client.post("/v1/evidence", json={"sha256": hashlib.sha256(data).hexdigest()}, headers=auth)
    assert made.status_code == 202, made.json
    sealing.seal_pending(
        runtime.engine, runtime.signer, max_leaves=100, max_age=1, force=True, cosigners=runtime.cosigners
    )
    receipt = client.get(f"/v1/evidence/{made.json['id']}/receipt", headers=auth)  # type: ignore[index]
    assert receipt.status_code == 200
    doc = receipt.json
    assert isinstance(doc, dict)
    return doc


def test_every_checkpoint_is_signed_with_both_keys_and_keys_lists_both(dual: Runtime) -> None:
    ed, (gm,) = dual.signer.verifier, dual.cosigners
    with dual.engine.connect() as conn:
        genesis = ledger.checkpoint_at(conn, 0)
    assert genesis is not None
    assert open_note(bytes(genesis.note), [gm.verifier]).verified == (gm.verifier,)
    client = create_app(runtime=dual, start_sealer=False).test_client()
    listed = client.get("/v1/keys").json
    assert listed is not None
    by_alg = {k["algorithm"]: k for k in listed["keys"]}
    assert set(by_alg) == {"ed25519", "sm2"}
    assert by_alg["ed25519"]["vkey"] == ed.vkey and by_alg["sm2"]["vkey"] == gm.verifier.vkey
    assert by_alg["sm2"]["fingerprint_sm3"] == gm.verifier.fingerprint_sm3
    assert by_alg["sm2"]["fingerprint"].replace(" ", "") == hashlib.sha256(gm.verifier.public_key).hexdigest()
    assert by_alg["sm2"]["distid"] == "1234567812345678" and "distid" not in by_alg["ed25519"]
    assert by_alg["ed25519"]["fingerprint"] == ed.fingerprint

    doc = _deposit_and_seal(dual, b"contract")
    note = doc["ledger"]["checkpoint"].encode()
    sig_lines = note.split(b"\n\n", 1)[1].splitlines()
    assert len(sig_lines) == 2
    assert open_note(note, [ed, gm.verifier]).verified == (ed, gm.verifier)
    assert set(doc["keys"]) == {ed.vkey, gm.verifier.vkey}
    served = client.get("/v1/checkpoint").data
    assert open_note(served, [gm.verifier]).verified == (gm.verifier,)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")
def test_served_sm2_signatures_verify_with_openssl(dual: Runtime, tmp_path: Path) -> None:
    _deposit_and_seal(dual, b"one")
    _deposit_and_seal(dual, b"two")
    client = create_app(runtime=dual, start_sealer=False).test_client()
    listed = client.get("/v1/keys").json
    assert listed is not None
    sm2_key = Verifier.from_vkey(next(k["vkey"] for k in listed["keys"] if k["algorithm"] == "sm2"))
    assert isinstance(sm2_key, Sm2Verifier)
    der = SPKI_PREFIX + sm2_key.public_key  # the published key alone, as an independent verifier would build it
    pub = tmp_path / "pub.pem"
    pub.write_text("-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der).decode() + "-----END PUBLIC KEY-----\n")
    with dual.engine.connect() as conn:
        notes = [bytes(ledger.checkpoint_at(conn, size).note) for size in range(3)]  # type: ignore[union-attr]
    for note in notes:
        text, sigs = note.split(b"\n\n", 1)
        line = [s for s in sigs.splitlines() if s.split(b" ")[1] == ORIGIN.encode()][1]
        raw = base64.b64decode(line.split(b" ")[2])
        assert int.from_bytes(raw[:4], "big") == sm2_key.key_hash
        (tmp_path / "text").write_bytes(text + b"\n")
        (tmp_path / "sig").write_bytes(raw[4:])
        checked = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", str(pub),
             "-pkeyopt", "distid:1234567812345678", "-in", str(tmp_path / "text"), "-sigfile", str(tmp_path / "sig")],
            capture_output=True, check=False,
        )  # fmt: skip
        assert checked.returncode == 0 and b"Signature Verified Successfully" in checked.stdout, checked


def _corrupt_sm2_line(doc: dict[str, Any]) -> dict[str, Any]:
    note = doc["ledger"]["checkpoint"]
    b64 = note.rstrip("\n").rsplit("\n", 1)[1].rsplit(" ", 1)[1]
    raw = bytearray(base64.b64decode(b64))
    raw[-3] ^= 0x01
    bad = json.loads(json.dumps(doc))
    bad["ledger"]["checkpoint"] = note.replace(b64, base64.b64encode(bytes(raw)).decode())
    return bad


def test_evidence_verify_with_the_sm2_key_alone(dual: Runtime, tmp_path: Path) -> None:
    doc = _deposit_and_seal(dual, b"contract")
    (tmp_path / "r.json").write_text(json.dumps(doc))
    (tmp_path / "bad.json").write_text(json.dumps(_corrupt_sm2_line(doc)))
    (tmp_path / "contract").write_bytes(b"contract")
    ed, sm2 = dual.signer.verifier.vkey, dual.cosigners[0].verifier.vkey
    runner = CliRunner()

    def run(receipt: str, *vkeys: str) -> Any:
        args = [str(tmp_path / receipt), str(tmp_path / "contract"), "--json"]
        for v in vkeys:
            args += ["--key", v]
        return runner.invoke(verify_command, args, env={"EVIDENCE_TRUSTED_KEYS": ""})

    for trusted in ((sm2,), (ed,), (ed, sm2)):
        ok = run("r.json", *trusted)
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.stdout)["valid"] is True
    alone = run("r.json", sm2)
    step6 = [c for c in json.loads(alone.stdout)["checks"] if c["step"] == 6][0]
    assert "SM2" in step6["detail"] and dual.cosigners[0].verifier.fingerprint_sm3 in step6["detail"]
    assert run("bad.json", ed).exit_code == 0  # an SM2 line from an untrusted key is ignored
    for trusted in ((sm2,), (ed, sm2)):
        failed = run("bad.json", *trusted)
        assert failed.exit_code == 1
        assert json.loads(failed.stdout)["step"] == 6
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# SM2 only\n{sm2}\n")
    assert run("r.json", str(key_file)).exit_code == 0


def test_checkpoints_before_the_sm2_key_stay_ed25519_only(tmp_path: Path, sqlite_url: str, env: dict[str, str]) -> None:
    db.upgrade(sqlite_url)
    settings = Settings(data_dir=tmp_path, database_url=sqlite_url, origin=ORIGIN)
    first = Runtime.from_settings(settings)
    first.prepare_signing()
    assert first.cosigners == ()
    first.engine.dispose()
    assert CliRunner().invoke(keys, ["init", "--sm2"], env=env).exit_code == 0
    second = Runtime.from_settings(settings)
    second.prepare_signing()  # publishes the SM2 key; the genesis checkpoint is not re-signed
    try:
        doc = _deposit_and_seal(second, b"later")
        ed = second.signer.verifier
        assert isinstance(second.signer, Signer)
        with second.engine.connect() as conn:
            genesis = ledger.checkpoint_at(conn, 0)
            assert genesis is not None
            assert len(bytes(genesis.note).split(b"\n\n", 1)[1].splitlines()) == 1
            assert len(ledger.list_signing_keys(conn)) == 2
        assert open_note(doc["ledger"]["checkpoint"].encode(), [second.cosigners[0].verifier]).verified
        assert open_note(doc["ledger"]["checkpoint"].encode(), [ed]).verified == (ed,)
    finally:
        second.engine.dispose()
