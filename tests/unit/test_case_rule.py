"""SPEC §6.2 case rule (``service.core.verify.check_case``), used by the case certificate and ``evidence verify``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.core.verify import VerificationResult, check_case

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def phase(n: int, seconds: int, *, case: str = "C", cosigns: str | None = None, eid: str = "") -> VerificationResult:
    return VerificationResult(
        valid=True,
        evidence_id=eid or f"e{n}",
        case_id=case,
        phase=n,
        cosigns=cosigns,
        received=T0 + timedelta(seconds=seconds),
    )


def test_phases_one_to_n_in_increasing_time_pass_and_countersignatures_and_other_cases_are_ignored() -> None:
    results = [phase(2, 20), phase(1, 10), phase(3, 30), phase(1, 5, cosigns="e1"), phase(1, 99, case="D")]
    checked = check_case("C", results, expected_phases=3)
    assert checked.valid and checked.phases == 3 and checked.reason is None


def test_each_broken_rule_has_its_reason() -> None:
    assert check_case("C", [phase(1, 1), phase(3, 3)]).reason == "phase 2 of 1..3 is missing: the case is incomplete"
    missing_last = check_case("C", [phase(1, 1), phase(2, 2)], expected_phases=3)
    assert missing_last.reason == "phase 3 of 1..3 is missing: the case is incomplete"
    twice = check_case("C", [phase(1, 1), phase(1, 2, eid="x")])
    assert twice.reason == "phase 1 appears 2 times (e1, x)"
    late = check_case("C", [phase(1, 5), phase(2, 5)])
    assert not late.valid and late.reason is not None and "not in strictly increasing received time" in late.reason
    assert check_case("C", [phase(1, 1, case="D")]).reason == "no receipt names case 'C'"
    invalid = phase(1, 1)
    invalid.valid = False
    assert check_case("C", [invalid]).reason == "a receipt of the case does not verify: e1"
