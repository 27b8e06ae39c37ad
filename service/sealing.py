"""Use cases over the ledger: record evidence, seal batches, build receipts, serve the ledger log.

Owns: the one sealing function every deployment runs (in-process on the embedded default, as a Celery task in
production), and assembling receipts from stored rows.
Must not import: Flask or Celery. Functions take a Connection and never commit: the caller owns the transaction
(``with engine.begin() as conn:``); ``record_deposits_committed`` (the group committer's) and ``seal_pending`` take
the engine and commit themselves. Keys and clocks are passed in.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from service.core import merkle
from service.core.errors import InvalidInput, NotFound, ProofError
from service.core.formats import Checkpoint, Leaf, LeafV2, LedgerEntry, format_time, leaf_of_columns, new_evidence_id
from service.core.note import Signer, Sm2Signer, Sm2Verifier, Verifier, sign_note
from service.core.receipt import JSONObject, build_receipt
from service.storage import db, ledger
from service.storage.codec import from_us, to_us
from service.storage.records import Batch, Evidence
from service.webhooks import enqueue_seal_events

# --- deposits -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deposit:
    id: str
    sha256: bytes
    received: datetime
    label: str | None = None
    sm3: bytes | None = None

    def to_json(self) -> JSONObject:
        return status_json(self.id, self.sha256, self.received, self.label, sm3=self.sm3)


def status_json(
    evidence_id: str,
    sha256: bytes,
    received: datetime,
    label: str | None,
    batch_seq: int | None = None,
    leaf_index: int | None = None,
    *,
    sm3: bytes | None = None,
) -> JSONObject:
    """The evidence status object of SPEC §7 (``EvidenceStatus`` in /openapi.json), the one place it is written:
    ``id``, ``sha256``, ``received_at``, ``status`` (``pending``, or ``sealed`` with ``batch_seq`` and
    ``leaf_index``), ``label`` and ``sm3`` (hex) when there is one."""
    out: JSONObject = {
        "id": evidence_id,
        "sha256": sha256.hex(),
        "received_at": format_time(received),
        "status": "pending" if batch_seq is None else "sealed",
    }
    if label is not None:
        out["label"] = label
    if sm3 is not None:
        out["sm3"] = sm3.hex()
    if batch_seq is not None:
        out["batch_seq"] = batch_seq
        out["leaf_index"] = leaf_index
    return out


def record_evidence(
    conn: Connection,
    tenant_id: int,
    items: Sequence[tuple[bytes, str | None]],
    now: datetime,
    *,
    sm3: Sequence[bytes | None] | None = None,
) -> list[Deposit]:
    """Store pending evidence of one tenant (one row each, one round trip) and return what was acknowledged.
    ``sm3``: the files' SM3 digests, item by item (None where a deposit has none)."""
    return record_deposits(conn, [(tenant_id, digest, label) for digest, label in items], now, sm3=sm3)


def record_deposits(
    conn: Connection,
    items: Sequence[tuple[int, bytes, str | None]],
    now: datetime,
    *,
    sm3: Sequence[bytes | None] | None = None,
) -> list[Deposit]:
    """Store pending evidence given as (tenant id, digest, label), in one round trip; return the deposits.

    Every item gets its own random id (SPEC §2: ≥ 96 random bits) and the same received time. ``sm3`` gives the
    files' SM3 digests item by item (None where a deposit has none): a deposit with one gets a v2 leaf whose
    ``sm3`` digest line binds it (SPEC §2.1).
    """
    deposits, rows = _new_deposits(items, now, sm3)
    pks = ledger.insert_evidence(conn, rows)
    # A labelled deposit, or one with an SM3 digest, has a v2 leaf, so that the ledger binds its label and SM3
    # (SPEC §2.1); others keep the v1 leaf.
    ledger.insert_evidence_v2(
        conn,
        [
            {
                "evidence_pk": pk,
                "attestation": None,
                "case_id": None,
                "phase": None,
                "phase_name": None,
                "cosigns": None,
                "sm3": d.sm3,
            }
            for pk, d in zip(pks, deposits, strict=True)
            if d.label is not None or d.sm3 is not None
        ],
    )
    return deposits


