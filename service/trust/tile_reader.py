"""Reading a ledger through its C2SP tlog-tiles (SPEC §10), over HTTP(S) or from a directory.

Owns: fetching ``checkpoint``, hash tiles and entry bundles under a monitoring prefix (``<public URL>/log``, a
static mirror's URL, or a local directory such as ``evidence tiles export`` writes), choosing the tile widths a
checkpoint of a given size implies, and checking each bundle and level-0 tile against the entries it holds.
Used by ``evidence monitor --tiles`` and ``evidence mirror``. Must not import: Flask, SQLAlchemy, Celery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import requests

from service.core.errors import EvidenceError, FormatError, LogInconsistency
from service.core.formats import Checkpoint
from service.core.tiles import HEIGHT, WIDTH, Tile, parse_entry_bundle

__all__ = ["TileReader", "TilesUnavailable", "checkpoint_of"]

TIMEOUT = 15.0
MAX_TILE = WIDTH * 70_000  # an entry bundle of 256 entries of at most 64 KiB each, with margin


class TilesUnavailable(EvidenceError):
    """The tiles could not be read (unreachable, 404, unreadable file): not evidence of tampering."""


def checkpoint_of(note: bytes) -> Checkpoint:
    """The checkpoint body of a signed note. :raise LogInconsistency: not a checkpoint note."""
    split = note.rfind(b"\n\n")
    if split < 0:
        raise LogInconsistency("the checkpoint served is not a signed note (no blank line before signatures)")
    try:
        return Checkpoint.from_bytes(note[: split + 1])
    except FormatError as exc:
        raise LogInconsistency(f"the checkpoint served does not parse: {exc.reason}") from None


class TileReader:
    """Tiles under ``base``: an ``http(s)://`` monitoring prefix or a directory (``file://`` or a plain path)."""

    def __init__(self, base: str, session: requests.Session | None = None, *, store: Path | None = None) -> None:
        """``store``: also write every tile read to this directory (the mirror's copy; the checkpoint is not)."""
        self.base = base.rstrip("/")
        self.store = store
        self.remote = self.base.startswith(("http://", "https://"))
        self.directory = None if self.remote else Path(self.base.removeprefix("file://"))
        self.session = session or requests.Session()
        self.fetched = 0  # files read, for reports and tests

    def _read(self, path: str) -> bytes:
        """The bytes of ``path`` (``checkpoint`` or ``tile/...``). :raise TilesUnavailable: missing or unreachable."""
        self.fetched += 1
        if self.directory is not None:
            try:
                return (self.directory / path).read_bytes()
            except OSError as exc:
                raise TilesUnavailable(f"cannot read {self.directory / path}: {exc.strerror}") from None
        url = f"{self.base}/{path}"
        try:
            with self.session.get(url, timeout=TIMEOUT, stream=True) as response:
                if response.status_code != 200:
                    raise TilesUnavailable(f"{url} answered HTTP {response.status_code}")
                data = response.raw.read(MAX_TILE + 1, decode_content=True)
        except requests.RequestException as exc:
            raise TilesUnavailable(f"{url} could not be reached: {exc}") from None
        if len(data) > MAX_TILE:
            raise TilesUnavailable(f"{url} is larger than any tile")
        return bytes(data)

    def checkpoint(self) -> bytes:
        return self._read("checkpoint")

    def read(self, path: str) -> bytes:
        data = self._read(path)
        if self.store is not None:
            _write_file(self.store / path, data)
        return data

    def entries(self, start: int, end: int, size: int) -> Iterator[bytes]:
        """Entries [start, end) of the tree of ``size`` leaves, from its entry bundles, each checked against the
        level-0 hash tile of the same index (the leaf hashes must be the entries' RFC 6962 leaf hashes).

        :raise LogInconsistency: a bundle with the wrong number of entries, or a hash tile that disagrees.
        :raise TilesUnavailable: a tile cannot be read.
        """
        if not (0 <= start <= end <= size):
            raise ValueError(f"need 0 <= start <= end <= size, got {start}, {end}, {size}")
        n = start // WIDTH
        while n * WIDTH < end:
            width = min(WIDTH, size - n * WIDTH)
            bundle = Tile(-1, n, width)
            try:
                items = parse_entry_bundle(self.read(bundle.path))
            except FormatError as exc:
                raise LogInconsistency(f"{bundle.path} is not an entry bundle: {exc.reason}") from None
            if len(items) != width:
                raise LogInconsistency(f"{bundle.path} holds {len(items)} entries, expected {width}")
            hashes = self.read(Tile(0, n, width).path)
            expected = b"".join(hashlib.sha256(b"\x00" + e).digest() for e in items)
            if hashes != expected:
                raise LogInconsistency(f"{Tile(0, n, width).path} does not hold the leaf hashes of {bundle.path}")
            first = n * WIDTH
            for i, item in enumerate(items):
                if start <= first + i < end:
                    yield item
            n += 1

    def hash_tile(self, level: int, index: int, size: int) -> bytes:
        """The hash tile (``level``, ``index``) of the tree of ``size`` leaves, with the width that size implies."""
        count = size >> (HEIGHT * level)
        width = min(WIDTH, count - index * WIDTH)
        if width <= 0:
            raise ValueError(f"a tree of {size} leaves has no tile {level}/{index}")
        return self.read(Tile(level, index, width).path)


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never a half-written tile)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
