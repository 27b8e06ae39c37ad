"""Batch deposits and ``Idempotency-Key`` (SPEC §7): validate a whole batch, store it in one round trip, and make
retries safe by replaying the stored answer.

Owns: parsing the ``{"items": [...]}`` body (all or nothing: the first bad item is named by its index),
``run_idempotent`` (the stored-answer protocol, usable by any POST) and the listing of a tenant's deposits of one
digest. The idempotency row is inserted in the same transaction as the evidence, so the primary key
(tenant, key) decides between two concurrent requests: the loser's transaction rolls back (nothing of it is
stored) and it answers with the winner's stored answer.

Must not import: Flask, Celery. SQL lives in ``service.storage.ledger``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from service import sealing
from service.core.bodies import json_object, reject_unknown_fields
from service.core.errors import Conflict, FormatError, IdempotencyConflict, InvalidInput, InvalidItem, NotFound
from service.core.formats import parse_sha256_hex
from service.core.labels import label_problem
from service.core.receipt import JSONObject
from service.core.strictjson import json_type
from service.storage import ledger
from service.storage.codec import to_us

__all__ = [
    "MAX_BATCH_BODY",
    "MAX_BATCH_ITEMS",
    "Answer",
    "check_idempotency_key",
    "deposits_of_digest",
    "parse_batch",
    "parse_batch_attested",
    "record_batch",
    "request_hash",
    "run_idempotent",
    "stored_answer",
]

MAX_BATCH_ITEMS = 10_000
# 10,000 items with 500-character labels (up to 4 bytes each in UTF-8, escaped) fit comfortably.
MAX_BATCH_BODY = 32 * 1024 * 1024
MAX_IDEMPOTENCY_KEY = 255
_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
# Characters a label may not hold (same rule as the single POST): controls, line separators, lone surrogates.


@dataclass(frozen=True)
class Answer:
    """An answer as the caller (the API) made it and ``run_idempotent`` stores it: status code and the exact body
    text, replayed byte for byte for a retry with the same key."""

    status: int
    body: str

    def to_stored(self) -> tuple[str, bytes]:
        """``(response, body_zlib)`` for ``idempotency_keys``: the status as JSON, and the body's UTF-8 compressed
        (a 10,000-item answer: about 63 bytes per item instead of 187, or 101 after PostgreSQL's own compression)."""
        return json.dumps({"status": self.status}), zlib.compress(self.body.encode("utf-8", "surrogatepass"), 6)

    @classmethod
    def from_stored(cls, text: str, body_zlib: bytes | None = None) -> Answer:
        """The answer ``to_stored`` gave, byte for byte; ``body_zlib`` None: stored before migration 0007, when
        the body was a string in ``text``."""
        value = json.loads(text)
        if body_zlib is None:
            return cls(int(value["status"]), str(value["body"]))
        return cls(int(value["status"]), zlib.decompress(bytes(body_zlib)).decode("utf-8", "surrogatepass"))


# --- idempotency ---------------------------------------------------------------------------------


def check_idempotency_key(value: str) -> str:
    """Return ``value`` if it is 1-255 visible ASCII characters (no spaces) other than a comma.

    A comma is refused because a server joins a repeated header's values with commas (gunicorn sends
    ``Idempotency-Key: k1`` + ``Idempotency-Key: k2`` on as ``k1,k2``): two keys must not become a third.

    :raise InvalidInput: saying what is wrong with it.
    """
    if "," in value:
        raise InvalidInput(
            "the Idempotency-Key header must be given once and hold one key without commas "
            f"(found {value.count(',') + 1} comma-separated values)"
        )
    if not _KEY_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"the Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters without spaces or commas, "
            f"found {len(value)} characters{'' if value.isascii() else ' with non-ASCII ones'}"
        )
    return value


def request_hash(method: str, path: str, body: bytes) -> bytes:
    """What "the same request" means for a key: method, path and the byte-identical body."""
    h = hashlib.sha256()
    h.update(f"{method.upper()} {path}\n".encode())
    h.update(body)
    return h.digest()


