"""The verify and deposit pages in real headless Chromium, checked against the Python verifier.

The page must reach the verdicts of ``service.core.verify`` with the same step numbers: every golden and tampered
receipt of ``tests/unit/test_verify.py`` is dropped on the page and its step compared with ``verify_receipt``'s,
and a seeded fuzz of single-field replacements runs through the page's own verifier function. Screenshots of the
main states are written to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from service.api import pages
from service.core.errors import UnreadableReceipt
from service.core.note import parse_vkeys
from service.core.receipt import load_json
from service.core.verify import verify_receipt
from service.court.certificate import extract_receipt, render_certificate
from tests.browser.conftest import LiveApp, screenshot
from tests.unit.test_verify import CONTRACT, DIGEST, GOLDEN, NAMES, TAMPERED, TRUSTED, golden

pytestmark = pytest.mark.browser

STATIC = Path(pages.__file__).resolve().parents[1] / "static"
GOLDEN_VKEY = TRUSTED[0].vkey
TIMEOUT = 20.0


# --- helpers ----------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === 'true'"), f"{url} to be ready")


def result_of(driver: Any) -> dict[str, Any]:
    """Wait for the page's verdict and return what it shows (and the result object it computed)."""
    wait_for(lambda: driver.find_element("id", "result").get_attribute("data-state") == "done", "the verdict")
    verdict = driver.find_element("id", "verdict")
    steps = {
        int(li.get_attribute("data-step")): li.get_attribute("data-outcome")
        for li in driver.find_elements("css selector", "#steps > li")
    }
    return {
        "valid": verdict.get_attribute("data-valid") == "true",
        "step": int(verdict.get_attribute("data-step")) if verdict.get_attribute("data-step") else None,
        "head": driver.find_element("id", "verdict-head").text,
        "why": driver.find_element("id", "verdict-why").text,
        "statement": driver.find_element("id", "statement").text,
        "steps": steps,
        "result": driver.execute_script("return window.__evidenceResult"),
    }


def reset(driver: Any) -> None:
    driver.find_element("id", "clear-button").click()


def drop_receipt(driver: Any, path: Path) -> dict[str, Any]:
    driver.execute_script("document.getElementById('result').dataset.state = 'idle'")
    driver.find_element("id", "receipt-input").send_keys(str(path))
    return result_of(driver)


def choose_file(driver: Any, path: Path) -> None:
    driver.find_element("id", "file-input").send_keys(str(path))
    wait_for(lambda: driver.find_elements("id", "file-digest"), "the file's digest")


def paste_keys(driver: Any, text: str) -> None:
    box = driver.find_element("id", "vkeys-input")
    box.clear()
    box.send_keys(text)


