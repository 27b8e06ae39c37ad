"""``digest_stream`` with its reader thread: order, short reads, errors and the limit (real streams, no mocks)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading

import pytest

from service.core import hashing
from service.core.errors import PayloadTooLarge


class ShortReads(io.RawIOBase):
    """A raw stream whose ``readinto`` returns random short reads, as a socket does."""

    def __init__(self, data: bytes, fail_at: int | None = None) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.fail_at = fail_at
        self.rng = random.Random(7)
        self.threads: set[str] = set()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and self.pos >= self.fail_at:
            raise ConnectionResetError("the client went away")
        n = min(len(b), len(self.data) - self.pos, self.rng.randint(1, 300_000))
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("sm3", [False, True])
def test_large_streams_are_read_ahead_in_another_thread_and_hash_in_order(sm3: bool) -> None:
    data = os.urandom((20 << 20) + 12345)
    stream = ShortReads(data)
    d = hashing.digest_stream(stream, sm3=sm3)  # type: ignore[arg-type]
    assert d.sha256 == hashlib.sha256(data).digest() and d.size == len(data)
    if sm3:
        assert d.sm3 == hashing.sm3(data)
    assert "digest-reader" in stream.threads  # the overlap did happen
    assert threading.active_count() < 10 and not any(t.name == "digest-reader" for t in threading.enumerate())


def test_a_read_error_in_the_reader_thread_is_raised_to_the_caller() -> None:
    stream = ShortReads(os.urandom(12 << 20), fail_at=9 << 20)
    with pytest.raises(ConnectionResetError):
        hashing.digest_stream(stream)  # type: ignore[arg-type]
    assert not any(t.name == "digest-reader" for t in threading.enumerate())


def test_the_limit_stops_the_reader_at_the_chunk_that_crosses_it() -> None:
    stream = io.BytesIO(b"\1" * (40 << 20))
    with pytest.raises(PayloadTooLarge):
        hashing.digest_stream(stream, limit=10 << 20)
    assert stream.tell() <= (11 << 20)
