"""``evidence verify``: offline receipt verification (SPEC §6, §8).

Needs no server, no database and no settings. Exit 0 valid, 1 invalid, 2 usage or unreadable input.
Trusted keys come from ``--key`` (a verifier key string, or a file with one per line) and from the environment
variable ``EVIDENCE_TRUSTED_KEYS`` (the same items separated by spaces, commas or newlines). A receipt's own
``keys`` field is only a hint and never makes it valid.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from service.core.errors import ConfigError, EvidenceError, FormatError, UnreadableReceipt
from service.core.formats import format_time, parse_sha256_hex, utc_now
from service.core.hashing import file_digests
from service.core.note import Verifier, parse_vkeys
from service.core.policy import Policy
from service.core.receipt import load_json
from service.core.verify import STEP_TITLES, VerificationResult, verify_receipt, wanted_digests

TRUSTED_KEYS_ENV = "EVIDENCE_TRUSTED_KEYS"

NO_KEY_HELP = (
    "no trusted key: pass the operator's verifier key with --key VKEY (or a file of keys), or set "
    f"{TRUSTED_KEYS_ENV}. Get the key from the operator's published list (GET <server>/v1/keys) or from a source "
    "you trust, and compare its fingerprint with the one printed on the certificate. The receipt's own 'keys' "
    "field is never trusted."
)


# What a failure at each step means, said plainly (the step titles state what a pass means).
PLAIN_FAULTS: dict[int, str] = {
    0: "this is not a readable evidence receipt",
    1: "this is not the file the receipt was issued for (its digest differs from the one sealed)",
    2: "the receipt has been altered or damaged: its evidence entry does not match what was sealed",
    3: "the receipt has been altered or damaged: its batch proof does not lead to the sealed batch",
    4: "the receipt has been altered or damaged: its ledger entry does not match its batch",
    5: "the receipt has been altered or damaged: its ledger proof does not lead to the signed ledger",
    6: "the ledger state is not signed by a key you trust (wrong key, or a forged or altered signature)",
    7: "a time-stamp token does not verify against the trusted time-stamp authorities",
    8: "the depositor's attestation does not verify",
}


class UsageFailure(click.UsageError):
    """Exit 2 with a message (bad arguments, unreadable paths, unreadable receipt)."""


def load_trusted_keys(values: tuple[str, ...], environ: dict[str, str] | os._Environ[str]) -> list[Verifier]:
    """Collect verifier keys from --key values and the environment; each item is a vkey or a file of vkeys."""
    items = list(values)
    env = environ.get(TRUSTED_KEYS_ENV, "")
    items += [part for part in re.split(r"[\s,]+", env) if part]
    keys: list[Verifier] = []
    for item in items:
        path = Path(item)
        try:
            if "+" not in item or path.is_file():
                try:
                    text = path.read_text(encoding="utf-8")
                except OSError as exc:
                    raise UsageFailure(f"cannot read the key file {item!r}: {exc.strerror}") from None
                except UnicodeDecodeError:
                    raise UsageFailure(f"the key file {item!r} is not UTF-8 text") from None
                found = parse_vkeys(text)
                if not found:
                    raise UsageFailure(f"the key file {item!r} holds no verifier key")
                keys.extend(found)
            else:
                keys.append(Verifier.from_vkey(item))
        except FormatError as exc:
            raise UsageFailure(f"bad verifier key {item!r}: {exc.reason}") from None
    # one entry per distinct key, in the order given
    unique: dict[str, Verifier] = {}
    for k in keys:
        unique.setdefault(k.vkey, k)
    return list(unique.values())


def load_witness_policy(policy_path: str | None, witnesses: tuple[str, ...], quorum: int | None) -> Policy | None:
    """The witness policy of ``--policy FILE`` or ``--witness VKEY… [--quorum N]`` (SPEC §9), or None."""
    from service.core.cosignature import WitnessKey
    from service.core.policy import parse_policy

    if policy_path is not None and (witnesses or quorum is not None):
        raise UsageFailure("give either --policy FILE or --witness VKEY… --quorum N, not both")
    if policy_path is not None:
        try:
            data = Path(policy_path).read_bytes()
        except OSError as exc:
            raise UsageFailure(f"cannot read the policy file {policy_path!r}: {exc.strerror}") from None
        try:
            return parse_policy(data)
        except FormatError as exc:
            raise UsageFailure(f"--policy {policy_path}: {exc.reason}") from None
    if not witnesses:
        if quorum is not None:
            raise UsageFailure("--quorum needs the witnesses' keys: add --witness VKEY (repeatable)")
        return None
    keys: list[WitnessKey] = []
    for item in witnesses:
        try:
            if "+" not in item or Path(item).is_file():
                try:
                    text = Path(item).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise UsageFailure(f"cannot read the witness key file {item!r}: {exc}") from None
                lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
                if not lines:
                    raise UsageFailure(f"the witness key file {item!r} holds no key")
                keys.extend(WitnessKey.from_vkey(line) for line in lines)
            else:
                keys.append(WitnessKey.from_vkey(item))
        except FormatError as exc:
            raise UsageFailure(f"bad witness key {item!r}: {exc.reason}") from None
    unique = list({k.vkey: k for k in keys}.values())
    try:
        return Policy.from_witnesses(unique, len(unique) if quorum is None else quorum)
    except FormatError as exc:
        raise UsageFailure(f"--quorum: {exc.reason}") from None


def load_tsa_roots(paths: tuple[str, ...], option: str = "--tsa-ca") -> list[Any]:
    from service.core.certs import load_certificate_files

    try:
        return load_certificate_files(paths)
    except ConfigError as exc:
        raise UsageFailure(f"{option}: {exc.reason}") from None


RECEIPT_SUFFIXES = (".receipt.json", ".certificate.pdf")


def _file_beside(receipt: str) -> str | None:
    """``x`` for ``x.receipt.json`` or ``x.certificate.pdf`` when that file exists (as ``ots verify`` finds it)."""
    for suffix in RECEIPT_SUFFIXES:
        if receipt.endswith(suffix) and len(receipt) > len(suffix):
            candidate = receipt[: -len(suffix)]
            if Path(candidate).is_file():
                return candidate
    return None


def _is_zip(path: str) -> bool:
    if path == "-":
        return False
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False


def verify_bundle(path: Path, keys: tuple[str, ...], as_json: bool) -> None:
    """``evidence verify case.zip``: the bundle's manifest, then every receipt against its file (exit 0/1/2)."""
    from service.court.bundle import check_bundle

    trusted = load_trusted_keys(keys, os.environ)
    if not trusted:
        raise UsageFailure(
            NO_KEY_HELP + " The bundle carries the operator's keys in keys/operator-keys.txt: compare their "
            "fingerprints with the certificate's, then pass that file (unzipped) with --key."
        )
    try:
        checked = check_bundle(path, trusted)
    except FormatError as exc:
        raise UsageFailure(exc.reason) from None
    if as_json:
        document = {
            "bundle": str(path),
            "valid": checked.valid,
            "integrity_problems": checked.problems,
            "deposits": [o.to_json() for o in checked.outcomes],
            "cases": [c.to_json() for c in checked.cases],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        click.echo(f"Verifying the evidence bundle {path} ({checked.members} members)")
        if checked.problems:
            click.echo("  [FAIL] integrity: the bundle was altered or is incomplete")
            for problem in checked.problems:
                click.echo(f"         {problem}")
        else:
            click.echo("  [PASS] integrity: every member matches MANIFEST-SHA256.txt")
        for o in checked.outcomes:
            against = f"against {o.file}" if o.file else "(no original file in the bundle: its digest alone)"
            if o.valid:
                click.echo(f"  [VALID]   {o.receipt} {against}")
                click.echo(f"            {o.statement or ''}")
            else:
                title = STEP_TITLES.get(o.step or 0, "")
                click.echo(f"  [INVALID] {o.receipt} {against}: step {o.step} ({title}): {o.reason}")
        for c in checked.cases:  # SPEC §6.2
            if c.valid:
                click.echo(
                    f"  [VALID]   case {c.case_id}: phases 1..{c.phases}, each once, in strictly increasing received "
                    "time (SPEC §6.2)"
                )
            else:
                click.echo(f"  [INVALID] case {c.case_id} (SPEC §6.2): {c.reason}")
        click.echo("")
        click.echo(
            "VALID: the bundle is intact and every receipt verifies"
            + (" and every case is complete and in order." if checked.cases else ".")
            if checked.valid
            else "INVALID: see above."
        )
        click.echo("Trusted keys: " + ", ".join(f"{k.name} (fingerprint {k.fingerprint})" for k in trusted))
    if not checked.valid:
        raise click.exceptions.Exit(1)


def read_receipt(path: str) -> tuple[Any, bytes]:
    """Return (parsed JSON document, receipt bytes); a certificate PDF yields its attached receipt."""
    document, raw, _from_pdf = read_receipt_source(path)
    return document, raw


def read_receipt_source(path: str) -> tuple[Any, bytes, bool]:
    """Like ``read_receipt``, and whether the receipt came out of a certificate PDF."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UsageFailure(f"cannot read the receipt {path!r}: {exc.strerror}") from None
    from_pdf = raw.startswith(b"%PDF-")
    if from_pdf:
        from service.court.certificate import extract_receipt

        try:
            raw = extract_receipt(raw)
        except EvidenceError as exc:
            raise UsageFailure(f"{path!r} is a PDF without a readable attached receipt: {exc.reason}") from None
    try:
        document = load_json(raw)
    except UnreadableReceipt as exc:
        raise UsageFailure(f"{path!r} is not a readable receipt: {exc.reason}") from None
    _refuse_server_answers(path, document)
    return document, raw, from_pdf


def _refuse_server_answers(path: str, document: Any) -> None:
    """A saved 202 status or an error document is not a receipt: say so, and what to do, instead of "step 0"."""
    if not isinstance(document, dict) or "format" in document:
        return
    status = document.get("status")
    if status in ("pending", "sealed") and "id" in document:
        raise UsageFailure(
            f"{path!r} is a status answer ({status}), not a receipt: the evidence {document['id']} was not sealed "
            "yet when it was saved. Fetch it again: GET /v1/evidence/<id>/receipt answers 200 with the receipt once "
            "sealed (about a second), or run 'evidence receipts fetch'"
        )
    if isinstance(status, int) and "title" in document:
        detail = document.get("detail") or document.get("title")
        raise UsageFailure(
            f"{path!r} is an error answer of the server ({status}: {detail}), not a receipt: fetch it again "
            "(with a valid API key, from the server that issued it)"
        )


def render_text(result: VerificationResult, receipt_path: str, file_path: str | None) -> str:
    lines = [f"Verifying receipt {receipt_path}" + (f" against file {file_path}" if file_path else "")]
    seen_steps = set()
    for check in result.checks:
        mark = "PASS" if check.ok and check.checked else ("FAIL" if not check.ok else "----")
        title = STEP_TITLES.get(check.step, "")
        prefix = f"  [{mark}] step {check.step}"
        if check.step not in seen_steps:
            lines.append(f"{prefix}: {title}")
            seen_steps.add(check.step)
        lines.append(f"         {check.detail}")
    if result.valid:
        lines.append("")
        lines.append("VALID. " + (result.statement or ""))
        lines.append(
            "What this proves: the digest above was committed to the operator's signed, append-only "
            "ledger no later than the time stated; any change to the file changes its SHA-256."
        )
        if result.depositor is not None:
            lines.append(f"Deposited by: {result.depositor.describe()}, signed {format_time(result.depositor.signed)}.")
        lines.append(
            "What it does not prove: who made the file, how, whether its content is true, or its legal effect."
        )
        if result.key is not None:
            lines.append(f"Trusted key used: {result.key.vkey}")
            lines.append(f"Its fingerprint: {result.key.fingerprint}")
    else:
        lines.append("")
        lines.append(f"INVALID: {PLAIN_FAULTS.get(result.step or 0, 'the receipt does not verify')}.")
        lines.append(f"INVALID at step {result.step} ({STEP_TITLES.get(result.step or 0, '')}): {result.reason}")
        lines.append("The later steps were not checked.")
    if result.witnesses is not None:
        lines.append("")
        lines.append(f"Witnesses (quorum: {result.quorum}):")
        for w in result.witnesses:
            mark = "VALID  " if w.valid else ("INVALID" if w.present else "absent ")
            lines.append(f"  [{mark}] {w.name}: {w.detail}")
            lines.append(f"            fingerprint {w.fingerprint}")
    return "\n".join(lines)


@click.command()
@click.argument("receipt", metavar="RECEIPT")
@click.argument("file", required=False, metavar="[FILE]")
@click.option("--sha256", "sha256_hex", metavar="HEX", help="The file's SHA-256 (instead of FILE).")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="VKEY",
    help=f"A trusted verifier key string, or a file with one per line (repeatable; also ${TRUSTED_KEYS_ENV}).",
)
@click.option(
    "--tsa-ca",
    "tsa_cas",
    multiple=True,
    metavar="PEM",
    help="A trusted Time-Stamp Authority certificate (PEM or DER; repeatable).",
)
@click.option(
    "--policy",
    "policy_path",
    metavar="FILE",
    help="A C2SP tlog-policy file: witnesses, groups and the quorum of cosignatures required; its 'log' lines "
    "are trusted log keys too (SPEC §9).",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="VKEY",
    help="A trusted witness key (cosignature/v1, type 0x04), or a file with one per line (repeatable).",
)
@click.option(
    "--quorum",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="How many of the --witness keys must have cosigned the checkpoint (default: all of them).",
)
@click.option(
    "--depositor-ca",
    "depositor_cas",
    multiple=True,
    metavar="PEM",
    help="A CA certificate trusted for X.509 depositor attestations of v2 receipts (PEM or DER; repeatable). "
    "Without it, a certificate path is reported as not checked.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (SPEC §8 shape).")
@click.option(
    "--report",
    "report_path",
    metavar="FILE.pdf",
    type=click.Path(dir_okay=False),
    help="Also write a bilingual verification report (PDF) a person can file.",
)
def verify(
    receipt: str,
    file: str | None,
    sha256_hex: str | None,
    keys: tuple[str, ...],
    tsa_cas: tuple[str, ...],
    policy_path: str | None,
    witnesses: tuple[str, ...],
    quorum: int | None,
    depositor_cas: tuple[str, ...],
    as_json: bool,
    report_path: str | None,
) -> None:
    """Verify RECEIPT (a receipt JSON or a certificate PDF) offline, optionally against FILE.

    Without FILE or --sha256, the file beside RECEIPT is used: 'contract.pdf' for 'contract.pdf.receipt.json' or
    'contract.pdf.certificate.pdf'.

    RECEIPT may also be an evidence bundle (case.zip, from 'evidence bundle' or GET .../bundle.zip): its manifest is
    checked, then every receipt in it against its file.

    With --policy FILE or --witness VKEY… --quorum N, step 6 also requires that quorum of valid witness
    cosignatures on the checkpoint (an invalid one by a listed witness fails it); the statement then says who
    cosigned and when.

    Exit status: 0 valid, 1 invalid, 2 usage error or unreadable input.
    """
    if file is None and sha256_hex is None and _is_zip(receipt):
        verify_bundle(Path(receipt), keys, as_json)  # an evidence bundle: every receipt against its file
        return
    if file is not None and sha256_hex is not None:
        raise UsageFailure("give either FILE or --sha256, not both")
    if file is None and sha256_hex is None:
        file = _file_beside(receipt)
        if file is not None:
            click.echo(f"Using the file beside the receipt: {file}", err=True)
    digest: bytes | None = None
    if sha256_hex is not None:
        try:
            digest = parse_sha256_hex(sha256_hex.strip().lower())
        except FormatError as exc:
            raise UsageFailure(f"--sha256: {exc.reason}") from None
    trusted = load_trusted_keys(keys, os.environ)
    policy = load_witness_policy(policy_path, witnesses, quorum)
    if not trusted and not (policy is not None and policy.logs):
        raise UsageFailure(NO_KEY_HELP)
    roots = load_tsa_roots(tsa_cas)
    depositor_roots = load_tsa_roots(depositor_cas, "--depositor-ca")
    document, _raw, from_pdf = read_receipt_source(receipt)
    further: dict[str, bytes] | None = None
    if file is not None:
        # One pass over the file: SHA-256, and SM3 too when the (v2) receipt carries an SM3 digest (step 1).
        want_sm3 = "sm3" in wanted_digests(document)
        try:
            digests = file_digests(file, sm3=want_sm3)
        except OSError as exc:
            raise UsageFailure(f"cannot read the file {file!r}: {exc.strerror}") from None
        digest = digests.sha256
        further = {} if digests.sm3 is None else {"sm3": digests.sm3}

    result = verify_receipt(
        document,
        sha256=digest,
        trusted_keys=trusted,
        tsa_roots=roots,
        policy=policy,
        depositor_cas=depositor_roots,
        file_digests=further,
    )

    if report_path is not None:
        from service.court.report import ReportInputs, TrustedKey, render_report

        inputs = ReportInputs(
            receipt_name=receipt,
            receipt_source="certificate" if from_pdf else "receipt",
            verified_at=utc_now(),
            tool_version=_tool_version(),
            file_name=file,
            sha256=digest.hex() if digest is not None else None,
            # every key step 6 accepted: --key, the environment, and the policy's log lines
            trusted_keys=tuple(
                TrustedKey(k.vkey, k.fingerprint)
                for k in [*trusted, *(k for k in (policy.log_keys if policy else []) if k not in trusted)]
            ),
            tsa_certificates=tuple(r.subject.rfc4514_string() for r in roots),
            witness_policy=_describe_policy(policy_path, policy),
        )
        pdf = render_report(
            result,
            receipt=document if isinstance(document, dict) else {},
            inputs=inputs,
            local_tz=os.environ.get("EVIDENCE_LOCAL_TZ", "Asia/Shanghai"),
        )
        try:
            Path(report_path).write_bytes(pdf)
        except OSError as exc:
            raise UsageFailure(f"cannot write the report {report_path!r}: {exc.strerror}") from None

    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(result, receipt, file))
    if not result.valid:
        raise click.exceptions.Exit(1)


def _describe_policy(policy_path: str | None, policy: Policy | None) -> str | None:
    """The witness policy given, in words, for the report (None: no policy was given)."""
    if policy is None:
        return None
    names = ", ".join(w.name for w in policy.witnesses) or "—"
    source = f"--policy {policy_path}" if policy_path is not None else "--witness/--quorum"
    return f"{source}: quorum {policy.describe_quorum()}; witnesses {names}"


def _tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"evidence-ledger {version('evidence-ledger')}"
    except PackageNotFoundError:
        return "evidence-ledger (source tree)"