def write_json(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def saved_verify_page(tmp_path: Path, keys: list[dict[str, Any]]) -> Path:
    """The verify page as the server renders it with ``keys`` embedded, saved to disk."""
    path = tmp_path / "evidence-ledger-verify.html"
    path.write_text(pages.embed_keys(pages.static_page("verify.html"), keys, "https://ledger.example"), "utf-8")
    return path


@pytest.fixture
def offline_page(tmp_path: Path, driver: Any) -> Any:
    """The saved page (golden test key embedded) opened from file:// with the contract chosen."""
    page = saved_verify_page(
        tmp_path,
        [
            {
                "vkey": GOLDEN_VKEY,
                "origin": TRUSTED[0].name,
                "valid_from": "2026-01-01T00:00:00.000000Z",
                "valid_until": None,
            }
        ],
    )
    open_page(driver, page.as_uri())
    choose_file(driver, GOLDEN / "contract.txt")
    return driver


# --- the served page ----------------------------------------------------------------------------------


def test_served_page_embeds_this_servers_keys_with_fingerprints(driver: Any, live_app: LiveApp) -> None:
    open_page(driver, live_app.url + "/verify")
    verifier = live_app.runtime.signer.verifier
    row = wait_for(lambda: driver.find_elements("css selector", f'tr[data-vkey="{verifier.vkey}"]'), "the key row")[0]
    assert " ".join(row.find_element("css selector", "td.fp").text.split()) == verifier.fingerprint
    assert verifier.name in row.text
    screenshot(driver, "verify-empty")


@pytest.mark.parametrize("name", NAMES)
def test_golden_receipt_with_its_file_is_valid(driver: Any, live_app: LiveApp, name: str) -> None:
    open_page(driver, live_app.url + "/verify")
    paste_keys(driver, GOLDEN_VKEY)
    choose_file(driver, GOLDEN / "contract.txt")
    assert driver.find_element("id", "file-digest").text == DIGEST.hex()
    shown = drop_receipt(driver, GOLDEN / f"{name}.json")
    expected = verify_receipt(golden(name), sha256=DIGEST, trusted_keys=TRUSTED)
    assert shown["valid"] and shown["step"] is None
    assert "VALID" in shown["head"]
    assert shown["statement"] == expected.statement
    assert shown["steps"] == {
        0: "pass",
        1: "pass",
        2: "pass",
        3: "pass",
        4: "pass",
        5: "pass",
        6: "pass",
        7: "notchecked",
        8: "notrun",  # a v1 receipt has no depositor attestation
    }
    assert [c["detail"] for c in shown["result"]["checks"]] == [c.detail for c in expected.checks]
    if name == NAMES[0]:
        screenshot(driver, "verify-valid")


def test_without_a_file_step_1_is_not_checked(driver: Any, live_app: LiveApp) -> None:
    open_page(driver, live_app.url + "/verify")
    paste_keys(driver, GOLDEN_VKEY)
    shown = drop_receipt(driver, GOLDEN / "single.json")
    assert shown["valid"] and shown["steps"][1] == "notchecked"
    assert shown["statement"] == verify_receipt(golden("single"), trusted_keys=TRUSTED).statement


def test_typed_digest_is_checked_like_a_file(driver: Any, live_app: LiveApp) -> None:
    open_page(driver, live_app.url + "/verify")
    paste_keys(driver, GOLDEN_VKEY)
    drop_receipt(driver, GOLDEN / "single.json")
    driver.execute_script("document.getElementById('result').dataset.state = 'idle'")
    driver.find_element("id", "sha-input").send_keys(hashlib.sha256(b"other").hexdigest())
    shown = result_of(driver)
    assert not shown["valid"] and shown["step"] == 1


def test_wrong_file_is_caught_at_step_1(driver: Any, live_app: LiveApp, tmp_path: Path) -> None:
    other = tmp_path / "contract-edited.txt"
    other.write_bytes(CONTRACT.replace(b"100", b"10"))
    open_page(driver, live_app.url + "/verify")
    paste_keys(driver, GOLDEN_VKEY)
    choose_file(driver, other)
    shown = drop_receipt(driver, GOLDEN / "batch5-index2-ledger3.json")
    expected = verify_receipt(golden(), sha256=hashlib.sha256(other.read_bytes()).digest(), trusted_keys=TRUSTED)
    assert not shown["valid"] and shown["step"] == 1 == expected.step
    assert shown["result"]["reason"] == expected.reason
    assert shown["steps"][1] == "fail" and all(shown["steps"][s] == "notrun" for s in range(2, 8))
    assert "INVALID" in shown["head"] and "step 1" in shown["head"]
    screenshot(driver, "verify-wrong-file")


def test_receipt_is_not_valid_on_its_own_key_hint(driver: Any, live_app: LiveApp) -> None:
    open_page(driver, live_app.url + "/verify")  # trusts only the live server's key, not the golden test key
    shown = drop_receipt(driver, GOLDEN / "single.json")
    assert not shown["valid"] and shown["step"] == 6
    assert "no trusted key is named after the checkpoint origin" in shown["why"]


# --- every tampered receipt, through the page, against service.core.verify --------------------------------------


@pytest.mark.parametrize(("mutate", "step"), [(t[1], t[2]) for t in TAMPERED], ids=[t[0] for t in TAMPERED])
def test_tampered_receipt_fails_at_the_step_service_verify_names(
    offline_page: Any, tmp_path: Path, mutate: Callable[[dict[str, Any]], None], step: int
) -> None:
    doc = copy.deepcopy(golden())
    mutate(doc)
    expected = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED)
    assert expected.step == step
    shown = drop_receipt(offline_page, write_json(tmp_path, "tampered", doc))
    assert not shown["valid"]
    assert shown["step"] == step, shown["result"]
    assert shown["steps"][step] == "fail"
    assert f"step {step}" in shown["head"]
    assert shown["result"]["reason"] == expected.reason
    assert [c["step"] for c in shown["result"]["checks"]] == [c.step for c in expected.checks]


