"""What a receipt says, read tolerantly for display, and how times, numbers and fingerprints are printed.

Owns: ``read_receipt`` (SPEC §6 JSON to a ``ReceiptView`` of the fields the documents print, preferring the
signed leaf and entry bytes over their JSON copies, never raising on a broken receipt), fingerprints (SPEC §4)
and the UTC/local rendering of times. Shared by the certificate (``certificate``) and the report (``report``).

This module *displays*; it proves nothing: checking is ``service.core.verify``'s job.

Must not import: fpdf, or anything in ``service`` but ``core.errors`` and ``core.hashing`` (SM3 fingerprints).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.core.errors import FormatError
from service.core.hashing import sm3

# SPEC §4.1: the SM2 signature type bytes that start an SM2 verifier key's material.
_SM2_TYPE = bytes.fromhex("ff06082a811ccf55018375")


@dataclass(frozen=True)
class ReceiptView:
    evidence_id: str | None
    sha256: str | None
    received: str | None
    batch_seq: int | None
    batch_size: int | None
    batch_index: int | None
    sealed: str | None
    origin: str | None
    checkpoint_size: int | None
    signature_key_hashes: tuple[str, ...]
    keys: tuple[str, ...]
    token_count: int
    # receipt v2 (SPEC §6.1); None for v1
    format: str | None = None
    label: str | None = None
    case_id: str | None = None
    phase: int | None = None
    phase_name: str | None = None


def as_mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def as_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def as_base64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _text_digest(text: str) -> str | None:
    try:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        return None


def _lines(data: bytes | None) -> dict[str, str]:
    """``key value`` lines of a leaf (SPEC §2) or ledger entry (SPEC §3) as a dict."""
    if data is None:
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n")[1:]:
        key, sep, value = line.partition(" ")
        if sep and key not in fields:
            fields[key] = value
    return fields


def read_receipt(receipt: Mapping[str, object]) -> ReceiptView:
    evidence, batch, ledger = (
        as_mapping(receipt.get("evidence")),
        as_mapping(receipt.get("batch")),
        as_mapping(receipt.get("ledger")),
    )
    # The leaf and entry bytes are what is hashed and signed, so they win over the JSON copies.
    leaf = _lines(as_base64(evidence.get("leaf")))
    entry = _lines(as_base64(ledger.get("entry")))

    origin: str | None = None
    checkpoint_size: int | None = None
    sig_hashes: list[str] = []
    note = as_text(ledger.get("checkpoint"))
    if note is not None:
        body, _, signatures = note.partition("\n\n")
        body_lines = body.split("\n")
        origin = body_lines[0] or None
        checkpoint_size = as_int(body_lines[1]) if len(body_lines) > 1 else None
        for line in signatures.split("\n"):
            if line.startswith("\u2014 "):
                parts = line.split(" ")
                sig = as_base64(parts[-1]) if len(parts) >= 3 else None
                if sig is not None and len(sig) >= 4:
                    sig_hashes.append(sig[:4].hex())

    keys_value = receipt.get("keys")
    keys = tuple(k for k in keys_value if isinstance(k, str)) if isinstance(keys_value, list) else ()
    stamps = receipt.get("timestamps")
    token_count = len(stamps) if isinstance(stamps, list) else 0

    # Receipt v2: the label and the phase name only as the leaf binds them (by their SHA-256).
    fmt = as_text(receipt.get("format"))
    label = as_text(evidence.get("label"))
    if label is not None and _text_digest(label) != leaf.get("label-sha256"):
        label = None
    case = as_mapping(evidence.get("case"))
    phase_name = as_text(case.get("phase_name"))
    if phase_name is not None and _text_digest(phase_name) != leaf.get("phase-name-sha256"):
        phase_name = None
    case_id = as_text(leaf.get("case"))
    return ReceiptView(
        format=fmt,
        label=label,
        case_id=case_id,
        phase=as_int(leaf.get("phase")) if case_id else None,
        phase_name=phase_name if case_id else None,
        evidence_id=as_text(leaf.get("id")) or as_text(evidence.get("id")),
        sha256=as_text(leaf.get("sha256")) or as_text(evidence.get("sha256")),
        received=as_text(leaf.get("received")) or as_text(evidence.get("received_at")),
        batch_seq=as_int(entry.get("seq")) if "seq" in entry else as_int(batch.get("seq")),
        batch_size=as_int(entry.get("size")) if "size" in entry else as_int(batch.get("size")),
        batch_index=as_int(batch.get("index")),
        sealed=as_text(entry.get("sealed")),
        origin=origin,
        checkpoint_size=checkpoint_size,
        signature_key_hashes=tuple(sig_hashes),
        keys=keys,
        token_count=token_count,
    )


def format_fingerprint(value: str | bytes) -> str:
    """A fingerprint (SPEC §4) in groups of four: from 32 raw bytes, or from 64 hex digits with or without
    spaces. :raise FormatError: anything else."""
    if isinstance(value, bytes):
        if len(value) != 32:
            raise FormatError(f"a fingerprint is 32 bytes, found {len(value)}")
        digits = value.hex()
    else:
        digits = "".join(value.split()).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            raise FormatError(f"a fingerprint is 64 hex digits (spaces allowed), found {value!r}")
    return " ".join(digits[i : i + 4] for i in range(0, 64, 4))


def vkey_fingerprint(vkey: str) -> tuple[str, str, str] | None:
    """(name, key hash hex, fingerprint) of a verifier key string (SPEC §4), or None if it is not one."""
    parts = vkey.strip().split("+", 2)  # base64 has "+" too: split off name and key hash only
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        return None
    raw = as_base64(parts[2])
    if raw is None or len(raw) != 33 or raw[0] != 0x01:
        return None
    return parts[0], parts[1], format_fingerprint(hashlib.sha256(raw[1:]).digest())


@dataclass(frozen=True)
class Sm2KeyHint:
    """An SM2 verifier key (SPEC §4.1) from the receipt's ``keys`` hint that signed its checkpoint."""

    fingerprint: str  # SHA-256 of the 65-byte point, groups of four
    fingerprint_sm3: str  # SM3 of the 65-byte point, groups of four
    distid: str


