"""Commands that write name the database they used and never start a new embedded one silently (issue 12 item 4).

Run as a user would, in a folder of their own: ``python -m service`` with the working directory set and no
EVIDENCE_DATA_DIR / DATABASE_URL in the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.api import create_app
from service.config import Settings
from service.runtime import Runtime
from service.storage import db

DROP = ("DATABASE_URL", "EVIDENCE_DATA_DIR", "EVIDENCE_SIGNING_KEY_FILE", "EVIDENCE_BROKER_URL")


def evidence(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    return subprocess.run(
        [sys.executable, "-m", "service", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    "command",
    [
        ["tenant", "create", "acme"],
        ["tenant", "list"],
        ["tenant", "key", "add", "acme"],
        ["tenant", "revoke", "acme"],
        ["db", "upgrade"],
        ["keys", "publish"],
        ["keys", "list"],
    ],
    ids=lambda c: " ".join(c),
)
def test_no_command_creates_a_database_in_another_folder_silently(tmp_path: Path, command: list[str]) -> None:
    elsewhere = tmp_path / "Downloads"
    elsewhere.mkdir()
    result = evidence(elsewhere, *command)
    assert result.returncode == 2, result
    expected = elsewhere.resolve() / "evidence-data" / "evidence.db"
    assert f"there is no Evidence Ledger database at {expected}" in result.stderr
    assert "--data-dir" in result.stderr and "--init" in result.stderr
    assert not (elsewhere / "evidence-data").exists()


def test_tenant_create_with_init_or_data_dir_names_the_database_it_used(tmp_path: Path) -> None:
    here = tmp_path / "office"
    here.mkdir()
    created = evidence(here, "tenant", "create", "acme", "--init")
    assert created.returncode == 0, created.stderr
    path = here.resolve() / "evidence-data" / "evidence.db"
    assert path.exists()
    assert f"in the database {path}" in created.stdout
    assert created.stdout.splitlines()[-1].startswith("evl_")

    # once it exists, the same folder needs no flag; another data dir given explicitly is created
    second = evidence(here, "tenant", "key", "add", "acme")
    assert second.returncode == 0 and f"in the database {path}" in second.stdout
    other = tmp_path / "server-data"
    third = evidence(here, "tenant", "create", "beta", "--data-dir", str(other))
    assert third.returncode == 0 and f"in the database {other / 'evidence.db'}" in third.stdout

    duplicate = evidence(here, "tenant", "create", "acme")
    assert duplicate.returncode == 2
    assert "already exists" in duplicate.stderr and "evidence tenant key add acme" in duplicate.stderr


def test_unknown_key_401_hints_at_another_database(tmp_path: Path, sqlite_url: str) -> None:
    db.upgrade(sqlite_url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=sqlite_url))
    runtime.prepare_signing()
    try:
        client: FlaskClient = create_app(runtime=runtime, start_sealer=False).test_client()
        response = client.post(
            "/v1/evidence", json={"sha256": "a" * 64}, headers={"Authorization": "Bearer evl_" + "x" * 43}
        )
        assert response.status_code == 401
        detail = response.get_json()["detail"]
        assert "unknown or revoked" in detail and "--data-dir" in detail and "database" in detail
    finally:
        runtime.engine.dispose()
