"""Issue 11, the smaller items: a repeated Idempotency-Key, invisible label characters, nosniff and no-store,
gunicorn's own 414/431 as problem+json, ``evidence certificate --label``, numbers that overflow to infinity, and
OPTIONS answers. The header and limit cases run against ``evidence serve`` (real gunicorn over a socket), since
gunicorn is what joins repeated headers and answers over-long requests."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.api import create_app
from service.config import Settings
from service.core import strictjson
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant
from tests.integration.test_serve import env, evidence, server  # noqa: F401 - pytest fixtures

BIDI_AND_ZERO_WIDTH = [
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *range(0x200B, 0x2010),
    0xFEFF,
]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path / "data", rate_limit=0, batch_max_age=0.2)
    db.upgrade(settings.database_url)
    rt = Runtime.from_settings(settings)
    rt.prepare_signing()
    yield rt
    rt.engine.dispose()


@pytest.fixture
def client(runtime: Runtime) -> FlaskClient:
    return create_app(runtime=runtime, start_sealer=False).test_client()


def auth(runtime: Runtime) -> dict[str, str]:
    with runtime.engine.begin() as conn:
        return {"Authorization": f"Bearer {create_tenant(conn, 'acme', utc_now())}"}


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_labels_refuse_bidi_controls_and_zero_width_characters(runtime: Runtime, client: FlaskClient) -> None:
    headers = auth(runtime)
    for code in BIDI_AND_ZERO_WIDTH:
        label = f"invoice{chr(code)}fdp.exe"
        r = client.post("/v1/evidence", json={"sha256": digest(code), "label": label}, headers=headers)
        assert r.status_code == 400, hex(code)
        problem = r.get_json()
        assert r.mimetype == "application/problem+json"
        assert f"U+{code:04X} at position 7" in problem["detail"], problem
        assert "bidirectional controls and zero-width characters" in problem["detail"]
        items = [{"sha256": digest(code), "label": label}]
        assert client.post("/v1/evidence/batch", json={"items": items}, headers=headers).status_code == 422
    ok = client.post("/v1/evidence", json={"sha256": digest(0), "label": "合同 (final) – v2.pdf"}, headers=headers)
    assert ok.status_code == 202


def test_strict_json_refuses_numbers_that_overflow_to_infinity(runtime: Runtime, client: FlaskClient) -> None:
    for text in ("1e400", "[-1E+400]", '{"a": 123e99999}'):
        with pytest.raises(strictjson.StrictJSONError, match="too large for a double"):
            strictjson.loads(text)
    assert strictjson.loads("1.7976931348623157e308") == 1.7976931348623157e308
    body = b'{"items": [{"sha256": "' + digest(1).encode() + b'", "label": "x"}], "n": 1e400}'
    r = client.post("/v1/evidence/batch", data=body, headers={**auth(runtime), "Content-Type": "application/json"})
    assert r.status_code == 400 and "too large for a double" in r.get_json()["detail"]


def test_json_answers_say_nosniff_and_receipts_no_store(runtime: Runtime, client: FlaskClient) -> None:
    headers = auth(runtime)
    for r in (client.get("/healthz"), client.get("/v1/keys"), client.get("/v1/evidence/nope", headers=headers)):
        assert r.headers["X-Content-Type-Options"] == "nosniff", r.request.path
    deposited = client.post("/v1/evidence", json={"sha256": digest(5)}, headers=headers).get_json()
    pending = client.get(f"/v1/evidence/{deposited['id']}/receipt", headers=headers)
    assert pending.status_code == 202 and pending.headers["Cache-Control"] == "no-store"
    from service import sealing

    with runtime.engine.begin() as conn:
        sealing.seal_batch(conn, runtime.signer, utc_now(), 100)
    sealed = client.get(f"/v1/evidence/{deposited['id']}/receipt", headers=headers)
    assert sealed.status_code == 200 and sealed.headers["Cache-Control"] == "no-store"
    assert sealed.headers["X-Content-Type-Options"] == "nosniff"
    bulk = client.post("/v1/receipts", json={"ids": [deposited["id"]]}, headers=headers)
    assert bulk.status_code == 200 and bulk.headers["Cache-Control"] == "no-store"


def test_options_lists_the_methods_the_url_really_serves(client: FlaskClient) -> None:
    expected = {
        "/v1/evidence/batch": {"POST", "OPTIONS"},  # not GET: "batch" is no evidence id
        "/v1/evidence": {"GET", "HEAD", "POST", "OPTIONS"},
        "/v1/evidence/ev_x": {"GET", "HEAD", "OPTIONS"},
        "/v1/receipts": {"POST", "OPTIONS"},
        "/v1/webhook": {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"},
        "/healthz": {"GET", "HEAD", "OPTIONS"},
    }
    for path, methods in expected.items():
        r = client.open(path, method="OPTIONS")
        assert r.status_code == 204, path
        assert set(r.headers["Allow"].split(", ")) == methods, (path, r.headers["Allow"])


def test_fit_label_measures_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The certificate's label cut measures about as many characters as the label has (was quadratic: 304 s for an
    11,000-character label). Counted, not timed."""
    import fpdf

    from service.court.certificate import render_certificate
    from tests.unit.test_certificate import VERIFY_URL, make_receipt

    measured = [0]
    original = fpdf.FPDF.get_string_width

    def counting(self: Any, s: str, *args: Any, **kwargs: Any) -> float:
        measured[0] += len(s)
        return float(original(self, s, *args, **kwargs))

    monkeypatch.setattr(fpdf.FPDF, "get_string_width", counting)
    receipt = make_receipt()
    render_certificate(receipt, verify_url=VERIFY_URL, label="x")
    baseline = measured[0]
    measured[0] = 0
    label = "长" * 11_000
    render_certificate(receipt, verify_url=VERIFY_URL, label=label)
    assert measured[0] - baseline < 4 * len(label), measured[0]