def _new_deposits(
    items: Sequence[tuple[int, bytes, str | None]], now: datetime, sm3: Sequence[bytes | None] | None
) -> tuple[list[Deposit], list[ledger.EvidenceRow]]:
    """The deposits of ``items`` (new random ids, one received time) and their evidence rows."""
    received_us = to_us(now)
    received = from_us(received_us)
    sm3s = list(sm3) if sm3 is not None else [None] * len(items)
    if len(sm3s) != len(items):
        raise ValueError("record_deposits: one sm3 value (or None) per item")
    if any(v is not None and len(v) != 32 for v in sm3s):
        raise InvalidInput("an SM3 digest is 32 bytes (64 hex digits)")
    deposits = [
        Deposit(new_evidence_id(), digest, received, label, value)
        for (_, digest, label), value in zip(items, sm3s, strict=True)
    ]
    rows: list[ledger.EvidenceRow] = [
        {"id": d.id, "tenant_id": tenant_id, "sha256": d.sha256, "label": d.label, "received_us": received_us}
        for d, (tenant_id, _, _) in zip(deposits, items, strict=True)
    ]
    return deposits, rows


def record_deposits_committed(
    engine: Engine,
    items: Sequence[tuple[int, bytes, str | None]],
    now: datetime,
    *,
    sm3: Sequence[bytes | None] | None = None,
) -> list[Deposit]:
    """``record_deposits`` in a transaction of its own, COMMITTED when this returns (the group committer's call).

    PostgreSQL with psycopg2: one prepared statement in autocommit mode, one round trip for the whole group
    (``ledger.insert_deposits_committed_pg``; BEGIN, INSERT, COMMIT were three). SQLite: in line on
    ``db.write_lock``, then the same rows through the sqlite3 connection (``ledger.insert_deposits_committed_sqlite``).
    Either way a failure stores nothing of ``items``.
    """
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2":
        deposits, rows = _new_deposits(items, now, sm3)
        ledger.insert_deposits_committed_pg(engine, rows, [d.sm3 for d in deposits])
        return deposits
    if engine.dialect.name == "sqlite":
        deposits, rows = _new_deposits(items, now, sm3)
        with db.write_lock(engine):  # queue behind the other serve processes' writers (see db.write_lock)
            ledger.insert_deposits_committed_sqlite(engine, rows, [d.sm3 for d in deposits])
        return deposits
    with engine.begin() as conn:
        return record_deposits(conn, items, now, sm3=sm3)


def leaf_of_evidence(ev: Evidence) -> Leaf | LeafV2:
    """The leaf of a stored deposit (a ``storage.records.Evidence``): v2 when it has v2 values, else v1."""
    return leaf_of_columns(
        ev.id,
        ev.sha256,
        ev.received,
        v2=ev.v2,
        label=ev.label,
        case_id=ev.case_id,
        phase=ev.phase,
        phase_name=ev.phase_name,
        cosigns=ev.cosigns,
        attestation=ev.attestation,
        sm3=ev.sm3,
    )


def leaf_of(row: Any) -> Leaf | LeafV2:
    """The leaf of a raw pending row (``ledger.select_pending``: the sealer's hot path reads no records): v2 when it
    has an ``evidence_v2`` row (``ledger.V2_COLUMNS``), else v1."""
    return leaf_of_columns(
        row.id,
        bytes(row.sha256),
        from_us(row.received_us),
        v2=row.v2_pk is not None,
        label=row.label,
        case_id=row.case_id,
        phase=None if row.phase is None else int(row.phase),
        phase_name=row.phase_name,
        cosigns=row.cosigns,
        attestation=None if row.attestation is None else bytes(row.attestation),
        sm3=None if row.sm3 is None else bytes(row.sm3),
    )


# --- sealing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealResult:
    seq: int
    size: int
    root: bytes
    sealed: datetime
    ledger_size: int
    ledger_root: bytes
    oldest_received: datetime


def ensure_genesis(conn: Connection, signer: Signer, now: datetime, *, cosigners: Sequence[Sm2Signer] = ()) -> None:
    """Sign and store the checkpoint of size 0 if the ledger has no checkpoint yet (SPEC §4)."""
    if ledger.checkpoint_at(conn, 0) is not None:
        return
    ledger.lock_ledger(conn)
    if ledger.checkpoint_at(conn, 0) is not None:
        return
    note = sign_note(Checkpoint(signer.name, 0, merkle.EMPTY_ROOT).to_bytes(), [signer, *cosigners])
    ledger.insert_checkpoint(conn, 0, merkle.EMPTY_ROOT, note, signer.key_hash, to_us(now))


