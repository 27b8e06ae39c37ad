"""C2SP tlog-cosignature ``cosignature/v1`` (signature type 0x04): witness keys, cosigning, checking (SPEC §9).

Owns: witness verifier keys ``<name>+<8 hex>+<base64(0x04 || public key)>``, witness signer keys
``PRIVATE+KEY+<name>+<8 hex>+<base64(0x04 || seed)>`` (the golang.org/x/mod shape with type 0x04), the
cosignature line ``— <name> base64(key ID[4] || timestamp u64 BE[8] || Ed25519 signature[64])`` over
``"cosignature/v1\\ntime <timestamp>\\n" || <checkpoint note text>``, and reading the cosignature lines of a note.
Must not import: anything but the standard library, ``cryptography`` and ``service.core`` modules
(``errors``, ``note``). No exception from ``cryptography`` or ``binascii`` leaves this module.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.core.errors import MalformedKey, MalformedNote
from service.core.note import MAX_SIGNATURES, SeedKey, fingerprint, name_problem, note_text_and_lines

__all__ = [
    "ALG_COSIGNATURE_V1",
    "MAX_TIMESTAMP",
    "CosignatureCheck",
    "SignatureLine",
    "WitnessKey",
    "WitnessSigner",
    "check_cosignatures",
    "cosignature_key_hash",
    "cosigned_message",
    "signature_lines",
]

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = 2**63 - 1  # C2SP: the timestamp MUST be at most 2^63 - 1
_SIG_PREFIX = "\u2014 "
_PUBLIC_KEY_SIZE = 32
_SIGNATURE_SIZE = 64
_COSIGNATURE_SIZE = 4 + 8 + _SIGNATURE_SIZE  # key ID, timestamp, Ed25519 signature
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _b64decode(s: str) -> bytes:
    if not s.isascii():
        raise ValueError("non-ASCII character in base64")
    return base64.b64decode(s.encode("ascii"), validate=True)


def _b64encode(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def cosignature_key_hash(name: str, public_key: bytes) -> int:
    """Big-endian uint32 of ``SHA-256(name || 0x0A || 0x04 || public_key)[:4]`` (the cosignature key ID)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def cosigned_message(checkpoint_text: bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: ``cosignature/v1\\ntime <timestamp>\\n`` then the checkpoint text."""
    if not (0 <= timestamp <= MAX_TIMESTAMP):
        raise ValueError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    return b"cosignature/v1\ntime " + str(timestamp).encode("ascii") + b"\n" + checkpoint_text


@dataclass(frozen=True)
class WitnessKey:
    """A witness's cosignature/v1 verifier key: name, key ID (type 0x04) and 32-byte Ed25519 public key."""

    name: str
    key_hash: int
    public_key: bytes

    def __post_init__(self) -> None:
        problem = name_problem(self.name)
        if problem is not None:
            raise MalformedKey(problem)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _PUBLIC_KEY_SIZE:
            raise MalformedKey(f"Ed25519 public key must be {_PUBLIC_KEY_SIZE} bytes, got {self.public_key!r}")
        expected = cosignature_key_hash(self.name, self.public_key)
        if self.key_hash != expected:
            raise MalformedKey(
                f"witness key hash mismatch for {self.name}: given {self.key_hash:08x}, computed {expected:08x}"
            )

    @classmethod
    def from_vkey(cls, s: str) -> WitnessKey:
        """Parse ``<name>+<8 hex key ID>+<base64(0x04 || public key)>`` (split on the first two '+').

        :raise MalformedKey: wrong shape, bad name or base64, type not 0x04 (a log key of type 0x01 says so),
            wrong key length, or a key ID that does not match the name and key.
        """
        parts = s.strip().split("+", 2)
        if len(parts) != 3:
            raise MalformedKey("malformed witness vkey: expected <name>+<8 hex key ID>+<base64 key>")
        name, hash16, key64 = parts
        problem = name_problem(name)
        if problem is not None:
            raise MalformedKey(f"malformed witness vkey: {problem}")
        if len(hash16) != 8 or not all(c in _HEX_DIGITS for c in hash16):
            raise MalformedKey(f"malformed witness vkey: key ID {hash16!r} is not 8 hex digits")
        try:
            material = _b64decode(key64)
        except (binascii.Error, ValueError):
            raise MalformedKey("malformed witness vkey: key is not standard padded base64") from None
        if len(material) == 0:
            raise MalformedKey("malformed witness vkey: key is empty")
        given = int(hash16, 16)
        computed = int(struct.unpack(">I", hashlib.sha256(name.encode() + b"\n" + material).digest()[:4])[0])
        if given != computed:
            raise MalformedKey(f"witness vkey key ID mismatch for {name}: given {hash16}, computed {computed:08x}")
        if material[0] != ALG_COSIGNATURE_V1:
            hint = " (that is a checkpoint signing key, not a witness key)" if material[0] == 0x01 else ""
            raise MalformedKey(
                f"witness vkey {name}: signature type 0x{material[0]:02x}, expected 0x04 cosignature/v1{hint}"
            )
        if len(material) != 1 + _PUBLIC_KEY_SIZE:
            raise MalformedKey(
                f"witness vkey {name}: Ed25519 key is {len(material) - 1} bytes, expected {_PUBLIC_KEY_SIZE}"
            )
        return cls(name, given, material[1:])

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_hash:08x}+{_b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key)}"

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.key_hash:08x}"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the public key, lowercase hex in groups of four (SPEC §4 fingerprint)."""
        return fingerprint(self.public_key)

    @functools.cached_property
    def _ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def verify(self, checkpoint_text: bytes, timestamp: int, signature: bytes) -> bool:
        """Whether ``signature`` (64 bytes) is this witness's cosignature/v1 of ``checkpoint_text`` at ``timestamp``."""
        if not (0 <= timestamp <= MAX_TIMESTAMP):
            return False
        try:
            self._ed25519.verify(signature, cosigned_message(checkpoint_text, timestamp))
        except (InvalidSignature, ValueError):
            return False
        return True


