"""``evidence mirror URL DIR``: follow a ledger through its C2SP tlog-tiles and keep a complete, verified copy that
any static web server can serve, so the evidence stays checkable if the operator disappears (SPEC §10).

Owns: one round (``mirror_once``): the monitor's checks through tiles (pinned keys; never smaller, same root at
the same size, entries that recompute the signed root from the frontier kept, which proves consistency), the
witness policy's quorum when one is given, then the copy: entry bundles and level-0 tiles as read and checked,
every higher hash tile recomputed here from the level below and compared with the source's, the checkpoint last,
the state (``.mirror-state.json``) after it. A round that finds anything wrong writes no checkpoint and no state.
Must not import: Flask, SQLAlchemy, Celery.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.core import merkle
from service.core.cosignature import check_cosignatures
from service.core.errors import LogInconsistency
from service.core.note import Verifier
from service.core.policy import Policy
from service.core.tiles import HEIGHT, WIDTH, Tile, tiles_between
from service.trust.monitor import MonitorState, check_once
from service.trust.tile_reader import TileReader, checkpoint_of

__all__ = ["STATE_FILE", "MirrorReport", "mirror_once"]

STATE_FILE = ".mirror-state.json"


@dataclass
class MirrorReport:
    old_size: int
    size: int
    written: int


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_policy(note: bytes, policy: Policy) -> None:
    checks = check_cosignatures(note, policy.witness_keys)
    bad = [c for c in checks if c.present and not c.valid]
    if bad:
        detail = "; ".join(f"{c.witness.key_id}: {c.reason}" for c in bad)
        raise LogInconsistency(f"a listed witness's cosignature does not verify: {detail}")
    names = [w.name for w, c in zip(policy.witnesses, checks, strict=True) if c.valid]
    if not policy.satisfied(names):
        raise LogInconsistency(
            f"the checkpoint lacks the witness quorum {policy.describe_quorum()} (valid: {', '.join(names) or 'none'})"
        )


def mirror_once(
    url: str,
    directory: Path,
    *,
    pinned: Sequence[Verifier],
    policy: Policy | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> MirrorReport:
    """One round: verify the source's newest checkpoint and copy every tile new since the last round.

    Entry bundles and level-0 tiles are stored as they are read and checked (``TileReader(store=...)``); tiles of
    higher levels are recomputed from the level below and must equal the source's. The checkpoint is written
    last, then the state: until then, the copy's checkpoint names only tiles verified in earlier rounds.

    :raise LogInconsistency: the source contradicts itself or the copy (fork, shrink, bad tiles or signatures).
    :raise MonitorUnavailable: the source cannot be read (transient).
    """
    base = url.rstrip("/")
    reader = TileReader(base, store=directory)
    state_path = directory / STATE_FILE
    state = MonitorState.load(state_path, base)
    new = check_once(base, state, pinned=pinned, say=say, tiles=reader)
    note = new.checkpoint.encode("utf-8")
    if policy is not None:
        _check_policy(note, policy)
    size = checkpoint_of(note).size
    written = 0
    for tile in tiles_between(state.size, size):
        if tile.level < 1:
            if not (directory / tile.path).is_file():  # read (and stored) by check_once
                raise LogInconsistency(f"{tile.path} was not read while checking the entries")
            written += 1
            continue
        mine = _recompute(directory, tile)
        if TileReader(base)._read(tile.path) != mine:  # noqa: SLF001 - compare, never store, the source's copy
            raise LogInconsistency(f"{tile.path} served by {base} differs from the one recomputed from the level below")
        _write(directory / tile.path, mine)
        written += 1
    _write(directory / "checkpoint", note)
    new.save(state_path)
    return MirrorReport(state.size, size, written)


def _recompute(directory: Path, tile: Tile) -> bytes:
    """The hash tile ``tile`` (level >= 1) from the full tiles of the level below, already in ``directory``."""
    out = []
    for i in range(tile.index * WIDTH, tile.index * WIDTH + tile.width):
        below = directory / Tile(tile.level - 1, i).path
        try:
            row = below.read_bytes()
        except OSError:
            raise LogInconsistency(f"the mirror lacks {Tile(tile.level - 1, i).path} to check {tile.path}") from None
        hashes = [row[j : j + 32] for j in range(0, len(row), 32)]
        if len(hashes) != WIDTH:
            raise LogInconsistency(f"{Tile(tile.level - 1, i).path} is not a full tile")
        out.append(merkle.root_from_leaf_hashes(hashes))
    assert HEIGHT == 8
    return b"".join(out)
