"""Every error the HTTP API returns, as an RFC 9457 problem document, made in this one place.

Owns: the mapping from our domain errors (``service.core.errors``), werkzeug's HTTP exceptions (404, 405, 413, bad
JSON...), database outages and unexpected exceptions to ``application/problem+json`` responses
``{"type", "title", "status", "detail"}``. HTTP status codes appear nowhere else in the service.
Unexpected exceptions are logged here and answered with a 500 that reveals nothing about internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from flask import Flask, Response, g, has_request_context, json
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from service.core.errors import (
    Conflict,
    EvidenceError,
    FontMissing,
    FormatError,
    IdempotencyConflict,
    InvalidInput,
    InvalidItem,
    NotFound,
    PayloadTooLarge,
    ProofError,
    Pushback,
    RateLimited,
    Unauthorized,
    Unprocessable,
    UnreadableReceipt,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
DATABASE_RETRY_AFTER = 5  # seconds a client should wait when the database is unreachable

log = logging.getLogger(__name__)

# Most specific class first: the first isinstance match wins.
_STATUS: tuple[tuple[type[EvidenceError], int], ...] = (
    (Unauthorized, 401),
    (NotFound, 404),
    (PayloadTooLarge, 413),
    (IdempotencyConflict, 409),
    (Conflict, 409),
    (Unprocessable, 422),
    (RateLimited, 429),
    (Pushback, 503),
    (FontMissing, 503),  # the operator must install a CJK font; the message says which package
    (InvalidItem, 422),  # one bad item of a batch: the request is well formed, its content is not
    (InvalidInput, 400),
    (FormatError, 400),
    (UnreadableReceipt, 400),
    (ProofError, 400),
)


def problem(status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> Response:
    """A problem document for ``status`` (its title is the standard reason phrase, type ``about:blank``)."""
    if has_request_context():
        g.problem_detail = detail  # the access line of this request states it (service.api.observability)
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def status_for(exc: EvidenceError) -> int | None:
    """The HTTP status for a domain error, or None when it is not the client's fault (a 500)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return None


def from_domain_error(exc: EvidenceError) -> Response:
    status = status_for(exc)
    if status is None:
        return from_unexpected(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        # RFC 6750 §3: a request without credentials gets no error code; a bad token gets invalid_token.
        headers["WWW-Authenticate"] = (
            'Bearer realm="evidence-ledger"'
            if exc.reason.startswith("missing")
            else 'Bearer realm="evidence-ledger", error="invalid_token"'
        )
    if isinstance(exc, RateLimited | Pushback):
        headers["Retry-After"] = str(exc.retry_after)
    return problem(status, exc.reason, headers=headers)


def from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        return from_unexpected(exc)
    detail = {
        404: "no such resource: check the path (see /openapi.json)",
        413: "the request body is larger than this server accepts",
    }.get(status, exc.description or HTTPStatus(status).description)
    # Keep the headers the status needs (Allow on 405, Retry-After on 429/503), drop werkzeug's Content-Type.
    headers = {
        name: value for name, value in exc.get_headers() if name.lower() in ("allow", "retry-after", "www-authenticate")
    }
    return problem(status, detail, headers=headers)


def from_database_error(exc: DBAPIError) -> Response:
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.warning("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
        return problem(
            503,
            "the database is unavailable; try again shortly",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    return from_unexpected(exc)


def from_unexpected(exc: BaseException) -> Response:
    log.error("unexpected error while serving a request", exc_info=exc)
    return problem(500, "the server failed to handle this request; the error was logged")


def register(app: Flask) -> None:
    """Install the handlers on ``app`` (called once by ``create_app``)."""
    app.register_error_handler(EvidenceError, from_domain_error)
    app.register_error_handler(HTTPException, from_http_exception)
    app.register_error_handler(DBAPIError, from_database_error)
    app.register_error_handler(Exception, from_unexpected)
