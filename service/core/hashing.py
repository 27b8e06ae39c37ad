"""Stream bytes into SHA-256 (and SM3, GB/T 32905) in chunks, never holding a whole file in memory.

Owns: reading a binary stream or a file into its SHA-256 digest, and optionally its SM3 digest in the same pass,
with bounded, reused buffers.
Must not import: anything outside the standard library but ``cryptography`` (SM3 where Python's OpenSSL lacks it).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from service.core.errors import PayloadTooLarge

CHUNK_SIZE = 1024 * 1024
# Below this many bytes the SM3 helper thread costs more than it saves: hash serially.
_OVERLAP_FROM = 4 * CHUNK_SIZE
# Chunks the reader thread may have ready ahead of the hashing.
_AHEAD = 2


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

    Memory stays flat: a few buffers of ``chunk_size`` bytes are reused for the whole stream (``readinto`` where the
    stream has it). Once the stream is larger than a few chunks, reading and hashing overlap: a reader thread fills
    the next buffers while this thread hashes the current one with SHA-256 and (with ``sm3``) a helper thread
    hashes it with SM3. Reading a request body (a ``recv`` and the server's copies) and hashing both release the
    GIL or are short, so on two cores the cost is about the slower of the two instead of their sum
    (bench/bench_service.py part b, bench/bench_sm3.py). Every digest sees the chunks in stream order.

    :raise PayloadTooLarge: the stream holds more than ``limit`` bytes (the rest is not read).
    """
    digests: list[_Hash] = [hashlib.sha256()]
    if sm3:
        digests.append(new_sm3())
    chunks = _Chunks(stream, chunk_size, limit)
    overlapping = False
    pool: ThreadPoolExecutor | None = None
    try:
        for chunk in chunks:
            if not overlapping and chunks.total > _OVERLAP_FROM:
                overlapping = True
                chunks.read_ahead()
                if len(digests) > 1:
                    pool = ThreadPoolExecutor(len(digests) - 1, thread_name_prefix="digest")
            if pool is None:
                for d in digests:
                    d.update(chunk)
            else:
                # The other digests (SM3) in helper threads, SHA-256 here, on the same chunk at once.
                futures = [pool.submit(d.update, chunk) for d in digests[1:]]
                digests[0].update(chunk)
                for f in futures:
                    f.result()
            chunks.release(chunk)
    finally:
        chunks.close()
        if pool is not None:
            pool.shutdown(wait=True)
    return Digests(digests[0].digest(), digests[1].digest() if sm3 else None, chunks.total)


class _Chunks:
    """The chunks of a stream, in order: read here at first, then (``read_ahead``) by a reader thread that keeps
    up to ``_AHEAD`` chunks ready. With ``readinto`` the chunks are views of a ring of reused buffers, each given
    back by ``release`` once every digest has seen it."""

    def __init__(self, stream: BinaryIO, chunk_size: int, limit: int | None) -> None:
        self.stream = stream
        self.chunk_size = chunk_size
        self.limit = limit
        self.total = 0
        self._readinto = getattr(stream, "readinto", None)
        self._buffers = [bytearray(chunk_size)] if self._readinto is not None else []
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._ready: queue.Queue[memoryview | bytes | BaseException | None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._local: bytearray | None = self._buffers[0] if self._buffers else None

    def _read_one(self, buf: bytearray | None) -> memoryview | bytes | None:
        if buf is not None:
            assert self._readinto is not None
            view = memoryview(buf)
            n = self._readinto(view)
            return view[:n] if n else None
        data = self.stream.read(self.chunk_size)
        return data or None

    def __iter__(self) -> Iterator[memoryview | bytes]:
        while True:
            if self._ready is None:
                chunk = self._read_one(self._local)
            else:
                item = self._ready.get()
                if isinstance(item, BaseException):
                    raise item
                chunk = item
            if chunk is None:
                return
            self.total += len(chunk)
            if self.limit is not None and self.total > self.limit:
                raise PayloadTooLarge(f"the upload is larger than the limit of {self.limit} bytes")
            yield chunk

    def read_ahead(self) -> None:
        """From now on a reader thread reads the next chunks while the current one is hashed."""
        self._ready = queue.Queue(maxsize=_AHEAD)
        if self._readinto is not None:
            self._buffers.extend(bytearray(self.chunk_size) for _ in range(_AHEAD + 1))
            for b in self._buffers[1:]:
                self._free.put(b)
            self._local = None
        self._thread = threading.Thread(target=self._run, name="digest-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._ready is not None
        total = self.total
        try:
            while not self._stop.is_set():
                buf = self._free.get() if self._readinto is not None else None
                if self._stop.is_set():
                    return
                chunk = self._read_one(buf)
                self._ready.put(chunk)
                if chunk is None:
                    return
                total += len(chunk)
                if self.limit is not None and total > self.limit:
                    return  # the consumer refuses this chunk: nothing after it is read
        except BaseException as exc:  # handed to the hashing thread, raised there
            self._ready.put(exc)

    def release(self, chunk: memoryview | bytes) -> None:
        if self._thread is not None and isinstance(chunk, memoryview):
            buf = chunk.obj
            chunk.release()
            assert isinstance(buf, bytearray)
            self._free.put(buf)

    def close(self) -> None:
        """Stop the reader (after a limit or an error the rest of the stream is not read)."""
        if self._thread is None:
            return
        self._stop.set()
        self._free.put(bytearray(0))  # wakes a reader waiting for a buffer
        assert self._ready is not None
        while self._thread.is_alive():
            try:
                self._ready.get(timeout=0.05)  # makes room for a reader blocked on a full queue
            except queue.Empty:
                pass
        self._thread.join()


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
