"""``evidence witness``: run a C2SP tlog-witness (``serve``) and show its key (``key``), SPEC §9.

A witness is run by someone other than the ledger's operator (a court, a notary office, a partner). It keeps its
own key and SQLite database in ``--data-dir``; the key is made on first use. ``serve`` runs a small Flask app under
gunicorn: one process (the SQLite compare-and-swap serialises writers anyway) with a few threads.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from flask import Flask
from gunicorn.app.base import BaseApplication

from service.core.errors import ConfigError

NAME_HELP = "The witness's key name, used only when the key is made (default: <hostname>/witness)."


class WitnessServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, app_factory: Any, options: dict[str, Any]) -> None:
        self.app_factory = app_factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        app = self.app_factory()
        assert isinstance(app, Flask)
        return app


@click.group()
def witness() -> None:
    """Run a C2SP tlog-witness that cosigns a ledger's checkpoints (SPEC §9)."""


@witness.command("key")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="The witness's data directory.")
@click.option("--name", default=None, help=NAME_HELP)
def key_command(data_dir: str, name: str | None) -> None:
    """Print the witness's name, fingerprint and verifier key (the key alone on the last line); make it if needed."""
    from service.witness.state import load_or_create_key

    try:
        signer = load_or_create_key(Path(data_dir), name)
    except ConfigError as exc:
        raise click.UsageError(exc.reason) from None
    click.echo(f"name:        {signer.name}")
    click.echo(f"fingerprint: {signer.verifier.fingerprint}")
    click.echo(signer.verifier.vkey)


@witness.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False), help="The witness's data directory.")
@click.option(
    "--log",
    "logs",
    multiple=True,
    required=True,
    metavar="VKEY",
    help="The verifier key of a log to witness, or a file with one per line (repeatable).",
)
@click.option("--name", default=None, help=NAME_HELP)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Request threads.")
def serve_command(host: str, port: int, data_dir: str, logs: tuple[str, ...], name: str | None, threads: int) -> None:
    """Serve POST /add-checkpoint: cosign checkpoints of the --log logs that are consistent with what it saw."""
    from service.witness.state import Witness, load_or_create_key, log_keys_from

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    directory = Path(data_dir)
    try:
        signer = load_or_create_key(directory, name)
        log_keys = log_keys_from(logs)
    except ConfigError as exc:
        raise click.UsageError(exc.reason) from None
    click.echo(f"witness:     {signer.name}", err=True)
    click.echo(f"fingerprint: {signer.verifier.fingerprint}", err=True)
    click.echo(f"vkey:        {signer.verifier.vkey}", err=True)
    for k in log_keys:
        click.echo(f"log:         {k.vkey}", err=True)
    click.echo(f"listening:   http://{host}:{port}/add-checkpoint", err=True)

    def factory() -> Flask:
        from service.witness.app import create_witness_app

        return create_witness_app(Witness(directory, signer, log_keys))

    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": 10,
        "timeout": 30,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "evidence-witness",
        "control_socket_disable": True,
    }
    WitnessServer(factory, options).run()
