"""C2SP signed notes with Ed25519 (signature type 0x01) and SM2 (0xff + OID, SPEC §4.1), as SPEC §4 uses them.

Owns: key hashes, verifier keys (vkey strings), signer keys (golang.org/x/mod skey strings; SM2: PKCS#8 PEM),
fingerprints (SHA-256 and SM3), signing a note text and opening (parsing + verifying) a signed note, byte for byte
as c2sp.org/signed-note and Go's ``golang.org/x/mod/sumdb/note`` do it.
Must not import: anything but the standard library, ``cryptography``, ``service.core.errors``, ``.hashing`` (SM3)
and ``.sm2``. No exception from ``cryptography`` or ``binascii`` leaves this module.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Self, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.core import sm2
from service.core.errors import BadNoteSignature, MalformedKey, MalformedNote, UnknownKey
from service.core.hashing import sm3

__all__ = [
    "ALG_ED25519",
    "ALG_SM2",
    "MAX_SIGNATURES",
    "NoteSigner",
    "SignedNote",
    "Signer",
    "Sm2Signer",
    "Sm2Verifier",
    "Verifier",
    "fingerprint",
    "fingerprint_sm3",
    "key_hash",
    "name_problem",
    "note_text_and_lines",
    "open_note",
    "parse_vkeys",
    "sign_note",
]

ALG_ED25519 = 0x01
# SPEC §4.1: C2SP's 0xff ("no identifier byte assigned") followed by the DER encoding of the OID
# 1.2.156.10197.1.501, SM2 signature with SM3 (GM/T 0006-2012).
ALG_SM2 = bytes.fromhex("ff06082a811ccf55018375")
# golang.org/x/mod/sumdb/note rejects notes with more signature lines; C2SP requires accepting >= 16.
MAX_SIGNATURES = 100
_SIG_PREFIX = "\u2014 "  # U+2014 EM DASH, U+0020 SPACE: bytes e2 80 94 20
_PUBLIC_KEY_SIZE = 32
_SEED_SIZE = 32
V = TypeVar("V")
_SIGNATURE_SIZE = 64
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


# C0 controls but LF; Go's ASCII white space (searched in C for the common all-ASCII case).
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
_ASCII_SPACE = re.compile("[\t\n\v\f\r ]")


def _is_go_space(c: str) -> bool:
    """Go's ``unicode.IsSpace`` (Python's ``str.isspace`` also counts U+001C..U+001F, Go does not)."""
    return c in "\t\n\v\f\r \x85\xa0" or unicodedata.category(c) in ("Zs", "Zl", "Zp")


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid key name (Go ``isValidName``), or None if it is."""
    if name == "":
        return "key name is empty"
    if "+" in name:
        return f"key name {name!r} contains '+'"
    if (_ASCII_SPACE.search(name) is not None) if name.isascii() else any(_is_go_space(c) for c in name):
        return f"key name {name!r} contains a space character"
    return None


def _b64decode(s: str) -> bytes:
    """Standard base64 with padding (RFC 4648 §4). Raises ValueError."""
    if not s.isascii():
        raise ValueError("non-ASCII character in base64")
    return base64.b64decode(s.encode("ascii"), validate=True)


