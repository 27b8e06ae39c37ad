"""``evidence certificate RECEIPT -o FILE.pdf``: render the certificate of deposit from a receipt file, offline.

Needs no server, database or settings. The receipt's bytes are attached unchanged as ``receipt.json``, so
``evidence verify FILE.pdf ...`` checks exactly what was given. This command does not verify the receipt (it has
no trusted key): the fingerprint printed is the receipt's key hint, labelled as such on the page.
Exit 0 written; 2 for usage errors, a receipt that is not readable JSON or not a receipt object, or paths that
cannot be read or written.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from service.commands.verify import UsageFailure
from service.config import Settings
from service.core.distribution import check_url, install_command, is_loopback_url
from service.core.errors import FormatError, UnreadableReceipt
from service.core.labels import label_problem
from service.core.receipt import FORMATS, load_json

PUBLIC_URL_ENV = "EVIDENCE_PUBLIC_URL"
LOCAL_TZ_ENV = "EVIDENCE_LOCAL_TZ"


def public_base(server_url: str | None) -> str:
    """The service's public URL: --server-url, else $EVIDENCE_PUBLIC_URL, else the (loopback) default."""
    return (server_url or os.environ.get(PUBLIC_URL_ENV) or Settings.public_url).rstrip("/")


def verify_url(server_url: str | None, evidence_id: object = None) -> str:
    """The URL the QR code opens: ``<server>/check?id=<id>`` (public checking), or ``<server>/verify`` when the
    receipt has no readable evidence id."""
    base = public_base(server_url)
    if isinstance(evidence_id, str) and evidence_id:
        return check_url(base, evidence_id)
    return base + "/verify"


def warn_if_loopback(base: str, given: bool, *, what: str) -> None:
    """Say loudly on stderr when what a stranger reads on a certificate would point at this machine only."""
    if given and not is_loopback_url(base):
        return
    reason = f"is {base}, which only this machine can reach" if given else f"is not set (default {base})"
    bar = "!" * 100
    click.echo(
        f"{bar}\nWARNING: the public URL {reason}.\n{what} print its QR code and the verifier install command "
        f"({install_command(base)}) under it, and nobody else can open them.\nSet {PUBLIC_URL_ENV} (or --server-url) "
        f"to the address courts and experts reach this service at, e.g. https://ledger.example.org\n{bar}",
        err=True,
    )


def _evidence_id(document: dict[str, object]) -> object:
    evidence = document.get("evidence")
    return evidence.get("id") if isinstance(evidence, dict) else None


@click.command()
@click.argument("receipt", metavar="RECEIPT")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    metavar="FILE.pdf",
    type=click.Path(dir_okay=False),
    help="Where to write the certificate PDF.",
)
@click.option(
    "--label",
    metavar="L",
    help="A label for the file (printed on the certificate); the API's label rules apply: 1-500 characters, no "
    "control, bidirectional or zero-width characters.",
)
@click.option(
    "--server-url",
    metavar="U",
    help=f"The service's public URL (default ${PUBLIC_URL_ENV}): the QR code opens U/check?id=<id> and the page "
    "tells how to install the verifier from U/download/.",
)
@click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    help="A C2SP tlog-policy file: print each of its witnesses whose cosignature on the checkpoint verifies (name, "
    "fingerprint, cosigning time; SPEC §9).",
)
def certificate(receipt: str, output: str, label: str | None, server_url: str | None, policy_path: str | None) -> None:
    """Render the certificate of deposit (PDF, receipt attached) for the receipt file RECEIPT."""
    if label is not None:
        problem = label_problem(label)
        if problem is not None:
            raise UsageFailure(f"the label {problem}")
    try:
        raw = Path(receipt).read_bytes()
    except OSError as exc:
        raise UsageFailure(f"cannot read the receipt {receipt!r}: {exc.strerror}") from None
    try:
        document = load_json(raw)
    except UnreadableReceipt as exc:
        raise UsageFailure(f"{receipt!r} is not a readable receipt: {exc.reason}") from None
    if not isinstance(document, dict) or document.get("format") not in FORMATS:
        raise UsageFailure(f"{receipt!r} is JSON but not an evidence receipt ({' or '.join(FORMATS)})")

    from service.commands.verify import load_witness_policy
    from service.court.certificate import render_certificate, witness_displays  # lazy: fpdf2, segno load here

    policy = load_witness_policy(policy_path, (), None)

    base = public_base(server_url)
    warn_if_loopback(base, bool(server_url or os.environ.get(PUBLIC_URL_ENV)), what="This certificate would")
    try:
        pdf = render_certificate(
            document,
            public_url=base,
            verify_url=verify_url(server_url, _evidence_id(document)),
            label=label,
            local_tz=os.environ.get(LOCAL_TZ_ENV) or Settings.local_tz,
            receipt_json=raw,
            witnesses=witness_displays(document, policy),
        )
    except FormatError as exc:
        raise UsageFailure(f"cannot render the certificate: {exc.reason}") from None
    try:
        Path(output).write_bytes(pdf)
    except OSError as exc:
        raise UsageFailure(f"cannot write {output!r}: {exc.strerror}") from None
    evidence = document.get("evidence")
    evidence_id = evidence.get("id") if isinstance(evidence, dict) else None
    about = f", the certificate of evidence {evidence_id}" if isinstance(evidence_id, str) else ""
    click.echo(f"wrote {output} ({len(pdf):,} bytes){about}")
    click.echo(
        f"This command does not verify the receipt; check it with: evidence verify {output} FILE --key VKEY", err=True
    )
