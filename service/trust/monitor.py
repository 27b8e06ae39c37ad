"""Follow a running Evidence Ledger from outside, with only its public endpoints, and detect any rewrite.

Owns: the monitor's state file and one round of checks (``check_once``). Each round reads ``/v1/checkpoint``,
checks its signature (with pinned keys, or the keys of ``/v1/keys`` trusted on first use and recorded in the
state file), then checks it against the last checkpoint seen: never smaller, the same root at the same size,
an RFC 9162 consistency proof from ``/v1/ledger/consistency`` that verifies; and it downloads the new entries
(``/v1/ledger/entries``), checks each parses with the right ``seq`` and a ``sealed`` time that never goes back,
and recomputes the ledger log root from them (the state keeps the log's compact range: O(log n) hashes).
The state file is replaced atomically, and only after a round passed every check.

Any contradiction raises ``LogInconsistency``; a server that cannot be reached raises ``MonitorUnavailable``
(a transient condition, not evidence of tampering). Must not import: Flask, SQLAlchemy, Celery.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from service.core import merkle
from service.core.errors import EvidenceError, FormatError, LogInconsistency, NoteError, ProofError
from service.core.formats import Checkpoint, LedgerEntry, format_time, utc_now
from service.core.note import Verifier, open_note
from service.trust.tile_reader import TileReader, TilesUnavailable

__all__ = ["MonitorState", "MonitorUnavailable", "check_once"]

STATE_FORMAT = "evidence-monitor/v1"
TIMEOUT = 15.0


class MonitorUnavailable(EvidenceError):
    """The server could not be reached or answered with an unusable document (not evidence of tampering)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise MonitorUnavailable(f"{what} is not base64: {str(text)[:60]!r}") from None


