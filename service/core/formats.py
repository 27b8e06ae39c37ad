"""The exact bytes of SPEC §2 (evidence leaf), §3 (ledger entry), §4 (checkpoint body) and ``<time>``.

Owns: producing and strictly parsing each of those byte strings, in one place, plus the small value
checks they are made of (evidence id, SHA-256 hex, canonical decimal, 32-byte base64 root, time).
Changing any format here breaks every receipt already issued: don't.
Values are kept as ``bytes``/``int``/``datetime`` inside the dataclasses; hex and base64 appear only in
the byte strings themselves.
Must not import: anything outside the standard library and ``service.core.errors``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from service.core.errors import FormatError

__all__ = [
    "DIGEST_SIZES",
    "CaseRef",
    "Checkpoint",
    "Leaf",
    "LeafV2",
    "LedgerEntry",
    "MAX_UINT64",
    "check_evidence_id",
    "check_digest_line",
    "claim_lines",
    "format_time",
    "leaf_bytes_columns",
    "leaf_of_columns",
    "leaf_version",
    "new_evidence_id",
    "parse_sha256_hex",
    "parse_time",
    "text_sha256",
    "utc_now",
]

MAX_UINT64 = (1 << 64) - 1
_SHA256_SIZE = 32

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


# --- <time> (SPEC §2): RFC 3339, UTC, exactly six fractional digits, "Z" --------------------------

_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})Z", re.ASCII)
_TIME_PREFIX_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}", re.ASCII)


def format_time(dt: datetime) -> str:
    """Return ``dt`` as SPEC ``<time>``, e.g. ``2026-11-28T16:13:35.123456Z`` (converted to UTC).

    :raise ValueError: ``dt`` is naive (a programming error: we never guess a time zone).
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("format_time needs a timezone-aware datetime, got a naive one")
    u = dt if dt.tzinfo is UTC else dt.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"


def parse_time(s: str) -> datetime:
    """Parse SPEC ``<time>`` into a tz-aware UTC datetime with microsecond precision.

    :raise FormatError: anything but ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` naming a real UTC instant.
    """
    m = _TIME_RE.fullmatch(s)
    if m is None:
        raise FormatError(_time_problem(s))
    year, month, day, hour, minute, second, micro = map(int, m.groups())
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as e:
        raise FormatError(f"time {s!r} is not a valid date and time: {e}") from None


def _time_problem(s: str) -> str:
    """Say in words why ``s`` is not a SPEC ``<time>``."""
    want = "expected UTC like 2026-11-28T16:13:35.123456Z"
    prefix = _TIME_PREFIX_RE.match(s)
    if prefix is None:
        return f"time {s!r} is not RFC 3339 date and time YYYY-MM-DDTHH:MM:SS ({want})"
    rest = s[prefix.end() :]
    frac = re.match(r"\.([0-9]*)", rest, re.ASCII)
    digits = frac.group(1) if frac else ""
    zone = rest[frac.end() :] if frac else rest
    if len(digits) != 6:
        return f"time {s!r} must have exactly six fractional digits, found {len(digits)} ({want})"
    if zone in ("z", "+00:00", "-00:00") or re.fullmatch(r"[+-][0-9]{2}:[0-9]{2}", zone):
        return f"time {s!r} must be in UTC and end in 'Z', found {zone!r} ({want})"
    return f"time {s!r} must end in 'Z' right after the six fractional digits, found {zone!r} ({want})"


def utc_now() -> datetime:
    """Return the current time, tz-aware UTC, microsecond precision."""
    return datetime.now(UTC)


def _require_aware(dt: datetime, what: str) -> datetime:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {dt!r}")
    return dt.astimezone(UTC)


# --- evidence id (SPEC §2) --------------------------------------------------------------------


def new_evidence_id() -> str:
    """Return a fresh evidence id: 22 URL-safe characters carrying 128 random bits (SPEC §2: >= 96)."""
    return secrets.token_urlsafe(16)