def test_each_step_0_to_6_has_a_tampered_case() -> None:
    assert {t[2] for t in TAMPERED} >= set(range(7))


def test_a_failing_step_is_shown_clearly(offline_page: Any, tmp_path: Path) -> None:
    doc = golden()
    doc["batch"]["proof"][1] = base64.b64encode(b"\x00" * 32).decode()
    shown = drop_receipt(offline_page, write_json(tmp_path, "flipped", doc))
    assert shown["step"] == 3 and shown["steps"][3] == "fail"
    assert [shown["steps"][s] for s in range(3)] == ["pass", "pass", "pass"]
    screenshot(offline_page, "verify-invalid-step3")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"format": "evidence-receipt/v1", "format": "evidence-receipt/v1"}',
        b'{"x": NaN}',
        b'{"x": -Infinity}',
        b'{"x": "\xff"}',
        b"\xef\xbb\xbf{}",
        b"",
        b'{"a": 1,}',
        b"[1, 2",
    ],
)
def test_unreadable_receipt_is_refused_like_load_json(offline_page: Any, tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(UnreadableReceipt):
        load_json(raw)
    path = tmp_path / "unreadable.json"
    path.write_bytes(raw)
    shown = drop_receipt(offline_page, path)
    assert not shown["valid"] and shown["step"] is None
    assert "Cannot read" in shown["head"]
    assert set(shown["steps"].values()) == {"notrun"}


def test_duplicate_key_deep_inside_is_unreadable(offline_page: Any, tmp_path: Path) -> None:
    text = (GOLDEN / "single.json").read_text().replace('"seq": 0,', '"seq": 0, "seq": 0,', 1)
    path = tmp_path / "dup.json"
    path.write_text(text)
    with pytest.raises(UnreadableReceipt):
        load_json(text)
    shown = drop_receipt(offline_page, path)
    assert "Cannot read" in shown["head"] and "'seq' twice" in shown["why"]
    screenshot(offline_page, "verify-unreadable")


# --- the page's verifier function against service.core.verify, on a seeded fuzz -------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _random_value(rng: random.Random, doc: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = doc
    for p in path:
        node = node[p]
    choices: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        2**70,
        1.0,
        1.5,
        "",
        "x",
        [],
        {},
        "AAAA",
        "AA==",
        "QR==",
        b64(b"\x00" * 32),
        "evidence-receipt/v1",
        [b64(b"\x01" * 32)],
        3,
        5,
        7,
    ]
    if isinstance(node, str):
        # small edits of the real string: drop, duplicate or change one character, or change case
        i = rng.randrange(len(node)) if node else 0
        choices += [
            node[:i] + node[i + 1 :],
            node[:i] + node[i : i + 1] * 2 + node[i + 1 :],
            node[:i] + rng.choice("Aa0+/=\n -_Z.") + node[i + 1 :],
            node.upper(),
            node + "\n",
        ]
    if isinstance(node, int) and not isinstance(node, bool):
        choices += [node + 1, node - 1, node * 2]
    return rng.choice(choices)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _leaf_and_entry_mutations(rng: random.Random, doc: dict[str, Any]) -> None:
    """Edit one byte of the leaf or entry bytes (re-encoded as base64), so their strict parsers are exercised."""
    section, field = rng.choice([("evidence", "leaf"), ("ledger", "entry")])
    raw = bytearray(base64.b64decode(doc[section][field]))
    i = rng.randrange(len(raw))
    raw[i] = rng.choice(b" \n\r\t0aZ+/=.:-\xff\x00\xe2")
    doc[section][field] = b64(bytes(raw))


