"""The verification report (验证报告): what one run of the verifier checked, and its outcome, as a PDF to file.

Owns: ``render_report`` (the verifier's result, the receipt and the run's inputs in, PDF bytes out) as a sequence
of section helpers, and ``ReportInputs``, the typed record of what the run was given. Every row states exactly
what that run was given and what each check found (PASS, FAIL, NOT CHECKED or NOT RUN). The receipt is attached
as ``receipt.json`` and the result as ``verification-result.json``. May run to several pages.

This module *displays*; it proves nothing: the result comes from ``service.core.verify``.

Must not import: anything in ``service`` but ``core`` and ``court`` (fpdf2 only inside the renderers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from service.core.verify import VerificationResult
from service.court.certificate import ATTACHMENT_NAME, receipt_bytes
from service.court.fonts import FontSet
from service.court.layout import (
    GREEN,
    GREY,
    NAVY,
    RED,
    Value,
    Writer,
    draw_title,
    draw_with_fonts,
    embed_json,
    new_pdf,
    output,
)
from service.court.view import ReceiptView, num, read_receipt, time_lines, zone_named

if TYPE_CHECKING:
    from fpdf import FPDF

RESULT_ATTACHMENT_NAME = "verification-result.json"

__all__ = ["RESULT_ATTACHMENT_NAME", "ReportInputs", "TrustedKey", "render_report"]

_STEP_NAMES = {
    0: ("回执格式", "Receipt format"),
    1: ("文件摘要", "File SHA-256"),
    2: ("存证叶子", "Evidence leaf"),
    3: ("批次包含证明", "Batch inclusion proof"),
    4: ("账本条目", "Ledger entry"),
    5: ("账本包含证明", "Ledger inclusion proof"),
    6: ("检查点签名", "Checkpoint signature"),
    7: ("可信时间戳", "RFC 3161 timestamps"),
    8: ("存证人签署", "Depositor's attestation"),  # receipt format v2 only
}
_V1_STEPS = frozenset(range(8))

ReceiptSource = Literal["receipt", "certificate"]


@dataclass(frozen=True)
class TrustedKey:
    """A verifier key the run trusted (SPEC §4): its vkey string and its fingerprint in groups of four."""

    vkey: str
    fingerprint: str


@dataclass(frozen=True)
class ReportInputs:
    """What one run of the verifier was given, as the report prints it.

    ``receipt_name`` is the path given (``-`` for standard input) and ``receipt_source`` says whether it was a
    receipt JSON or a certificate PDF whose attached ``receipt.json`` was checked. ``file_name`` is the FILE
    given, with ``sha256`` computed from it; ``sha256`` alone is a digest given instead of a file (``--sha256``);
    neither means step 1 was not checked. ``trusted_keys`` are every key step 6 accepted (from ``--key``, the
    environment and a witness policy's log lines), ``tsa_certificates`` the trusted TSA roots (none: tokens are
    not checked), ``witness_policy`` the policy in words (None: no witness policy was given).

    :raise ValueError: a file without its SHA-256, or a SHA-256 that is not 64 lower-case hex digits.
    """

    receipt_name: str
    receipt_source: ReceiptSource
    verified_at: datetime
    tool_version: str
    file_name: str | None = None
    sha256: str | None = None
    trusted_keys: tuple[TrustedKey, ...] = ()
    tsa_certificates: tuple[str, ...] = ()
    witness_policy: str | None = None

    def __post_init__(self) -> None:
        if self.file_name is not None and self.sha256 is None:
            raise ValueError("a file was given without the SHA-256 computed from it")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, found {self.sha256!r}")
        if self.verified_at.tzinfo is None:
            raise ValueError("verified_at must carry a time zone")

    @property
    def digest_source(self) -> Literal["file", "digest", "none"]:
        """Where step 1's digest came from: a file hashed in this run, a SHA-256 given, or nothing."""
        if self.file_name is not None:
            return "file"
        return "digest" if self.sha256 is not None else "none"


@dataclass(frozen=True)
class _Report:
    """Everything a section helper needs: the writer, the receipt as read, the result and the run's inputs."""

    w: Writer
    view: ReceiptView
    zone: ZoneInfo
    result: VerificationResult
    inputs: ReportInputs
    when_lines: list[str]
    steps: frozenset[int]  # the steps this receipt's format has (v2 adds step 8)

    @property
    def tokens_checked(self) -> bool:
        """Whether step 7 checked at least one token against a trusted TSA root, and it held."""
        return any(c.step == 7 and c.ok and c.checked for c in self.result.checks)


