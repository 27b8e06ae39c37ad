"""``evidence keys init|show|publish``: the operator provisions the signing key; processes only load it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.commands.keys import keys
from service.core.note import Verifier
from service.storage import db, ledger


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    return {
        "EVIDENCE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": sqlite_url,
        "EVIDENCE_ORIGIN": "ledger.example.org",
        "EVIDENCE_BROKER_URL": "redis://127.0.0.1:6379/0",
    }


def test_init_writes_a_private_key_prints_its_vkey_and_never_overwrites(tmp_path: Path, env: dict[str, str]) -> None:
    runner = CliRunner()
    first = runner.invoke(keys, ["init"], env=env)
    assert first.exit_code == 0, first.output
    key_file = tmp_path / "signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    vkey = first.stdout.strip().splitlines()[-1]
    assert Verifier.from_vkey(vkey).name == "ledger.example.org"
    before = key_file.read_bytes()
    again = runner.invoke(keys, ["init"], env=env)
    assert again.exit_code != 0 and "already exists" in again.output
    assert key_file.read_bytes() == before
    shown = runner.invoke(keys, ["show"], env=env)
    assert shown.exit_code == 0 and shown.stdout.strip().splitlines()[-1] == vkey


def test_publish_records_the_vkey_and_the_genesis_checkpoint_idempotently(env: dict[str, str], sqlite_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(keys, ["init"], env=env).exit_code == 0
    db.upgrade(sqlite_url)
    for _ in range(2):
        result = runner.invoke(keys, ["publish"], env=env)
        assert result.exit_code == 0, result.output
    engine = db.make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert [r.vkey for r in ledger.list_signing_keys(conn)] == [result.stdout.strip()]
            assert ledger.checkpoint_at(conn, 0) is not None
    finally:
        engine.dispose()
