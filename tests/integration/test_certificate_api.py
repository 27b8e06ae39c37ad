"""The certificate of deposit over the API and the CLI, and the two pages as the server sends them.

``GET /v1/evidence/{id}/certificate.pdf`` is checked end to end: deposit over the test client, seal, download
the PDF, and run ``evidence verify certificate.pdf FILE --key VKEY`` on it (the verifier reads the attached
receipt.json). ``evidence certificate RECEIPT -o FILE.pdf`` is checked the same way, offline.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from service import sealing
from service.api import pages
from service.api.openapi import document as openapi_document
from service.cli import cli
from service.commands.certificate import verify_url
from service.config import Settings, TimestampAuthority
from service.core.errors import ConfigError
from service.court.certificate import extract_receipt
from service.runtime import Runtime
from tests.conftest import skip_or_fail
from tests.factories import auth, make_app, make_runtime, new_key

GOLDEN = Path(__file__).resolve().parents[1] / "vectors" / "receipts"


# --- fixtures -------------------------------------------------------------------------------------


PUBLIC_URL = "https://ledger.example/base/"


@pytest.fixture
def runtime(tmp_path: Path, sqlite_url: str) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path, sqlite_url, public_url=PUBLIC_URL)
    yield rt
    rt.engine.dispose()


def seal(runtime: Runtime) -> None:
    sealing.seal_pending(runtime.engine, runtime.signer, max_leaves=1000, max_age=1.0, force=True)


def deposit(client: FlaskClient, key: str, data: bytes, label: str | None = None) -> str:
    body: dict[str, str] = {"sha256": hashlib.sha256(data).hexdigest()}
    if label is not None:
        body["label"] = label
    response = client.post("/v1/evidence", json=body, headers=auth(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    return str(response.get_json()["id"])


def pdftotext(pdf: bytes, tmp_path: Path, *, layout: bool = True) -> str:
    binary = shutil.which("pdftotext")
    if binary is None:
        skip_or_fail("pdftotext not installed (Debian package poppler-utils; run scripts/install-system-deps)")
    path = tmp_path / "read.pdf"
    path.write_bytes(pdf)
    args = [str(binary), *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def squeezed(text: str) -> str:
    """The text without any whitespace (the URL under the QR code wraps over several lines)."""
    return "".join(text.split())


# --- GET /v1/evidence/{id}/certificate.pdf -------------------------------------------------------------


def test_certificate_pdf_verifies_with_evidence_verify(client: FlaskClient, runtime: Runtime, tmp_path: Path) -> None:
    key = new_key(runtime, "acme")
    contract = tmp_path / "contract.pdf"
    contract.write_bytes(b"%PDF-1.4 the signed contract" * 50)
    evidence_id = deposit(client, key, contract.read_bytes(), label="买卖合同 2026-11")

    pending = client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth(key))
    assert pending.status_code == 202
    assert pending.get_json()["status"] == "pending" and pending.get_json()["id"] == evidence_id
    assert int(pending.headers["Retry-After"]) >= 1

    seal(runtime)
    response = client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth(key))
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f'attachment; filename="certificate-{evidence_id}.pdf"'
    pdf = response.get_data()
    receipt = client.get(f"/v1/evidence/{evidence_id}/receipt", headers=auth(key)).get_data()
    assert extract_receipt(pdf) == receipt  # byte for byte what GET .../receipt serves

    certificate = tmp_path / "certificate.pdf"
    certificate.write_bytes(pdf)
    vkey = runtime.signer.verifier.vkey
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", str(certificate), str(contract), "--key", vkey])
    assert ok.exit_code == 0, ok.output
    assert "VALID" in ok.output
    other = tmp_path / "other.pdf"
    other.write_bytes(b"not the contract")
    bad = runner.invoke(cli, ["verify", str(certificate), str(other), "--key", vkey, "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.output)["step"] == 1

    text = pdftotext(pdf, tmp_path)
    assert evidence_id in text
    assert "买卖合同 2026-11" in text
    fingerprint = runtime.signer.verifier.fingerprint
    assert fingerprint[:39] in text and fingerprint[40:] in text
    # the QR code opens public checking with this certificate's number (its URL is printed under it)
    assert f"https://ledger.example/base/check?id={evidence_id}" in squeezed(pdftotext(pdf, tmp_path, layout=False))


def test_certificate_of_another_tenants_evidence_is_404(client: FlaskClient, runtime: Runtime) -> None:
    owner, stranger = new_key(runtime, "owner"), new_key(runtime, "stranger")
    evidence_id = deposit(client, owner, b"private")
    seal(runtime)
    assert client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth(owner)).status_code == 200
    response = client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth(stranger))
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    unknown = client.get("/v1/evidence/AAAAAAAAAAAAAAAAAAAAAA/certificate.pdf", headers=auth(owner))
    assert unknown.status_code == 404


def test_certificate_needs_a_valid_key_and_id(client: FlaskClient, runtime: Runtime) -> None:
    key = new_key(runtime, "acme")
    assert client.get("/v1/evidence/AAAA/certificate.pdf").status_code == 401
    assert client.get("/v1/evidence/AAAA/certificate.pdf", headers=auth("evl_nope")).status_code == 401
    bad = client.get("/v1/evidence/a.b/certificate.pdf", headers=auth(key))
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"


def test_certificate_shows_a_timestamp_checked_against_the_trusted_tsa(tmp_path: Path, sqlite_url: str) -> None:
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl binary is not installed")
    from service.timestamping import timestamp_pending
    from tests.support.local_tsa import LocalTSA

    with LocalTSA(name="Certificate Test TSA") as tsa:
        runtime = make_runtime(
            tmp_path,
            sqlite_url,
            public_url=PUBLIC_URL,
            tsa=(TimestampAuthority("tsa0", tsa.url),),
            tsa_ca_files=(tsa.ca_cert_path,),
        )
        try:
            client = make_app(runtime).test_client()
            key = new_key(runtime, "acme")
            evidence_id = deposit(client, key, b"stamped")
            seal(runtime)
            assert timestamp_pending(runtime.engine, runtime.settings).stored
            response = client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth(key))
        finally:
            runtime.engine.dispose()
    assert response.status_code == 200
    text = pdftotext(response.get_data(), tmp_path)
    assert "Certificate Test TSA" in text
    assert "verified against a trusted TSA root" in text


# --- drawn once, then served from the cache; drawing capped per process ----------------------------


def _count_drawings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    drawn: list[str] = []
    real = pages.render_certificate

    def counting(document: dict[str, Any], **kwargs: Any) -> bytes:
        drawn.append(document["evidence"]["id"])
        return real(document, **kwargs)

    monkeypatch.setattr(pages, "render_certificate", counting)
    return drawn


def test_a_sealed_certificate_is_drawn_once_then_served_from_the_cache(
    client: FlaskClient, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = _count_drawings(monkeypatch)
    key = new_key(runtime, "acme")
    evidence_id = deposit(client, key, b"cached contract", label="合同")
    seal(runtime)
    url = f"/v1/evidence/{evidence_id}/certificate.pdf"
    first = client.get(url, headers=auth(key))
    second = client.get(url, headers=auth(key))
    assert first.status_code == second.status_code == 200
    assert second.get_data() == first.get_data() and drawn == [evidence_id]
    cache_dir = runtime.settings.certificate_cache_dir
    assert cache_dir == tmp_path / "data" / "cache" / "certificates"
    files = sorted(cache_dir.glob(f"{evidence_id}/*.pdf"))
    assert len(files) == 1 and files[0].read_bytes() == first.get_data()
    assert oct(cache_dir.stat().st_mode & 0o777) == "0o700" and oct(files[0].stat().st_mode & 0o777) == "0o600"

    files[0].write_bytes(b"%PDF-1.7 cut short")  # a damaged file is never served: drawn again, and replaced
    third = client.get(url, headers=auth(key))
    assert third.status_code == 200 and extract_receipt(third.get_data()) and drawn == [evidence_id] * 2
    assert files[0].read_bytes() == third.get_data()

    # another API process on the same data dir serves the file this one drew
    other = make_runtime(tmp_path, runtime.settings.database_url, public_url=PUBLIC_URL)
    client_b = make_app(other).test_client()
    assert client_b.get(url, headers=auth(key)).get_data() == third.get_data() and len(drawn) == 2
    other.engine.dispose()


def test_a_certificate_shows_tokens_that_arrived_after_it_was_first_drawn(tmp_path: Path, sqlite_url: str) -> None:
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl binary is not installed")
    from service.timestamping import timestamp_pending
    from tests.support.local_tsa import LocalTSA

    with LocalTSA(name="Late TSA") as tsa:
        runtime = make_runtime(
            tmp_path,
            sqlite_url,
            public_url=PUBLIC_URL,
            tsa=(TimestampAuthority("tsa0", tsa.url),),
            tsa_ca_files=(tsa.ca_cert_path,),
        )
        try:
            client = make_app(runtime).test_client()
            key = new_key(runtime, "acme")
            evidence_id = deposit(client, key, b"stamped later")
            seal(runtime)
            before = client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth(key))
            assert timestamp_pending(runtime.engine, runtime.settings).stored
            after = client.get(f"/v1/evidence/{evidence_id}/certificate.pdf", headers=auth(key))
        finally:
            runtime.engine.dispose()
    assert before.status_code == after.status_code == 200
    assert "Late TSA" not in pdftotext(before.get_data(), tmp_path)
    assert "Late TSA" in pdftotext(after.get_data(), tmp_path)
    assert len(list(runtime.settings.certificate_cache_dir.glob(f"{evidence_id}/*.pdf"))) == 2


def test_drawing_over_the_per_process_cap_is_503_but_cached_certificates_are_served(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key(runtime, "acme")
    cached, fresh = deposit(client, key, b"drawn before"), deposit(client, key, b"drawn during the burst")
    seal(runtime)
    assert client.get(f"/v1/evidence/{cached}/certificate.pdf", headers=auth(key)).status_code == 200
    drawn = _count_drawings(monkeypatch)
    slots = pages._render_slots(runtime.settings.certificate_renders)
    assert runtime.settings.certificate_renders == 1 and slots.acquire(blocking=False)  # a drawing in progress
    try:
        busy = client.get(f"/v1/evidence/{fresh}/certificate.pdf", headers=auth(key))
        hit = client.get(f"/v1/evidence/{cached}/certificate.pdf", headers=auth(key))
    finally:
        slots.release()
    assert busy.status_code == 503 and busy.mimetype == "application/problem+json"
    assert busy.headers["Retry-After"] == "1" and "capacity" in busy.get_json()["detail"]
    assert hit.status_code == 200 and drawn == []
    assert client.get(f"/v1/evidence/{fresh}/certificate.pdf", headers=auth(key)).status_code == 200


def test_the_certificate_cache_can_be_turned_off(tmp_path: Path, sqlite_url: str) -> None:
    settings = Settings.from_env({"EVIDENCE_DATA_DIR": str(tmp_path), "EVIDENCE_CERTIFICATE_CACHE_DIR": "off"})
    assert settings.certificate_cache_dir is None
    settings = Settings.from_env({"EVIDENCE_DATA_DIR": str(tmp_path), "EVIDENCE_CERTIFICATE_RENDERS": "3"})
    assert settings.certificate_cache_dir == tmp_path.absolute() / "cache" / "certificates"
    assert settings.certificate_renders == 3 and settings.certificate_cache_mb == 256
    with pytest.raises(ConfigError, match="EVIDENCE_CERTIFICATE_RENDERS"):
        Settings.from_env({"EVIDENCE_CERTIFICATE_RENDERS": "0"})


# --- the pages ------------------------------------------------------------------------------------


def _data_block(html: str) -> Any:
    match = re.search(r'<script type="application/json" id="published-keys">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))


def test_verify_page_embeds_the_published_keys_and_allows_no_network(client: FlaskClient, runtime: Runtime) -> None:
    response = client.get("/verify")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    with runtime.engine.connect() as conn:
        published = sealing.key_list(conn)
    assert _data_block(html) == {"keys": published, "public_url": "https://ledger.example/base"}
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "form-action 'none'" in csp
    assert "unsafe-inline" not in csp
    # the policy allows exactly the page's own inline script (by hash), so a changed page would not run
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    import base64

    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html), "the page must load nothing"


def test_embedded_keys_cannot_end_the_data_block() -> None:
    page = pages.embed_keys(
        pages.static_page("verify.html"), [{"vkey": "</script><script>alert(1)</script>"}], "https://x.example"
    )
    block = page.split('id="published-keys">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block and json.loads(block)["keys"][0]["vkey"] == "</script><script>alert(1)</script>"


def test_deposit_page_is_served_with_a_self_only_policy(client: FlaskClient) -> None:
    response = client.get("/deposit")
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_openapi_paths_describe_every_pages_route_with_known_components(client: FlaskClient) -> None:
    described = pages.openapi_paths()
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint.startswith("pages."):
            path = rule.rule.replace("<evidence_id>", "{id}")
            assert path in described, path
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                assert method.lower() in described[path]
    components = openapi_document()["components"]
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', json.dumps(described))
    assert refs
    for kind, name in refs:
        assert name in components[kind], f"{kind}/{name}"


# --- evidence certificate RECEIPT -o FILE.pdf ------------------------------------------------------------


def test_certificate_command_renders_offline_and_the_result_verifies(tmp_path: Path) -> None:
    out = tmp_path / "cert.pdf"
    raw = (GOLDEN / "batch5-index2-ledger3.json").read_bytes()
    runner = CliRunner()
    made = runner.invoke(
        cli,
        [
            "certificate",
            str(GOLDEN / "batch5-index2-ledger3.json"),
            "-o",
            str(out),
            "--label",
            "contract.txt",
            "--server-url",
            "https://court.example/ledger/",
        ],
    )
    assert made.exit_code == 0, made.output
    assert "golden02AAAAAAAAAAAAAAA" in made.output
    pdf = out.read_bytes()
    assert extract_receipt(pdf) == raw  # the original bytes, unchanged
    checked = runner.invoke(
        cli, ["verify", str(out), str(GOLDEN / "contract.txt"), "--key", str(GOLDEN / "trusted.vkey")]
    )
    assert checked.exit_code == 0, checked.output
    assert "https://court.example/ledger/check?id=golden02AAAAAAAAAAAAAAA" in squeezed(
        pdftotext(pdf, tmp_path, layout=False)
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"format": "evidence-receipt/v1", "format": "x"}', "twice"),
        (b"not json", "not a readable receipt"),
        (b"[]", "not an evidence receipt (evidence-receipt/v1 or evidence-receipt/v2)"),
        (b'{"format": "evidence-receipt/v3"}', "not an evidence receipt (evidence-receipt/v1 or evidence-receipt/v2)"),
    ],
)
def test_certificate_command_refuses_what_is_not_a_receipt(tmp_path: Path, content: bytes, words: str) -> None:
    receipt = tmp_path / "r.json"
    receipt.write_bytes(content)
    out = tmp_path / "cert.pdf"
    result = CliRunner().invoke(cli, ["certificate", str(receipt), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert not out.exists()


def test_certificate_command_needs_output_and_a_readable_receipt(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["certificate", str(GOLDEN / "single.json")]).exit_code == 2
    missing = runner.invoke(cli, ["certificate", str(tmp_path / "nope.json"), "-o", str(tmp_path / "x.pdf")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_verify_url_comes_from_the_option_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVIDENCE_PUBLIC_URL", raising=False)
    assert verify_url(None) == Settings.public_url + "/verify"
    monkeypatch.setenv("EVIDENCE_PUBLIC_URL", "https://env.example/")
    assert verify_url(None) == "https://env.example/verify"
    assert verify_url("https://flag.example") == "https://flag.example/verify"
    assert verify_url("https://flag.example/", "abc") == "https://flag.example/check?id=abc"
