"""Re-verify the whole ledger from the database (SPEC §8 ``evidence audit``): trust nothing that is stored.

Owns: ``audit_ledger``, which reads every ledger table in one read-only snapshot, streaming (server-side
cursors; the evidence leaves column by column, on PostgreSQL by binary COPY of about 50,000 leaves at a time:
``audit_queries.leaf_batches``), and checks, in this order:

1. ``signing_keys``: every published vkey parses and matches its key hash and origin.
2. ``batches``, in ``seq`` order: ``seq`` has no gaps; the entry bytes parse (SPEC §3) and agree with the row;
   ``sealed`` never goes back and is never before a leaf's ``received``.
3. ``batch_leaves`` + ``evidence`` of each batch, in ``leaf_index`` order: indexes are ``0..size-1``, every
   evidence row exists and makes a valid SPEC §2 leaf, the batch root recomputes from the leaves and every
   stored leaf proof is the RFC 9162 audit path to it (equal to the recomputed path: with SHA-256 that is the
   same as verifying, and it is checked for all leaves in a few C-level passes); a batch sealed without stored
   proofs (since migration 0007) instead has exactly the ``batch_tiles`` its recomputed tree gives.
4. The ledger log, recomputed entry by entry from a compact range: every ``ledger_nodes`` row equals the
   recomputed perfect subtree, every ``batches.ledger_proof`` is the entry's inclusion proof, every
   ``checkpoints`` row (one per size) carries the recomputed root, parses, and is signed by a published key whose
   validity window holds its creation time; consecutive checkpoints are proven consistent (RFC 9162 §2.1.4.2).
5. Evidence accounting: every evidence row is sealed exactly once or still pending, never both or neither.
6. ``timestamps``: every stored token verifies over its entry against the trusted TSA roots (tokens that cannot
   be checked are reported, not failed); with TSAs configured, an entry sealed longer ago than ``token_grace``
   without a token from each of them is a finding (a removed token, or a TSA failing for that long).

Step 3 can run in worker processes (``jobs``), each checking ranges of batches on its own connection to the same
snapshot; their results are merged in ``seq`` order, so the report is the serial one (``_parallel_leaf_results``).

Every problem is a ``Finding`` naming the table, the row's key and what is wrong; the first one is what
``evidence audit`` prints before exiting 1. Its SELECT statements (read-only) and its snapshot are
``service.storage.audit_queries``; the leaf bytes and tree hashing are ``service.core.formats`` and
``service.core.merkle`` (their column-wise bulk helpers), never re-implemented here.
Must not import: Flask, Celery, SQLAlchemy's query builder (SQL is storage's), use cases, the API.
"""

from __future__ import annotations

import gc
import hmac
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from cryptography import x509
from sqlalchemy.engine import Connection, Engine

from service.core import merkle
from service.core.errors import FormatError, NoteError, ProofError, TimestampInvalid
from service.core.formats import Checkpoint, LedgerEntry, format_time, leaf_hash_inputs, leaf_of_columns
from service.core.note import Verifier, open_note
from service.storage import audit_queries as q
from service.storage import db
from service.storage.codec import from_us, split_hashes, to_us

__all__ = ["AuditReport", "Finding", "Progress", "audit_ledger"]

MAX_FINDINGS = 100  # findings kept in the report (all are counted)
CHUNKS_PER_JOB = 4  # ranges of batches per worker process (--jobs > 1): smaller ranges even out the load

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IDS_RE = re.compile(r"(?:[A-Za-z0-9_-]{1,64}\n)*")  # newline-terminated ids, all valid


@dataclass(frozen=True)
class Finding:
    """One inconsistency: the ``table``, the row's ``key`` (e.g. ``seq=3``) and ``problem`` in words."""

    table: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: {self.problem}"


@dataclass
class AuditReport:
    """What was checked (``checked``: check name -> items), what could not be (``unchecked``), what is wrong."""

    checked: dict[str, int] = field(default_factory=dict)
    unchecked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    finding_count: int = 0
    ledger_size: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.finding_count == 0

    @property
    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def add(self, table: str, key: str, problem: str) -> None:
        self.finding_count += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(table, key, problem))

    def count(self, check: str, n: int = 1) -> None:
        self.checked[check] = self.checked.get(check, 0) + n

    def skip(self, check: str, n: int = 1) -> None:
        self.unchecked[check] = self.unchecked.get(check, 0) + n


class Progress(Protocol):
    """Told the number of sealed evidence rows first, then how many each batch covered."""

    def start(self, total_rows: int) -> None: ...

    def advance(self, rows: int) -> None: ...


# --- leaf hashes of a batch (the hot path: one call per batch) -------------------------------------------


@lru_cache(maxsize=65_536)
def _time_text(us: int) -> str:
    return format_time(from_us(us))