def check_evidence_id(s: str) -> str:
    """Return ``s`` if it is 1-64 characters of ``[A-Za-z0-9_-]``.

    :raise FormatError: empty, too long, or a character outside that set (named with its position).
    """
    if s == "":
        raise FormatError("evidence id is empty (expected 1-64 characters of A-Z a-z 0-9 _ -)")
    if len(s) > 64:
        raise FormatError(f"evidence id is {len(s)} characters long, at most 64 allowed")
    for i, c in enumerate(s):
        if c not in _ID_CHARS:
            raise FormatError(f"evidence id contains {c!r} (U+{ord(c):04X}) at position {i}; allowed: A-Z a-z 0-9 _ -")
    return s


# --- SHA-256 hex (SPEC §2 "sha256" line) ------------------------------------------------------


def parse_sha256_hex(s: str) -> bytes:
    """Return the 32 bytes written as exactly 64 lowercase hex digits in ``s``.

    :raise FormatError: a non-hex character, a wrong number of digits, or upper-case hex.
    """
    if len(s) == 2 * _SHA256_SIZE:  # the usual case, checked in C: 64 characters that are lowercase hex
        try:
            raw = bytes.fromhex(s)  # also takes spaces and upper case: the round trip below refuses those
        except ValueError:
            pass
        else:
            if raw.hex() == s:
                return raw
    for i, c in enumerate(s):
        if c not in _HEX_DIGITS:
            raise FormatError(f"SHA-256 hex contains {c!r} at position {i}: not a hex digit")
    if len(s) != 2 * _SHA256_SIZE:
        raise FormatError(f"SHA-256 hex must be 64 hex digits, {len(s)} given")
    if s != s.lower():
        raise FormatError("SHA-256 hex has upper-case digits: use lowercase hex")
    return bytes.fromhex(s)


# --- helpers shared by the line formats -------------------------------------------------------


def _parse_uint(field: str, s: str) -> int:
    """Canonical ASCII decimal: ``0`` or no leading zero, no sign, no spaces, fits uint64."""
    if s == "":
        raise FormatError(f"{field} is empty, expected a decimal number")
    if s[0] in "+-":
        raise FormatError(f"{field} {s!r} has a sign; expected plain decimal digits")
    if not all("0" <= c <= "9" for c in s):
        raise FormatError(f"{field} {s!r} is not a decimal number (only digits 0-9 allowed)")
    if len(s) > 1 and s[0] == "0":
        raise FormatError(f"{field} {s!r} has leading zeros")
    if len(s) > 20 or int(s) > MAX_UINT64:
        raise FormatError(f"{field} {s!r} does not fit in an unsigned 64-bit integer")
    return int(s)


def _check_uint(field: str, n: int, minimum: int = 0) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not minimum <= n <= MAX_UINT64:
        raise FormatError(f"{field} must be an integer in [{minimum}, 2^64-1], got {n!r}")


def _encode_root(root: bytes) -> str:
    return base64.b64encode(root).decode("ascii")


def _parse_root(field: str, s: str) -> bytes:
    """Standard, padded, canonical base64 of exactly 32 bytes."""
    if "-" in s or "_" in s:
        raise FormatError(f"{field} {s!r} is URL-safe base64; expected standard base64 (+ and /)")
    bad = next((c for c in s if c not in _B64_CHARS), None)
    if bad is not None:
        raise FormatError(f"{field} {s!r} contains {bad!r}: not standard base64")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise FormatError(f"{field} {s!r} is not padded standard base64: {e}") from None
    if len(raw) != _SHA256_SIZE:
        raise FormatError(f"{field} decodes to {len(raw)} bytes, expected {_SHA256_SIZE}")
    if _encode_root(raw) != s:
        raise FormatError(f"{field} {s!r} is non-canonical base64 (expected {_encode_root(raw)!r})")
    return raw


def _check_root(field: str, root: bytes) -> None:
    if not isinstance(root, bytes) or len(root) != _SHA256_SIZE:
        raise FormatError(f"{field} must be {_SHA256_SIZE} bytes, got {root!r}")


# Every C0 control character except LF (searched in C, not character by character in Python).
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


