"""Browser pages and the certificate PDF: ``GET /verify``, ``GET /deposit``, ``GET /v1/evidence/{id}/certificate.pdf``.

Owns: serving the two self-contained pages of ``service/static`` (the verify page with this server's published
keys embedded, so a saved copy still has them) with a Content-Security-Policy that allows only their own inline
script and style (by hash) and, for ``/verify``, no network at all; and rendering the certificate of deposit
(``service.court.certificate.render_certificate``) for a tenant's sealed evidence. ``openapi_paths()`` describes these
routes for ``/openapi.json``. No SQL here: reads go through ``service.sealing``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import re
from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify

from service import sealing, witnessing
from service.api.auth import require_tenant
from service.api.state import runtime_state
from service.core.distribution import check_url
from service.core.errors import FormatError, InvalidInput, TimestampInvalid
from service.core.formats import check_evidence_id
from service.core.note import Verifier
from service.core.receipt import dump_json
from service.core.verify import verify_receipt
from service.court.certificate import TimestampDisplay, render_certificate
from service.court.webpage import embed_keys, static_page

bp = Blueprint("pages", __name__)

log = logging.getLogger(__name__)

PDF_MEDIA_TYPE = "application/pdf"

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


@cache
def content_security_policy(name: str, connect: str) -> str:
    """A CSP allowing exactly the page's inline ``<script>`` and ``<style>`` blocks (by SHA-256) and nothing else
    but ``connect`` for fetch (``'none'`` or ``'self'``)."""
    sources: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(static_page(name)):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        sources[kind].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + (" ".join(sources["script"]) or "'none'"),
            "style-src " + (" ".join(sources["style"]) or "'none'"),
            "img-src data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _html(text: str, csp: str) -> Response:
    response = Response(text, status=200, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/verify")
def verify_page() -> Response:
    """The offline verifier page, with this server's published keys embedded (public)."""
    state = runtime_state()
    with state.reader.begin() as conn:
        keys = sealing.key_list(conn)
    page = embed_keys(static_page("verify.html"), keys, state.runtime.settings.public_url)
    return _html(page, content_security_policy("verify.html", "'none'"))


@bp.get("/deposit")
def deposit_page() -> Response:
    """The deposit page (public); its API calls carry the tenant's key typed into the page."""
    return _html(static_page("deposit.html"), content_security_policy("deposit.html", "'self'"))


@bp.get("/v1/evidence/<evidence_id>/certificate.pdf")
def certificate(evidence_id: str) -> Response:
    """The certificate of deposit (PDF, receipt attached as receipt.json) once sealed; 202 with the status while
    pending; 404 for evidence of another tenant."""
    tenant_id = require_tenant()
    try:
        evidence_id = check_evidence_id(evidence_id)
    except FormatError as exc:
        raise InvalidInput(exc.reason) from None
    state = runtime_state()
    settings = state.runtime.settings
    with state.reader.begin() as conn:
        vkeys = [k["vkey"] for k in sealing.key_list(conn)]
        document = sealing.receipt_for(conn, tenant_id, evidence_id, keys=vkeys)
        if document is not None:
            document = witnessing.receipt_with_cosignatures(conn, settings, document)
        status = sealing.evidence_status(conn, tenant_id, evidence_id)
    if document is None:
        if status["status"] == "sealed":
            status["waiting_for"] = "witnesses"
            status["detail"] = "sealed; waiting for witnesses to cosign the checkpoint"
        response = jsonify(status)
        response.status_code = 202
        response.headers["Retry-After"] = str(max(1, math.ceil(settings.batch_max_age)))
        return response

    pdf = certificate_pdf(document, evidence_id, status.get("label"), vkeys)
    response = Response(pdf, status=200, mimetype=PDF_MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="certificate-{evidence_id}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def certificate_pdf(document: dict[str, Any], evidence_id: str, label: str | None, vkeys: list[str]) -> bytes:
    """The certificate of deposit of a sealed receipt this server issued (also put into evidence bundles)."""
    state = runtime_state()
    settings = state.runtime.settings
    # A certificate is shown in court: never print one for a receipt our own verifier would not accept.
    result = verify_receipt(document, trusted_keys=[Verifier.from_vkey(v) for v in vkeys])
    if not result.valid or result.key is None:
        raise RuntimeError(f"the receipt of {evidence_id} does not verify at step {result.step}: {result.reason}")
    return render_certificate(
        document,
        verify_url=check_url(settings.public_url, evidence_id),
        label=label,
        local_tz=settings.local_tz,
        timestamps=timestamp_displays(document, state.tsa_roots),
        trusted_fingerprint=result.key.fingerprint,
        receipt_json=dump_json(document),
        public_url=settings.public_url,
    )


def timestamp_displays(document: dict[str, Any], tsa_roots: list[Any]) -> list[TimestampDisplay] | None:
    """What the certificate prints for the receipt's RFC 3161 tokens: each checked against the trusted TSA roots
    when there are any (``verified``), else only decoded. None when no token can be decoded (the certificate
    then says how many tokens ``receipt.json`` carries)."""
    stamps = document.get("timestamps") or []
    if not stamps:
        return None
    from service.core import timestamps  # lazy: rfc3161-client is only needed when there are tokens

    entry = base64.b64decode(document["ledger"]["entry"])
    shown: list[TimestampDisplay] = []
    for item in stamps:
        try:
            token = base64.b64decode(item["token"], validate=True)
        except (KeyError, TypeError, binascii.Error, ValueError):
            continue
        if tsa_roots:
            try:
                info = timestamps.verify_token(token, entry, tsa_roots)
                shown.append(TimestampDisplay(info.gen_time, info.authority, verified=True))
                continue
            except TimestampInvalid as exc:
                log.warning("a time-stamp token of a sealed batch does not verify: %s", exc.reason)
        try:
            info = timestamps.token_info(token)
        except TimestampInvalid:
            continue
        shown.append(TimestampDisplay(info.gen_time, info.authority, verified=False))
    return shown or None


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3.1 path items of this blueprint (merged into ``/openapi.json`` by ``service.api.openapi``)."""
    html = {"text/html": {"schema": {"type": "string"}}}
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        "/verify": {
            "get": {
                "operationId": "verifyPage",
                "summary": "The offline receipt verifier page (HTML), with this server's published keys embedded.",
                "responses": {
                    "200": {"description": "A self-contained page; it makes no network requests.", "content": html},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
        "/deposit": {
            "get": {
                "operationId": "depositPage",
                "summary": "A deposit page (HTML): hashes a file in the browser and submits only its SHA-256.",
                "responses": {"200": {"description": "The page.", "content": html}},
            }
        },
        "/v1/evidence/{id}/certificate.pdf": {
            "get": {
                "operationId": "getCertificate",
                "summary": "The certificate of deposit (PDF with the receipt attached as receipt.json) once sealed.",
                "security": [{"bearerAuth": []}],
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "description": "The evidence id returned by POST /v1/evidence.",
                        "schema": {"$ref": "#/components/schemas/EvidenceId"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The certificate.",
                        "headers": {
                            "Content-Disposition": {
                                "required": True,
                                "schema": {"type": "string"},
                                "description": "attachment; filename=...",
                            }
                        },
                        "content": {PDF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "202": {
                        "description": "Still pending; retry later.",
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before retrying.",
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EvidenceStatus"}}},
                    },
                    "400": {"description": "Malformed id.", "content": problem},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
    }