class WitnessSigner(SeedKey["WitnessKey"]):
    """A witness's Ed25519 cosigning key (type 0x04), written like a note signer's key with type byte 0x04."""

    __slots__ = ()
    ALG = ALG_COSIGNATURE_V1
    _WHAT = "witness skey"
    _HASH_WORD = "key ID"

    @staticmethod
    def _key_hash(name: str, public_key: bytes) -> int:
        return cosignature_key_hash(name, public_key)

    @staticmethod
    def _verifier(name: str, key_hash: int, public_key: bytes) -> WitnessKey:
        return WitnessKey(name, key_hash, public_key)

    def cosign(self, checkpoint_text: bytes, timestamp: int) -> bytes:
        """The cosignature line ``— <name> base64(key ID || u64 timestamp || signature)\\n`` for the text.

        :raise ValueError: ``timestamp`` is 0 (C2SP: a witness's timestamp MUST be non-zero) or above 2^63-1.
        """
        if timestamp <= 0:
            raise ValueError("a cosignature/v1 timestamp must be a positive number of seconds")
        signature = self._private.sign(cosigned_message(checkpoint_text, timestamp))
        raw = struct.pack(">IQ", self.key_hash, timestamp) + signature
        return f"{_SIG_PREFIX}{self.name} {_b64encode(raw)}\n".encode()


@dataclass(frozen=True)
class SignatureLine:
    """One signature line of a note: key name, 4-byte key ID and the bytes after it."""

    name: str
    key_hash: int
    payload: bytes
    line: bytes  # the whole line with its final newline

    @classmethod
    def parse(cls, line: str, number: int) -> SignatureLine:
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNote(
                f"malformed note: signature line {number} does not start with '\u2014 ' (U+2014 EM DASH, space)"
            )
        body = line[len(_SIG_PREFIX) :]
        name, _, b64 = body.partition(" ")
        problem = name_problem(name)
        if problem is not None:
            raise MalformedNote(f"malformed note: signature line {number}: {problem}")
        try:
            raw = _b64decode(b64)
        except (binascii.Error, ValueError):
            raise MalformedNote(
                f"malformed note: signature line {number} ({name}): signature is not standard padded base64"
            ) from None
        if len(raw) < 5:
            raise MalformedNote(
                f"malformed note: signature line {number} ({name}): signature is {len(raw)} bytes, "
                "expected a 4-byte key hash and a signature"
            )
        return cls(name, int(struct.unpack(">I", raw[:4])[0]), raw[4:], (line + "\n").encode("utf-8"))


def signature_lines(note: bytes) -> tuple[bytes, list[SignatureLine]]:
    """Split a signed note into its text and its parsed signature lines (C2SP signed-note rules).

    :raise MalformedNote: the bytes are not a well-formed signed note.
    """
    text, lines = note_text_and_lines(note)
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"malformed note: {len(lines)} signature lines, at most {MAX_SIGNATURES} allowed")
    return text, [SignatureLine.parse(line, n) for n, line in enumerate(lines, start=1)]


@dataclass(frozen=True)
class CosignatureCheck:
    """What a note says about one listed witness: a valid cosignature at ``timestamp``, an invalid one
    (``reason``), or none at all (``present`` False)."""

    witness: WitnessKey
    present: bool
    valid: bool
    timestamp: int | None = None
    reason: str | None = None


def check_cosignatures(note: bytes, witnesses: Sequence[WitnessKey]) -> list[CosignatureCheck]:
    """Check the cosignatures of ``witnesses`` on a signed checkpoint note; one result per witness, in order.

    A line whose (name, key ID) is a listed witness's is checked; lines of other keys (the log's signature,
    unknown witnesses) are ignored, as C2SP requires. A listed witness with several lines is valid only if all
    of them verify; its time is the earliest.
    :raise MalformedNote: the note is not a well-formed signed note.
    """
    text, lines = signature_lines(note)
    results: list[CosignatureCheck] = []
    for witness in witnesses:
        mine = [s for s in lines if s.name == witness.name and s.key_hash == witness.key_hash]
        if not mine:
            results.append(CosignatureCheck(witness, present=False, valid=False, reason="no cosignature"))
            continue
        times: list[int] = []
        problem: str | None = None
        for s in mine:
            if len(s.payload) != _COSIGNATURE_SIZE - 4:
                problem = f"cosignature is {len(s.payload) + 4} bytes, expected {_COSIGNATURE_SIZE}"
                break
            timestamp = int(struct.unpack(">Q", s.payload[:8])[0])
            if timestamp == 0 or timestamp > MAX_TIMESTAMP:
                problem = f"cosignature timestamp {timestamp} is not in 1..2^63-1"
                break
            if not witness.verify(text, timestamp, s.payload[8:]):
                problem = f"invalid cosignature for witness key {witness.key_id} (time {timestamp})"
                break
            times.append(timestamp)
        if problem is not None:
            results.append(CosignatureCheck(witness, present=True, valid=False, reason=problem))
        else:
            results.append(CosignatureCheck(witness, present=True, valid=True, timestamp=min(times)))
    return results