def _v2_leaf_hashes(report: AuditReport, batch: q.LeafBatch, hashes: list[bytes]) -> bool:
    """Replace the hashes of v2 deposits (SPEC §2.1: the label, SM3, case, phase name and attestation are bound by the
    leaf, so changing one of them in the database makes the leaf miss its batch root). False if one cannot be
    built at all (reported)."""
    for i, pk in enumerate(batch.pks):
        part = batch.v2.get(pk)
        if part is None:
            continue
        label, attestation, case_id, phase, phase_name, cosigns, sm3 = part
        eid, digest, received = batch.ids[i], batch.digests[i], batch.received[i]
        try:
            leaf = leaf_of_columns(
                eid,
                bytes(digest),
                from_us(int(received)),
                v2=True,
                label=label,
                case_id=case_id,
                phase=None if phase is None else int(phase),
                phase_name=phase_name,
                cosigns=cosigns,
                attestation=None if attestation is None else bytes(attestation),
                sm3=None if sm3 is None else bytes(sm3),
            )
        except FormatError as exc:
            report.add(
                "evidence_v2",
                f"evidence_pk={pk} (id {eid})",
                f"leaf {i} of batch {batch.seq} cannot be built: {exc.reason}",
            )
            return False
        hashes[i] = merkle.leaf_hash(leaf.to_bytes())
    return True


@lru_cache(maxsize=65_536)
def _time_bytes(us: int) -> bytes:
    return _time_text(us).encode()


def _leaf_hashes(ids: list[str], digests: list[bytes], received: list[int]) -> list[bytes]:
    """The RFC 9162 leaf hashes of a batch's evidence columns (ids and digests already checked: valid ids hold no
    newline, so the ids are encoded in one pass)."""
    id_bytes = "\n".join(ids).encode("ascii").split(b"\n") if ids else []
    return merkle.hashes(leaf_hash_inputs(id_bytes, digests, map(_time_bytes, received)))


# --- the audit ---------------------------------------------------------------------------------------


class _Peek:
    """An iterator with one row of look-ahead."""

    def __init__(self, rows: Iterator[Any]) -> None:
        self._rows = rows
        self.head: Any = next(rows, None)

    def pop(self) -> Any:
        row, self.head = self.head, next(self._rows, None)
        return row


@dataclass
class _Key:
    verifier: Verifier
    valid_from_us: int
    valid_until_us: int | None

    def window(self) -> str:
        until = "open" if self.valid_until_us is None else _time_text(self.valid_until_us)
        return f"[{_time_text(self.valid_from_us)}, {until})"

    def holds(self, us: int) -> bool:
        return self.valid_from_us <= us and (self.valid_until_us is None or us < self.valid_until_us)


def audit_ledger(
    engine: Engine,
    *,
    tsa_names: Sequence[str] = (),
    tsa_roots: Sequence[x509.Certificate] = (),
    token_grace: float = 3600.0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    jobs: int = 1,
) -> AuditReport:
    """Check every table of the ledger (see the module docstring); return the report, never raise for bad data.

    ``tsa_names``: the configured TSAs whose tokens every entry sealed more than ``token_grace`` seconds before
    the audit must have. ``tsa_roots``: trusted TSA certificates to check stored tokens against (none: every
    token is reported as not checked). ``jobs``: processes for step 3 (the evidence leaves of each batch); above 1,
    ranges of batches are checked in worker processes, each on its own connection to the same snapshot, and their
    results are merged in ``seq`` order, so the report (findings, their order, counts) is the serial one.
    """
    started = time.perf_counter()
    report = AuditReport()
    now_us = int(clock() * 1_000_000)
    # Millions of short-lived tuples and no reference cycles: the cyclic GC would only rescan them (measured:
    # a quarter of the run time); it is switched back on at the end.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _audit(engine, report, tsa_names, tsa_roots, token_grace, progress, now_us, jobs)
    finally:
        if gc_was_enabled:
            gc.enable()
    report.seconds = time.perf_counter() - started
    return report


def _audit(
    engine: Engine,
    report: AuditReport,
    tsa_names: Sequence[str],
    tsa_roots: Sequence[x509.Certificate],
    token_grace: float,
    progress: Progress | None,
    now_us: int,
    jobs: int,
) -> None:
    with q.snapshot(engine) as conn:
        keys = _check_signing_keys(conn, report)
        if progress is not None:
            progress.start(q.sealed_leaf_count(conn))
        sealed_rows = _check_batches_and_log(conn, report, keys, progress, jobs)
        _check_evidence_accounting(conn, report, sealed_rows)
        _check_timestamps(conn, report, tsa_names, tsa_roots, now_us - int(token_grace * 1_000_000))


