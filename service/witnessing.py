"""The ledger as a C2SP log that asks witnesses (SPEC §9): submit checkpoints, store cosignatures, serve them.

Owns: ``cosign_checkpoint`` (after a seal, outside the sealing transaction: send the checkpoint with a consistency
proof to every witness of the operator's policy in parallel, resend from the witness's size on ``409``, check and
store each cosignature), choosing the checkpoint a receipt or ``/v1/checkpoint`` carries (with every cosignature
appended), the shortfall check (quorum still missing when the wait ran out: a metric and a log line), and
``WitnessThread``, the in-process submitter of the embedded default. Celery tasks (``workers.witness_tasks``) are
thin adapters over these functions.

A witness that is down delays nothing but receipts, and those by at most ``Settings.witness_wait`` seconds.
Outbound requests go only to the URLs of the operator's policy file (``EVIDENCE_WITNESS_POLICY``).
Must not import: Flask or Celery.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from service import metrics, witness_client
from service.background import Loop
from service.config import Settings
from service.core import merkle
from service.core.cosignature import check_cosignatures
from service.core.errors import FormatError, NotFound, WitnessUnavailable
from service.core.formats import utc_now
from service.core.policy import Policy, PolicyWitness
from service.core.receipt import JSONObject, b64
from service.core.tlog_witness import AddCheckpoint, parse_size_body
from service.storage import db, ledger
from service.storage.codec import to_us

__all__ = [
    "Post",
    "WitnessOutcome",
    "WitnessThread",
    "check_shortfall",
    "cosign_checkpoint",
    "served_checkpoint",
    "witnessed_receipt",
]

log = logging.getLogger(__name__)

Post = Callable[[str, bytes, float], tuple[int, str, bytes]]
"""``(witness URL, request body, timeout) -> (status, content type, body)``; raises ``WitnessUnavailable``."""

MIN_ROUND_GAP = 0.05  # seconds between two rounds of the in-process submitter (seal bursts coalesce)
MAX_RESENDS = 3  # 409 answers followed in one submission (each names the witness's size)
SCAN_LIMIT = 1000  # cosignature rows looked at when choosing the checkpoint of a receipt


@dataclass(frozen=True)
class WitnessOutcome:
    """What one witness answered for the checkpoint of ``size``: ``cosigned``, ``present`` (stored before),
    ``refused`` (4xx), ``conflict`` (a size beyond ours), ``unavailable`` (down, timeout, 5xx)."""

    witness: str
    size: int
    outcome: str
    detail: str


# --- submitting ---------------------------------------------------------------------------------


def cosign_checkpoint(
    engine: Engine,
    policy: Policy,
    *,
    timeout: float,
    size: int | None = None,
    post: Post = witness_client.post_add_checkpoint,
    pool: ThreadPoolExecutor | None = None,
) -> list[WitnessOutcome]:
    """Ask every witness of ``policy`` without a stored cosignature of the checkpoint of ``size`` (default: the
    latest) to cosign it, all in parallel (on ``pool`` when given, else on threads made for this call); store the
    valid cosignatures in one transaction. Never raises for a witness's failure."""
    with db.read_only(engine).connect() as conn:
        row = ledger.latest_checkpoint(conn) if size is None else ledger.checkpoint_at(conn, size)
        if row is None or int(row.size) == 0:
            return []
        size = int(row.size)
        note = bytes(row.note)
        created_us = to_us(row.created)
        have = {str(r.vkey) for r in ledger.cosignatures_at(conn, size)}
        todo = [w for w in policy.witnesses if w.url and w.key.vkey not in have]
        sizes = {w.key.vkey: ledger.witness_size(conn, w.key.vkey) for w in todo}
    if not todo:
        return [WitnessOutcome(w.name, size, "present", "already cosigned") for w in policy.witnesses]
    before = _met(policy, have)

    def ask(w: PolicyWitness) -> tuple[WitnessOutcome, _Cosigned | None]:
        return _ask(engine, w, size, note, timeout, post, sizes[w.key.vkey])

    if pool is None:
        with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="witness") as own:
            answers = list(own.map(ask, todo))
    else:
        answers = list(pool.map(ask, todo))
    outcomes = _store_all(engine, size, answers)
    for o in outcomes:
        metrics.WITNESS_REQUESTS.labels(o.witness, o.outcome).inc()
    if not before:
        with db.read_only(engine).connect() as conn:
            now_have = {str(r.vkey) for r in ledger.cosignatures_at(conn, size)}
        if _met(policy, now_have):
            metrics.WITNESS_QUORUM_LATENCY.observe(max(0.0, (to_us(utc_now()) - created_us) / 1e6))
    return outcomes