def render_report(
    result: VerificationResult,
    *,
    receipt: Mapping[str, object],
    inputs: ReportInputs,
    local_tz: str = "Asia/Shanghai",
    fonts: FontSet | None = None,
) -> bytes:
    """Return a verification report (验证报告) a person can file: the outcome, what was given and trusted, every
    check of SPEC §6 in order (PASS, FAIL, NOT CHECKED or NOT RUN), the witnesses when a policy was given, and
    plainly what the outcome proves and does not. May run to several pages.

    ``result`` is what ``service.core.verify.verify_receipt`` returned for ``receipt`` with ``inputs``.
    ``receipt`` (possibly broken) is summarised and attached as ``receipt.json``; the result (SPEC §8 shape) as
    ``verification-result.json``.

    :raise FontMissing: no CJK font is installed.
    :raise FormatError: unknown ``local_tz``.
    """
    zone = zone_named(local_tz)
    view = read_receipt(receipt)
    when_lines = time_lines(inputs.verified_at, zone)
    steps = frozenset(_STEP_NAMES) if receipt.get("format") == "evidence-receipt/v2" else _V1_STEPS

    def draw(fonts: FontSet) -> FPDF:
        r = _Report(_start(view, fonts, when_lines), view, zone, result, inputs, when_lines, steps)
        _outcome_banner(r)
        _section_inputs(r)
        _section_checks(r)
        if result.witnesses is not None:
            _section_witnesses(r)
        _section_receipt(r)
        _section_scope(r)
        return r.w.pdf

    pdf = draw_with_fonts(draw, fonts)
    embed_json(pdf, ATTACHMENT_NAME, receipt_bytes(receipt), "The receipt that was verified")
    result_json = (json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    embed_json(pdf, RESULT_ATTACHMENT_NAME, result_json, "Verification result (SPEC §8)")
    return output(pdf)


def _start(view: ReceiptView, fonts: FontSet, when_lines: list[str]) -> Writer:
    pdf = new_pdf(
        f"验证报告 Verification Report {view.evidence_id or ''}".strip(),
        "Evidence receipt verification",
        auto_break=True,
    )
    w = Writer(pdf, fonts, left=16, right=16)
    pdf.footer_text = f"验证报告 Verification report · {when_lines[0]}"  # type: ignore[attr-defined]
    pdf.add_page()
    draw_title(
        w,
        "验证报告",
        "Verification Report",
        f"账本 Ledger: {view.origin or '—'}",
        f"存证编号 Evidence ID: {view.evidence_id or '—'}",
    )
    return w


def _outcome_banner(r: _Report) -> None:
    """VALID or INVALID in a framed box, with the statement or the failing step and its reason."""
    w, result = r.w, r.result
    pdf = w.pdf
    y = pdf.get_y() + 1
    color = GREEN if result.valid else RED
    pdf.set_draw_color(*color)
    pdf.set_line_width(0.6)
    head = "验证通过 · VALID" if result.valid else "验证未通过 · INVALID"
    if result.valid:
        detail = result.statement or "所有检查均已通过 · all checks passed"
    else:
        step = result.step
        step_text = f"第 {step} 步失败 · failed at step {step}" if step is not None else "失败 · failed"
        detail = f"{step_text}: {result.reason or '—'}"
    pdf.set_xy(w.left + 4, y + 2.5)
    w.font(14, bold=True)
    w.color(color)
    pdf.cell(w.width - 8, 7, head, new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(w.left + 4)
    w.font(9)
    w.color((0, 0, 0))
    w.block(detail, w.width - 8, 4.6)
    bottom = pdf.get_y() + 2.5
    pdf.rect(w.left, y, w.width, bottom - y)
    pdf.set_y(bottom + 1)


def _section_inputs(r: _Report) -> None:
    """What was checked, and how: the receipt, the file, the trusted keys and TSA roots, when, with what."""
    w, inputs = r.w, r.inputs
    w.numbered_section("验证对象与条件", "What was checked, and how")
    _row_receipt_given(r)
    _rows_file_given(r)
    _row_trusted_keys(r)
    if inputs.witness_policy is not None:
        w.row("见证策略", "Witness policy", [("text", inputs.witness_policy)])
    w.row(
        "信任的 TSA 证书",
        "Trusted TSA certificates",
        [("text", t) for t in inputs.tsa_certificates]
        or [("text", "无：时间戳不作检查 · none: timestamps not checked")],
    )
    w.row("验证时间", "Date of verification", [("text", t) for t in r.when_lines])
    w.row("验证工具", "Tool", [("text", inputs.tool_version)])


def _row_receipt_given(r: _Report) -> None:
    name = r.inputs.receipt_name
    shown = "标准输入 standard input" if name == "-" else name
    if r.inputs.receipt_source == "certificate":
        how = "存证证书 PDF：检查其所附 receipt.json · a certificate PDF: its attached receipt.json was checked"
    else:
        how = "回执 JSON · a receipt (JSON)"
    r.w.row("回执文件", "Receipt file", [("text", shown), ("small", how)])


def _rows_file_given(r: _Report) -> None:
    inputs, w = r.inputs, r.w
    source = inputs.digest_source
    if source == "file":
        w.row("被验证文件", "File checked", [("text", inputs.file_name or "")])
        w.row("文件 SHA-256", "File SHA-256 (computed)", [("mono", inputs.sha256 or "")])
    elif source == "digest":
        w.row(
            "被验证文件",
            "File checked",
            [("text", "未提供文件，仅提供摘要（--sha256）· no file: a SHA-256 was given instead (--sha256)")],
        )
        w.row("给定的 SHA-256", "SHA-256 given", [("mono", inputs.sha256 or "")])
    else:
        w.row(
            "被验证文件",
            "File checked",
            [("text", "未提供文件或摘要：第 1 步未检查 · no file or digest given: step 1 not checked")],
        )


def _row_trusted_keys(r: _Report) -> None:
    keys = r.inputs.trusted_keys
    if not keys:
        r.w.row("信任的公钥", "Trusted keys", [("text", "无 · none")])
        return
    values: list[Value] = []
    for key in keys:
        values.append(("smallmono", key.vkey))
        fingerprint = key.fingerprint
        halves = [fingerprint[:39], fingerprint[40:]] if len(fingerprint) == 79 else [fingerprint]
        values += [("mono", half) for half in halves]
    r.w.row("信任的公钥", "Trusted keys (fingerprint)", values)


_PASS, _FAIL, _NOT_CHECKED, _NOT_RUN = "通过 PASS", "失败 FAIL", "未检查 NOT CHECKED", "未执行 NOT RUN"


def _section_checks(r: _Report) -> None:
    """Every check in SPEC §6 order: PASS or FAIL with its detail, NOT CHECKED (the verifier looked but had
    nothing to check against, e.g. no file or no trusted TSA root), or NOT RUN (verification stopped earlier)."""
    r.w.numbered_section("逐步检查记录", "Step-by-step checks (SPEC §6)")
    rows: list[tuple[int, str, str]] = []
    for check in r.result.checks:
        outcome = _FAIL if not check.ok else (_PASS if check.checked else _NOT_CHECKED)
        rows.append((check.step, outcome, check.detail))
    done = {check.step for check in r.result.checks}
    failed = r.result.step
    for step in sorted(r.steps - done):
        if not r.result.valid and failed is not None and step > failed:
            why = f"验证在第 {failed} 步停止 · verification stopped at step {failed}"
        elif step == 1:
            why = "未提供文件或摘要 · no file or digest given"
        else:
            why = "—"
        rows.append((step, _NOT_RUN, why))
    rows.sort(key=lambda row: row[0])  # stable: several checks of one step keep their order
    styles = {_FAIL: "fail", _PASS: "pass"}
    for step, outcome, detail in rows:
        zh, en = _STEP_NAMES.get(step, (f"步骤 {step}", f"Step {step}"))
        r.w.row(f"{step}. {zh}", en, [(styles.get(outcome, "bold"), outcome), ("text", detail or "—")], label_w=50)


def _section_witnesses(r: _Report) -> None:
    """Each witness of the policy given (SPEC §9): cosigned (valid), invalid cosignature, or absent."""
    r.w.numbered_section("见证签名", f"Witness cosignatures (quorum: {r.result.quorum or '—'})")
    for witness in r.result.witnesses or []:
        if witness.valid:
            outcome = ("pass", "有效 VALID")
        elif witness.present:
            outcome = ("fail", "无效 INVALID")
        else:
            outcome = ("bold", "未签 ABSENT")
        r.w.row(
            witness.name,
            "",
            [outcome, ("text", witness.detail), ("smallmono", witness.fingerprint)],
            label_w=50,
        )


def _section_receipt(r: _Report) -> None:
    """The receipt, as it states itself (verified only as far as the checks above)."""
    w, view, zone = r.w, r.view, r.zone
    w.numbered_section("回执内容摘要", "The receipt, as it states itself (verified only as far as the checks above)")
    w.row("存证编号", "Evidence ID", [("mono", view.evidence_id or "—")])
    w.row("文件哈希值", "SHA-256 in receipt", [("mono", view.sha256 or "—")])
    w.row("接收时间", "Received", [("text", t) for t in time_lines(view.received, zone)])
    w.row("封存时间", "Sealed", [("text", t) for t in time_lines(view.sealed, zone)])
    w.row(
        "批次与账本",
        "Batch and ledger",
        [
            ("text", f"批次 seq {num(view.batch_seq)} · 叶子 leaf {num(view.batch_index)} / {num(view.batch_size)}"),
            ("text", f"检查点大小 checkpoint size {num(view.checkpoint_size)}"),
        ],
    )
    w.row("检查点来源", "Checkpoint origin", [("mono", view.origin or "—")])
    w.row("时间戳令牌", "RFC 3161 tokens", [("text", str(view.token_count))])


def _section_scope(r: _Report) -> None:
    """What the report proves (only when valid), what it never proves, and what is attached."""
    w = r.w
    w.numbered_section("本报告证明什么、不证明什么", "What this report proves, and what it does not")
    if r.result.valid:
        _proves_valid(r)
    else:
        w.paragraph(
            "由于验证未通过，本报告既不能证明该文件自存证以来未被改动，也不能证明其存在时间。", size=8.8, color=RED
        )
        w.paragraph(
            "Because verification failed, this report proves neither that the file is unchanged since deposit "
            "nor when it existed.",
            size=8.0,
            color=RED,
        )
    w.pdf.ln(1.6)
    w.paragraph(
        "不证明：文件由谁制作、如何形成、其内容是否真实，也不对其法律效力作出判断。运营方签名仅在其公钥指纹经独立"
        "核实（与运营方公布的指纹一致）后才可信赖。",
        size=8.8,
    )
    w.paragraph(
        "Does NOT prove: who made the file, how it was made, whether its content is true, or its legal effect. "
        "The operator's signature is only worth trusting once its key fingerprint was checked independently "
        "against the operator's published one.",
        size=8.0,
        color=GREY,
    )
    w.pdf.ln(1.6)
    w.paragraph(
        f"附件 Attached: {ATTACHMENT_NAME}（被验证的回执 the receipt checked）, {RESULT_ATTACHMENT_NAME}"
        "（机器可读结果 the machine-readable result）.",
        size=7.6,
        color=NAVY,
    )


_PROVES_FILE = {
    "file": (
        "(1) 被验证文件与回执中的 SHA-256 一致，即该文件自存证以来未被改动；",
        "(1) the file checked matches the SHA-256 in the receipt, so it is unchanged since deposit;",
    ),
    "digest": (
        "(1) 给定的 SHA-256 与回执一致（本次未读取文件本身：须另行计算文件的 SHA-256 并与之核对）；",
        "(1) the SHA-256 given matches the receipt (no file was read in this run: compute the file's SHA-256 "
        "to tie a file to it);",
    ),
    "none": (
        "(1) 未提供文件或摘要：本报告不证明任何具体文件与回执相符；",
        "(1) no file or digest was given: this report does not show that any particular file matches;",
    ),
}


def _proves_valid(r: _Report) -> None:
    origin = r.view.origin
    file_zh, file_en = _PROVES_FILE[r.inputs.digest_source]
    if r.tokens_checked:
        stamp_zh = "亦不晚于第 7 步所验证的可信时间戳时间（依该时间戳机构）。"
        stamp_en = ", and no later than the time of each timestamp verified in step 7 (per that Time-Stamp Authority)."
    else:
        stamp_zh = "本次未检查时间戳（第 7 步）。"
        stamp_en = "; no timestamp was checked in this run (step 7)."
    r.w.paragraph(
        f"证明：{file_zh}(2) 回执中的 SHA-256 已封存于 {origin or '该'} 账本，其存在时间不晚于封存时间；{stamp_zh}",
        size=8.8,
    )
    r.w.paragraph(
        f"Proves: {file_en} (2) the SHA-256 in the receipt was sealed in the ledger of "
        f"{origin or 'the operator'} no later than the sealing time{stamp_en}",
        size=8.0,
        color=GREY,
    )
