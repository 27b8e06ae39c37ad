"""How the ledger tables store values, and back: times as microseconds since the epoch, hash lists as blobs.

Owns: the only encoders/decoders of stored forms, so use cases and trust tools never handle them themselves.
Must not import: anything above storage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["from_us", "join_hashes", "split_hashes", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(dt: datetime) -> int:
    """Microseconds since the Unix epoch (how times are stored)."""
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    """The aware UTC datetime stored as ``us`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def split_hashes(blob: bytes) -> list[bytes]:
    """A stored run of 32-byte hashes, as a list."""
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


def join_hashes(hashes: list[bytes]) -> bytes:
    """A list of 32-byte hashes, as stored."""
    return b"".join(hashes)
