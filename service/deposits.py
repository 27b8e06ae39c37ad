"""Receipt format v2 deposits (SPEC §2.1-§2.3): cases and their phases, depositor attestations, co-deposits.

Owns: creating and reading cases, the phase numbering rule (1, 2, 3, ... with no repeat and no gap), checking a
depositor's attestation before anything is stored (a bare Ed25519 key must be registered for the tenant, an X.509
certificate must validate against the CAs the service trusts), countersignatures (a new deposit referring to the
first), and tenants' depositor keys. Plain and merely labelled deposits stay in ``service.sealing``.
Must not import: Flask, Celery, the API or workers. Functions take a Connection and never commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from service.core import attestation
from service.core.errors import Conflict, InvalidInput, NotFound, Unprocessable
from service.core.formats import (
    CaseRef,
    check_evidence_id,
    claim_lines,
    format_time,
    new_evidence_id,
    text_sha256,
)
from service.core.labels import label_problem
from service.sealing import Deposit
from service.storage import ledger
from service.storage.codec import from_us, to_us

__all__ = [
    "Deposit",
    "V2Deposit",
    "add_depositor_key",
    "case_view",
    "create_case",
    "decode_attestation",
    "deposit_v2",
]

MAX_TITLE_LENGTH = 500


@dataclass(frozen=True)
class V2Deposit:
    """What ``deposit_v2`` recorded (pending until the next batch is sealed)."""

    deposit: Deposit
    case_id: str | None
    phase: int | None
    phase_name: str | None
    cosigns: str | None
    depositor: attestation.Depositor | None

    def to_json(self) -> dict[str, Any]:
        out = self.deposit.to_json()
        if self.case_id is not None:
            out.update(case=self.case_id, phase=self.phase, phase_name=self.phase_name)
        if self.cosigns is not None:
            out["cosigns"] = self.cosigns
        out["depositor"] = None if self.depositor is None else self.depositor.to_json()
        return out


# --- cases -----------------------------------------------------------------------------------------------------


def _text(value: Any, what: str, limit: int = MAX_TITLE_LENGTH) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    problem = label_problem(value)
    if problem is not None:
        raise InvalidInput(f"{what} {problem}")
    if len(value) > limit:
        raise InvalidInput(f"{what} must be at most {limit} characters, found {len(value)}")
    return value


def create_case(conn: Connection, tenant_id: int, title: Any, reference: Any, now: datetime) -> dict[str, Any]:
    """Create a case (evidence chain) for the tenant; its id carries 128 random bits like an evidence id."""
    title = _text(title, "the case title")
    if reference is not None:
        reference = _text(reference, "the case reference")
    case_id = new_evidence_id()
    ledger.insert_case(conn, case_id, tenant_id, title, reference, to_us(now))
    return {"id": case_id, "title": title, "reference": reference, "created_at": format_time(from_us(to_us(now)))}


def _case_of_tenant(conn: Connection, tenant_id: int, case_id: str) -> Any:
    try:
        check_evidence_id(case_id)
    except Exception:  # noqa: BLE001 - any malformed id is simply not a case of this tenant
        raise NotFound(f"no case with id {case_id[:80]!r} for this tenant") from None
    row = ledger.get_case(conn, case_id)
    if row is None or int(row.tenant_id) != tenant_id:
        # Another tenant's case answers exactly like a case that does not exist: nothing leaks.
        raise NotFound(f"no case with id {case_id!r} for this tenant")
    return row


def case_view(conn: Connection, tenant_id: int, case_id: str) -> dict[str, Any]:
    """The case with its phases in order, each with its deposit and the countersignatures of it."""
    row = _case_of_tenant(conn, tenant_id, case_id)
    phases: dict[int, dict[str, Any]] = {}
    for r in ledger.case_deposits(conn, case_id):
        phase = int(r.phase)
        entry = phases.setdefault(phase, {"phase": phase, "phase_name": r.phase_name, "evidence": None, "parties": []})
        item = _deposit_json(r)
        if r.cosigns is None:
            entry["evidence"] = item
            entry["parties"].insert(0, item["depositor"])
        else:
            entry.setdefault("countersignatures", []).append(item)
            entry["parties"].append(item["depositor"])
    return {
        "id": row.id,
        "title": row.title,
        "reference": row.reference,
        "created_at": format_time(from_us(int(row.created_us))),
        "phases": [phases[p] for p in sorted(phases)],
    }


def _deposit_json(r: Any) -> dict[str, Any]:
    depositor = None
    if r.attestation is not None:
        try:
            att = attestation.parse_attestation(bytes(r.attestation))
            depositor = attestation.check_signature(att).to_json()
        except attestation.AttestationError:  # checked when stored; never expected
            depositor = None
    out: dict[str, Any] = {
        "id": r.id,
        "sha256": bytes(r.sha256).hex(),
        "received_at": format_time(from_us(int(r.received_us))),
        "status": "pending" if r.batch_seq is None else "sealed",
        "depositor": depositor,
    }
    if r.label is not None:
        out["label"] = r.label
    if r.batch_seq is not None:
        out["batch_seq"] = int(r.batch_seq)
    return out


# --- attestations ----------------------------------------------------------------------------------------------


def decode_attestation(value: Any, where: str) -> bytes:
    """The attestation bytes from their standard base64 text (SPEC §2.2 travels as base64 in JSON)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be the attestation as standard base64 text")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidInput(f"{where} is not valid standard base64") from None
    if len(raw) > attestation.MAX_ATTESTATION_SIZE:
        raise InvalidInput(f"{where} is {len(raw)} bytes, at most {attestation.MAX_ATTESTATION_SIZE} allowed")
    return raw