@dataclass(frozen=True)
class _Cosigned:
    witness: PolicyWitness
    timestamp: int
    line: bytes


def _store_all(
    engine: Engine, size: int, answers: Sequence[tuple[WitnessOutcome, _Cosigned | None]]
) -> list[WitnessOutcome]:
    """Store the round's valid cosignatures in one transaction (one row each; a row another worker stored
    meanwhile makes that one ``present``)."""
    good = [c for _, c in answers if c is not None]
    now_us = to_us(utc_now())
    if good:
        try:
            with engine.begin() as conn:
                for c in good:
                    ledger.insert_cosignature(
                        conn, size, c.witness.name, c.witness.key.vkey, c.timestamp, c.line, now_us
                    )
        except IntegrityError:  # another worker stored some: one transaction each, keep the others
            lost: set[str] = set()
            for c in good:
                try:
                    with engine.begin() as conn:
                        ledger.insert_cosignature(
                            conn, size, c.witness.name, c.witness.key.vkey, c.timestamp, c.line, now_us
                        )
                except IntegrityError:
                    lost.add(c.witness.name)
            return [
                WitnessOutcome(o.witness, size, "present", "stored meanwhile by another worker")
                if o.witness in lost
                else o
                for o, _ in answers
            ]
    return [o for o, _ in answers]


def _ask(
    engine: Engine, w: PolicyWitness, size: int, note: bytes, timeout: float, post: Post, old: int
) -> tuple[WitnessOutcome, _Cosigned | None]:
    assert w.url is not None
    if old > size:
        return WitnessOutcome(w.name, size, "present", f"it cosigned size {old} already"), None
    for _ in range(MAX_RESENDS + 1):
        try:
            with db.read_only(engine).connect() as conn:
                proof = _consistency(conn, old, size)
        except NotFound as exc:
            return WitnessOutcome(w.name, size, "conflict", exc.reason), None
        body = AddCheckpoint.build(old, proof, note).to_bytes()
        try:
            status, _media, answer = post(w.url, body, timeout)
        except WitnessUnavailable as exc:
            log.warning("witness %s unavailable for checkpoint %d: %s", w.name, size, exc.reason)
            return WitnessOutcome(w.name, size, "unavailable", exc.reason), None
        if status == 200:
            return _check_answer(w, size, note, answer)
        if status == 409:
            try:
                theirs = parse_size_body(answer)
            except FormatError as exc:
                return _refused(w, size, status, f"unreadable 409 answer: {exc.reason}"), None
            if theirs > size:
                detail = f"the witness has cosigned size {theirs}, beyond this ledger's {size}: investigate"
                log.error("witness %s: %s", w.name, detail)
                return WitnessOutcome(w.name, size, "conflict", detail), None
            if theirs == old:
                return _refused(w, size, status, f"the witness insists on size {theirs}"), None
            log.info("witness %s is at size %d, not %d: resending from there", w.name, theirs, old)
            old = theirs
            continue
        if status >= 500:
            return WitnessOutcome(w.name, size, "unavailable", f"HTTP {status}: {_detail(answer)}"), None
        return _refused(w, size, status, _detail(answer)), None
    return _refused(w, size, 409, "too many 409 answers"), None