def seal_due(conn: Connection, now: datetime, max_leaves: int, max_age: float) -> bool:
    """True when a batch should be sealed: ``max_leaves`` are pending or the oldest is ``max_age`` seconds old."""
    oldest = ledger.oldest_pending_us(conn)
    if oldest is None:
        return False
    if to_us(now) - oldest >= max_age * 1_000_000:
        return True
    return ledger.pending_count(conn) >= max_leaves


def seal_batch(
    conn: Connection, signer: Signer, now: datetime, max_leaves: int, *, cosigners: Sequence[Sm2Signer] = ()
) -> SealResult | None:
    """Seal up to ``max_leaves`` pending evidence into one batch; return it, or None when nothing is pending.

    In the caller's single transaction: take the ledger lock, pick the oldest pending leaves, build the batch
    tree, append the ledger entry (with the perfect-subtree nodes it completes), store the leaves' places and the
    tree's tiles (``merkle.batch_tiles``: receipts compute each leaf's proof from them), delete the pending rows,
    and sign the checkpoint of the new ledger size. If anything fails, the transaction rolls
    back and every leaf stays pending: nothing is sealed twice or lost.
    """
    ledger.lock_ledger(conn)
    rows = ledger.select_pending(conn, max_leaves)
    if not rows:
        return None
    last = ledger.last_batch(conn)
    seq = 0 if last is None else last.seq + 1
    leaves = [leaf_of(r) for r in rows]
    tree = merkle.BatchTree([merkle.leaf_hash(leaf.to_bytes()) for leaf in leaves])

    # SPEC §3: sealed is never earlier than any received in the batch nor the previous entry's sealed.
    sealed_us = max(to_us(now), max(r.received_us for r in rows), to_us(last.sealed) if last is not None else 0)
    sealed = from_us(sealed_us)
    entry = LedgerEntry(seq, tree.size, tree.root, sealed).to_bytes()
    entry_hash = merkle.leaf_hash(entry)

    # The ledger log: the new entry is leaf `seq` of the log of size seq+1. Its inclusion proof is the
    # frontier of the log of size seq (the perfect subtrees covering [0, seq)), smallest first.
    frontier_keys = merkle.perfect_subtrees(0, seq)
    frontier = ledger.get_nodes(conn, frontier_keys)
    if len(frontier) != len(frontier_keys):
        raise RuntimeError(f"the ledger log is missing nodes {sorted(set(frontier_keys) - set(frontier))}")
    ledger_proof = [frontier[k] for k in reversed(frontier_keys)]
    new_nodes = merkle.append_nodes(seq, entry_hash, frontier)
    all_nodes = {**frontier, **dict(new_nodes)}
    new_root = merkle.hash_range(0, seq + 1, all_nodes)

    ledger.insert_batch(conn, seq, tree.size, tree.root, sealed_us, entry, b"".join(ledger_proof))
    ledger.insert_nodes(conn, new_nodes)
    ledger.insert_batch_leaves(
        conn, [{"evidence_pk": r.pk, "batch_seq": seq, "leaf_index": i} for i, r in enumerate(rows)]
    )
    ledger.insert_batch_tiles(conn, seq, tree.tiles())
    ledger.delete_pending(conn, [r.pk for r in rows])
    note = sign_note(Checkpoint(signer.name, seq + 1, new_root).to_bytes(), [signer, *cosigners])
    ledger.insert_checkpoint(conn, seq + 1, new_root, note, signer.key_hash, sealed_us)
    return SealResult(seq, tree.size, tree.root, sealed, seq + 1, new_root, from_us(min(r.received_us for r in rows)))


# --- reading ------------------------------------------------------------------------------------


def evidence_status(conn: Connection, tenant_id: int, evidence_id: str) -> JSONObject:
    """Status of one evidence of this tenant: pending, or sealed with its batch.

    :raise NotFound: no such evidence for this tenant (another tenant's evidence is not found either).
    """
    row = ledger.get_evidence(conn, tenant_id, evidence_id)
    if row is None:
        raise NotFound(f"no evidence with id {evidence_id!r}")
    return status_of(row)


def status_of(ev: Evidence) -> JSONObject:
    """``status_json`` of a stored evidence."""
    return status_json(ev.id, ev.sha256, ev.received, ev.label, ev.batch_seq, ev.leaf_index, sm3=ev.sm3)