@dataclass
class MonitorState:
    """What the monitor has verified so far about one log."""

    url: str
    origin: str | None = None
    size: int = 0
    root: bytes = merkle.EMPTY_ROOT
    checkpoint: str = ""
    frontier: list[bytes] = field(default_factory=list)  # node hashes of perfect_subtrees(0, size), in order
    last_sealed: str | None = None
    keys: list[str] = field(default_factory=list)
    key_source: str = ""  # "pinned" or "trust on first use of <url>/v1/keys"
    updated: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "url": self.url,
            "origin": self.origin,
            "size": self.size,
            "root": _b64(self.root),
            "checkpoint": self.checkpoint,
            "frontier": [_b64(h) for h in self.frontier],
            "last_sealed": self.last_sealed,
            "keys": self.keys,
            "key_source": self.key_source,
            "updated": self.updated,
        }

    @classmethod
    def load(cls, path: Path, url: str) -> MonitorState:
        """The state in ``path``, or a fresh one for ``url`` when the file does not exist.

        :raise FormatError: the file is not a monitor state, or is the state of another URL.
        """
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(url=url)
        except OSError as exc:
            raise FormatError(f"cannot read the state file {path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            if data.get("format") != STATE_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}")
            state = cls(
                url=str(data["url"]),
                origin=data["origin"],
                size=int(data["size"]),
                root=base64.b64decode(data["root"], validate=True),
                checkpoint=str(data["checkpoint"]),
                frontier=[base64.b64decode(h, validate=True) for h in data["frontier"]],
                last_sealed=data["last_sealed"],
                keys=[str(k) for k in data["keys"]],
                key_source=str(data["key_source"]),
                updated=str(data["updated"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise FormatError(f"the state file {path} is not an {STATE_FORMAT} document: {exc}") from None
        if state.url != url:
            raise FormatError(f"the state file {path} follows {state.url}, not {url}: use another state file")
        return state

    def save(self, path: Path) -> None:
        """Write the state atomically: a temporary file in the same directory, fsynced, renamed over ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Client:
    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url.rstrip("/")
        self.session = session

    def get(self, path: str, params: dict[str, int] | None = None) -> requests.Response:
        try:
            return self.session.get(self.url + path, params=params, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise MonitorUnavailable(f"{self.url}{path} could not be reached: {exc}") from exc

    def ok(self, path: str, params: dict[str, int] | None = None) -> requests.Response:
        response = self.get(path, params)
        if response.status_code != 200:
            raise MonitorUnavailable(f"{response.url} answered HTTP {response.status_code}: {response.text[:200]}")
        return response

    def json(self, path: str, params: dict[str, int] | None = None) -> Any:
        response = self.ok(path, params)
        try:
            return response.json()
        except ValueError:
            raise MonitorUnavailable(f"{response.url} did not answer JSON") from None

    def published_keys(self) -> list[Verifier]:
        body = self.json("/v1/keys")
        try:
            return [Verifier.from_vkey(str(k["vkey"])) for k in body["keys"]]
        except (KeyError, TypeError, FormatError) as exc:
            raise MonitorUnavailable(f"{self.url}/v1/keys is not a key list: {exc}") from None


def check_once(
    url: str,
    state: MonitorState,
    *,
    pinned: Sequence[Verifier] = (),
    session: requests.Session | None = None,
    say: Callable[[str], None] = lambda _msg: None,
    tiles: TileReader | None = None,
) -> MonitorState:
    """One round: fetch, verify and compare the log's newest checkpoint; return the new state (not saved).

    ``pinned``: trusted keys; without them the keys published at ``/v1/keys`` are trusted on first use (and
    recorded), and a key published later is accepted with a notice. ``say`` receives human-readable notices.

    :raise LogInconsistency: signature, size, root, proof or entries contradict what was verified before.
    :raise MonitorUnavailable: the server could not be reached or sent an unusable document.
    """
    client = _Client(url, session or requests.Session())
    if tiles is not None and not pinned:
        raise MonitorUnavailable("reading tiles needs pinned keys (--key): a static tile tree publishes no key list")
    try:
        note = client.ok("/v1/checkpoint").content if tiles is None else tiles.checkpoint()
    except TilesUnavailable as exc:
        raise MonitorUnavailable(exc.reason) from None
    split = note.rfind(b"\n\n")
    try:
        checkpoint = Checkpoint.from_bytes(note[: split + 1]) if split >= 0 else None
    except FormatError as exc:
        raise LogInconsistency(f"the checkpoint served does not parse: {exc.reason}") from None
    if checkpoint is None:
        raise LogInconsistency("the checkpoint served is not a signed note (no blank line before signatures)")
    new = MonitorState(**{**state.__dict__, "frontier": list(state.frontier), "keys": list(state.keys)})
    if state.origin is not None and checkpoint.origin != state.origin:
        raise LogInconsistency(f"the checkpoint's origin is {checkpoint.origin!r}, previously {state.origin!r}")
    new.origin = checkpoint.origin

    _check_signature(client, note, checkpoint, new, pinned, say)

    old_size, old_root = state.size, state.root
    if checkpoint.size < old_size:
        raise LogInconsistency(
            f"the log shrank: the checkpoint is for size {checkpoint.size}, but size {old_size} was seen before "
            f"(root {_b64(old_root)})"
        )
    if checkpoint.size == old_size:
        if checkpoint.root != old_root:
            raise LogInconsistency(
                f"the log forked: at size {old_size} the root is now {_b64(checkpoint.root)}, it was {_b64(old_root)}"
            )
        new.checkpoint = note.decode("utf-8")
        new.updated = format_time(utc_now())
        return new
    if old_size > 0 and tiles is None:  # from tiles: recomputing the root from the old frontier proves it
        body = client.get("/v1/ledger/consistency", {"from": old_size, "to": checkpoint.size})
        if body.status_code != 200:
            raise LogInconsistency(
                f"the server refused to prove size {checkpoint.size} extends size {old_size} "
                f"(HTTP {body.status_code}: {body.text[:200]})"
            )
        try:
            proof = [base64.b64decode(h, validate=True) for h in body.json()["proof"]]
            merkle.verify_consistency(old_size, checkpoint.size, old_root, checkpoint.root, proof)
        except ProofError as exc:
            raise LogInconsistency(
                f"the log is not consistent: the proof from size {old_size} (root {_b64(old_root)}) to size "
                f"{checkpoint.size} (root {_b64(checkpoint.root)}) does not verify: {exc.reason}"
            ) from None
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise LogInconsistency(f"the consistency proof served is malformed: {exc}") from None
    _follow_entries(client, new, checkpoint, tiles)
    new.size, new.root = checkpoint.size, checkpoint.root
    new.checkpoint = note.decode("utf-8")
    new.updated = format_time(utc_now())
    say(f"size {checkpoint.size} verified: {checkpoint.size - old_size} new entries, root {_b64(checkpoint.root)}")
    return new


def _check_signature(
    client: _Client,
    note: bytes,
    checkpoint: Checkpoint,
    new: MonitorState,
    pinned: Sequence[Verifier],
    say: Callable[[str], None],
) -> None:
    if pinned:
        trusted = list(pinned)
        new.keys, new.key_source = [k.vkey for k in pinned], "pinned"
    else:
        if not new.keys:
            published = client.published_keys()
            new.keys = [k.vkey for k in published]
            new.key_source = f"trust on first use of {client.url}/v1/keys"
            say(
                "trusting on first use the keys published at /v1/keys (pin them with --key): "
                + "; ".join(f"{k.key_id} fingerprint {k.fingerprint}" for k in published)
            )
        trusted = [Verifier.from_vkey(k) for k in new.keys]
    candidates = [k for k in trusted if k.name == checkpoint.origin]
    try:
        open_note(note, candidates)
        return
    except NoteError as exc:
        failure = exc.reason
    if not pinned:
        # A rotation publishes a new key: accept a key the log newly publishes, and say so loudly.
        known = set(new.keys)
        fresh = [k for k in client.published_keys() if k.vkey not in known and k.name == checkpoint.origin]
        try:
            opened = open_note(note, fresh)
        except NoteError:
            opened = None
        if opened is not None:
            key = opened.verified[0]
            new.keys.append(key.vkey)
            say(
                f"NOTICE: the checkpoint is signed by a newly published key {key.key_id} (fingerprint "
                f"{key.fingerprint}); accepted because the keys are trusted on first use"
            )
            return
    raise LogInconsistency(f"the checkpoint of size {checkpoint.size} is not signed by a trusted key: {failure}")


def _pages(client: _Client, tiles: TileReader | None, start: int, size: int) -> tuple[int, list[bytes]]:
    """Entries from ``start`` of the tree of ``size``: a page of /v1/ledger/entries, or a run of entry bundles."""
    if tiles is not None:
        end = min(size, (start // 256 + 16) * 256)  # 16 bundles at a time
        try:
            return start, list(tiles.entries(start, end, size))
        except TilesUnavailable as exc:
            raise MonitorUnavailable(exc.reason) from None
    body = client.json("/v1/ledger/entries", {"start": start, "end": size})
    try:
        return int(body["start"]), [base64.b64decode(e, validate=True) for e in body["entries"]]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise MonitorUnavailable(f"/v1/ledger/entries answered a malformed page: {exc}") from None


def _follow_entries(client: _Client, new: MonitorState, checkpoint: Checkpoint, tiles: TileReader | None) -> None:
    """Download entries [new.size, checkpoint.size), check them, and recompute the log root into ``new``."""
    size = new.size
    frontier = dict(zip(merkle.perfect_subtrees(0, size), new.frontier, strict=True))
    sealed = new.last_sealed
    while size < checkpoint.size:
        start, items = _pages(client, tiles, size, checkpoint.size)
        if start != size or not items:
            raise LogInconsistency(
                f"the log signs size {checkpoint.size} but serves no entries from {size} (page start {start})"
            )
        for raw in items[: checkpoint.size - size]:
            try:
                entry = LedgerEntry.from_bytes(raw)
            except FormatError as exc:
                raise LogInconsistency(f"ledger entry {size} does not parse: {exc.reason}") from None
            if entry.seq != size:
                raise LogInconsistency(f"the entry at index {size} says seq {entry.seq}")
            text = format_time(entry.sealed)
            if sealed is not None and text < sealed:  # fixed-width UTC times sort as text
                raise LogInconsistency(f"ledger entry {size} is sealed {text}, before the previous entry ({sealed})")
            sealed = text
            added = dict(merkle.append_nodes(size, merkle.leaf_hash(raw), frontier))
            size += 1
            merged = {**frontier, **added}
            frontier = {k: merged[k] for k in merkle.perfect_subtrees(0, size)}
    root = merkle.hash_range(0, size, frontier)
    if root != checkpoint.root:
        raise LogInconsistency(
            f"the entries served do not hash to the signed root at size {size}: computed {_b64(root)}, "
            f"signed {_b64(checkpoint.root)}"
        )
    new.frontier = [frontier[k] for k in merkle.perfect_subtrees(0, size)]
    new.last_sealed = sealed