def _b64encode(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def key_hash(name: str, public_key: bytes) -> int:
    """Return the key hash: big-endian uint32 of ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def _hash4(name: str, material: bytes) -> int:
    """Key ID: big-endian uint32 of ``SHA-256(name || 0x0A || signature type || public key)[:4]``."""
    return int(struct.unpack(">I", hashlib.sha256(name.encode("utf-8") + b"\n" + material).digest()[:4])[0])


def fingerprint(public_key: bytes) -> str:
    """Return SHA-256 of the public key (Ed25519: 32 bytes; SM2: the 65-byte point) as lowercase hex in
    space-separated groups of four."""
    return hashlib.sha256(public_key).digest().hex(" ", 2)


def fingerprint_sm3(public_key: bytes) -> str:
    """Return SM3 (GB/T 32905) of the public key, lowercase hex in groups of four (for domestic paperwork)."""
    return sm3(public_key).hex(" ", 2)


@dataclass(frozen=True)
class Verifier:
    """A trusted (or to-be-trusted) Ed25519 note key: name, key hash and 32-byte public key."""

    name: str
    key_hash: int
    public_key: bytes

    def __post_init__(self) -> None:
        problem = _name_problem(self.name)
        if problem is not None:
            raise MalformedKey(problem)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _PUBLIC_KEY_SIZE:
            raise MalformedKey(f"Ed25519 public key must be {_PUBLIC_KEY_SIZE} bytes, got {self.public_key!r}")
        expected = key_hash(self.name, self.public_key)
        if self.key_hash != expected:
            raise MalformedKey(f"key hash mismatch for {self.name}: given {self.key_hash:08x}, computed {expected:08x}")

    @classmethod
    def from_vkey(cls, s: str) -> Verifier:
        """Parse ``<name>+<8 hex key hash>+<base64(0x01 || public key)>`` (split on the first two '+').

        Upper-case hex in the hash is accepted (as Go does); ``.vkey`` writes lowercase.
        :raise MalformedKey: wrong shape, bad name, bad base64, key type not 0x01, wrong key length,
            or a key hash that does not match the name and key.
        """
        parts = s.split("+", 2)
        if len(parts) != 3:
            raise MalformedKey("malformed vkey: expected <name>+<8 hex key hash>+<base64 key>")
        name, hash16, key64 = parts
        problem = _name_problem(name)
        if problem is not None:
            raise MalformedKey(f"malformed vkey: {problem}")
        if len(hash16) != 8 or not all(c in _HEX_DIGITS for c in hash16):
            raise MalformedKey(f"malformed vkey: key hash {hash16!r} is not 8 hex digits")
        try:
            material = _b64decode(key64)
        except (binascii.Error, ValueError):
            raise MalformedKey("malformed vkey: key is not standard padded base64") from None
        if len(material) == 0:
            raise MalformedKey("malformed vkey: key is empty")
        given = int(hash16, 16)
        computed = _hash4(name, material)
        if given != computed:
            raise MalformedKey(f"vkey key hash mismatch for {name}: given {hash16}, computed {computed:08x}")
        if material.startswith(ALG_SM2):
            rest = material[len(ALG_SM2) :]
            return Sm2Verifier(name, given, rest[: sm2.POINT_SIZE], rest[sm2.POINT_SIZE :])
        if material[0] == 0xFF:
            raise MalformedKey(
                f"vkey {name}: unknown signature type ff {material[1:12].hex(' ')} "
                "(known: Ed25519 0x01, SM2 with SM3 0xff + OID 1.2.156.10197.1.501)"
            )
        if material[0] != ALG_ED25519:
            raise MalformedKey(
                f"vkey {name}: unknown signature type 0x{material[0]:02x} (known: Ed25519 0x01, SM2 0xff + OID)"
            )
        if len(material) != 1 + _PUBLIC_KEY_SIZE:
            raise MalformedKey(f"vkey {name}: Ed25519 key is {len(material) - 1} bytes, expected {_PUBLIC_KEY_SIZE}")
        return cls(name, given, material[1:])

    @property
    def vkey(self) -> str:
        """The verifier key string ``<name>+<8 lowercase hex>+<base64(0x01 || public key)>``."""
        return f"{self.name}+{self.key_hash:08x}+{_b64encode(bytes([ALG_ED25519]) + self.public_key)}"

    @property
    def key_id(self) -> str:
        """``<name>+<8 lowercase hex>``: how messages name this key."""
        return f"{self.name}+{self.key_hash:08x}"

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the public key, lowercase hex in groups of four (what people compare)."""
        return fingerprint(self.public_key)

    @property
    def fingerprint_sm3(self) -> str:
        """SM3 of the public key, lowercase hex in groups of four (for domestic paperwork)."""
        return fingerprint_sm3(self.public_key)

    @property
    def algorithm(self) -> str:
        """``ed25519`` or ``sm2``."""
        return "ed25519"

    @functools.cached_property
    def _ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` (64 bytes, no key hash) is our Ed25519 signature of ``text``."""
        try:
            self._ed25519.verify(signature, text)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class Sm2Verifier(Verifier):
    """A trusted SM2 note key (SPEC §4.1): name, key hash, 65-byte public point and distinguishing ID."""

    distid: bytes = sm2.DEFAULT_ID

    def __post_init__(self) -> None:
        problem = _name_problem(self.name)
        if problem is not None:
            raise MalformedKey(problem)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != sm2.POINT_SIZE:
            raise MalformedKey(f"SM2 public key must be a {sm2.POINT_SIZE}-byte uncompressed point")
        sm2.check_id(self.distid)
        sm2.check_point(self.public_key)
        expected = _hash4(self.name, ALG_SM2 + self.public_key + self.distid)
        if self.key_hash != expected:
            raise MalformedKey(f"key hash mismatch for {self.name}: given {self.key_hash:08x}, computed {expected:08x}")

    @property
    def vkey(self) -> str:
        """``<name>+<8 lowercase hex>+<base64(0xff || OID || 65-byte point || distinguishing ID)>``."""
        return f"{self.name}+{self.key_hash:08x}+{_b64encode(ALG_SM2 + self.public_key + self.distid)}"

    @property
    def algorithm(self) -> str:
        return "sm2"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` (DER SM2Signature, no key hash) is our SM2-with-SM3 signature of ``text``."""
        return sm2.verify(self.public_key, self.distid, text, signature)


class SeedKey(Generic[V]):
    """An Ed25519 secret key under a key name: note signers (type 0x01) and witness cosigners (type 0x04) share it.

    Written as ``PRIVATE+KEY+<name>+<8 hex key hash>+<base64(type || 32-byte seed)>`` (golang.org/x/mod format).
    Subclasses say the type byte (``ALG``), how the key hash is derived and which verifier the public key makes.
    The seed never appears in ``repr``; ``skey`` exposes it on purpose."""

    __slots__ = ("_private", "_seed", "key_hash", "name", "verifier")
    ALG: ClassVar[int]
    _WHAT: ClassVar[str]  # how messages name the key string ("skey", "witness skey")
    _HASH_WORD: ClassVar[str]  # how messages name the key hash ("key hash", "key ID")

    def __init__(self, name: str, seed: bytes) -> None:
        problem = _name_problem(name)
        if problem is not None:
            raise MalformedKey(problem)
        if len(seed) != _SEED_SIZE:
            raise MalformedKey(f"Ed25519 seed must be {_SEED_SIZE} bytes, got {len(seed)}")
        self._seed = bytes(seed)
        self._private = Ed25519PrivateKey.from_private_bytes(self._seed)
        public = self._private.public_key().public_bytes_raw()
        self.name = name
        self.key_hash = self._key_hash(name, public)
        self.verifier: V = self._verifier(name, self.key_hash, public)

    @staticmethod
    def _key_hash(name: str, public_key: bytes) -> int:
        raise NotImplementedError

    @staticmethod
    def _verifier(name: str, key_hash: int, public_key: bytes) -> V:
        raise NotImplementedError

    @classmethod
    def generate(cls, name: str) -> Self:
        """Return a new key with a random seed from ``os.urandom``."""
        return cls(name, os.urandom(_SEED_SIZE))

    @classmethod
    def from_skey(cls, s: str) -> Self:
        """Parse ``PRIVATE+KEY+<name>+<8 hex>+<base64(ALG || 32-byte seed)>``.

        :raise MalformedKey: wrong shape, bad name or base64, another type byte, seed not 32 bytes, or a key
            hash that does not match the public key derived from the seed.
        """
        what = cls._WHAT
        parts = s.strip().split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise MalformedKey(f"malformed {what}: expected PRIVATE+KEY+<name>+<8 hex>+<base64 seed>")
        _, _, name, hash16, key64 = parts
        problem = _name_problem(name)
        if problem is not None:
            raise MalformedKey(f"malformed {what}: {problem}")
        if len(hash16) != 8 or not all(c in _HEX_DIGITS for c in hash16):
            raise MalformedKey(f"malformed {what}: {cls._HASH_WORD} {hash16!r} is not 8 hex digits")
        try:
            material = _b64decode(key64)
        except (binascii.Error, ValueError):
            raise MalformedKey(f"malformed {what}: key is not standard padded base64") from None
        if len(material) != 1 + _SEED_SIZE or material[0] != cls.ALG:
            raise MalformedKey(f"malformed {what}: expected 0x{cls.ALG:02x} followed by a 32-byte Ed25519 seed")
        key = cls(name, material[1:])
        if int(hash16, 16) != key.key_hash:
            raise MalformedKey(
                f"{what} {cls._HASH_WORD} mismatch for {name}: given {hash16}, computed {key.key_hash:08x}"
            )
        return key

    @property
    def skey(self) -> str:
        """The secret key string: ``PRIVATE+KEY+<name>+<8 hex>+<base64(ALG || seed)>``."""
        return f"PRIVATE+KEY+{self.name}+{self.key_hash:08x}+{_b64encode(bytes([self.ALG]) + self._seed)}"

    def __repr__(self) -> str:
        fp = self.verifier.fingerprint  # type: ignore[attr-defined]
        return f"{type(self).__name__}(name={self.name!r}, key_hash={self.key_hash:08x}, fingerprint={fp!r})"


class Signer(SeedKey["Verifier"]):
    """An Ed25519 note signing key (SPEC §4, type 0x01)."""

    __slots__ = ()
    ALG = ALG_ED25519
    _WHAT = "skey"
    _HASH_WORD = "key hash"

    @staticmethod
    def _key_hash(name: str, public_key: bytes) -> int:
        return key_hash(name, public_key)

    @staticmethod
    def _verifier(name: str, key_hash: int, public_key: bytes) -> Verifier:
        return Verifier(name, key_hash, public_key)

    def sign(self, text: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``text``."""
        return self._private.sign(text)

    def signature_line(self, text: bytes) -> bytes:
        """Return ``— <name> <base64(key hash || signature)>\\n`` for ``text``."""
        raw = struct.pack(">I", self.key_hash) + self.sign(text)
        return f"{_SIG_PREFIX}{self.name} {_b64encode(raw)}\n".encode()


class Sm2Signer:
    """An SM2 note signing key (SPEC §4.1): PKCS#8 PEM private key and distinguishing ID. ``pem`` is secret."""

    __slots__ = ("_pem", "key_hash", "name", "verifier")

    def __init__(self, name: str, pem: bytes, distid: bytes = sm2.DEFAULT_ID) -> None:
        problem = _name_problem(name)
        if problem is not None:
            raise MalformedKey(problem)
        sm2.check_id(distid)
        point = sm2.public_point(pem)
        self._pem = bytes(pem)
        self.name = name
        self.key_hash = _hash4(name, ALG_SM2 + point + distid)
        self.verifier = Sm2Verifier(name, self.key_hash, point, distid)

    @classmethod
    def generate(cls, name: str, distid: bytes = sm2.DEFAULT_ID) -> Sm2Signer:
        """Return a new SM2 signer (key from OpenSSL's generator)."""
        return cls(name, sm2.generate_pem(), distid)

    @property
    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (secret!)."""
        return self._pem

    def sign(self, text: bytes) -> bytes:
        """Return the DER SM2Signature (SM3, our distinguishing ID) of ``text``."""
        return sm2.sign(self._pem, self.verifier.distid, text)

    def signature_line(self, text: bytes) -> bytes:
        """Return ``— <name> <base64(key hash || DER signature)>\\n`` for ``text``."""
        raw = struct.pack(">I", self.key_hash) + self.sign(text)
        return f"{_SIG_PREFIX}{self.name} {_b64encode(raw)}\n".encode()

    def __repr__(self) -> str:
        fp = self.verifier.fingerprint
        return f"Sm2Signer(name={self.name!r}, key_hash={self.key_hash:08x}, fingerprint={fp!r})"


NoteSigner = Signer | Sm2Signer


@dataclass(frozen=True)
class SignedNote:
    """An opened note: its text (the signed bytes), the trusted keys that verified it, and the
    ``name+hash`` ids of signature lines from keys we do not know (ignored, per C2SP)."""

    text: bytes
    verified: tuple[Verifier, ...]
    unverified: tuple[str, ...]


def _check_text(text: bytes, what: str) -> str:
    """Valid UTF-8 with no control byte other than ``\\n`` (C2SP signed-note, Go ``Open``)."""
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedNote(f"malformed note: {what} is not valid UTF-8 (byte {e.start})") from None
    bad = _CONTROL.search(s)
    if bad is not None:
        raise MalformedNote(
            f"malformed note: {what} contains control character U+{ord(bad.group()):04X} at {bad.start()}"
        )
    return s


def sign_note(text: bytes, signers: Sequence[NoteSigner]) -> bytes:
    """Return ``text + b"\\n" + one signature line per signer``.

    :raise MalformedNote: ``text`` is empty, does not end in ``\\n``, is not UTF-8 or has control bytes.
    :raise ValueError: no signers.
    """
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    if not text:
        raise MalformedNote("malformed note: text to sign is empty")
    if not text.endswith(b"\n"):
        raise MalformedNote("malformed note: text to sign must end with a newline")
    _check_text(text, "text to sign")
    return text + b"\n" + b"".join(s.signature_line(text) for s in signers)


def open_note(note: bytes, verifiers: Iterable[Verifier]) -> SignedNote:
    """Parse ``note`` and verify its signatures from ``verifiers`` (C2SP signed-note, Go ``Open``).

    Signature lines from unknown (name, key hash) pairs are ignored and listed in ``unverified``.
    :raise MalformedNote: the bytes are not a well-formed signed note (the reason says which rule).
    :raise BadNoteSignature: a signature from a known key does not verify.
    :raise UnknownKey: no signature verifies with a known key (names the keys seen and trusted).
    """
    known: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_hash), []).append(v)

    _check_text(note, "note")
    split = note.rfind(b"\n\n")
    if split < 0:
        raise MalformedNote("malformed note: no blank line between the text and the signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs:
        raise MalformedNote("malformed note: no signature lines after the blank line")
    if not sigs.endswith(b"\n"):
        raise MalformedNote("malformed note: the last signature line does not end with a newline")

    verified: list[Verifier] = []
    unverified: list[str] = []
    seen: set[tuple[str, int]] = set()
    seen_unverified: set[str] = set()
    lines = sigs[:-1].decode("utf-8").split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"malformed note: {len(lines)} signature lines, at most {MAX_SIGNATURES} allowed")
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNote(
                f"malformed note: signature line {number} does not start with '\u2014 ' (U+2014 EM DASH, space)"
            )
        body = line[len(_SIG_PREFIX) :]
        name, _, b64 = body.partition(" ")
        problem = _name_problem(name)
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
        hash_ = int(struct.unpack(">I", raw[:4])[0])
        candidates = known.get((name, hash_))
        if candidates is None:
            if body not in seen_unverified:  # Go drops repeated identical unknown signatures
                seen_unverified.add(body)
                unverified.append(f"{name}+{hash_:08x}")
            continue
        if (name, hash_) in seen:  # Go drops repeated signatures by one verifier
            continue
        seen.add((name, hash_))
        good = next((v for v in candidates if v.verify(text, raw[4:])), None)
        if good is None:
            raise BadNoteSignature(f"invalid signature for key {name}+{hash_:08x}")
        verified.append(good)

    if not verified:
        signed_by = ", ".join(unverified) or "none"
        trusted = ", ".join(sorted(f"{n}+{h:08x}" for n, h in known)) or "none"
        raise UnknownKey(f"note has no verifiable signatures: signed by {signed_by}; trusted keys: {trusted}")
    return SignedNote(text, tuple(verified), tuple(unverified))


def parse_vkeys(text: str) -> list[Verifier]:
    """Parse a key file: one vkey per line; blank lines and lines starting with '#' are ignored.

    :raise MalformedKey: a line that is not a valid vkey (names its line number).
    """
    result: list[Verifier] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if line == "" or line.startswith("#"):
            continue
        try:
            result.append(Verifier.from_vkey(line))
        except MalformedKey as e:
            raise MalformedKey(f"line {number}: {e.reason}") from None
    return result


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid note key name (Go ``isValidName``), or None if it is."""
    return _name_problem(name)


def note_text_and_lines(note: bytes) -> tuple[bytes, list[str]]:
    """Split a signed note at its last blank line: the signed text (with its final newline) and the signature
    lines (without newlines), checking the C2SP signed-note framing rules but no signature.

    :raise MalformedNote: not UTF-8, a control byte, no blank line, no signature line, or no final newline.
    """
    _check_text(note, "note")
    split = note.rfind(b"\n\n")
    if split < 0:
        raise MalformedNote("malformed note: no blank line between the text and the signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs:
        raise MalformedNote("malformed note: no signature lines after the blank line")
    if not sigs.endswith(b"\n"):
        raise MalformedNote("malformed note: the last signature line does not end with a newline")
    return text, sigs[:-1].decode("utf-8").split("\n")
