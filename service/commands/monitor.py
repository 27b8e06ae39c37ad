"""Commands for people outside the operator: ``evidence monitor`` and ``evidence tlog-proof``.

``evidence monitor URL --state FILE [--key VKEY]... [--once] [--interval S]`` follows a running service through
its public endpoints only (``service.trust.monitor``). Exit 1 on any inconsistency, with a message saying what the log
did; with ``--once``, exit 0 when the log is consistent with everything seen before, 2 when the server cannot be
reached. With ``--tiles`` URL is a C2SP tlog-tiles prefix (``<server>/log``, a static mirror, or a directory that
``evidence tiles export`` wrote) and the checkpoint and entries are read from tiles (keys must be pinned with
``--key``). Without ``--once`` it keeps watching (an unreachable server is reported and retried) until it finds an
inconsistency or is interrupted.

``evidence tlog-proof RECEIPT [-o FILE]`` writes the ledger part of a receipt as a C2SP tlog-proof
(``service.trust.tlog_proof``). Neither command needs a database or settings.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from service.commands.verify import load_trusted_keys


def _say(message: str) -> None:
    click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}")


@click.command()
@click.argument("url")
@click.option(
    "--state",
    "state_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON file where the last verified checkpoint is kept (written atomically).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="VKEY",
    help="Pin a verifier key (or a file of keys); default: trust /v1/keys on first use.",
)
@click.option(
    "--tiles",
    is_flag=True,
    help="URL is a C2SP tlog-tiles prefix (<server>/log, a static mirror, or a directory): read the checkpoint and "
    "entry bundles from tiles (needs --key).",
)
@click.option("--once", is_flag=True, help="Check once and exit (0 consistent, 1 inconsistent, 2 unreachable).")
@click.option(
    "--interval", default=60.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds between two checks."
)
def monitor(url: str, state_path: Path, keys: tuple[str, ...], tiles: bool, once: bool, interval: float) -> None:
    """Watch the ledger at URL from outside; exit 1 as soon as it contradicts what was seen before."""
    from service.core.errors import FormatError, LogInconsistency
    from service.trust.monitor import MonitorState, MonitorUnavailable, check_once
    from service.trust.tile_reader import TileReader

    pinned = load_trusted_keys(keys, {})
    if tiles and not pinned:
        raise click.UsageError("--tiles needs the ledger's key: pass --key VKEY (a tile tree publishes no key list)")
    reader = TileReader(url) if tiles else None
    url = url.rstrip("/")
    try:
        state = MonitorState.load(state_path, url)
    except FormatError as exc:
        raise click.UsageError(exc.reason) from None
    if state.size or state.keys:
        _say(f"following {url} from size {state.size} ({state.key_source or 'keys pinned'})")
    while True:
        try:
            state = check_once(url, state, pinned=pinned, say=_say, tiles=reader)
        except LogInconsistency as exc:
            click.echo(f"INCONSISTENT: {url}: {exc.reason}", err=True)
            raise click.exceptions.Exit(1) from None
        except MonitorUnavailable as exc:
            click.echo(f"unavailable: {exc.reason}", err=True)
            if once:
                raise click.exceptions.Exit(2) from None
        else:
            state.save(state_path)
            if once:
                _say(f"OK: {url} is consistent at size {state.size} (keys: {state.key_source})")
                return
        sys.stdout.flush()
        time.sleep(interval)


@click.command("tlog-proof")
@click.argument("receipt", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="Where to write the proof (default stdout); use the extension .tlog-proof.",
)
def tlog_proof_command(receipt: str, output: str) -> None:
    """Write the ledger part of RECEIPT as a C2SP tlog-proof (c2sp.org/tlog-proof@v1)."""
    from service.core.errors import FormatError, UnreadableReceipt
    from service.core.receipt import load_json
    from service.trust.tlog_proof import from_receipt

    try:
        raw = sys.stdin.buffer.read() if receipt == "-" else Path(receipt).read_bytes()
    except OSError as exc:
        raise click.UsageError(f"cannot read {receipt}: {exc.strerror}") from None
    try:
        document = load_json(raw)
        proof = from_receipt(document)
    except (UnreadableReceipt, FormatError) as exc:
        click.echo(f"not a usable receipt: {exc.reason}", err=True)
        raise click.exceptions.Exit(1) from None
    data = proof.to_bytes()
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(output).write_bytes(data)
