"""The evidence bundle (证据包): one zip a court can keep on disc and check offline, years later.

Owns: the bundle's layout and its two halves: ``write_bundle`` (used by ``GET /v1/evidence/{id}/bundle.zip`` and
``evidence bundle``) and ``read_bundle`` (used by ``evidence verify case.zip``). Layout:

    README.txt                    bilingual: what is inside and how to verify it with each tool, offline
    bundle.json                   index: evidence-bundle/v1, one entry per deposit (receipt, certificate, file),
                                  and "case" (id, title, reference, phases in order) when the deposits are a case
    case/<id>.certificate.pdf     the case certificate, in a bundle of a case made by the server
    receipts/<id>.receipt.json    each receipt, byte for byte as issued
    certificates/<id>.certificate.pdf   each certificate of deposit (the receipt is attached inside it too)
    files/<name>                  the original files, when given
    evidence-ledger-verify.html   the one-file verify page (the operator keys embedded, when known)
    keys/operator-keys.txt        the operator's verifier keys with their fingerprints (one vkey a line, # comments)
    keys/keys.json                the same as GET /v1/keys answers
    keys/witness-policy.txt       the witness policy (C2SP tlog-policy: witness keys, quorum), when the operator has one
    verifier/*.whl                the offline verifier and the wheels it needs (pip install --no-index --find-links)
    MANIFEST-SHA256.txt           "<sha256>  <member>" for every other member (``sha256sum -c`` format)

Originals are streamed into the zip (ZIP64), never held in memory. No Flask, no database: the command line builds
bundles on a machine with only the verifier installed.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from service.core.distribution import PACKAGE, VERIFY_PAGE_FILE
from service.core.errors import FormatError
from service.core.formats import format_time
from service.core.note import Verifier, parse_vkeys

if TYPE_CHECKING:
    from service.core.verify import CaseCheck

__all__ = [
    "BUNDLE_FORMAT",
    "Bundle",
    "BundleCheck",
    "BundleDeposit",
    "CaseDescription",
    "Deposit",
    "DepositOutcome",
    "check_bundle",
    "MANIFEST_NAME",
    "looks_like_zip",
    "read_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "evidence-bundle/v1"
INDEX_NAME = "bundle.json"
MANIFEST_NAME = "MANIFEST-SHA256.txt"
README_NAME = "README.txt"
KEYS_TEXT = "keys/operator-keys.txt"
KEYS_JSON = "keys/keys.json"
POLICY_TEXT = "keys/witness-policy.txt"
WHEELS_DIR = "verifier"
CHUNK = 1024 * 1024
_SAFE = re.compile(r"[^\w.\-()+ \u3000-\u9fff]+")


@dataclass(frozen=True)
class Deposit:
    """One deposit to put into a bundle: its receipt as issued, its certificate, and the original file if given."""

    evidence_id: str
    sha256: str
    label: str | None
    receipt: bytes
    certificate: bytes | None = None
    file: Path | None = None


@dataclass(frozen=True)
class CaseDescription:
    """The case a bundle's deposits belong to (SPEC §2.3, §6.2): ``phases`` in order, each a dict with ``phase``,
    ``phase_name``, ``evidence`` (the id of its deposit), ``received_at`` and ``countersignatures`` (ids).
    ``title``, ``reference`` and ``created`` are None when only the receipts are known (they do not carry them)."""

    case_id: str
    title: str | None
    reference: str | None
    created: str | None
    phases: list[dict[str, Any]]
    certificate: bytes | None = None
    omitted_certificates: dict[str, str] = field(default_factory=dict)  # evidence id -> why it has no certificate

    @classmethod
    def from_receipts(cls, documents: Sequence[dict[str, Any]]) -> CaseDescription | None:
        """The case the receipts name, when they all name the same one; None otherwise."""
        cases = {str(d.get("evidence", {}).get("case", {}).get("id")) for d in documents}
        if len(cases) != 1 or not all(isinstance(d.get("evidence", {}).get("case"), dict) for d in documents):
            return None
        phases: dict[int, dict[str, Any]] = {}
        cosigners: dict[str, list[str]] = {}
        for d in documents:
            evidence = d["evidence"]
            if evidence.get("cosigns") is not None:
                cosigners.setdefault(str(evidence["cosigns"]), []).append(str(evidence.get("id")))
                continue
            case = evidence["case"]
            if not isinstance(case.get("phase"), int) or case["phase"] in phases:
                return None  # not a case to describe; verify reports the rule it breaks
            phases[case["phase"]] = {
                "phase": case["phase"],
                "phase_name": case.get("phase_name"),
                "evidence": str(evidence.get("id")),
                "received_at": evidence.get("received_at"),
            }
        for entry in phases.values():
            entry["countersignatures"] = cosigners.get(entry["evidence"], [])
        return cls(cases.pop(), None, None, None, [phases[p] for p in sorted(phases)])


def looks_like_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06")


def _safe_name(name: str) -> str:
    """A file name for the bundle: the last path segment, no separators or control characters."""
    base = PurePosixPath(name.replace("\\", "/")).name
    cleaned = _SAFE.sub("_", base).strip(" .")
    return cleaned[:150] or "file"


class _Writer:
    def __init__(self, out: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.digests: dict[str, str] = {}

    def add(self, name: str, data: bytes, *, compress: bool = True) -> None:
        if name in self.digests:
            raise FormatError(f"the bundle would hold {name} twice")
        info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        self.zip.writestr(info, data)
        self.digests[name] = hashlib.sha256(data).hexdigest()

    def add_file(self, name: str, path: Path) -> str:
        if name in self.digests:
            raise FormatError(f"the bundle would hold {name} twice")
        info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        h = hashlib.sha256()
        with path.open("rb") as src, self.zip.open(info, "w", force_zip64=True) as dst:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                dst.write(chunk)
        self.digests[name] = h.hexdigest()
        return self.digests[name]

    def close(self) -> list[str]:
        lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(self.digests.items()))
        self.add(MANIFEST_NAME, lines.encode("utf-8"))
        self.zip.close()
        return sorted(self.digests)


def keys_text(keys: Sequence[dict[str, Any]], source: str) -> str:
    lines = [
        "# The operator's checkpoint signing keys (verifier keys, one a line) with their fingerprints.",
        f"# Source: {source}.",
        "# Before trusting them, compare each fingerprint with the one printed on the certificate and with one the",
        "# operator publishes through another channel. Use: evidence verify ... --key keys/operator-keys.txt",
        "",
    ]
    for item in keys:
        verifier = parse_vkeys(item["vkey"])[0]
        window = f"valid {item.get('valid_from') or '?'} to {item.get('valid_until') or 'now'}"
        lines.append(f"# {verifier.name}  fingerprint {verifier.fingerprint}  ({window})")
        lines.append(item["vkey"])
    return "\n".join(lines) + "\n"


def _readme(
    deposits: list[dict[str, Any]], wheels: list[str], public_url: str | None, keys_known: bool, policy: bool = False
) -> str:
    rows = []
    for d in deposits:
        rows.append(
            f"  - {d['id']}  {d.get('label') or ''}\n"
            f"    SHA-256 {d['sha256']}\n"
            f"    receipt {d['receipt']}"
            + (f"\n    certificate {d['certificate']}" if d.get("certificate") else "")
            + (
                f"\n    file {d['file']}"
                if d.get("file")
                else "\n    file: not in this bundle (not given) 原始文件未放入"
            )
        )
    wheel_zh = (
        f"python3 -m venv verifier-env && . verifier-env/bin/activate\n"
        f"pip install --no-index --find-links {WHEELS_DIR}/ {PACKAGE}\n"
        if wheels
        else f"（本证据包未附验证工具软件包 · no verifier wheels in this bundle: get them from "
        f"{(public_url or '<the operator>').rstrip('/')}/download/）\n"
    )
    policy_hint = (
        f"\n      见证人副署 · witness cosignatures: evidence verify receipts/<id>.receipt.json files/<name> "
        f"--policy {POLICY_TEXT}"
        if policy
        else ""
    )
    key_hint = (
        "keys/operator-keys.txt" if keys_known else "<运营方公钥 the operator's verifier key, from a source you trust>"
    )
    return f"""证据包 · Evidence bundle ({BUNDLE_FORMAT})