def _decode_text(data: bytes, what: str) -> str:
    """Strict UTF-8 text whose lines all end in a bare ``\\n`` and that has no other control characters."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(f"{what}: expected bytes, got {type(data).__name__}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{what}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if "\r" in text:
        raise FormatError(f"{what}: contains a CR character; lines must end in a bare LF (\\n)")
    bad = _CONTROL.search(text)
    if bad is not None:
        raise FormatError(f"{what}: contains control character U+{ord(bad.group()):04X} at offset {bad.start()}")
    if text == "":
        raise FormatError(f"{what}: is empty")
    if not text.endswith("\n"):
        raise FormatError(f"{what}: missing final newline (every line must end with \\n)")
    return text


def _split_fixed(data: bytes, what: str, header: str, keys: tuple[str, ...]) -> list[str]:
    """Check the header line and ``key value`` lines; return the values in order."""
    text = _decode_text(data, what)
    lines = text[:-1].split("\n")
    expected = 1 + len(keys)
    if len(lines) < expected:
        raise FormatError(f"{what}: missing lines: expected {expected} lines, found {len(lines)}")
    if len(lines) > expected:
        raise FormatError(
            f"{what}: extra data after line {expected}: expected exactly {expected} lines, found {len(lines)}"
        )
    if lines[0] != header:
        raise FormatError(f"{what}: wrong header line: expected {header!r}, found {lines[0]!r}")
    values = []
    for number, (key, line) in enumerate(zip(keys, lines[1:], strict=True), start=2):
        if not line.startswith(key + " "):
            raise FormatError(f"{what}: line {number}: expected '{key} <value>', found {line!r}")
        value = line[len(key) + 1 :]
        if value == "" or value != value.strip(" ") or " " in value:
            raise FormatError(f"{what}: line {number} ({key}): extra or missing space in {line!r}")
        values.append(value)
    return values


# --- SPEC §2: evidence leaf bytes -------------------------------------------------------------

_LEAF_HEADER = "evidence-ledger leaf v1"
_LEAF_TEMPLATE = _LEAF_HEADER + "\nid {}\nsha256 {}\nreceived {}\n"


@dataclass(frozen=True)
class Leaf:
    """One deposit as hashed into the batch tree (SPEC §2)."""

    id: str
    sha256: bytes
    received: datetime

    def __post_init__(self) -> None:
        check_evidence_id(self.id)
        if not isinstance(self.sha256, bytes) or len(self.sha256) != _SHA256_SIZE:
            raise FormatError(f"leaf sha256 must be {_SHA256_SIZE} bytes, got {self.sha256!r}")
        object.__setattr__(self, "received", _require_aware(self.received, "leaf received"))

    def to_bytes(self) -> bytes:
        """Return the exact SPEC §2 leaf bytes."""
        return _LEAF_TEMPLATE.format(self.id, self.sha256.hex(), format_time(self.received)).encode()

    @classmethod
    def from_bytes(cls, b: bytes) -> Leaf:
        """Parse SPEC §2 leaf bytes strictly.

        :raise FormatError: any deviation from the four exact lines, with the reason.
        """
        if isinstance(b, bytes) and (m := _LEAF_FAST.fullmatch(b)) is not None:
            try:
                return cls(m[1].decode("ascii"), bytes.fromhex(m[2].decode("ascii")), parse_time(m[3].decode("ascii")))
            except FormatError:
                pass  # the line-by-line parser below gives the exact reason
        id_, hex_, received = _split_fixed(b, "evidence leaf", _LEAF_HEADER, ("id", "sha256", "received"))
        try:
            return cls(check_evidence_id(id_), parse_sha256_hex(hex_), parse_time(received))
        except FormatError as e:
            raise FormatError(f"evidence leaf: {e.reason}") from None


def leaf_bytes_columns(ids: Iterable[str], digests: Iterable[bytes], received: Iterable[str]) -> list[bytes]:
    """The SPEC §2 leaf bytes of many rows at once, from their columns: ids, 32-byte digests and received times
    already written as ``<time>`` (``format_time``; callers cache it, many rows share one time).

    The same bytes as ``Leaf(...).to_bytes()`` for each row (one template), as a chain of C-level maps: the bulk
    path of ``evidence audit``. It checks nothing: the caller has checked the ids and digest lengths.
    """
    return list(map(str.encode, map(_LEAF_TEMPLATE.format, ids, map(bytes.hex, digests), received)))


_LEAF_HASH_INPUT = b"\x00" + _LEAF_TEMPLATE.replace("{}", "%s").encode()


def leaf_hash_inputs(ids: Iterable[bytes], digests: Iterable[bytes], received: Iterable[bytes]) -> Iterator[bytes]:
    """``0x00 || leaf bytes`` (the RFC 9162 leaf-hash input) of many rows, from ids and ``<time>`` texts already
    encoded (ASCII) and 32-byte digests: ``b"\\x00" + leaf_bytes_columns(...)[i]`` for each row, built by one bytes
    ``%`` per row (no str step, no copy to prepend the prefix). It checks nothing: the caller has checked the ids
    and digest lengths."""
    return map(_LEAF_HASH_INPUT.__mod__, zip(ids, map(binascii.hexlify, digests), received, strict=True))


# A fast path for well-formed bytes: it accepts only a subset of what the line-by-line parser accepts (and the
# values are still checked by the same functions), so it changes speed, never the verdict.
_TIME_BYTES = rb"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)"
_LEAF_FAST = re.compile(
    rb"evidence-ledger leaf v1\nid ([A-Za-z0-9_-]{1,64})\nsha256 ([0-9a-f]{64})\nreceived " + _TIME_BYTES + rb"\n"
)
_ENTRY_FAST = re.compile(
    rb"evidence-ledger batch v1\nseq (0|[1-9][0-9]{0,19})\nsize ([1-9][0-9]{0,19})\nroot ([A-Za-z0-9+/]{43}=)\n"
    rb"sealed " + _TIME_BYTES + rb"\n"
)


# --- SPEC §3: ledger entry bytes --------------------------------------------------------------

_ENTRY_HEADER = "evidence-ledger batch v1"


@dataclass(frozen=True)
class LedgerEntry:
    """One sealed batch, as hashed into the ledger log (SPEC §3)."""

    seq: int
    size: int
    root: bytes
    sealed: datetime

    def __post_init__(self) -> None:
        _check_uint("ledger entry seq", self.seq)
        _check_uint("ledger entry size", self.size, minimum=1)
        _check_root("ledger entry root", self.root)
        object.__setattr__(self, "sealed", _require_aware(self.sealed, "ledger entry sealed"))

    def to_bytes(self) -> bytes:
        """Return the exact SPEC §3 ledger entry bytes."""
        return (
            f"{_ENTRY_HEADER}\n"
            f"seq {self.seq}\n"
            f"size {self.size}\n"
            f"root {_encode_root(self.root)}\n"
            f"sealed {format_time(self.sealed)}\n"
        ).encode()

    @classmethod
    def from_bytes(cls, b: bytes) -> LedgerEntry:
        """Parse SPEC §3 ledger entry bytes strictly.

        :raise FormatError: any deviation from the five exact lines, with the reason.
        """
        if isinstance(b, bytes) and (m := _ENTRY_FAST.fullmatch(b)) is not None:
            try:
                return cls(
                    int(m[1]), int(m[2]), _parse_root("root", m[3].decode("ascii")), parse_time(m[4].decode("ascii"))
                )
            except FormatError:
                pass  # the line-by-line parser below gives the exact reason
        what = "ledger entry"
        seq, size, root, sealed = _split_fixed(b, what, _ENTRY_HEADER, ("seq", "size", "root", "sealed"))
        try:
            n = _parse_uint("seq", seq)
            count = _parse_uint("size", size)
            if count == 0:
                raise FormatError("size is 0; a batch has at least one leaf")
            return cls(n, count, _parse_root("root", root), parse_time(sealed))
        except FormatError as e:
            raise FormatError(f"{what}: {e.reason}") from None


# --- SPEC §4: checkpoint body (C2SP tlog-checkpoint note text) --------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The text of a C2SP tlog-checkpoint for the ledger log (SPEC §4); the signature lives in ``note``."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or self.origin == "":
            raise FormatError("checkpoint origin must be a non-empty string")
        if any(c < " " for c in self.origin):
            raise FormatError(f"checkpoint origin {self.origin!r} contains a control character or newline")
        _check_uint("checkpoint size", self.size)
        _check_root("checkpoint root", self.root)
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for ext in self.extensions:
            if not isinstance(ext, str) or ext == "" or any(c < " " for c in ext):
                raise FormatError(f"checkpoint extension line {ext!r} must be non-empty, without newlines")

    def to_bytes(self) -> bytes:
        """Return the checkpoint note text: origin, size, base64 root, extension lines, each ending in \\n."""
        lines = [self.origin, str(self.size), _encode_root(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines).encode()

    @classmethod
    def from_bytes(cls, b: bytes) -> Checkpoint:
        """Parse a checkpoint note text strictly (C2SP tlog-checkpoint for a SHA-256 log).

        :raise FormatError: empty origin, non-canonical size, root not 32 bytes of std base64, an empty
            extension line, a missing final newline, or bytes a signed note may not hold.
        """
        what = "checkpoint"
        text = _decode_text(b, what)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError(f"{what}: missing lines: expected origin, size and root hash, found {len(lines)}")
        origin, size, root, *extensions = lines
        if origin == "":
            raise FormatError(f"{what}: origin line is empty")
        for i, ext in enumerate(extensions, start=4):
            if ext == "":
                raise FormatError(f"{what}: line {i} is an empty extension line (they must be non-empty)")
        try:
            return cls(origin, _parse_uint("size", size), _parse_root("root hash", root), tuple(extensions))
        except FormatError as e:
            raise FormatError(f"{what}: {e.reason}") from None


# --- SPEC §2.1: evidence leaf bytes, v2 -------------------------------------------------------

_LEAF_V2_HEADER = "evidence-ledger leaf v2"
_LEAF_VERSION_RE = re.compile(r"evidence-ledger leaf (v[0-9]+)", re.ASCII)
# The keys of SPEC §2.1 a digest algorithm may not be named after.
LEAF_V2_KEYS = frozenset(
    ("id", "sha256", "received", "label-sha256", "case", "phase", "phase-name-sha256", "cosigns", "attestation")
)
_DIGEST_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}", re.ASCII)
_LOWER_HEX_RE = re.compile(r"(?:[0-9a-f]{2}){32,64}", re.ASCII)
# Registered digest algorithms (SPEC §2.1 table): name -> size in bytes.
DIGEST_SIZES: dict[str, int] = {"sm3": 32}


@dataclass(frozen=True)
class CaseRef:
    """A deposit's place in a case (SPEC §2.1 case lines); the phase name is kept as its SHA-256."""

    id: str
    phase: int
    phase_name_sha256: bytes

    def __post_init__(self) -> None:
        try:
            check_evidence_id(self.id)
        except FormatError as e:
            raise FormatError(e.reason.replace("evidence id", "case id")) from None
        _check_uint("phase", self.phase, minimum=1)
        if not isinstance(self.phase_name_sha256, bytes) or len(self.phase_name_sha256) != _SHA256_SIZE:
            raise FormatError(f"phase-name-sha256 must be {_SHA256_SIZE} bytes")


