"""The verify page on receipt format v2, in real headless Chromium, against ``service.core.verify``.

Every golden v2 receipt and every tampered one of tests/vectors/receipts-v2 goes through the page's own verifier
and must reach the Python verifier's verdict: same step, same reason, same statement. The page has no CA store:
the certificate path of an X.509 attestation (step 8d) is reported as not checked there, exactly like the CLI
without ``--depositor-ca``, so the 8d tampered receipts are compared with the Python verifier trusting no CA.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
import requests

from service.core.verify import verify_receipt
from tests.browser.conftest import LiveApp, screenshot
from tests.browser.test_verify_page import (  # noqa: F401
    GOLDEN_VKEY,
    drop_receipt,
    offline_page,
    open_page,
    wait_for,
    write_json,
)
from tests.unit.test_verify import DIGEST, TRUSTED
from tests.unit.test_verify_v2 import MANIFEST, NAMES_V2, V2, golden_v2, tampered

pytestmark = pytest.mark.browser


def page_verdicts(driver: Any, docs: list[tuple[Any, str | None]]) -> list[dict[str, Any]]:
    got = driver.execute_async_script(
        """
        const [cases, vkeys, done] = arguments;
        (async () => {
          const out = [];
          for (const [text, sha] of cases) {
            const r = await window.evidenceLedger.verifyBytes(new TextEncoder().encode(text), sha, vkeys);
            out.push({valid: r.valid, step: r.step, reason: r.reason, steps: (r.checks || []).map((c) => c.step),
                      statement: r.statement,
                      depositor: r.depositor ? {kind: r.depositor.kind, identity: r.depositor.identity,
                                                fingerprint: r.depositor.fingerprint} : null});
          }
          return out;
        })().then(done, (e) => done({error: String(e && e.stack || e)}));
        """,
        [(json.dumps(doc), sha) for doc, sha in docs],
        [GOLDEN_VKEY],
    )
    assert not isinstance(got, dict), got
    return list(got)


def python_verdict(doc: Any, sha: str | None) -> dict[str, Any]:
    r = verify_receipt(doc, sha256=bytes.fromhex(sha) if sha else None, trusted_keys=TRUSTED)
    d = r.depositor
    return {
        "valid": r.valid,
        "step": r.step,
        "reason": r.reason,
        "steps": [c.step for c in r.checks],
        "statement": r.statement,
        "depositor": None if d is None else {"kind": d.kind, "identity": d.identity, "fingerprint": d.fingerprint},
    }


def test_golden_and_tampered_v2_receipts_reach_the_python_verdict(offline_page: Any) -> None:  # noqa: F811
    docs: list[tuple[Any, str | None]] = []
    for name in NAMES_V2:
        docs += [(golden_v2(name), DIGEST.hex()), (golden_v2(name), None)]
    for name in sorted(MANIFEST):
        docs.append((tampered(name), DIGEST.hex()))
    got = page_verdicts(offline_page, docs)
    for (doc, sha), page in zip(docs, got, strict=True):
        assert page == python_verdict(doc, sha), doc["evidence"]["id"]
    # each non-path check fails at its step in the page too
    for name in sorted(MANIFEST):
        if MANIFEST[name]["check"] != "8d":
            page = got[2 * len(NAMES_V2) + sorted(MANIFEST).index(name)]
            assert page["step"] == MANIFEST[name]["step"], (name, page)


def test_page_agrees_with_service_verify_on_a_seeded_fuzz_of_v2_fields(offline_page: Any) -> None:  # noqa: F811
    rng = random.Random(20261130)
    values: list[Any] = [
        None,
        True,
        0,
        2,
        -1,
        1.5,
        "",
        "x",
        "买卖合同 contract-of-sale.txt",
        [],
        {},
        "\ud800",
        "0" * 64,
    ]
    docs: list[tuple[Any, str | None]] = []
    for _ in range(300):
        doc = copy.deepcopy(golden_v2(rng.choice(NAMES_V2)))
        ev = doc["evidence"]
        field = rng.choice(["digests", "label", "case", "cosigns", "attestation", "leaf", "case.phase", "case.id"])
        if field == "leaf" or (field == "attestation" and "attestation" in ev and rng.random() < 0.7):
            raw = bytearray(base64.b64decode(ev[field]))
            for _ in range(rng.randint(1, 3)):
                raw[rng.randrange(len(raw))] = rng.choice(b" \n\r0aZ+/=-\xff\x00\xe2")
            ev[field] = base64.b64encode(bytes(raw)).decode()
        elif field.startswith("case.") and isinstance(ev.get("case"), dict):
            ev["case"][field[5:]] = rng.choice(values)
        elif rng.random() < 0.3:
            ev.pop(field, None)
        else:
            ev[field] = rng.choice(values)
        docs.append((doc, rng.choice([DIGEST.hex(), None])))
    got = page_verdicts(offline_page, docs)
    mismatches = [
        (doc["evidence"], page, python_verdict(doc, sha))
        for (doc, sha), page in zip(docs, got, strict=True)
        if page != python_verdict(doc, sha)
    ]
    assert not mismatches, mismatches[:3]


def test_v2_receipt_dropped_on_the_page_shows_step_8(offline_page: Any, tmp_path: Path) -> None:  # noqa: F811
    shown = drop_receipt(offline_page, V2 / "v2-x509-ecdsa.json")
    assert shown["valid"], shown
    assert shown["steps"][8] == "pass"
    assert "Depositor: CN=张三,O=示例科技有限公司,C=CN (certificate not checked against a CA)." in shown["statement"]
    screenshot(offline_page, "verify-v2-attested")
    shown = drop_receipt(offline_page, V2 / "tampered" / "signature-invalid.json")
    assert not shown["valid"] and shown["step"] == 8 and shown["steps"][8] == "fail"
    assert "signature does not verify" in shown["why"]
    shown = drop_receipt(offline_page, V2 / "tampered" / "label-changed.json")
    assert shown["step"] == 2 and "is not the label the leaf binds" in shown["why"]
    # a v1 receipt: step 8 is not run, and says why
    doc = json.loads((V2.parent / "receipts" / "single.json").read_text())
    shown = drop_receipt(offline_page, write_json(tmp_path, "v1", doc))
    assert shown["valid"] and shown["steps"][8] == "notrun"


def test_deposit_page_signs_with_the_depositors_key_which_is_never_sent(
    driver: Any, live_app: LiveApp, tmp_path: Path
) -> None:
    """Issue 14: the /deposit page signs the SPEC §2.2 statement with WebCrypto; only the attestation is sent."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    from service.core.formats import utc_now
    from service.deposits import add_depositor_key

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    key_file = tmp_path / "depositor.pem"
    key_file.write_bytes(pem)
    with live_app.runtime.engine.begin() as conn:
        add_depositor_key(
            conn, "browser-tests", key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw), utc_now()
        )
    contract = tmp_path / "合同.pdf"
    contract.write_bytes(b"%PDF-1.4 signed in the browser " + random.Random(7).randbytes(3000))
    open_page(driver, live_app.url + "/deposit")
    driver.execute_script("""
        window.__sent = [];
        const original = window.fetch;
        window.fetch = (url, options) => { window.__sent.push([String(url), options && options.body || null]);
                                           return original(url, options); };
    """)
    driver.find_element("id", "api-key").send_keys(live_app.api_key)
    driver.find_element("id", "file-input").send_keys(str(contract))
    driver.find_element("id", "label-input").send_keys("买卖合同")
    driver.find_element("id", "sign-key-input").send_keys(str(key_file))
    driver.find_element("id", "submit-button").click()
    wait_for(lambda: driver.find_element("id", "result").get_attribute("data-state") == "sealed", "the receipt")
    assert driver.find_element("id", "evidence-depositor").text.startswith("Ed25519 key ")
    bodies = [body for _url, body in driver.execute_script("return window.__sent") if body]
    assert len(bodies) == 1 and "PRIVATE KEY" not in bodies[0] and pem.decode().splitlines()[1] not in bodies[0]
    evidence_id = driver.find_element("id", "evidence-id").text
    r = requests.get(
        f"{live_app.url}/v1/evidence/{evidence_id}/receipt",
        headers={"Authorization": f"Bearer {live_app.api_key}"},
        timeout=10,
    )
    document = r.json()
    result = verify_receipt(
        document,
        sha256=hashlib.sha256(contract.read_bytes()).digest(),
        trusted_keys=[live_app.runtime.signer.verifier],
    )
    assert result.valid and result.label == "买卖合同"
    assert result.depositor is not None and result.depositor.kind == "ed25519-key"
