"""Webhook registration (SPEC §7): ``PUT|GET|DELETE /v1/webhook``, one callback URL per tenant.

Owns: the three views and their OpenAPI description. Views are thin: checking the URL, the secret, the
deliveries and their signing are ``service.webhooks``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from service import webhooks
from service.api.auth import require_tenant
from service.api.parsing import read_json_object
from service.api.responses import TENANT_RESPONSES, json_body, json_content, json_response, ref
from service.api.state import runtime_state
from service.core.bodies import reject_unknown_fields
from service.core.errors import InvalidInput
from service.core.formats import utc_now

bp = Blueprint("webhooks", __name__)


@bp.put("/v1/webhook")
def put_webhook() -> Response:
    """Register (or replace) the tenant's callback URL; the answer carries the signing secret, shown only now."""
    tenant_id = require_tenant()
    body = read_json_object(request.stream)
    reject_unknown_fields(body, ("url",), "the JSON body")
    if "url" not in body:
        raise InvalidInput("the JSON body needs 'url': the http(s) URL to POST events to")
    state = runtime_state()
    with state.engine.begin() as conn:
        described, secret = webhooks.register_webhook(
            conn, tenant_id, body["url"], utc_now(), state.runtime.settings.webhook_allow_networks
        )
    return json_response(json_body({**described, "secret": secret}), 201)


@bp.get("/v1/webhook")
def get_webhook() -> Response:
    """The tenant's callback and its recent delivery attempts (newest first)."""
    tenant_id = require_tenant()
    with runtime_state().reader.begin() as conn:
        described = webhooks.get_webhook(conn, tenant_id)
    return json_response(json_body(described), 200)


@bp.delete("/v1/webhook")
def delete_webhook() -> Response:
    """Stop calling the tenant's callback."""
    tenant_id = require_tenant()
    with runtime_state().engine.begin() as conn:
        webhooks.delete_webhook(conn, tenant_id, utc_now())
    return Response(status=204)


# --- OpenAPI ----------------------------------------------------------------------------------------

_WEBHOOK = {
    "type": "object",
    "required": ["url", "created_at"],
    "properties": {
        "url": {"type": "string"},
        "created_at": ref("schemas", "Time"),
        "secret": {"type": "string", "description": "HMAC-SHA256 key of the Evidence-Signature header; shown once."},
        "deliveries": {"type": "array", "items": {"type": "object"}},
    },
}


def openapi_paths() -> dict[str, dict[str, Any]]:
    """The OpenAPI 3.1 path item of this blueprint."""
    return {
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
                    "201": json_content(_WEBHOOK, "Registered; the secret is shown only in this answer."),
                    "400": ref("responses", "BadRequest"),
                    "413": ref("responses", "TooLarge"),
                    **TENANT_RESPONSES,
                },
            },
            "get": {
                "operationId": "getWebhook",
                "summary": "The callback URL and its recent delivery attempts.",
                "security": [{"bearerAuth": []}],
                "responses": {
                    "200": json_content(_WEBHOOK, "The webhook (no secret)."),
                    "404": ref("responses", "NotFound"),
                    **TENANT_RESPONSES,
                },
            },
            "delete": {
                "operationId": "deleteWebhook",
                "summary": "Stop calling the callback URL.",
                "security": [{"bearerAuth": []}],
                "responses": {
                    "204": {"description": "Deleted."},
                    "404": ref("responses", "NotFound"),
                    **TENANT_RESPONSES,
                },
            },
        },
    }
