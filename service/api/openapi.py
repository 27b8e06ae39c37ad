"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Owns: the document (written by hand, next to the views it describes) and its route. It must stay truthful:
``tests/integration/test_api.py`` runs schemathesis against it and checks every response conforms.
``POST /v1/evidence/batch`` is described by whoever adds it, in ``_batch_paths()`` below.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Blueprint, Response, jsonify

from service.api import bundles, check, download, home, pages
from service.api.parsing import MAX_QUERY_INT
from service.core.labels import LABEL_PATTERN, MAX_LABEL_LENGTH
from service.sealing import MAX_ENTRIES_PAGE

bp = Blueprint("openapi", __name__)

JSON = "application/json"
PROBLEM = "application/problem+json"
TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
HEX64 = "^[0-9a-f]{64}$"
B64 = "^[A-Za-z0-9+/]*={0,2}$"
ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _response(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _json(schema: Schema, description: str, headers: Schema | None = None) -> Schema:
    out: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _problem(description: str, headers: Schema | None = None) -> Schema:
    out: Schema = {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "description": "Always about:blank: the status says it all."},
            "title": {"type": "string", "description": "The HTTP status phrase."},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "What was wrong, in words."},
        },
    },
    "Sha256Hex": {"type": "string", "pattern": HEX64, "description": "SHA-256, 64 lowercase hex digits."},
    "Sm3Hex": {
        "type": "string",
        "pattern": HEX64,
        "description": "SM3 (GB/T 32905) of the file, 64 hex digits; the deposit's v2 leaf binds it (SPEC §2.1).",
    },
    "Time": {"type": "string", "pattern": TIME_PATTERN, "description": "RFC 3339 UTC, six fractional digits."},
    "EvidenceId": {"type": "string", "pattern": ID_PATTERN},
    "Label": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_LABEL_LENGTH,
        "pattern": LABEL_PATTERN,
        "description": "A free text of 1-500 characters without control characters.",
    },
    "Deposit": {
        "type": "object",
        "required": ["id", "sha256", "received_at", "status"],
        "properties": {
            "id": _ref("EvidenceId"),
            "sha256": _ref("Sha256Hex"),
            "received_at": _ref("Time"),
            "status": {"const": "pending"},
            "label": _ref("Label"),
            "sm3": _ref("Sm3Hex"),
        },
    },
    "EvidenceStatus": {
        "type": "object",
        "required": ["id", "sha256", "received_at", "status"],
        "properties": {
            "id": _ref("EvidenceId"),
            "sha256": _ref("Sha256Hex"),
            "received_at": _ref("Time"),
            "status": {"enum": ["pending", "sealed"]},
            "label": _ref("Label"),
            "sm3": _ref("Sm3Hex"),
            "batch_seq": {"type": "integer", "minimum": 0, "description": "Present once sealed."},
            "leaf_index": {"type": "integer", "minimum": 0, "description": "Present once sealed."},
            "waiting_for": {
                "const": "witnesses",
                "description": "On a 202 for a sealed evidence: its checkpoint waits for the witness quorum "
                "(SPEC §9), at most EVIDENCE_WITNESS_WAIT seconds.",
            },
            "detail": {"type": "string"},
        },
    },
    "Receipt": {
        "type": "object",
        "description": "evidence-receipt/v1 (SPEC §6), or /v2 for a labelled, case or attested deposit (SPEC §6.1).",
        "required": ["format", "evidence", "batch", "ledger"],
        "properties": {
            "format": {"enum": ["evidence-receipt/v1", "evidence-receipt/v2"]},
            "evidence": {
                "type": "object",
                "required": ["id", "sha256", "received_at", "leaf"],
                "properties": {
                    "id": _ref("EvidenceId"),
                    "sha256": _ref("Sha256Hex"),
                    "received_at": _ref("Time"),
                    "leaf": {"type": "string", "pattern": B64},
                },
            },
            "batch": {
                "type": "object",
                "required": ["seq", "size", "index", "root", "proof"],
                "properties": {
                    "seq": {"type": "integer", "minimum": 0},
                    "size": {"type": "integer", "minimum": 1},
                    "index": {"type": "integer", "minimum": 0},
                    "root": {"type": "string", "pattern": B64},
                    "proof": {"type": "array", "items": {"type": "string", "pattern": B64}},
                },
            },
            "ledger": {
                "type": "object",
                "required": ["entry", "proof", "checkpoint"],
                "properties": {
                    "entry": {"type": "string", "pattern": B64},
                    "proof": {"type": "array", "items": {"type": "string", "pattern": B64}},
                    "checkpoint": {"type": "string", "description": "The signed note text."},
                },
            },
            "timestamps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "token"],
                    "properties": {"type": {"const": "rfc3161"}, "token": {"type": "string", "pattern": B64}},
                },
            },
            "keys": {"type": "array", "items": {"type": "string"}, "description": "A hint only."},
        },
    },
    "EntriesPage": {
        "type": "object",
        "required": ["start", "entries"],
        "properties": {
            "start": {"type": "integer", "minimum": 0},
            "entries": {
                "type": "array",
                "maxItems": MAX_ENTRIES_PAGE,
                "items": {"type": "string", "pattern": B64, "description": "base64 of the §3 entry bytes"},
            },
        },
    },
    "ConsistencyProof": {
        "type": "object",
        "required": ["from", "to", "proof"],
        "properties": {
            "from": {"type": "integer", "minimum": 1},
            "to": {"type": "integer", "minimum": 1},
            "proof": {"type": "array", "items": {"type": "string", "pattern": B64}},
        },
    },
    "KeyList": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "vkey",
                        "origin",
                        "algorithm",
                        "fingerprint",
                        "fingerprint_sm3",
                        "valid_from",
                        "valid_until",
                    ],
                    "properties": {
                        "vkey": {"type": "string", "description": "Verifier key string (SPEC §4 Ed25519, §4.1 SM2)."},
                        "origin": {"type": "string"},
                        "algorithm": {"type": "string", "enum": ["ed25519", "sm2"]},
                        "fingerprint": {
                            "type": "string",
                            "description": "SHA-256 of the public key, lowercase hex in groups of four (SPEC §4).",
                        },
                        "fingerprint_sm3": {
                            "type": "string",
                            "description": "SM3 of the public key, lowercase hex in groups of four (SPEC §4.1).",
                        },
                        "distid": {
                            "type": "string",
                            "description": "SM2 keys only: the distinguishing ID the signatures use (SPEC §4.1).",
                        },
                        "valid_from": _ref("Time"),
                        "valid_until": {"oneOf": [_ref("Time"), {"type": "null"}]},
                    },
                },
            }
        },
    },
    "VerifyRequest": {
        "type": "object",
        "required": ["receipt"],
        "additionalProperties": False,
        "properties": {
            "receipt": {"type": "object", "description": "An evidence-receipt/v1 or /v2 document."},
            "sha256": _ref("Sha256Hex"),
        },
    },
    "VerificationResult": {
        "type": "object",
        "required": ["valid", "step", "reason", "checks", "statement"],
        "properties": {
            "valid": {"type": "boolean"},
            "step": {"type": ["integer", "null"], "minimum": 0, "maximum": 7},
            "reason": {"type": ["string", "null"]},
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["step", "ok", "detail"],
                    "properties": {
                        "step": {"type": "integer", "minimum": 0, "maximum": 7},
                        "ok": {"type": "boolean"},
                        "detail": {"type": "string"},
                        "checked": {"type": "boolean"},
                    },
                },
            },
            "statement": {"type": ["string", "null"]},
        },
    },
}

