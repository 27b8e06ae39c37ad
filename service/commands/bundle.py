"""``evidence bundle RECEIPT [FILE…] -o case.zip`` and ``evidence verify case.zip``: the evidence bundle (证据包).

``bundle`` takes receipts (receipt JSON or certificate PDFs) and original files in any order, matches each file to
its receipt by SHA-256, and writes one zip (``service.court.bundle``): several deposits (a contract, its annexes,
the signed version) go into one bundle. With ``--key`` every receipt is verified against its file first and an
invalid one is refused; the keys go into the bundle with their fingerprints and into its verify page. The verifier
wheels come from the download directory (``scripts/build-download``) when there is one. Needs no server and no
database: it works with only the verifier installed.

``evidence verify case.zip`` (``service.commands.verify``) checks the manifest, then every receipt against its file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from service.commands.verify import TRUSTED_KEYS_ENV, UsageFailure, load_trusted_keys
from service.core.errors import EvidenceError, FontMissing, UnreadableReceipt
from service.core.formats import utc_now
from service.core.hashing import sha256_file
from service.core.receipt import load_json
from service.core.verify import verify_receipt
from service.court.bundle import CaseDescription, Deposit, write_bundle

PUBLIC_URL_ENV = "EVIDENCE_PUBLIC_URL"


@dataclass
class _Receipt:
    path: Path
    raw: bytes
    document: dict[str, Any]
    certificate: bytes | None
    file: Path | None = None

    @property
    def evidence_id(self) -> str:
        return str(self.document.get("evidence", {}).get("id", ""))

    @property
    def sha256(self) -> str:
        return str(self.document.get("evidence", {}).get("sha256", ""))


def _classify(path: Path) -> _Receipt | None:
    """A receipt (JSON, or a certificate PDF carrying one) or None for an original file."""
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"%PDF-"):
        from service.court.certificate import extract_receipt

        pdf = path.read_bytes()
        try:
            raw = extract_receipt(pdf)
            document = load_json(raw)
        except EvidenceError:
            return None  # a PDF without a receipt attached: an original file
        return _Receipt(path, raw, document, pdf) if _is_receipt(document) else None
    if head.lstrip()[:1] == b"{" and path.stat().st_size < 16 * 1024 * 1024:
        raw = path.read_bytes()
        try:
            document = load_json(raw)
        except UnreadableReceipt:
            return None
        return _Receipt(path, raw, document, None) if _is_receipt(document) else None
    return None


def _is_receipt(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and str(document.get("format", "")).startswith("evidence-receipt/")
        and isinstance(document.get("evidence"), dict)
    )


def _render_certificate(receipt: _Receipt, server_url: str | None) -> bytes | None:
    from service.commands.certificate import public_base, verify_url
    from service.court.certificate import render_certificate

    base = public_base(server_url)
    try:
        return render_certificate(
            receipt.document,
            verify_url=verify_url(server_url, receipt.evidence_id),
            local_tz=os.environ.get("EVIDENCE_LOCAL_TZ") or "Asia/Shanghai",
            receipt_json=receipt.raw,
            public_url=base,
        )
    except FontMissing as exc:
        click.echo(f"warning: no certificate PDF for {receipt.path}: {exc.reason}", err=True)
        return None


def _wheels(directory: Path) -> list[Path]:
    try:
        wheels = sorted(p for p in directory.iterdir() if p.name.endswith(".whl") and p.is_file())
    except OSError:
        return []
    return wheels if any(p.name.startswith("evidence_ledger-") for p in wheels) else []


@click.command("bundle")
@click.argument("items", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    metavar="case.zip",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the bundle (zip).",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="VKEY",
    help=f"The operator's verifier key, or a file of them (repeatable; also ${TRUSTED_KEYS_ENV}): every receipt is "
    "verified first, and the keys go into the bundle with their fingerprints.",
)
@click.option(
    "--server-url",
    metavar="U",
    help=f"The service's public URL (default ${PUBLIC_URL_ENV}), for certificates made from receipt JSON.",
)
@click.option(
    "--wheels",
    "wheels_dir",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the verifier wheels are (default $EVIDENCE_DOWNLOAD_DIR or build/download of this installation).",
)
def bundle(
    items: tuple[Path, ...], output: Path, keys: tuple[str, ...], server_url: str | None, wheels_dir: Path | None
) -> None:
    """Write the evidence bundle (证据包) of the receipts and files ITEMS (any order, several deposits) to one zip.

    ITEMS are receipts (.receipt.json or certificate PDFs) and original files; each file is matched to its receipt
    by SHA-256. When the receipts are phases of one case, bundle.json describes the case (phases in order).
    The zip holds the receipts, certificates, files, the one-file verify page, the keys, the verifier
    wheels, MANIFEST-SHA256.txt and a bilingual README. Check it with: evidence verify case.zip --key VKEY
    """
    receipts: dict[str, _Receipt] = {}
    files: list[Path] = []
    for path in items:
        try:
            found = _classify(path)
        except OSError as exc:
            raise UsageFailure(f"cannot read {str(path)!r}: {exc.strerror}") from None
        if found is None:
            files.append(path)
        elif found.evidence_id in receipts:
            if receipts[found.evidence_id].certificate is None and found.certificate is not None:
                receipts[found.evidence_id].certificate = found.certificate
        else:
            receipts[found.evidence_id] = found
    if not receipts:
        raise UsageFailure("no receipt among the items: give at least one .receipt.json or certificate PDF")
    by_digest: dict[str, list[_Receipt]] = {}
    for r in receipts.values():
        by_digest.setdefault(r.sha256, []).append(r)
    for path in files:
        digest = sha256_file(path).hex()
        matches = by_digest.get(digest)
        if not matches:
            raise UsageFailure(
                f"{str(path)!r} matches none of the receipts given (its SHA-256 is {digest}): this is not the file "
                "any of them was issued for"
            )
        for r in matches:
            r.file = r.file or path

    trusted = load_trusted_keys(keys, os.environ)
    if trusted:
        failed = []
        for r in receipts.values():
            result = verify_receipt(
                r.document, sha256=bytes.fromhex(r.sha256) if r.file else None, trusted_keys=trusted
            )
            if not result.valid:
                failed.append(f"{r.path}: INVALID at step {result.step}: {result.reason}")
        if failed:
            raise click.ClickException("refusing to bundle receipts that do not verify:\n  " + "\n  ".join(failed))
    from service.config import DEFAULT_DOWNLOAD_DIR
    from service.court.webpage import verify_page

    key_items = [{"vkey": k.vkey, "origin": k.name, "valid_from": None, "valid_until": None} for k in trusted]
    deposits = []
    for r in receipts.values():
        label = r.document.get("evidence", {}).get("label")
        certificate = r.certificate if r.certificate is not None else _render_certificate(r, server_url)
        deposits.append(
            Deposit(r.evidence_id, r.sha256, label if isinstance(label, str) else None, r.raw, certificate, r.file)
        )
    directory = wheels_dir or Path(os.environ.get("EVIDENCE_DOWNLOAD_DIR") or DEFAULT_DOWNLOAD_DIR)
    wheels = _wheels(directory)
    if not wheels:
        click.echo(
            f"warning: no verifier wheels in {directory}; the bundle's README points to the operator's /download/",
            err=True,
        )
    public = server_url or os.environ.get(PUBLIC_URL_ENV) or None
    output = output.absolute()
    try:
        with tempfile.NamedTemporaryFile("wb", dir=output.parent, prefix=".bundle-", delete=False) as tmp:
            members = write_bundle(
                tmp,
                deposits,
                verify_page=verify_page(key_items, public or ""),
                keys=key_items,
                keys_source="given to evidence bundle with --key" if key_items else "none given",
                wheels=wheels,
                public_url=public,
                created=utc_now(),
                case=CaseDescription.from_receipts([r.document for r in receipts.values()]),
            )
        os.replace(tmp.name, output)
    except OSError as exc:
        Path(tmp.name).unlink(missing_ok=True)
        raise UsageFailure(f"cannot write {str(output)!r}: {exc.strerror}") from None
    with_files = sum(1 for d in deposits if d.file is not None)
    click.echo(
        f"wrote {output}: {len(deposits)} deposit(s), {with_files} with the original file, {len(members)} members"
    )
    for d in deposits:
        click.echo(f"  {d.evidence_id}  {d.file.name if d.file else '(no file)'}  SHA-256 {d.sha256}")
    if not trusted:
        click.echo(
            "note: no --key given: the receipts were not verified and the bundle carries no operator key", err=True
        )
    click.echo(f"check it with: evidence verify {output.name} --key VKEY", err=True)
