"""C2SP tlog-tiles paths and contents (SPEC §10): tile height 8, hash tiles and entry bundles.

Owns: ``<N>`` path encoding (groups of three digits, all but the last prefixed with ``x``), parsing a tile path
strictly, which tiles a tree of a given size has (full and partial), and the entry-bundle byte format (each
entry's §3 bytes as a 2-byte big-endian length and the bytes).
Must not import: anything but the standard library and ``service.core.errors``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from service.core.errors import FormatError

__all__ = [
    "HEIGHT",
    "WIDTH",
    "Tile",
    "encode_index",
    "entry_bundle",
    "parse_entry_bundle",
    "parse_tile_path",
    "tiles_for_size",
    "tiles_between",
]

HEIGHT = 8
WIDTH = 1 << HEIGHT  # 256 hashes (or entries) in a full tile
_GROUP = re.compile(r"x\d{3}")
_LAST = re.compile(r"\d{3}")
_WIDTH = re.compile(r"[1-9]\d{0,2}")
_LEVEL = re.compile(r"0|[1-9]\d{0,1}")


def encode_index(n: int) -> str:
    """``1234067`` -> ``x001/x234/067`` (C2SP tlog-tiles)."""
    if n < 0:
        raise ValueError("a tile index is not negative")
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


@dataclass(frozen=True, order=True)
class Tile:
    """A hash tile (``level`` >= 0) or an entry bundle (``level`` == -1, written ``entries``), with its index and
    width (256 for a full tile)."""

    level: int
    index: int
    width: int = WIDTH

    @property
    def full(self) -> bool:
        return self.width == WIDTH

    @property
    def is_entries(self) -> bool:
        return self.level < 0

    @property
    def path(self) -> str:
        """The path under the monitoring prefix: ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``."""
        head = "tile/entries" if self.is_entries else f"tile/{self.level}"
        tail = "" if self.full else f".p/{self.width}"
        return f"{head}/{encode_index(self.index)}{tail}"


def parse_tile_path(path: str) -> Tile:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` strictly (no leading zeros, 1 <= W <= 255).

    :raise FormatError: anything else.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise FormatError(f"not a tile path: {path!r}")
    kind = parts[1]
    if kind == "entries":
        level = -1
    elif _LEVEL.fullmatch(kind) and int(kind) <= 63:
        level = int(kind)
    else:
        raise FormatError(f"bad tile level {kind!r} in {path!r}")
    rest = parts[2:]
    width = WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or not (1 <= int(rest[-1]) < WIDTH):
            raise FormatError(f"bad partial width {rest[-1]!r} in {path!r} (1 to 255)")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    if not rest or not _LAST.fullmatch(rest[-1]) or not all(_GROUP.fullmatch(g) for g in rest[:-1]):
        raise FormatError(f"bad tile index in {path!r}: groups of three digits, all but the last prefixed 'x'")
    digits = "".join(g.lstrip("x") for g in rest)
    if len(rest) > 1 and rest[0] == "x000":
        raise FormatError(f"tile index in {path!r} has a leading zero group")
    index = int(digits)
    tile = Tile(level, index, width)
    if tile.path != path:
        raise FormatError(f"non-canonical tile path {path!r} (expected {tile.path!r})")
    return tile


def _counts(size: int) -> Iterator[tuple[int, int]]:
    """(level, number of hashes at that level) for every tile level of a tree of ``size``, entries (-1) first."""
    yield -1, size
    level = 0
    while size >> (HEIGHT * level):
        yield level, size >> (HEIGHT * level)
        level += 1


def tiles_for_size(size: int) -> list[Tile]:
    """Every tile and entry bundle of a tree of ``size`` leaves (C2SP tlog-tiles)."""
    return tiles_between(0, size)


def tiles_between(old: int, new: int) -> list[Tile]:
    """The tiles of the tree of ``new`` leaves that the tree of ``old`` leaves lacks: the full tiles completed
    since, and the new partial ones (what an incremental export writes). Each level holds ``size >> 8·L`` hashes."""
    if not (0 <= old <= new):
        raise ValueError(f"need 0 <= old <= new, got {old}, {new}")
    out: list[Tile] = []
    for level, count in _counts(new):
        before = old >> (HEIGHT * level) if level >= 0 else old
        out += [Tile(level, n) for n in range(before // WIDTH, count // WIDTH)]
        if count % WIDTH and count != before:
            out.append(Tile(level, count // WIDTH, count % WIDTH))
    return out


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries as a bundle: each as a 2-byte big-endian length then its bytes."""
    out = bytearray()
    for e in entries:
        if len(e) > 0xFFFF:
            raise ValueError(f"an entry of {len(e)} bytes does not fit a 2-byte length")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """The entries of a bundle. :raise FormatError: a length running past the end."""
    out: list[bytes] = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise FormatError(f"entry bundle: truncated length at byte {i}")
        (n,) = struct.unpack(">H", data[i : i + 2])
        if i + 2 + n > len(data):
            raise FormatError(f"entry bundle: entry at byte {i} runs past the end")
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return out