RESPONSES: dict[str, Schema] = {
    "BadRequest": _problem("Malformed input; `detail` says what was wrong."),
    "Unauthorized": _problem(
        "Missing or invalid API key.",
        {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}, "description": "Bearer ..."}},
    ),
    "NotFound": _problem("No such evidence for this tenant (another tenant's evidence is not found either)."),
    "TooLarge": _problem("The body is larger than the configured limit; nothing was stored."),
    "Unavailable": _problem("The database is unreachable (or the service is not ready).", RETRY_AFTER),
    "TooManyRequests": _problem("This API key sent more requests than its rate limit allows.", RETRY_AFTER),
}

ID_PARAMETER = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The evidence id returned by POST /v1/evidence.",
    "schema": _ref("EvidenceId"),
}

TENANT_ERRORS = {
    "401": _response("Unauthorized"),
    "429": _response("TooManyRequests"),
    "503": _response("Unavailable"),
}


def _query_int(name: str, description: str, *, required: bool, minimum: int = 0) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": MAX_QUERY_INT},
    }


def _evidence_paths() -> dict[str, Schema]:
    return {
        "/v1/evidence": {
            "post": {
                "operationId": "depositEvidence",
                "summary": "Deposit a file (hashed as it streams, never stored) or its SHA-256.",
                "description": "The raw file may be sent with any Content-Type other than application/json and "
                "multipart/form-data (application/octet-stream, application/pdf, image/png, ...): the bytes are the "
                "file. Upper-case hex digests are accepted and normalised. An empty file (0 bytes, raw or as the "
                "multipart 'file' part) is refused with 400: it is almost always a mistyped file path, and its "
                "SHA-256 proves nothing.",
                "security": [{"bearerAuth": []}],
                "parameters": [
                    {
                        "name": "label",
                        "in": "query",
                        "required": False,
                        "description": "Optional label (or give it in the multipart or JSON body, not both).",
                        "schema": _ref("Label"),
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "additionalProperties": False,
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "label": _ref("Label"),
                                },
                            }
                        },
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["sha256"],
                                "additionalProperties": False,
                                "properties": {
                                    "sha256": _ref("Sha256Hex"),
                                    "sm3": _ref("Sm3Hex"),
                                    "label": _ref("Label"),
                                    "case": {"type": "string", "description": "A case id (POST /v1/cases)."},
                                    "phase": {"type": "integer", "minimum": 1, "description": "1, 2, 3, ... no gaps"},
                                    "phase_name": {"type": "string"},
                                    "attestation": {
                                        "type": "string",
                                        "description": "The depositor's SPEC §2.2 attestation, standard base64.",
                                    },
                                },
                            }
                        },
                    },
                },
                "responses": {
                    "202": _json(
                        _ref("Deposit"),
                        "Accepted: pending until its batch is sealed.",
                        {
                            "Location": {
                                "required": True,
                                "schema": {"type": "string"},
                                "description": "The evidence's status URL.",
                            }
                        },
                    ),
                    "400": _response("BadRequest"),
                    "413": _response("TooLarge"),
                    "415": _problem("The Content-Type is none of the three accepted."),
                    "404": _problem("The 'case' is not a case of this tenant."),
                    "409": _problem("The 'phase' of the case was deposited already (the detail names the next one)."),
                    "422": _problem("A phase that skips a number, or an attestation refused (the detail says why)."),
                    **TENANT_ERRORS,
                },
            }
        },
        # "/v1/evidence/batch": added with the batch endpoint (SPEC §7).
        "/v1/evidence/{id}": {
            "get": {
                "operationId": "getEvidence",
                "summary": "Status of one evidence: pending, or sealed with its batch.",
                "security": [{"bearerAuth": []}],
                "parameters": [ID_PARAMETER],
                "responses": {
                    "200": _json(_ref("EvidenceStatus"), "The evidence's status."),
                    "400": _response("BadRequest"),
                    "404": _response("NotFound"),
                    **TENANT_ERRORS,
                },
            }
        },
        "/v1/evidence/{id}/receipt": {
            "get": {
                "operationId": "getReceipt",
                "summary": "The receipt (v1; v2 if labelled, in a case or attested) once sealed; 202 while pending.",
                "security": [{"bearerAuth": []}],
                "parameters": [ID_PARAMETER],
                "responses": {
                    "200": _json(_ref("Receipt"), "The receipt; verify it offline with `evidence verify`."),
                    "202": _json(_ref("EvidenceStatus"), "Still pending; retry later.", RETRY_AFTER),
                    "400": _response("BadRequest"),
                    "404": _response("NotFound"),
                    **TENANT_ERRORS,
                },
            }
        },
    }


