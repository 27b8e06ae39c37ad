"""gunicorn's ``gthread`` worker whose own error answers are RFC 9457 problem documents.

gunicorn answers some requests before the app sees them: a request line longer than ``limit_request_line`` (414),
too many or too large header fields (431), a malformed request (400). Its answer is an HTML page; this worker
sends ``application/problem+json`` with the same status and a ``detail`` that says which limit was hit, like
every answer of the app. Use it as ``--worker-class=service.api.gunicorn_worker.ProblemThreadWorker``
(``evidence serve``, ``compose.yaml`` and the ``Dockerfile`` do).
"""

from __future__ import annotations

import json
import socket
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

__all__ = ["ProblemThreadWorker", "write_problem"]

_DETAILS = {
    414: "the request line (method, path and query) is longer than this server accepts; shorten the URL",
    431: "the request's header fields are too many or too large for this server; send fewer or shorter headers",
}


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, answering ``application/problem+json`` instead of HTML."""
    detail = _DETAILS.get(status_int) or (mesg if status_int < 500 else "") or reason
    if status_int in _DETAILS and mesg:
        detail = f"{detail} ({mesg})"
    body = json.dumps({"type": "about:blank", "title": reason, "status": status_int, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


class ProblemThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """``gthread`` with problem+json error answers (see the module docstring)."""

    def init_process(self) -> Any:
        # gunicorn's Worker.handle_error looks ``util.write_error`` up at each call: in this worker process it is
        # ours (this process runs nothing else that calls it).
        util.write_error = write_problem
        return super().init_process()