def _check_signing_keys(conn: Connection, report: AuditReport) -> list[_Key]:
    keys: list[_Key] = []
    for row in q.signing_key_rows(conn):
        where = f"id={row.id}"
        try:
            verifier = Verifier.from_vkey(str(row.vkey))
        except FormatError as exc:
            report.add("signing_keys", where, f"the vkey does not parse: {exc.reason}")
            continue
        if verifier.key_hash != int(row.key_hash):
            report.add("signing_keys", where, f"key_hash {int(row.key_hash):08x} but the vkey's is {verifier.key_id}")
        if verifier.name != str(row.origin):
            report.add("signing_keys", where, f"origin {row.origin!r} but the key is named {verifier.name!r}")
        if row.valid_until_us is not None and int(row.valid_until_us) < int(row.valid_from_us):
            report.add("signing_keys", where, "the validity window ends before it starts")
        until = None if row.valid_until_us is None else int(row.valid_until_us)
        keys.append(_Key(verifier, int(row.valid_from_us), until))
        report.count("signing keys parse")
    return keys


@dataclass(frozen=True)
class _LeafResult:
    """What step 3 found for one ``batch_seq`` group of leaf rows, computed in a worker process."""

    seq: int
    rows: int
    first_pk: Any  # the group's first evidence_pk, to name orphans
    sealed: int  # rows whose evidence row exists
    batch: tuple[int, bytes, bytes] | None  # the (size, root, entry) checked against; None: no such batch
    findings: tuple[Finding, ...]
    checked: tuple[tuple[str, int], ...]


def _check_batches_and_log(
    conn: Connection, report: AuditReport, keys: list[_Key], progress: Progress | None, jobs: int = 1
) -> int:
    """Steps 2-4; returns the number of ``batch_leaves`` rows whose evidence row exists (every leaf row is read
    here, so step 5 needs no join of its own to count the sealed evidence)."""
    batch_rows = q.batch_rows(conn)
    # Step 3 per batch, either here (rows: the batch's leaf rows) or in worker processes (a _LeafResult each).
    parallel = jobs > 1 and not q.is_in_memory(conn)  # another process cannot open an in-memory SQLite database
    sealed = [0]
    leaves = _Peek(_parallel_leaf_results(conn, jobs, sealed) if parallel else _leaf_batches(conn, sealed))
    # Serially the tiles come with their hashes, for step 3; with workers (which read their own) only their keys,
    # so that tiles of batches not in the ledger are named here, at the same point either way.
    tiles = _Peek(q.tile_groups(conn, hashes=not parallel))
    nodes = _Peek(q.node_rows(conn))
    checkpoints = _Peek(q.checkpoint_rows(conn))
    log = _Log(report, keys)
    log.checkpoints(checkpoints, 0)
    previous_sealed = -1
    for row in batch_rows:
        seq = int(row.seq)
        # leaves of batches that do not exist (a deleted ledger entry, or rows pointing nowhere)
        while leaves.head is not None and leaves.head[0] < seq:
            orphan_seq, orphans = leaves.pop()
            report.add(
                "batch_leaves",
                f"evidence_pk={_first_pk(orphans)}",
                f"belongs to batch {orphan_seq}, which is not in the ledger",
            )
        group: Any = leaves.pop()[1] if leaves.head is not None and leaves.head[0] == seq else None
        batch_tiles = _tiles_of(report, tiles, seq)
        entry = _check_entry(report, row, previous_sealed)
        sealed_us = int(row.sealed_us)
        previous_sealed = max(previous_sealed, sealed_us)
        if isinstance(group, _LeafResult):
            # The worker checked the leaves against the batch row it read: it must be this one (SQLite workers
            # read their own snapshot), so that what the log verifies below is what the leaves recompute to.
            if group.batch != (int(row.size), bytes(row.root), bytes(row.entry)):
                report.add(
                    "batches",
                    f"seq={seq}",
                    "changed while the audit ran (a worker process read another "
                    "row): its leaves are not checked; run the audit again",
                )
            else:
                for finding in group.findings:
                    report.add(finding.table, finding.key, finding.problem)
                for check, count in group.checked:
                    report.count(check, count)
            rows = group.rows
        else:
            _check_leaves(report, row, entry, group, batch_tiles)
            rows = 0 if group is None else len(group.pks)
        if progress is not None:
            progress.advance(rows)
        log.append(row, nodes)
        log.checkpoints(checkpoints, log.size)
        report.count("ledger entries")
    while leaves.head is not None:
        orphan_seq, orphans = leaves.pop()
        report.add(
            "batch_leaves",
            f"evidence_pk={_first_pk(orphans)}",
            f"belongs to batch {orphan_seq}, beyond the last ledger entry",
        )
    _tiles_of(report, tiles, log.size)
    while nodes.head is not None:
        extra = nodes.pop()
        report.add(
            "ledger_nodes",
            f"(level={extra.level}, idx={extra.idx})",
            f"covers leaves up to {extra.end}, beyond the ledger size {log.size}",
        )
    while checkpoints.head is not None:
        extra = checkpoints.pop()
        report.add("checkpoints", f"size={extra.size}", f"is beyond the ledger size {log.size}")
    report.ledger_size = log.size
    return sealed[0]


