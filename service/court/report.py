"""The verification report (验证报告): what one run of the verifier checked, and its outcome, as a PDF to file.

Owns: ``render_report`` (a SPEC §8 result, the receipt and the run's inputs in, PDF bytes out) as a sequence of
section helpers; the receipt is attached as ``receipt.json`` and the result as ``verification-result.json``.
May run to several pages.

This module *displays*; it proves nothing: the result comes from ``service.core.verify``.

Must not import: anything in ``service`` but ``core.errors`` and ``court`` (fpdf2 only inside the renderers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from service.court.certificate import ATTACHMENT_NAME, receipt_bytes
from service.court.fonts import FontSet, find_fonts
from service.court.layout import GREEN, GREY, NAVY, RED, Value, Writer, draw_title, embed_json, new_pdf, output
from service.court.view import (
    ReceiptView,
    as_int,
    as_mapping,
    as_text,
    num,
    read_receipt,
    time_lines,
    vkey_fingerprint,
    zone_named,
)

RESULT_ATTACHMENT_NAME = "verification-result.json"

__all__ = ["RESULT_ATTACHMENT_NAME", "render_report"]

_STEP_NAMES = {
    0: ("回执格式", "Receipt format"),
    1: ("文件摘要", "File SHA-256"),
    2: ("存证叶子", "Evidence leaf"),
    3: ("批次包含证明", "Batch inclusion proof"),
    4: ("账本条目", "Ledger entry"),
    5: ("账本包含证明", "Ledger inclusion proof"),
    6: ("检查点签名", "Checkpoint signature"),
    7: ("可信时间戳", "RFC 3161 timestamps"),
}


@dataclass(frozen=True)
class _Report:
    """Everything a section helper needs: the writer, the receipt as read, the result and the run's inputs."""

    w: Writer
    view: ReceiptView
    zone: ZoneInfo
    result: Mapping[str, object]
    inputs: Mapping[str, object]
    when_lines: list[str]

    @property
    def valid(self) -> bool:
        return self.result.get("valid") is True

    @property
    def failed_step(self) -> int | None:
        return as_int(self.result.get("step"))