==========================================================

内容 · Contents
  {len(deposits)} 项存证 · deposit(s):
{chr(10).join(rows)}

  {MANIFEST_NAME}   每个文件的 SHA-256 · the SHA-256 of every other file in this bundle
  {VERIFY_PAGE_FILE}   单文件验证网页 · the one-file verify page (works offline)
  keys/             运营方公钥及指纹 · the operator's verifier keys and fingerprints
  {WHEELS_DIR}/         命令行验证工具（离线安装）· the command-line verifier (offline install)

本证据包可在无网络的电脑上验证，无需信任存证服务。验证前请先将 keys/operator-keys.txt 中的指纹与证书上所印指纹、
以及运营方通过其他渠道公布的指纹核对。
Everything here can be checked on a computer with no network, without trusting the deposit service. First compare
the fingerprints in keys/operator-keys.txt with the one printed on each certificate and with one the operator
publishes through another channel.

一、完整性 · 1. Integrity of the bundle (Linux/macOS; on Windows: certutil -hashfile FILE SHA256)
  unzip case.zip -d case && cd case && sha256sum -c {MANIFEST_NAME}

二、网页验证 · 2. In a browser
  用浏览器打开 {VERIFY_PAGE_FILE}，拖入 receipts/ 中的回执（或 certificates/ 中的证书），
  再拖入 files/ 中对应的原始文件。
  Open {VERIFY_PAGE_FILE} in a browser, drop a receipt from receipts/ (or a certificate from certificates/),
  then the matching original file from files/. Every step is shown; VALID means every check passed.

