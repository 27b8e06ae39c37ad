"""The HTTP side of logging and metrics: a request id on every request, per-request counters, ``GET /metrics``.

Owns: the Flask hooks only; what is logged and counted lives in ``service.logs`` and ``service.metrics``, which
workers use too and which therefore import no Flask.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from service import logs, metrics
from service.runtime import Runtime

__all__ = ["init_access_log", "init_logging", "init_metrics"]

access_log = logging.getLogger("evidence.access")
# WSGI's name of the X-Request-ID header (read straight from the environ: no header-map lookup per request).
_REQUEST_ID_ENVIRON = "HTTP_" + logs.REQUEST_ID_HEADER.upper().replace("-", "_")


def init_logging(app: Flask) -> None:
    """Give every request an id: the ``X-Request-ID`` sent by the client (if sane) or a new one; echo it."""

    @app.before_request
    def _set_request_id() -> None:
        request_id = logs.sane_request_id(request.environ.get(_REQUEST_ID_ENVIRON, ""))
        g.request_id = request_id
        g.request_id_token = logs.bind_request_id(request_id)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is not None:
            response.headers[logs.REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def _clear_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            logs.unbind_request_id(token)


def init_access_log(app: Flask) -> None:
    """One line per request through the service's own log format (``evidence serve``, where gunicorn's access log
    is off): method, path, status, bytes, milliseconds, the request id, and for a 4xx the reason given."""

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _access_line(response: Response) -> Response:
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        reason = g.get("problem_detail") if 400 <= response.status_code < 500 else None
        access_log.info(
            "%s %s %d %s %.1fms%s",
            request.method,
            request.full_path.rstrip("?"),
            response.status_code,
            response.content_length if response.content_length is not None else "-",
            elapsed,
            f" reason={reason!r}" if reason else "",
        )
        return response


def init_metrics(app: Flask, runtime: Runtime) -> None:
    """Add ``GET /metrics`` (Prometheus text format) and per-request counters to ``app``."""
    engine = runtime.engine
    # The counter of each (method, endpoint, status class) seen, resolved once: ``labels()`` validates and looks
    # the label values up under a lock on every call. Bounded like the metric's own children (methods, endpoints).
    counters: dict[tuple[str, str | None, int], Any] = {}

    @app.after_request
    def _count_request(response: Response) -> Response:
        status = response.status_code
        key = (request.method, request.endpoint, status // 100)
        counter = counters.get(key)
        if counter is None:
            counter = counters.setdefault(
                key, metrics.HTTP_REQUESTS.labels(key[0], key[1] or "unmatched", f"{key[2]}xx")
            )
        counter.inc()
        if status >= 400:
            metrics.record_error("http_5xx" if status >= 500 else "http_4xx")
        return response

    def metrics_view() -> Response:
        return Response(metrics.render(engine), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", endpoint="metrics", view_func=metrics_view, methods=["GET"])
