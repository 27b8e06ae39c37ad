"""``GET /``: the bilingual start page (issue 12 item 5), through Flask's test client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.api import create_app
from service.config import Settings
from service.runtime import Runtime
from service.storage import db


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[FlaskClient, Runtime]]:
    db.upgrade(sqlite_url)
    runtime = Runtime.from_settings(
        Settings(data_dir=tmp_path / "data", database_url=sqlite_url, public_url="https://ledger.example.org")
    )
    runtime.prepare_signing()
    yield create_app(runtime=runtime, start_sealer=False).test_client(), runtime
    runtime.engine.dispose()


def test_start_page_is_bilingual_and_leads_to_every_journey(client: tuple[FlaskClient, Runtime]) -> None:
    http, runtime = client
    response = http.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for href in ("/deposit", "/verify", "/check", "/download/", "/openapi.json"):
        assert f'href="{href}"' in page, href
        assert http.get(href).status_code == 200, href
    assert "存证" in page and "Evidence deposit" in page and "What this is" in page and "这是什么" in page
    verifier = runtime.signer.verifier
    assert verifier.fingerprint in page and verifier.vkey in page  # keys with fingerprints
    assert "pip install --no-index --find-links https://ledger.example.org/download/ evidence-ledger" in page
    assert "evidence submit contract.pdf" in page
    # no script at all, and a CSP that says so
    assert "<script" not in page
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'none'" in csp and "connect-src 'none'" in csp
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/=]+'", csp)


def test_unknown_paths_stay_json_problems(client: tuple[FlaskClient, Runtime]) -> None:
    http, _runtime = client
    response = http.get("/no/such/page")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
