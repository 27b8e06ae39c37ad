"""The witness's HTTP face: ``POST /add-checkpoint`` (C2SP tlog-witness), ``GET /healthz``, ``GET /`` (its key).

A small Flask app served by gunicorn (``evidence witness serve``), the same WSGI stack as the ledger's API, so an
operator runs one kind of server. Refusals carry an RFC 9457 problem document, except ``409``, whose body is the
witness's size as ``text/x.tlog.size`` (the protocol requires it).
Must not import: the ledger's storage, use cases or API.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from service.witness.state import MAX_BODY, Witness

log = logging.getLogger(__name__)


def _problem(status: int, detail: str) -> Response:
    from http import HTTPStatus

    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


def create_witness_app(witness: Witness) -> Flask:
    app = Flask("evidence-witness")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    @app.post("/add-checkpoint")
    def add_checkpoint() -> Response:
        body = request.get_data(cache=False)
        answer = witness.add_checkpoint(body)
        if answer.status in (200, 409):
            return Response(answer.body, status=answer.status, content_type=answer.media_type)
        return _problem(answer.status, answer.detail)

    @app.get("/")
    def about() -> Response:
        key = witness.signer.verifier
        text = f"C2SP tlog-witness {key.name}\nvkey {key.vkey}\nfingerprint {key.fingerprint}\n" + "".join(
            f"log {k.vkey}\n" for keys in witness.logs.values() for k in keys
        )
        return Response(text, content_type="text/plain; charset=utf-8")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", content_type="text/plain; charset=utf-8")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = {404: "no such resource: POST /add-checkpoint", 413: f"the body is larger than {MAX_BODY} bytes"}
        return _problem(status, detail.get(status, exc.description or ""))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.error("witness failed to handle a request", exc_info=exc)
        return _problem(500, "the witness failed to handle this request; the error was logged")

    return app
