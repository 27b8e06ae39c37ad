"""JSON answers of the tenant endpoints, and the OpenAPI pieces their descriptions share.

Owns: ``json_body`` (the exact text of a JSON answer: compact, UTF-8, keys in their given order; the
``Idempotency-Key`` replay stores this text and sends it back byte for byte), ``json_response`` and the small
OpenAPI helpers ``service.api.bulk`` and ``service.api.webhooks`` describe their paths with.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response

REPLAYED_HEADER = "Idempotent-Replayed"


def json_body(obj: Any) -> str:
    """The JSON text of a response body (compact, UTF-8, keys in their given order)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def json_response(body: str, status: int, *, replayed: bool = False) -> Response:
    """``body`` (JSON text) with ``status``; ``replayed`` marks an answer replayed for an ``Idempotency-Key``."""
    response = Response(body, status=status, mimetype="application/json")
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


# --- OpenAPI ----------------------------------------------------------------------------------------


def ref(kind: str, name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def attachment(description: str, media_type: str, filename: str = "...") -> dict[str, Any]:
    """A ``200`` that sends a file as an attachment (``Content-Disposition: attachment; filename=...``)."""
    return {
        "description": description,
        "headers": {
            "Content-Disposition": {
                "required": True,
                "schema": {"type": "string"},
                "description": f"attachment; filename={filename}",
            }
        },
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }


def evidence_file_responses(description: str, media_type: str) -> dict[str, Any]:
    """The answers of a file made from a tenant's sealed evidence (certificate, bundle): the file, 202 while it is
    pending, or a problem."""
    problem = {"application/problem+json": {"schema": ref("schemas", "Problem")}}
    return {
        "200": attachment(description, media_type),
        "202": {
            "description": "Still pending; retry later.",
            "headers": {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
            },
            "content": {"application/json": {"schema": ref("schemas", "EvidenceStatus")}},
        },
        "400": {"description": "Malformed id.", "content": problem},
        "401": ref("responses", "Unauthorized"),
        "404": ref("responses", "NotFound"),
        "503": ref("responses", "Unavailable"),
    }


PROBLEM_CONTENT = {"application/problem+json": {"schema": ref("schemas", "Problem")}}
TENANT_RESPONSES = {
    "401": ref("responses", "Unauthorized"),
    "429": {
        "description": "Too many requests for this API key.",
        "headers": {"Retry-After": {"required": True, "schema": {"type": "string"}}},
        "content": PROBLEM_CONTENT,
    },
    "503": ref("responses", "Unavailable"),
}
