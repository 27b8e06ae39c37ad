"""``evidence tiles export DIR [--since N]``: the ledger as C2SP tlog-tiles in a directory (SPEC §10).

The same tree ``/log/`` serves (``checkpoint``, ``tile/<L>/<N>[.p/<W>]``, ``tile/entries/<N>[.p/<W>]``), for any
static web server or object store. Incremental: only the tiles new since ``--since N`` (default: the size of the
checkpoint an earlier export left in DIR); the checkpoint is written last.
"""

from __future__ import annotations

from pathlib import Path

import click

from service.commands.admin import DATA_DIR_HELP, ensure_schema, refuse_new_database, settings_for


@click.group()
def tiles() -> None:
    """The ledger log as C2SP tlog-tiles (SPEC §10)."""


@tiles.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--since", type=click.IntRange(min=0), default=None, metavar="N", help="Write only tiles new since size N."
)
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def export(directory: str, since: int | None, data_dir: str | None) -> None:
    """Write checkpoint and tiles under DIRECTORY (serve it as <public URL>/log/)."""
    from service.storage import db
    from service.tiles import export_tiles

    settings = settings_for(data_dir)
    refuse_new_database(settings, told=data_dir is not None)
    ensure_schema(settings)
    engine = db.make_engine(settings)
    try:
        report = export_tiles(engine, settings, Path(directory), since)
    finally:
        engine.dispose()
    click.echo(
        f"exported the ledger of size {report.size} to {directory}: {len(report.written)} files written "
        f"(tiles new since size {report.since}, then the checkpoint)"
    )
