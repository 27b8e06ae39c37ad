"""``evidence keys init|show|publish|rotate|list``: provision the checkpoint signing key of a production deployment.

``--sm2`` on ``init`` and ``show`` handles the optional SM2 key (SPEC §4.1) instead; rotation is Ed25519 only.

Production workers and API processes only load the key (``EVIDENCE_SIGNING_KEY_FILE``); they never create it.
The operator creates it once, before the first start, with ``evidence keys init``, keeps a backup offline, and
publishes the verifier key (``evidence keys show``) and its fingerprint. The rules (rotation, the running sealer)
are ``service.keys``: these commands parse their arguments and print.
"""

from __future__ import annotations

from pathlib import Path

import click

from service.commands.admin import DATA_DIR_HELP, database_name, refuse_new_database, settings_for
from service.config import Settings
from service.core.errors import ConfigError, FormatError
from service.core.formats import format_time, utc_now
from service.core.note import Signer, Sm2Signer, Sm2Verifier, Verifier


def _settings(data_dir: str | None = None) -> Settings:
    return settings_for(data_dir)


@click.group()
def keys() -> None:
    """Create and show the checkpoint signing key (SPEC §4 key file, mode 0600)."""


@keys.command("init")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the key; default $EVIDENCE_SIGNING_KEY_FILE or <data dir>/signing.key "
    "(with --sm2: $EVIDENCE_SM2_KEY_FILE or signing-sm2.pem beside the signing key).",
)
@click.option("--origin", default=None, help="Key name = checkpoint origin; default $EVIDENCE_ORIGIN.")
@click.option(
    "--sm2",
    is_flag=True,
    help="Create the SM2 key (SPEC §4.1, PKCS#8 PEM) instead: once it exists, every checkpoint is also signed "
    "with SM2 (SM3 digest, distinguishing ID $EVIDENCE_SM2_ID, default 1234567812345678).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def init(key_file: Path | None, origin: str | None, sm2: bool, data_dir: str | None) -> None:
    """Create a new signing key file (mode 0600); refuses to overwrite an existing one."""
    settings = _settings(data_dir)
    path = key_file or (settings.sm2_key_file if sm2 else settings.signing_key_file)
    name = origin or settings.origin
    if path.exists():
        raise click.ClickException(f"{path} already exists: a ledger's key is never replaced silently")
    signer: Signer | Sm2Signer
    if sm2:
        signer = Sm2Signer.generate(name, settings.sm2_id.encode("ascii"))
    else:
        signer = Signer.generate(name)
    from service.keys import write_signer  # lazy: the database layer is not part of the verifier install

    write_signer(path, signer)
    click.echo(f"wrote {path} (mode 0600)", err=True)
    _echo_key(signer.verifier)
    if sm2:
        click.echo(
            "restart every process that signs checkpoints (evidence serve, Celery workers) and run "
            "'evidence keys publish': checkpoints are then signed with Ed25519 and SM2",
            err=True,
        )


def _echo_key(verifier: Verifier) -> None:
    """Fingerprints on stderr, the verifier key alone on stdout."""
    if isinstance(verifier, Sm2Verifier):
        click.echo(f"SM2 key, distinguishing ID {verifier.distid.decode('ascii', 'backslashreplace')}", err=True)
    click.echo(f"fingerprint {verifier.fingerprint}", err=True)
    click.echo(f"SM3 fingerprint {verifier.fingerprint_sm3}", err=True)
    click.echo(verifier.vkey)


@keys.command("show")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The key file; default $EVIDENCE_SIGNING_KEY_FILE or <data dir>/signing.key (--sm2: the SM2 key file).",
)
@click.option("--sm2", is_flag=True, help="Show the SM2 key (SPEC §4.1) instead of the Ed25519 key.")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def show(key_file: Path | None, sm2: bool, data_dir: str | None) -> None:
    """Print the verifier key (what verifiers trust) of the signing key, and its fingerprints."""
    settings = _settings(data_dir)
    if sm2:
        path = key_file or settings.sm2_key_file
        from service.keys import load_sm2_signer

        sm2_signer = load_sm2_signer(path, settings.origin, settings.sm2_id)
        if sm2_signer is None:
            raise ConfigError(f"there is no SM2 key at {path}; create it with 'evidence keys init --sm2'")
        _echo_key(sm2_signer.verifier)
        return
    from service.keys import load_signer

    signer = load_signer(key_file or settings.signing_key_file, settings.origin)
    _echo_key(signer.verifier)


@keys.command("publish")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def publish(data_dir: str | None) -> None:
    """Record the verifier key in the database and sign the size-0 checkpoint if the ledger has none.

    Idempotent; run after ``evidence db upgrade`` (the compose ``migrate`` job does). Workers do it too.
    """
    from service.runtime import Runtime

    settings = _settings(data_dir)
    refuse_new_database(settings, told=data_dir is not None)
    click.echo(f"database {database_name(settings)}", err=True)
    runtime = Runtime.from_settings(settings)
    try:
        signer = runtime.prepare_signing()
        cosigners = runtime.cosigners
    finally:
        runtime.engine.dispose()
    click.echo(signer.verifier.vkey)
    for extra in cosigners:
        click.echo(extra.verifier.vkey)