def check_digest_line(name: str, value: bytes) -> None:
    """SPEC §2.1 digest line rule: the algorithm name and the digest size.

    :raise FormatError: a name outside ``[a-z][a-z0-9-]{0,31}``, a reserved key, or a wrong size.
    """
    if _DIGEST_NAME_RE.fullmatch(name) is None:
        raise FormatError(f"digest algorithm name {name!r} must match [a-z][a-z0-9-]{{0,31}}")
    if name in LEAF_V2_KEYS:
        raise FormatError(f"{name!r} is a leaf key, not a digest algorithm name")
    want = DIGEST_SIZES.get(name)
    if want is not None and len(value) != want:
        raise FormatError(f"the {name} digest must be {want} bytes ({2 * want} hex digits), found {len(value)}")
    if not 32 <= len(value) <= 64:
        raise FormatError(f"the {name} digest must be 32 to 64 bytes, found {len(value)}")


def text_sha256(text: str) -> bytes:
    """SHA-256 of a label's or phase name's UTF-8 bytes, exactly as given (SPEC §2.1: no normalization).

    :raise FormatError: the text holds a lone surrogate (not Unicode scalar values, so it has no UTF-8 bytes).
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FormatError(f"contains U+{ord(text[e.start]):04X}, a lone surrogate: not encodable as UTF-8") from None
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class LeafV2:
    """One deposit as hashed into the batch tree, v2 (SPEC §2.1)."""

    id: str
    sha256: bytes
    received: datetime
    digests: tuple[tuple[str, bytes], ...] = ()
    label_sha256: bytes | None = None
    case: CaseRef | None = None
    cosigns: str | None = None
    attestation_sha256: bytes | None = None

    version = 2

    def __post_init__(self) -> None:
        check_evidence_id(self.id)
        if not isinstance(self.sha256, bytes) or len(self.sha256) != _SHA256_SIZE:
            raise FormatError(f"leaf sha256 must be {_SHA256_SIZE} bytes, got {self.sha256!r}")
        object.__setattr__(self, "received", _require_aware(self.received, "leaf received"))
        digests = tuple(self.digests)
        for name, value in digests:
            check_digest_line(name, value)
        names = [n for n, _ in digests]
        if names != sorted(set(names)):
            raise FormatError(f"digest lines must be sorted by name, each at most once, found {names}")
        object.__setattr__(self, "digests", digests)
        for what, optional in (("label-sha256", self.label_sha256), ("attestation", self.attestation_sha256)):
            if optional is not None and (not isinstance(optional, bytes) or len(optional) != _SHA256_SIZE):
                raise FormatError(f"leaf {what} must be {_SHA256_SIZE} bytes")
        if self.cosigns is not None:
            check_evidence_id(self.cosigns)
            if self.attestation_sha256 is None:
                raise FormatError("a countersignature leaf (cosigns) must have an attestation line")

    def claim_lines(self) -> list[str]:
        """The lines a leaf shares with its attestation statement (SPEC §2.2), in order, without ``\\n``."""
        return claim_lines(self.sha256, self.digests, self.label_sha256, self.case, self.cosigns)

    def to_bytes(self) -> bytes:
        """Return the exact SPEC §2.1 leaf bytes."""
        first, *rest = self.claim_lines()
        lines = [_LEAF_V2_HEADER, f"id {self.id}", first, f"received {format_time(self.received)}", *rest]
        if self.attestation_sha256 is not None:
            lines.append(f"attestation {self.attestation_sha256.hex()}")
        return "".join(line + "\n" for line in lines).encode()

    @classmethod
    def from_bytes(cls, b: bytes) -> LeafV2:
        """Parse SPEC §2.1 leaf bytes strictly.

        :raise FormatError: any deviation from §2.1, with the reason (naming the line).
        """
        what = "evidence leaf"
        text = _decode_text(b, what)
        lines = text[:-1].split("\n")
        if lines[0] != _LEAF_V2_HEADER:
            raise FormatError(f"{what}: wrong header line: expected {_LEAF_V2_HEADER!r}, found {lines[0]!r}")
        pairs: list[tuple[int, str, str]] = []
        for number, line in enumerate(lines[1:], start=2):
            key, sep, value = line.partition(" ")
            if not sep or key == "" or value == "" or " " in value:
                raise FormatError(f"{what}: line {number} must be '<key> <value>' with one space, found {line!r}")
            pairs.append((number, key, value))
        fixed = ("id", "sha256", "received")
        if len(pairs) < 3 or tuple(k for _, k, _ in pairs[:3]) != fixed:
            found = [k for _, k, _ in pairs[:3]]
            raise FormatError(f"{what}: lines 2-4 must be id, sha256 and received, found {found}")
        try:
            id_ = check_evidence_id(pairs[0][2])
            digest = parse_sha256_hex(pairs[1][2])
            received = parse_time(pairs[2][2])
        except FormatError as e:
            raise FormatError(f"{what}: {e.reason}") from None
        rest = pairs[3:]
        digests: list[tuple[str, bytes]] = []
        while rest and rest[0][1] not in LEAF_V2_KEYS:
            number, name, value = rest.pop(0)
            if _LOWER_HEX_RE.fullmatch(value) is None:
                raise FormatError(f"{what}: line {number} ({name}): a digest must be 64-128 lowercase hex digits")
            if digests and name <= digests[-1][0]:
                raise FormatError(
                    f"{what}: line {number}: digest lines must be sorted by algorithm name, each at most once "
                    f"({name!r} after {digests[-1][0]!r})"
                )
            try:
                check_digest_line(name, bytes.fromhex(value))
            except FormatError as e:
                raise FormatError(f"{what}: line {number}: {e.reason}") from None
            digests.append((name, bytes.fromhex(value)))
        optional = ("label-sha256", "case", "phase", "phase-name-sha256", "cosigns", "attestation")
        seen: dict[str, str] = {}
        position = 0
        for number, key, value in rest:
            if key not in optional:
                raise FormatError(f"{what}: line {number}: unknown line {key!r} (or a digest line out of place)")
            at = optional.index(key)
            if at < position:
                raise FormatError(
                    f"{what}: line {number}: {key!r} is repeated or out of order (order: {', '.join(optional)})"
                )
            position = at + 1
            seen[key] = value
        case_keys = [k for k in ("case", "phase", "phase-name-sha256") if k in seen]
        if case_keys and len(case_keys) != 3:
            raise FormatError(f"{what}: the case lines case, phase and phase-name-sha256 come all three or none")
        try:
            label = _hex32(seen, "label-sha256")
            attestation = _hex32(seen, "attestation")
            case = None
            if case_keys:
                phase = _parse_uint("phase", seen["phase"])
                if phase == 0:
                    raise FormatError("phase is 0; phases are numbered from 1")
                case = CaseRef(seen["case"], phase, parse_sha256_hex(seen["phase-name-sha256"]))
            cosigns = seen.get("cosigns")
            if cosigns is not None:
                check_evidence_id(cosigns)
            return cls(id_, digest, received, tuple(digests), label, case, cosigns, attestation)
        except FormatError as e:
            raise FormatError(f"{what}: {e.reason}") from None


def claim_lines(
    sha256: bytes,
    digests: tuple[tuple[str, bytes], ...] = (),
    label_sha256: bytes | None = None,
    case: CaseRef | None = None,
    cosigns: str | None = None,
) -> list[str]:
    """The SPEC §2.1 lines from ``sha256`` to ``cosigns`` (no ``received``): what a leaf and its statement share."""
    lines = [f"sha256 {sha256.hex()}"]
    lines += [f"{name} {value.hex()}" for name, value in sorted(digests)]
    if label_sha256 is not None:
        lines.append(f"label-sha256 {label_sha256.hex()}")
    if case is not None:
        lines += [f"case {case.id}", f"phase {case.phase}", f"phase-name-sha256 {case.phase_name_sha256.hex()}"]
    if cosigns is not None:
        lines.append(f"cosigns {cosigns}")
    return lines


def _hex32(seen: dict[str, str], key: str) -> bytes | None:
    if key not in seen:
        return None
    try:
        return parse_sha256_hex(seen[key])
    except FormatError as e:
        raise FormatError(f"{key}: {e.reason}") from None


def leaf_version(b: bytes) -> str | None:
    """The version named by a leaf's first line (``v1``, ``v2``, ``v3``...), or None if it names none."""
    first = bytes(b).split(b"\n", 1)[0]
    try:
        m = _LEAF_VERSION_RE.fullmatch(first.decode("ascii"))
    except UnicodeDecodeError:
        return None
    return m[1] if m else None