def _batch_paths() -> dict[str, Schema]:
    """``POST /v1/evidence/batch``, ``GET /v1/evidence?sha256=`` and ``/v1/webhook``, described next to their views
    (``service.api.bulk``, ``service.api.webhooks``); ``GET /v1/evidence`` joins the ``post`` above in the
    ``/v1/evidence`` path item."""
    from service.api import bulk, cases, webhooks

    paths = {**bulk.openapi_paths(), **webhooks.openapi_paths(), **cases.openapi_paths()}
    paths["/v1/evidence"] = {**_evidence_paths()["/v1/evidence"], **paths["/v1/evidence"]}
    return paths


def _public_paths() -> dict[str, Schema]:
    unavailable = {"503": _response("Unavailable")}
    return {
        "/v1/checkpoint": {
            "get": {
                "operationId": "getCheckpoint",
                "summary": "The latest signed checkpoint (C2SP signed note), text/plain; charset=utf-8.",
                "responses": {
                    "200": {
                        "description": "The checkpoint note.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "404": _response("NotFound"),
                    **unavailable,
                },
            }
        },
        "/v1/ledger/entries": {
            "get": {
                "operationId": "getLedgerEntries",
                "summary": f"Ledger entries [start, end), at most {MAX_ENTRIES_PAGE} a page.",
                "parameters": [
                    _query_int("start", "First entry (default 0); at most the ledger size.", required=False),
                    _query_int("end", "End, exclusive (default start + 1000).", required=False),
                ],
                "responses": {
                    "200": _json(_ref("EntriesPage"), "Base64 of each entry's exact bytes (SPEC §3)."),
                    "400": _response("BadRequest"),
                    **unavailable,
                },
            }
        },
        "/v1/ledger/consistency": {
            "get": {
                "operationId": "getConsistencyProof",
                "summary": "RFC 9162 consistency proof between two ledger sizes, 0 < from <= to <= size.",
                "parameters": [
                    _query_int("from", "The older ledger size.", required=True),
                    _query_int("to", "The newer ledger size.", required=True),
                ],
                "responses": {
                    "200": _json(_ref("ConsistencyProof"), "The proof (empty when from = to)."),
                    "400": _response("BadRequest"),
                    **unavailable,
                },
            }
        },
        "/v1/keys": {
            "get": {
                "operationId": "getKeys",
                "summary": "Every checkpoint signing key published by this server.",
                "responses": {"200": _json(_ref("KeyList"), "The published keys."), **unavailable},
            }
        },
        "/v1/verify": {
            "post": {
                "operationId": "verifyReceipt",
                "summary": "Verify a receipt (and optionally a digest) trusting this server's keys and TSAs.",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("VerifyRequest")}}},
                "responses": {
                    "200": _json(_ref("VerificationResult"), "The verification result (valid or not)."),
                    "400": _response("BadRequest"),
                    "413": _response("TooLarge"),
                    **unavailable,
                },
            }
        },
        "/v1/ledger/proof": {
            "get": {
                "operationId": "ledgerProof",
                "summary": "A ledger entry's C2SP tlog-proof (c2sp.org/tlog-proof@v1) against a checkpoint.",
                "parameters": [
                    {
                        "name": "seq",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INT},
                    },
                    {
                        "name": "size",
                        "in": "query",
                        "required": False,
                        "description": "Checkpoint size (default seq + 1: the checkpoint signed when it was sealed).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_INT},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The tlog-proof text: entry bytes as extra data, inclusion proof, checkpoint.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
            }
        },
        "/log/checkpoint": {
            "get": {
                "operationId": "tlogCheckpoint",
                "summary": "C2SP tlog-tiles: the latest signed checkpoint with the witnesses' cosignatures (SPEC §10).",
                "responses": {
                    "200": {
                        "description": "The checkpoint note.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/log/tile/{rest}": {
            "get": {
                "operationId": "tlogTile",
                "summary": "C2SP tlog-tiles: a hash tile <L>/<N>[.p/<W>] or an entry bundle entries/<N>[.p/<W>] "
                "(SPEC §10); full and partial tiles never change (Cache-Control: immutable).",
                "parameters": [
                    {
                        "name": "rest",
                        "in": "path",
                        "required": True,
                        "description": "e.g. 0/x001/234.p/17 or entries/005",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The tile: W 32-byte hashes, or W entries each with a 2-byte length.",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: submissions, pending depth, seal latency, batch size, errors.",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness.",
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
                        "The process answers.",
                    )
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: database reachable, a signing key and a checkpoint published.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status", "keys"],
                            "properties": {"status": {"const": "ready"}, "keys": {"type": "integer"}},
                        },
                        "Ready to serve.",
                    ),
                    "503": _response("Unavailable"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 description.")},
            }
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of this API."""
    try:
        api_version = version("evidence-ledger")
    except PackageNotFoundError:
        api_version = "0.0.0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Evidence Ledger",
            "version": api_version,
            "description": "Deposit file digests, get offline-verifiable receipts (SPEC §7). Errors are RFC 9457 "
            "application/problem+json documents.",
        },
        "paths": {
            **_evidence_paths(),
            **_batch_paths(),
            **_public_paths(),
            **pages.openapi_paths(),
            **download.openapi_paths(),
            **home.openapi_paths(),
            **check.openapi_paths(),
            **bundles.openapi_paths(),
        },
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A tenant API key (evl_...)."}
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
