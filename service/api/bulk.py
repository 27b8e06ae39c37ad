"""Batch anchoring endpoints (SPEC §7) and webhook registration, plus the per-key rate limit of tenant calls.

Owns: ``POST /v1/evidence/batch`` (all or nothing, one round trip, ``Idempotency-Key``), ``GET /v1/evidence?sha256=``
(this tenant's deposits of a digest), ``PUT|GET|DELETE /v1/webhook``, and the app-wide ``before_request`` hook that
counts every request carrying a Bearer key against that key's limit (429 with ``Retry-After``), before the key
is even looked up. Views are thin: the logic is ``service.bulk``, ``service.webhooks`` and ``service.ratelimit``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from service import bulk, webhooks
from service.api.auth import require_tenant
from service.api.errors import problem
from service.api.parsing import read_json_object, reject_unknown_fields
from service.api.state import runtime_state
from service.core.errors import FormatError, InvalidInput, InvalidItem, PayloadTooLarge
from service.core.formats import parse_sha256_hex, utc_now
from service.ratelimit import RateLimiter, enforce, make_limiter

bp = Blueprint("bulk", __name__)

LIMITER_KEY = "evidence_ratelimit"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


@bp.record_once
def _install_limiter(state: BlueprintSetupState) -> None:
    # create_app stores the ApiState (with the settings) before it registers blueprints.
    app = state.app
    if LIMITER_KEY not in app.extensions:
        settings = app.extensions["evidence_ledger"].runtime.settings
        app.extensions[LIMITER_KEY] = make_limiter(settings)


def limiter_of(app: Flask) -> RateLimiter | None:
    limiter: RateLimiter | None = app.extensions.get(LIMITER_KEY)
    return limiter


@bp.before_app_request
def _rate_limit() -> None:
    """Every request with ``Authorization: Bearer <key>`` counts against that key (public calls without it don't)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        enforce(limiter_of(current_app), token.strip())


@bp.errorhandler(InvalidItem)
def _invalid_item(exc: InvalidItem) -> Response:
    # 422: the body is well-formed JSON of the right shape, but one item's content is wrong.
    return problem(422, exc.reason)


def _json_response(answer: bulk.Answer, *, replayed: bool = False) -> Response:
    response = Response(answer.body, status=answer.status, mimetype="application/json")
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


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
            return _json_response(stored, replayed=True)
    items = bulk.parse_batch(body)
    answer, replayed = bulk.run_idempotent(
        state.engine,
        tenant_id,
        key,
        req_hash,
        state.runtime.settings.idempotency_ttl,
        lambda conn, now: bulk.record_batch(conn, tenant_id, items, now),
        utc_now,
    )
    return _json_response(answer, replayed=replayed)


@bp.get("/v1/evidence")
def deposits_of_digest() -> Response:
    """This tenant's deposits of the digest ``?sha256=<hex>``, oldest first, each with its status."""
    tenant_id = require_tenant()
    values = request.args.getlist("sha256")
    if len(values) != 1:
        raise InvalidInput("give the query parameter 'sha256' once: the file's SHA-256 as 64 lowercase hex digits")
    try:
        digest = parse_sha256_hex(values[0])
    except FormatError as exc:
        raise InvalidInput(f"'sha256': {exc.reason}") from None
    with runtime_state().reader.begin() as conn:
        items = bulk.deposits_of_digest(conn, tenant_id, digest)
    return _json_response(bulk.Answer(200, bulk.dump_body({"sha256": digest.hex(), "items": items})))


# --- webhooks ---------------------------------------------------------------------------------------


@bp.put("/v1/webhook")
def put_webhook() -> Response:
    """Register (or replace) the tenant's callback URL; the answer carries the signing secret, shown only now."""
    tenant_id = require_tenant()
    body = read_json_object(request.stream)
    reject_unknown_fields(body, ("url",), "the JSON body")
    if "url" not in body:
        raise InvalidInput("the JSON body needs 'url': the http(s) URL to POST events to")
    with runtime_state().engine.begin() as conn:
        described, secret = webhooks.register_webhook(conn, tenant_id, body["url"], utc_now())
    return _json_response(bulk.Answer(201, bulk.dump_body({**described, "secret": secret})))


@bp.get("/v1/webhook")
def get_webhook() -> Response:
    """The tenant's callback and its recent delivery attempts (newest first)."""
    tenant_id = require_tenant()
    with runtime_state().reader.begin() as conn:
        described = webhooks.get_webhook(conn, tenant_id)
    return _json_response(bulk.Answer(200, bulk.dump_body(described)))


@bp.delete("/v1/webhook")
def delete_webhook() -> Response:
    """Stop calling the tenant's callback."""
    tenant_id = require_tenant()
    with runtime_state().engine.begin() as conn:
        webhooks.delete_webhook(conn, tenant_id, utc_now())
    return Response(status=204)


# --- OpenAPI ----------------------------------------------------------------------------------------


def _ref(kind: str, name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


_PROBLEM = {"application/problem+json": {"schema": _ref("schemas", "Problem")}}
_TENANT = {
    "401": _ref("responses", "Unauthorized"),
    "429": {
        "description": "Too many requests for this API key.",
        "headers": {"Retry-After": {"required": True, "schema": {"type": "string"}}},
        "content": _PROBLEM,
    },
    "503": _ref("responses", "Unavailable"),
}
_EVIDENCE_STATUS_LIST = {
    "type": "object",
    "required": ["sha256", "items"],
    "properties": {
        "sha256": _ref("schemas", "Sha256Hex"),
        "items": {"type": "array", "items": _ref("schemas", "EvidenceStatus")},
    },
}
_WEBHOOK = {
    "type": "object",
    "required": ["url", "created_at"],
    "properties": {
        "url": {"type": "string"},
        "created_at": _ref("schemas", "Time"),
        "secret": {"type": "string", "description": "HMAC-SHA256 key of the Evidence-Signature header; shown once."},
        "deliveries": {"type": "array", "items": {"type": "object"}},
    },
}


def openapi_paths() -> dict[str, dict[str, Any]]:
    """The OpenAPI 3.1 path items of this blueprint. ``/v1/evidence`` holds only ``get`` here: merge it with the
    ``post`` described in ``service.api.openapi``."""
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
                                                "sha256": _ref("schemas", "Sha256Hex"),
                                                "label": _ref("schemas", "Label"),
                                            },
                                        },
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "items": _ref("schemas", "Deposit")}},
                        },
                        "Accepted, in request order; pending until sealed.",
                    ),
                    "400": _ref("responses", "BadRequest"),
                    "409": {"description": "The Idempotency-Key was used with another body.", "content": _PROBLEM},
                    "413": _ref("responses", "TooLarge"),
                    "422": {
                        "description": "One item is invalid (its index is named); nothing stored.",
                        "content": _PROBLEM,
                    },
                    **_TENANT,
                },
            }
        },
        "/v1/evidence": {
            "get": {
                "operationId": "findEvidenceByDigest",
                "summary": "This tenant's deposits of one SHA-256, oldest first, with their status.",
                "security": [{"bearerAuth": []}],
                "parameters": [
                    {"name": "sha256", "in": "query", "required": True, "schema": _ref("schemas", "Sha256Hex")}
                ],
                "responses": {
                    "200": _json(_EVIDENCE_STATUS_LIST, "The deposits (possibly none)."),
                    "400": _ref("responses", "BadRequest"),
                    **_TENANT,
                },
            }
        },
        "/v1/webhook": {
            "put": {
                "operationId": "putWebhook",
                "summary": "Register or replace the callback URL told when this tenant's evidence is sealed.",
                "security": [{"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["url"],
                                "additionalProperties": False,
                                "properties": {"url": {"type": "string", "format": "uri"}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(_WEBHOOK, "Registered; the secret is shown only in this answer."),
                    "400": _ref("responses", "BadRequest"),
                    "413": _ref("responses", "TooLarge"),
                    **_TENANT,
                },
            },
            "get": {
                "operationId": "getWebhook",
                "summary": "The callback URL and its recent delivery attempts.",
                "security": [{"bearerAuth": []}],
                "responses": {
                    "200": _json(_WEBHOOK, "The webhook (no secret)."),
                    "404": _ref("responses", "NotFound"),
                    **_TENANT,
                },
            },
            "delete": {
                "operationId": "deleteWebhook",
                "summary": "Stop calling the callback URL.",
                "security": [{"bearerAuth": []}],
                "responses": {
                    "204": {"description": "Deleted."},
                    "404": _ref("responses", "NotFound"),
                    **_TENANT,
                },
            },
        },
    }
