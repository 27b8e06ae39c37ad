"""SPEC §9 step 6 with a witness policy: quorum met, not met, an invalid listed cosignature, unknown ones ignored,
v1 receipts without cosignatures unchanged without a policy; the CLI's --policy / --witness / --quorum."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.core.cosignature import WitnessSigner
from service.core.note import parse_vkeys
from service.core.policy import Policy, parse_policy
from service.core.receipt import load_json
from service.core.verify import verify_receipt
from tests.support import c2sp_cosig as ref

GOLDEN = Path(__file__).parent.parent / "vectors" / "receipts"
CONTRACT = (GOLDEN / "contract.txt").read_bytes()
DIGEST = hashlib.sha256(CONTRACT).digest()
TRUSTED = parse_vkeys((GOLDEN / "trusted.vkey").read_text())
W = [WitnessSigner(f"witness{i}.example", bytes([40 + i]) * 32) for i in range(3)]
T0 = 1_800_000_000  # 2027-01-15T08:00:00Z


def golden() -> dict[str, Any]:
    doc = load_json((GOLDEN / "batch5-index2-ledger3.json").read_bytes())
    assert isinstance(doc, dict)
    return doc


def cosigned(signers: list[WitnessSigner], *, extra: bytes = b"") -> dict[str, Any]:
    doc = copy.deepcopy(golden())
    note = doc["ledger"]["checkpoint"].encode()
    body, _ = ref.body_and_signatures(note)
    for i, s in enumerate(signers):
        note += s.cosign(body, T0 + 60 * i)
    doc["ledger"]["checkpoint"] = (note + extra).decode()
    return doc


def test_v1_receipt_without_cosignatures_and_without_policy_is_unchanged() -> None:
    result = verify_receipt(golden(), sha256=DIGEST, trusted_keys=TRUSTED)
    assert result.valid and "witnesses" not in result.to_json() and "cosigned" not in (result.statement or "")


def test_cosigned_receipt_without_policy_verifies_as_before() -> None:
    result = verify_receipt(cosigned(W), sha256=DIGEST, trusted_keys=TRUSTED)
    assert result.valid and "cosigned" not in (result.statement or "")


def test_quorum_met_lists_witnesses_and_statement_names_the_earliest_time() -> None:
    policy = Policy.from_witnesses([w.verifier for w in W], 2)
    result = verify_receipt(cosigned(W[1:]), sha256=DIGEST, trusted_keys=TRUSTED, policy=policy)
    assert result.valid, result.to_json()
    out = result.to_json()
    assert [(w["name"], w["valid"], w["time"]) for w in out["witnesses"]] == [
        ("witness0.example", False, None),
        ("witness1.example", True, "2027-01-15T08:00:00.000000Z"),
        ("witness2.example", True, "2027-01-15T08:01:00.000000Z"),
    ]
    assert out["witnesses"][1]["fingerprint"] == W[1].verifier.fingerprint
    assert out["quorum"] == "2 of {witness0.example, witness1.example, witness2.example}"
    assert (result.statement or "").endswith(
        "; cosigned by witness1.example, witness2.example no later than 2027-01-15T08:00:00.000000Z."
    )


def test_quorum_not_met_fails_step_6() -> None:
    policy = Policy.from_witnesses([w.verifier for w in W], 3)
    result = verify_receipt(cosigned(W[:2]), sha256=DIGEST, trusted_keys=TRUSTED, policy=policy)
    assert not result.valid and result.step == 6
    assert "not cosigned by the witness quorum" in (result.reason or "")
    result = verify_receipt(golden(), sha256=DIGEST, trusted_keys=TRUSTED, policy=policy)
    assert not result.valid and result.step == 6


def test_invalid_cosignature_by_a_listed_witness_fails_step_6_even_if_quorum_is_met() -> None:
    doc = cosigned(W)
    other = Policy.from_witnesses([w.verifier for w in W], 1)
    body = b"example.org/evidence-ledger-test\n99\n" + b"A" * 43 + b"=\n"
    forged = W[2].cosign(body, T0)  # a cosignature of another checkpoint, pasted in
    doc["ledger"]["checkpoint"] = cosigned(W[:2])["ledger"]["checkpoint"] + forged.decode()
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED, policy=other)
    assert not result.valid and result.step == 6
    assert "witness2.example" in (result.reason or "") and "does not verify" in (result.reason or "")


def test_unknown_cosignatures_are_ignored() -> None:
    stranger = WitnessSigner("stranger.example", bytes([99]) * 32)
    junk = "\u2014 stranger.example " + "QUFBQUFB" * 4 + "\n"
    doc = cosigned([W[0], stranger], extra=junk.encode())
    policy = Policy.from_witnesses([W[0].verifier], 1)
    result = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED, policy=policy)
    assert result.valid, result.to_json()
    assert [w["name"] for w in result.to_json()["witnesses"]] == ["witness0.example"]


def test_policy_log_lines_are_trusted_keys() -> None:
    text = f"log {TRUSTED[0].vkey}\nwitness A {W[0].verifier.vkey}\nquorum A\n"
    result = verify_receipt(cosigned(W[:1]), sha256=DIGEST, trusted_keys=[], policy=parse_policy(text))
    assert result.valid, result.to_json()
    assert "cosigned by A no later than" in (result.statement or "")


def _evidence(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "verify", *args], capture_output=True, text=True, check=False
    )


def test_cli_policy_file_and_short_form(tmp_path: Path) -> None:
    receipt = tmp_path / "r.json"
    receipt.write_text(json.dumps(cosigned(W[:2])))
    policy = tmp_path / "witnesses.policy"
    policy.write_text(
        f"log {TRUSTED[0].vkey}\n"
        + "".join(f"witness court{i} {w.verifier.vkey}\n" for i, w in enumerate(W))
        + "group two 2 court0 court1 court2\nquorum two\n"
    )
    run = _evidence(str(receipt), str(GOLDEN / "contract.txt"), "--policy", str(policy), "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert [w["valid"] for w in out["witnesses"]] == [True, True, False]
    assert "cosigned by court0, court1 no later than 2027-01-15T08:00:00.000000Z" in out["statement"]

    run = _evidence(str(receipt), "--key", TRUSTED[0].vkey, *sum((["--witness", w.verifier.vkey] for w in W), []))
    assert run.returncode == 1 and "INVALID at step 6" in run.stdout  # default quorum: all three
    run = _evidence(
        str(receipt), "--key", TRUSTED[0].vkey, "--quorum", "2", *sum((["--witness", w.verifier.vkey] for w in W), [])
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[VALID  ] witness0.example: cosigned at 2027-01-15T08:00:00.000000Z" in run.stdout
    assert W[0].verifier.fingerprint in run.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--quorum", "1"], "--quorum needs"),
        (["--policy", "/nonexistent.policy"], "cannot read the policy"),
        (["--witness", "w+00000000+BAAA"], "bad witness key"),
        (["--witness", W[0].verifier.vkey, "--quorum", "2"], "between 0 and"),
    ],
)
def test_cli_policy_usage_errors_exit_2(args: list[str], words: str) -> None:
    run = _evidence(str(GOLDEN / "single.json"), "--key", TRUSTED[0].vkey, *args)
    assert run.returncode == 2 and words in run.stderr, run.stderr


def test_cli_bad_policy_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.policy"
    bad.write_text("quorum nobody\n")
    run = _evidence(str(GOLDEN / "single.json"), "--key", TRUSTED[0].vkey, "--policy", str(bad))
    assert run.returncode == 2 and "policy line 1" in run.stderr


def test_cli_certificate_with_a_policy_prints_the_witnesses(tmp_path: Path) -> None:
    import shutil

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    receipt = tmp_path / "r.json"
    receipt.write_text(json.dumps(cosigned(W[:2])))
    policy = tmp_path / "alliance.policy"
    policy.write_text("".join(f"witness court{i} {w.verifier.vkey}\n" for i, w in enumerate(W)) + "quorum court0\n")
    out = tmp_path / "c.pdf"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "certificate",
            str(receipt),
            "-o",
            str(out),
            "--policy",
            str(policy),
            "--server-url",
            "https://ledger.example.org",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    text = " ".join(subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True).stdout.split())
    assert "court0 · 2027-01-15 08:00:00 UTC" in text and W[0].verifier.fingerprint in text
    bad = subprocess.run(
        [sys.executable, "-m", "service", "certificate", str(receipt), "-o", str(out), "--policy", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "cannot read the policy" in bad.stderr
