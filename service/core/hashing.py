"""Stream bytes into SHA-256 (and SM3, GB/T 32905) in chunks, never holding a whole file in memory.

Owns: reading a binary stream or a file into its SHA-256 digest, and optionally its SM3 digest in the same pass,
with bounded, reused buffers.
Must not import: anything outside the standard library but ``cryptography`` (SM3 where Python's OpenSSL lacks it).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from service.core.errors import PayloadTooLarge

CHUNK_SIZE = 1024 * 1024
# Below this many bytes the SM3 helper thread costs more than it saves: hash serially.
_OVERLAP_FROM = 4 * CHUNK_SIZE


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _CryptographySM3:
    """``cryptography``'s SM3 with hashlib's ``update``/``digest`` names (used only if hashlib has no SM3)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import hashes

        self._h = hashes.Hash(hashes.SM3())

    def update(self, data: bytes | memoryview, /) -> None:
        self._h.update(bytes(data) if isinstance(data, memoryview) else data)

    def digest(self) -> bytes:
        return self._h.finalize()


def new_sm3() -> _Hash:
    """A new SM3 hash object: OpenSSL's through hashlib (it releases the GIL on large updates), else cryptography's."""
    if "sm3" in hashlib.algorithms_available:
        try:
            return hashlib.new("sm3")
        except ValueError:  # listed but refused (e.g. an OpenSSL FIPS configuration)
            pass
    return _CryptographySM3()


def sm3(data: bytes) -> bytes:
    """SM3 (GB/T 32905) of ``data``: 32 bytes."""
    h = new_sm3()
    h.update(data)
    return h.digest()


@dataclass(frozen=True)
class Digests:
    """The digests of one stream: SHA-256 always, SM3 when asked for, and its length in bytes."""

    sha256: bytes
    sm3: bytes | None
    size: int


def digest_stream(
    stream: BinaryIO, *, limit: int | None = None, sm3: bool = False, chunk_size: int = CHUNK_SIZE
) -> Digests:
    """Hash ``stream`` to its end with SHA-256 (and SM3 when ``sm3``), reading each byte once.

    Memory stays flat: two buffers of ``chunk_size`` bytes are reused for the whole stream (``readinto`` where the
    stream has it). With SM3, once the stream is larger than a few chunks, SM3 of chunk i runs in a helper thread
    while this thread hashes chunk i with SHA-256 and reads chunk i+1 into the other buffer (hashlib releases the
    GIL on large buffers, so two cores work at once: bench/bench_sm3.py).

    :raise PayloadTooLarge: the stream holds more than ``limit`` bytes (the rest is not read).
    """
    h = hashlib.sha256()
    s = new_sm3() if sm3 else None
    total = 0
    buffers = [bytearray(chunk_size), bytearray(chunk_size if sm3 else 0)]
    views = [memoryview(b) for b in buffers]
    readinto = getattr(stream, "readinto", None)
    pool: ThreadPoolExecutor | None = None
    pending: Future[None] | None = None
    turn = 0
    try:
        while True:
            if readinto is not None:
                n = readinto(views[turn])
                if not n:
                    break
                chunk: bytes | memoryview = views[turn][:n]
            else:
                data = stream.read(chunk_size)
                if not data:
                    break
                n = len(data)
                chunk = data
            total += n
            if limit is not None and total > limit:
                raise PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes")
            if s is not None:
                if pending is not None:
                    pending.result()  # the other buffer is free again once its SM3 is done
                    pending = None
                if pool is None and total > _OVERLAP_FROM:
                    pool = ThreadPoolExecutor(1, thread_name_prefix="sm3")
                if pool is not None:
                    pending = pool.submit(s.update, chunk)
                    turn ^= 1  # read the next chunk into the other buffer while SM3 reads this one
                else:
                    s.update(chunk)
            h.update(chunk)
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return Digests(h.digest(), s.digest() if s is not None else None, total)


def sha256_stream(stream: BinaryIO, *, limit: int | None = None, chunk_size: int = CHUNK_SIZE) -> tuple[bytes, int]:
    """Hash ``stream`` to its end and return ``(SHA-256 digest, number_of_bytes)`` (see ``digest_stream``).

    :raise PayloadTooLarge: the stream holds more than ``limit`` bytes (the rest is not read).
    """
    d = digest_stream(stream, limit=limit, chunk_size=chunk_size)
    return d.sha256, d.size


def sha256_file(path: str | Path) -> bytes:
    """Return the SHA-256 of the file at ``path`` (read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def file_digests(path: str | Path, *, sm3: bool = False) -> Digests:
    """SHA-256 (and SM3 when ``sm3``) of the file at ``path``, in one pass."""
    with open(path, "rb") as f:
        return digest_stream(f, sm3=sm3)
