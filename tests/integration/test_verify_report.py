"""`evidence verify ... --report FILE.pdf`: every row of the report states exactly what that run was given and found.

The report is read back as a stranger would, with poppler's ``pdftotext``, for each combination of: the receipt
given as JSON or as a certificate PDF; a FILE, a ``--sha256`` or neither; timestamp tokens checked (a trusted TSA
root) or not; a valid or an invalid (tampered) receipt. The receipt carries a real RFC 3161 token from a local
``openssl ts`` TSA (tests.support.local_tsa). The command runs in-process through click's runner.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.core.errors import FontMissing
from service.court.certificate import render_certificate
from service.court.fonts import find_fonts
from service.tsa_client import request_token
from tests.support.local_tsa import LocalTSA

GOLDEN = Path(__file__).resolve().parents[1] / "vectors" / "receipts"
CONTRACT = (GOLDEN / "contract.txt").read_bytes()
DIGEST = hashlib.sha256(CONTRACT).hexdigest()


def _require_tools() -> None:
    missing = [tool for tool in ("pdftotext", "openssl") if shutil.which(tool) is None]
    try:
        find_fonts()
    except FontMissing as exc:
        missing.append(str(exc))
    if missing:
        reason = f"needs {', '.join(missing)} (scripts/install-system-deps)"
        if os.environ.get("EVIDENCE_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " and EVIDENCE_REQUIRE_SERVICES=1")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    _require_tools()
    with LocalTSA(name="Report Test TSA") as authority:
        yield authority


@pytest.fixture(scope="module")
def receipts(tsa: LocalTSA) -> dict[str, dict[str, Any]]:
    """A valid receipt with a real RFC 3161 token over its ledger entry, and the same receipt tampered at step 3."""
    valid = json.loads((GOLDEN / "batch5-index2-ledger3.json").read_bytes())
    entry = base64.b64decode(valid["ledger"]["entry"])
    token = request_token(tsa.url, entry, timeout=10)
    valid["timestamps"] = [{"type": "rfc3161", "token": base64.b64encode(token).decode("ascii")}]
    invalid = copy.deepcopy(valid)
    proof = bytearray(base64.b64decode(invalid["batch"]["proof"][0]))
    proof[0] ^= 1
    invalid["batch"]["proof"][0] = base64.b64encode(bytes(proof)).decode("ascii")
    return {"valid": valid, "invalid": invalid}


def _pdftotext(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True).stdout.decode()
    return " ".join(out.split())


@pytest.mark.parametrize("validity", ["valid", "invalid"])
@pytest.mark.parametrize("tokens", ["checked", "unchecked"])
@pytest.mark.parametrize("given", ["file", "digest", "none"])
@pytest.mark.parametrize("source", ["receipt", "certificate"])
def test_report_states_the_inputs_and_outcomes_of_the_run(
    source: str,
    given: str,
    tokens: str,
    validity: str,
    receipts: dict[str, dict[str, Any]],
    tsa: LocalTSA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # short relative names, so the report prints them unbroken
    monkeypatch.delenv("EVIDENCE_TRUSTED_KEYS", raising=False)
    receipt = receipts[validity]
    if source == "certificate":
        Path("certificate.pdf").write_bytes(render_certificate(receipt, verify_url="https://ledger.example/verify"))
        receipt_name = "certificate.pdf"
    else:
        receipt_name = "case.receipt.json"
        Path(receipt_name).write_text(json.dumps(receipt))
    Path("contract.txt").write_bytes(CONTRACT)
    Path("ca.pem").write_bytes(tsa.ca_cert_pem)
    args = ["verify", receipt_name, "--key", str(GOLDEN / "trusted.vkey"), "--report", "report.pdf"]
    args += {"file": ["contract.txt"], "digest": ["--sha256", DIGEST], "none": []}[given]
    args += ["--tsa-ca", "ca.pem"] if tokens == "checked" else []

    run = CliRunner().invoke(cli, [*args, "--json"])
    assert run.exit_code == (0 if validity == "valid" else 1), run.output
    result = json.loads(run.output)
    text = _pdftotext(Path("report.pdf"))

    # the receipt given, and how it was read
    assert f"回执文件 {receipt_name}" in text  # -layout puts a label's Chinese line beside the first value
    if source == "certificate":
        assert "a certificate PDF: its attached receipt.json was checked" in text
    else:
        assert "a receipt (JSON)" in text and "certificate PDF" not in text
    # the file, the digest, or neither
    assert "digest given, no file" not in text
    if given == "file":
        assert "被验证文件 contract.txt" in text and f"文件 SHA-256 {DIGEST}" in text and "(computed)" in text
    elif given == "digest":
        assert "no file: a SHA-256 was given instead (--sha256)" in text and f"给定的 SHA-256 {DIGEST}" in text
        assert "contract.txt" not in text
    else:
        assert "no file or digest given: step 1 not checked" in text and DIGEST in text  # the receipt's own
        assert "contract.txt" not in text
    # the trust anchors and the tool
    assert "example.org/evidence-ledger-test+f5f3cb16+" in text
    if tokens == "checked":
        assert "CN=Report Test TSA" in text and "none: timestamps not checked" not in text
    else:
        assert "none: timestamps not checked" in text
    assert "验证工具 evidence-ledger" in text

    # each check's outcome, exactly as the verifier found it
    checks = result["checks"]
    passed = [c for c in checks if c["ok"] and c.get("checked", True)]
    unchecked = [c for c in checks if c["ok"] and not c.get("checked", True)]
    failed = [c for c in checks if not c["ok"]]
    assert text.count("PASS") == len(passed)
    assert text.count("NOT CHECKED") == len(unchecked)
    assert text.count("FAIL") == len(failed)
    assert text.count("NOT RUN") == 8 - len({c["step"] for c in checks})
    step7 = [c for c in checks if c["step"] == 7]
    if validity == "valid":
        assert "INVALID" not in text and "VALID" in text
        assert step7 and all(c.get("checked", True) == (tokens == "checked") for c in step7)
        if tokens == "checked":
            assert "existed no later than" in text and "verified in step 7" in text
        else:
            assert "no TSA certificate is trusted" in text and "no timestamp was checked in this run" in text
        if given == "none":
            assert "does not show that any particular file matches" in text
        elif given == "digest":
            assert "the SHA-256 given matches the receipt" in text
        else:
            assert "the file checked matches the SHA-256 in the receipt" in text
    else:
        assert "INVALID" in text and "failed at step 3" in text and not step7
        assert "Proves:" not in text and "proves neither" in text
    assert "PASS" not in text.split("Step-by-step checks")[0]  # no outcome claimed before the checks