def _refused(w: PolicyWitness, size: int, status: int, detail: str) -> WitnessOutcome:
    log.error("witness %s refused checkpoint %d with HTTP %d: %s", w.name, size, status, detail)
    return WitnessOutcome(w.name, size, "refused", f"HTTP {status}: {detail}")


def _detail(answer: bytes) -> str:
    try:
        return str(json.loads(answer)["detail"])[:500]
    except (ValueError, KeyError, TypeError):
        return answer[:200].decode("utf-8", "replace")


def _consistency(conn: Connection, old: int, new: int) -> list[bytes]:
    if old == 0 or old == new:
        return []
    if ledger.checkpoint_at(conn, old) is None and old > ledger.ledger_size(conn):
        raise NotFound(f"the witness is at size {old}, which this ledger never had")
    ranges = merkle.consistency_ranges(old, new)
    nodes = ledger.get_nodes(conn, merkle.nodes_needed_for_ranges(ranges))
    return [merkle.hash_range(a, b, nodes) for a, b in ranges]


def _check_answer(w: PolicyWitness, size: int, note: bytes, answer: bytes) -> tuple[WitnessOutcome, _Cosigned | None]:
    """The witness's line for its key if it verifies (C2SP: the answer is note signature lines)."""
    if not answer.endswith(b"\n"):
        return _refused(w, size, 200, "the answer is not signature lines"), None
    try:
        [check] = check_cosignatures(note + answer, [w.key])
    except FormatError as exc:
        return _refused(w, size, 200, f"the answer is not signature lines: {exc.reason}"), None
    if not check.valid or check.timestamp is None:
        return _refused(w, size, 200, f"no valid cosignature by {w.key.key_id}: {check.reason}"), None
    outcome = WitnessOutcome(w.name, size, "cosigned", f"cosigned at {check.timestamp}")
    return outcome, _Cosigned(w, check.timestamp, _line_of(answer, w))


def _line_of(answer: bytes, w: PolicyWitness) -> bytes:
    from service.core.cosignature import SignatureLine

    for number, text in enumerate(answer[:-1].decode("utf-8").split("\n"), start=1):
        parsed = SignatureLine.parse(text, number)
        if parsed.name == w.key.name and parsed.key_hash == w.key.key_hash:
            return parsed.line
    raise AssertionError("a verified cosignature has a line")  # check_cosignatures found it


# --- serving ------------------------------------------------------------------------------------


def _met(policy: Policy, vkeys: set[str]) -> bool:
    return policy.satisfied(w.name for w in policy.witnesses if w.key.vkey in vkeys)


def _with_cosignatures(conn: Connection, size: int, note: bytes) -> bytes:
    return note + b"".join(bytes(r.line) for r in ledger.cosignatures_at(conn, size))


@dataclass(frozen=True)
class Choice:
    """The checkpoint chosen for entry ``seq``: its size and whether its cosignatures meet the quorum; None
    while the quorum may still come."""

    size: int
    quorum: bool


def choose_checkpoint(conn: Connection, policy: Policy, seq: int, now_us: int, wait_us: int) -> Choice | None:
    """The checkpoint a receipt of ledger entry ``seq`` carries: the smallest one covering the entry (size > seq)
    whose cosignatures meet the quorum; before that exists, None while the checkpoint of size seq+1 is younger
    than the wait; after the wait, the covering checkpoint with the most cosignatures (or seq+1 with none)."""
    by_size: dict[int, set[str]] = {}
    for r in ledger.cosigned_sizes_from(conn, seq + 1, SCAN_LIMIT):
        by_size.setdefault(int(r.size), set()).add(str(r.vkey))
    for size in sorted(by_size):
        if _met(policy, by_size[size]):
            return Choice(size, True)
    if not policy.needs_cosignatures:
        return Choice(seq + 1, True)
    own = ledger.checkpoint_at(conn, seq + 1)
    if own is None:
        raise RuntimeError(f"ledger entry {seq} has no checkpoint of size {seq + 1}")
    if to_us(own.created) + wait_us > now_us:
        return None
    if not by_size:
        return Choice(seq + 1, False)
    best = max(sorted(by_size), key=lambda s: len(by_size[s]))  # max keeps the first (smallest) of equals
    return Choice(best, False)


