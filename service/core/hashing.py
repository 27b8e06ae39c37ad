"""Stream bytes into SHA-256 in chunks, never holding a whole file in memory.

Owns: reading a binary stream or a file into a SHA-256 digest with a bounded, reused buffer.
Must not import: anything outside the standard library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO, Protocol

from service.core.errors import PayloadTooLarge

CHUNK_SIZE = 1024 * 1024


class _ReadInto(Protocol):
    def readinto(self, buffer: bytearray | memoryview) -> int | None: ...


def sha256_stream(stream: BinaryIO, *, limit: int | None = None, chunk_size: int = CHUNK_SIZE) -> tuple[bytes, int]:
    """Hash ``stream`` to its end and return ``(digest, number_of_bytes)``.

    One buffer of ``chunk_size`` bytes is reused for the whole stream (``readinto`` where the stream has it), so
    memory stays flat whatever the size.

    :raise PayloadTooLarge: the stream holds more than ``limit`` bytes (the rest is not read).
    """
    h = hashlib.sha256()
    total = 0
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(view)
            if not n:
                break
            chunk: bytes | memoryview = view[:n]
        else:
            data = stream.read(chunk_size)
            if not data:
                break
            n = len(data)
            chunk = data
        total += n
        if limit is not None and total > limit:
            raise PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes")
        h.update(chunk)
    return h.digest(), total


def sha256_file(path: str | Path) -> bytes:
    """Return the SHA-256 of the file at ``path`` (read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()