def test_page_verifier_agrees_with_service_verify_on_a_seeded_fuzz(offline_page: Any) -> None:
    rng = random.Random(20261128)
    cases: list[tuple[str, str | None]] = []
    for name in NAMES:
        cases.append((json.dumps(golden(name)), DIGEST.hex()))
        cases.append((json.dumps(golden(name)), None))
    for _ in range(400):
        doc = golden(rng.choice(NAMES))
        if rng.random() < 0.3:
            _leaf_and_entry_mutations(rng, doc)
        else:
            path = rng.choice(_paths(doc))
            node: Any = doc
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = _random_value(rng, doc, path)
        cases.append((json.dumps(doc), rng.choice([DIGEST.hex(), None, "00" * 32])))
    got = offline_page.execute_async_script(
        """
        const [cases, vkeys, done] = arguments;
        (async () => {
          const out = [];
          for (const [text, sha] of cases) {
            const r = await window.evidenceLedger.verifyBytes(new TextEncoder().encode(text), sha, vkeys);
            out.push({valid: r.valid, step: r.step, reason: r.reason, steps: (r.checks || []).map((c) => c.step),
                      statement: r.statement});
          }
          return out;
        })().then(done, (e) => done({error: String(e && e.stack || e)}));
        """,
        cases,
        [GOLDEN_VKEY],
    )
    assert not isinstance(got, dict), got
    mismatches = []
    for (text, sha), page in zip(cases, got, strict=True):
        expected = verify_receipt(json.loads(text), sha256=bytes.fromhex(sha) if sha else None, trusted_keys=TRUSTED)
        want = {
            "valid": expected.valid,
            "step": expected.step,
            "reason": expected.reason,
            "steps": [c.step for c in expected.checks],
            "statement": expected.statement,
        }
        if page != want:
            mismatches.append((text[:200], want, page))
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ; first: {mismatches[:3]}"
    steps = {json.dumps(g["step"]) for g in got}
    assert len(steps) >= 7, f"the fuzz reached too few distinct outcomes: {steps}"


def test_base64_decoding_matches_python_strict_decoder(offline_page: Any) -> None:
    samples = [
        "",
        "QQ",
        "QQ=",
        "QQ==",
        "QR==",
        "QUI=",
        "QUI==",
        "QUJD==",
        "Q",
        "Q=",
        "Q===",
        "QUJDQ",
        "=QQ==",
        "Q Q=",
        "QU=I",
        "QUJD",
        "QUJD\n",
        "Zm9v",
        "Zm9vYg==",
        "Zm9vYmE=",
        "Zm9vYmFy",
        "Zm9vYmE",
        "Zg=",
        "Zg",
        "é",
        "QQ==QQ==",
        "+/+/",
        "-_-_",
    ]
    got = offline_page.execute_script(
        "return arguments[0].map((s) => { const r = window.evidenceLedger.pyB64decode(s);"
        " return r.error ? null : Array.from(r.bytes); });",
        samples,
    )
    for text, page in zip(samples, got, strict=True):
        try:
            want: list[int] | None = list(base64.b64decode(text.encode("ascii"), validate=True))
        except (ValueError, UnicodeEncodeError):
            want = None
        assert page == want, text


# --- certificates, the saved page, hashing --------------------------------------------------------------


def test_certificate_pdf_is_accepted_as_the_receipt(offline_page: Any, tmp_path: Path) -> None:
    raw = (GOLDEN / "batch7-index6-ledger6.json").read_bytes()
    pdf = render_certificate(
        json.loads(raw), verify_url="https://ledger.example/verify", label="买卖合同 contract", receipt_json=raw
    )
    assert extract_receipt(pdf) == raw
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    shown = drop_receipt(offline_page, path)
    assert shown["valid"], shown["result"]
    status = offline_page.find_element("id", "receipt-status").text
    assert "certificate PDF" in status
    screenshot(offline_page, "verify-certificate-pdf")


def test_pdf_without_receipt_is_refused(offline_page: Any, tmp_path: Path) -> None:
    pdf = render_certificate(golden(), verify_url="https://x.example/verify")
    broken = pdf.replace(b"(receipt.json)", b"(receipt.jsox)")
    path = tmp_path / "other.pdf"
    path.write_bytes(broken)
    shown = drop_receipt(offline_page, path)
    assert "Cannot read" in shown["head"] and "no attached receipt.json" in shown["why"]


def test_saved_page_from_file_url_verifies_with_embedded_keys_and_no_requests(offline_page: Any) -> None:
    shown = drop_receipt(offline_page, GOLDEN / "batch5-index2-ledger3.json")
    assert shown["valid"]
    assert offline_page.current_url.startswith("file://")
    resources = offline_page.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert resources == []


