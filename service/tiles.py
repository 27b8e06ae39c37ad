"""The ledger log as C2SP tlog-tiles (SPEC §10): reading tiles from storage and exporting the tree to a directory.

Owns: a tile's bytes (hashes of level 8·L from ``ledger_nodes``; entry bundles from ``batches``), whether the
ledger has a tile yet, and ``export_tiles`` (``evidence tiles export DIR [--since N]``): the same tree as
``/log/`` written to a directory, only the tiles new since the previous export, each file written to a temporary
name and renamed, the checkpoint last (so a static server never serves a checkpoint whose tiles are missing).
Must not import: Flask or Celery.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from service.config import Settings
from service.core.errors import FormatError, NotFound
from service.core.formats import Checkpoint
from service.core.tiles import HEIGHT, WIDTH, Tile, entry_bundle, parse_tile_path, tiles_between
from service.storage import db, ledger
from service.witnessing import checkpoint_with_cosignatures

__all__ = ["ExportReport", "export_tiles", "read_tile", "tile_bytes"]


def tile_bytes(conn: Connection, tile: Tile) -> bytes | None:
    """The bytes of ``tile``, or None if the ledger does not have that many hashes (or entries) yet.

    A partial tile of width W is served whenever its first W hashes exist (they never change afterwards)."""
    size = ledger.ledger_size(conn)
    count = size if tile.is_entries else size >> (HEIGHT * tile.level)
    start = tile.index * WIDTH
    if start + tile.width > count:
        return None
    end = start + tile.width
    if tile.is_entries:
        entries = ledger.entries_range(conn, start, end)
        if len(entries) != tile.width:
            raise RuntimeError(f"the ledger is missing entries in [{start}, {end})")
        return entry_bundle(entries)
    hashes = ledger.nodes_range(conn, HEIGHT * tile.level, start, end)
    if len(hashes) != tile.width:
        raise RuntimeError(f"the ledger is missing nodes of level {HEIGHT * tile.level} in [{start}, {end})")
    return b"".join(hashes)


def read_tile(conn: Connection, path: str) -> tuple[Tile, bytes]:
    """The tile at ``path`` (``tile/...``). :raise NotFound: a malformed path or a tile the ledger lacks."""
    try:
        tile = parse_tile_path(path)
    except FormatError as exc:
        raise NotFound(exc.reason) from None
    data = tile_bytes(conn, tile)
    if data is None:
        raise NotFound(f"the ledger has no {path} yet")
    return tile, data


@dataclass
class ExportReport:
    size: int
    since: int
    written: list[str] = field(default_factory=list)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def exported_size(directory: Path) -> int:
    """The size of the checkpoint an earlier export left in ``directory`` (0 if none)."""
    try:
        note = (directory / "checkpoint").read_bytes()
    except FileNotFoundError:
        return 0
    try:
        return Checkpoint.from_bytes(note[: note.index(b"\n\n") + 1]).size
    except (ValueError, FormatError) as exc:
        raise FormatError(f"{directory / 'checkpoint'} is not a checkpoint: {exc}") from None


def export_tiles(engine: Engine, settings: Settings, directory: Path, since: int | None = None) -> ExportReport:
    """Write ``checkpoint`` and every tile new since size ``since`` (default: the size of the checkpoint already in
    ``directory``, else 0) under ``directory``, for any static web server or object store to serve as ``/log/``.

    :raise FormatError: ``directory/checkpoint`` exists but is not a checkpoint; ``since`` beyond the ledger.
    """
    with db.read_only(engine).connect() as conn:
        note = checkpoint_with_cosignatures(conn, settings)
        size = Checkpoint.from_bytes(note[: note.index(b"\n\n") + 1]).size
        start = exported_size(directory) if since is None else since
        if start > size:
            raise FormatError(f"--since {start} is beyond the ledger's checkpoint size {size}")
        report = ExportReport(size, start)
        for tile in tiles_between(start, size):
            data = tile_bytes(conn, tile)
            if data is None:
                raise NotFound(f"the ledger has no {tile.path}")  # cannot happen: size is a signed size
            _write(directory / tile.path, data)
            report.written.append(tile.path)
    _write(directory / "checkpoint", note)
    report.written.append("checkpoint")
    return report
