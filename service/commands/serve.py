"""``evidence serve``: the whole service on one machine (SPEC §8), served by gunicorn.

Before serving: migrate the embedded database (``db.upgrade``), load or create the signing key, publish it and
sign the size-0 checkpoint (``Runtime.prepare_signing``). Then gunicorn runs ``create_app`` in N ``gthread``
workers (threads, so a slow upload does not stall a worker's heartbeat; ``ProblemThreadWorker``, so gunicorn's
own 400/414/431 answers are problem+json too). Exactly one in-process sealer runs:
every worker starts a ``Sealer`` but only the holder of the data dir's ``sealer.lock`` seals; if that worker
dies, another takes the lock over. Sealing stays safe even if two sealed at once (the ledger lock).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import os
from typing import Any

import click
from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from service.api.download import has_project_wheel
from service.commands.admin import DATA_DIR_HELP, database_name, settings_for
from service.commands.certificate import PUBLIC_URL_ENV, warn_if_loopback
from service.config import Settings
from service.core.distribution import download_url

# glibc malloc: large (1 MiB) upload buffers below the mmap threshold avoid a page fault storm per chunk
# (measured on uploads); set for this process (mallopt, inherited by forked workers) and for children.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "134217728"}
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

log = logging.getLogger(__name__)


def tune_malloc() -> None:
    for name, value in MALLOC_ENV.items():
        os.environ.setdefault(name, value)
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, int(os.environ["MALLOC_MMAP_THRESHOLD_"]))
    mallopt(_M_TRIM_THRESHOLD, int(os.environ["MALLOC_TRIM_THRESHOLD_"]))


class EvidenceServer(BaseApplication):  # type: ignore[misc]
    """Gunicorn run from code: our options, and ``create_app`` loaded in each worker (no preload)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from service.api import create_app
        from service.api.observability import init_access_log

        app = create_app(
            self.settings,
            start_sealer=self.settings.embedded,
            sealer_lock=self.settings.data_dir / "sealer.lock",
        )
        init_access_log(app)
        return app


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """Gunicorn's own lines (start, workers, signals) in the service's format and time (RFC 3339 UTC)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from service.logs import TEXT_FORMAT, RequestIdFilter, UtcFormatter

        for handler in self.error_log.handlers:
            handler.addFilter(RequestIdFilter())
            handler.setFormatter(UtcFormatter(TEXT_FORMAT))


def _worker_exit(_server: Any, worker: Any) -> None:
    """Let the worker's sealer finish its round before the worker exits."""
    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        from service.api import stop_sealer

        stop_sealer(app)


def _browsable(host: str) -> str:
    """The address a browser on this machine opens for a server bound to ``host``."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def banner(settings: Settings, local: str, data_dir: str | None) -> str:
    """The next steps printed when the server starts (the start page says the same, in a browser)."""
    data = f" --data-dir {settings.data_dir}" if data_dir is not None or os.environ.get("EVIDENCE_DATA_DIR") else ""
    return "\n".join(
        [
            "",
            "Next steps / 下一步:",
            f"  start page      {local}/   (deposit, verify, check a certificate, keys, API docs)",
            f"  API key         evidence tenant create NAME{data}   (the key is the last line printed)",
            f"  deposit         EVIDENCE_URL={local} EVIDENCE_API_KEY=<key> evidence submit contract.pdf",
            f"                  or in a browser: {local}/deposit",
            f"  verify          {local}/verify   or   evidence verify RECEIPT FILE --key <vkey above>",
            f"  check a number  {local}/check   (a certificate's number and its file)",
            f"  verifier        {download_url(settings.public_url)}   (what certificates tell courts to install)",
            f"  API             {local}/openapi.json",
            "",
        ]
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256), help="Threads per worker.")
def serve(host: str, port: int, data_dir: str | None, workers: int, threads: int) -> None:
    """Run the whole service: embedded database in the data dir, in-process sealing, keys made on first start."""
    from service.logs import configure_logging
    from service.runtime import Runtime
    from service.storage import db

    configure_logging(settings_for(data_dir))  # one format for our lines and gunicorn's; fontTools quiet
    tune_malloc()
    settings = settings_for(data_dir)
    local = f"http://{_browsable(host)}:{port}"
    public_given = bool(os.environ.get(PUBLIC_URL_ENV, "").strip())
    if not public_given:  # the default names port 8000; links must name the port really listened on
        settings = dataclasses.replace(settings, public_url=local)
    if settings.embedded:
        db.upgrade(settings.database_url)
    runtime = Runtime.from_settings(settings)
    signer = runtime.prepare_signing()
    runtime.engine.dispose()  # no pooled connection may cross the fork into the workers
    click.echo(f"data dir:    {settings.data_dir}", err=True)
    click.echo(f"database:    {database_name(settings)}", err=True)
    click.echo(f"origin:      {signer.name}", err=True)
    click.echo(f"vkey:        {signer.verifier.vkey}", err=True)
    click.echo(f"fingerprint: {signer.verifier.fingerprint}", err=True)
    for extra in runtime.cosigners:
        click.echo(f"SM2 vkey:    {extra.verifier.vkey}", err=True)
        click.echo(f"SM2 fingerprint: {extra.verifier.fingerprint} (SM3 {extra.verifier.fingerprint_sm3})", err=True)
    click.echo(f"listening:   http://{host}:{port}", err=True)
    click.echo(f"public URL:  {settings.public_url}   (printed on certificates and in their QR codes)", err=True)
    click.echo(banner(settings, local, data_dir), err=True)
    warn_if_loopback(settings.public_url, public_given, what="Certificates issued by this server would")
    if not has_project_wheel(settings.download_dir):
        click.echo(
            f"WARNING: no verifier wheels in {settings.download_dir}: {settings.public_url}/download/ cannot offer "
            "the command-line verifier that certificates tell courts to install. Run scripts/setup (or "
            "scripts/build-download), or set EVIDENCE_DOWNLOAD_DIR.",
            err=True,
        )
    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "service.api.gunicorn_worker.ProblemThreadWorker",
        "threads": threads,
        "preload_app": False,
        "graceful_timeout": 15,
        "timeout": 60,
        "accesslog": None,  # the app writes access lines itself (request id, 4xx reason): observability
        "errorlog": "-",
        "logger_class": GunicornLogger,
        "loglevel": "info",
        "proc_name": "evidence-serve",
        # gunicorn >= 24 opens a control socket in $HOME by default; two servers on one machine would share it.
        "control_socket_disable": True,
        "worker_exit": _worker_exit,
    }
    EvidenceServer(settings, options).run()
