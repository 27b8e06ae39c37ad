"""The HTTP side of logging and metrics: a request id on every request, per-request counters, ``GET /metrics``.

Owns: the Flask hooks only; what is logged and counted lives in ``service.logs`` and ``service.metrics``, which
workers use too and which therefore import no Flask.
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from service import logs, metrics
from service.runtime import Runtime

__all__ = ["init_logging", "init_metrics"]


def init_logging(app: Flask) -> None:
    """Give every request an id: the ``X-Request-ID`` sent by the client (if sane) or a new one; echo it."""

    @app.before_request
    def _set_request_id() -> None:
        request_id = logs.sane_request_id(request.headers.get(logs.REQUEST_ID_HEADER, ""))
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


def init_metrics(app: Flask, runtime: Runtime) -> None:
    """Add ``GET /metrics`` (Prometheus text format) and per-request counters to ``app``."""
    engine = runtime.engine

    @app.after_request
    def _count_request(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        metrics.HTTP_REQUESTS.labels(request.method, endpoint, f"{response.status_code // 100}xx").inc()
        if response.status_code >= 500:
            metrics.record_error("http_5xx")
        elif response.status_code >= 400:
            metrics.record_error("http_4xx")
        return response

    def metrics_view() -> Response:
        return Response(metrics.render(engine), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", endpoint="metrics", view_func=metrics_view, methods=["GET"])