def run_idempotent(
    engine: Engine,
    tenant_id: int,
    key: str | None,
    req_hash: bytes,
    ttl_seconds: int,
    produce: Callable[[Connection, datetime], Answer],
    clock: Callable[[], datetime],
) -> tuple[Answer, bool]:
    """Run ``produce`` once per (tenant, key) and return ``(answer, replayed)``.

    Without a key, ``produce`` runs in its own transaction. With one: the stored answer of an unexpired earlier
    request is returned (``replayed`` True) if its ``req_hash`` is the same; otherwise ``produce`` runs and its
    answer is stored with the key **in the same transaction**. Two concurrent requests with the same key: both may
    run ``produce``, but only one can insert the key (primary key); the other gets ``IntegrityError``, its
    transaction rolls back with everything it wrote, and it returns the winner's answer.

    :raise IdempotencyConflict: the key was used for another request (method, path or body differ).
    """
    if key is None:
        with engine.begin() as conn:
            return produce(conn, clock()), False
    for _ in range(2):
        try:
            with engine.begin() as conn:
                now = clock()
                now_us = to_us(now)
                stored = ledger.get_idempotency(conn, tenant_id, key, now_us)
                if stored is not None:
                    return _replay(stored, req_hash, key), True
                answer = produce(conn, now)
                response, body_zlib = answer.to_stored()
                ledger.insert_idempotency(
                    conn, tenant_id, key, req_hash, response, now_us, now_us + ttl_seconds * 1_000_000, body_zlib
                )
                return answer, False
        except IntegrityError:
            # Lost the race for the key: our transaction rolled back; the next round reads the winner's answer.
            continue
    raise RuntimeError(f"Idempotency-Key {key!r}: insert kept failing but no stored answer is visible")


def stored_answer(conn: Connection, tenant_id: int, key: str, req_hash: bytes, now: datetime) -> Answer | None:
    """The unexpired stored answer for (tenant, key), or None.

    :raise IdempotencyConflict: the key was used for another request.
    """
    row = ledger.get_idempotency(conn, tenant_id, key, to_us(now))
    return None if row is None else _replay(row, req_hash, key)


def _replay(stored: Any, req_hash: bytes, key: str) -> Answer:
    if bytes(stored.request_hash) != req_hash:
        raise IdempotencyConflict(
            f"the Idempotency-Key {key!r} was already used with a different request (another body or endpoint); "
            "use a new key for a new request"
        )
    return Answer.from_stored(stored.response, stored.body_zlib)


# --- the batch body ---------------------------------------------------------------------------------


class BatchItem(NamedTuple):
    """One parsed item: the file's SHA-256, its label and its SM3 (GB/T 32905) when given."""

    sha256: bytes
    label: str | None
    sm3: bytes | None = None


def parse_batch(body: bytes) -> list[BatchItem]:
    """The items of a batch body ``{"items": [{"sha256": hex, "label": text?, "sm3": hex?}, ...]}``.

    :raise InvalidInput: the body is not strict JSON of that shape (no item named).
    :raise InvalidItem: item ``i`` is wrong; the message names the index and the problem. Nothing is accepted.
    """
    return parse_batch_attested(body)[0]


def parse_batch_attested(body: bytes) -> tuple[list[BatchItem], dict[int, bytes]]:
    """``parse_batch``, plus the depositor attestations (SPEC §2.2) items carry, by item index (an item may add
    ``"attestation": "<base64>"``)."""
    doc = json_object(body, shape='an object {"items": [...]}')
    reject_unknown_fields(doc, ("items",), "the JSON body")
    items = doc.get("items")
    if not isinstance(items, list):
        raise InvalidInput(f'\'items\' must be an array of {{"sha256", "label"?}} objects, found {json_type(items)}')
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise InvalidInput(f"'items' must hold 1 to {MAX_BATCH_ITEMS} items, found {len(items)}")
    attestations: dict[int, bytes] = {}
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("attestation") is not None:
            value = item["attestation"]
            try:
                raw = base64.b64decode(value.encode("ascii"), validate=True) if isinstance(value, str) else None
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = None
            if raw is None:
                raise InvalidItem(i, f"items[{i}].attestation must be the attestation as standard base64 text")
            attestations[i] = raw
    parsed = [
        _parse_item(i, {k: v for k, v in item.items() if k != "attestation"} if isinstance(item, dict) else item)
        for i, item in enumerate(items)
    ]
    return parsed, attestations


