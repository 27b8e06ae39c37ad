"""Public checking (核验) by certificate number: ``POST /v1/check`` and the ``GET /check`` page.

A judge often holds only the certificate and the file. ``POST /v1/check`` (no key) takes ``{"id": ..., "sha256":
...}`` and answers ``200`` with the receipt only when a sealed deposit has both that id and that SHA-256; an unknown
id, a known id with another digest and a deposit still pending all get the same ``404`` with the same body, so the
answer says nothing about other deposits. Requests are rate-limited per client address (``EVIDENCE_CHECK_RATE_LIMIT``),
before the body is read, so ids cannot be enumerated. Malformed requests (not JSON, an id or digest that is not
well-formed) are ``400``: that depends on the request alone, never on the ledger.

``GET /check`` is the verify page (this server's keys embedded) with a check panel on top: it hashes the file in
the browser, sends only the digest, and hands a matching receipt to the page's own verifier.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.http import parse_options_header

from service import sealing, witnessing
from service.api.download import verify_page_html
from service.api.html import html_response
from service.api.parsing import read_json_object, sha256_field
from service.api.state import EXTENSION_KEY, ApiState, runtime_state
from service.core.bodies import reject_unknown_fields
from service.core.errors import FormatError, InvalidInput, NotFound, RateLimited
from service.core.formats import check_evidence_id
from service.core.receipt import dump_json
from service.court.webpage import static_page
from service.metrics import record_ratelimit_fail_open
from service.ratelimit import REDIS_TIMEOUT, RateLimiter, RedisRateLimiter, shared_file_limiter

bp = Blueprint("check", __name__)

LIMITER_KEY = "evidence_check_ratelimit"
CHECK_BURST = 10
REDIS_PREFIX = "evidence:checklimit:"
# The one answer for every mismatch (unknown id, other digest, still pending).
NOT_MATCHED = "no sealed evidence has this id and this SHA-256"


def init_check_limit(app: Flask) -> None:
    """The per-address limiter of ``POST /v1/check`` (None when ``check_rate_limit`` is 0)."""
    state = app.extensions[EXTENSION_KEY]
    assert isinstance(state, ApiState)
    settings = state.runtime.settings
    limiter: RateLimiter | None = None
    if settings.check_rate_limit > 0:
        if settings.redis_url:
            import redis

            client = redis.Redis.from_url(
                settings.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            limiter = RedisRateLimiter(
                client,
                settings.check_rate_limit,
                CHECK_BURST,
                prefix=REDIS_PREFIX,
                on_fail_open=record_ratelimit_fail_open,
            )
        else:  # shared by the machine's worker processes (keys differ from the API keys' by the "check" prefix)
            limiter = shared_file_limiter(
                settings, settings.check_rate_limit, CHECK_BURST, on_fail_open=record_ratelimit_fail_open
            )
    app.extensions[LIMITER_KEY] = limiter


def _limit() -> None:
    limiter: RateLimiter | None = current_app.extensions.get(LIMITER_KEY)
    if limiter is None:
        return
    address = request.remote_addr or "unknown"
    wait = limiter.acquire(hashlib.sha256(b"check\n" + address.encode("utf-8", "replace")).hexdigest())
    if wait > 0:
        raise RateLimited(
            f"too many checks from this address: the limit is {limiter.rate:g} per second (bursts of "
            f"{limiter.burst}); retry in {wait:.2f} s",
            retry_after=max(1, math.ceil(wait)),
        )


@bp.post("/v1/check")
def check() -> Response:
    """200 with the receipt when a sealed deposit has this id and this SHA-256; the same 404 otherwise."""
    _limit()
    mimetype, _options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype != "application/json":
        found = f"{mimetype!r}" if mimetype else "no Content-Type"
        raise UnsupportedMediaType(
            description=f'send application/json {{"id": "...", "sha256": "<64 hex digits>"}}; found {found}'
        )
    body = read_json_object(request.stream)
    reject_unknown_fields(body, ("id", "sha256"), "the JSON body")
    for name in ("id", "sha256"):
        if name not in body:
            raise InvalidInput(
                f"the JSON body needs {name!r}: the evidence id printed on the certificate and the file's SHA-256"
            )
    if not isinstance(body["id"], str):
        raise InvalidInput("'id' must be a string: the evidence id printed on the certificate")
    try:
        evidence_id = check_evidence_id(body["id"].strip())
    except FormatError as exc:
        raise InvalidInput(f"'id': {exc.reason}") from None
    digest = sha256_field(body["sha256"])
    state = runtime_state()
    with state.reader.begin() as conn:
        keys = [k["vkey"] for k in sealing.key_list(conn)]
        document = sealing.public_receipt(conn, evidence_id, digest, keys=keys)
        if document is not None:  # with the witnesses' cosignatures (None while they are awaited: not found yet)
            document = witnessing.receipt_with_cosignatures(conn, state.runtime.settings, document)
    if document is None:
        raise NotFound(NOT_MATCHED)
    response = Response(dump_json(document), status=200, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


_MAIN = re.compile(r'<main class="wrap">\n')


def check_page_html() -> str:
    """The verify page with the check panel first in its main column and the check script last in its body."""
    page = verify_page_html()
    panel = static_page("check-panel.html")
    script = static_page("check.js")
    if len(_MAIN.findall(page)) != 1 or page.count("</body>") != 1 or "</script" in script.lower():
        raise RuntimeError("verify.html has lost the anchors the check page is built on")
    page = _MAIN.sub(lambda m: m.group(0) + panel, page, count=1)
    page = page.replace("</body>", f"<script>\n{script}</script>\n</body>", 1)
    return page.replace("<title>", "<title>核验 · Check — ", 1)


@bp.get("/check")
def check_page() -> Response:
    """The public checking page (its only request is POST /v1/check on this server)."""
    return html_response(check_page_html(), connect="'self'")


def openapi_paths() -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        "/v1/check": {
            "post": {
                "operationId": "checkEvidence",
                "summary": "Public checking (核验) by certificate number: the receipt when a sealed deposit has "
                "this id and this SHA-256. No key; rate-limited per client address.",
                "description": "Every mismatch (unknown id, another digest, still pending) gets the same 404 with "
                "the same body, so nothing about other deposits leaks. Upper-case hex is accepted.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["id", "sha256"],
                                "additionalProperties": False,
                                "properties": {
                                    "id": {"$ref": "#/components/schemas/EvidenceId"},
                                    "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The evidence-receipt (SPEC §6).",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": {"description": "Not a well-formed request.", "content": problem},
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "415": {"description": "Not application/json.", "content": problem},
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
        "/check": {
            "get": {
                "operationId": "checkPage",
                "summary": "The public checking page (HTML): certificate number + file, verified in the browser.",
                "parameters": [
                    {
                        "name": "id",
                        "in": "query",
                        "required": False,
                        "description": "Pre-fills the certificate number (the certificate's QR code opens this).",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
    }
