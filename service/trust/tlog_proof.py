"""C2SP tlog-proof (``c2sp.org/tlog-proof@v1``): the ledger part of a receipt as a standard transparency proof.

Owns: the text format (https://c2sp.org/tlog-proof), exactly::

    c2sp.org/tlog-proof@v1
    extra <base64 of opaque extra data>          (optional line; ours: the ledger entry bytes, SPEC §3)
    index <entry index, decimal, no leading zeros>
    <base64 proof hash>                          (zero or more lines: RFC 6962 audit path, leaf sibling first)

    <the checkpoint, verbatim: a C2SP signed note>

and building it from a receipt (``from_receipt``) or from the database (``proof_for_entry``), and checking one
(``verify``). The record is ledger entry ``index`` of the ledger log; its record hash is the RFC 6962 leaf hash of
the entry bytes. The entry is carried as ``extra`` so the proof is self-contained; like every extra data it is
not trusted as such: ``verify`` hashes it and proves its inclusion.
Must not import (at module level): SQLAlchemy, Flask, requests. ``proof_for_entry`` imports ``service.storage.ledger``
when called; the rest is usable by offline verifiers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.core import merkle
from service.core.errors import FormatError, InvalidInput, NoteError, NotFound, ProofError
from service.core.formats import Checkpoint
from service.core.note import Verifier, open_note

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["HEADER", "MEDIA_TYPE", "TlogProof", "from_receipt", "proof_for_entry", "verify"]

HEADER = "c2sp.org/tlog-proof@v1"
MEDIA_TYPE = "text/plain; charset=utf-8"
_INDEX = re.compile(r"index (0|[1-9][0-9]*)")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _b64decode(text: str, what: str) -> bytes:
    if not _B64.fullmatch(text) or len(text) % 4:
        raise FormatError(f"tlog-proof: {what} is not standard base64 with padding: {text[:60]!r}")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise FormatError(f"tlog-proof: {what} is not standard base64: {exc}") from None


@dataclass(frozen=True)
class TlogProof:
    """An entry ``index``, its inclusion proof ``hashes`` in the checkpointed tree, the ``checkpoint`` note,
    and optional ``extra`` data (not authenticated by the format)."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        """The exact text of the proof (UTF-8)."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode("ascii") for h in self.hashes)
        return ("\n".join(lines) + "\n\n").encode("utf-8") + self.checkpoint

    @classmethod
    def from_bytes(cls, data: bytes) -> TlogProof:
        """Parse a proof strictly.

        :raise FormatError: wrong first line, bad ``extra``/``index`` line, a proof line that is not a base64
            SHA-256 hash, no blank line before the checkpoint, or no checkpoint.
        """
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("tlog-proof: not UTF-8 text") from None
        head, sep, checkpoint = text.partition("\n\n")
        if not sep:
            raise FormatError("tlog-proof: no empty line before the checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise FormatError(f"tlog-proof: the first line is {lines[0][:60]!r}, expected {HEADER!r}")
        rest = lines[1:]
        extra: bytes | None = None
        if rest and rest[0].startswith("extra "):
            extra = _b64decode(rest[0][len("extra ") :], "the extra data")
            rest = rest[1:]
        if not rest or not _INDEX.fullmatch(rest[0]):
            found = rest[0][:60] if rest else "nothing"
            raise FormatError(f"tlog-proof: expected 'index <n>' (decimal, no leading zeros), found {found!r}")
        index = int(rest[0][len("index ") :])
        hashes = []
        for i, line in enumerate(rest[1:]):
            h = _b64decode(line, f"proof line {i + 1}")
            if len(h) != merkle.HASH_SIZE:
                raise FormatError(f"tlog-proof: proof line {i + 1} is {len(h)} bytes, expected a SHA-256 hash")
            hashes.append(h)
        if not checkpoint:
            raise FormatError("tlog-proof: the checkpoint is missing")
        return cls(index, tuple(hashes), checkpoint.encode("utf-8"), extra)


def from_receipt(document: Any) -> TlogProof:
    """The ledger part of an evidence-receipt/v1 (already parsed JSON) as a tlog-proof; the entry goes in extra.

    Nothing is verified here (run ``verify`` or ``evidence verify``).

    :raise FormatError: the receipt lacks ``batch.seq`` or a well-formed ``ledger`` object.
    """
    try:
        seq = document["batch"]["seq"]
        ledger_part = document["ledger"]
        entry = base64.b64decode(ledger_part["entry"], validate=True)
        proof = [base64.b64decode(h, validate=True) for h in ledger_part["proof"]]
        checkpoint = ledger_part["checkpoint"].encode("utf-8")
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise FormatError(f"the receipt has no well-formed batch.seq and ledger fields: {exc!r}") from None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise FormatError(f"the receipt's batch.seq must be a non-negative integer, found {seq!r}")
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise FormatError("the receipt's ledger.proof holds a hash that is not 32 bytes")
    return TlogProof(seq, tuple(proof), checkpoint, entry)


def verify(proof: TlogProof, trusted_keys: Sequence[Verifier], record: bytes | None = None) -> Checkpoint:
    """Check ``proof``: the record (``record``, else the proof's extra data) is entry ``index`` of the log the
    checkpoint commits to, and the checkpoint is signed by a trusted key named after its origin.

    Returns the checkpoint. :raise ProofError: no record, or the inclusion proof fails.
    :raise NoteError: the checkpoint is malformed or not signed by a trusted key.
    """
    data = record if record is not None else proof.extra
    if data is None:
        raise ProofError("no record to check: the proof has no extra data and none was given")
    split = proof.checkpoint.rfind(b"\n\n")
    if split < 0:
        raise NoteError("the checkpoint is not a signed note")
    try:
        checkpoint = Checkpoint.from_bytes(proof.checkpoint[: split + 1])
    except FormatError as exc:
        raise NoteError(f"the checkpoint does not parse: {exc.reason}") from None
    merkle.verify_inclusion(merkle.leaf_hash(data), proof.index, checkpoint.size, list(proof.hashes), checkpoint.root)
    open_note(proof.checkpoint, [k for k in trusted_keys if k.name == checkpoint.origin])
    return checkpoint


def proof_for_entry(conn: Connection, seq: int, size: int | None = None) -> TlogProof:
    """The tlog-proof of ledger entry ``seq`` in the checkpoint of ``size`` (default ``seq + 1``: the checkpoint
    signed when the entry was sealed, so the proof never changes), built from stored rows.

    :raise InvalidInput: ``size`` is not above ``seq``. :raise NotFound: no such entry or checkpoint.
    """
    from service.storage import ledger

    batch = ledger.get_batch(conn, seq)
    if batch is None:
        raise NotFound(f"no ledger entry {seq} (the ledger has {ledger.ledger_size(conn)} entries)")
    if size is None:
        size = seq + 1
    if size <= seq:
        raise InvalidInput(f"size must be above seq: entry {seq} is not in a log of {size} entries")
    row = ledger.checkpoint_at(conn, size)
    if row is None:
        raise NotFound(f"no checkpoint of size {size} (the ledger has {ledger.ledger_size(conn)} entries)")
    hashes: list[bytes]
    if size == seq + 1:
        hashes = list(batch.ledger_proof)
    else:
        ranges = merkle.inclusion_ranges(seq, size)
        nodes = ledger.get_nodes(conn, merkle.nodes_needed_for_ranges(ranges))
        hashes = [merkle.hash_range(a, b, nodes) for a, b in ranges]
    return TlogProof(seq, tuple(hashes), row.note, batch.entry)