def witnessed_receipt(
    conn: Connection, receipt: JSONObject, policy: Policy, *, now_us: int, wait_us: int
) -> JSONObject | None:
    """``receipt`` (as ``sealing.receipt_for`` built it) carrying the chosen checkpoint with every cosignature
    appended, and a ledger proof to that checkpoint's size; None while waiting for the witnesses."""
    batch = receipt["batch"]
    assert isinstance(batch, dict)
    seq = int(batch["seq"])
    choice = choose_checkpoint(conn, policy, seq, now_us, wait_us)
    if choice is None:
        return None
    row = ledger.checkpoint_at(conn, choice.size)
    assert row is not None
    out = dict(receipt)
    entry_part = dict(out["ledger"])
    entry_part["checkpoint"] = _with_cosignatures(conn, choice.size, bytes(row.note)).decode("utf-8")
    if choice.size != seq + 1:
        ranges = merkle.inclusion_ranges(seq, choice.size)
        nodes = ledger.get_nodes(conn, merkle.nodes_needed_for_ranges(ranges))
        entry_part["proof"] = [b64(merkle.hash_range(a, b, nodes)) for a, b in ranges]
    out["ledger"] = entry_part
    return out


def receipt_with_cosignatures(conn: Connection, settings: Settings, receipt: JSONObject) -> JSONObject | None:
    """``witnessed_receipt`` with the deployment's policy and wait (the receipt as is without a policy)."""
    if settings.witness_policy is None:
        return receipt
    return witnessed_receipt(
        conn,
        receipt,
        settings.witness_policy,
        now_us=to_us(utc_now()),
        wait_us=int(settings.witness_wait * 1_000_000),
    )


WAITING = {"status": "sealed", "waiting_for": "witnesses", "detail": "sealed; waiting for witnesses to cosign"}


def items_with_cosignatures(conn: Connection, settings: Settings, items: list[JSONObject]) -> list[JSONObject]:
    """``POST /v1/receipts`` items: each receipt with its cosigned checkpoint (one choice per batch), or, while
    its checkpoint waits for the quorum, ``{"id", "status": "sealed", "waiting_for": "witnesses", "detail"}``."""
    if settings.witness_policy is None:
        return items
    out: list[JSONObject] = []
    chosen: dict[int, JSONObject | None] = {}
    for item in items:
        if "format" not in item:
            out.append(item)
            continue
        batch = item["batch"]
        assert isinstance(batch, dict)
        seq = int(batch["seq"])
        if seq not in chosen:
            chosen[seq] = receipt_with_cosignatures(conn, settings, item)
        template = chosen[seq]
        evidence = item["evidence"]
        assert isinstance(evidence, dict)
        if template is None:
            out.append({"id": evidence["id"], **WAITING})
        else:
            ledger_part = template["ledger"]
            out.append({**item, "ledger": ledger_part})
    return out


def checkpoint_with_cosignatures(conn: Connection, settings: Settings) -> bytes:
    """``served_checkpoint`` with the deployment's policy and wait."""
    return served_checkpoint(
        conn, settings.witness_policy, now_us=to_us(utc_now()), wait_us=int(settings.witness_wait * 1_000_000)
    )