三、命令行 · 3. On the command line (Python 3.11+)
{wheel_zh}  evidence verify case.zip --key {key_hint}{policy_hint}
      每项存证的回执都对照其原始文件验证 · checks every receipt in the bundle against its file
  evidence verify receipts/<id>.receipt.json files/<name> --key {key_hint}

证明范围 · What this proves
  有效的回执证明：与其 SHA-256 相符的文件自存证以来未被改动，且不晚于封存时间已存在。
  不证明文件由谁制作、如何形成、内容是否真实，亦不判断其法律效力。
  A valid receipt proves that a file with its SHA-256 is unchanged since deposit and existed no later than the
  sealing time. It does not prove who made the file, how, whether its content is true, or its legal effect.
"""


def _case_readme(case: dict[str, Any], index: list[dict[str, Any]], omitted: dict[str, str]) -> str:
    receipts = {d["id"]: d["receipt"] for d in index}
    rows = []
    for p in case["phases"]:
        rows.append(
            f"  第 {p['phase']} 阶段 · phase {p['phase']}  {p.get('phase_name') or ''}  received {p['received_at']}"
        )
        rows.append(f"    {receipts.get(p['evidence'], p['evidence'])}")
        for c in p.get("countersignatures", []):
            rows.append(f"    副署 · countersignature {receipts.get(c, c)}")
    certificate = (
        f"  案件证书 · case certificate: {case['certificate']}（每项回执均附于其中 · every receipt attached）\n"
        if case.get("certificate")
        else ""
    )
    certificates = (
        "".join(
            f"  {d['id']}: 未附存证证书（无法生成）· no certificate of deposit in this bundle: "
            f"{omitted.get(d['id'], 'none given')}; its receipt is complete and verifies without it\n"
            for d in index
            if not d.get("certificate")
        )
        or "  每个阶段的存证证书见 certificates/ · each phase's certificate of deposit is in certificates/\n"
    )
    return f"""
案件 · Case (SPEC §2.3, §6.2)
==========================================================
  {case["id"]}  {case.get("title") or ""}{("  " + case["reference"]) if case.get("reference") else ""}
{certificate}{certificates}{chr(10).join(rows)}

案件顺序与完整性 · Order and completeness of the case
  每个阶段的叶子都写明案件编号与阶段序号，受运营方签名覆盖。验证方法：先逐一验证每份回执（见上文），
  再核对：不含副署（cosigns）的回执的阶段序号恰为 1..N 且各出现一次，接收时间（received_at）严格递增。
  Each phase's leaf names the case and its phase number, covered by the operator's signature. Verify each
  receipt alone (above), then check that the receipts naming this case without a "cosigns" field have phases
  exactly 1..N, each once, with strictly increasing received times (SPEC §6.2).
  evidence verify case.zip 会自动完成以上两步 · does both and reports the case rule:
  evidence verify case.zip --key keys/operator-keys.txt
