"""The C2SP tlog-witness ``add-checkpoint`` request body (SPEC §9, notes §4): building and strict parsing.

Owns: ``old <size>\\n``, 0..63 base64 consistency-proof lines, a blank line, then the signed checkpoint note; and
the ``text/x.tlog.size`` body of a 409 answer.
Must not import: anything but the standard library and ``service.core.errors``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from service.core.errors import FormatError

__all__ = ["MAX_PROOF_LINES", "SIZE_MEDIA_TYPE", "AddCheckpoint", "parse_size_body", "size_body"]

MAX_PROOF_LINES = 63
SIZE_MEDIA_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(rb"(0|[1-9][0-9]{0,19})\Z")
_MAX_SIZE = 2**64 - 1


def _decimal(raw: bytes, what: str) -> int:
    if _DECIMAL.match(raw) is None or int(raw) > _MAX_SIZE:
        raise FormatError(f"{what} {raw[:40]!r} is not a decimal number without leading zeros below 2^64")
    return int(raw)


@dataclass(frozen=True)
class AddCheckpoint:
    """One ``POST <prefix>/add-checkpoint`` request: old size, consistency proof, signed checkpoint note."""

    old: int
    proof: tuple[bytes, ...]
    note: bytes

    def to_bytes(self) -> bytes:
        lines = [b"old " + str(self.old).encode("ascii")]
        lines += [base64.b64encode(h) for h in self.proof]
        return b"\n".join(lines) + b"\n\n" + self.note

    @classmethod
    def build(cls, old: int, proof: Sequence[bytes], note: bytes) -> AddCheckpoint:
        return cls(old, tuple(proof), note)

    @classmethod
    def from_bytes(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body strictly.

        :raise FormatError: no ``old`` line, a bad number, a proof line that is not base64 of 32 bytes, more than
            63 proof lines, or no blank line before the checkpoint.
        """
        head, sep, note = body.partition(b"\n\n")
        if not sep:
            raise FormatError("the request has no blank line between the proof and the checkpoint")
        lines = head.split(b"\n")
        first = lines[0]
        if not first.startswith(b"old "):
            raise FormatError("the request must start with 'old <size>'")
        old = _decimal(first[4:], "old size")
        proof_lines = lines[1:]
        if len(proof_lines) > MAX_PROOF_LINES:
            raise FormatError(f"{len(proof_lines)} proof lines, at most {MAX_PROOF_LINES} allowed")
        proof: list[bytes] = []
        for number, line in enumerate(proof_lines, start=1):
            try:
                h = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                raise FormatError(f"proof line {number} is not standard base64") from None
            if len(h) != 32:
                raise FormatError(f"proof line {number} is {len(h)} bytes, expected a 32-byte SHA-256 hash")
            proof.append(h)
        if not note:
            raise FormatError("the request has no checkpoint after the blank line")
        return cls(old, tuple(proof), note)


def size_body(size: int) -> bytes:
    """The body of a 409 answer: the witness's size in decimal and a newline."""
    return str(size).encode("ascii") + b"\n"


def parse_size_body(body: bytes) -> int:
    """Parse a ``text/x.tlog.size`` body. :raise FormatError: anything but ``<decimal>\\n``."""
    if not body.endswith(b"\n"):
        raise FormatError("a text/x.tlog.size body must end with a newline")
    return _decimal(body[:-1], "size")
