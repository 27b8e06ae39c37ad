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
import threading
from contextlib import nullcontext
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify

from service import deposits, sealing, witnessing
from service.api.auth import require_tenant
from service.api.evidence import depositor_cas
from service.api.responses import evidence_file_responses
from service.api.state import runtime_state
from service.config import Settings
from service.core.distribution import check_url
from service.core.errors import FormatError, InvalidInput, Pushback, TimestampInvalid
from service.core.formats import check_evidence_id, format_time
from service.core.note import Verifier
from service.core.receipt import dump_json
from service.core.verify import verify_receipt
from service.court.cache import CertificateCache, certificate_key
from service.court.certificate import PartyDisplay, TimestampDisplay, render_certificate, witness_displays
from service.court.fonts import prepare_working_fonts
from service.court.webpage import embed_keys, static_page

bp = Blueprint("pages", __name__)

log = logging.getLogger(__name__)

PDF_MEDIA_TYPE = "application/pdf"
RENDER_RETRY_AFTER = 1  # seconds: drawing one certificate takes a fraction of that
RENDER_WAIT = 2.0  # seconds a request may wait for a drawing slot...
RENDER_WAITERS = 2  # ...and how many may wait at once per process (gunicorn serves 4 threads per worker)

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
    pending; 404 for evidence of another tenant; 503 + Retry-After when it must be drawn and this process is busy
    drawing (``_DrawingSlot``). Drawn once per set of inputs, then served from the certificate cache."""
    tenant_id = require_tenant()
    try:
        evidence_id = check_evidence_id(evidence_id)
    except FormatError as exc:
        raise InvalidInput(exc.reason) from None
    state = runtime_state()
    settings = state.runtime.settings
    cache = _certificate_cache(settings)
    with _DrawingSlot(settings.certificate_renders) as slot:
        if cache is None or not cache.has_any(evidence_id):
            slot.take()  # it will have to be drawn: when this process is busy drawing, say so before any other work
        with state.reader.begin() as conn:
            vkeys = [k["vkey"] for k in sealing.key_list(conn)]
            document = sealing.receipt_for(conn, tenant_id, evidence_id, keys=vkeys)
            if document is not None:
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
        pdf = certificate_pdf(document, evidence_id, status.get("label"), vkeys, slot=slot, countersignatures=cosigned)
    response = Response(pdf, status=200, mimetype=PDF_MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="certificate-{evidence_id}.pdf"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def certificate_pdf(
    document: dict[str, Any],
    evidence_id: str,
    label: str | None,
    vkeys: list[str],
    *,
    slot: _DrawingSlot | None = None,
    countersignatures: list[dict[str, Any]] | None = None,
) -> bytes:
    """The certificate of deposit of a sealed receipt this server issued (also put into evidence bundles): from the
    certificate cache when it was drawn before with the same inputs, else verified, drawn holding a drawing slot
    (``slot``, or one taken here) and stored.

    :raise Pushback: it must be drawn and every drawing slot of this process is taken."""
    state = runtime_state()
    settings = state.runtime.settings
    receipt_json = dump_json(document)
    verify_url = check_url(settings.public_url, evidence_id)
    # Everything the page shows is in the key (the receipt's bytes carry its checkpoint, cosignatures and tokens),
    # so a sealed evidence's certificate is drawn once and then served from the cache, without verifying again.
    key = certificate_key(
        evidence_id,
        [
            receipt_json,
            label or "",
            verify_url,
            settings.public_url,
            settings.local_tz,
            settings.witness_policy.to_text() if settings.witness_policy is not None else "",
            *vkeys,
            *_root_digests(state.tsa_roots),
            *_root_digests(depositor_cas()),
            *(dump_json(co) for co in countersignatures or []),
        ],
    )
    cache = _certificate_cache(settings)
    pdf = cache.get(key) if cache is not None else None
    if pdf is not None:
        return pdf
    with nullcontext(slot) if slot is not None else _DrawingSlot(settings.certificate_renders) as held:
        held.take()
        pdf = _draw_certificate(
            document, receipt_json, vkeys, verify_url, label, settings, state.tsa_roots, countersignatures or []
        )
    if cache is not None:
        cache.put(key, pdf)
    return pdf


def _draw_certificate(
    document: dict[str, Any],
    receipt_json: bytes,
    vkeys: list[str],
    verify_url: str,
    label: str | None,
    settings: Settings,
    tsa_roots: list[Any],
    countersignatures: list[dict[str, Any]],
) -> bytes:
    """Verify the receipt and draw its certificate (the caller holds a drawing slot), with every party of a
    co-deposit (``countersignatures``: the receipts of the deposits countersigning it, each verified too)."""
    trusted = [Verifier.from_vkey(v) for v in vkeys]
    cas = depositor_cas()
    # A certificate is shown in court: never print one for a receipt our own verifier would not accept.
    result = verify_receipt(document, trusted_keys=trusted, depositor_cas=cas)
    if not result.valid or result.key is None:
        evidence_id = document.get("evidence", {}).get("id")
        raise RuntimeError(f"the receipt of {evidence_id} does not verify at step {result.step}: {result.reason}")
    parties = [_party(result.depositor)] if result.depositor is not None else []
    for co in countersignatures:
        checked = verify_receipt(co, trusted_keys=trusted, depositor_cas=cas)
        if checked.valid and checked.depositor is not None and checked.received is not None:
            parties.append(_party(checked.depositor, format_time(checked.received)))
    prepare_working_fonts()
    return render_certificate(
        document,
        witnesses=witness_displays(document, settings.witness_policy),
        verify_url=verify_url,
        label=label,
        local_tz=settings.local_tz,
        timestamps=timestamp_displays(document, tsa_roots),
        trusted_fingerprint=result.key.fingerprint,
        receipt_json=receipt_json,
        public_url=settings.public_url,
        parties=parties,
    )


def _party(depositor: Any, countersigned: str | None = None) -> PartyDisplay:
    trust = "ca" if depositor.ca_verified else ("key" if depositor.kind == "ed25519-key" else "unchecked")
    return PartyDisplay(depositor.identity, trust, countersigned)


class _DrawingSlot:
    """One of this process's ``certificate_renders`` drawing slots, taken at most once per request and released
    when it ends. Drawing is a CPU burst: a burst of certificate requests must not starve health checks and
    deposits. A request that finds every slot taken waits up to ``RENDER_WAIT`` seconds for one, but only
    ``RENDER_WAITERS`` requests per process wait (the others keep the server's threads free); any other is answered
    503 with Retry-After (problem+json) at once."""

    _waiting = 0
    _waiting_lock = threading.Lock()

    def __init__(self, count: int) -> None:
        self.count = count
        self.semaphore = _render_slots(count)
        self.held = False

    def take(self) -> None:
        """:raise Pushback: every slot is taken, and stayed taken for the wait (or enough requests wait)."""
        if self.held:
            return
        if not self.semaphore.acquire(blocking=False) and not self._wait():
            raise Pushback(
                f"this server is drawing certificates at its capacity ({self.count} at once per process): "
                "retry in a moment",
                retry_after=RENDER_RETRY_AFTER,
            )
        self.held = True

    def _wait(self) -> bool:
        cls = type(self)
        with cls._waiting_lock:
            if cls._waiting >= RENDER_WAITERS:
                return False
            cls._waiting += 1
        try:
            return self.semaphore.acquire(timeout=RENDER_WAIT)
        finally:
            with cls._waiting_lock:
                cls._waiting -= 1

    def __enter__(self) -> _DrawingSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.held = False
            self.semaphore.release()


@cache
def _render_slots(count: int) -> threading.BoundedSemaphore:
    """This process's drawing slots (one semaphore per configured count; tests build apps with different ones)."""
    return threading.BoundedSemaphore(count)


@cache
def _cache_for(directory: Path, max_mb: int) -> CertificateCache:
    return CertificateCache(directory, max_mb * 1024 * 1024)


def _certificate_cache(settings: Settings) -> CertificateCache | None:
    if settings.certificate_cache_dir is None:
        return None
    return _cache_for(settings.certificate_cache_dir, settings.certificate_cache_mb)


def _root_digests(roots: list[Any]) -> list[bytes]:
    """The trusted TSA roots, as part of a certificate's cache key (they decide what "verified" it prints)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return [hashlib.sha256(root.public_bytes(Encoding.DER)).digest() for root in roots]


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
                "description": "Drawn once per evidence and checkpoint, then served from the certificate cache. Each "
                "server process draws at most EVIDENCE_CERTIFICATE_RENDERS certificates at once: a request for one "
                "not drawn yet may get 503 with Retry-After while it is busy (a drawn one is always served).",
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
                "responses": evidence_file_responses("The certificate.", PDF_MEDIA_TYPE),
            }
        },
    }
