"""The HTTP API (SPEC §7): ``create_app`` builds the Flask app from ``Settings`` and a ``Runtime``.

Owns: wiring blueprints, error handlers, the OpenAPI document and (embedded default only) the in-process
sealer. Flask's config holds only Flask's own keys (``MAX_CONTENT_LENGTH``); our settings stay in
``Settings``. Gunicorn's app factory is ``service.api:create_app()``: settings then come from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException

from service.api import (
    auth,
    bulk,
    bundles,
    cases,
    check,
    download,
    errors,
    evidence,
    home,
    ledger,
    observability,
    openapi,
    pages,
    proofs,
    tiles,
    webhooks,
)
from service.api.parsing import MULTIPART_OVERHEAD
from service.api.state import EXTENSION_KEY, ApiState
from service.config import Settings
from service.core.certs import load_certificate_files
from service.ingest import GroupCommitter
from service.revocations import RevocationWatcher
from service.runtime import Runtime
from service.storage.db import read_only


class EvidenceFlask(Flask):
    """Flask with ``OPTIONS`` answers that list only the methods the URL really serves."""

    def make_default_options_response(self) -> Response:
        """``Allow`` lists the methods whose request would reach a view for this very URL. A static route wins over a
        variable one (``/v1/evidence/batch`` is the bulk deposit, never evidence "batch"), so methods that only the
        variable route ``/v1/evidence/<evidence_id>`` serves are not listed for it (Flask's default would)."""
        adapter = request_ctx.url_adapter
        assert adapter is not None
        matched: dict[str, bool] = {}  # method -> served by a rule without variables
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            try:
                rule, _ = adapter.match(method=method, return_rule=True)
            except HTTPException:
                continue
            matched[method] = not rule.arguments
        if any(matched.values()):
            matched = {m: static for m, static in matched.items() if static}
        response = self.response_class(status=204)
        del response.headers["Content-Type"]  # no body
        response.allow.update([*matched, "OPTIONS"])
        return response


def create_app(
    settings: Settings | None = None,
    runtime: Runtime | None = None,
    *,
    start_sealer: bool | None = None,
    sealer_lock: Path | None = None,
) -> Flask:
    """The WSGI app.

    ``settings`` default to ``Settings.from_env(os.environ)``; ``runtime`` to one built from them.
    ``start_sealer`` (default: ``settings.embedded``) starts the in-process sealer thread; ``sealer_lock``
    makes it seal only while holding that file lock (several worker processes, one sealer).
    The database must already be migrated and the signing key published (``Runtime.prepare_signing``):
    ``evidence serve`` does both before it serves.
    """
    if runtime is None:
        runtime = Runtime.from_settings(settings or Settings.from_env(os.environ))
    settings = runtime.settings

    app = EvidenceFlask(__name__)
    # Upload bodies may be this large (plus multipart framing); the file itself is limited in the view.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep documents in their documented order

    state = ApiState(
        runtime=runtime,
        reader=read_only(runtime.engine),
        tsa_roots=load_certificate_files(settings.tsa_ca_files),
        committer=GroupCommitter(runtime.engine),
    )
    state.revocations = RevocationWatcher(settings, state.accepted_keys.clear)
    app.extensions[EXTENSION_KEY] = state

    errors.register(app)

    @app.after_request
    def _no_sniffing(response: Response) -> Response:
        # Browsers must take every answer as the type it says it is (a JSON body is never run as HTML or script).
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    observability.init_logging(app)
    observability.init_metrics(app, runtime)
    app.register_blueprint(evidence.bp)
    auth.init_rate_limit(app)
    app.register_blueprint(bulk.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(ledger.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(download.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(check.bp)
    app.register_blueprint(bundles.bp)
    check.init_check_limit(app)
    app.register_blueprint(proofs.bp)
    app.register_blueprint(tiles.bp)
    tiles.install_fast_path(app)

    if start_sealer is None:
        start_sealer = settings.embedded
    if start_sealer:
        from service.embedded import Sealer

        state.sealer = Sealer(runtime, lock_path=sealer_lock)
        state.sealer.start()
    return app


def stop_sealer(app: Flask) -> None:
    """Stop the app's background threads (tests, shutdown): the group committer (queued deposits are committed
    first) and the in-process sealer, if it has one."""
    state = app.extensions[EXTENSION_KEY]
    if state.revocations is not None:
        state.revocations.close()
    if state.committer is not None:
        state.committer.stop()
    if state.sealer is not None:
        state.sealer.stop()


__all__ = ["create_app", "stop_sealer"]
