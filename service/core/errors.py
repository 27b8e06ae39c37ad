"""Every exception Evidence Ledger raises on purpose, in one hierarchy.

Owns: the error classes and their wording conventions (say what was expected and what was found).
Must not import: anything outside the standard library. HTTP status codes live in ``service.api.errors``,
exit codes in ``service.cli``; nothing here knows about either.
"""

from __future__ import annotations


class EvidenceError(Exception):
    """Base of every error raised on purpose by the service and the verifier."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- malformed bytes and strings (SPEC §2-§4) -------------------------------------------------


class FormatError(EvidenceError, ValueError):
    """Bytes or text that do not follow the exact format of SPEC §2-§4."""


class NoteError(FormatError):
    """A C2SP signed note or key string problem."""


class MalformedNote(NoteError):
    """The note's bytes are not a well-formed signed note."""


class MalformedKey(NoteError):
    """A verifier or signer key string is not well formed."""


class UnknownKey(NoteError):
    """No signature on the note comes from a trusted key."""


class BadNoteSignature(NoteError):
    """A signature from a trusted key does not verify."""


class MalformedPolicy(FormatError):
    """A C2SP tlog-policy file (witnesses, groups, quorum) that does not follow the format (SPEC §9)."""


# --- Merkle proofs (SPEC §1) -------------------------------------------------------------------


class ProofError(EvidenceError):
    """A Merkle proof that does not verify, or an index/size it cannot be about."""


# --- service errors (translated to problem details at the HTTP edge) ---------------------------


class ServiceError(EvidenceError):
    """A request the service refuses."""


class InvalidInput(ServiceError):
    """The request is malformed: bad JSON, bad hex, bad parameter."""


class NotFound(ServiceError):
    """No such resource for this caller."""


class Unauthorized(ServiceError):
    """Missing, malformed or unknown API key."""


class Unprocessable(InvalidInput):
    """Well-formed input the service refuses on its content (a skipped phase, an attestation that does not verify
    or whose signer is not trusted): HTTP 422."""


class Conflict(ServiceError):
    """The request conflicts with what is stored (a phase of a case deposited twice): HTTP 409."""


class InvalidItem(InvalidInput):
    """One item of a batch request is wrong (SPEC §7 batch: all or nothing); ``index`` is its position."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


class PayloadTooLarge(ServiceError):
    """The upload is larger than the configured limit."""


class IdempotencyConflict(ServiceError):
    """The same Idempotency-Key was used with a different request body."""


class RateLimited(ServiceError):
    """The caller sent too many requests; retry after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Pushback(ServiceError):
    """The service is temporarily unable to accept work; retry after ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class TimestampError(EvidenceError):
    """Getting an RFC 3161 token failed: TSA unreachable, HTTP error, rejected or mismatched reply.

    Transient from the caller's point of view: the worker retries. (A token that fails the offline
    check is ``TimestampInvalid``, SPEC §6 step 7.)
    """


class WitnessUnavailable(EvidenceError):
    """A witness could not be reached or did not answer in time (the service retries later)."""


class ConfigError(EvidenceError):
    """Settings from the environment are missing or invalid (all problems reported at once)."""


class SchemaDrift(EvidenceError):
    """The database schema differs from the tables the code expects (``alembic check`` found changes)."""


# --- documents: certificate and report PDFs (service.court.certificate, service.court.fonts) ---------------


class FontMissing(EvidenceError):
    """No usable CJK font on this machine; the message names the Debian package to install."""


class NotACertificate(FormatError):
    """The bytes are not a PDF, or the PDF carries no attached ``receipt.json``."""


# --- receipt verification (SPEC §6: one class per step) ---------------------------------------


class VerificationError(EvidenceError):
    """A receipt failed verification at ``step`` (SPEC §6 numbering) for ``reason``."""

    step: int = -1

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class UnreadableReceipt(EvidenceError):
    """The bytes are not strict UTF-8 JSON (duplicate keys, NaN, bad encoding): not a receipt at all."""


class MalformedReceipt(VerificationError):
    step = 0


class DigestMismatch(VerificationError):
    step = 1


class LeafMismatch(VerificationError):
    step = 2


class BatchProofInvalid(VerificationError):
    step = 3


class EntryMismatch(VerificationError):
    step = 4


class LedgerProofInvalid(VerificationError):
    step = 5


class CheckpointSignatureInvalid(VerificationError):
    step = 6


class TimestampInvalid(VerificationError):
    step = 7


class AttestationInvalid(VerificationError):
    """SPEC §6 step 8 (receipt v2): the depositor attestation does not parse, match, verify or validate."""

    step = 8


# --- watching a log from outside (service.trust.monitor) ---------------------------------------------


class LogInconsistency(EvidenceError):
    """A log contradicts itself or what a monitor saw before: it shrank, forked (another root at a size already
    seen), served a bad consistency proof, entries that do not hash to its signed root, or a bad signature."""
