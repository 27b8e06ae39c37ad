"""国密 on the verify page (issue 16), in real headless Chromium: the page's own SM3 (service/static/hashing.js)
against OpenSSL's (hashlib) and the GB/T 32905 examples; step 1 of a v2 receipt with an SM3 digest reaches the
Python verifier's verdict when the file is chosen; SM2 keys are listed with their SM3 fingerprints and the page
says that SM2 signatures need the command line."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from service.core.hashing import sm3
from service.core.note import Signer, Sm2Signer
from service.core.verify import verify_receipt
from tests.browser.conftest import screenshot
from tests.browser.test_verify_page import (  # noqa: F401
    GOLDEN_VKEY,
    drop_receipt,
    offline_page,
    paste_keys,
    wait_for,
    write_json,
)
from tests.unit.test_sm2 import _receipt
from tests.unit.test_verify import CONTRACT, DIGEST, TRUSTED
from tests.unit.test_verify_v2 import golden_v2

pytestmark = pytest.mark.browser

SIZES = [0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 65536 + 17, 3 * 1024 * 1024 + 7]


def page_sm3(driver: Any, data: bytes, piece: int) -> str:
    return str(
        driver.execute_script(
            """
            const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
            const s = new window.evidenceLedger.Sm3Stream();
            for (let i = 0; i < bytes.length; i += arguments[1]) s.update(bytes.subarray(i, i + arguments[1]));
            return Array.from(s.digest(), (b) => b.toString(16).padStart(2, '0')).join('');
            """,
            base64.b64encode(data).decode(),
            piece,
        )
    )


def test_page_sm3_matches_the_standard_and_openssl(offline_page: Any) -> None:  # noqa: F811
    assert page_sm3(offline_page, b"abc", 64) == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert page_sm3(offline_page, b"abcd" * 16, 7) == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    for size in SIZES:
        data = random.Random(size).randbytes(size)
        for piece in (1_000_003, 61):
            if piece == 61 and size > 70_000:
                continue
            assert page_sm3(offline_page, data, piece) == hashlib.new("sm3", data).hexdigest(), (size, piece)


def test_page_sm3_of_a_file_in_slices(offline_page: Any, tmp_path: Path) -> None:  # noqa: F811
    big = tmp_path / "big.bin"
    data = random.Random(7).randbytes(9 * 1024 * 1024 + 5)  # two 8 MiB slices
    big.write_bytes(data)
    offline_page.find_element("id", "file-input").send_keys(str(big))
    got = offline_page.execute_async_script(
        """
        const done = arguments[0];
        const f = document.getElementById('file-input').files[0];
        window.evidenceLedger.sm3File(f).then(
          (d) => done(Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('')), (e) => done(String(e)));
        """
    )
    assert got == sm3(data).hex()


def test_v2_sm3_receipt_with_the_file_checks_sm3_at_step_1(offline_page: Any, tmp_path: Path) -> None:  # noqa: F811
    # offline_page has the contract chosen as the file: the page computes its SM3 because the receipt has one.
    shown = drop_receipt(offline_page, write_json(tmp_path, "sm3", golden_v2("v2-sm3-digest")))
    assert shown["valid"], shown
    step1 = [c for c in shown["result"]["checks"] if c["step"] == 1][0]
    python = verify_receipt(
        golden_v2("v2-sm3-digest"), sha256=DIGEST, file_digests={"sm3": sm3(CONTRACT)}, trusted_keys=TRUSTED
    )
    assert step1["detail"] == [c for c in python.checks if c.step == 1][0].detail
    assert f"its SM3 {sm3(CONTRACT).hex()} equals evidence.digests.sm3" in step1["detail"]
    screenshot(offline_page, "verify-sm3-valid")

    edited = copy.deepcopy(golden_v2("v2-sm3-digest"))
    edited["evidence"]["digests"]["sm3"] = "2" * 64
    shown = drop_receipt(offline_page, write_json(tmp_path, "sm3-edited", edited))
    python = verify_receipt(edited, sha256=DIGEST, file_digests={"sm3": sm3(CONTRACT)}, trusted_keys=TRUSTED)
    assert not shown["valid"] and shown["step"] == 1 == python.step
    assert shown["result"]["reason"] == python.reason


def test_page_step_1_words_match_python_without_the_file(offline_page: Any) -> None:  # noqa: F811
    cases = [(golden_v2("v2-sm3-digest"), None), (golden_v2("v2-sm3-digest"), {"sm3": sm3(CONTRACT).hex()}),
             (golden_v2("v2-sm3-digest"), {}), (golden_v2("v2-bare"), {"sm3": "00" * 32})]  # fmt: skip
    got = offline_page.execute_async_script(
        """
        const [cases, vkeys, sha, done] = arguments;
        (async () => {
          const out = [];
          for (const [text, digests] of cases) {
            const bytes = new TextEncoder().encode(text);
            const r = await window.evidenceLedger.verifyBytes(bytes, sha, vkeys, digests);
            const step1 = r.checks.filter((c) => c.step === 1)[0].detail;
            out.push({valid: r.valid, step: r.step, reason: r.reason, step1});
          }
          return out;
        })().then(done, (e) => done({error: String(e && e.stack || e)}));
        """,
        [(json.dumps(doc), digests) for doc, digests in cases],
        [GOLDEN_VKEY],
        DIGEST.hex(),
    )
    assert not isinstance(got, dict), got
    for (doc, digests), page in zip(cases, got, strict=True):
        further = None if digests is None else {k: bytes.fromhex(v) for k, v in digests.items()}
        r = verify_receipt(doc, sha256=DIGEST, file_digests=further, trusted_keys=TRUSTED)
        assert page == {
            "valid": r.valid,
            "step": r.step,
            "reason": r.reason,
            "step1": [c for c in r.checks if c.step == 1][0].detail,
        }


def test_sm2_keys_are_listed_and_the_page_says_sm2_needs_the_cli(offline_page: Any, tmp_path: Path) -> None:  # noqa: F811
    ed, gm = Signer.generate("example.org/ledger"), Sm2Signer.generate("example.org/ledger")
    doc, digest = _receipt([ed, gm])
    hint = offline_page.find_element("id", "sm2-hint").text
    assert "evidence verify" in hint and "SM2" in hint
    paste_keys(offline_page, gm.verifier.vkey)
    row = wait_for(
        lambda: offline_page.find_elements("css selector", f'#keys-body tr[data-vkey="{gm.verifier.vkey}"]'),
        "the SM2 key's row",
    )[0]
    assert row.get_attribute("data-sm2") == "true"
    assert gm.verifier.fingerprint_sm3 in row.text and gm.verifier.fingerprint in row.text
    assert "evidence verify" in row.text
    # Only the SM2 key trusted (and the golden Ed25519 key, another origin): step 6 fails here, saying why.
    path = write_json(tmp_path, "dual", doc)
    offline_page.find_element("id", "sha-input").send_keys(digest.hex())
    shown = drop_receipt(offline_page, path)
    assert not shown["valid"] and shown["step"] == 6
    assert "SM2 signatures are not verified in this page" in shown["why"]
    screenshot(offline_page, "verify-sm2-key-cli-only")
    # With the Ed25519 key pasted too, the same receipt is valid here (the SM2 line is ignored, as C2SP says).
    offline_page.execute_script(  # one input event with both lines: the page verifies again by itself
        "const box = document.getElementById('vkeys-input'); box.value = arguments[0];"
        "box.dispatchEvent(new Event('input'));",
        f"{gm.verifier.vkey}\n{ed.verifier.vkey}",
    )
    wait_for(
        lambda: offline_page.find_element("id", "verdict").get_attribute("data-valid") == "true",
        "the receipt to verify with the Ed25519 key",
    )
