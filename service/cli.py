"""The ``evidence`` command line (SPEC §8): the group, lazy command loading and the one top-level error handler.

Owns: which commands exist and how errors become exit codes (0 ok, 1 invalid/inconsistent, 2 usage/unreadable).
Must not import: Flask, SQLAlchemy or Celery at module level: ``evidence verify`` and ``--help`` stay light, so
each command lives in ``service.commands.*`` and is imported only when it is invoked.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import click

from service.core.errors import EvidenceError

# name -> "module:attribute"; registered explicitly (no auto-discovery), loaded lazily.
COMMANDS: dict[str, str] = {
    "verify": "service.commands.verify:verify",
    "serve": "service.commands.serve:serve",
    "tenant": "service.commands.tenants:tenant",  # admin's group + list, revoke, key add/revoke
    "db": "service.commands.admin:db_group",
    "submit": "service.commands.client:submit",
    "receipts": "service.commands.client:receipts",
    "keys": "service.commands.keys:keys",
    "audit": "service.commands.audit:audit",
    "monitor": "service.commands.monitor:monitor",
    "tlog-proof": "service.commands.monitor:tlog_proof_command",
    "certificate": "service.commands.certificate:certificate",
    "bundle": "service.commands.bundle:bundle",
    "witness": "service.commands.witness:witness",
    "tiles": "service.commands.tiles:tiles",
    "mirror": "service.commands.mirror:mirror",
}


# Top-level modules of the "server" extra: the base install (the offline verifier a court expert installs from
# GET /download/) has none of them, and a command that needs one says how to get it instead of a traceback.
SERVER_MODULES = frozenset(
    {
        "flask",
        "sqlalchemy",
        "alembic",
        "psycopg2",
        "gunicorn",
        "celery",
        "kombu",
        "redis",
        "rich",
        "prometheus_client",
        "pythonjsonlogger",
        "requests",
        "werkzeug",
    }
)


def needs_server_extra(exc: ModuleNotFoundError) -> bool:
    return (exc.name or "").split(".")[0] in SERVER_MODULES


def server_extra_message(command: str, exc: ModuleNotFoundError) -> str:
    return (
        f"'evidence {command}' needs the service's dependencies ({exc.name} is not installed): this installation "
        "is the offline verifier only. Install the service with: pip install 'evidence-ledger[server]'"
    )


def _unavailable(name: str, exc: ModuleNotFoundError) -> click.Command:
    """A stand-in for a command whose module cannot be imported here: listed in --help, refuses to run."""
    message = server_extra_message(name, exc)

    def run(args: tuple[str, ...]) -> None:
        raise click.UsageError(message)

    return click.Command(
        name,
        callback=run,
        params=[click.Argument(["args"], nargs=-1)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=message,
        short_help="(needs evidence-ledger[server])",
        add_help_option=False,
    )


def _format_commands(group: click.Group, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """A group's commands with their whole first sentence (click's default cuts it to the terminal width with
    "..."); long sentences wrap in the second column instead."""
    rows = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None and not command.hidden:
            rows.append((name, command.get_short_help_str(limit=1_000)))
    if rows:
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _full_help(command: click.Command) -> click.Command:
    """``command`` and every group under it list their commands with whole sentences."""
    if isinstance(command, click.Group) and not isinstance(command, LazyGroup):
        command.format_commands = types.MethodType(_format_commands, command)  # type: ignore[method-assign]
        for sub in command.commands.values():
            _full_help(sub)
    return command


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented lazy-loading pattern)."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_commands(self, ctx, formatter)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if not needs_server_extra(exc):
                    raise
                return _unavailable(cmd_name, exc)
            command = getattr(module, attr)
            assert isinstance(command, click.Command)
            return _full_help(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evidence-ledger", prog_name="evidence")
def cli() -> None:
    """Evidence Ledger: deposit file digests, seal them in a signed append-only ledger, verify receipts offline."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``evidence`` console script: catches our errors once, here."""
    try:
        # standalone_mode=False: click returns the code of a `ctx.exit(n)` / `Exit(n)` instead of exiting
        rc = cli.main(args=argv, prog_name="evidence", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EvidenceError as exc:
        click.echo(f"error: {exc.reason}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        if not needs_server_extra(exc):
            raise
        command = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), "")
        click.echo(f"error: {server_extra_message(command, exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