def _check_attestation(
    conn: Connection,
    tenant_id: int,
    raw: bytes,
    claims: Sequence[str],
    now: datetime,
    trusted_cas: Sequence[x509.Certificate],
) -> attestation.Depositor:
    """SPEC §6 step 8 as the service applies it before storing: the statement is about this deposit, the signature
    verifies, and the signer is trusted (a registered key of the tenant, or a certificate from a trusted CA)."""
    try:
        att = attestation.parse_attestation(raw)
        attestation.check_statement(att, claims, now)
        depositor = attestation.check_signature(att)
        if att.key is not None:
            if not ledger.depositor_key_active(conn, tenant_id, att.key):
                raise Unprocessable(
                    f"the attestation is signed by {depositor.identity}, which is not a registered depositor key of "
                    "this tenant (the operator registers it: evidence tenant key add TENANT --depositor-key FILE)"
                )
            return depositor
        if not trusted_cas:
            raise Unprocessable(
                "the attestation carries an X.509 certificate, but this service trusts no depositor CA "
                "(the operator sets EVIDENCE_DEPOSITOR_CA_FILES)"
            )
        attestation.validate_path(att, trusted_cas)
    except attestation.AttestationError as exc:
        raise Unprocessable(f"the attestation is refused: {exc.reason}") from None
    return attestation.Depositor(depositor.kind, depositor.identity, depositor.fingerprint, True, depositor.signed)


# --- v2 deposits -----------------------------------------------------------------------------------------------


