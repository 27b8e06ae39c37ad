"""Secrets at rest on the embedded default: the data directory is 0700, the database and its WAL/SHM files 0600
(they hold webhook secrets), also when an older release left them 0755/0644; a signing key file that its group or
other users can read stops the start."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

from service.config import Settings
from service.core.errors import ConfigError
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def start(data_dir: Path) -> Runtime:
    settings = Settings(data_dir=data_dir, rate_limit=0)
    db.upgrade(settings.database_url)
    rt = Runtime.from_settings(settings)
    rt.prepare_signing()
    with rt.engine.begin() as conn:  # a write: the WAL and SHM files exist now
        create_tenant(conn, f"t-{secrets.token_hex(4)}", utc_now())
    return rt


def test_new_data_dir_database_wal_and_shm_are_private(tmp_path: Path) -> None:
    os.umask(0o022)
    data_dir = tmp_path / "data"
    rt = start(data_dir)
    try:
        assert mode(data_dir) == 0o700
        for name in ("evidence.db", "evidence.db-wal", "evidence.db-shm", "signing.key"):
            assert mode(data_dir / name) == 0o600, name
    finally:
        rt.engine.dispose()


def test_an_older_release_s_open_modes_are_tightened_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rt = start(data_dir)
    rt.engine.dispose()
    data_dir.chmod(0o755)
    for name in ("evidence.db", "evidence.db-wal", "evidence.db-shm"):
        if (data_dir / name).exists():
            (data_dir / name).chmod(0o644)
    rt = start(data_dir)
    try:
        assert mode(data_dir) == 0o700
        for name in ("evidence.db", "evidence.db-wal", "evidence.db-shm"):
            assert mode(data_dir / name) == 0o600, name
    finally:
        rt.engine.dispose()


@pytest.mark.parametrize("key_mode", [0o640, 0o604, 0o644, 0o660])
def test_a_signing_key_others_can_read_stops_the_start(tmp_path: Path, key_mode: int) -> None:
    data_dir = tmp_path / "data"
    start(data_dir).engine.dispose()
    (data_dir / "signing.key").chmod(key_mode)
    rt = Runtime.from_settings(Settings(data_dir=data_dir, rate_limit=0))
    try:
        with pytest.raises(ConfigError, match="can be read by other users.*chmod 600"):
            rt.prepare_signing()
    finally:
        rt.engine.dispose()