def leaf_of_columns(
    evidence_id: str,
    sha256: bytes,
    received: datetime,
    *,
    v2: bool,
    label: str | None = None,
    case_id: str | None = None,
    phase: int | None = None,
    phase_name: str | None = None,
    cosigns: str | None = None,
    attestation: bytes | None = None,
    sm3: bytes | None = None,
) -> Leaf | LeafV2:
    """The leaf of a deposit from its stored values: v1 (SPEC §2) unless ``v2``; then the label, the phase name and
    the attestation are bound by their SHA-256 (SPEC §2.1), and ``sm3`` (the file's SM3) by an ``sm3`` digest line.

    :raise FormatError: a value that cannot be in a leaf (e.g. a label with a lone surrogate, a case without phase).
    """
    if not v2:
        return Leaf(evidence_id, sha256, received)
    case = None
    if case_id is not None or phase is not None or phase_name is not None:
        if case_id is None or phase is None or phase_name is None:
            raise FormatError("a case needs its id, phase number and phase name")
        case = CaseRef(case_id, phase, text_sha256(phase_name))
    return LeafV2(
        evidence_id,
        sha256,
        received,
        label_sha256=None if label is None else text_sha256(label),
        case=case,
        cosigns=cosigns,
        attestation_sha256=None if attestation is None else hashlib.sha256(attestation).digest(),
        digests=() if sm3 is None else (("sm3", sm3),),
    )