def receipt_for(conn: Connection, tenant_id: int, evidence_id: str, *, keys: Sequence[str] = ()) -> JSONObject | None:
    """The receipt (v1 or v2, SPEC §6/§6.1) of a sealed evidence, from stored rows only; None while it is pending.

    The ledger proof is against the checkpoint signed when its batch was sealed (size seq+1), so a receipt never
    changes once issued. Time-stamp tokens obtained since are included.

    :raise NotFound: no such evidence for this tenant.
    """
    row = ledger.get_evidence(conn, tenant_id, evidence_id)
    if row is None:
        raise NotFound(f"no evidence with id {evidence_id!r}")
    if row.batch_seq is None:
        return None
    return _Receipts(conn, keys).build(row)


def public_receipt(conn: Connection, evidence_id: str, sha256: bytes, *, keys: Sequence[str] = ()) -> JSONObject | None:
    """Public checking (核验) by certificate number: the receipt of the sealed evidence with this id AND this
    SHA-256, whoever deposited it; None for an unknown id, another digest, or evidence still pending, alike."""
    row = ledger.get_evidence_matching(conn, evidence_id, sha256)
    if row is None or row.batch_seq is None:
        return None
    return _Receipts(conn, keys).build(row)


MAX_RECEIPTS_PAGE = 1000
NOT_FOUND = "not_found"


def receipts_for(
    conn: Connection, tenant_id: int, evidence_ids: Sequence[str], *, keys: Sequence[str] = ()
) -> list[JSONObject]:
    """For each id, in the order given: the receipt (as ``receipt_for``) once sealed, the status object (as
    ``evidence_status``) while pending, or ``{"id": ..., "status": "not_found"}`` when this tenant has no such
    evidence: the same answer for an id never issued and for another tenant's id, so nothing leaks.

    One query for the evidence rows, one for the time-stamp tokens, two per batch involved (row, checkpoint), and
    for a batch sealed without stored proofs one for the tiles its proofs need (none when this process has them
    cached).
    """
    rows = ledger.get_evidence_many(conn, tenant_id, evidence_ids)
    receipts = _Receipts(conn, keys)
    receipts.prefetch_timestamps({int(r.batch_seq) for r in rows.values() if r.batch_seq is not None})
    receipts.prepare(rows.values())
    out: list[JSONObject] = []
    for evidence_id in evidence_ids:
        row = rows.get(evidence_id)
        if row is None:
            out.append({"id": evidence_id, "status": NOT_FOUND})
        elif row.batch_seq is None:
            out.append(status_of(row))
        else:
            out.append(receipts.build(row))
    return out


