"""Evidence chains (SPEC §2.3): ``POST /v1/cases`` and ``GET /v1/cases/{id}``.

Views are thin: authenticate, parse, one ``service.deposits`` call in one transaction, shape the response.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from service import deposits
from service.api.auth import require_tenant
from service.api.parsing import read_json_object
from service.api.responses import TENANT_RESPONSES, json_content, ref
from service.api.state import runtime_state
from service.core.bodies import reject_unknown_fields
from service.core.errors import InvalidInput
from service.core.formats import utc_now

bp = Blueprint("cases", __name__, url_prefix="/v1/cases")


@bp.post("")
def create() -> Response:
    """Create a case: ``{"title": ..., "reference": ...?}``; 201 with its id."""
    tenant_id = require_tenant()
    body = read_json_object(request.stream)
    reject_unknown_fields(body, ("title", "reference"), "the JSON body")
    if "title" not in body:
        raise InvalidInput("the JSON body needs 'title': what the case is about")
    with runtime_state().engine.begin() as conn:
        case = deposits.create_case(conn, tenant_id, body["title"], body.get("reference"), utc_now())
    response = jsonify(case)
    response.status_code = 201
    response.headers["Location"] = url_for("cases.show", case_id=case["id"])
    return response


@bp.get("/<case_id>")
def show(case_id: str) -> Response:
    """The case and its phases in order, each with its evidence and parties."""
    tenant_id = require_tenant()
    with runtime_state().reader.begin() as conn:
        view = deposits.case_view(conn, tenant_id, case_id)
    return jsonify(view)


_CASE = {
    "type": "object",
    "required": ["id", "title", "created_at"],
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "title": {"type": "string"},
        "reference": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
        "phases": {
            "type": "array",
            "description": "In phase order: each with its deposit ('evidence'), countersignatures and parties.",
            "items": {"type": "object"},
        },
    },
}
_PROBLEM = {"application/problem+json": {"schema": ref("schemas", "Problem")}}


def openapi_paths() -> dict[str, dict[str, Any]]:
    """The OpenAPI 3.1 path items of this blueprint and of the co-deposit endpoint (SPEC §2.1-§2.3, §7)."""
    attestation = {"type": "string", "description": "The SPEC §2.2 attestation bytes, standard base64."}
    return {
        "/v1/cases": {
            "post": {
                "operationId": "createCase",
                "summary": "Create a case (evidence chain); deposits name it with 'case', 'phase' and 'phase_name'.",
                "security": [{"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["title"],
                                "additionalProperties": False,
                                "properties": {"title": {"type": "string"}, "reference": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": json_content(_CASE, "Created."),
                    "400": ref("responses", "BadRequest"),
                    "413": ref("responses", "TooLarge"),
                    **TENANT_RESPONSES,
                },
            }
        },
        "/v1/cases/{case_id}": {
            "get": {
                "operationId": "getCase",
                "summary": "The case with its phases in order, each with its evidence and parties.",
                "security": [{"bearerAuth": []}],
                "parameters": [{"name": "case_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": json_content(_CASE, "The case."),
                    "404": ref("responses", "NotFound"),
                    **TENANT_RESPONSES,
                },
            }
        },
        "/v1/evidence/{id}/cosign": {
            "post": {
                "operationId": "cosignEvidence",
                "summary": "Co-deposit: a second party countersigns a deposit; a new deposit refers to the first.",
                "security": [{"bearerAuth": []}],
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["attestation"],
                                "additionalProperties": False,
                                "properties": {"attestation": attestation},
                            }
                        }
                    },
                },
                "responses": {
                    "202": json_content({"type": "object"}, "Accepted: the countersignature is pending."),
                    "400": ref("responses", "BadRequest"),
                    "404": ref("responses", "NotFound"),
                    "413": ref("responses", "TooLarge"),
                    "422": {
                        "description": "The attestation is refused (the detail names the check).",
                        "content": _PROBLEM,
                    },
                    **TENANT_RESPONSES,
                },
            }
        },
    }