def served_checkpoint(conn: Connection, policy: Policy | None, *, now_us: int, wait_us: int) -> bytes:
    """The checkpoint ``/v1/checkpoint`` and ``/log/checkpoint`` serve, with every cosignature appended: the
    latest, unless it still waits for its quorum and an older one has it (then that one)."""
    latest = ledger.latest_checkpoint(conn)
    if latest is None:
        raise NotFound("the ledger has no checkpoint yet")
    size = int(latest.size)
    if policy is None or size == 0:
        return _with_cosignatures(conn, size, bytes(latest.note))
    have = {str(r.vkey) for r in ledger.cosignatures_at(conn, size)}
    if _met(policy, have) or to_us(latest.created) + wait_us <= now_us:
        return _with_cosignatures(conn, size, bytes(latest.note))
    by_size: dict[int, set[str]] = {}
    for r in ledger.cosigned_sizes_below(conn, size, SCAN_LIMIT):
        by_size.setdefault(int(r.size), set()).add(str(r.vkey))
    for older in sorted(by_size, reverse=True):
        if _met(policy, by_size[older]):
            row = ledger.checkpoint_at(conn, older)
            assert row is not None
            return _with_cosignatures(conn, older, bytes(row.note))
    return _with_cosignatures(conn, size, bytes(latest.note))


def check_shortfall(engine: Engine, policy: Policy, size: int, *, wait: float) -> bool:
    """After the wait: True (and a metric and a WARNING line) if no checkpoint covering ledger size ``size`` has
    its witness quorum yet."""
    with db.read_only(engine).connect() as conn:
        choice = choose_checkpoint(conn, policy, size - 1, to_us(utc_now()), 0)
        if choice is None or choice.quorum:
            return False
        names = sorted(str(r.witness) for r in ledger.cosignatures_at(conn, choice.size))
    metrics.WITNESS_SHORTFALL.inc()
    log.warning(
        "witness shortfall: after %.1f s the checkpoint of size %d has no witness quorum (%s); receipts are "
        "served with the cosignatures there are: %s",
        wait,
        size,
        policy.describe_quorum(),
        ", ".join(names) or "none",
    )
    return True


# --- the embedded default's submitter ------------------------------------------------------------


class WitnessThread(Loop):
    """Asks the witnesses after every seal (``poke``) and every ``interval`` seconds (a witness that was down
    catches up); checks each new checkpoint for a shortfall once its wait ran out. Never dies of an error."""

    what = "asking the witnesses"

    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        *,
        wait: float,
        timeout: float,
        interval: float = 5.0,
        post: Post = witness_client.post_add_checkpoint,
    ) -> None:
        super().__init__("evidence-witnesses", interval)
        self.engine = engine
        self.policy = policy
        self.wait = wait
        self.timeout = timeout
        self.post = post
        self._deadlines: dict[int, float] = {}
        self._last_round = -MIN_ROUND_GAP
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(policy.witnesses)), thread_name_prefix="witness")

    def after_stop(self) -> None:
        self._pool.shutdown(wait=False)

    def next_wait(self) -> float:
        next_deadline = min(self._deadlines.values(), default=time.monotonic() + self.interval)
        return min(self.interval, next_deadline - time.monotonic())

    def step(self) -> Sequence[WitnessOutcome]:
        """Submit the latest checkpoint; check the shortfall of those whose wait ran out."""
        # Seals in quick succession are cosigned together: at most one round every MIN_ROUND_GAP seconds (the
        # latest checkpoint covers the earlier ones), so witnesses never cost the sealer more than that.
        self.pause(MIN_ROUND_GAP - (time.monotonic() - self._last_round))
        if self.stopping:
            return ()
        self._last_round = time.monotonic()
        outcomes = cosign_checkpoint(self.engine, self.policy, timeout=self.timeout, post=self.post, pool=self._pool)
        if outcomes and outcomes[0].size not in self._deadlines:
            self._deadlines[outcomes[0].size] = time.monotonic() + self.wait
        now = time.monotonic()
        for size, deadline in sorted(self._deadlines.items()):
            if deadline <= now:
                del self._deadlines[size]
                check_shortfall(self.engine, self.policy, size, wait=self.wait)
        return outcomes