def _tiles_of(report: AuditReport | None, tiles: _Peek, seq: int) -> list[Any]:
    """The ``batch_tiles`` rows of batch ``seq`` (empty if none); tiles of batches before it that were not taken
    belong to no ledger entry and are named (unless ``report`` is None: a worker, whose caller names them)."""
    while tiles.head is not None and tiles.head[0] < seq:
        orphan_seq, rows = tiles.pop()
        if report is None:
            continue
        report.add(
            "batch_tiles",
            f"batch_seq={orphan_seq}, level={rows[0][1]}, idx={rows[0][2]}",
            f"belongs to batch {orphan_seq}, which is not in the ledger",
        )
    return tiles.pop()[1] if tiles.head is not None and tiles.head[0] == seq else []


def _first_pk(group: Any) -> Any:
    return group.first_pk if isinstance(group, _LeafResult) else group.pks[0]


def _with_evidence(batch: q.LeafBatch) -> int:
    return len(batch.ids) - batch.ids.count(None)


def _leaf_batches(conn: Connection, sealed: list[int]) -> Iterator[tuple[int, q.LeafBatch]]:
    """``(batch_seq, leaves)`` of every batch; adds to ``sealed[0]`` the rows whose evidence row exists."""
    for batch in q.leaf_batches(conn):
        sealed[0] += _with_evidence(batch)
        yield batch.seq, batch


# --- step 3 in worker processes (--jobs > 1) ---------------------------------------------------------


def _parallel_leaf_results(conn: Connection, jobs: int, sealed: list[int]) -> Iterator[tuple[int, _LeafResult]]:
    """``(batch_seq, result)`` for every group of leaf rows, in ``batch_seq`` order, checked by ``jobs`` processes.

    The ``batch_seq`` span of ``batch_leaves`` (read in this snapshot) is cut into ranges, each audited by a worker
    on its own connection: PostgreSQL imports this transaction's snapshot (``pg_export_snapshot``), so every worker
    reads exactly these rows. SQLite cannot share a snapshot; there the ranges end at this snapshot's largest
    ``batch_seq``: the tables are append-only and sealing only adds batches after the last one, so rows committed
    since this snapshot began fall outside every range. Rows changed meanwhile by a superuser are still checked,
    in the worker's version: each result carries the batch row its leaves were checked against, and the caller
    requires it to be the row of its own snapshot (which the ledger log then verifies), else names the batch.
    Results are consumed in range order, so the first finding is the serial audit's.
    """
    span = q.leaf_seq_span(conn)
    if span is None:
        return
    low, high = span
    snapshot = q.export_snapshot(conn)
    url = conn.engine.url.render_as_string(hide_password=False)
    chunks = min(high - low + 1, jobs * CHUNKS_PER_JOB)
    step = -(-(high - low + 1) // chunks)
    ranges = [(lo, min(lo + step - 1, high)) for lo in range(low, high + 1, step)]
    # fork where there is one: a spawned worker re-imports SQLAlchemy, cryptography and the service (about 1 s here,
    # as long as the audit of 200,000 rows). The workers only open their own engine and return picklable results;
    # they share no connection with the parent (whose only other thread may be the progress bar's).
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(ranges)), mp_context=multiprocessing.get_context(method)
    ) as pool:
        futures: list[Future[list[_LeafResult]]] = [
            pool.submit(_audit_leaf_range, url, snapshot, lo, hi) for lo, hi in ranges
        ]
        try:
            for future in futures:
                for result in future.result():
                    sealed[0] += result.sealed
                    yield result.seq, result
        finally:
            for future in futures:
                future.cancel()


