"""``evidence keys init|show``: provision the checkpoint signing key of a production deployment.

Production workers and API processes only load the key (``EVIDENCE_SIGNING_KEY_FILE``); they never create it.
The operator creates it once, before the first start, with ``evidence keys init``, keeps a backup offline, and
publishes the verifier key (``evidence keys show``) and its fingerprint.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from service.config import Settings
from service.keys import load_signer, write_signer
from service.note import Signer


def _settings() -> Settings:
    return Settings.from_env(os.environ)


@click.group()
def keys() -> None:
    """Create and show the checkpoint signing key (SPEC §4 key file, mode 0600)."""


@keys.command("init")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the key; default $EVIDENCE_SIGNING_KEY_FILE or <data dir>/signing.key.")
@click.option("--origin", default=None, help="Key name = checkpoint origin; default $EVIDENCE_ORIGIN.")
def init(key_file: Path | None, origin: str | None) -> None:
    """Create a new signing key file (mode 0600); refuses to overwrite an existing one."""
    settings = _settings()
    path = key_file or settings.signing_key_file
    name = origin or settings.origin
    if path.exists():
        raise click.ClickException(f"{path} already exists: a ledger's key is never replaced silently")
    signer = Signer.generate(name)
    write_signer(path, signer)
    click.echo(f"wrote {path} (mode 0600)", err=True)
    click.echo(f"fingerprint {signer.verifier.fingerprint}", err=True)
    click.echo(signer.verifier.vkey)


@keys.command("show")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The key file; default $EVIDENCE_SIGNING_KEY_FILE or <data dir>/signing.key.")
def show(key_file: Path | None) -> None:
    """Print the verifier key (what verifiers trust) of the signing key, and its fingerprint."""
    settings = _settings()
    signer = load_signer(key_file or settings.signing_key_file, settings.origin)
    click.echo(f"fingerprint {signer.verifier.fingerprint}", err=True)
    click.echo(signer.verifier.vkey)


@keys.command("publish")
def publish() -> None:
    """Record the verifier key in the database and sign the size-0 checkpoint if the ledger has none.

    Idempotent; run after ``evidence db upgrade`` (the compose ``migrate`` job does). Workers do it too.
    """
    from service.runtime import Runtime

    runtime = Runtime.from_settings(_settings())
    try:
        signer = runtime.prepare_signing()
    finally:
        runtime.engine.dispose()
    click.echo(signer.verifier.vkey)