def sm2_hint(view: ReceiptView) -> Sm2KeyHint | None:
    """The hinted SM2 key whose key hash signed the checkpoint (named after the origin), if any. Display only:
    whether its signature verifies is ``service.core.verify``'s job."""
    for vkey in view.keys:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
            continue
        raw = as_base64(parts[2])
        if raw is None or not raw.startswith(_SM2_TYPE) or len(raw) < len(_SM2_TYPE) + 66:
            continue
        if parts[1] not in view.signature_key_hashes or (view.origin is not None and parts[0] != view.origin):
            continue
        point, distid = raw[len(_SM2_TYPE) : len(_SM2_TYPE) + 65], raw[len(_SM2_TYPE) + 65 :]
        return Sm2KeyHint(
            format_fingerprint(hashlib.sha256(point).digest()),
            format_fingerprint(sm3(point)),
            distid.decode("ascii", "backslashreplace"),
        )
    return None


def hint_fingerprint(view: ReceiptView) -> str | None:
    """The fingerprint of the hinted key that signed the checkpoint (by key hash and name), if any."""
    parsed = [p for p in (vkey_fingerprint(k) for k in view.keys) if p is not None]
    for name, key_hash, fingerprint in parsed:
        if key_hash in view.signature_key_hashes and (view.origin is None or name == view.origin):
            return fingerprint
    for name, _, fingerprint in parsed:
        if name == view.origin:
            return fingerprint
    return parsed[0][2] if parsed else None


# --- times ---------------------------------------------------------------------------------------


def zone_named(local_tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(local_tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FormatError(f"unknown time zone {local_tz!r} (expected an IANA name like Asia/Shanghai)") from exc


def _parse_time(value: str | datetime | None) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _offset(dt: datetime) -> str:
    delta = dt.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def time_lines(value: str | datetime | None, zone: ZoneInfo) -> list[str]:
    """UTC and local renderings of a time. Microseconds are kept: rounding "no later than" down to the
    second would claim a little more than the ledger proves."""
    dt = _parse_time(value)
    if dt is None:
        return [str(value) if value else "—"]
    utc = dt.astimezone(UTC)
    local = dt.astimezone(zone)
    fmt = "%Y-%m-%d %H:%M:%S.%f" if utc.microsecond else "%Y-%m-%d %H:%M:%S"
    return [f"{utc.strftime(fmt)} UTC", f"{local.strftime(fmt)} {zone.key} ({_offset(local)})"]


def num(value: int | None) -> str:
    return f"{value:,}" if value is not None else "—"