def test_page_saved_from_the_server_works_offline_with_a_pasted_key(
    driver: Any, live_app: LiveApp, tmp_path: Path
) -> None:
    response = requests.get(live_app.url + "/verify", timeout=10)
    assert response.status_code == 200
    saved = tmp_path / "saved-verify.html"
    saved.write_bytes(response.content)
    open_page(driver, saved.as_uri())
    verifier = live_app.runtime.signer.verifier
    assert driver.find_elements("css selector", f'tr[data-vkey="{verifier.vkey}"]')  # the embedded key survived
    paste_keys(driver, f"# the golden test key\n{GOLDEN_VKEY}\n")
    choose_file(driver, GOLDEN / "contract.txt")
    shown = drop_receipt(driver, GOLDEN / "single.json")
    assert shown["valid"], shown["result"]


def test_pasted_malformed_key_is_reported_with_its_line(offline_page: Any) -> None:
    paste_keys(offline_page, "not-a-key\n" + GOLDEN_VKEY.replace("+f5f3cb16+", "+f5f3cb17+"))
    errors = wait_for(lambda: offline_page.find_element("id", "key-errors").text, "the key errors")
    assert "line 1" in errors and "malformed vkey" in errors
    assert "line 2" in errors and "key hash mismatch" in errors


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 3 * 1024 * 1024 + 7])
def test_streaming_sha256_matches_hashlib(offline_page: Any, size: int) -> None:
    data = random.Random(size).randbytes(size)
    got = offline_page.execute_script(
        """
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const s = new window.evidenceLedger.Sha256Stream();
        for (let i = 0; i < bytes.length; i += 1000003) s.update(bytes.subarray(i, i + 1000003));
        return Array.from(s.digest(), (b) => b.toString(16).padStart(2, '0')).join('');
        """,
        base64.b64encode(data).decode(),
    )
    assert got == hashlib.sha256(data).hexdigest()


def test_big_files_are_hashed_in_slices(driver: Any, live_app: LiveApp, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(7).randbytes(20 * 1024 * 1024 + 3))
    open_page(driver, live_app.url + "/verify")
    driver.execute_script("window.EVIDENCE_WHOLE_FILE_LIMIT = 1024")  # force the sliced path
    choose_file(driver, big)
    assert driver.find_element("id", "file-digest").text == hashlib.sha256(big.read_bytes()).hexdigest()


def test_shared_script_is_one_file_inlined_into_both_served_pages() -> None:
    shared = (STATIC / "hashing.js").read_text()
    assert "class Sha256Stream" in shared and "async function hashFile" in shared
    for name in ("verify.html", "deposit.html"):
        source = (STATIC / name).read_text()
        assert source.count("/* @include hashing.js */") == 1, name
        assert "class Sha256Stream" not in source, f"{name} carries its own copy of the shared code"
        served = pages.static_page(name)
        assert served.count(shared.rstrip()) == 1, name
        assert "@include" not in served and "<script src" not in served, name


def test_page_saved_from_the_server_hashes_with_the_inlined_shared_script_from_file_url(
    driver: Any, live_app: LiveApp, tmp_path: Path
) -> None:
    """The served page is one file: saved and opened from file://, the shared hashing code (the sliced path too)
    runs with no request of any kind."""
    response = requests.get(live_app.url + "/verify", timeout=10)
    assert response.status_code == 200
    saved = tmp_path / "evidence-ledger-verify.html"
    saved.write_bytes(response.content)
    big = tmp_path / "annex.bin"
    big.write_bytes(random.Random(11).randbytes(3 * 1024 * 1024 + 5))
    open_page(driver, saved.as_uri())
    assert driver.current_url.startswith("file://")
    driver.execute_script("window.EVIDENCE_WHOLE_FILE_LIMIT = 1024")  # force Sha256Stream over slices
    choose_file(driver, big)
    assert driver.find_element("id", "file-digest").text == hashlib.sha256(big.read_bytes()).hexdigest()
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


# --- the deposit page, end to end against the live app ------------------------------------------------------