"""


def write_bundle(
    out: IO[bytes],
    deposits: Sequence[Deposit],
    *,
    verify_page: str,
    keys: Sequence[dict[str, Any]],
    keys_source: str,
    wheels: Sequence[Path] = (),
    public_url: str | None = None,
    created: datetime,
    witness_policy: str | None = None,
    case: CaseDescription | None = None,
) -> list[str]:
    """Write the bundle of ``deposits`` to ``out`` (a writable binary file, seekable or not); return its members.

    :raise FormatError: two deposits with the same evidence id.
    """
    if not deposits:
        raise FormatError("a bundle needs at least one receipt")
    w = _Writer(out)
    index: list[dict[str, Any]] = []
    used_files: set[str] = set()
    for d in deposits:
        entry: dict[str, Any] = {"id": d.evidence_id, "sha256": d.sha256, "label": d.label}
        entry["receipt"] = f"receipts/{_safe_name(d.evidence_id)}.receipt.json"
        w.add(entry["receipt"], d.receipt)
        if d.certificate is not None:
            entry["certificate"] = f"certificates/{_safe_name(d.evidence_id)}.certificate.pdf"
            w.add(entry["certificate"], d.certificate, compress=False)
        if d.file is not None:
            name = _safe_name(d.file.name)
            if name in used_files:
                name = f"{_safe_name(d.evidence_id)}-{name}"
            used_files.add(name)
            entry["file"] = f"files/{name}"
            w.add_file(entry["file"], d.file)
        index.append(entry)
    w.add(VERIFY_PAGE_FILE, verify_page.encode("utf-8"))
    w.add(KEYS_TEXT, keys_text(keys, keys_source).encode("utf-8"))
    w.add(KEYS_JSON, (json.dumps({"keys": list(keys)}, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    if witness_policy is not None:
        w.add(POLICY_TEXT, witness_policy.encode("utf-8"))
    wheel_names = []
    for wheel in sorted(wheels, key=lambda p: p.name):
        wheel_names.append(f"{WHEELS_DIR}/{wheel.name}")
        w.add(wheel_names[-1], wheel.read_bytes(), compress=False)
    document: dict[str, Any] = {"format": BUNDLE_FORMAT, "created": format_time(created), "deposits": index}
    if case is not None:
        described: dict[str, Any] = {
            "id": case.case_id,
            "title": case.title,
            "reference": case.reference,
            "created_at": case.created,
            "phases": case.phases,
        }
        if case.certificate is not None:
            described["certificate"] = f"case/{_safe_name(case.case_id)}.certificate.pdf"
            w.add(described["certificate"], case.certificate, compress=False)
        document["case"] = described
    w.add(INDEX_NAME, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    readme = _readme(index, wheel_names, public_url, bool(keys), witness_policy is not None)
    if case is not None:
        readme += _case_readme(document["case"], index, case.omitted_certificates)
    w.add(README_NAME, readme.encode("utf-8"))
    return w.close()


# --- reading a bundle back ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleDeposit:
    evidence_id: str
    receipt_name: str
    receipt: bytes
    file_name: str | None
    file_sha256: bytes | None


@dataclass
class Bundle:
    """A bundle as read: its deposits, the members' digests, and every integrity problem found."""

    deposits: list[BundleDeposit]
    members: dict[str, str]
    problems: list[str] = field(default_factory=list)
    keys_text: str | None = None
    case: dict[str, Any] | None = None