def render_report(
    result: Mapping[str, object],
    *,
    receipt: Mapping[str, object],
    inputs: Mapping[str, object],
    local_tz: str = "Asia/Shanghai",
    fonts: FontSet | None = None,
) -> bytes:
    """Return a verification report (验证报告) a person can file: the outcome, what was checked, every
    check of SPEC §6 in order, and plainly what the outcome proves and does not. May run to several pages.

    ``result`` has the SPEC §8 shape. ``inputs`` (all optional): ``receipt_name``, ``file_name``,
    ``file_sha256``, ``trusted_keys`` (vkey strings or {"vkey", "fingerprint"}), ``tsa_certificates``
    (descriptions), ``verified_at`` (datetime or RFC 3339 text; default now), ``tool_version``.
    ``receipt`` (possibly broken) is summarised and attached as ``receipt.json``; the result as
    ``verification-result.json``.

    :raise FontMissing: no CJK font is installed.
    :raise FormatError: unknown ``local_tz``.
    """
    zone = zone_named(local_tz)
    view = read_receipt(receipt)
    verified_at = inputs.get("verified_at")
    when_lines = time_lines(verified_at if isinstance(verified_at, str | datetime) else datetime.now(UTC), zone)
    w = _start(view, find_fonts() if fonts is None else fonts, when_lines)
    r = _Report(w, view, zone, result, inputs, when_lines)

    _outcome_banner(r)
    _section_inputs(r)
    _section_checks(r)
    _section_receipt(r)
    _section_scope(r)

    embed_json(w.pdf, ATTACHMENT_NAME, receipt_bytes(receipt), "The receipt that was verified")
    result_json = (json.dumps(result, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    embed_json(w.pdf, RESULT_ATTACHMENT_NAME, result_json, "Verification result (SPEC §8)")
    return output(w.pdf)


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
    w = r.w
    pdf = w.pdf
    y = pdf.get_y() + 1
    color = GREEN if r.valid else RED
    pdf.set_draw_color(*color)
    pdf.set_line_width(0.6)
    head = "验证通过 · VALID" if r.valid else "验证未通过 · INVALID"
    if r.valid:
        detail = as_text(r.result.get("statement")) or "所有检查均已通过 · all checks passed"
    else:
        step = r.failed_step
        step_text = f"第 {step} 步失败 · failed at step {step}" if step is not None else "失败 · failed"
        detail = f"{step_text}: {as_text(r.result.get('reason')) or '—'}"
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
    w.row("回执文件", "Receipt file", [("text", str(inputs.get("receipt_name") or "—"))])
    file_name = as_text(inputs.get("file_name"))
    file_sha = as_text(inputs.get("file_sha256"))
    if file_name or file_sha:
        w.row("被验证文件", "File checked", [("text", file_name or "（仅提供摘要）· digest given, no file")])
        w.row("文件 SHA-256", "File SHA-256 (computed)", [("mono", file_sha or "—")])
    else:
        w.row(
            "被验证文件",
            "File checked",
            [("text", "未提供文件：第 1 步未检查 · no file given: step 1 not checked")],
        )
    _row_trusted_keys(r)
    tsas = inputs.get("tsa_certificates")
    tsa_list = [str(t) for t in tsas] if isinstance(tsas, list) else []
    w.row(
        "信任的 TSA 证书",
        "Trusted TSA certificates",
        [("text", t) for t in tsa_list] or [("text", "无：时间戳不作检查 · none: timestamps not checked")],
    )
    w.row("验证时间", "Date of verification", [("text", t) for t in r.when_lines])
    w.row("验证工具", "Tool", [("text", str(inputs.get("tool_version") or "—"))])


def _row_trusted_keys(r: _Report) -> None:
    keys = _key_rows(r.inputs.get("trusted_keys"))
    if not keys:
        r.w.row("信任的公钥", "Trusted keys", [("text", "无 · none")])
        return
    values: list[Value] = []
    for vkey, fingerprint in keys:
        values.append(("smallmono", vkey))
        halves = [fingerprint[:39], fingerprint[40:]] if len(fingerprint) == 79 else [fingerprint]
        values += [("mono", half) for half in halves]
    r.w.row("信任的公钥", "Trusted keys (fingerprint)", values)


def _key_rows(value: object) -> list[tuple[str, str]]:
    """(vkey, fingerprint) of each trusted key the caller listed (strings or {"vkey","fingerprint"})."""
    rows: list[tuple[str, str]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, str):
            vkey, fingerprint = item, ""
        else:
            obj = as_mapping(item)
            vkey, fingerprint = str(obj.get("vkey") or ""), str(obj.get("fingerprint") or "")
        if not fingerprint:
            parsed = vkey_fingerprint(vkey)
            fingerprint = parsed[2] if parsed else "—"
        rows.append((vkey, fingerprint))
    return rows


def _section_checks(r: _Report) -> None:
    """Every check in SPEC §6 order: PASS/FAIL with its detail, or NOT RUN and why."""
    r.w.numbered_section("逐步检查记录", "Step-by-step checks (SPEC §6)")
    checks = _checks(r.result)
    done = {step for step, _, _ in checks}
    rows: list[tuple[int, str, str]] = []
    for step, ok, detail in checks:
        rows.append((step, "通过 PASS" if ok else "失败 FAIL", detail))
    failed = r.failed_step
    for step in sorted(set(_STEP_NAMES) - done):
        if not r.valid and failed is not None and step > failed:
            why = f"验证在第 {failed} 步停止 · verification stopped at step {failed}"
        elif step == 1:
            why = "未提供文件或摘要 · no file or digest given"
        else:
            why = "—"
        rows.append((step, "未执行 NOT RUN", why))
    rows.sort(key=lambda row: row[0])
    for step, outcome, detail in rows:
        zh, en = _STEP_NAMES.get(step, (f"步骤 {step}", f"Step {step}"))
        style = {"失": "fail", "通": "pass"}.get(outcome[0], "bold")
        r.w.row(f"{step}. {zh}", en, [(style, outcome), ("text", detail or "—")], label_w=50)


def _checks(result: Mapping[str, object]) -> list[tuple[int, bool, str]]:
    raw = result.get("checks")
    out: list[tuple[int, bool, str]] = []
    if isinstance(raw, list):
        for item in raw:
            check = as_mapping(item)
            step = as_int(check.get("step"))
            if step is None:
                continue
            out.append((step, check.get("ok") is True, str(check.get("detail") or "")))
    return out


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
    if r.valid:
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


def _proves_valid(r: _Report) -> None:
    origin = r.view.origin
    r.w.paragraph(
        "证明：(1) 被验证文件（或摘要）与回执中的 SHA-256 一致，即该文件自存证以来未被改动；"
        f"(2) 该摘要已封存于 {origin or '该'} 账本，其存在时间不晚于封存时间；"
        "如第 7 步有经验证的可信时间戳，亦不晚于该时间戳时间（依该时间戳机构）。",
        size=8.8,
    )
    r.w.paragraph(
        "Proves: (1) the file (or digest) checked matches the SHA-256 in the receipt, so the file is "
        "unchanged since deposit; (2) that SHA-256 was sealed in the ledger of "
        f"{origin or 'the operator'} no later than the sealing time, and no later than the time of "
        "each timestamp verified in step 7 (per that Time-Stamp Authority).",
        size=8.0,
        color=GREY,
    )