def _parse_item(index: int, item: Any) -> BatchItem:
    where = f"items[{index}]"
    if not isinstance(item, dict):
        raise InvalidItem(index, f'{where} must be an object {{"sha256", "label"?}}, found {json_type(item)}')
    unknown = sorted(set(item) - {"sha256", "label", "sm3"})
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise InvalidItem(index, f"{where} has unknown field(s) {names}; allowed: sha256, label, sm3")
    value = item.get("sha256")
    if not isinstance(value, str):
        found = json_type(value)
        raise InvalidItem(index, f"{where}.sha256 must be a string of 64 hex digits, found {found}")
    try:
        digest = parse_sha256_hex(value.lower())  # upper-case hex is normalised
    except FormatError as exc:
        raise InvalidItem(index, f"{where}.sha256: {exc.reason}") from None
    sm3 = _item_sm3(index, where, item["sm3"]) if "sm3" in item else None
    label = item.get("label")
    if label is None and "label" not in item:
        return BatchItem(digest, None, sm3)
    if not isinstance(label, str):
        raise InvalidItem(index, f"{where}.label must be a string, found {json_type(label)}")
    problem = label_problem(label)
    if problem is not None:
        raise InvalidItem(index, f"{where}.label {problem}")
    return BatchItem(digest, label, sm3)


def _item_sm3(index: int, where: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidItem(
            index, f"{where}.sm3 must be a string of 64 hex digits (the file's SM3), found {json_type(value)}"
        )
    digits = value.lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise InvalidItem(index, f"{where}.sm3: SM3 hex must be 64 hex digits, found {value[:80]!r}")
    return bytes.fromhex(digits)


def record_batch(
    conn: Connection,
    tenant_id: int,
    items: Sequence[tuple[bytes, str | None] | BatchItem],
    now: datetime,
    attestations: dict[int, bytes] | None = None,
    trusted_cas: Sequence[Any] = (),
) -> list[sealing.Deposit]:
    """Store the items as pending evidence (one round trip) and return the deposits, in request order. Attested
    items (``attestations`` by index) are checked and stored one by one (``deposits.deposit_v2``); a refused one
    fails the whole batch, naming its index. An item's ``sm3`` (a ``BatchItem``) is bound by its v2 leaf."""
    from service import deposits

    def sm3_of(item: tuple[bytes, str | None] | BatchItem) -> bytes | None:
        return item.sm3 if isinstance(item, BatchItem) else None

    attested = attestations or {}
    plain = [(i, item) for i, item in enumerate(items) if i not in attested]
    out: dict[int, sealing.Deposit] = dict(
        zip(
            (i for i, _ in plain),
            sealing.record_evidence(
                conn, tenant_id, [(item[0], item[1]) for _, item in plain], now, sm3=[sm3_of(it) for _, it in plain]
            ),
            strict=True,
        )
    )
    for i in sorted(attested):
        digest, label = items[i][0], items[i][1]
        try:
            recorded = deposits.deposit_v2(
                conn,
                tenant_id,
                sha256=digest,
                sm3=sm3_of(items[i]),
                label=label,
                attestation_raw=attested[i],
                now=now,
                trusted_cas=trusted_cas,
            )
        except (InvalidInput, NotFound, Conflict) as exc:
            raise InvalidItem(i, f"items[{i}].attestation: {exc.reason}") from None
        out[i] = recorded.deposit
    return [out[i] for i in range(len(items))]


# --- reading ---------------------------------------------------------------------------------------


def deposits_of_digest(conn: Connection, tenant_id: int, digest: bytes) -> list[JSONObject]:
    """This tenant's deposits of ``digest``, oldest first, each shaped like ``GET /v1/evidence/{id}``."""
    return [sealing.status_of(row) for row in ledger.find_evidence_by_sha256(conn, tenant_id, digest)]
