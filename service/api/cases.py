"""Evidence chains (SPEC §2.3): ``POST /v1/cases`` and ``GET /v1/cases/{id}``.

Views are thin: authenticate, parse, one ``service.deposits`` call in one transaction, shape the response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from service import deposits, sealing, witnessing
from service.api.auth import require_tenant
from service.api.bundles import send_bundle
from service.api.evidence import depositor_cas
from service.api.pages import certificate_pdf
from service.api.parsing import read_json_object
from service.api.responses import TENANT_RESPONSES, attachment, json_content, ref
from service.api.state import runtime_state
from service.core.bodies import reject_unknown_fields
from service.core.errors import FormatError, InvalidInput
from service.core.formats import format_time, utc_now
from service.core.note import Verifier
from service.core.receipt import dump_json
from service.core.verify import VerificationResult, check_case, verify_receipt
from service.court.bundle import CaseDescription, Deposit
from service.court.case_certificate import CasePhase, render_case_certificate
from service.court.certificate import PartyDisplay

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


@dataclass
class _SealedCase:
    view: dict[str, Any]
    keys: list[dict[str, Any]]
    vkeys: list[str]
    receipts: dict[str, dict[str, Any]]  # evidence id -> receipt (with its witness cosignatures, when a policy asks)
    pdf: bytes  # the case certificate


def _sealed_case(tenant_id: int, case_id: str) -> _SealedCase | Response:
    """The case with every receipt verified and its certificate drawn, or the ``202`` answer while a phase is
    pending or its checkpoint awaits the witnesses' quorum. Another tenant's case: ``NotFound``."""
    state = runtime_state()
    settings = state.runtime.settings
    with state.reader.begin() as conn:
        view = deposits.case_view(conn, tenant_id, case_id)
        keys = sealing.key_list(conn)
        vkeys = [k["vkey"] for k in keys]
        receipts: dict[str, dict[str, Any]] = {}
        for phase in view["phases"]:
            for item in [phase["evidence"], *phase.get("countersignatures", [])]:
                document = None
                if item is not None and item["status"] == "sealed":
                    document = sealing.receipt_for(conn, tenant_id, item["id"], keys=vkeys)
                    assert document is not None
                    document = witnessing.receipt_with_cosignatures(conn, settings, document)
                    waiting = "the checkpoint of a phase awaits its witnesses' cosignatures"
                else:
                    waiting = "a phase is not sealed yet"
                if document is None:
                    response = jsonify({"id": view["id"], "status": "pending", "detail": waiting})
                    response.status_code = 202
                    response.headers["Retry-After"] = str(max(1, math.ceil(settings.batch_max_age)))
                    return response
                receipts[item["id"]] = document
    trusted = [Verifier.from_vkey(v) for v in vkeys]
    cas = depositor_cas()
    phases: list[CasePhase] = []
    results: list[VerificationResult] = []
    fingerprint = ""
    for number, phase in enumerate(view["phases"], start=1):
        first = phase["evidence"]
        if phase["phase"] != number:  # the numbering rule makes this impossible; never print a gap
            raise RuntimeError(f"case {case_id} has no phase {number}")
        parties: list[PartyDisplay] = []
        attached: list[tuple[str, bytes]] = []
        result = None
        for item in [first, *phase.get("countersignatures", [])]:
            document = receipts[item["id"]]
            checked = verify_receipt(document, trusted_keys=trusted, depositor_cas=cas)
            if not checked.valid or checked.key is None:
                raise RuntimeError(
                    f"the receipt of {item['id']} does not verify at step {checked.step}: {checked.reason}"
                )
            results.append(checked)
            if checked.depositor is not None:
                parties.append(_party(checked.depositor, None if item is first else item["received_at"]))
            attached.append((f"receipt-phase{number}-{item['id']}.json", dump_json(document)))
            result = result or checked
            fingerprint = checked.key.fingerprint
        assert result is not None and result.sealed is not None
        phases.append(
            CasePhase(
                phase=number,
                name=phase["phase_name"],
                evidence_id=first["id"],
                sha256=first["sha256"],
                received=first["received_at"],
                sealed=format_time(result.sealed),
                label=first.get("label"),
                parties=parties,
                receipts=attached,
            )
        )
    rule = check_case(view["id"], results, expected_phases=len(view["phases"]))  # SPEC §6.2
    if not rule.valid:
        raise RuntimeError(f"case {case_id} fails the SPEC §6.2 case rule: {rule.reason}")
    pdf = render_case_certificate(
        case_id=view["id"],
        title=view["title"],
        reference=view["reference"],
        created=view["created_at"],
        origin=settings.origin,
        fingerprint=fingerprint or "—",
        phases=phases,
    )
    return _SealedCase(view, keys, vkeys, receipts, pdf)


@bp.get("/<case_id>/certificate.pdf")
def certificate(case_id: str) -> Response:
    """The case certificate: every phase (time, digest, depositors) with every receipt attached; 202 while a
    phase is pending."""
    case = _sealed_case(require_tenant(), case_id)
    if isinstance(case, Response):
        return case
    response = Response(case.pdf, status=200, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="case-{case.view["id"]}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/<case_id>/bundle.zip")
def bundle(case_id: str) -> Response:
    """The evidence bundle of a case: its certificate, every phase's receipts and certificates, the verify page,
    keys, witness policy, verifier wheels, bundle.json with the case, README and manifest; 202 while pending."""
    tenant_id = require_tenant()
    case = _sealed_case(tenant_id, case_id)
    if isinstance(case, Response):
        return case
    settings = runtime_state().runtime.settings
    items: list[Deposit] = []
    described = []
    omitted: dict[str, str] = {}
    for phase in case.view["phases"]:
        first = phase["evidence"]
        countersignatures = phase.get("countersignatures", [])
        for item in [first, *countersignatures]:
            document = case.receipts[item["id"]]
            label = item.get("label")
            cosigned = None
            if item is first and countersignatures:
                cosigned = [dict(case.receipts[c["id"]]) for c in countersignatures]
            try:  # cached, and drawn under the render cap (503 when it is full)
                pdf: bytes | None = certificate_pdf(
                    document,
                    item["id"],
                    label if isinstance(label, str) else None,
                    case.vkeys,
                    countersignatures=cosigned,
                )
            except FormatError as exc:  # it cannot be drawn (e.g. it does not fit on one page): the receipt suffices
                pdf = None
                omitted[item["id"]] = exc.reason
            items.append(
                Deposit(
                    evidence_id=item["id"],
                    sha256=item["sha256"],
                    label=label if isinstance(label, str) else None,
                    receipt=dump_json(document),
                    certificate=pdf,
                )
            )
        described.append(
            {
                "phase": phase["phase"],
                "phase_name": phase["phase_name"],
                "evidence": first["id"],
                "received_at": first["received_at"],
                "countersignatures": [c["id"] for c in countersignatures],
            }
        )
    description = CaseDescription(
        case_id=case.view["id"],
        title=case.view["title"],
        reference=case.view["reference"],
        created=case.view["created_at"],
        phases=described,
        certificate=case.pdf,
        omitted_certificates=omitted,
    )
    return send_bundle(items, f"case-{case.view['id']}.zip", case=description, keys=case.keys, settings=settings)


def _party(depositor: Any, countersigned: str | None) -> PartyDisplay:
    trust = "ca" if depositor.ca_verified else ("key" if depositor.kind == "ed25519-key" else "unchecked")
    return PartyDisplay(depositor.identity, trust, countersigned)


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
        "/v1/cases/{case_id}/certificate.pdf": {
            "get": {
                "operationId": "getCaseCertificate",
                "summary": "The case certificate: every phase (time, digest, depositors), every receipt attached.",
                "security": [{"bearerAuth": []}],
                "parameters": [{"name": "case_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "The PDF.",
                        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "202": json_content({"type": "object"}, "A phase is not sealed yet; retry later."),
                    "404": ref("responses", "NotFound"),
                    **TENANT_RESPONSES,
                },
            }
        },
        "/v1/cases/{case_id}/bundle.zip": {
            "get": {
                "operationId": "getCaseBundle",
                "summary": "The evidence bundle (证据包, zip) of a case: the case certificate, every phase's receipts "
                "and certificates, bundle.json with the case and its phases in order, verify page, keys, "
                "witness policy, verifier wheels, a bilingual README (SPEC §6.2 case rule) and MANIFEST-SHA256.txt.",
                "security": [{"bearerAuth": []}],
                "parameters": [{"name": "case_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": attachment("The bundle.", "application/zip", "case-<id>.zip"),
                    "202": json_content(
                        {"type": "object"}, "A phase is not sealed yet or awaits its witnesses; retry later."
                    ),
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
