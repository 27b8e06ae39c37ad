"""SM3 (GB/T 32905-2016) and the one-pass SHA-256 + SM3 stream hashing of service.core.hashing.

Independent implementation: the ``openssl`` command line (``openssl dgst -sm3``) on files from 0 bytes to
100 MB, and the standard's own example vectors (GB/T 32905-2016 appendix A).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from service.core import hashing
from service.core.errors import PayloadTooLarge

OPENSSL = shutil.which("openssl")


def test_gbt32905_example_1_abc() -> None:
    assert hashing.sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_gbt32905_example_2_64_bytes() -> None:
    assert hashing.sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_both_implementations_agree() -> None:
    """hashlib's SM3 (when Python's OpenSSL has it) and cryptography's give the same digests."""
    data = os.urandom(100_000)
    ours = hashing._CryptographySM3()
    ours.update(memoryview(data))
    assert ours.digest() == hashing.sm3(data)


def _openssl_sm3(path: Path) -> bytes:
    assert OPENSSL is not None
    out = subprocess.run([OPENSSL, "dgst", "-sm3", "-r", str(path)], check=True, capture_output=True, text=True)
    return bytes.fromhex(out.stdout.split()[0])


SIZES = [0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1]
SIZES += [(4 << 20) + 1, (5 << 20) + 12345, 17 << 20]


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
@pytest.mark.parametrize("size", SIZES)
def test_matches_openssl_dgst(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    d = hashing.file_digests(path, sm3=True)
    assert d.size == size
    assert d.sm3 == _openssl_sm3(path)
    assert d.sha256 == hashlib.sha256(path.read_bytes()).digest()


@pytest.mark.slow
@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
def test_matches_openssl_dgst_100_mb(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(100):
            f.write(block[i:] + block[:i])  # 100 MiB, not one block repeated verbatim
    d = hashing.file_digests(path, sm3=True)
    assert d.size == 100 << 20
    assert d.sm3 == _openssl_sm3(path)
    with open(path, "rb") as f:
        assert d.sha256 == hashlib.file_digest(f, "sha256").digest()


class _ReadOnly:
    """A stream without ``readinto`` (only ``read``), uneven chunk sizes, as some WSGI inputs are."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        n = min(n, 777_777) if n >= 0 else len(self._data)
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk


@pytest.mark.parametrize("size", [0, 10, (6 << 20) + 3])
def test_stream_without_readinto(size: int) -> None:
    data = os.urandom(size)
    d = hashing.digest_stream(_ReadOnly(data), sm3=True)  # type: ignore[arg-type]
    assert (d.sha256, d.sm3, d.size) == (hashlib.sha256(data).digest(), hashing.sm3(data), size)


def test_without_sm3_has_none() -> None:
    d = hashing.digest_stream(io.BytesIO(b"x" * 10))
    assert d.sm3 is None and d.sha256 == hashlib.sha256(b"x" * 10).digest()


@pytest.mark.parametrize("sm3", [False, True])
def test_limit_stops_reading(sm3: bool) -> None:
    stream = io.BytesIO(b"\0" * (9 << 20))
    with pytest.raises(PayloadTooLarge):
        hashing.digest_stream(stream, limit=(6 << 20), sm3=sm3)
    assert stream.tell() <= 7 << 20  # stopped at the chunk that crossed the limit


def test_sha256_stream_unchanged() -> None:
    data = os.urandom(3 << 20)
    assert hashing.sha256_stream(io.BytesIO(data)) == (hashlib.sha256(data).digest(), len(data))
