"""Logging: JSON lines (python-json-logger) or plain text, and a request id on every line of a request.

Owns: ``configure_logging(settings)`` (every process: API, workers, commands) and ``init_app(app)``, which
gives each HTTP request an id (the client's ``X-Request-ID`` if it is sane, else a new random one), echoes
it in the response's ``X-Request-ID`` header and adds it to every log record emitted while it runs.

Must not import: Celery. Flask is imported only inside ``init_app``.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING

from pythonjsonlogger.json import JsonFormatter

from service.config import Settings

if TYPE_CHECKING:
    from flask import Flask, Response

__all__ = ["REQUEST_ID_HEADER", "RequestIdFilter", "configure_logging", "current_request_id", "init_app"]

REQUEST_ID_HEADER = "X-Request-ID"
# Echo a client's id only if it is short and harmless in logs and headers.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_id: ContextVar[str | None] = ContextVar("evidence_request_id", default=None)

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def current_request_id() -> str | None:
    """The id of the HTTP request being served by this thread/context, if any."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``-``) to every record, so formatters can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True


def configure_logging(settings: Settings, *, level: int | str = logging.INFO) -> None:
    """Send the root logger's records to stderr, as JSON lines when ``settings.log_json``.

    Replaces handlers this function installed before (safe to call twice); leaves others alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_evidence", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._evidence = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    if settings.log_json:
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)


def init_app(app: Flask) -> None:
    """Give every request an id: the ``X-Request-ID`` sent by the client (if sane) or a new one; echo it."""
    from flask import g, request

    @app.before_request
    def _set_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _SANE_ID.fullmatch(incoming) else secrets.token_hex(16)
        g.request_id = request_id
        g.request_id_token = _request_id.set(request_id)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def _clear_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            _request_id.reset(token)
