"""Tenant endpoints (SPEC §7): deposit evidence, read its status and its receipt.

Owns: ``POST /v1/evidence`` (raw body, multipart ``file`` or JSON digest), ``GET /v1/evidence/{id}``,
``GET /v1/evidence/{id}/receipt``. ``POST /v1/evidence/batch`` is added below, in its marked place.
Views are thin: authenticate, parse (upload bodies are hashed while they stream and never stored), one
``sealing`` call in one transaction, shape the response. No SQL here; errors are raised, not returned
(``service.api.errors`` makes every problem document).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, BinaryIO, cast

from flask import Blueprint, Response, jsonify, request
from werkzeug.http import parse_options_header

from service import deposits, metrics, sealing, witnessing
from service.api.auth import require_tenant
from service.api.body import raw_body_stream
from service.api.parsing import (
    MultipartUpload,
    check_label,
    query_label,
    read_json_object,
    sha256_field,
    sm3_field,
)
from service.api.state import runtime_state
from service.core.bodies import reject_unknown_fields
from service.core.certs import load_certificate_files
from service.core.errors import FormatError, InvalidInput, PayloadTooLarge
from service.core.formats import check_evidence_id, utc_now
from service.core.hashing import digest_stream
from service.core.labels import MAX_LABEL_LENGTH
from service.core.receipt import dump_json

bp = Blueprint("evidence", __name__, url_prefix="/v1/evidence")

ACCEPTED_MEDIA_TYPES = ("application/octet-stream", "multipart/form-data", "application/json")
# A typo in a file path (curl's ``--data-binary @contrat.pdf``) sends nothing: never seal the SHA-256 of zero bytes.
EMPTY_UPLOAD = "the upload was empty (0 bytes): check the file path"
# How long a deposit waits for its group's commit before a 503 (below gunicorn's default 30 s worker timeout).
DEPOSIT_TIMEOUT = 25.0


@bp.post("")
def deposit() -> Response:
    """Hash the upload (or take the given digest) and record it as pending evidence: 202 with its id."""
    tenant_id = require_tenant()
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    label = query_label(request.args) if request.environ.get("QUERY_STRING") else None  # no query: skip parsing
    sm3: bytes | None
    if mimetype == "multipart/form-data":
        digest, sm3, form_label = _hash_multipart(options.get("boundary"))
        label = _one_label(label, form_label, "multipart field 'label'")
    elif mimetype == "application/json":
        digest, sm3, json_label, v2 = _digest_from_json()
        label = _one_label(label, json_label, "JSON field 'label'")
        if v2:  # a case, a phase or an attestation: checked and stored in one transaction (SPEC §2.1-§2.3)
            with runtime_state().engine.begin() as conn:
                recorded = deposits.deposit_v2(
                    conn,
                    tenant_id,
                    sha256=digest,
                    sm3=sm3,
                    label=label,
                    now=utc_now(),
                    trusted_cas=depositor_cas(),
                    **v2,
                )
            metrics.record_submissions("digest")
            return accepted(recorded.to_json(), recorded.deposit.id)
    else:
        # Any other type (or none) is the file itself: application/octet-stream, application/pdf, image/png, and
        # curl's default application/x-www-form-urlencoded for --data-binary all deposit the bytes sent.
        digest, sm3 = _hash_raw_body()
    state = runtime_state()
    # A process serving several requests at once commits them in groups (one transaction each group). A
    # single-threaded one (gunicorn sync workers) would only add a thread hand-off per request: it commits inline.
    if state.committer is not None and request.environ.get("wsgi.multithread", False):
        deposit = state.committer.submit(tenant_id, digest, label, timeout=DEPOSIT_TIMEOUT, sm3=sm3)
    else:
        (deposit,) = sealing.record_deposits_committed(state.engine, [(tenant_id, digest, label)], utc_now(), sm3=[sm3])
    metrics.record_submissions("digest" if mimetype == "application/json" else "file")
    return accepted(deposit.to_json(), deposit.id)


STATUS_PATH = "/v1/evidence/"  # + id: the URL of ``status`` (what url_for("evidence.status", ...) builds)


def accepted(body: dict[str, Any], evidence_id: str) -> Response:
    """202 with the deposit's status object and ``Location`` of its status, built without Flask's ``jsonify`` and
    ``url_for`` (the deposit hot path): the same bytes as ``jsonify`` (compact, ASCII, a final newline) and the
    same URL as ``url_for`` (the app's script root, then the route; evidence ids need no quoting)."""
    response = Response(json.dumps(body, separators=(",", ":")) + "\n", status=202, mimetype="application/json")
    response.headers["Location"] = request.script_root + STATUS_PATH + evidence_id
    return response


def _one_label(query: str | None, body: str | None, where: str) -> str | None:
    if query is not None and body is not None:
        raise InvalidInput(f"the label is given both as query parameter and as {where}; give it once")
    return body if body is not None else query


def _max_upload() -> int:
    return runtime_state().runtime.settings.max_upload_bytes


def _upload_sm3() -> bool:
    return runtime_state().runtime.settings.upload_sm3


def _hash_raw_body() -> tuple[bytes, bytes | None]:
    """SHA-256 and (unless EVIDENCE_UPLOAD_SM3=0) SM3 of the raw body, in one pass."""
    limit = _max_upload()
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the upload is {request.content_length} bytes, larger than the limit of {limit}")
    d = digest_stream(raw_body_stream(), limit=limit, sm3=_upload_sm3())
    if d.size == 0:
        raise InvalidInput(EMPTY_UPLOAD)
    return d.sha256, d.sm3


def _hash_multipart(boundary: str | None) -> tuple[bytes, bytes | None, str | None]:
    """The SHA-256 (and SM3) of the part named ``file`` and the ``label`` field if any; other parts are refused."""
    if not boundary:
        raise InvalidInput("multipart/form-data without a boundary parameter in the Content-Type")
    upload = MultipartUpload(request.stream, boundary)
    digest: bytes | None = None
    sm3: bytes | None = None
    label: str | None = None
    while (part := upload.next_part()) is not None:
        name, _is_file = part
        if name == "file":
            if digest is not None:
                raise InvalidInput("the multipart body has more than one 'file' part; send one file per request")
            d = digest_stream(cast(BinaryIO, upload.part_stream()), limit=_max_upload(), sm3=_upload_sm3())
            digest, sm3 = d.sha256, d.sm3
            if d.size == 0:
                raise InvalidInput(f"the 'file' part: {EMPTY_UPLOAD}")
        elif name == "label":
            if label is not None:
                raise InvalidInput("the multipart body has more than one 'label' field")
            raw = upload.read_small_part(4 * MAX_LABEL_LENGTH, "label")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput("multipart field 'label': the label is not UTF-8 text") from None
            label = check_label(text, "multipart field 'label'")
        else:
            raise InvalidInput(f"unknown multipart field {name[:64]!r}; expected 'file' and optionally 'label'")
    if digest is None:
        raise InvalidInput("the multipart body has no part named 'file'")
    return digest, sm3, label


V2_FIELDS = ("case", "phase", "phase_name", "attestation")


def _digest_from_json() -> tuple[bytes, bytes | None, str | None, dict[str, Any]]:
    """The digest, the SM3 if sent, the label and the v2 fields (``deposit_v2`` keywords; empty for a plain
    deposit)."""
    body = read_json_object(request.stream)
    reject_unknown_fields(body, ("sha256", "sm3", "label", *V2_FIELDS), "the JSON body")
    if "sha256" not in body:
        raise InvalidInput("the JSON body needs 'sha256': the file's SHA-256 as 64 lowercase hex digits")
    digest = sha256_field(body["sha256"])
    sm3 = sm3_field(body["sm3"]) if "sm3" in body else None
    label = check_label(body["label"], "JSON field 'label'") if "label" in body else None
    v2: dict[str, Any] = {}
    if any(k in body for k in V2_FIELDS):
        case = body.get("case")
        if case is not None and not isinstance(case, str):
            raise InvalidInput("JSON field 'case' must be a case id (a string from POST /v1/cases)")
        v2 = {"case_id": case, "phase": body.get("phase"), "phase_name": body.get("phase_name")}
        if body.get("attestation") is not None:
            v2["attestation_raw"] = deposits.decode_attestation(body["attestation"], "JSON field 'attestation'")
    return digest, sm3, label, v2


@bp.post("/<evidence_id>/cosign")
def cosign(evidence_id: str) -> Response:
    """Co-deposit (SPEC §2.1): a second party countersigns a deposit; a new deposit refers to the first. 202."""
    tenant_id = require_tenant()
    evidence_id = _checked_id(evidence_id)
    body = read_json_object(request.stream)
    reject_unknown_fields(body, ("attestation",), "the JSON body")
    if "attestation" not in body:
        raise InvalidInput("the JSON body needs 'attestation': the countersigning party's attestation (base64)")
    raw = deposits.decode_attestation(body["attestation"], "JSON field 'attestation'")
    with runtime_state().engine.begin() as conn:
        recorded = deposits.deposit_v2(
            conn,
            tenant_id,
            sha256=b"",
            label=None,
            attestation_raw=raw,
            cosigns=evidence_id,
            now=utc_now(),
            trusted_cas=depositor_cas(),
        )
    return accepted(recorded.to_json(), recorded.deposit.id)


def depositor_cas() -> list[Any]:
    """The CA certificates this service trusts for X.509 depositor attestations (EVIDENCE_DEPOSITOR_CA_FILES)."""
    return _load_cas(runtime_state().runtime.settings.depositor_ca_files)


@functools.lru_cache(maxsize=4)
def _load_cas(paths: tuple[Path, ...]) -> list[Any]:
    return load_certificate_files(paths)


# --- POST /v1/evidence/batch ----------------------------------------------------------------------
# Reserved for the batch endpoint (SPEC §7, issue 3 part 2): it belongs here, on this blueprint, as
# ``@bp.post("/batch")``, declared BEFORE the ``/<evidence_id>`` routes below so the static segment wins
# (werkzeug ranks static rules first anyway). Its OpenAPI entry goes into service/api/openapi.py.
# --------------------------------------------------------------------------------------------------


@bp.get("/<evidence_id>")
def status(evidence_id: str) -> Response:
    """``pending``, or ``sealed`` with its batch sequence number."""
    tenant_id = require_tenant()
    evidence_id = _checked_id(evidence_id)
    with runtime_state().reader.begin() as conn:
        body = sealing.evidence_status(conn, tenant_id, evidence_id)
    return jsonify(body)


@bp.get("/<evidence_id>/receipt")
def receipt(evidence_id: str) -> Response:
    """200 with the evidence receipt (v1, or v2 for a labelled, case or attested deposit) once sealed;
    202 with the status while pending."""
    tenant_id = require_tenant()
    evidence_id = _checked_id(evidence_id)
    settings = runtime_state().runtime.settings
    with runtime_state().reader.begin() as conn:
        # The receipt's `keys` is a hint only (SPEC §6): every key this server has published.
        keys = [k["vkey"] for k in sealing.key_list(conn)]
        document = sealing.receipt_for(conn, tenant_id, evidence_id, keys=keys)
        waiting = False
        if document is not None and settings.witness_policy is not None:
            document = witnessing.receipt_with_cosignatures(conn, settings, document)
            waiting = document is None
        pending = sealing.evidence_status(conn, tenant_id, evidence_id) if document is None else None
    if pending is not None:
        if waiting:  # sealed, but its checkpoint has no witness quorum yet (SPEC §9): at most witness_wait seconds
            pending["waiting_for"] = "witnesses"
            pending["detail"] = "sealed; waiting for witnesses to cosign the checkpoint"
        response = jsonify(pending)
        response.status_code = 202
        max_age = 1.0 if waiting else settings.batch_max_age
        response.headers["Retry-After"] = str(max(1, math.ceil(max_age)))
    else:
        response = Response(dump_json(document or {}), status=200, mimetype="application/json")
    # A tenant's receipt (and a pending status that changes soon): no cache, shared or private, keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _checked_id(evidence_id: str) -> str:
    try:
        return check_evidence_id(evidence_id)
    except FormatError as exc:
        raise InvalidInput(exc.reason) from None