class _TileCache:
    """Trees of batch tiles by (batch root, batch size, k, t), shared by the threads of
    a process, the least recently used dropped beyond ``limit``. Keyed by the root, not the seq: a sealed batch's
    tiles never change, and the same root means the same tree whatever database it came from."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._trees: OrderedDict[tuple[bytes, int, int, int], merkle.BatchTree] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, int, int, int]) -> merkle.BatchTree | None:
        with self._lock:
            tree = self._trees.get(key)
            if tree is not None:
                self._trees.move_to_end(key)
            return tree

    def put(self, key: tuple[bytes, int, int, int], tree: merkle.BatchTree) -> None:
        with self._lock:
            self._trees[key] = tree
            self._trees.move_to_end(key)
            while len(self._trees) > self.limit:
                self._trees.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._trees.clear()


TILE_CACHE = _TileCache(1024)  # 1,024 trees of up to 256 hashes (16 KiB with their levels): about 17 MB per process


class _Receipts:
    """Builds the receipts of one transaction, reading each batch's row, checkpoint and tokens once, and for
    batches sealed without stored proofs the tiles their leaves need (one query per batch and call of ``prepare``,
    none for tiles this process has cached)."""

    def __init__(self, conn: Connection, keys: Sequence[str]) -> None:
        self.conn = conn
        self.keys = list(keys)
        self._batches: dict[int, tuple[Batch, bytes, list[bytes]]] = {}
        self._tokens: dict[int, list[bytes]] = {}
        self._trees: dict[tuple[bytes, int, int, int], merkle.BatchTree] = {}

    def prefetch_timestamps(self, seqs: set[int]) -> None:
        self._tokens.update(ledger.timestamps_for_batches(self.conn, seqs))

    def _batch(self, seq: int) -> tuple[Batch, bytes, list[bytes]]:
        cached = self._batches.get(seq)
        if cached is None:
            batch = ledger.get_batch(self.conn, seq)
            checkpoint = ledger.checkpoint_at(self.conn, seq + 1)
            if batch is None or checkpoint is None:
                raise RuntimeError(f"sealed evidence has no batch {seq} or its checkpoint")
            tokens = self._tokens.get(seq)
            if tokens is None:
                tokens = [bytes(t.token) for t in ledger.timestamps_for_batch(self.conn, seq)]
            cached = (batch, checkpoint.note, tokens)
            self._batches[seq] = cached
        return cached

    def prepare(self, rows: Iterable[Evidence]) -> None:
        """Make the tiles every sealed row without a stored proof needs available: from this process's cache, else
        read in one query per batch."""
        wanted: dict[int, set[tuple[int, int, int]]] = {}
        for row in rows:
            if row.batch_seq is not None and row.leaf_index is not None and row.proof is None:
                batch = self._batch(row.batch_seq)[0]
                keys = wanted.setdefault(batch.seq, set())
                keys.update((k, t, width) for k, t, width, _ in merkle.tile_path(row.leaf_index, batch.size))
        for seq, keys in wanted.items():
            batch = self._batch(seq)[0]
            missing: dict[tuple[int, int], int] = {}
            for k, t, width in keys:
                key = (batch.root, batch.size, k, t)
                if key in self._trees:
                    continue
                tree = TILE_CACHE.get(key)
                if tree is None:
                    missing[(k, t)] = width
                else:
                    self._trees[key] = tree
            if missing:
                self._load(batch, missing)

    def _load(self, batch: Batch, missing: dict[tuple[int, int], int]) -> None:
        tiles = ledger.get_batch_tiles(self.conn, batch.seq, missing)
        for (k, t), width in missing.items():
            data = tiles.get((k, t))
            if data is None or len(data) != width * merkle.HASH_SIZE:
                raise RuntimeError(f"batch {batch.seq} has no tile ({k}, {t}) of {width} hashes")
            key = (batch.root, batch.size, k, t)
            tree = merkle.BatchTree(merkle.split_tile(data))
            self._trees[key] = tree
            TILE_CACHE.put(key, tree)

    def _proof(self, batch: Batch, index: int) -> list[bytes]:
        """Leaf ``index``'s audit path from the trees of its tiles (``prepare`` loaded them)."""
        proof: list[bytes] = []
        for k, t, _, position in merkle.tile_path(index, batch.size):
            proof += self._trees[(batch.root, batch.size, k, t)].inclusion_proof(position)
        return proof

    def build(self, row: Evidence) -> JSONObject:
        assert row.batch_seq is not None and row.leaf_index is not None, "build receipts of sealed evidence only"
        batch, note, tokens = self._batch(row.batch_seq)
        leaf = leaf_of_evidence(row)
        batch_proof: list[bytes]
        if row.proof is not None:  # sealed by a release before migration 0007: served from its stored proof
            batch_proof = list(row.proof)
        else:
            self.prepare((row,))
            batch_proof = self._proof(batch, row.leaf_index)
            # A proof computed from stored tiles is checked against the sealed root before it is served (about
            # 20 hashes): a damaged or changed tile or evidence row fails here as a server error, named in the
            # log, and never reaches anyone as a receipt that does not verify (`evidence audit` names the row).
            try:
                merkle.verify_inclusion(
                    merkle.leaf_hash(leaf.to_bytes()), row.leaf_index, batch.size, batch_proof, batch.root
                )
            except ProofError as exc:
                raise RuntimeError(
                    f"the stored tiles of batch {batch.seq} do not prove evidence {row.id} at index "
                    f"{row.leaf_index}: {exc}; run `evidence audit`"
                ) from exc
        return build_receipt(
            leaf=leaf,
            label=row.label,
            phase_name=row.phase_name,
            attestation=row.attestation,
            batch_seq=batch.seq,
            batch_size=batch.size,
            leaf_index=row.leaf_index,
            batch_root=batch.root,
            batch_proof=batch_proof,
            entry=batch.entry,
            ledger_proof=list(batch.ledger_proof),
            checkpoint=note,
            timestamps=tokens,
            keys=self.keys,
        )


