"""``GET /v1/evidence/{id}/bundle.zip``: the evidence bundle (证据包) of one sealed deposit, for a court's disc.

Owns: assembling the bundle on the server (``service.court.bundle.write_bundle``): the receipt as issued, the
certificate, the one-file verify page and the published keys (both as this server publishes them), the verifier
wheels of ``/download/``, the manifest and the bilingual README. The server never keeps original files, so the
bundle has none: ``evidence bundle RECEIPT FILE…`` adds them (and several deposits) on the user's machine.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

from flask import Blueprint, Response, jsonify, send_file

from service import deposits, sealing, witnessing
from service.api.auth import require_tenant
from service.api.download import list_wheels, verify_page_html
from service.api.pages import certificate_pdf
from service.api.responses import evidence_file_responses
from service.api.state import runtime_state
from service.config import Settings
from service.core.errors import FormatError, InvalidInput
from service.core.formats import check_evidence_id, utc_now
from service.core.receipt import dump_json
from service.court.bundle import CaseDescription, Deposit, write_bundle

bp = Blueprint("bundles", __name__)

ZIP_MEDIA_TYPE = "application/zip"
SPOOL_BYTES = 64 * 1024 * 1024


@bp.get("/v1/evidence/<evidence_id>/bundle.zip")
def bundle(evidence_id: str) -> Response:
    """The evidence bundle of one sealed deposit; 202 with the status while pending; 404 for another tenant's."""
    tenant_id = require_tenant()
    try:
        evidence_id = check_evidence_id(evidence_id)
    except FormatError as exc:
        raise InvalidInput(exc.reason) from None
    state = runtime_state()
    settings = state.runtime.settings
    with state.reader.begin() as conn:
        keys = sealing.key_list(conn)
        vkeys = [k["vkey"] for k in keys]
        document = sealing.receipt_for(conn, tenant_id, evidence_id, keys=vkeys)
        if document is not None:  # SPEC §9: the checkpoint with its cosignatures, or 202 while the quorum may come
            document = witnessing.receipt_with_cosignatures(conn, settings, document)
        status = sealing.evidence_status(conn, tenant_id, evidence_id)
        cosigned = deposits.countersignature_receipts(conn, tenant_id, evidence_id, keys=vkeys)
    if document is None:
        if status["status"] == "sealed":
            status["waiting_for"] = "witnesses"
            status["detail"] = "sealed; waiting for witnesses to cosign the checkpoint"
        response = jsonify(status)
        response.status_code = 202
        response.headers["Retry-After"] = str(max(1, math.ceil(settings.batch_max_age)))
        return response
    label = status.get("label")
    deposit = Deposit(
        evidence_id=evidence_id,
        sha256=str(status["sha256"]),
        label=label if isinstance(label, str) else None,
        receipt=dump_json(document),
        certificate=certificate_pdf(
            document, evidence_id, label if isinstance(label, str) else None, vkeys, countersignatures=cosigned
        ),
    )
    return send_bundle([deposit], f"evidence-{evidence_id}.zip", keys=keys, settings=settings)


def send_bundle(
    items: list[Deposit],
    download_name: str,
    *,
    keys: list[dict[str, Any]],
    settings: Settings,
    case: CaseDescription | None = None,
) -> Response:
    """Write the bundle of ``items`` (and ``case``) with this server's verify page, keys, witness policy and
    wheels, and answer it as a zip download."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (send_file closes it)
    write_bundle(
        out,
        items,
        verify_page=verify_page_html(),
        keys=keys,
        keys_source=f"GET {settings.public_url.rstrip('/')}/v1/keys when this bundle was made",
        wheels=[settings.download_dir / w.name for w in list_wheels(settings.download_dir)],
        public_url=settings.public_url,
        created=utc_now(),
        witness_policy=settings.witness_policy.to_text() if settings.witness_policy is not None else None,
        case=case,
    )
    out.seek(0)
    response = send_file(out, mimetype=ZIP_MEDIA_TYPE, as_attachment=True, download_name=download_name, etag=False)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def openapi_paths() -> dict[str, Any]:
    return {
        "/v1/evidence/{id}/bundle.zip": {
            "get": {
                "operationId": "getEvidenceBundle",
                "summary": "The evidence bundle (证据包, zip): receipt, certificate, one-file verify page, the "
                "operator's keys with fingerprints, the verifier wheels, MANIFEST-SHA256.txt and a bilingual README.",
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
                "responses": evidence_file_responses("The bundle.", ZIP_MEDIA_TYPE),
            }
        }
    }
