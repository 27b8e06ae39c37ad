"""Batch anchoring endpoints (SPEC §7): ``POST /v1/evidence/batch`` and ``GET /v1/evidence?sha256=``.

Owns: the two views (all or nothing, one round trip, ``Idempotency-Key``; this tenant's deposits of a digest), the
status codes they answer with, and their OpenAPI description. Views are thin: the logic is ``service.bulk``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy.engine import Connection

from service import bulk, sealing, witnessing
from service.api.auth import require_tenant
from service.api.errors import problem
from service.api.evidence import depositor_cas
from service.api.parsing import read_json_object
from service.api.responses import (
    PROBLEM_CONTENT,
    REPLAYED_HEADER,
    TENANT_RESPONSES,
    json_body,
    json_content,
    json_response,
    ref,
)
from service.api.state import runtime_state
from service.core.bodies import reject_unknown_fields
from service.core.errors import FormatError, InvalidInput, InvalidItem, PayloadTooLarge
from service.core.formats import check_evidence_id, parse_sha256_hex, utc_now
from service.core.strictjson import json_type

bp = Blueprint("bulk", __name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
__all__ = ["IDEMPOTENCY_HEADER", "REPLAYED_HEADER", "bp", "idempotency_key", "openapi_paths"]


@bp.errorhandler(InvalidItem)
def _invalid_item(exc: InvalidItem) -> Response:
    # 422: the body is well-formed JSON of the right shape, but one item's content is wrong.
    return problem(422, exc.reason)


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` header, checked, or None when absent."""
    values = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput(f"the {IDEMPOTENCY_HEADER} header is given {len(values)} times, expected once")
    return bulk.check_idempotency_key(values[0])


def _read_body(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the batch body is {request.content_length} bytes, larger than the limit of {limit}")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the batch body is larger than the limit of {limit} bytes")
    return raw


@bp.post("/v1/evidence/batch")
def deposit_batch() -> Response:
    """Up to 10,000 digests in one request: all stored (202, items in request order) or none (4xx)."""
    tenant_id = require_tenant()
    key = idempotency_key()
    mimetype = request.mimetype
    if mimetype != "application/json":
        raise InvalidInput(f'send the batch as application/json {{"items": [...]}}; found {mimetype or "none"!r}')
    body = _read_body(bulk.MAX_BATCH_BODY)
    req_hash = bulk.request_hash(request.method, request.path, body)
    state = runtime_state()
    if key is not None:
        # A retry of a stored request is answered before the body is even parsed (it was valid the first time).
        with state.reader.begin() as conn:
            stored = bulk.stored_answer(conn, tenant_id, key, req_hash, utc_now())
        if stored is not None:
            return json_response(stored.body, stored.status, replayed=True)
    items, attestations = bulk.parse_batch_attested(body)
    trusted_cas = depositor_cas() if attestations else []

    def accept(conn: Connection, now: datetime) -> bulk.Answer:
        deposits = bulk.record_batch(conn, tenant_id, items, now, attestations, trusted_cas)
        return bulk.Answer(202, json_body({"items": [d.to_json() for d in deposits]}))

    answer, replayed = bulk.run_idempotent(
        state.engine,
        tenant_id,
        key,
        req_hash,
        state.runtime.settings.idempotency_ttl,
        accept,
        utc_now,
    )
    return json_response(answer.body, answer.status, replayed=replayed)


@bp.post("/v1/receipts")
def receipts_in_bulk() -> Response:
    """Up to 1,000 receipts in one request (an extension of SPEC §7): ``{"ids": [...]}`` -> 200 ``{"items": [...]}``
    in request order, each the receipt, the status object while pending, or ``{"id", "status": "not_found"}``."""
    tenant_id = require_tenant()
    if request.mimetype != "application/json":
        raise InvalidInput(f'send the ids as application/json {{"ids": [...]}}; found {request.mimetype or "none"!r}')
    ids = parse_receipt_ids(read_json_object(request.stream))
    with runtime_state().reader.begin() as conn:
        keys = [k["vkey"] for k in sealing.key_list(conn)]
        items = sealing.receipts_for(conn, tenant_id, ids, keys=keys)
        items = witnessing.items_with_cosignatures(conn, runtime_state().runtime.settings, items)
    response = json_response(json_body({"items": items}), 200)
    response.headers["Cache-Control"] = "no-store"  # tenants' receipts: no cache keeps a copy
    return response


def parse_receipt_ids(body: dict[str, Any]) -> list[str]:
    """The evidence ids of a ``POST /v1/receipts`` body (1 to 1,000 strings, each a valid evidence id).

    :raise InvalidInput: not of that shape. :raise InvalidItem: id ``i`` is not an evidence id.
    """
    reject_unknown_fields(body, ("ids",), "the JSON body")
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise InvalidInput(f"'ids' must be an array of evidence ids, found {json_type(ids)}")
    if not 1 <= len(ids) <= sealing.MAX_RECEIPTS_PAGE:
        raise InvalidInput(f"'ids' must hold 1 to {sealing.MAX_RECEIPTS_PAGE} evidence ids, found {len(ids)}")
    out: list[str] = []
    for i, value in enumerate(ids):
        if not isinstance(value, str):
            raise InvalidItem(i, f"ids[{i}] must be a string (an evidence id), found {json_type(value)}")
        try:
            out.append(check_evidence_id(value))
        except FormatError as exc:
            raise InvalidItem(i, f"ids[{i}]: {exc.reason}") from None
    return out


