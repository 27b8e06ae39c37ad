"""The verification page with a witness policy (SPEC §9): cosignature/v1 checked with WebCrypto Ed25519, the C2SP
tlog-policy parsed strictly, and every outcome (valid, reason, statement, each witness) identical to
``service.core.verify`` with the same policy."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from service.core.cosignature import WitnessSigner
from service.core.errors import MalformedPolicy
from service.core.policy import parse_policy
from service.core.verify import verify_receipt
from tests.browser.test_verify_page import (
    DIGEST,
    GOLDEN,
    GOLDEN_VKEY,
    TRUSTED,
    choose_file,
    drop_receipt,
    golden,
    offline_page,  # noqa: F401 - the fixture
    wait_for,
    write_json,
)
from tests.support import c2sp_cosig as ref

W = [WitnessSigner(f"witness{i}.example", bytes([40 + i]) * 32) for i in range(3)]
T0 = 1_800_000_000


def cosigned(signers: list[WitnessSigner], extra: bytes = b"") -> dict[str, Any]:
    doc = copy.deepcopy(golden())
    note = doc["ledger"]["checkpoint"].encode()
    body, _ = ref.body_and_signatures(note)
    for i, s in enumerate(signers):
        note += s.cosign(body, T0 + 60 * i)
    doc["ledger"]["checkpoint"] = (note + extra).decode()
    return doc


def policy_text(quorum: str, *, log: bool = False) -> str:
    lines = [f"log {GOLDEN_VKEY}"] if log else []
    lines += [f"witness court{i} {w.verifier.vkey} https://w{i}.example/" for i, w in enumerate(W)]
    lines += ["group two-of-three 2 court0 court1 court2", f"quorum {quorum}"]
    return "\n".join(lines) + "\n"


def test_page_and_service_agree_on_witness_policies(offline_page: Any) -> None:  # noqa: F811
    other = WitnessSigner("witness2.example", bytes([99]) * 32)  # right name, wrong key
    forged = other.cosign(b"example.org/evidence-ledger-test\n3\n" + b"A" * 43 + b"=\n", T0)
    cases = [
        (cosigned(W), policy_text("two-of-three"), [GOLDEN_VKEY]),
        (cosigned(W[1:]), policy_text("two-of-three"), [GOLDEN_VKEY]),
        (cosigned(W[:1]), policy_text("two-of-three"), [GOLDEN_VKEY]),
        (cosigned(W[:2], forged), policy_text("two-of-three"), [GOLDEN_VKEY]),
        (cosigned(W[:2]), policy_text("court2"), [GOLDEN_VKEY]),
        (cosigned(W[:2]), policy_text("none"), [GOLDEN_VKEY]),
        (cosigned(W[:2]), policy_text("two-of-three", log=True), []),
        (golden(), policy_text("two-of-three"), [GOLDEN_VKEY]),
        (
            cosigned([WitnessSigner("stranger.example", bytes([7]) * 32), *W[:2]]),
            policy_text("two-of-three"),
            [GOLDEN_VKEY],
        ),
    ]
    got = offline_page.execute_async_script(
        """
        const [cases, sha, done] = arguments;
        (async () => {
          const out = [];
          for (const [text, policy, vkeys] of cases) {
            const r = await window.evidenceLedger.verifyBytes(new TextEncoder().encode(text), sha, vkeys, null, policy);
            out.push({valid: r.valid, step: r.step, reason: r.reason, statement: r.statement,
                      checks: r.checks.map((c) => [c.step, c.detail]),
                      witnesses: (r.witnesses || []).map((w) => [w.name, w.valid, w.present, w.time, w.fingerprint])});
          }
          return out;
        })().then(done, (e) => done({error: String(e && e.stack || e)}));
        """,
        [(json.dumps(doc), text, vkeys) for doc, text, vkeys in cases],
        DIGEST.hex(),
    )
    assert not isinstance(got, dict), got
    outcomes = set()
    for (doc, text, vkeys), page in zip(cases, got, strict=True):
        keys = TRUSTED if vkeys else []
        want = verify_receipt(doc, sha256=DIGEST, trusted_keys=keys, policy=parse_policy(text))
        expected = {
            "valid": want.valid,
            "step": want.step,
            "reason": want.reason,
            "statement": want.statement,
            "checks": [[c.step, c.detail] for c in want.checks if c.step != 7],
            "witnesses": [
                [w.name, w.valid, w.present, None if w.time is None else w.to_json()["time"], w.fingerprint]
                for w in want.witnesses or []
            ],
        }
        page["checks"] = [c for c in page["checks"] if c[0] not in (7, 8)]
        assert page == expected, (text, doc["ledger"]["checkpoint"][-200:])
        outcomes.add((want.valid, want.step))
    assert outcomes == {(True, None), (False, 6)}


def test_page_rejects_malformed_policies_like_the_parser(offline_page: Any) -> None:  # noqa: F811
    bad = [
        "quorum nobody\n",
        f"witness a {GOLDEN_VKEY}\nquorum a\n",
        f"witness a {W[0].verifier.vkey}\nwitness b {W[0].verifier.vkey}\nquorum a\n",
        f"witness a {W[0].verifier.vkey}\ngroup g 2 a\nquorum g\n",
        "quorum none\nquorum none\n",
        "witnesses x\nquorum none\n",
        "",
    ]
    got = offline_page.execute_async_script(
        """
        const [texts, done] = arguments;
        (async () => {
          const out = [];
          for (const t of texts) {
            try { await window.evidenceLedger.parsePolicy(t); out.push(null); }
            catch (e) { out.push(e.reason || String(e)); }
          }
          return out;
        })().then(done, (e) => done({error: String(e)}));
        """,
        bad,
    )
    for text, reason in zip(bad, got, strict=True):
        try:
            parse_policy(text)
        except MalformedPolicy as exc:
            assert reason == exc.reason, text
        else:
            raise AssertionError(f"the Python parser accepted {text!r}")


def test_pasted_policy_shows_each_witness(offline_page: Any, tmp_path: Path) -> None:  # noqa: F811
    box = offline_page.find_element("id", "policy-input")
    box.send_keys(policy_text("two-of-three"))
    choose_file(offline_page, GOLDEN / "contract.txt")
    shown = drop_receipt(offline_page, write_json(tmp_path, "cosigned", cosigned(W[:2])))
    assert shown["valid"], shown
    items = wait_for(lambda: offline_page.find_elements("css selector", "#witness-list li"), "the witness list")
    texts = [i.text for i in items]
    assert "court0: cosigned at 2027-01-15T08:00:00.000000Z" in texts[0] and W[0].verifier.fingerprint in texts[0]
    assert "absent" in texts[2]
    statement = offline_page.find_element("id", "statement").text
    assert "cosigned by court0, court1 no later than 2027-01-15T08:00:00.000000Z" in statement
    box.clear()
    box.send_keys("quorum nobody")
    errors = wait_for(lambda: offline_page.find_element("id", "policy-errors").text, "the policy errors")
    assert "policy line 1" in errors
