"""The offline verifier: SPEC §6 steps 0-8, nothing else.

Owns: checking one evidence-receipt/v1 or /v2 document against a file digest, trusted checkpoint keys, trusted TSA
certificates and trusted depositor CA certificates, and saying what that proves. The v2 additions (SPEC §6 steps
2a-2e and 8) live in ``_check_v2_fields`` and ``_check_attestation``; a v1 receipt never reaches them.
Must not import: Flask, SQLAlchemy, Celery, requests or any setting. Trust is passed in; no network, no database.
``service.core.timestamps`` (which needs rfc3161-client) is imported only when a token is actually checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from service.core import attestation, merkle
from service.core.cosignature import check_cosignatures
from service.core.errors import (
    AttestationInvalid,
    BatchProofInvalid,
    CheckpointSignatureInvalid,
    DigestMismatch,
    EntryMismatch,
    FormatError,
    LeafMismatch,
    LedgerProofInvalid,
    MalformedReceipt,
    NoteError,
    ProofError,
    TimestampInvalid,
    VerificationError,
)
from service.core.formats import Checkpoint, Leaf, LeafV2, LedgerEntry, format_time, leaf_version, text_sha256
from service.core.note import Verifier, open_note
from service.core.policy import Policy
from service.core.receipt import FORMAT, FORMAT_V2, FORMATS, Fields, decode_b64
from service.core.strictjson import json_type

if TYPE_CHECKING:
    from cryptography import x509

STEP_TITLES: dict[int, str] = {
    0: "The document is an evidence receipt (v1 or v2)",
    1: "The file's SHA-256 matches the receipt",
    2: "The evidence leaf matches the receipt",
    3: "The leaf is in the batch tree (batch proof)",
    4: "The ledger entry matches the batch",
    5: "The ledger entry is in the signed ledger log (ledger proof)",
    6: "The checkpoint is signed by a trusted key",
    7: "RFC 3161 time-stamp tokens",
    8: "The depositor's attestation",
}


@dataclass(frozen=True)
class Check:
    step: int
    ok: bool
    detail: str
    checked: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "ok": self.ok, "detail": self.detail}
        if not self.checked:
            out["checked"] = False
        return out


@dataclass(frozen=True)
class TimestampResult:
    authority: str
    gen_time: datetime


@dataclass(frozen=True)
class WitnessResult:
    """One witness of the policy and what the checkpoint says about it (SPEC §9)."""

    name: str
    vkey: str
    fingerprint: str
    valid: bool
    time: datetime | None
    detail: str
    present: bool = True  # False: the checkpoint carries no cosignature by this witness

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vkey": self.vkey,
            "fingerprint": self.fingerprint,
            "valid": self.valid,
            "present": self.present,
            "time": None if self.time is None else format_time(self.time),
            "detail": self.detail,
        }


@dataclass
class VerificationResult:
    """The outcome of verifying one receipt (SPEC §8 result shape via ``to_json``)."""

    valid: bool = False
    step: int | None = None
    reason: str | None = None
    checks: list[Check] = field(default_factory=list)
    statement: str | None = None
    # what the verifier learnt, for reports and certificates
    evidence_id: str | None = None
    sha256: str | None = None
    origin: str | None = None
    sealed: datetime | None = None
    received: datetime | None = None
    key: Verifier | None = None
    timestamps: list[TimestampResult] = field(default_factory=list)
    # SPEC §9: set when a witness policy was given (None: no policy, the v1 result shape)
    witnesses: list[WitnessResult] | None = None
    quorum: str | None = None
    # v2 (SPEC §6.1): what the leaf binds besides the digest
    format: str | None = None
    leaf: Leaf | LeafV2 | None = None
    label: str | None = None
    case_id: str | None = None
    phase: int | None = None
    phase_name: str | None = None
    cosigns: str | None = None
    depositor: attestation.Depositor | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "valid": self.valid,
            "step": self.step,
            "reason": self.reason,
            "checks": [c.to_json() for c in self.checks],
            "statement": self.statement,
            "depositor": self.depositor.to_json() if self.depositor is not None else None,
        }
        if self.witnesses is not None:
            out["witnesses"] = [w.to_json() for w in self.witnesses]
            out["quorum"] = self.quorum
        return out

    @property
    def cosigned(self) -> list[WitnessResult]:
        """The witnesses with a valid cosignature, earliest first."""
        valid = [w for w in self.witnesses or [] if w.valid and w.time is not None]
        return sorted(valid, key=lambda w: (w.time, w.name))


def verify_receipt(
    document: Any,
    *,
    sha256: bytes | None = None,
    trusted_keys: Sequence[Verifier] = (),
    tsa_roots: Sequence[x509.Certificate] = (),
    policy: Policy | None = None,
    depositor_cas: Sequence[x509.Certificate] = (),
    file_digests: Mapping[str, bytes] | None = None,
) -> VerificationResult:
    """Verify a parsed receipt document (any JSON value) and return the result; never raises for bad input.

    ``file_digests`` (v2, step 1): further digests the caller computed from the file itself, by SPEC §2.1 algorithm
    name (e.g. ``{"sm3": ...}``, see ``wanted_digests``); each one the receipt's ``evidence.digests`` also names
    must equal it. Digests the receipt names but the caller did not compute are reported as not checked.

    ``sha256`` is the digest of the file in hand (step 1 is not checked without it). Only ``trusted_keys`` (and the
    ``log`` lines of ``policy``) can make step 6 pass: the receipt's own ``keys`` field is never trusted. With a
    witness ``policy`` (SPEC §9) step 6 also needs its quorum of valid cosignatures, and an invalid cosignature by
    a listed witness fails it. Tokens are checked against ``tsa_roots``; with none given they are reported as
    not checked. An X.509 depositor attestation's certificate path (v2, step 8) is validated against
    ``depositor_cas``; with none given it is reported as not checked.
    """
    result = VerificationResult()
    if policy is not None:
        trusted_keys = [*trusted_keys, *(k for k in policy.log_keys if k not in trusted_keys)]
    try:
        _run_steps(document, sha256, trusted_keys, tsa_roots, result, policy, file_digests)
        _check_attestation(document, depositor_cas, result)
    except VerificationError as exc:
        result.valid = False
        result.step = exc.step
        result.reason = exc.reason
        result.checks.append(Check(exc.step, False, exc.reason))
        result.statement = None
        return result
    result.valid = True
    result.statement = _statement(result, file_checked=sha256 is not None)
    return result


def wanted_digests(document: Any) -> frozenset[str]:
    """The SPEC §2.1 digest algorithms a v2 receipt names in ``evidence.digests`` that this verifier implements
    (what a caller holding the file should compute for step 1): today ``sm3``. Never raises."""
    evidence = document.get("evidence") if isinstance(document, dict) else None
    digests = evidence.get("digests") if isinstance(evidence, dict) else None
    if not isinstance(digests, dict):
        return frozenset()
    return frozenset(name for name in digests if name in IMPLEMENTED_DIGESTS)


# The further digests (SPEC §2.1 registry) this verifier can compute from a file.
IMPLEMENTED_DIGESTS = frozenset({"sm3"})


def _further_digests(document: dict[str, Any], fmt: str, file_digests: Mapping[str, bytes] | None) -> str:
    """Step 1, v2: compare ``evidence.digests`` with the digests computed from the file; return the detail to
    append. :raise DigestMismatch: one differs, or ``evidence.digests`` is not an object of strings."""
    if fmt != FORMAT_V2:
        return ""
    evidence = document.get("evidence")
    claimed = evidence.get("digests", {}) if isinstance(evidence, dict) else {}
    if not isinstance(claimed, dict) or not all(isinstance(v, str) for v in claimed.values()):
        raise DigestMismatch("the receipt field 'evidence.digests' must be an object of hex strings")
    if not claimed:
        return ""
    checked: list[str] = []
    unchecked: list[str] = []
    for name in sorted(claimed):
        value = claimed[name]
        computed = None if file_digests is None else file_digests.get(name)
        if computed is None:
            unchecked.append(name)
            continue
        if not hmac.compare_digest(computed.hex().encode(), value.encode("utf-8", "replace")):
            raise DigestMismatch(
                f"the file's {name.upper()} is {computed.hex()}; the receipt's evidence.digests.{name} is {value}"
            )
        checked.append(f"its {name.upper()} {computed.hex()} equals evidence.digests.{name}")
    parts = list(checked)
    if unchecked:
        why = "only a SHA-256 was given" if file_digests is None else "not computed by this verifier"
        parts.append(f"not checked ({why}): " + ", ".join(f"evidence.digests.{n}" for n in unchecked))
    return "; " + "; ".join(parts)


def _run_steps(
    document: Any,
    sha256: bytes | None,
    trusted_keys: Sequence[Verifier],
    tsa_roots: Sequence[x509.Certificate],
    result: VerificationResult,
    policy: Policy | None = None,
    file_digests: Mapping[str, bytes] | None = None,
) -> None:
    ok = result.checks.append

    # Step 0: the document is a JSON object with the right format.
    if not isinstance(document, dict):
        raise MalformedReceipt("the document is not a JSON object, so it is not an evidence receipt")
    f = Fields(document)
    fmt = f.string("format", MalformedReceipt)
    if fmt not in FORMATS:
        raise MalformedReceipt(f"the receipt format is {fmt!r}; this verifier reads {FORMAT!r} and {FORMAT_V2!r}")
    result.format = fmt
    ok(Check(0, True, f"the document is an {fmt} receipt"))

    # Step 1: the file's digest equals evidence.sha256.
    claimed_hex = f.string("evidence.sha256", DigestMismatch if sha256 is not None else LeafMismatch)
    result.sha256 = claimed_hex
    if sha256 is not None:
        if not hmac.compare_digest(sha256.hex().encode(), claimed_hex.encode("utf-8", "replace")):
            raise DigestMismatch(f"the file's SHA-256 is {sha256.hex()}; the receipt is for {claimed_hex}")
        detail = f"the file's SHA-256 is {sha256.hex()}, the digest the receipt is for"
        ok(Check(1, True, detail + _further_digests(document, fmt, file_digests)))
    else:
        ok(
            Check(
                1,
                True,
                f"not checked: no file or digest was given; the receipt is for SHA-256 {claimed_hex}",
                checked=False,
            )
        )

    # Step 2: the leaf parses and agrees with evidence.{id, sha256, received_at}.
    leaf_bytes = f.base64("evidence.leaf", LeafMismatch)
    evidence_id = f.string("evidence.id", LeafMismatch)
    received_at = f.string("evidence.received_at", LeafMismatch)
    leaf = _parse_leaf(leaf_bytes, fmt)
    if leaf.id != evidence_id:
        raise LeafMismatch(f"the leaf is for evidence id {leaf.id!r}; the receipt says {evidence_id!r}")
    if leaf.sha256.hex() != claimed_hex:
        raise LeafMismatch(f"the leaf is for SHA-256 {leaf.sha256.hex()}; the receipt says {claimed_hex}")
    if format_time(leaf.received) != received_at:
        raise LeafMismatch(f"the leaf says received {format_time(leaf.received)}; the receipt says {received_at!r}")
    result.evidence_id = leaf.id
    result.received = leaf.received
    result.leaf = leaf
    if isinstance(leaf, LeafV2):
        _check_v2_fields(document["evidence"], leaf, result)
    leaf_hash = merkle.leaf_hash(leaf_bytes)
    ok(Check(2, True, f"leaf of evidence {leaf.id}, received {received_at}, leaf hash {leaf_hash.hex()}"))

    # Step 3: the leaf hash with batch.proof at (index, size) gives batch.root.
    index = f.integer("batch.index", BatchProofInvalid)
    size = f.integer("batch.size", BatchProofInvalid)
    batch_root = f.base64("batch.root", BatchProofInvalid, length=32)
    batch_proof = f.hash_list("batch.proof", BatchProofInvalid)
    try:
        merkle.verify_inclusion(leaf_hash, index, size, batch_proof, batch_root)
    except ProofError as exc:
        raise BatchProofInvalid(f"the batch proof does not lead to the batch root: {exc.reason}") from None
    ok(
        Check(
            3,
            True,
            f"leaf {index} of a batch of {size}: {len(batch_proof)} proof hashes lead to batch root {batch_root.hex()}",
        )
    )

    # Step 4: the ledger entry parses and agrees with the batch; sealed >= received.
    seq = f.integer("batch.seq", EntryMismatch)
    entry_bytes = f.base64("ledger.entry", EntryMismatch)
    try:
        entry = LedgerEntry.from_bytes(entry_bytes)
    except FormatError as exc:
        raise EntryMismatch(f"the ledger entry is not a valid v1 entry: {exc.reason}") from None
    if entry.seq != seq:
        raise EntryMismatch(f"the ledger entry is number {entry.seq}; the receipt says batch {seq}")
    if entry.size != size:
        raise EntryMismatch(f"the ledger entry records a batch of {entry.size} leaves; the receipt says {size}")
    if not hmac.compare_digest(entry.root, batch_root):
        raise EntryMismatch(
            f"the ledger entry records batch root {entry.root.hex()}; the receipt's batch root is {batch_root.hex()}"
        )
    if entry.sealed < leaf.received:
        raise EntryMismatch(
            f"the batch is sealed at {format_time(entry.sealed)}, before the evidence was received "
            f"({format_time(leaf.received)})"
        )
    result.sealed = entry.sealed
    ok(
        Check(
            4,
            True,
            f"ledger entry {entry.seq} records this batch (size {entry.size}), sealed {format_time(entry.sealed)}",
        )
    )

    # Step 5: the entry's leaf hash with ledger.proof at (seq, checkpoint size) gives the checkpoint root.
    note_text = f.string("ledger.checkpoint", LedgerProofInvalid)
    ledger_proof = f.hash_list("ledger.proof", LedgerProofInvalid)
    note_bytes = note_text.encode("utf-8")
    checkpoint = _checkpoint_of(note_bytes)
    result.origin = checkpoint.origin
    try:
        merkle.verify_inclusion(merkle.leaf_hash(entry_bytes), seq, checkpoint.size, ledger_proof, checkpoint.root)
    except ProofError as exc:
        raise LedgerProofInvalid(
            f"the ledger proof does not lead to the checkpoint root of {checkpoint.origin} at size "
            f"{checkpoint.size}: {exc.reason}"
        ) from None
    ok(
        Check(
            5,
            True,
            f"entry {seq} is in the ledger log of {checkpoint.origin} at size {checkpoint.size}, root "
            f"{checkpoint.root.hex()}",
        )
    )

    # Step 6: the checkpoint is signed by a trusted key whose name is the origin.
    candidates = [k for k in trusted_keys if k.name == checkpoint.origin]
    if not candidates:
        names = ", ".join(sorted({k.name for k in trusted_keys})) or "none"
        raise CheckpointSignatureInvalid(
            f"no trusted key is named after the checkpoint origin {checkpoint.origin!r} (trusted key names: {names})"
        )
    try:
        opened = open_note(note_bytes, candidates)
    except NoteError as exc:
        raise CheckpointSignatureInvalid(f"the checkpoint signature does not verify: {exc.reason}") from None
    try:  # the lines after the third (extension lines) are read here, not in step 5
        Checkpoint.from_bytes(opened.text)
    except FormatError as exc:
        raise CheckpointSignatureInvalid(f"the signed checkpoint is not a valid checkpoint: {exc.reason}") from None
    key = opened.verified[0]
    result.key = key
    ok(Check(6, True, "; ".join(_signed_by(k) for k in opened.verified)))
    if policy is not None:
        _check_witnesses(note_bytes, policy, result)

    # Step 7: RFC 3161 tokens over SHA-256(entry bytes).
    _check_timestamps(f, entry_bytes, tsa_roots, result)


def _signed_by(key: Verifier) -> str:
    if key.algorithm == "sm2":
        return (
            f"signed by trusted SM2 key {key.vkey} (SM2 with SM3; fingerprint {key.fingerprint}; "
            f"SM3 fingerprint {key.fingerprint_sm3})"
        )
    return f"signed by trusted key {key.vkey} (fingerprint {key.fingerprint})"


def _check_witnesses(note: bytes, policy: Policy, result: VerificationResult) -> None:
    """SPEC §9 step 6 with a witness policy: every listed witness's cosignature must verify if present, and the
    valid ones must meet the quorum. Cosignatures by witnesses not in the policy are ignored."""
    try:
        checks = check_cosignatures(note, policy.witness_keys)
    except NoteError as exc:
        raise CheckpointSignatureInvalid(f"the checkpoint's signature lines cannot be read: {exc.reason}") from None
    result.quorum = policy.describe_quorum()
    result.witnesses = []
    for entry, check in zip(policy.witnesses, checks, strict=True):
        when = None if check.timestamp is None else datetime.fromtimestamp(check.timestamp, UTC)
        if check.valid and when is not None:
            detail = f"cosigned at {format_time(when)}"
        else:
            detail = check.reason or "no cosignature"
        result.witnesses.append(
            WitnessResult(
                entry.name, entry.key.vkey, entry.key.fingerprint, check.valid, when, detail, present=check.present
            )
        )
    bad = [w for w, c in zip(result.witnesses, checks, strict=True) if c.present and not c.valid]
    if bad:
        raise CheckpointSignatureInvalid(
            "a listed witness's cosignature does not verify: "
            + "; ".join(f"{w.name} ({w.vkey.rsplit('+', 1)[0]}): {w.detail}" for w in bad)
        )
    cosigned = result.cosigned
    if not policy.satisfied(w.name for w in cosigned):
        have = ", ".join(w.name for w in cosigned) or "none"
        raise CheckpointSignatureInvalid(
            f"the checkpoint is not cosigned by the witness quorum: it needs {result.quorum}; valid cosignatures "
            f"by: {have}"
        )
    if cosigned:
        result.checks.append(
            Check(
                6,
                True,
                f"cosigned by {len(cosigned)} witness{'es' if len(cosigned) != 1 else ''} of the policy ("
                + ", ".join(f"{w.name} at {format_time(w.time)}" for w in cosigned if w.time is not None)
                + f"); quorum {result.quorum} met",
            )
        )
    else:
        result.checks.append(Check(6, True, f"the policy's quorum is {result.quorum}: nothing more to check"))


def _checkpoint_of(note: bytes) -> Checkpoint:
    """Origin, size and root from the first three lines of the checkpoint (SPEC §6 step 5 reads nothing more; the
    note's structure and signatures are step 6)."""
    lines = note.split(b"\n", 3)
    if len(lines) < 4:
        raise LedgerProofInvalid(
            "the checkpoint is not a valid checkpoint: it needs three lines (origin, size, root hash), "
            f"each ending in a newline; found {len(lines) - 1}"
        )
    try:
        return Checkpoint.from_bytes(b"\n".join(lines[:3]) + b"\n")
    except FormatError as exc:
        raise LedgerProofInvalid(f"the checkpoint is not a valid checkpoint: {exc.reason}") from None


def _parse_leaf(leaf_bytes: bytes, fmt: str) -> Leaf | LeafV2:
    """Step 2: the leaf of the receipt's format (SPEC §2 for v1, §2.1 for v2); an unknown version is named."""
    version = leaf_version(leaf_bytes)
    want = "v1" if fmt == FORMAT else "v2"
    if version is not None and version not in ("v1", "v2"):
        raise LeafMismatch(f"the evidence leaf is version {version}; this verifier reads v1 and v2")
    if version is not None and version != want:
        raise LeafMismatch(f"an {fmt} receipt carries a {want} leaf; this one is a {version} leaf")
    try:
        return Leaf.from_bytes(leaf_bytes) if want == "v1" else LeafV2.from_bytes(leaf_bytes)
    except FormatError as exc:
        raise LeafMismatch(f"the evidence leaf is not a valid {want} leaf: {exc.reason}") from None


def _check_v2_fields(evidence: dict[str, Any], leaf: LeafV2, result: VerificationResult) -> None:
    """Steps 2a-2e (SPEC §6): the receipt's v2 fields say exactly what the leaf binds."""
    # 2a: digests
    digests = evidence.get("digests", {})
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise LeafMismatch("the receipt field 'evidence.digests' must be an object of hex strings")
    leaf_digests = {name: value.hex() for name, value in leaf.digests}
    if digests != leaf_digests:
        raise LeafMismatch(
            f"the receipt's evidence.digests ({_listing(digests)}) do not match the leaf's digest lines "
            f"({_listing(leaf_digests)})"
        )
    # 2b: label
    label = evidence.get("label")
    if leaf.label_sha256 is None:
        if "label" in evidence:
            raise LeafMismatch(
                "the receipt has a label, but the leaf binds none: the label is not covered by the ledger"
            )
    else:
        if not isinstance(label, str):
            raise LeafMismatch(
                "the leaf binds a label, but the receipt field 'evidence.label' is "
                + ("missing" if "label" not in evidence else f"{json_type(label)}, not a string")
            )
        if _text_sha256(label, "evidence.label") != leaf.label_sha256:
            raise LeafMismatch(f"the label {_quote(label)} is not the label the leaf binds (its SHA-256 differs)")
        result.label = label
    # 2c: case and phase
    case = evidence.get("case")
    if leaf.case is None:
        if "case" in evidence:
            raise LeafMismatch("the receipt names a case, but the leaf binds none")
    else:
        if not isinstance(case, dict):
            raise LeafMismatch(
                "the leaf binds a case, but the receipt field 'evidence.case' is missing or not an object"
            )
        case_id, phase, name = case.get("id"), case.get("phase"), case.get("phase_name")
        if not isinstance(case_id, str) or isinstance(phase, bool) or not isinstance(phase, int):
            raise LeafMismatch("the receipt field 'evidence.case' needs a string 'id' and an integer 'phase'")
        if not isinstance(name, str):
            raise LeafMismatch("the receipt field 'evidence.case.phase_name' must be a string")
        if case_id != leaf.case.id:
            raise LeafMismatch(f"the leaf is for case {leaf.case.id!r}; the receipt says {case_id!r}")
        if phase != leaf.case.phase:
            raise LeafMismatch(f"the leaf is phase {leaf.case.phase} of its case; the receipt says phase {phase}")
        if _text_sha256(name, "evidence.case.phase_name") != leaf.case.phase_name_sha256:
            raise LeafMismatch(f"the phase name {_quote(name)} is not the one the leaf binds (its SHA-256 differs)")
        result.case_id, result.phase, result.phase_name = case_id, phase, name
    # 2d: countersignature
    cosigns = evidence.get("cosigns")
    if cosigns != leaf.cosigns or ("cosigns" in evidence) != (leaf.cosigns is not None):
        if leaf.cosigns is None:
            raise LeafMismatch("the receipt says this deposit countersigns another, but the leaf does not")
        raise LeafMismatch(
            f"the leaf countersigns evidence {leaf.cosigns!r}; the receipt field 'evidence.cosigns' is {cosigns!r}"
        )
    result.cosigns = leaf.cosigns
    # 2e: attestation digest
    if leaf.attestation_sha256 is None:
        if "attestation" in evidence:
            raise LeafMismatch("the receipt carries an attestation, but the leaf binds none")
        return
    text = evidence.get("attestation")
    if not isinstance(text, str):
        raise LeafMismatch("the leaf binds an attestation, but the receipt field 'evidence.attestation' is missing")
    raw = decode_b64(text, "evidence.attestation", LeafMismatch)
    if not hmac.compare_digest(hashlib.sha256(raw).digest(), leaf.attestation_sha256):
        raise LeafMismatch(
            f"the attestation in the receipt is not the one the leaf binds: its SHA-256 is "
            f"{hashlib.sha256(raw).hexdigest()}, the leaf says {leaf.attestation_sha256.hex()}"
        )


def _quote(text: str) -> str:
    """A label or phase name in a reason or statement: as a JSON string (the browser verifier says the same)."""
    return json.dumps(text, ensure_ascii=False)


def _listing(digests: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value}" for name, value in sorted(digests.items())) or "none"


def _text_sha256(text: str, where: str) -> bytes:
    try:
        return text_sha256(text)
    except FormatError as exc:
        raise LeafMismatch(f"the receipt field {where!r} {exc.reason}") from None


def _check_attestation(document: Any, depositor_cas: Sequence[x509.Certificate], result: VerificationResult) -> None:
    """Step 8 (SPEC §6, receipt v2): the depositor's attestation. A v1 receipt has no step 8."""
    leaf = result.leaf
    if not isinstance(leaf, LeafV2):
        return
    if leaf.attestation_sha256 is None:
        result.checks.append(
            Check(
                8, True, "unattested: no depositor signed this deposit (the leaf binds no attestation)", checked=False
            )
        )
        return
    raw = base64.b64decode(document["evidence"]["attestation"])  # checked in step 2e
    try:
        depositor = attestation.check_attestation(raw, leaf.claim_lines(), leaf.received, depositor_cas)
    except attestation.AttestationError as exc:
        raise AttestationInvalid(exc.reason) from None
    result.depositor = depositor
    result.checks.append(
        Check(
            8,
            True,
            f"attested by {depositor.identity} ({depositor.kind}, fingerprint {depositor.fingerprint}), signed "
            f"{format_time(depositor.signed)}: the statement matches the leaf and the signature verifies",
        )
    )
    if depositor.kind == "x509":
        if depositor.ca_verified:
            result.checks.append(Check(8, True, "the depositor certificate path validates to a trusted CA"))
        else:
            result.checks.append(
                Check(
                    8,
                    True,
                    "not checked: no depositor CA certificate is trusted (pass --depositor-ca to check the "
                    "certificate path)",
                    checked=False,
                )
            )


def _check_timestamps(
    f: Fields, entry_bytes: bytes, tsa_roots: Sequence[x509.Certificate], result: VerificationResult
) -> None:
    tokens = f.optional_list("timestamps", TimestampInvalid)
    if not tokens:
        result.checks.append(Check(7, True, "no time-stamp tokens in the receipt", checked=False))
        return
    for i, item in enumerate(tokens):
        where = f"timestamps[{i}]"
        if not isinstance(item, dict):
            raise TimestampInvalid(f"the receipt field {where!r} must be an object")
        kind = item.get("type")
        if kind != "rfc3161":
            result.checks.append(Check(7, True, f"{where}: not checked: unknown token type {kind!r}", checked=False))
            continue
        token_text = item.get("token")
        if not isinstance(token_text, str):
            raise TimestampInvalid(f"the receipt field {where}.token must be a base64 string")
        token = decode_b64(token_text, f"{where}.token", TimestampInvalid)
        if not tsa_roots:
            result.checks.append(
                Check(
                    7,
                    True,
                    f"{where}: not checked: no TSA certificate is trusted (pass --tsa-ca to check it)",
                    checked=False,
                )
            )
            continue
        try:
            from service.core import timestamps
        except ImportError:  # the verifier runs with only `cryptography`; tokens need rfc3161-client
            result.checks.append(
                Check(7, True, f"{where}: not checked: rfc3161-client is not installed", checked=False)
            )
            continue
        try:
            info = timestamps.verify_token(token, entry_bytes, tsa_roots)
        except TimestampInvalid as exc:
            raise TimestampInvalid(f"{where}: {exc.reason}") from None
        result.timestamps.append(TimestampResult(info.authority, info.gen_time))
        result.checks.append(
            Check(
                7,
                True,
                f"{where}: the ledger entry existed no later than {format_time(info.gen_time)} per {info.authority}",
            )
        )


def _statement(result: VerificationResult, *, file_checked: bool) -> str:
    assert result.sealed is not None and result.origin is not None
    subject = f"the file given (SHA-256 {result.sha256})" if file_checked else f"this SHA-256 ({result.sha256})"
    text = (
        f"{subject[0].upper()}{subject[1:]} was sealed in the ledger of {result.origin} no later than "
        f"{format_time(result.sealed)}"
    )
    for ts in result.timestamps:
        text += f", and no later than {format_time(ts.gen_time)} per {ts.authority}"
    cosigned = result.cosigned
    if cosigned and cosigned[0].time is not None:
        text += f"; cosigned by {', '.join(w.name for w in cosigned)} no later than {format_time(cosigned[0].time)}"
    text += "."
    if result.format != FORMAT_V2:
        return text
    if result.label is not None:
        text += f" Label: {_quote(result.label)}."
    if result.case_id is not None and result.phase_name is not None:
        text += f" Case {result.case_id}, phase {result.phase} ({_quote(result.phase_name)})."
    if result.cosigns is not None:
        text += f" Countersigns evidence {result.cosigns}."
    text += f" Depositor: {result.depositor.describe()}." if result.depositor is not None else " Unattested."
    return text


def step_title(step: int) -> str:
    return STEP_TITLES.get(step, f"step {step}")


# --- SPEC §6.2: the case rule over a set of verified receipts ------------------------------------------------


@dataclass(frozen=True)
class CaseCheck:
    """``check_case``'s answer for one case: valid, or the first reason it is not (SPEC §6.2)."""

    case_id: str
    valid: bool
    reason: str | None
    phases: int

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case_id, "valid": self.valid, "reason": self.reason, "phases": self.phases}