def latest_checkpoint(conn: Connection) -> bytes:
    row = ledger.latest_checkpoint(conn)
    if row is None:
        raise NotFound("the ledger has no checkpoint yet")
    return row.note


MAX_ENTRIES_PAGE = 1000


def ledger_entries(conn: Connection, start: int, end: int | None) -> tuple[int, list[bytes]]:
    """Entries [start, end) of the ledger log, at most 1,000 (SPEC §7)."""
    size = ledger.ledger_size(conn)
    if start < 0:
        raise InvalidInput(f"start must be 0 or more, got {start}")
    if start > size:
        raise InvalidInput(f"start ({start}) is beyond the ledger size ({size})")
    if end is None:
        end = min(size, start + MAX_ENTRIES_PAGE)
    if end < start:
        raise InvalidInput(f"end ({end}) must not be below start ({start})")
    end = min(end, size, start + MAX_ENTRIES_PAGE)
    return start, ledger.entries_range(conn, start, end)


def consistency_proof(conn: Connection, old: int, new: int) -> list[bytes]:
    """RFC 9162 consistency proof between ledger sizes ``old`` and ``new`` (0 < old <= new <= size)."""
    size = ledger.ledger_size(conn)
    if not (0 < old <= new <= size):
        raise InvalidInput(f"need 0 < from <= to <= ledger size ({size}); got from={old}, to={new}")
    if old == new:
        return []
    ranges = merkle.consistency_ranges(old, new)
    nodes = ledger.get_nodes(conn, merkle.nodes_needed_for_ranges(ranges))
    return [merkle.hash_range(a, b, nodes) for a, b in ranges]


def ledger_root(conn: Connection, size: int) -> bytes:
    """Root of the ledger log at ``size`` recomputed from the stored perfect-subtree nodes."""
    if size == 0:
        return merkle.EMPTY_ROOT
    nodes = ledger.get_nodes(conn, merkle.perfect_subtrees(0, size))
    return merkle.hash_range(0, size, nodes)


def key_list(conn: Connection) -> list[dict[str, Any]]:
    """Every checkpoint signing key ever used, with its algorithm, fingerprints (SHA-256, and SM3 for domestic
    paperwork) and validity window (SPEC §7 /v1/keys, §4.1)."""
    items: list[dict[str, Any]] = []
    for r in ledger.list_signing_keys(conn):
        verifier = Verifier.from_vkey(str(r.vkey))
        item: dict[str, Any] = {
            "vkey": r.vkey,
            "origin": r.origin,
            "algorithm": verifier.algorithm,
            "fingerprint": verifier.fingerprint,
            "fingerprint_sm3": verifier.fingerprint_sm3,
        }
        if isinstance(verifier, Sm2Verifier):
            item["distid"] = verifier.distid.decode("ascii", "backslashreplace")
        item["valid_from"] = format_time(r.valid_from)
        item["valid_until"] = None if r.valid_until is None else format_time(r.valid_until)
        items.append(item)
    return items


def seal_pending(
    engine: Any,
    signer: Signer,
    *,
    max_leaves: int,
    max_age: float,
    clock: Any = None,
    force: bool = False,
    cosigners: Sequence[Sm2Signer] = (),
) -> list[SealResult]:
    """Seal every batch that is due, each in its own transaction; return what was sealed.

    Each checkpoint is signed by ``signer`` (Ed25519) and then by every one of ``cosigners`` (SM2, SPEC §4.1).

    The one entry point used by the in-process sealer (embedded default) and the Celery task (production).
    ``force`` seals whatever is pending even if no batch is due yet (tests, shutdown, ``evidence seal``).
    """
    from service.core.formats import utc_now

    now_fn = clock or utc_now
    sealed: list[SealResult] = []
    while True:
        with db.read_only(engine).connect() as conn:
            due = seal_due(conn, now_fn(), max_leaves, max_age) or (
                force and ledger.oldest_pending_us(conn) is not None
            )
        if not due:
            return sealed
        with db.write_lock(engine), engine.begin() as conn:  # SQLite: in line with the group committers
            result = seal_batch(conn, signer, now_fn(), max_leaves, cosigners=cosigners)
            if result is not None:
                # Webhook events are queued in the sealing transaction: a sealed batch and its events commit
                # together, so none is lost or sent for a batch that rolled back.
                enqueue_seal_events(conn, result.seq)
        if result is None:
            return sealed
        sealed.append(result)
