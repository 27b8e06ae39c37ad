"""SPEC §6 step 1 for v2 receipts with further digests (SM3, issue 16): the digests a verifier computes from the file
are checked, the others reported as not checked; ``evidence verify FILE`` computes SM3 in the same pass as SHA-256
when the receipt carries one. The golden receipt comes from the independent generator of tests/vectors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from service.commands.verify import verify as verify_command
from service.core.hashing import sm3
from service.core.verify import verify_receipt, wanted_digests
from tests.unit.test_verify import CONTRACT, DIGEST, GOLDEN, TRUSTED
from tests.unit.test_verify_v2 import golden_v2

SM3 = sm3(CONTRACT)


def _step1(result: Any) -> Any:
    return [c for c in result.checks if c.step == 1][0]


def test_golden_sm3_receipt_carries_the_sm3_of_the_contract() -> None:
    doc = golden_v2("v2-sm3-digest")
    assert doc["evidence"]["digests"] == {"sm3": SM3.hex()}
    assert wanted_digests(doc) == {"sm3"}
    assert wanted_digests(golden_v2("v2-bare")) == frozenset()
    assert wanted_digests({"evidence": {"digests": {"blake3": "00"}}}) == frozenset()
    assert wanted_digests([1, 2]) == frozenset()


def test_step_1_checks_the_sm3_computed_from_the_file() -> None:
    result = verify_receipt(golden_v2("v2-sm3-digest"), sha256=DIGEST, file_digests={"sm3": SM3}, trusted_keys=TRUSTED)
    assert result.valid, result.to_json()
    step1 = _step1(result)
    assert step1.checked and f"its SM3 {SM3.hex()} equals evidence.digests.sm3" in step1.detail


def test_step_1_fails_when_the_files_sm3_differs() -> None:
    other = sm3(CONTRACT + b"x")
    result = verify_receipt(
        golden_v2("v2-sm3-digest"), sha256=DIGEST, file_digests={"sm3": other}, trusted_keys=TRUSTED
    )
    assert not result.valid and result.step == 1
    assert f"the file's SM3 is {other.hex()}; the receipt's evidence.digests.sm3 is {SM3.hex()}" == result.reason


def test_an_edited_sm3_in_the_receipt_fails_step_1_with_the_file_and_step_2_without() -> None:
    doc = copy.deepcopy(golden_v2("v2-sm3-digest"))
    doc["evidence"]["digests"]["sm3"] = "0" * 64
    with_file = verify_receipt(doc, sha256=DIGEST, file_digests={"sm3": SM3}, trusted_keys=TRUSTED)
    assert not with_file.valid and with_file.step == 1
    digest_only = verify_receipt(doc, sha256=DIGEST, trusted_keys=TRUSTED)
    assert not digest_only.valid and digest_only.step == 2  # 2a: the leaf's digest line disagrees


def test_only_a_sha256_given_reports_sm3_not_checked() -> None:
    result = verify_receipt(golden_v2("v2-sm3-digest"), sha256=DIGEST, trusted_keys=TRUSTED)
    assert result.valid
    assert "not checked (only a SHA-256 was given): evidence.digests.sm3" in _step1(result).detail


def test_unknown_algorithms_are_reported_not_checked() -> None:
    result = verify_receipt(golden_v2("v2-sm3-digest"), sha256=DIGEST, file_digests={}, trusted_keys=TRUSTED)
    assert result.valid
    assert "not checked (not computed by this verifier): evidence.digests.sm3" in _step1(result).detail


def test_ill_typed_digests_fail_step_1_when_a_file_is_given() -> None:
    doc = copy.deepcopy(golden_v2("v2-sm3-digest"))
    doc["evidence"]["digests"] = {"sm3": 5}
    result = verify_receipt(doc, sha256=DIGEST, file_digests={"sm3": SM3}, trusted_keys=TRUSTED)
    assert not result.valid and result.step == 1 and "evidence.digests" in (result.reason or "")


def test_v1_receipts_ignore_further_digests() -> None:
    doc = json.loads((GOLDEN / "single.json").read_text())
    result = verify_receipt(doc, sha256=DIGEST, file_digests={"sm3": b"\0" * 32}, trusted_keys=TRUSTED)
    assert result.valid


def test_evidence_verify_file_checks_sm3(tmp_path: Path) -> None:
    receipt = tmp_path / "r.json"
    receipt.write_text(json.dumps(golden_v2("v2-sm3-digest")))
    contract = tmp_path / "contract.txt"
    contract.write_bytes(CONTRACT)
    keys = tmp_path / "trusted.vkey"
    keys.write_text("\n".join(k.vkey for k in TRUSTED) + "\n")
    runner = CliRunner()
    ok = runner.invoke(verify_command, [str(receipt), str(contract), "--key", str(keys), "--json"])
    assert ok.exit_code == 0, ok.output
    detail = [c for c in json.loads(ok.stdout)["checks"] if c["step"] == 1][0]["detail"]
    assert f"its SM3 {SM3.hex()} equals" in detail
    # A file with the right SHA-256 cannot be forged here, so edit the receipt's SM3 and the leaf check is first
    # reached by step 1 with the file in hand.
    doc = golden_v2("v2-sm3-digest")
    doc["evidence"]["digests"]["sm3"] = "1" * 64
    receipt.write_text(json.dumps(doc))
    bad = runner.invoke(verify_command, [str(receipt), str(contract), "--key", str(keys), "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["step"] == 1
    only_digest = runner.invoke(verify_command, [str(receipt), "--sha256", DIGEST.hex(), "--key", str(keys)])
    assert only_digest.exit_code == 1  # step 2a catches the edited digest without the file