def test_deposit_page_end_to_end(driver: Any, live_app: LiveApp, tmp_path: Path, downloads: Path) -> None:
    evidence = tmp_path / "scan-2026-11.pdf"
    evidence.write_bytes(b"%PDF-1.4 a scanned contract " + random.Random(1).randbytes(5000))
    digest = hashlib.sha256(evidence.read_bytes()).hexdigest()
    open_page(driver, live_app.url + "/deposit")
    driver.find_element("id", "api-key").send_keys(live_app.api_key)
    driver.find_element("id", "file-input").send_keys(str(evidence))
    driver.find_element("id", "label-input").send_keys("买卖合同 scan")
    driver.find_element("id", "submit-button").click()
    wait_for(lambda: driver.find_element("id", "result").get_attribute("data-state") == "sealed", "the receipt")
    assert driver.find_element("id", "evidence-sha256").text == digest
    evidence_id = driver.find_element("id", "evidence-id").text
    screenshot(driver, "deposit-sealed")

    for old in downloads.iterdir():
        old.unlink()
    driver.find_element("id", "download-receipt").click()
    receipt_path = wait_for(lambda: next(iter(downloads.glob("*.receipt.json")), None), "the receipt download")
    assert receipt_path.name == "买卖合同_scan.receipt.json"  # the Chinese label survives in the download name
    raw = wait_for(lambda: receipt_path.read_bytes() or None, "the receipt bytes")
    document = load_json(raw)
    assert document["evidence"]["id"] == evidence_id
    trusted = parse_vkeys(live_app.runtime.signer.verifier.vkey)
    assert verify_receipt(document, sha256=bytes.fromhex(digest), trusted_keys=trusted).valid

    driver.find_element("id", "download-certificate").click()
    pdf_path = wait_for(lambda: next((p for p in downloads.glob("*.certificate.pdf")), None), "the certificate")
    pdf = wait_for(lambda: pdf_path.read_bytes() if pdf_path.read_bytes().endswith(b"%%EOF\n") else None, "the PDF")
    assert extract_receipt(pdf) == raw

    # and the page refuses a wrong key with the server's reason
    open_page(driver, live_app.url + "/deposit")
    driver.find_element("id", "api-key").send_keys("evl_wrong")
    driver.find_element("id", "file-input").send_keys(str(evidence))
    driver.find_element("id", "submit-button").click()
    status = wait_for(
        lambda: driver.find_element("id", "status").text.startswith("401") and driver.find_element("id", "status").text,
        "the 401",
    )
    assert "API key is not valid" in status and "API 密钥无效" in status  # both languages
    assert driver.find_element("id", "downloads").get_attribute("hidden") is not None  # nothing to download
    assert "evidence tenant create" in driver.find_element("id", "key-hint").text  # where a key comes from