@bp.get("/v1/evidence")
def deposits_of_digest() -> Response:
    """This tenant's deposits of the digest ``?sha256=<hex>``, oldest first, each with its status."""
    tenant_id = require_tenant()
    values = request.args.getlist("sha256")
    if len(values) != 1:
        raise InvalidInput("give the query parameter 'sha256' once: the file's SHA-256 as 64 lowercase hex digits")
    try:
        digest = parse_sha256_hex(values[0].lower())  # upper-case hex is normalised
    except FormatError as exc:
        raise InvalidInput(f"'sha256': {exc.reason}") from None
    with runtime_state().reader.begin() as conn:
        items = bulk.deposits_of_digest(conn, tenant_id, digest)
    return json_response(json_body({"sha256": digest.hex(), "items": items}), 200)


# --- OpenAPI ----------------------------------------------------------------------------------------


_EVIDENCE_STATUS_LIST = {
    "type": "object",
    "required": ["sha256", "items"],
    "properties": {
        "sha256": ref("schemas", "Sha256Hex"),
        "items": {"type": "array", "items": ref("schemas", "EvidenceStatus")},
    },
}


def openapi_paths() -> dict[str, dict[str, Any]]:
    """The OpenAPI 3.1 path items of this blueprint. ``/v1/evidence`` holds only ``get`` here: merge it with the
    ``post`` described in ``service.api.openapi``. (``/v1/webhook`` is ``service.api.webhooks``.)"""
    return {
        "/v1/evidence/batch": {
            "post": {
                "operationId": "depositBatch",
                "summary": "Deposit up to 10,000 digests at once (all or nothing); Idempotency-Key makes retries safe.",
                "security": [{"bearerAuth": []}],
                "parameters": [
                    {
                        "name": IDEMPOTENCY_HEADER,
                        "in": "header",
                        "required": False,
                        "description": "Same key and byte-identical body within the TTL: the same answer; "
                        "another body: 409.",
                        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["items"],
                                "additionalProperties": False,
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": bulk.MAX_BATCH_ITEMS,
                                        "items": {
                                            "type": "object",
                                            "required": ["sha256"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "sha256": ref("schemas", "Sha256Hex"),
                                                "sm3": ref("schemas", "Sm3Hex"),
                                                "label": ref("schemas", "Label"),
                                                "attestation": {
                                                    "type": "string",
                                                    "description": "The depositor's SPEC §2.2 attestation, base64.",
                                                },
                                            },
                                        },
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": json_content(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "items": ref("schemas", "Deposit")}},
                        },
                        "Accepted, in request order; pending until sealed.",
                    ),
                    "400": ref("responses", "BadRequest"),
                    "409": {
                        "description": "The Idempotency-Key was used with another body.",
                        "content": PROBLEM_CONTENT,
                    },
                    "413": ref("responses", "TooLarge"),
                    "422": {
                        "description": "One item is invalid (its index is named); nothing stored.",
                        "content": PROBLEM_CONTENT,
                    },
                    **TENANT_RESPONSES,
                },
            }
        },
        "/v1/receipts": {
            "post": {
                "operationId": "getReceipts",
                "summary": "Up to 1,000 receipts in one request (extension of SPEC §7), answered in request order.",
                "description": "Each item is the receipt once sealed, the status object while pending, or "
                '{"id", "status": "not_found"} when this tenant has no such evidence (the same answer for an '
                "unknown id and for another tenant's id).",
                "security": [{"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["ids"],
                                "additionalProperties": False,
                                "properties": {
                                    "ids": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": sealing.MAX_RECEIPTS_PAGE,
                                        "items": ref("schemas", "EvidenceId"),
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": json_content(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {
                                "items": {
                                    "type": "array",
                                    "items": {
                                        "oneOf": [
                                            ref("schemas", "Receipt"),
                                            ref("schemas", "EvidenceStatus"),
                                            {
                                                "type": "object",
                                                "required": ["id", "status"],
                                                "properties": {
                                                    "id": {"type": "string"},
                                                    "status": {"const": sealing.NOT_FOUND},
                                                },
                                            },
                                        ]
                                    },
                                }
                            },
                        },
                        "One item per id, in request order.",
                    ),
                    "400": ref("responses", "BadRequest"),
                    "413": ref("responses", "TooLarge"),
                    "422": {
                        "description": "One id is not an evidence id (its index is named).",
                        "content": PROBLEM_CONTENT,
                    },
                    **TENANT_RESPONSES,
                },
            }
        },
        "/v1/evidence": {
            "get": {
                "operationId": "findEvidenceByDigest",
                "summary": "This tenant's deposits of one SHA-256, oldest first, with their status.",
                "security": [{"bearerAuth": []}],
                "parameters": [
                    {"name": "sha256", "in": "query", "required": True, "schema": ref("schemas", "Sha256Hex")}
                ],
                "responses": {
                    "200": json_content(_EVIDENCE_STATUS_LIST, "The deposits (possibly none)."),
                    "400": ref("responses", "BadRequest"),
                    **TENANT_RESPONSES,
                },
            }
        },
    }
