"""``evidence mirror URL DIR``: keep a complete, verified copy of a ledger's C2SP tiles (SPEC §10).

URL is the ledger's tiles prefix (``<server>/log``, or another mirror). Every round verifies the newest checkpoint
(pinned ``--key`` keys, and the witness quorum of ``--policy`` when given) and its consistency with the copy, then
copies the new tiles; DIR can be served by any static web server as ``<mirror URL>/log/``. Exit 1 on any
inconsistency (the copy keeps its last verified checkpoint), 2 when the source cannot be read with ``--once``.
Needs no database or settings.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from service.commands.monitor import _say
from service.commands.verify import load_trusted_keys, load_witness_policy


@click.command()
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--key", "keys", multiple=True, metavar="VKEY", help="The ledger's verifier key (or a file of keys); required."
)
@click.option(
    "--policy", "policy_path", metavar="FILE", help="Also require the witness quorum of this tlog-policy file."
)
@click.option("--once", is_flag=True, help="Copy once and exit (0 verified, 1 inconsistent, 2 unreachable).")
@click.option(
    "--interval", default=60.0, show_default=True, type=click.FloatRange(min=0.1), help="Seconds between two rounds."
)
def mirror(
    url: str, directory: Path, keys: tuple[str, ...], policy_path: str | None, once: bool, interval: float
) -> None:
    """Follow the ledger whose tiles are at URL and keep a verified copy in DIRECTORY."""
    from service.core.errors import FormatError, LogInconsistency
    from service.trust.mirror import mirror_once
    from service.trust.monitor import MonitorUnavailable

    pinned = load_trusted_keys(keys, {})
    policy = load_witness_policy(policy_path, (), None)
    if policy is not None:
        pinned = [*pinned, *(k for k in policy.log_keys if k not in pinned)]
    if not pinned:
        raise click.UsageError("pass the ledger's key with --key VKEY (or a --policy file with 'log' lines)")
    while True:
        try:
            report = mirror_once(url, directory, pinned=pinned, policy=policy, say=_say)
        except LogInconsistency as exc:
            click.echo(f"INCONSISTENT: {url}: {exc.reason}", err=True)
            raise click.exceptions.Exit(1) from None
        except FormatError as exc:
            raise click.UsageError(exc.reason) from None
        except MonitorUnavailable as exc:
            click.echo(f"unavailable: {exc.reason}", err=True)
            if once:
                raise click.exceptions.Exit(2) from None
        else:
            _say(f"OK: {directory} holds the verified ledger of size {report.size} ({report.written} tiles copied)")
            if once:
                return
        sys.stdout.flush()
        time.sleep(interval)
