"""C2SP tlog-tiles paths and tile sets (SPEC §10)."""

from __future__ import annotations

import pytest

from service.core.errors import FormatError
from service.core.tiles import (
    Tile,
    encode_index,
    entry_bundle,
    parse_entry_bundle,
    parse_tile_path,
    tiles_between,
    tiles_for_size,
)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "000"),
        (5, "005"),
        (999, "999"),
        (1000, "x001/000"),
        (1234067, "x001/x234/067"),
        (10**9, "x001/x000/x000/000"),
    ],
)
def test_index_encoding(n: int, text: str) -> None:
    assert encode_index(n) == text
    assert parse_tile_path(f"tile/0/{text}") == Tile(0, n)


def test_paths_round_trip() -> None:
    for tile in [Tile(0, 0), Tile(1, 1234067, 17), Tile(-1, 5, 255), Tile(-1, 1000)]:
        assert parse_tile_path(tile.path) == tile
    assert Tile(-1, 3, 7).path == "tile/entries/003.p/7"
    assert Tile(2, 0, 1).path == "tile/2/000.p/1"


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/5",
        "tile/0/0005",
        "tile/0/x000/005",
        "tile/0/001.p/0",
        "tile/0/001.p/256",
        "tile/0/001.p/07",
        "tile/00/001",
        "tile/-1/001",
        "tile/entries",
        "tile/0/y001/001",
        "tiles/0/001",
        "tile/0/001/",
        "tile/0/x01/001",
    ],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(FormatError):
        parse_tile_path(path)


def test_tiles_of_a_size_and_between_sizes() -> None:
    paths = [t.path for t in tiles_for_size(70_000)]
    assert len([p for p in paths if p.startswith("tile/entries/")]) == 274
    assert paths[-3:] == ["tile/1/000", "tile/1/001.p/17", "tile/2/000.p/1"]
    assert "tile/0/273.p/112" in paths and "tile/entries/273.p/112" in paths
    assert tiles_for_size(0) == []
    assert [t.path for t in tiles_for_size(1)] == ["tile/entries/000.p/1", "tile/0/000.p/1"]
    assert [t.path for t in tiles_between(256, 257)] == ["tile/entries/001.p/1", "tile/0/001.p/1"]
    assert [t.path for t in tiles_between(255, 256)] == ["tile/entries/000", "tile/0/000", "tile/1/000.p/1"]
    assert tiles_between(300, 300) == []
    # every tile of the big tree is in exactly one incremental step
    steps = [0, 1, 255, 256, 4000, 65536, 65537, 70_000]
    union = [t for a, b in zip(steps, steps[1:], strict=False) for t in tiles_between(a, b)]
    assert {t for t in union if t.full} == {t for t in tiles_for_size(70_000) if t.full}
    assert set(tiles_for_size(70_000)) <= set(union)


def test_entry_bundles() -> None:
    entries = [b"", b"a" * 300, b"\n" * 5]
    assert parse_entry_bundle(entry_bundle(entries)) == entries
    with pytest.raises(FormatError):
        parse_entry_bundle(b"\x00\x05abc")