def check_case(case_id: str, results: Sequence[VerificationResult], *, expected_phases: int | None = None) -> CaseCheck:
    """SPEC §6.2 case rule: the receipts (each verified alone first, ``results``) whose leaves name ``case_id``
    and countersign nothing have phases exactly 1..N, each once, with strictly increasing ``received`` times.
    Receipts of other cases are ignored. ``expected_phases``: N when a description of the case says how many phases
    it has (so a missing last phase is found too)."""
    own = [r for r in results if r.case_id == case_id and r.cosigns is None]
    if not own:
        return CaseCheck(case_id, False, f"no receipt names case {case_id!r}", 0)
    invalid = [r.evidence_id or "?" for r in own if not r.valid]
    if invalid:
        return CaseCheck(case_id, False, "a receipt of the case does not verify: " + ", ".join(invalid), len(own))
    by_phase: dict[int, list[VerificationResult]] = {}
    for r in own:
        by_phase.setdefault(r.phase or 0, []).append(r)
    for phase, items in sorted(by_phase.items()):
        if len(items) > 1:
            ids = ", ".join(r.evidence_id or "?" for r in items)
            return CaseCheck(case_id, False, f"phase {phase} appears {len(items)} times ({ids})", len(own))
    n = max(len(by_phase), max(by_phase), expected_phases or 0)
    missing = [p for p in range(1, n + 1) if p not in by_phase]
    if missing:
        return CaseCheck(
            case_id,
            False,
            f"phase {', '.join(map(str, missing))} of 1..{n} is missing: the case is incomplete",
            len(own),
        )
    extra = sorted(p for p in by_phase if p < 1 or p > n)
    if extra:
        return CaseCheck(case_id, False, f"phase {extra[0]} is outside 1..{n}", len(own))
    ordered = [by_phase[p][0] for p in range(1, n + 1)]
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.received is None or b.received is None or a.received >= b.received:
            return CaseCheck(
                case_id,
                False,
                f"phase {b.phase} was received at {format_time(b.received) if b.received else '?'}, not after "
                f"phase {a.phase} ({format_time(a.received) if a.received else '?'}): the phases are not in "
                "strictly increasing received time",
                n,
            )
    return CaseCheck(case_id, True, None, n)