def _audit_leaf_range(url: str, snapshot: str | None, low: int, high: int) -> list[_LeafResult]:
    """Step 3 for the leaf rows with ``low <= batch_seq <= high`` (in a worker process; see
    ``_parallel_leaf_results``): each group is checked against its batch row exactly as ``_check_batches_and_log``
    does serially; a group whose batch is missing is returned unchecked, for the caller to name as an orphan."""
    gc.disable()
    engine = db.make_engine(url)
    try:
        with q.snapshot(engine) as conn:
            q.import_snapshot(conn, snapshot)
            batches = _Peek(q.batch_rows_between(conn, low, high))
            tiles = _Peek(q.tile_groups(conn, low, high))
            results: list[_LeafResult] = []
            for leaves in q.leaf_batches(conn, low, high):
                seq = leaves.seq
                while batches.head is not None and int(batches.head.seq) < seq:
                    batches.pop()
                if batches.head is None or int(batches.head.seq) != seq:
                    results.append(
                        _LeafResult(seq, len(leaves.pks), leaves.pks[0], _with_evidence(leaves), None, (), ())
                    )
                    continue
                row = batches.pop()
                try:
                    entry: LedgerEntry | None = LedgerEntry.from_bytes(bytes(row.entry))
                except FormatError:
                    entry = None  # named by _check_entry in the main process
                part = AuditReport()
                _check_leaves(part, row, entry, leaves, _tiles_of(None, tiles, seq))
                batch = (int(row.size), bytes(row.root), bytes(row.entry))
                results.append(
                    _LeafResult(
                        seq,
                        len(leaves.pks),
                        leaves.pks[0],
                        _with_evidence(leaves),
                        batch,
                        tuple(part.findings),
                        tuple(part.checked.items()),
                    )
                )
            return results
    finally:
        engine.dispose()


def _check_entry(report: AuditReport, row: Any, previous_sealed: int) -> LedgerEntry | None:
    seq = int(row.seq)
    where = f"seq={seq}"
    try:
        entry = LedgerEntry.from_bytes(bytes(row.entry))
    except FormatError as exc:
        report.add("batches", where, f"the entry bytes do not parse: {exc.reason}")
        return None
    sealed_us = int(row.sealed_us)
    problems = []
    if entry.seq != seq:
        problems.append(f"the entry says seq {entry.seq}")
    if entry.size != int(row.size):
        problems.append(f"the entry says size {entry.size}, the row {row.size}")
    if not hmac.compare_digest(entry.root, bytes(row.root)):
        problems.append(f"the root column {bytes(row.root).hex()} differs from the entry's root {entry.root.hex()}")
    if to_us(entry.sealed) != sealed_us:
        problems.append(f"the entry says sealed {format_time(entry.sealed)}, the row {_time_text(sealed_us)}")
    if sealed_us < previous_sealed:
        problems.append(f"sealed {_time_text(sealed_us)} is before the previous entry's {_time_text(previous_sealed)}")
    for problem in problems:
        report.add("batches", where, problem)
    report.count("ledger entries parse and agree with their rows")
    return entry


def _check_leaves(
    report: AuditReport, row: Any, entry: LedgerEntry | None, batch: q.LeafBatch | None, tiles: list[Any]
) -> None:
    seq, size = int(row.seq), int(row.size)
    root = entry.root if entry is not None else bytes(row.root)
    if batch is None or not batch.pks:
        report.add("batches", f"seq={seq}", f"has no evidence leaves (size {size})")
        return
    indexes, pks, proofs, ids, digests, received = (
        batch.indexes,
        batch.pks,
        batch.proofs,
        batch.ids,
        batch.digests,
        batch.received,
    )
    count = len(pks)
    if indexes != list(range(count)) or count != size:
        expected = set(range(size))
        missing = sorted(expected - set(indexes))
        extra = sorted(set(indexes) - expected)
        detail = []
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            detail.append(f"leaf index {missing[0]} is missing{more}")
        if extra:
            detail.append(f"leaf index {extra[0]} is beyond the batch size")
        report.add(
            "batch_leaves",
            f"batch_seq={seq}",
            f"{count} leaves stored for a batch of size {size}: " + ("; ".join(detail) or "duplicate indexes"),
        )
        return
    if None in ids:
        i = ids.index(None)
        report.add("batch_leaves", f"evidence_pk={pks[i]}", f"leaf {i} of batch {seq}: the evidence row is missing")
        return
    # One regex pass over all ids: each line of the joined text must be a valid id, and there must be exactly one
    # line per id (so no id can hide a newline: the per-id check then agrees with this one).
    joined = "\n".join(ids) + "\n"
    if joined.count("\n") != count or not _IDS_RE.fullmatch(joined):
        i = next(j for j, v in enumerate(ids) if not _ID_RE.fullmatch(v))
        report.add("evidence", f"pk={pks[i]}", f"the id {ids[i]!r} is not a valid evidence id")
        return
    if digests and not isinstance(digests[0], bytes):
        digests = list(map(bytes, digests))
        proofs = [None if p is None else bytes(p) for p in proofs]
    if set(map(len, digests)) != {32}:
        i = next(j for j, d in enumerate(digests) if len(d) != 32)
        report.add("evidence", f"pk={pks[i]} (id {ids[i]})", f"sha256 has {len(digests[i])} bytes, expected 32")
        return
    if entry is not None:
        sealed_us = to_us(entry.sealed)
        late = max(received)
        if late > sealed_us:
            i = received.index(late)
            report.add(
                "evidence",
                f"pk={pks[i]} (id {ids[i]})",
                f"received {_time_text(late)} after its batch {seq} was sealed {_time_text(sealed_us)}",
            )
    hashes = _leaf_hashes(ids, digests, received)
    if batch.v2 and not _v2_leaf_hashes(report, batch, hashes):
        return
    levels = merkle.tree_levels(hashes)
    if None in proofs:  # sealed since migration 0007: the tree's tiles instead of a proof per leaf
        _check_tiles(report, seq, root, levels, pks, ids, proofs, tiles)
        return
    if tiles:
        report.add(
            "batch_tiles",
            f"batch_seq={seq}, level={tiles[0][1]}, idx={tiles[0][2]}",
            f"is a tile of batch {seq}, whose leaves have stored proofs: such a batch has no tiles",
        )
    if hmac.compare_digest(levels[-1][0], root) and merkle.audit_paths_match(levels, proofs):
        report.count("evidence leaves recompute to their batch root", count)
        report.count("stored leaf proofs verify", count)
        report.count("batch roots recompute")
        return
    # Slow path, only for a bad batch: name the first leaf whose stored proof does not reach the signed root.
    for i in range(count):
        try:
            merkle.verify_inclusion(hashes[i], i, count, split_hashes(proofs[i]), root)
        except ProofError as exc:
            report.add(
                "evidence",
                f"pk={pks[i]} (id {ids[i]})",
                f"leaf {i} of batch {seq} does not reach the batch root with its stored proof: the "
                f"evidence row (id, sha256, received time, or for a v2 leaf the label, case, phase name or "
                f"attestation) or the proof was altered ({exc.reason})",
            )
            return
    if not hmac.compare_digest(levels[-1][0], root):
        _root_differs(report, seq, count, levels, root)
        return
    paths = merkle.audit_paths(levels)
    i = next(j for j in range(count) if paths[j] != proofs[j])
    report.add(
        "batch_leaves", f"evidence_pk={pks[i]}", f"leaf {i} of batch {seq}: the stored proof is not its audit path"
    )


