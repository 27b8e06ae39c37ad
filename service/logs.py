"""Logging: JSON lines (python-json-logger) or plain text, and a request id on every line of a request.

Owns: ``configure_logging(settings)`` (every process: API, workers, commands) and the request id that
``service.api.observability`` gives each HTTP request (the client's ``X-Request-ID`` if it is sane, else a new
random one), echoed in the response and added to every log record emitted while it runs.

Must not import: Celery or Flask (workers use this module).
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar, Token

from pythonjsonlogger.json import JsonFormatter

from service.config import Settings

__all__ = [
    "REQUEST_ID_HEADER",
    "RequestIdFilter",
    "UtcFormatter",
    "bind_request_id",
    "configure_logging",
    "quiet_noisy_loggers",
    "current_request_id",
    "sane_request_id",
    "unbind_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"
# Echo a client's id only if it is short and harmless in logs and headers.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_request_id: ContextVar[str | None] = ContextVar("evidence_request_id", default=None)

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class UtcFormatter(logging.Formatter):
    """Text lines whose time is RFC 3339 UTC with milliseconds (2026-11-30T01:58:44.123Z), whatever the zone."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging API)
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def current_request_id() -> str | None:
    """The id of the HTTP request being served by this thread/context, if any."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``-``) to every record, so formatters can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True


QUIET_LOGGERS = ("fontTools",)  # their INFO records are noise in a server log; warnings still show


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
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level"}))
    else:
        handler.setFormatter(UtcFormatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    quiet_noisy_loggers()


def quiet_noisy_loggers() -> None:
    """Raise ``QUIET_LOGGERS`` to WARNING: fontTools logs a line per table and glyph pass while fpdf2 subsets a
    font, hundreds per certificate. Every process that logs at INFO calls this (``configure_logging``, serve)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def sane_request_id(incoming: str) -> str:
    """The client's ``X-Request-ID`` if it is short and harmless in logs and headers, else a new random id."""
    return incoming if _SANE_ID.fullmatch(incoming) else secrets.token_hex(16)


def bind_request_id(request_id: str) -> Token[str | None]:
    """Make ``request_id`` the id logged by this thread/context until ``unbind_request_id(token)``."""
    return _request_id.set(request_id)


def unbind_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)