def read_bundle(path: Path) -> Bundle:
    """Open the bundle at ``path``, hash every member and compare with its manifest.

    :raise FormatError: not a zip, or without a readable ``bundle.json`` (integrity problems of the members are
        collected in ``Bundle.problems`` instead, so each can be reported).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FormatError(f"{path} is not a readable zip: {exc}") from None
    with archive:
        members: dict[str, str] = {}
        problems: list[str] = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.filename in members:
                problems.append(f"{info.filename} is in the zip twice")
            h = hashlib.sha256()
            try:
                with archive.open(info) as src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
            except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                problems.append(f"{info.filename} cannot be read: {exc}")
                continue
            members[info.filename] = h.hexdigest()
        if INDEX_NAME not in members:
            raise FormatError(f"{path} is a zip but not an evidence bundle: it has no {INDEX_NAME}")
        if MANIFEST_NAME not in members:
            problems.append(f"{MANIFEST_NAME} is missing: the members cannot be checked against it")
        else:
            listed: dict[str, str] = {}
            for number, line in enumerate(archive.read(MANIFEST_NAME).decode("utf-8", "replace").splitlines(), 1):
                match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
                if not match:
                    problems.append(f"{MANIFEST_NAME} line {number} is not '<sha256>  <name>'")
                    continue
                listed[match.group(2)] = match.group(1)
            for name, digest in sorted(members.items()):
                if name == MANIFEST_NAME:
                    continue
                if name not in listed:
                    problems.append(f"{name} is in the bundle but not in {MANIFEST_NAME}")
                elif listed[name] != digest:
                    problems.append(f"{name} has changed: its SHA-256 is {digest}, the manifest lists {listed[name]}")
            for name in sorted(set(listed) - set(members)):
                problems.append(f"{name} is listed in {MANIFEST_NAME} but missing from the bundle")
        try:
            index = json.loads(archive.read(INDEX_NAME))
            entries = index["deposits"]
            if index.get("format") != BUNDLE_FORMAT or not isinstance(entries, list):
                raise ValueError(f"not {BUNDLE_FORMAT}")
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"{path}: {INDEX_NAME} is not a readable {BUNDLE_FORMAT} index ({exc})") from None
        deposits: list[BundleDeposit] = []
        for number, entry in enumerate(entries, 1):
            receipt_name = entry.get("receipt") if isinstance(entry, dict) else None
            if not isinstance(receipt_name, str) or receipt_name not in members:
                problems.append(f"deposit {number} of {INDEX_NAME} names no receipt in the bundle")
                continue
            file_name = entry.get("file")
            file_digest = None
            if isinstance(file_name, str):
                if file_name in members:
                    file_digest = bytes.fromhex(members[file_name])
                else:
                    problems.append(f"{file_name}, the file of {receipt_name}, is missing from the bundle")
            deposits.append(
                BundleDeposit(
                    str(entry.get("id")),
                    receipt_name,
                    archive.read(receipt_name),
                    file_name if isinstance(file_name, str) else None,
                    file_digest,
                )
            )
        text = archive.read(KEYS_TEXT).decode("utf-8", "replace") if KEYS_TEXT in members else None
        case = index.get("case")
        if case is not None and not (isinstance(case, dict) and isinstance(case.get("id"), str)):
            problems.append(f"the 'case' of {INDEX_NAME} is not an object with a string 'id'")
            case = None
    return Bundle(deposits, members, problems, text, case)


@dataclass(frozen=True)
class DepositOutcome:
    evidence_id: str
    receipt: str
    file: str | None
    valid: bool
    step: int | None
    reason: str | None
    statement: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.evidence_id,
            "receipt": self.receipt,
            "file": self.file,
            "valid": self.valid,
            "step": self.step,
            "reason": self.reason,
            "statement": self.statement,
        }


@dataclass(frozen=True)
class BundleCheck:
    """``check_bundle``'s answer: valid only when the bundle is intact and every receipt verifies."""

    members: int
    problems: list[str]
    outcomes: list[DepositOutcome]
    cases: list[CaseCheck] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return (
            not self.problems
            and bool(self.outcomes)
            and all(o.valid for o in self.outcomes)
            and all(c.valid for c in self.cases)
        )


def check_bundle(path: Path, trusted_keys: Sequence[Verifier]) -> BundleCheck:
    """The manifest of the bundle at ``path``, then every receipt in it against its file (SPEC §6 each).

    :raise FormatError: not a zip, or not an evidence bundle.
    """
    from service.core.errors import UnreadableReceipt
    from service.core.receipt import load_json
    from service.core.verify import VerificationResult, check_case, verify_receipt

    bundle = read_bundle(path)
    outcomes = []
    results: list[VerificationResult] = []
    for d in bundle.deposits:
        try:
            document = load_json(d.receipt)
        except UnreadableReceipt as exc:
            outcomes.append(DepositOutcome(d.evidence_id, d.receipt_name, d.file_name, False, 0, exc.reason, None))
            continue
        result = verify_receipt(document, sha256=d.file_sha256, trusted_keys=list(trusted_keys))
        results.append(result)
        outcomes.append(
            DepositOutcome(
                d.evidence_id, d.receipt_name, d.file_name, result.valid, result.step, result.reason, result.statement
            )
        )
    # SPEC §6.2: every case the receipts (or bundle.json) name, with the phase count bundle.json describes
    described = bundle.case or {}
    expected = len(described["phases"]) if isinstance(described.get("phases"), list) else None
    names = sorted({r.case_id for r in results if r.case_id is not None} | ({described["id"]} if described else set()))
    cases = [check_case(c, results, expected_phases=expected if c == described.get("id") else None) for c in names]
    return BundleCheck(len(bundle.members), bundle.problems, outcomes, cases)
