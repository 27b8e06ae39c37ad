"""The certificate of deposit (存证证书): a one-page A4 PDF for a sealed receipt, and reading it back.

Owns: ``render_certificate`` (receipt and facts in, PDF bytes out) as a sequence of section helpers, attaching
the machine-readable receipt inside the PDF as ``receipt.json`` (``receipt_bytes``), and reading it back
(``extract_receipt``). The verification report is ``service.court.report``; the shared drawing is
``service.court.layout`` and the tolerant receipt reading ``service.court.view``.

Adding a section: write ``_section_<name>(c: _Certificate)`` that starts with ``c.w.numbered_section(zh, en)``
(numbering is automatic) and call it from ``render_certificate``; a new row in an existing section is a
``_row_<name>(c)`` helper called from that section. New inputs go into ``render_certificate``'s keywords and
the ``_Certificate`` context. The page must stay one page: ``_check_one_page`` refuses an overflow.

This module *displays*; it proves nothing. Checking is the verifier's job (``service.core.verify``), and the
steps printed on the certificate tell the reader how to run it themselves.

Must not import: anything in ``service`` but ``core.errors`` and ``court`` (the verifier imports
``extract_receipt``, so pypdf is imported lazily inside it and fpdf2/segno only inside the renderers).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from service.core.cosignature import check_cosignatures
from service.core.distribution import DOWNLOAD_PATH, PACKAGE, install_command
from service.core.errors import FormatError, NotACertificate
from service.core.policy import Policy
from service.court.fonts import FontSet
from service.court.layout import (
    GREY,
    NAVY,
    Value,
    Writer,
    draw_qr,
    draw_title,
    draw_with_fonts,
    embed_json,
    new_pdf,
    output,
)
from service.court.view import (
    ReceiptView,
    format_fingerprint,
    hint_fingerprint,
    num,
    read_receipt,
    sm2_hint,
    time_lines,
    zone_named,
)

if TYPE_CHECKING:
    from fpdf import FPDF

ATTACHMENT_NAME = "receipt.json"

__all__ = [
    "ATTACHMENT_NAME",
    "TimestampDisplay",
    "extract_receipt",
    "format_fingerprint",
    "receipt_bytes",
    "render_certificate",
]


@dataclass(frozen=True)
class TimestampDisplay:
    """One RFC 3161 timestamp to print: its genTime, the TSA that signed it, and whether the caller checked
    the token against a trusted TSA root (``service.core.timestamps.verify_token``) before handing it here."""

    gen_time: datetime
    authority: str
    verified: bool = False


@dataclass(frozen=True)
class WitnessDisplay:
    """One witness whose cosignature of the receipt's checkpoint the caller checked (SPEC §9): its name in the
    policy, its key fingerprint (SHA-256 of the public key, groups of four) and the cosignature's time, which bounds
    the sealing time from above independently of the operator and of any TSA."""

    name: str
    fingerprint: str
    cosigned: datetime


def witness_displays(document: dict[str, Any], policy: Policy | None) -> list[WitnessDisplay] | None:
    """The witnesses of the deployment's policy whose cosignature on the receipt's checkpoint verifies (SPEC §9)."""
    if policy is None:
        return None
    try:
        checks = check_cosignatures(str(document["ledger"]["checkpoint"]).encode("utf-8"), policy.witness_keys)
    except (KeyError, TypeError, FormatError):
        return None
    return [
        WitnessDisplay(w.name, w.key.fingerprint, datetime.fromtimestamp(check.timestamp, UTC))
        for w, check in zip(policy.witnesses, checks, strict=True)
        if check.valid and check.timestamp is not None
    ]


# --- receipt bytes in and out of the PDF ---------------------------------------------------------


def receipt_bytes(receipt: Mapping[str, object]) -> bytes:
    """The bytes attached as ``receipt.json`` when the caller gives no original bytes: UTF-8 JSON,
    two-space indented, keys in the receipt's own order, one trailing newline."""
    return (json.dumps(receipt, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def extract_receipt(pdf_bytes: bytes) -> bytes:
    """Return the bytes of the ``receipt.json`` attached to a certificate (or report) PDF.

    :raise NotACertificate: the bytes are not a readable PDF, or it has no (or two different) attachments
        named ``receipt.json``.
    """
    if not pdf_bytes.lstrip(b"\x00\t\n\r ")[:5] == b"%PDF-":
        raise NotACertificate(
            f"expected a PDF (starting with %PDF-), found {bytes(pdf_bytes[:8])!r}: not a certificate PDF"
        )
    import pypdf  # lazy: only `evidence verify` on a PDF needs it

    try:
        reader = pypdf.PdfReader(io.BytesIO(pdf_bytes))
        attachments = reader.attachments
        names = sorted(attachments)
        found = attachments.get(ATTACHMENT_NAME)
    except Exception as exc:  # pypdf raises PdfReadError, but also KeyError/ValueError on hostile files
        raise NotACertificate(f"the PDF cannot be read: {exc}") from exc
    if not found:
        listed = ", ".join(names) if names else "none"
        raise NotACertificate(
            f"the PDF has no attached {ATTACHMENT_NAME} (attachments found: {listed}); "
            "it is not an Evidence Ledger certificate"
        )
    if any(item != found[0] for item in found[1:]):
        raise NotACertificate(f"the PDF has {len(found)} different attachments named {ATTACHMENT_NAME}")
    return bytes(found[0])


# --- the certificate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PartyDisplay:
    """A depositor as the certificate prints it (SPEC §2.2 "Depositor identity").

    ``trust``: "ca" (certificate verified against a CA the issuer trusts), "unchecked" (certificate not checked
    against a CA), "key" (a bare Ed25519 key the tenant registered with the operator). ``countersigned`` is the
    receipt time of a countersignature (None for the first depositor)."""

    identity: str
    trust: str
    countersigned: str | None = None


class _Overflow(FormatError):
    """The page's content runs past one page."""


@dataclass
class _Certificate:
    """Everything a section helper needs: the writer (and its PDF), the receipt as read, and the caller's facts."""

    w: Writer
    view: ReceiptView
    zone: ZoneInfo
    verify_url: str
    label: str | None
    timestamps: Sequence[TimestampDisplay] | None
    trusted: str | None  # the operator fingerprint the issuer trusts, formatted (SPEC §4)
    public_url: str | None  # the issuing service, which serves the verifier at <public_url>/download/
    parties: Sequence[PartyDisplay] | None = None  # receipt v2: who signed; None: not given by the caller
    witnesses: Sequence[WitnessDisplay] | None = None  # checked cosignatures of the checkpoint (SPEC §9)
    witnesses_shown: int = 3  # how many of them get their own lines (the others are counted)


def render_certificate(
    receipt: Mapping[str, object],
    *,
    verify_url: str,
    label: str | None = None,
    local_tz: str = "Asia/Shanghai",
    timestamps: Sequence[TimestampDisplay] | None = None,
    trusted_fingerprint: str | None = None,
    receipt_json: bytes | None = None,
    fonts: FontSet | None = None,
    public_url: str | None = None,
    parties: Sequence[PartyDisplay] | None = None,
    witnesses: Sequence[WitnessDisplay] | None = None,
) -> bytes:
    """Return a one-page A4 certificate of deposit (存证证书) for a sealed receipt, as PDF bytes.

    ``receipt`` is the SPEC §6 JSON object; it is attached to the PDF as ``receipt.json`` (the caller's
    original ``receipt_json`` bytes if given, else ``receipt_bytes(receipt)``). ``verify_url`` goes into the
    QR code. ``timestamps`` are RFC 3161 tokens the caller decoded (and ideally checked); None means "not
    decoded here" and the page says how many tokens the receipt carries. ``trusted_fingerprint`` is the
    operator key fingerprint the caller trusts; without it the fingerprint is computed from the receipt's
    ``keys`` hint and labelled as such. ``fonts`` defaults to ``find_fonts()``. ``public_url`` is the issuing
    service's public base URL: the page prints the command that installs the verifier from its ``/download/``.
    ``parties`` (receipt v2) are the depositor and every countersigning party, checked by the caller; for a v2
    receipt without them the page says "unattested" when the receipt carries no attestation.
    ``witnesses`` are the witnesses whose cosignatures the caller checked (SPEC §9); None or empty prints no row.

    :raise FontMissing: no CJK font is installed (the message names the Debian package).
    :raise FormatError: unknown ``local_tz``, malformed ``trusted_fingerprint``, or ``receipt_json`` that
        does not parse to ``receipt``.
    """
    zone = zone_named(local_tz)
    attached = _attached_bytes(receipt, receipt_json)
    trusted = format_fingerprint(trusted_fingerprint) if trusted_fingerprint is not None else None
    view = read_receipt(receipt)

    def draw_showing(shown: int, tight: bool) -> Callable[[FontSet], FPDF]:
        def draw(fonts: FontSet) -> FPDF:
            w = _start_page(view, fonts)
            if label or view.format == "evidence-receipt/v2":
                w.row_pad = 1.0  # room for the rows a label (and its v1 warning), a case and the parties add
            if tight:  # a crowded page (label, case, parties, witnesses, tokens): rows and sections closer
                w.row_pad, w.section_gap = 0.2, 0.6
            c = _Certificate(w, view, zone, verify_url, label, timestamps, trusted, public_url, parties, witnesses)
            c.witnesses_shown = shown
            _preamble(c)
            _section_evidence(c)
            _section_sealing(c)
            _section_how_to_verify(c)
            _section_scope(c)
            try:
                _check_one_page(c)
            except _Overflow:
                for font in c.w.pdf.fonts.values():  # discarded: release the font files it opened
                    font.ttfont.close()  # type: ignore[union-attr]
                raise
            return c.w.pdf

        return draw

    # Witnesses take two lines each: print as many (at most three) as the one page holds, the rest by count, the
    # rows drawn closer before one is dropped; on a page too crowded even for the count, the row is left out (the
    # cosignatures stay in receipt.json).
    layouts = [(shown, tight) for shown in range(min(3, len(witnesses or ())), -1, -1) for tight in (False, True)]
    for shown, tight in layouts:
        try:
            pdf = draw_with_fonts(draw_showing(shown, tight), fonts)
            break
        except _Overflow:
            continue
    else:
        witnesses = None
        pdf = draw_with_fonts(draw_showing(0, True), fonts)
    embed_json(pdf, ATTACHMENT_NAME, attached, f"Evidence receipt ({view.format or 'evidence-receipt'}, SPEC §6)")
    return output(pdf)


def _attached_bytes(receipt: Mapping[str, object], receipt_json: bytes | None) -> bytes:
    """The bytes to attach as ``receipt.json``: the caller's original bytes, if they parse to ``receipt``."""
    if receipt_json is None:
        return receipt_bytes(receipt)
    attached = bytes(receipt_json)
    try:
        same = json.loads(attached) == receipt
    except ValueError:
        same = False
    if not same:
        raise FormatError("receipt_json does not parse to the receipt given; refusing to attach it")
    return attached


def _start_page(view: ReceiptView, fonts: FontSet) -> Writer:
    """The PDF (metadata, footer, border) with the title drawn, and the writer set for the compact layout."""
    eid = view.evidence_id or "—"
    pdf = new_pdf(f"存证证书 Certificate of Deposit {eid}", f"SHA-256 {view.sha256 or ''}", auto_break=False)
    if view.origin:
        pdf.set_author(view.origin)
    w = Writer(pdf, fonts, left=16, right=16)
    w.row_pad = 1.5
    w.section_gap = 1.2
    pdf.footer_text = (  # type: ignore[attr-defined]
        f"机器可读回执 {ATTACHMENT_NAME} 已嵌入本 PDF · the machine-readable receipt ({ATTACHMENT_NAME}) "
        "is attached inside this PDF"
    )
    pdf.add_page()
    draw_title(w, "存证证书", "Certificate of Deposit", f"账本 Ledger: {view.origin or '—'}", f"编号 No. {eid}")
    return w


def _preamble(c: _Certificate) -> None:
    origin = c.view.origin
    c.w.paragraph(
        f"兹证明：下列 SHA-256 摘要所对应的电子数据已提交至 {origin or '本'} 存证账本，并经封存、签名。",
        size=9,
    )
    c.w.paragraph(
        "This certifies that the electronic data with the SHA-256 digest below was deposited in the ledger "
        f"of {origin or 'this service'}, sealed in a batch and covered by a signed checkpoint.",
        size=8.4,
        color=GREY,
    )


def _section_evidence(c: _Certificate) -> None:
    w, view = c.w, c.view
    w.numbered_section("存证对象", "Deposited evidence")
    v2 = view.format == "evidence-receipt/v2"
    label = view.label if v2 else c.label
    if label:
        values: list[Value] = [("text", _fit_label(w, label))]
        if not v2:
            values.append(("small", "v1 回执：标签未被任何签名覆盖 · v1 receipt: no signature covers this label"))
        w.row("文件名称", "File / label", values)
    if view.case_id:
        w.row(
            "案件与阶段",
            "Case / phase",
            [("mono", view.case_id), ("text", f"第 {view.phase} 阶段 phase {view.phase}: {view.phase_name or ''}")],
        )
    if v2:
        _row_parties(c)
    w.row("存证编号", "Evidence ID", [("mono", view.evidence_id or "—")])
    digest = view.sha256 or "—"
    sha_values = [("mono", digest)]
    if re.fullmatch(r"[0-9a-f]{64}", digest):
        sha_values.append(("smallmono", " ".join(digest[i : i + 4] for i in range(0, 64, 4))))
    w.row("文件哈希值", "File SHA-256", sha_values)
    w.row("接收时间", "Received", [("text", t) for t in time_lines(view.received, c.zone)])


_TRUST = {
    "ca": "证书经受信任 CA 验证 · certificate verified against a trusted CA",
    "unchecked": "证书未经 CA 验证 · certificate not checked against a CA",
    "key": "登记公钥 · bare Ed25519 key registered with the operator",
}


def _row_parties(c: _Certificate) -> None:
    """Receipt v2: who deposited (and countersigned), or "unattested"; and that the ledger binds label and signer."""
    parties = list(c.parties or [])
    bound = (
        "标签、案件与签名均由账本绑定 · the label is bound by the ledger, with the case and the signature (receipt v2)"
    )
    if not parties:
        text = "未签名（无存证人签名）· unattested: no depositor signed this deposit"
        c.w.row("存证人", "Depositor", [("small", f"{text}; {bound}")])
        return
    values: list[Value] = []
    for party in parties:
        who = party.identity if party.countersigned is None else f"{party.identity}（会签 countersigned）"
        values.append(("small", f"{who} — {_TRUST.get(party.trust, party.trust)}"))
    values.append(("small", bound))
    c.w.row("存证人", "Depositor(s)", values)


def _fit_label(w: Writer, label: str) -> str:
    """The label, cut with an ellipsis to two lines of the value column (the SHA-256 identifies the file;
    the label only helps a reader recognise it)."""
    label = " ".join(label.split())
    w.font(9.2)
    budget = 2 * (w.width - w.label_w) - 12
    if w.pdf.get_string_width(label) <= budget:
        return label
    # Linear: add up the characters' advances to find the cut (the old character-by-character re-measuring of the
    # whole prefix was quadratic: 304 s for an 11,000-character label), then check the result once.
    room = budget - w.pdf.get_string_width("…")
    width, cut = 0.0, 0
    for ch in label:
        width += w.pdf.get_string_width(ch)
        if width > room:
            break
        cut += 1
    label = label[:cut]
    while label and w.pdf.get_string_width(label + "…") > budget:  # rounding: at most a character or two
        label = label[:-1]
    return label + "…"


def _section_sealing(c: _Certificate) -> None:
    """Sealing, ledger and trust: when, where in the ledger, who signed, which timestamps."""
    w, view = c.w, c.view
    w.numbered_section("封存与账本", "Sealing and ledger")
    w.row("封存时间", "Sealed", [("text", t) for t in time_lines(view.sealed, c.zone)])
    w.row(
        "批次与账本位置",
        "Batch, ledger position",
        [
            (
                "text",
                f"批次序号 batch seq {num(view.batch_seq)} · 叶子索引 leaf index {num(view.batch_index)} · "
                f"批次大小 batch size {num(view.batch_size)}",
            ),
            (
                "text",
                f"账本条目 ledger entry {num(view.batch_seq)} · 检查点大小 checkpoint size {num(view.checkpoint_size)}",
            ),
        ],
    )
    w.row("检查点来源", "Checkpoint origin", [("mono", view.origin or "—")])
    _row_signing_key(c)
    _row_sm2_key(c)
    _row_timestamps(c)
    _row_witnesses(c)


def _row_witnesses(c: _Certificate) -> None:
    """Each witness that cosigned the checkpoint (checked by the caller): name, cosigning time, fingerprint; at
    most three, to keep one page. Absent without witnesses."""
    shown = sorted(c.witnesses or (), key=lambda w: (w.cosigned, w.name))
    if not shown:
        return
    values: list[Value] = []
    for witness in shown[: c.witnesses_shown]:
        utc = time_lines(witness.cosigned, c.zone)[0]
        values.append(("small", f"{witness.name} · {utc}"))
        values.append(("smallmono", witness.fingerprint))
    if len(shown) > c.witnesses_shown:
        more = len(shown) - c.witnesses_shown
        values.append(("small", f"另有 {more} 个，见 receipt.json · and {more} more in receipt.json"))
    # The label says what the times mean: each bounds the sealing time from above, independently of the operator.
    c.w.row("见证联署（时间上限）", "Witnessed no later than", values)


def _row_signing_key(c: _Certificate) -> None:
    """The operator key fingerprint: the one the issuer trusts, else the receipt's key hint, labelled as such."""
    hint = hint_fingerprint(c.view)
    values: list[Value]

    def fp(value: str) -> list[Value]:
        # With an SM2 row below, the fingerprint takes one small line instead of two, so the page still fits.
        if sm2_hint(c.view) is not None:
            return [("smallmono", value)]
        return [("mono", value[:39]), ("mono", value[40:])]

    if c.trusted is not None:
        values = [
            *fp(c.trusted),
            ("small", "来源：出具方信任的运营方公钥"),
            ("small", "Source: the operator key trusted by the issuer"),
        ]
        if hint is not None and hint != c.trusted:
            values.append(
                ("warn", "注意：回执中的密钥提示指纹不同 · Note: the receipt's key hint has another fingerprint")
            )
    elif hint is not None:
        values = [
            *fp(hint),
            ("small", "来源：由回执中的密钥提示计算，须与运营方公布的指纹核对"),
            ("small", "Source: the receipt's key hint (no trust anchor): compare with the operator's published one"),
        ]
    else:
        values = [("text", "— 回执未提供密钥 · no key in the receipt: ask the operator for its fingerprint")]
    c.w.row("签名密钥指纹", "Signing-key fingerprint", values)


def _row_sm2_key(c: _Certificate) -> None:
    """The operator's SM2 key (SPEC §4.1), when the checkpoint carries its signature: SM3 fingerprint first (for
    domestic paperwork) and its distinguishing ID; its SHA-256 fingerprint is at /v1/keys. Absent for
    Ed25519-only receipts."""
    hint = sm2_hint(c.view)
    if hint is None:
        return
    c.w.row(
        "SM2 签名密钥（国密）",
        "SM2 signing key",
        [
            ("smallmono", hint.fingerprint_sm3),
            ("small", f"SM3 指纹 · SM3 fingerprint of the SM2 public key (SM2 with SM3, ID {hint.distid})"),
        ],
    )


def _row_timestamps(c: _Certificate) -> None:
    """The RFC 3161 timestamps the caller decoded (at most two, to keep one page), else how many tokens."""
    timestamps, zone = c.timestamps or (), c.zone
    if len(timestamps) == 1:
        stamp = timestamps[0]
        values = [("text", t) for t in time_lines(stamp.gen_time, zone)]
        values += [("text", f"时间戳机构 TSA: {stamp.authority}"), ("small", _stamp_check(stamp))]
        c.w.row("可信时间戳", "RFC 3161 timestamp", values)
    elif timestamps:
        values = []
        for stamp in timestamps[:2]:
            utc, *local = time_lines(stamp.gen_time, zone)
            values.append(("text", f"{utc} · {stamp.authority}"))
            values.append(("small", " · ".join([*local, _stamp_check(stamp)])))
        if len(timestamps) > 2:
            more = len(timestamps) - 2
            values.append(("small", f"另有 {more} 个，见 receipt.json · and {more} more in receipt.json"))
        c.w.row("可信时间戳", "RFC 3161 timestamps", values)
    elif c.view.token_count:
        count = c.view.token_count
        c.w.row(
            "可信时间戳",
            "RFC 3161 timestamp",
            [
                ("text", f"回执含 {count} 个 RFC 3161 时间戳令牌，见 receipt.json，本页未解读"),
                ("small", f"{count} token(s) in receipt.json, not decoded here: check with --tsa-ca"),
            ],
        )
    else:
        c.w.row(
            "可信时间戳",
            "RFC 3161 timestamp",
            [("text", "无（未配置或尚未取得）· none (not configured, or still pending)")],
        )


def _stamp_check(stamp: TimestampDisplay) -> str:
    if stamp.verified:
        return "已对照受信任的 TSA 根证书验证 · verified against a trusted TSA root"
    return "出具方未验证 · not verified by the issuer"


def _install_step(public_url: str | None) -> tuple[str, str]:
    """Where to get the verifier: the issuing service serves it (``evidence-ledger`` is on no public index)."""
    if public_url:
        command = install_command(public_url)
        return (f"安装开源验证工具（一次即可）：{command}", f"Install the open-source verifier (once): {command}")
    return (
        f"从出具服务的 {DOWNLOAD_PATH} 页面安装开源验证工具 {PACKAGE}。",
        f"Install the open-source verifier {PACKAGE} from the issuing service's {DOWNLOAD_PATH} page.",
    )


def _verify_steps(c: _Certificate) -> list[tuple[str, str]]:
    """The numbered (Chinese, English) instructions of the how-to-verify section."""
    return [
        _install_step(c.public_url),
        (
            "从运营方公开渠道获取其验证公钥（vkey），核对其指纹与上方所印指纹完全一致。",
            "Get the operator's verifier key (vkey) from its published source; check that its fingerprint "
            "matches the one printed above.",
        ),
        (
            "运行：evidence verify certificate.pdf contract.pdf --key <运营方公钥>"
            "（certificate.pdf 为本证书，contract.pdf 为原始文件）。",
            "Run: evidence verify certificate.pdf contract.pdf --key <operator vkey> (this certificate, then the "
            'original file). "valid" (exit code 0) means every check passed.',
        ),
        ("或扫描右侧二维码，在验证网页上完成同样的检查。", "Or scan the QR code to open the verification web page."),
    ]


def _section_how_to_verify(c: _Certificate) -> None:
    """The steps on the left, the QR code (``verify_url``) and its URL on the right."""
    w = c.w
    pdf = w.pdf
    w.numbered_section("独立验证方法", "How to verify independently")
    qr_size = 36.0
    top = pdf.get_y() + 1
    text_w = w.width - qr_size - 6
    pdf.set_y(top)
    for number, (zh, en) in enumerate(_verify_steps(c), start=1):
        w.font(8.4, bold=True)
        w.color(NAVY)
        pdf.set_x(w.left)
        pdf.cell(4.5, 8.4 * 0.3528 * 1.45, f"{number}.")
        w.paragraph(zh, size=8.4, width=text_w - 4.5, indent=4.5)
        w.paragraph(en, size=7.6, color=GREY, width=text_w - 4.5, indent=4.5)
        pdf.set_y(pdf.get_y() + 0.5)
    text_bottom = pdf.get_y()
    qr_x = w.left + w.width - qr_size
    draw_qr(pdf, c.verify_url, qr_x, top, qr_size)
    pdf.set_xy(qr_x - 4, top + qr_size)
    w.font(6.4, mono=True)
    w.color(GREY)
    from fpdf.enums import WrapMode  # URLs have no spaces: break them anywhere

    url = c.verify_url
    shown_url = url if len(url) <= 84 else url[:83] + "…"  # at most three lines
    pdf.multi_cell(qr_size + 8, 2.8, shown_url, align="C", wrapmode=WrapMode.CHAR, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(text_bottom, pdf.get_y()) + 1)


def _section_scope(c: _Certificate) -> None:
    """What the certificate proves and what it does not."""
    c.w.numbered_section("证明范围", "What this certificate proves")
    c.w.paragraph(
        "本证书证明：与上述 SHA-256 摘要相符的文件自存证以来未被改动，且不晚于封存时间（及有效时间戳的时间）已经存在。"
        "本证书不证明：文件由谁制作、如何形成、其内容是否真实，亦不判断其法律效力。",
        size=8.2,
    )
    c.w.paragraph(
        "It proves that a file matching the SHA-256 above is unchanged since deposit and existed no later "
        "than the sealing time (and any valid timestamp's time). It does NOT prove who made the file, how, "
        "whether its content is true, or its legal effect.",
        size=7.6,
        color=GREY,
    )


def _check_one_page(c: _Certificate) -> None:
    pdf = c.w.pdf
    if pdf.page_no() != 1 or pdf.get_y() > pdf.h - 13.5:  # 13.5 mm: where the footer starts
        raise _Overflow(
            f"the certificate does not fit on one page (content ends at {pdf.get_y():.0f} mm); "
            "is the checkpoint origin unusually long?"
        )