def deposit_v2(
    conn: Connection,
    tenant_id: int,
    *,
    sha256: bytes,
    label: str | None,
    sm3: bytes | None = None,
    case_id: str | None = None,
    phase: Any = None,
    phase_name: Any = None,
    attestation_raw: bytes | None = None,
    cosigns: str | None = None,
    now: datetime,
    trusted_cas: Sequence[x509.Certificate] = (),
) -> V2Deposit:
    """Record one deposit with a v2 leaf: in a case (with its phase), attested, or countersigning ``cosigns``;
    ``sm3`` (the file's SM3) becomes the leaf's ``sm3`` digest line and is part of what an attestation states.

    Everything is checked before anything is written; the caller's transaction stores all of it or nothing.

    :raise NotFound: the case or the countersigned evidence is not this tenant's.
    :raise Conflict: the phase was deposited already.
    :raise Unprocessable: the phase skips a number, or the attestation is refused (the reason says which check).
    :raise InvalidInput: malformed values.
    """
    received = from_us(to_us(now))
    if cosigns is not None:
        if attestation_raw is None:
            raise InvalidInput("a countersignature needs the countersigning party's 'attestation'")
        first = ledger.get_evidence(conn, tenant_id, cosigns)
        if first is None:
            raise NotFound(f"no evidence with id {cosigns!r} for this tenant")
        if first.cosigns is not None:
            raise InvalidInput(f"evidence {cosigns} is itself a countersignature; countersign {first.cosigns}")
        sha256, label = bytes(first.sha256), first.label
        sm3 = None if first.sm3 is None else bytes(first.sm3)  # SPEC §2.1: the same digest lines as the first
        case_id, phase, phase_name = first.case_id, first.phase, first.phase_name
    case_ref = None
    if case_id is not None:
        if phase is None or phase_name is None:
            raise InvalidInput("a deposit in a case needs 'phase' (1 for the first, then 2, 3, ...) and 'phase_name'")
        if isinstance(phase, bool) or not isinstance(phase, int) or phase < 1:
            raise InvalidInput(f"'phase' must be a whole number from 1, found {phase!r}")
        phase_name = _text(phase_name, "the phase name")
        _case_of_tenant(conn, tenant_id, case_id)
        if cosigns is None:
            last = ledger.last_phase(conn, case_id)
            if phase <= last:
                taken = ledger.phase_evidence_id(conn, case_id, phase)
                raise Conflict(
                    f"phase {phase} of case {case_id} is already deposited (evidence {taken}); the next phase is "
                    f"{last + 1}"
                )
            if phase > last + 1:
                raise Unprocessable(
                    f"phase {phase} of case {case_id} skips phase {last + 1}: phases are numbered 1, 2, 3, ... "
                    f"without gaps; the next phase is {last + 1}"
                )
        case_ref = CaseRef(case_id, phase, text_sha256(phase_name))
    elif phase is not None or phase_name is not None:
        raise InvalidInput("'phase' and 'phase_name' need 'case' (create one with POST /v1/cases)")
    digests = () if sm3 is None else (("sm3", sm3),)
    claims = claim_lines(sha256, digests, None if label is None else text_sha256(label), case_ref, cosigns)
    depositor = None
    if attestation_raw is not None:
        depositor = _check_attestation(conn, tenant_id, attestation_raw, claims, received, trusted_cas)
    deposit = Deposit(new_evidence_id(), sha256, received, label, sm3)
    (pk,) = ledger.insert_evidence(
        conn,
        [{"id": deposit.id, "tenant_id": tenant_id, "sha256": sha256, "label": label, "received_us": to_us(received)}],
    )
    try:
        with conn.begin_nested():
            ledger.insert_evidence_v2(
                conn,
                [
                    {
                        "evidence_pk": pk,
                        "attestation": attestation_raw,
                        "case_id": case_id,
                        "phase": phase if case_id is not None else None,
                        "phase_name": phase_name if case_id is not None else None,
                        "cosigns": cosigns,
                        "sm3": sm3,
                    }
                ],
            )
    except IntegrityError:  # another request took this phase in the meantime (the unique (case, phase) index)
        raise Conflict(f"phase {phase} of case {case_id} was deposited by another request just now") from None
    return V2Deposit(deposit, case_id, phase if case_id else None, phase_name, cosigns, depositor)


def countersignature_receipts(
    conn: Connection, tenant_id: int, evidence_id: str, *, keys: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The receipts of the sealed countersignatures of a deposit (co-deposit parties), oldest first."""
    from service import sealing

    out = []
    for row in ledger.countersignatures(conn, evidence_id):
        if int(row.tenant_id) != tenant_id or row.batch_seq is None:
            continue
        document = sealing.receipt_for(conn, tenant_id, row.id, keys=keys)
        if document is not None:
            out.append(document)
    return out


# --- depositor keys --------------------------------------------------------------------------------------------


def add_depositor_key(conn: Connection, tenant_name: str, public_key: bytes, now: datetime) -> tuple[str, bool]:
    """Register an Ed25519 public key whose attestations the tenant's deposits may carry; returns (fingerprint,
    newly added)."""
    tenant = ledger.get_tenant_by_name(conn, tenant_name)
    if tenant is None or tenant.revoked is not None:
        raise NotFound(f"no active tenant named {tenant_name!r}")
    if len(public_key) != 32:
        raise InvalidInput(f"an Ed25519 public key is 32 bytes, found {len(public_key)}")
    added = ledger.insert_depositor_key(conn, int(tenant.id), public_key, to_us(now))
    return hashlib.sha256(public_key).hexdigest(), added
