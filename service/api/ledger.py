"""Public endpoints (SPEC §7): the signed checkpoint, the ledger log, published keys, verification, health.

Owns: ``GET /v1/checkpoint``, ``GET /v1/ledger/entries``, ``GET /v1/ledger/consistency``, ``GET /v1/keys``,
``POST /v1/verify``, ``GET /healthz``, ``GET /readyz``. No authentication: everything here is public by design
(receipts are self-contained; anyone may check the ledger). No SQL here.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import DBAPIError

from service import sealing, witnessing
from service.api.errors import problem
from service.api.parsing import query_int, read_json_object, sha256_field
from service.api.state import runtime_state
from service.core.bodies import reject_unknown_fields
from service.core.errors import InvalidInput, NotFound
from service.core.note import Verifier
from service.core.receipt import b64
from service.core.verify import verify_receipt

bp = Blueprint("ledger", __name__)


@bp.get("/v1/checkpoint")
def checkpoint() -> Response:
    """The latest signed checkpoint of the ledger log (a C2SP signed note), with the witnesses' cosignatures
    appended (SPEC §9)."""
    state = runtime_state()
    with state.reader.begin() as conn:
        note = witnessing.checkpoint_with_cosignatures(conn, state.runtime.settings)
    response = Response(note, status=200, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/v1/ledger/entries")
def entries() -> Response:
    """Ledger entries [start, end) as base64 of their exact bytes, at most 1,000 a page."""
    start = query_int(request.args, "start", required=False) or 0
    end = query_int(request.args, "end", required=False)
    if end is None:
        end = start + sealing.MAX_ENTRIES_PAGE  # a full page, cut at the ledger size
    with runtime_state().reader.begin() as conn:
        first, items = sealing.ledger_entries(conn, start, end)
    return jsonify({"start": first, "entries": [b64(e) for e in items]})


@bp.get("/v1/ledger/consistency")
def consistency() -> Response:
    """RFC 9162 consistency proof between two ledger sizes (0 < from <= to <= size)."""
    old = query_int(request.args, "from", required=True)
    new = query_int(request.args, "to", required=True)
    assert old is not None and new is not None
    with runtime_state().reader.begin() as conn:
        proof = sealing.consistency_proof(conn, old, new)
    return jsonify({"from": old, "to": new, "proof": [b64(h) for h in proof]})


@bp.get("/v1/keys")
def keys() -> Response:
    """Every checkpoint signing key this server has published, with its validity window."""
    with runtime_state().reader.begin() as conn:
        items = sealing.key_list(conn)
    return jsonify({"keys": items})


@bp.post("/v1/verify")
def verify() -> Response:
    """Verify a receipt (and optionally a digest) trusting this server's published keys and TSA roots."""
    body = read_json_object(request.stream)
    reject_unknown_fields(body, ("receipt", "sha256"), "the JSON body")
    if "receipt" not in body:
        raise InvalidInput("the JSON body needs 'receipt': the evidence-receipt/v1 or /v2 object")
    document = body["receipt"]
    if not isinstance(document, dict):
        raise InvalidInput("'receipt' must be a JSON object (an evidence-receipt/v1 or /v2 document)")
    digest = sha256_field(body["sha256"]) if "sha256" in body else None
    state = runtime_state()
    with state.reader.begin() as conn:
        published = sealing.key_list(conn)
    trusted = [Verifier.from_vkey(k["vkey"]) for k in published]
    result = verify_receipt(document, sha256=digest, trusted_keys=trusted, tsa_roots=state.tsa_roots)
    return jsonify(result.to_json())


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: the database answers and a signing key and a checkpoint are published."""
    try:
        with runtime_state().reader.begin() as conn:
            published = sealing.key_list(conn)
            sealing.latest_checkpoint(conn)
    except DBAPIError:
        return problem(503, "not ready: the database is unreachable", headers={"Retry-After": "5"})
    except NotFound:
        return problem(503, "not ready: no checkpoint is signed yet", headers={"Retry-After": "5"})
    if not published:
        return problem(503, "not ready: no signing key is published", headers={"Retry-After": "5"})
    body: dict[str, Any] = {"status": "ready", "keys": len(published)}
    return jsonify(body)
