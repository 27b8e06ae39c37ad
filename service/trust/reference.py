"""An outside reference for ``evidence audit``: a checkpoint the database cannot have rewritten.

``audit_ledger`` checks that the database agrees with itself. Someone able to write to the database can still
remove the newest entries together with their checkpoints (what remains is consistent), and labels and tenant
ids are not signed under receipt format v1. A checkpoint kept outside the database (a monitor's saved state, a
witness's copy, a checkpoint fetched earlier from ``GET /v1/checkpoint``) closes the first gap:

- the database's ledger must be at least as long as the reference, and
- the ledger log recomputed from the database's own entries, at the reference's size, must have the reference's
  root (so the entries it covers are the same bytes, in the same order);
- the reference must name this ledger's origin, and its signature (when it carries one) must verify with a key
  the database published.

Owns: ``load_reference`` (file), ``fetch_reference`` (URL), ``check_reference`` (adds findings to an
``AuditReport``), and ``BLIND_SPOTS``, what no audit of this database can see. Must not import: Flask, Celery,
use cases, the API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from service.core import merkle
from service.core.errors import FormatError, NoteError
from service.core.formats import Checkpoint
from service.core.note import Verifier, open_note
from service.storage import db, ledger
from service.trust.audit import AuditReport

__all__ = ["BLIND_SPOTS", "Reference", "check_reference", "fetch_reference", "load_reference", "parse_reference"]

MONITOR_STATE_FORMAT = "evidence-monitor/v1"
MAX_REFERENCE_BYTES = 1 << 20
ENTRY_PAGE = 10_000

BLIND_SPOTS = (
    "labels and tenant ids are not signed under receipt format v1 (a leaf holds the label's digest only for v2): "
    "a label or tenant changed in the database cannot be detected by this audit",
    "without an outside reference (--checkpoint FILE or --checkpoint-url URL), removing the newest entries "
    "together with their checkpoints leaves a consistent database and cannot be detected",
)


@dataclass(frozen=True)
class Reference:
    """A checkpoint from outside the database: where it came from, its content, and its signed note (if any)."""

    source: str
    checkpoint: Checkpoint
    note: bytes | None


def _from_note(raw: bytes, source: str) -> Reference:
    body, sep, _ = raw.partition(b"\n\n")
    text = body + b"\n" if sep else raw  # a signed note, or the bare checkpoint text
    try:
        checkpoint = Checkpoint.from_bytes(text)
    except FormatError as exc:
        raise FormatError(f"{source} is not a checkpoint: {exc.reason}") from None
    return Reference(source, checkpoint, raw if sep else None)


def parse_reference(raw: bytes, source: str) -> Reference:
    """A reference from bytes: a signed checkpoint note (or its bare text), or a monitor state file (JSON).

    :raise FormatError: neither.
    """
    if raw.lstrip().startswith(b"{"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise FormatError(f"{source} is JSON but not readable: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != MONITOR_STATE_FORMAT:
            raise FormatError(f"{source} is JSON but not an {MONITOR_STATE_FORMAT} monitor state")
        note = data.get("checkpoint")
        if not isinstance(note, str) or not note:
            raise FormatError(f"{source}: the monitor state holds no checkpoint yet (run evidence monitor first)")
        return _from_note(note.encode("utf-8"), source)
    return _from_note(raw, source)


def load_reference(path: Path) -> Reference:
    """:raise FormatError: unreadable, too large, or not a reference."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_REFERENCE_BYTES + 1)
    except OSError as exc:
        raise FormatError(f"cannot read the checkpoint file {str(path)!r}: {exc.strerror}") from None
    if len(raw) > MAX_REFERENCE_BYTES:
        raise FormatError(f"the checkpoint file {str(path)!r} is larger than {MAX_REFERENCE_BYTES} bytes")
    return parse_reference(raw, f"the checkpoint file {str(path)!r}")


def fetch_reference(url: str, *, timeout: float = 15.0) -> Reference:
    """GET ``url`` (a ``/v1/checkpoint``, a witness's or mirror's copy of it).

    :raise FormatError: not reachable, not 200, or not a checkpoint.
    """
    import requests

    try:
        response = requests.get(url, timeout=timeout, stream=True)
        raw = response.raw.read(MAX_REFERENCE_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise FormatError(f"cannot fetch the checkpoint at {url}: {exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise FormatError(f"cannot fetch the checkpoint at {url}: HTTP {response.status_code}")
    if len(raw) > MAX_REFERENCE_BYTES:
        raise FormatError(f"the answer of {url} is larger than {MAX_REFERENCE_BYTES} bytes")
    return parse_reference(raw, f"the checkpoint at {url}")


def _published_verifiers(rows: Sequence[Any]) -> list[Verifier]:
    verifiers: list[Verifier] = []
    for row in rows:
        try:
            verifiers.append(Verifier.from_vkey(str(row.vkey)))
        except (NoteError, FormatError, ValueError):
            continue  # not an Ed25519 note key (e.g. SM2): the audit's key check reports those
    return verifiers


def check_reference(engine: Engine, report: AuditReport, reference: Reference) -> None:
    """Compare the database's ledger with ``reference``; every disagreement is a finding in ``report``."""
    ref = reference.checkpoint
    report.count("outside reference checkpoint")
    with db.read_only(engine).connect() as conn:
        size = ledger.ledger_size(conn)
        latest = ledger.latest_checkpoint(conn)
        verifiers = _published_verifiers(ledger.list_signing_keys(conn))
        origins = {v.name for v in verifiers}
        if latest is not None:
            try:
                origins.add(Checkpoint.from_bytes(bytes(latest.note).partition(b"\n\n")[0] + b"\n").origin)
            except FormatError:
                pass
        if origins and ref.origin not in origins:
            report.add(
                "outside reference",
                f"origin={ref.origin!r}",
                f"{reference.source} is a checkpoint of {ref.origin!r}, not of this ledger "
                f"({', '.join(sorted(origins))})",
            )
            return
        if reference.note is not None:
            try:
                open_note(reference.note, verifiers)
                report.count("outside reference signature")
            except NoteError as exc:
                report.add(
                    "outside reference",
                    f"size={ref.size}",
                    f"{reference.source} is not signed by a key this database published ({exc})",
                )
        else:
            report.notes.append(f"{reference.source} carries no signature: only its size and root were compared")
        if size < ref.size:
            report.add(
                "batches",
                f"size={size}",
                f"the database's ledger has {size} entries but {reference.source} shows {ref.size}: "
                f"entries {size}..{ref.size - 1} (and their checkpoints) are missing from the database",
            )
            return
        hashes: list[bytes] = []
        for start in range(0, ref.size, ENTRY_PAGE):
            hashes.extend(
                merkle.leaf_hash(e) for e in ledger.entries_range(conn, start, min(ref.size, start + ENTRY_PAGE))
            )
    root = merkle.root_from_leaf_hashes(hashes) if hashes else merkle.EMPTY_ROOT
    if len(hashes) != ref.size:
        report.add("batches", f"size={ref.size}", f"only {len(hashes)} of the first {ref.size} entries could be read")
    elif root != ref.root:
        report.add(
            "batches",
            f"size={ref.size}",
            f"the ledger log recomputed from the database's first {ref.size} entries does not have the root of "
            f"{reference.source}: entries were changed, removed or reordered",
        )
    else:
        report.count("outside reference root", ref.size)