# --- rotation and listing (issue 5: trust beyond the operator) -------------------------------------


@keys.command("rotate")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option("--force", is_flag=True, help="Rotate even though 'evidence serve' seems to run on this data dir.")
def rotate(data_dir: str | None, force: bool) -> None:
    """Make a new signing key; close the old key's validity window and publish the new key."""
    settings = settings_for(data_dir)
    refuse_new_database(settings, told=False)
    from service.keys import rotate_signing_key, sealer_running

    if settings.embedded and not force and sealer_running(settings):
        raise ConfigError(
            "'evidence serve' is running on this data dir and would keep signing with the old key: stop it, "
            "rotate, start it again (or pass --force and restart it right after)"
        )
    result = rotate_signing_key(settings)
    click.echo(
        f"retired key {result.old.key_id} (fingerprint {result.old.fingerprint}), kept at {result.retired}", err=True
    )
    click.echo(f"new key {result.new.key_id}, valid from {format_time(result.at)}", err=True)
    click.echo(f"fingerprint {result.new.fingerprint}", err=True)
    click.echo(f"database {database_name(settings)}", err=True)
    click.echo("restart every process that signs checkpoints (evidence serve, Celery workers)", err=True)
    click.echo(result.new.vkey)


@keys.command("list")
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the /v1/keys document instead of a table.")
def list_keys(data_dir: str | None, as_json: bool) -> None:
    """Every published signing key with its validity window (what GET /v1/keys serves)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from service import sealing
    from service.storage import db

    settings = settings_for(data_dir)
    refuse_new_database(settings, told=False)
    engine = db.make_engine(settings)
    try:
        with engine.connect() as conn:
            items = sealing.key_list(conn)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"keys": items}, indent=2))
        return
    table = Table(title=f"Signing keys of {settings.origin}")
    for column in ("key hash", "algorithm", "fingerprint (SHA-256)", "SM3 fingerprint", "valid from", "valid until"):
        table.add_column(column, no_wrap=True)
    for item in items:
        verifier = Verifier.from_vkey(item["vkey"])
        table.add_row(
            verifier.key_id,
            verifier.algorithm,
            verifier.fingerprint,
            verifier.fingerprint_sm3,
            item["valid_from"],
            item["valid_until"] or "(current)",
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=320)  # piped: never wrap a fingerprint
    console.print(table)
    for item in items:
        click.echo(item["vkey"])


@keys.command("fetch")
@click.argument("url")
@click.option(
    "-o",
    "--output",
    "output",
    default="trusted-keys.txt",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The trust file to write (one vkey a line, with its fingerprint as a comment).",
)
def fetch(url: str, output: Path) -> None:
    """Fetch the operator's published keys from URL (the service, or its /v1/keys), show their fingerprints and save
    them as a trust file for 'evidence verify --key FILE'.

    Compare each fingerprint with the one printed on the certificate (and one the operator publishes elsewhere)
    before trusting the file: whoever answers at URL chooses what it sends.
    """
    import json
    import urllib.error
    import urllib.request

    from service.core.note import parse_vkeys
    from service.court.bundle import keys_text

    if not url.startswith(("http://", "https://")):
        raise click.UsageError(f"URL must start with http:// or https://, found {url!r}")
    target = url if url.rstrip("/").endswith("/v1/keys") else url.rstrip("/") + "/v1/keys"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(target, headers={"Accept": "application/json"}), timeout=15
        ) as r:
            body = r.read(1024 * 1024)
        items = json.loads(body)["keys"]
        if not isinstance(items, list) or not items:
            raise ValueError("no keys listed")
        verifiers = [parse_vkeys(item["vkey"])[0] for item in items]
    except urllib.error.HTTPError as exc:
        exc.close()
        raise click.ClickException(
            f"{target} answered {exc.code} {exc.reason}: is this an Evidence Ledger service?"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"cannot fetch {target}: {getattr(exc, 'reason', exc)}") from None
    except (ValueError, KeyError, TypeError, IndexError, FormatError) as exc:
        raise click.ClickException(f"{target} did not answer a key list (GET /v1/keys): {exc}") from None
    for item, verifier in zip(items, verifiers, strict=True):
        until = item.get("valid_until") or "now (current)"
        click.echo(f"{verifier.name}  key {verifier.key_id}")
        click.echo(f"  fingerprint {verifier.fingerprint}")
        click.echo(f"  valid {item.get('valid_from') or '?'} to {until}")
    text = keys_text(items, f"GET {target} on {format_time(utc_now())}")
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output} ({len(items)} key(s))")
    click.echo(
        "Before trusting it, compare each fingerprint above with the one printed on the certificate. Then: "
        f"evidence verify RECEIPT FILE --key {output}",
        err=True,
    )