def test_certificate_command_applies_the_label_rules(tmp_path: Path) -> None:
    from tests.unit.test_certificate import make_receipt

    receipt = tmp_path / "r.json"
    receipt.write_text(json.dumps(make_receipt()))
    for label, reason in [
        ("a" * 11_000, "must be 1-500 characters, found 11000"),
        ("invoice\u202efdp.exe", "contains U+202E at position 7; bidirectional controls"),
        ("two\nlines", "contains U+000A at position 3"),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "service", "certificate", str(receipt), "-o", str(tmp_path / "c.pdf"),
             "--label", label],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert f"the label {reason}" in run.stderr, run.stderr
        assert not (tmp_path / "c.pdf").exists()


# --- against gunicorn (evidence serve) --------------------------------------------------------------------


def raw_request(base: str, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> Any:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)  # a name given twice is sent twice
        if body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def test_gunicorn_repeated_idempotency_key_and_limits(
    server: tuple[str, Path, subprocess.Popen[bytes]],  # noqa: F811 - the fixture
    env: dict[str, str],  # noqa: F811 - the fixture
) -> None:
    base, data_dir, _ = server
    created = evidence("tenant", "create", "acme", "--data-dir", str(data_dir), env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    body = json.dumps({"items": [{"sha256": digest(7)}]}).encode()
    common = [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")]

    status, ctype, answer = raw_request(
        base, "POST", "/v1/evidence/batch", [*common, ("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")], body
    )
    assert status == 400 and ctype == "application/problem+json", answer
    assert "must be given once" in json.loads(answer)["detail"]
    status, _, answer = raw_request(base, "POST", "/v1/evidence/batch", [*common, ("Idempotency-Key", "k1")], body)
    assert status == 202, answer

    status, ctype, answer = raw_request(base, "GET", "/v1/evidence/" + "a" * 9000, [])
    assert status == 414 and ctype == "application/problem+json", (status, ctype, answer)
    problem = json.loads(answer)
    assert problem["status"] == 414 and "request line" in problem["detail"]

    status, ctype, answer = raw_request(base, "GET", "/healthz", [("X-Big", "b" * 9000)])
    assert status == 431 and ctype == "application/problem+json", (status, ctype, answer)
    assert json.loads(answer)["status"] == 431 and "header" in json.loads(answer)["detail"]
    headers = [(f"X-H{i}", "v") for i in range(150)]
    status, ctype, answer = raw_request(base, "GET", "/healthz", headers)
    assert status == 431 and ctype == "application/problem+json", (status, ctype, answer)
