"""``evidence audit``: re-verify the whole ledger from the database and name the first inconsistency (SPEC §8).

Works on the database ``evidence serve`` uses (the data dir's embedded database, or ``DATABASE_URL``), read-only.
A progress bar is drawn on a terminal (stderr), never when piped; a summary table follows on stdout.
Exit 0: everything is consistent. Exit 1: the first bad row is named (table, key, what is wrong), then the
others found (up to 20). Exit 2: usage, configuration, or an unreachable database.

``--checkpoint FILE`` / ``--checkpoint-url URL`` add an outside reference (``service.trust.reference``): the
database's ledger must be at least as long and have the same root at that size. The report always states what
the audit cannot see (``reference.BLIND_SPOTS``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from service.commands.admin import DATA_DIR_HELP, settings_for

SHOWN_FINDINGS = 20


class _Bar:
    """``service.trust.audit.Progress`` drawn with rich on stderr."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("auditing evidence rows"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("audit", total=None)

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def start(self, total_rows: int) -> None:
        self._progress.update(self._task, total=total_rows)

    def advance(self, rows: int) -> None:
        self._progress.advance(self._task, rows)


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option(
    "--tsa-ca",
    "tsa_ca",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Trusted TSA root certificate (PEM/DER), in addition to EVIDENCE_TSA_CA_FILES. Repeatable.",
)
@click.option(
    "--token-grace",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds an entry may wait for its RFC 3161 token from each configured TSA before it counts as missing.",
)
@click.option(
    "--jobs",
    default=min(os.cpu_count() or 1, 4),
    show_default="CPUs, at most 4",
    type=click.IntRange(min=1),
    help="Processes checking the evidence leaves of ranges of batches (1: all in this process). The "
    "findings and their order do not depend on it.",
)
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="An outside reference: a signed checkpoint (as GET /v1/checkpoint answers) or an 'evidence monitor' "
    "state file kept away from this database. The audit fails if the database's ledger is shorter than it or "
    "has another root at its size (removed or rewritten entries). Repeatable.",
)
@click.option(
    "--checkpoint-url",
    "checkpoint_urls",
    multiple=True,
    metavar="URL",
    help="Like --checkpoint, fetched from URL (a witness's or a mirror's copy, or the server's /v1/checkpoint "
    "seen from outside). Repeatable.",
)
def audit(
    data_dir: str | None,
    tsa_ca: tuple[str, ...],
    token_grace: float,
    jobs: int,
    checkpoint_files: tuple[str, ...],
    checkpoint_urls: tuple[str, ...],
) -> None:
    """Re-verify the whole ledger from the database; exit 1 naming the first inconsistency. With --checkpoint or
    --checkpoint-url, also check it against a checkpoint kept outside the database."""
    from sqlalchemy.exc import DBAPIError

    from service.core.errors import ConfigError, FormatError
    from service.storage import db
    from service.timestamping import load_tsa_roots
    from service.trust.audit import AuditReport, audit_ledger
    from service.trust.reference import BLIND_SPOTS, check_reference, fetch_reference, load_reference

    try:  # read the references first: a bad one is a usage error, before minutes of auditing
        references = [load_reference(Path(p)) for p in checkpoint_files]
        references += [fetch_reference(u) for u in checkpoint_urls]
    except FormatError as exc:
        raise ConfigError(exc.reason) from None

    settings = settings_for(data_dir)
    if settings.database_url.startswith("sqlite"):
        path = settings.database_url.split("///", 1)[-1]
        if not Path(path).is_file():
            raise ConfigError(f"no ledger database at {path}: pass --data-dir or set DATABASE_URL")
    roots = load_tsa_roots([*settings.tsa_ca_files, *(Path(p) for p in tsa_ca)])
    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out = Console(highlight=False, soft_wrap=True, width=160)  # piped: one row per line
    err = Console(stderr=True, highlight=False)
    engine = db.make_engine(settings)
    try:
        names = [t.name for t in settings.tsa]
        if err.is_terminal:
            with _Bar(err) as bar:
                report: AuditReport = audit_ledger(
                    engine, tsa_names=names, tsa_roots=roots, token_grace=token_grace, progress=bar, jobs=jobs
                )
        else:
            report = audit_ledger(engine, tsa_names=names, tsa_roots=roots, token_grace=token_grace, jobs=jobs)
        for reference in references:
            check_reference(engine, report, reference)
    except DBAPIError as exc:
        raise ConfigError(f"cannot read the ledger database: {exc.orig}") from None
    finally:
        engine.dispose()

    table = Table(title=f"Ledger audit: {report.ledger_size} entries in {report.seconds:.2f} s")
    table.add_column("check")
    table.add_column("items", justify="right")
    for check, n in report.checked.items():
        table.add_row(check, str(n))
    for check, n in report.unchecked.items():
        table.add_row(f"not checked: {check}", str(n))
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}")
    for blind in BLIND_SPOTS[: 1 if references else 2]:
        out.print(f"not visible to this audit: {blind}")
    if report.ok:
        out.print(f"OK: the ledger is consistent ({report.ledger_size} entries).")
        return
    first = report.first
    assert first is not None
    click.echo(f"INCONSISTENT: first bad row: {first}", err=True)
    others = report.findings[1:SHOWN_FINDINGS]
    for finding in others:
        click.echo(f"  also: {finding}", err=True)
    hidden = report.finding_count - 1 - len(others)
    if hidden > 0:
        click.echo(f"  ... and {hidden} more", err=True)
    sys.stderr.flush()
    raise click.exceptions.Exit(1)
