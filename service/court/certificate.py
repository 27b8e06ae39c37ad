"""Court-ready PDFs: the certificate of deposit (存证证书) and the verification report (验证报告).

Owns: rendering both documents as pure functions (receipt and facts in, PDF bytes out), attaching the
machine-readable receipt inside the PDF as ``receipt.json``, and reading it back (``extract_receipt``).

This module *displays*; it proves nothing. It parses the receipt (SPEC §6) minimally and tolerantly, so a
certificate can be drawn for any receipt the service built and a report for any receipt a person brought,
even a broken one. Checking is the verifier's job (``service.core.verify``), and the steps printed on the
certificate tell the reader how to run it themselves.

Must not import: anything in ``service`` but ``errors`` and ``fonts`` (the verifier imports
``extract_receipt``, so pypdf is imported lazily inside it and fpdf2/segno only inside the renderers).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.core.errors import FormatError, NotACertificate
from service.court.fonts import FontSet, find_fonts

if TYPE_CHECKING:
    from fpdf import FPDF

ATTACHMENT_NAME = "receipt.json"
RESULT_ATTACHMENT_NAME = "verification-result.json"

__all__ = [
    "ATTACHMENT_NAME",
    "TimestampDisplay",
    "extract_receipt",
    "format_fingerprint",
    "receipt_bytes",
    "render_certificate",
    "render_report",
]


@dataclass(frozen=True)
class TimestampDisplay:
    """One RFC 3161 timestamp to print: its genTime, the TSA that signed it, and whether the caller checked
    the token against a trusted TSA root (``service.core.timestamps.verify_token``) before handing it here."""

    gen_time: datetime
    authority: str
    verified: bool = False


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


# --- tolerant reading of the receipt (display only) ----------------------------------------------


@dataclass(frozen=True)
class _ReceiptView:
    evidence_id: str | None
    sha256: str | None
    received: str | None
    batch_seq: int | None
    batch_size: int | None
    batch_index: int | None
    sealed: str | None
    origin: str | None
    checkpoint_size: int | None
    signature_key_hashes: tuple[str, ...]
    keys: tuple[str, ...]
    token_count: int


def _obj(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _lines(data: bytes | None) -> dict[str, str]:
    """``key value`` lines of a leaf (SPEC §2) or ledger entry (SPEC §3) as a dict."""
    if data is None:
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n")[1:]:
        key, sep, value = line.partition(" ")
        if sep and key not in fields:
            fields[key] = value
    return fields


def _read_receipt(receipt: Mapping[str, object]) -> _ReceiptView:
    evidence, batch, ledger = _obj(receipt.get("evidence")), _obj(receipt.get("batch")), _obj(receipt.get("ledger"))
    # The leaf and entry bytes are what is hashed and signed, so they win over the JSON copies.
    leaf = _lines(_b64(evidence.get("leaf")))
    entry = _lines(_b64(ledger.get("entry")))

    origin: str | None = None
    checkpoint_size: int | None = None
    sig_hashes: list[str] = []
    note = _str(ledger.get("checkpoint"))
    if note is not None:
        body, _, signatures = note.partition("\n\n")
        body_lines = body.split("\n")
        origin = body_lines[0] or None
        checkpoint_size = _int(body_lines[1]) if len(body_lines) > 1 else None
        for line in signatures.split("\n"):
            if line.startswith("\u2014 "):
                parts = line.split(" ")
                sig = _b64(parts[-1]) if len(parts) >= 3 else None
                if sig is not None and len(sig) >= 4:
                    sig_hashes.append(sig[:4].hex())

    keys_value = receipt.get("keys")
    keys = tuple(k for k in keys_value if isinstance(k, str)) if isinstance(keys_value, list) else ()
    stamps = receipt.get("timestamps")
    token_count = len(stamps) if isinstance(stamps, list) else 0

    return _ReceiptView(
        evidence_id=_str(leaf.get("id")) or _str(evidence.get("id")),
        sha256=_str(leaf.get("sha256")) or _str(evidence.get("sha256")),
        received=_str(leaf.get("received")) or _str(evidence.get("received_at")),
        batch_seq=_int(entry.get("seq")) if "seq" in entry else _int(batch.get("seq")),
        batch_size=_int(entry.get("size")) if "size" in entry else _int(batch.get("size")),
        batch_index=_int(batch.get("index")),
        sealed=_str(entry.get("sealed")),
        origin=origin,
        checkpoint_size=checkpoint_size,
        signature_key_hashes=tuple(sig_hashes),
        keys=keys,
        token_count=token_count,
    )


def format_fingerprint(value: str | bytes) -> str:
    """A fingerprint (SPEC §4) in groups of four: from 32 raw bytes, or from 64 hex digits with or without
    spaces. :raise FormatError: anything else."""
    if isinstance(value, bytes):
        if len(value) != 32:
            raise FormatError(f"a fingerprint is 32 bytes, found {len(value)}")
        digits = value.hex()
    else:
        digits = "".join(value.split()).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            raise FormatError(f"a fingerprint is 64 hex digits (spaces allowed), found {value!r}")
    return " ".join(digits[i : i + 4] for i in range(0, 64, 4))


def _vkey_fingerprint(vkey: str) -> tuple[str, str, str] | None:
    """(name, key hash hex, fingerprint) of a verifier key string (SPEC §4), or None if it is not one."""
    parts = vkey.strip().split("+", 2)  # base64 has "+" too: split off name and key hash only
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        return None
    raw = _b64(parts[2])
    if raw is None or len(raw) != 33 or raw[0] != 0x01:
        return None
    return parts[0], parts[1], format_fingerprint(hashlib.sha256(raw[1:]).digest())


def _hint_fingerprint(view: _ReceiptView) -> str | None:
    """The fingerprint of the hinted key that signed the checkpoint (by key hash and name), if any."""
    parsed = [p for p in (_vkey_fingerprint(k) for k in view.keys) if p is not None]
    for name, key_hash, fingerprint in parsed:
        if key_hash in view.signature_key_hashes and (view.origin is None or name == view.origin):
            return fingerprint
    for name, _, fingerprint in parsed:
        if name == view.origin:
            return fingerprint
    return parsed[0][2] if parsed else None


# --- times ---------------------------------------------------------------------------------------


def _zone(local_tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(local_tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FormatError(f"unknown time zone {local_tz!r} (expected an IANA name like Asia/Shanghai)") from exc


def _parse_time(value: str | datetime | None) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _offset(dt: datetime) -> str:
    delta = dt.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _time_lines(value: str | datetime | None, zone: ZoneInfo) -> list[str]:
    """UTC and local renderings of a time. Microseconds are kept: rounding "no later than" down to the
    second would claim a little more than the ledger proves."""
    dt = _parse_time(value)
    if dt is None:
        return [str(value) if value else "—"]
    utc = dt.astimezone(UTC)
    local = dt.astimezone(zone)
    fmt = "%Y-%m-%d %H:%M:%S.%f" if utc.microsecond else "%Y-%m-%d %H:%M:%S"
    return [f"{utc.strftime(fmt)} UTC", f"{local.strftime(fmt)} {zone.key} ({_offset(local)})"]


def _stamp_check(stamp: TimestampDisplay) -> str:
    if stamp.verified:
        return "已对照受信任的 TSA 根证书验证 · verified against a trusted TSA root"
    return "出具方未验证 · not verified by the issuer"


def _num(value: int | None) -> str:
    return f"{value:,}" if value is not None else "—"


# --- drawing helpers -----------------------------------------------------------------------------

_NAVY = (22, 44, 84)
_GREY = (95, 99, 104)
_RULE = (170, 176, 186)
_BAND = (236, 240, 246)
_GREEN = (20, 110, 50)
_RED = (170, 30, 30)


# Chinese typesetting rules (禁则): these never start a line, and these never end one.
_NO_LINE_START = "，。、；：？！）》」』】〉,.;:?!)"
_NO_LINE_END = "（《「『【〈("
_TOKEN = re.compile(
    rf"[{re.escape(_NO_LINE_END)}]*"  # opening brackets stick to what follows
    r"(?:[\u2e80-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]|[^\s\u2e80-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+)"
    rf"[{re.escape(_NO_LINE_START)}]*"  # closing punctuation sticks to what precedes
    r"|\s+"
)


def _wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Break ``text`` into lines no wider than ``width``. A line may break between two Chinese characters or
    at a space, never inside a Latin word, and never before closing or after opening punctuation; only a
    single word wider than the line (a URL, a key) is cut, anywhere."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current, space = "", False
        for token in _TOKEN.findall(paragraph):
            if token.isspace():
                space = bool(current)
                continue
            candidate = current + (" " if space else "") + token
            space = False
            if measure(candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = ""
            for ch in token:  # fits on a fresh line, or else is cut where it must be
                if current and measure(current + ch) > width:
                    lines.append(current)
                    current = ""
                current += ch
        lines.append(current)
    return lines


class _Writer:
    """A thin layer over fpdf2 holding the fonts and the layout: bilingual labels, sections, rows."""

    def __init__(self, pdf: FPDF, fonts: FontSet, *, left: float, right: float) -> None:
        self.pdf = pdf
        self.left = left
        self.width = pdf.w - left - right
        self.label_w = 44.0
        self.row_pad = 2.2
        self.section_gap = 2.2
        pdf.add_font("cjk", "", str(fonts.cjk.path), collection_font_number=fonts.cjk.index)
        self.has_bold = fonts.cjk_bold is not None
        if fonts.cjk_bold is not None:
            pdf.add_font("cjk", "B", str(fonts.cjk_bold.path), collection_font_number=fonts.cjk_bold.index)
        self.mono_family = "cjk"
        if fonts.mono is not None:
            pdf.add_font("mono", "", str(fonts.mono.path), collection_font_number=fonts.mono.index)
            self.mono_family = "mono"
        # Glyphs the Latin mono font lacks (a Chinese file name, say) come from the CJK font.
        pdf.set_fallback_fonts(["cjk"], exact_match=False)

    def font(self, size: float, *, bold: bool = False, mono: bool = False) -> None:
        if mono:
            self.pdf.set_font(self.mono_family, "", size)
        else:
            self.pdf.set_font("cjk", "B" if bold and self.has_bold else "", size)

    def color(self, rgb: tuple[int, int, int]) -> None:
        self.pdf.set_text_color(*rgb)

    def ensure_room(self, height: float) -> None:
        """Start a new page if ``height`` does not fit (the report; the certificate never breaks)."""
        if self.pdf.auto_page_break and self.pdf.get_y() + height > self.pdf.page_break_trigger:
            self.pdf.add_page()

    def section(self, zh: str, en: str) -> None:
        pdf = self.pdf
        self.ensure_room(30)  # a heading plus at least one or two rows, never a heading alone
        pdf.ln(self.section_gap)
        y = pdf.get_y()
        pdf.set_fill_color(*_BAND)
        pdf.rect(self.left, y, self.width, 7.2, style="F")
        pdf.set_fill_color(*_NAVY)
        pdf.rect(self.left, y, 1.2, 7.2, style="F")
        pdf.set_xy(self.left + 3.5, y + 0.6)
        self.font(10.5, bold=True)
        self.color(_NAVY)
        pdf.cell(pdf.get_string_width(zh) + 3, 6, zh)
        self.font(9.5)
        pdf.cell(0, 6, en)
        pdf.set_xy(self.left, y + 7.2 + 0.8)
        self.color((0, 0, 0))

    def row(
        self,
        zh: str,
        en: str,
        values: Sequence[tuple[str, str]],
        *,
        label_w: float | None = None,
    ) -> None:
        """One table row: a bilingual label on the left, value lines on the right. Each value is
        (style, text) with style one of "text", "mono", "small", "smallmono", "bold", "warn"."""
        pdf = self.pdf
        lw = self.label_w if label_w is None else label_w
        vw = self.width - lw
        heights = [self._value(style, text, vw, dry=True) for style, text in values]
        label_h = 8.0 if en else 4.4
        height = max(label_h, sum(heights)) + self.row_pad
        self.ensure_room(height)
        y = pdf.get_y()
        pdf.set_xy(self.left + 1.5, y + self.row_pad / 2)
        self.font(8.8, bold=True)
        self.color((30, 30, 30))
        pdf.cell(lw - 1.5, 4.2, zh)
        if en:
            pdf.set_xy(self.left + 1.5, y + self.row_pad / 2 + 3.9)
            self.font(7.4)
            self.color(_GREY)
            pdf.cell(lw - 1.5, 3.4, en)
        vy = y + self.row_pad / 2
        for style, text in values:
            pdf.set_xy(self.left + lw, vy)
            vy += self._value(style, text, vw, dry=False)
        pdf.set_draw_color(*_RULE)
        pdf.set_line_width(0.15)
        pdf.line(self.left, y + height, self.left + self.width, y + height)
        pdf.set_xy(self.left, y + height)
        self.color((0, 0, 0))

    def _value(self, style: str, text: str, width: float, *, dry: bool) -> float:
        sizes = {
            "text": 9.2,
            "bold": 9.2,
            "pass": 9.2,
            "fail": 9.2,
            "mono": 8.8,
            "small": 7.6,
            "smallmono": 7.4,
            "warn": 8.0,
        }
        size = sizes[style]
        self.font(size, bold=style in ("bold", "pass", "fail"), mono=style in ("mono", "smallmono"))
        colors = {"small": _GREY, "smallmono": _GREY, "warn": _RED, "pass": _GREEN, "fail": _RED}
        self.color(colors.get(style, (0, 0, 0)))
        return self.block(text, width, size * 0.3528 * 1.42, dry=dry)

    def block(self, text: str, width: float, line_h: float, *, dry: bool = False) -> float:
        """Draw ``text`` wrapped to ``width`` from the current position (in the current font) and return
        its height. See ``_wrap`` for where lines break."""
        lines = _wrap(text, width, self.pdf.get_string_width)
        if not dry:
            x = self.pdf.get_x()
            for line in lines:
                self.pdf.set_x(x)
                self.pdf.cell(width, line_h, line, new_x="LEFT", new_y="NEXT")
        return line_h * len(lines)

    def paragraph(
        self,
        text: str,
        *,
        size: float = 8.6,
        color: tuple[int, int, int] = (0, 0, 0),
        indent: float = 0.0,
        width: float | None = None,
        bold: bool = False,
    ) -> None:
        pdf = self.pdf
        w = (self.width - indent) if width is None else width
        self.font(size, bold=bold)
        self.color(color)
        line_h = size * 0.3528 * 1.45
        self.ensure_room(line_h * 2)
        pdf.set_x(self.left + indent)
        self.block(text, w, line_h)
        pdf.set_x(self.left)
        self.color((0, 0, 0))


def _new_pdf(title: str, subject: str, *, auto_break: bool) -> FPDF:
    from fpdf import FPDF

    class _Pdf(FPDF):
        footer_text = ""

        def header(self) -> None:
            _page_border(self)

        def footer(self) -> None:
            self.set_y(-13)
            self.set_font("cjk", "", 7)
            self.set_text_color(*_GREY)
            self.cell(0, 4, self.footer_text, align="L")
            if auto_break:
                self.set_x(self.l_margin)
                self.cell(0, 4, f"第 {self.page_no()} 页，共 {{nb}} 页 · Page {self.page_no()} of {{nb}}", align="R")

    pdf = _Pdf(orientation="P", unit="mm", format="A4")
    pdf.set_margins(16, 16, 16)
    pdf.set_auto_page_break(auto_break, margin=20)
    pdf.set_title(title)
    pdf.set_subject(subject)
    pdf.set_creator("Evidence Ledger")
    pdf.set_lang("zh-CN")
    return pdf


def _page_border(pdf: FPDF) -> None:
    pdf.set_draw_color(*_NAVY)
    pdf.set_line_width(0.6)
    pdf.rect(8, 8, pdf.w - 16, pdf.h - 16)
    pdf.set_line_width(0.2)
    pdf.rect(9.6, 9.6, pdf.w - 19.2, pdf.h - 19.2)


def _title(w: _Writer, zh: str, en: str, top_left: str, top_right: str) -> None:
    pdf = w.pdf
    pdf.set_xy(w.left, 13.5)
    w.font(7.4)
    w.color(_GREY)
    pdf.cell(w.width / 2, 4, top_left)
    pdf.cell(w.width / 2, 4, top_right, align="R")
    pdf.set_xy(w.left, 19.5)
    w.font(24, bold=True)
    w.color(_NAVY)
    pdf.set_char_spacing(6)
    pdf.cell(w.width, 11, zh, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_char_spacing(1.2)
    w.font(12.5, bold=True)
    pdf.cell(w.width, 7, en.upper(), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_char_spacing(0)
    y = pdf.get_y() + 2.5
    pdf.set_draw_color(*_NAVY)
    pdf.set_line_width(0.5)
    pdf.line(w.left + 40, y, w.left + w.width - 40, y)
    pdf.set_line_width(0.15)
    pdf.line(w.left + 40, y + 1.0, w.left + w.width - 40, y + 1.0)
    pdf.set_xy(w.left, y + 3.2)
    w.color((0, 0, 0))


def _draw_qr(pdf: FPDF, data: str, x: float, y: float, size: float) -> None:
    """The QR code as vector rectangles (crisp at any zoom or print resolution), with its quiet zone."""
    import segno

    qr = segno.make(data, error="m", micro=False)
    matrix = qr.matrix
    quiet = 4
    n = len(matrix) + 2 * quiet
    cell = size / n
    pdf.set_fill_color(255, 255, 255)
    pdf.rect(x, y, size, size, style="F")
    pdf.set_fill_color(0, 0, 0)
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                # a hair of overlap so viewers show no seams between modules
                pdf.rect(
                    x + (quiet + start) * cell,
                    y + (quiet + r) * cell,
                    (c - start) * cell + 0.02,
                    cell + 0.02,
                    style="F",
                )
            else:
                c += 1


def _output(pdf: FPDF) -> bytes:
    return bytes(pdf.output())


def _embed_json(pdf: FPDF, name: str, data: bytes, desc: str) -> None:
    pdf.embed_file(bytes=data, basename=name, mime_type="application/json", desc=desc, compress=True)


# --- the certificate -----------------------------------------------------------------------------


def _fit_label(w: _Writer, label: str) -> str:
    """The label, cut with an ellipsis to two lines of the value column (the SHA-256 identifies the file;
    the label only helps a reader recognise it)."""
    label = " ".join(label.split())
    w.font(9.2)
    budget = 2 * (w.width - w.label_w) - 12
    if w.pdf.get_string_width(label) <= budget:
        return label
    while label and w.pdf.get_string_width(label + "…") > budget:
        label = label[:-1]
    return label + "…"


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
) -> bytes:
    """Return a one-page A4 certificate of deposit (存证证书) for a sealed receipt, as PDF bytes.

    ``receipt`` is the SPEC §6 JSON object; it is attached to the PDF as ``receipt.json`` (the caller's
    original ``receipt_json`` bytes if given, else ``receipt_bytes(receipt)``). ``verify_url`` goes into the
    QR code. ``timestamps`` are RFC 3161 tokens the caller decoded (and ideally checked); None means "not
    decoded here" and the page says how many tokens the receipt carries. ``trusted_fingerprint`` is the
    operator key fingerprint the caller trusts; without it the fingerprint is computed from the receipt's
    ``keys`` hint and labelled as such. ``fonts`` defaults to ``find_fonts()``.

    :raise FontMissing: no CJK font is installed (the message names the Debian package).
    :raise FormatError: unknown ``local_tz``, malformed ``trusted_fingerprint``, or ``receipt_json`` that
        does not parse to ``receipt``.
    """
    zone = _zone(local_tz)
    attached = receipt_bytes(receipt) if receipt_json is None else bytes(receipt_json)
    if receipt_json is not None:
        try:
            same = json.loads(attached) == receipt
        except ValueError:
            same = False
        if not same:
            raise FormatError("receipt_json does not parse to the receipt given; refusing to attach it")
    trusted = format_fingerprint(trusted_fingerprint) if trusted_fingerprint is not None else None
    view = _read_receipt(receipt)
    fonts = find_fonts() if fonts is None else fonts

    eid = view.evidence_id or "—"
    pdf = _new_pdf(f"存证证书 Certificate of Deposit {eid}", f"SHA-256 {view.sha256 or ''}", auto_break=False)
    if view.origin:
        pdf.set_author(view.origin)
    w = _Writer(pdf, fonts, left=16, right=16)
    w.row_pad = 1.5
    w.section_gap = 1.2
    pdf.footer_text = (  # type: ignore[attr-defined]
        f"机器可读回执 {ATTACHMENT_NAME} 已嵌入本 PDF · the machine-readable receipt ({ATTACHMENT_NAME}) "
        "is attached inside this PDF"
    )
    pdf.add_page()
    _title(w, "存证证书", "Certificate of Deposit", f"账本 Ledger: {view.origin or '—'}", f"编号 No. {eid}")

    w.paragraph(
        f"兹证明：下列 SHA-256 摘要所对应的电子数据已提交至 {view.origin or '本'} 存证账本，并经封存、签名。",
        size=9,
    )
    w.paragraph(
        "This certifies that the electronic data with the SHA-256 digest below was deposited in the ledger "
        f"of {view.origin or 'this service'}, sealed in a batch and covered by a signed checkpoint.",
        size=8.4,
        color=_GREY,
    )

    # Section 1: the evidence
    w.section("一、存证对象", "Deposited evidence")
    if label:
        w.row("文件名称", "File / label", [("text", _fit_label(w, label))])
    w.row("存证编号", "Evidence ID", [("mono", eid)])
    digest = view.sha256 or "—"
    sha_values = [("mono", digest)]
    if re.fullmatch(r"[0-9a-f]{64}", digest):
        sha_values.append(("smallmono", " ".join(digest[i : i + 4] for i in range(0, 64, 4))))
    w.row("文件哈希值", "File SHA-256", sha_values)
    w.row("接收时间", "Received", [("text", t) for t in _time_lines(view.received, zone)])

    # Section 2: sealing, ledger and trust
    w.section("二、封存与账本", "Sealing and ledger")
    w.row("封存时间", "Sealed", [("text", t) for t in _time_lines(view.sealed, zone)])
    w.row(
        "批次与账本位置",
        "Batch, ledger position",
        [
            (
                "text",
                f"批次序号 batch seq {_num(view.batch_seq)} · 叶子索引 leaf index {_num(view.batch_index)} · "
                f"批次大小 batch size {_num(view.batch_size)}",
            ),
            (
                "text",
                f"账本条目 ledger entry {_num(view.batch_seq)} · "
                f"检查点大小 checkpoint size {_num(view.checkpoint_size)}",
            ),
        ],
    )
    w.row("检查点来源", "Checkpoint origin", [("mono", view.origin or "—")])
    hint = _hint_fingerprint(view)
    if trusted is not None:
        fp_values = [
            ("mono", trusted[:39]),
            ("mono", trusted[40:]),
            ("small", "来源：出具方信任的运营方公钥"),
            ("small", "Source: the operator key trusted by the issuer"),
        ]
        if hint is not None and hint != trusted:
            fp_values.append(
                ("warn", "注意：回执中的密钥提示指纹不同 · Note: the receipt's key hint has another fingerprint")
            )
    elif hint is not None:
        fp_values = [
            ("mono", hint[:39]),
            ("mono", hint[40:]),
            ("small", "来源：由回执中的密钥提示计算，须与运营方公布的指纹核对"),
            ("small", "Source: the receipt's key hint (no trust anchor): compare with the operator's published one"),
        ]
    else:
        fp_values = [("text", "— 回执未提供密钥 · no key in the receipt: ask the operator for its fingerprint")]
    w.row("签名密钥指纹", "Signing-key fingerprint", fp_values)

    if len(timestamps or ()) == 1:
        stamp = (timestamps or [])[0]
        tsa_values = [("text", t) for t in _time_lines(stamp.gen_time, zone)]
        tsa_values += [("text", f"时间戳机构 TSA: {stamp.authority}"), ("small", _stamp_check(stamp))]
        w.row("可信时间戳", "RFC 3161 timestamp", tsa_values)
    elif timestamps:
        # Several TSAs: two lines each, and at most two of them, so the page stays one page.
        tsa_values = []
        for stamp in timestamps[:2]:
            utc, *local = _time_lines(stamp.gen_time, zone)
            tsa_values.append(("text", f"{utc} · {stamp.authority}"))
            tsa_values.append(("small", " · ".join([*local, _stamp_check(stamp)])))
        if len(timestamps) > 2:
            more = len(timestamps) - 2
            tsa_values.append(("small", f"另有 {more} 个，见 receipt.json · and {more} more in receipt.json"))
        w.row("可信时间戳", "RFC 3161 timestamps", tsa_values)
    elif view.token_count:
        w.row(
            "可信时间戳",
            "RFC 3161 timestamp",
            [
                ("text", f"回执含 {view.token_count} 个 RFC 3161 时间戳令牌，见 receipt.json，本页未解读"),
                ("small", f"{view.token_count} token(s) in receipt.json, not decoded here: check with --tsa-ca"),
            ],
        )
    else:
        w.row(
            "可信时间戳",
            "RFC 3161 timestamp",
            [("text", "无（未配置或尚未取得）· none (not configured, or still pending)")],
        )

    # Section 3: how to verify, with the QR code on the right
    w.section("三、独立验证方法", "How to verify independently")
    qr_size = 36.0
    top = pdf.get_y() + 1
    text_w = w.width - qr_size - 6
    steps = [
        (
            "安装开源验证工具：pip install evidence-ledger（无需联网访问本服务）。",
            "Install the open-source verifier: pip install evidence-ledger (no access to this service needed).",
        ),
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
    pdf.set_y(top)
    for number, (zh, en) in enumerate(steps, start=1):
        w.font(8.4, bold=True)
        w.color(_NAVY)
        pdf.set_x(w.left)
        pdf.cell(4.5, 8.4 * 0.3528 * 1.45, f"{number}.")
        w.paragraph(zh, size=8.4, width=text_w - 4.5, indent=4.5)
        w.paragraph(en, size=7.6, color=_GREY, width=text_w - 4.5, indent=4.5)
        pdf.set_y(pdf.get_y() + 0.5)
    text_bottom = pdf.get_y()
    qr_x = w.left + w.width - qr_size
    _draw_qr(pdf, verify_url, qr_x, top, qr_size)
    pdf.set_xy(qr_x - 4, top + qr_size)
    w.font(6.4, mono=True)
    w.color(_GREY)
    from fpdf.enums import WrapMode as WrapModeEnum  # URLs have no spaces: break them anywhere

    shown_url = verify_url if len(verify_url) <= 84 else verify_url[:83] + "…"  # at most three lines
    pdf.multi_cell(qr_size + 8, 2.8, shown_url, align="C", wrapmode=WrapModeEnum.CHAR, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(text_bottom, pdf.get_y()) + 1)

    # What it proves and what it does not
    w.section("四、证明范围", "What this certificate proves")
    w.paragraph(
        "本证书证明：与上述 SHA-256 摘要相符的文件自存证以来未被改动，且不晚于封存时间（及有效时间戳的时间）已经存在。"
        "本证书不证明：文件由谁制作、如何形成、其内容是否真实，亦不判断其法律效力。",
        size=8.2,
    )
    w.paragraph(
        "It proves that a file matching the SHA-256 above is unchanged since deposit and existed no later "
        "than the sealing time (and any valid timestamp's time). It does NOT prove who made the file, how, "
        "whether its content is true, or its legal effect.",
        size=7.6,
        color=_GREY,
    )
    if pdf.page_no() != 1 or pdf.get_y() > pdf.h - 13.5:  # 13.5 mm: where the footer starts
        raise FormatError(
            f"the certificate does not fit on one page (content ends at {pdf.get_y():.0f} mm); "
            "is the checkpoint origin unusually long?"
        )

    _embed_json(pdf, ATTACHMENT_NAME, attached, "Evidence receipt (evidence-receipt/v1, SPEC §6)")
    return _output(pdf)


# --- the verification report ---------------------------------------------------------------------

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


def _checks(result: Mapping[str, object]) -> list[tuple[int, bool, str]]:
    raw = result.get("checks")
    out: list[tuple[int, bool, str]] = []
    if isinstance(raw, list):
        for item in raw:
            check = _obj(item)
            step = _int(check.get("step"))
            if step is None:
                continue
            out.append((step, check.get("ok") is True, str(check.get("detail") or "")))
    return out


def _key_rows(value: object) -> list[tuple[str, str]]:
    """(vkey, fingerprint) of each trusted key the caller listed (strings or {"vkey","fingerprint"})."""
    rows: list[tuple[str, str]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, str):
            vkey, fingerprint = item, ""
        else:
            obj = _obj(item)
            vkey, fingerprint = str(obj.get("vkey") or ""), str(obj.get("fingerprint") or "")
        if not fingerprint:
            parsed = _vkey_fingerprint(vkey)
            fingerprint = parsed[2] if parsed else "—"
        rows.append((vkey, fingerprint))
    return rows


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
    zone = _zone(local_tz)
    view = _read_receipt(receipt)
    fonts = find_fonts() if fonts is None else fonts
    valid = result.get("valid") is True
    failed_step = _int(result.get("step"))
    reason = _str(result.get("reason"))
    statement = _str(result.get("statement"))

    pdf = _new_pdf(
        f"验证报告 Verification Report {view.evidence_id or ''}".strip(),
        "Evidence receipt verification",
        auto_break=True,
    )
    w = _Writer(pdf, fonts, left=16, right=16)
    verified_at = inputs.get("verified_at")
    when = verified_at if isinstance(verified_at, str | datetime) else datetime.now(UTC)
    when_lines = _time_lines(when, zone)
    pdf.footer_text = f"验证报告 Verification report · {when_lines[0]}"  # type: ignore[attr-defined]
    pdf.add_page()
    _title(
        w,
        "验证报告",
        "Verification Report",
        f"账本 Ledger: {view.origin or '—'}",
        f"存证编号 Evidence ID: {view.evidence_id or '—'}",
    )

    # Outcome banner
    y = pdf.get_y() + 1
    color = _GREEN if valid else _RED
    pdf.set_draw_color(*color)
    pdf.set_line_width(0.6)
    head = "验证通过 · VALID" if valid else "验证未通过 · INVALID"
    if valid:
        detail = statement or "所有检查均已通过 · all checks passed"
    else:
        step_text = (
            f"第 {failed_step} 步失败 · failed at step {failed_step}" if failed_step is not None else "失败 · failed"
        )
        detail = f"{step_text}: {reason or '—'}"
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

    # What was checked
    w.section("一、验证对象与条件", "What was checked, and how")
    w.row("回执文件", "Receipt file", [("text", str(inputs.get("receipt_name") or "—"))])
    file_name = _str(inputs.get("file_name"))
    file_sha = _str(inputs.get("file_sha256"))
    if file_name or file_sha:
        w.row("被验证文件", "File checked", [("text", file_name or "（仅提供摘要）· digest given, no file")])
        w.row("文件 SHA-256", "File SHA-256 (computed)", [("mono", file_sha or "—")])
    else:
        w.row(
            "被验证文件",
            "File checked",
            [("text", "未提供文件：第 1 步未检查 · no file given: step 1 not checked")],
        )
    keys = _key_rows(inputs.get("trusted_keys"))
    if keys:
        key_values: list[tuple[str, str]] = []
        for vkey, fingerprint in keys:
            key_values.append(("smallmono", vkey))
            halves = [fingerprint[:39], fingerprint[40:]] if len(fingerprint) == 79 else [fingerprint]
            key_values += [("mono", half) for half in halves]
        w.row("信任的公钥", "Trusted keys (fingerprint)", key_values)
    else:
        w.row("信任的公钥", "Trusted keys", [("text", "无 · none")])
    tsas = inputs.get("tsa_certificates")
    tsa_list = [str(t) for t in tsas] if isinstance(tsas, list) else []
    w.row(
        "信任的 TSA 证书",
        "Trusted TSA certificates",
        [("text", t) for t in tsa_list] or [("text", "无：时间戳不作检查 · none: timestamps not checked")],
    )
    w.row("验证时间", "Date of verification", [("text", t) for t in when_lines])
    w.row("验证工具", "Tool", [("text", str(inputs.get("tool_version") or "—"))])

    # Every check, in SPEC §6 order
    w.section("二、逐步检查记录", "Step-by-step checks (SPEC §6)")
    checks = _checks(result)
    done = {step for step, _, _ in checks}
    rows: list[tuple[int, str, str]] = []
    for step, ok, detail in checks:
        rows.append((step, "通过 PASS" if ok else "失败 FAIL", detail))
    for step in sorted(set(_STEP_NAMES) - done):
        if not valid and failed_step is not None and step > failed_step:
            why = f"验证在第 {failed_step} 步停止 · verification stopped at step {failed_step}"
        elif step == 1:
            why = "未提供文件或摘要 · no file or digest given"
        else:
            why = "—"
        rows.append((step, "未执行 NOT RUN", why))
    rows.sort(key=lambda r: r[0])
    for step, outcome, detail in rows:
        zh, en = _STEP_NAMES.get(step, (f"步骤 {step}", f"Step {step}"))
        style = {"失": "fail", "通": "pass"}.get(outcome[0], "bold")
        w.row(f"{step}. {zh}", en, [(style, outcome), ("text", detail or "—")], label_w=50)

    # The receipt, as it describes itself
    w.section("三、回执内容摘要", "The receipt, as it states itself (verified only as far as the checks above)")
    w.row("存证编号", "Evidence ID", [("mono", view.evidence_id or "—")])
    w.row("文件哈希值", "SHA-256 in receipt", [("mono", view.sha256 or "—")])
    w.row("接收时间", "Received", [("text", t) for t in _time_lines(view.received, zone)])
    w.row("封存时间", "Sealed", [("text", t) for t in _time_lines(view.sealed, zone)])
    w.row(
        "批次与账本",
        "Batch and ledger",
        [
            ("text", f"批次 seq {_num(view.batch_seq)} · 叶子 leaf {_num(view.batch_index)} / {_num(view.batch_size)}"),
            ("text", f"检查点大小 checkpoint size {_num(view.checkpoint_size)}"),
        ],
    )
    w.row("检查点来源", "Checkpoint origin", [("mono", view.origin or "—")])
    w.row("时间戳令牌", "RFC 3161 tokens", [("text", str(view.token_count))])

    # What it proves
    w.section("四、本报告证明什么、不证明什么", "What this report proves, and what it does not")
    if valid:
        w.paragraph(
            "证明：(1) 被验证文件（或摘要）与回执中的 SHA-256 一致，即该文件自存证以来未被改动；"
            f"(2) 该摘要已封存于 {view.origin or '该'} 账本，其存在时间不晚于封存时间；"
            "如第 7 步有经验证的可信时间戳，亦不晚于该时间戳时间（依该时间戳机构）。",
            size=8.8,
        )
        w.paragraph(
            "Proves: (1) the file (or digest) checked matches the SHA-256 in the receipt, so the file is "
            "unchanged since deposit; (2) that SHA-256 was sealed in the ledger of "
            f"{view.origin or 'the operator'} no later than the sealing time, and no later than the time of "
            "each timestamp verified in step 7 (per that Time-Stamp Authority).",
            size=8.0,
            color=_GREY,
        )
        pdf.ln(1.6)
    else:
        w.paragraph(
            "由于验证未通过，本报告既不能证明该文件自存证以来未被改动，也不能证明其存在时间。", size=8.8, color=_RED
        )
        w.paragraph(
            "Because verification failed, this report proves neither that the file is unchanged since deposit "
            "nor when it existed.",
            size=8.0,
            color=_RED,
        )
        pdf.ln(1.6)
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
        color=_GREY,
    )
    pdf.ln(1.6)
    w.paragraph(
        f"附件 Attached: {ATTACHMENT_NAME}（被验证的回执 the receipt checked）, {RESULT_ATTACHMENT_NAME}"
        "（机器可读结果 the machine-readable result）.",
        size=7.6,
        color=_NAVY,
    )

    _embed_json(pdf, ATTACHMENT_NAME, receipt_bytes(receipt), "The receipt that was verified")
    _embed_json(
        pdf,
        RESULT_ATTACHMENT_NAME,
        (json.dumps(result, ensure_ascii=False, indent=2) + "\n").encode("utf-8"),
        "Verification result (SPEC §8)",
    )
    return _output(pdf)