def _root_differs(report: AuditReport, seq: int, count: int, levels: list[list[bytes]], root: bytes) -> None:
    """The finding of a batch whose evidence leaves recompute to another root than its entry records."""
    report.add(
        "batches",
        f"seq={seq}",
        f"the root recomputed from its {count} evidence leaves is {levels[-1][0].hex()}, "
        f"the entry records {root.hex()}",
    )


def _check_tiles(
    report: AuditReport,
    seq: int,
    root: bytes,
    levels: list[list[bytes]],
    pks: list[Any],
    ids: list[str],
    proofs: list[bytes | None],
    tiles: list[Any],
) -> None:
    """A batch sealed without stored proofs: its tiles must be exactly ``merkle.batch_tiles`` of the tree the
    evidence rows recompute, and that tree's root the entry's. Names the first leaf whose evidence row no longer
    hashes to the leaf hash sealed in the tiles, else the first tile that differs."""
    count = len(proofs)
    if any(p is not None for p in proofs):
        i = next(j for j, p in enumerate(proofs) if p is not None)
        report.add(
            "batch_leaves",
            f"evidence_pk={pks[i]}",
            f"leaf {i} of batch {seq} has a stored proof, other leaves of its batch have none",
        )
        return
    stored = {(int(k), int(t)): bytes(h) for _, k, t, h in tiles}
    expected = {(k, t): h for k, t, h in merkle.batch_tiles(levels)}
    root_ok = hmac.compare_digest(levels[-1][0], root)
    if root_ok and stored == expected:
        report.count("evidence leaves recompute to their batch root", count)
        report.count("batch roots recompute")
        report.count("batch tiles verify", len(expected))
        return
    if not root_ok:
        sealed = b"".join(stored.get((0, t), b"") for t in range(-(-count // merkle.TILE_WIDTH)))
        if len(sealed) == count * merkle.HASH_SIZE:
            recomputed = b"".join(levels[0])
            if sealed != recomputed:
                i = next(j for j in range(count) if sealed[32 * j : 32 * j + 32] != levels[0][j])
                report.add(
                    "evidence",
                    f"pk={pks[i]} (id {ids[i]})",
                    f"leaf {i} of batch {seq} does not hash to the leaf hash sealed in its batch's tiles: the evidence "
                    "row (id, sha256, received time, or for a v2 leaf the label, case, phase name or attestation) "
                    "was altered",
                )
                return
        _root_differs(report, seq, count, levels, root)
        return
    k, t = next(key for key in sorted(stored.keys() | expected.keys()) if stored.get(key) != expected.get(key))
    where = f"batch_seq={seq}, level={k}, idx={t}"
    got, want = stored.get((k, t)), expected.get((k, t))
    if got is None:
        report.add("batch_tiles", where, f"is missing: batch {seq} of {count} leaves needs it for its proofs")
    elif want is None:
        report.add("batch_tiles", where, f"is not a tile of batch {seq} of {count} leaves")
    else:
        j = next((j for j in range(0, min(len(got), len(want)), 32) if got[j : j + 32] != want[j : j + 32]), None)
        detail = f"hash {j // 32} differs" if j is not None else f"{len(got)} bytes, expected {len(want)}"
        report.add("batch_tiles", where, f"does not hold the recomputed hashes of tree level {8 * k}: {detail}")


class _Log:
    """The ledger log recomputed from the entries: compact range, nodes, proofs and checkpoints."""

    def __init__(self, report: AuditReport, keys: list[_Key]) -> None:
        self.report = report
        self.keys = keys
        self.size = 0
        self.frontier: dict[tuple[int, int], bytes] = {}
        self.broken = False
        self.origin: str | None = None
        self.last_checkpoint: tuple[int, bytes] | None = None
        self.last_nodes: dict[tuple[int, int], bytes] = {}

    def append(self, row: Any, nodes: _Peek) -> None:
        seq = int(row.seq)
        if self.broken:
            return
        if seq != self.size:
            self.report.add(
                "batches",
                f"seq={self.size}",
                f"is missing: the ledger jumps from seq {self.size - 1} to {seq}; later entries, "
                "nodes and checkpoints cannot be checked against the log",
            )
            self.broken = True
            return
        subtrees = merkle.perfect_subtrees(0, seq)
        proof = [self.frontier[k] for k in reversed(subtrees)]
        if split_hashes(bytes(row.ledger_proof)) != proof:
            self.report.add(
                "batches", f"seq={seq}", f"ledger_proof is not the entry's inclusion proof in the log of size {seq + 1}"
            )
        else:
            self.report.count("ledger proofs verify")
        leaf = merkle.leaf_hash(bytes(row.entry))
        new = merkle.append_nodes(seq, leaf, self.frontier)
        stored: dict[tuple[int, int], bytes] = {}
        while nodes.head is not None and int(nodes.head.end) <= seq + 1:
            node = nodes.pop()
            stored[(int(node.level), int(node.idx))] = bytes(node.hash)
        for key, value in new:
            found = stored.pop(key, None)
            if found is None:
                self.report.add("ledger_nodes", f"(level={key[0]}, idx={key[1]})", "is missing")
            elif not hmac.compare_digest(found, value):
                self.report.add(
                    "ledger_nodes",
                    f"(level={key[0]}, idx={key[1]})",
                    f"hash {found.hex()} differs from the recomputed {value.hex()}",
                )
            else:
                self.report.count("ledger nodes agree")
        for key in stored:
            self.report.add("ledger_nodes", f"(level={key[0]}, idx={key[1]})", "is not a node of the ledger log")
        everything = {**self.frontier, **dict(new)}
        self.last_nodes = everything
        self.size = seq + 1
        self.frontier = {k: everything[k] for k in merkle.perfect_subtrees(0, self.size)}

    def root(self) -> bytes:
        return merkle.hash_range(0, self.size, self.frontier)

    def checkpoints(self, rows: _Peek, size: int) -> None:
        """Check the checkpoint of ``size`` (and report any skipped sizes) now that the log has that size."""
        if self.broken:
            return
        while rows.head is not None and int(rows.head.size) < size:
            row = rows.pop()
            self.report.add("checkpoints", f"size={row.size}", "is out of order (duplicate size?)")
        if rows.head is None or int(rows.head.size) != size:
            self.report.add("checkpoints", f"size={size}", "is missing: every ledger size is signed once")
            return
        self._check_checkpoint(rows.pop(), size)

    def _check_checkpoint(self, row: Any, size: int) -> None:
        where = f"size={size}"
        root = self.root()
        note = bytes(row.note)
        created_us = int(row.created_us)
        if not hmac.compare_digest(bytes(row.root), root):
            self.report.add(
                "checkpoints",
                where,
                f"root column {bytes(row.root).hex()} differs from the ledger log "
                f"root {root.hex()} recomputed from the entries",
            )
            return
        split = note.rfind(b"\n\n")
        try:
            body = Checkpoint.from_bytes(note[: split + 1]) if split >= 0 else None
        except FormatError as exc:
            self.report.add("checkpoints", where, f"the note's checkpoint does not parse: {exc.reason}")
            return
        if body is None:
            self.report.add("checkpoints", where, "the note has no signature block")
            return
        if body.size != size or not hmac.compare_digest(body.root, root):
            self.report.add(
                "checkpoints",
                where,
                f"the signed note is for size {body.size}, root {body.root.hex()}; "
                f"the ledger log of size {size} has root {root.hex()}",
            )
            return
        if self.origin is None:
            self.origin = body.origin
        elif body.origin != self.origin:
            self.report.add("checkpoints", where, f"origin {body.origin!r}, earlier checkpoints {self.origin!r}")
            return
        self.report.count("checkpoint roots recompute")
        self._check_signature(where, note, body.origin, created_us, int(row.key_hash))
        # consecutive checkpoints: prove consistency from the previous one with RFC 9162 §2.1.4.2
        if self.last_checkpoint is not None:
            old_size, old_root = self.last_checkpoint
            if 0 < old_size and old_size == size - 1:
                try:
                    proof = merkle.log_consistency_proof(old_size, size, self.last_nodes)
                    merkle.verify_consistency(old_size, size, old_root, body.root, proof)
                    self.report.count("consecutive checkpoints consistent")
                except ProofError as exc:
                    self.report.add(
                        "checkpoints", where, f"not consistent with the checkpoint of size {old_size}: {exc.reason}"
                    )
            elif old_size == 0:
                self.report.count("consecutive checkpoints consistent")  # everything extends the empty tree
        self.last_checkpoint = (size, body.root)

    def _check_signature(self, where: str, note: bytes, origin: str, created_us: int, key_hash: int) -> None:
        valid = [k.verifier for k in self.keys if k.holds(created_us) and k.verifier.name == origin]
        try:
            opened = open_note(note, valid) if valid else None
        except NoteError:
            opened = None
        if opened is not None:
            if opened.verified[0].key_hash != key_hash:
                self.report.add(
                    "checkpoints", where, f"key_hash column {key_hash:08x}, signed by {opened.verified[0].key_id}"
                )
            self.report.count("checkpoint signatures verify")
            return
        # Say why: signed by a published key outside its window, or by no published key at all.
        for k in self.keys:
            try:
                open_note(note, [k.verifier])
            except NoteError:
                continue
            self.report.add(
                "checkpoints",
                where,
                f"signed at {_time_text(created_us)} by key {k.verifier.key_id} "
                f"outside its validity window {k.window()}",
            )
            return
        self.report.add("checkpoints", where, "the signature does not verify with any published signing key")


def _check_evidence_accounting(conn: Connection, report: AuditReport, sealed_rows: int) -> None:
    """Every evidence row is sealed (one ``batch_leaves`` row: its primary key) or pending, never both or neither.

    Counts decide (``evidence = sealed + pending`` once nothing is both and no queue row points nowhere;
    ``sealed_rows``: the ``batch_leaves`` rows whose evidence row exists, counted while step 3 read them); only
    when they disagree is the evidence table scanned for the first row that is neither.
    """
    both = q.first_sealed_and_pending(conn)
    if both is not None:
        report.add("pending", f"evidence_pk={both.pk} (id {both.id})", "is still pending although it is sealed")
    dangling = q.first_dangling_pending(conn)
    if dangling is not None:
        report.add("pending", f"evidence_pk={dangling.evidence_pk}", "points to no evidence row")
    total, pending_rows = q.evidence_counts(conn)
    if both is not None or dangling is not None or total != sealed_rows + pending_rows:
        row = q.first_dropped_evidence(conn)
        if row is not None:
            report.add("evidence", f"pk={row.pk} (id {row.id})", "is neither sealed nor pending: it was dropped")
    report.count("evidence rows sealed exactly once or pending", total)


def _check_timestamps(
    conn: Connection, report: AuditReport, tsa_names: Sequence[str], roots: Sequence[x509.Certificate], cutoff_us: int
) -> None:
    rows = q.timestamp_rows(conn)
    from service.core.timestamps import verify_token  # rfc3161-client only when there is something to check

    for row in rows:
        where = f"id={row.id} (seq {row.batch_seq}, tsa {row.tsa})"
        if row.entry is None:
            report.add("timestamps", where, "is for a ledger entry that does not exist")
            continue
        if not roots:
            report.skip("tokens (no trusted TSA certificate given)")
            continue
        try:
            info = verify_token(bytes(row.token), bytes(row.entry), roots)
        except TimestampInvalid as exc:
            report.add("timestamps", where, f"the token does not verify: {exc.reason}")
            continue
        if to_us(info.gen_time) != int(row.gen_time_us):
            report.add(
                "timestamps",
                where,
                f"gen_time {_time_text(int(row.gen_time_us))} but the token says {format_time(info.gen_time)}",
            )
            continue
        report.count("tokens verify")
    for name in tsa_names:
        late, recent = q.batches_without_token(conn, name, cutoff_us)
        if late is not None:
            report.add(
                "timestamps",
                f"seq={late.seq}",
                f"has no token from TSA {name!r} although it was sealed "
                f"{_time_text(int(late.sealed_us))} (a token was removed, "
                "or the TSA has failed since)",
            )
        if recent and late is None:
            report.notes.append(f"{recent} ledger entries still wait for a token from {name!r} (sealed recently)")