def test_deposit_page_sends_only_the_digest(driver: Any, live_app: LiveApp, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP SECRET CONTENT " * 100)
    open_page(driver, live_app.url + "/deposit")
    driver.execute_script("""
        window.__sent = [];
        const original = window.fetch;
        window.fetch = (url, options) => { window.__sent.push([String(url), options && options.body || null]);
                                           return original(url, options); };
    """)
    driver.find_element("id", "api-key").send_keys(live_app.api_key)
    driver.find_element("id", "file-input").send_keys(str(secret))
    driver.find_element("id", "submit-button").click()
    wait_for(lambda: driver.find_element("id", "result").get_attribute("data-state") == "sealed", "the receipt")
    sent = driver.execute_script("return window.__sent")
    bodies = [body for _url, body in sent if body]
    assert bodies == [json.dumps({"sha256": hashlib.sha256(secret.read_bytes()).hexdigest()}, separators=(",", ":"))]


def test_deposit_page_refuses_an_empty_file_and_sends_nothing(driver: Any, live_app: LiveApp, tmp_path: Path) -> None:
    empty = tmp_path / "contrat.pdf"
    empty.write_bytes(b"")
    open_page(driver, live_app.url + "/deposit")
    driver.execute_script(
        "window.__sent = 0; const f = window.fetch; window.fetch = (...a) => { window.__sent++; return f(...a); };"
    )
    driver.find_element("id", "api-key").send_keys(live_app.api_key)
    driver.find_element("id", "file-input").send_keys(str(empty))
    driver.find_element("id", "submit-button").click()
    status = wait_for(lambda: driver.find_element("id", "status").text, "the refusal")
    assert "0 bytes" in status and "文件为空" in status
    assert driver.execute_script("return window.__sent") == 0


# --- public checking (核验): /check with a certificate number and the file ----------------------------------


def _sealed_deposit(live_app: LiveApp, data: bytes) -> str:
    headers = {"Authorization": f"Bearer {live_app.api_key}"}
    response = requests.post(
        live_app.url + "/v1/evidence", json={"sha256": hashlib.sha256(data).hexdigest()}, headers=headers, timeout=10
    )
    assert response.status_code == 202
    evidence_id = str(response.json()["id"])
    wait_for(
        lambda: (
            requests.get(f"{live_app.url}/v1/evidence/{evidence_id}", headers=headers, timeout=10).json()["status"]
            == "sealed"
        ),
        "the deposit to be sealed",
    )
    return evidence_id


def _check(driver: Any, live_app: LiveApp, evidence_id: str, path: Path) -> str:
    open_page(driver, f"{live_app.url}/check?id={evidence_id}")
    assert driver.find_element("id", "check-id").get_attribute("value") == evidence_id  # the QR code's ?id=
    driver.execute_script("document.getElementById('check-status').dataset.state = 'idle'")
    driver.find_element("id", "check-file").send_keys(str(path))
    driver.find_element("id", "check-button").click()
    return str(
        wait_for(
            lambda: (
                driver.find_element("id", "check-status").get_attribute("data-state") in ("found", "notfound", "error")
                and driver.find_element("id", "check-status").get_attribute("data-state")
            ),
            "the check's answer",
        )
    )


def test_check_page_with_the_number_and_the_real_file_verifies_valid(
    driver: Any, live_app: LiveApp, tmp_path: Path
) -> None:
    contract = tmp_path / "买卖合同.pdf"
    contract.write_bytes(b"%PDF-1.7 the signed contract " + random.Random(3).randbytes(3000))
    evidence_id = _sealed_deposit(live_app, contract.read_bytes())
    assert _check(driver, live_app, evidence_id, contract) == "found"
    shown = result_of(driver)
    assert shown["valid"], shown
    assert shown["steps"][1] == "pass" and shown["steps"][6] == "pass"  # the file, and the server's key (embedded)
    assert hashlib.sha256(contract.read_bytes()).hexdigest() in driver.find_element("id", "file-digest").text
    screenshot(driver, "check-found")


def test_check_page_says_the_same_not_found_for_a_wrong_file_and_a_wrong_number(
    driver: Any, live_app: LiveApp, tmp_path: Path
) -> None:
    contract = tmp_path / "contract.pdf"
    contract.write_bytes(b"%PDF-1.7 another contract " + random.Random(4).randbytes(3000))
    evidence_id = _sealed_deposit(live_app, contract.read_bytes())
    other = tmp_path / "other.pdf"
    other.write_bytes(b"%PDF-1.7 not the deposited file")
    answers = []
    for number, path in ((evidence_id, other), ("01" + "Z" * (len(evidence_id) - 2), contract)):
        assert _check(driver, live_app, number, path) == "notfound"
        answers.append(driver.find_element("id", "check-status").text)
        assert driver.find_element("id", "result").get_attribute("data-state") != "done"  # no receipt, no verdict
    assert answers[0] == answers[1] and "Not found" in answers[0] and "未找到" in answers[0]
    screenshot(driver, "check-not-found")


def test_failures_state_the_fault_plainly_and_a_saved_status_answer_is_not_a_receipt(
    offline_page: Any, tmp_path: Path
) -> None:
    other = tmp_path / "other.txt"
    other.write_bytes(b"not the contract")
    offline_page.find_element("id", "file-input").send_keys(str(other))
    wait_for(lambda: offline_page.find_elements("id", "file-digest"), "the file's digest")
    shown = drop_receipt(offline_page, GOLDEN / "single.json")
    assert not shown["valid"] and shown["step"] == 1
    assert (
        "this is not the file the receipt was issued for" in shown["why"]
        and "这不是签发回执时的那个文件" in shown["why"]
    )
    assert "matches the receipt" not in shown["why"]  # not the step's positive title
    pending = write_json(
        tmp_path,
        "contract.pdf.receipt",
        {"id": "01JDXYZ", "sha256": "ab" * 32, "received_at": "2026-11-30T00:00:00.000000Z", "status": "pending"},
    )
    shown = drop_receipt(offline_page, pending)
    assert "Cannot read" in shown["head"] and "status answer (pending), not a receipt" in shown["why"]
    assert "Fetch it again" in shown["why"]
