"""Drawing for the court documents: page frame, title, bilingual sections and rows, line breaking, QR code.

Owns: ``Writer`` (fpdf2 plus the registered fonts and the table layout every section uses), ``new_pdf``,
``draw_title``, ``draw_qr``, ``embed_json`` and ``output``. It knows nothing of receipts: the certificate
(``certificate``) and the report (``report``) compose their sections from these pieces.

Must not import: anything in ``service`` but ``court.fonts``; fpdf and segno only inside functions or for types.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from service.court.fonts import FontSet, find_fonts, working_fonts

if TYPE_CHECKING:
    from fpdf import FPDF

Value = tuple[str, str]
"""One value line of a row: (style, text); see ``Writer.row`` for the styles."""

NAVY = (22, 44, 84)
GREY = (95, 99, 104)
RULE = (170, 176, 186)
BAND = (236, 240, 246)
GREEN = (20, 110, 50)
RED = (170, 30, 30)


_NUMERALS = "一二三四五六七八九十"

# Chinese typesetting rules (禁则): these never start a line, and these never end one.
_NO_LINE_START = "，。、；：？！）》」』】〉,.;:?!)"
_NO_LINE_END = "（《「『【〈("
_TOKEN = re.compile(
    rf"[{re.escape(_NO_LINE_END)}]*"  # opening brackets stick to what follows
    r"(?:[\u2e80-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]|[^\s\u2e80-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+)"
    rf"[{re.escape(_NO_LINE_START)}]*"  # closing punctuation sticks to what precedes
    r"|\s+"
)


def wrap(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
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


class Writer:
    """A thin layer over fpdf2 holding the fonts and the layout: bilingual labels, sections, rows."""

    def __init__(self, pdf: FPDF, fonts: FontSet, *, left: float, right: float) -> None:
        self.pdf = pdf
        self.left = left
        self.width = pdf.w - left - right
        self.label_w = 44.0
        self.row_pad = 2.2
        self.section_gap = 2.2
        self.sections = 0  # numbered sections drawn so far
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
        for registered in pdf.fonts.values():
            # The subset keeps the face's bounding box (still true of every glyph) instead of recomputing it by
            # running every glyph program: a third of the font work of a document.
            registered.ttfont.recalcBBoxes = False  # type: ignore[union-attr]

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

    def numbered_section(self, zh: str, en: str) -> None:
        """A section heading numbered in Chinese (一、二、…) in the order the sections are drawn."""
        self.sections += 1
        self.section(f"{_NUMERALS[self.sections - 1]}、{zh}", en)

    def section(self, zh: str, en: str) -> None:
        pdf = self.pdf
        self.ensure_room(30)  # a heading plus at least one or two rows, never a heading alone
        pdf.ln(self.section_gap)
        y = pdf.get_y()
        pdf.set_fill_color(*BAND)
        pdf.rect(self.left, y, self.width, 7.2, style="F")
        pdf.set_fill_color(*NAVY)
        pdf.rect(self.left, y, 1.2, 7.2, style="F")
        pdf.set_xy(self.left + 3.5, y + 0.6)
        self.font(10.5, bold=True)
        self.color(NAVY)
        pdf.cell(pdf.get_string_width(zh) + 3, 6, zh)
        self.font(9.5)
        pdf.cell(0, 6, en)
        pdf.set_xy(self.left, y + 7.2 + 0.8)
        self.color((0, 0, 0))

    def row(
        self,
        zh: str,
        en: str,
        values: Sequence[Value],
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
            self.color(GREY)
            pdf.cell(lw - 1.5, 3.4, en)
        vy = y + self.row_pad / 2
        for style, text in values:
            pdf.set_xy(self.left + lw, vy)
            vy += self._value(style, text, vw, dry=False)
        pdf.set_draw_color(*RULE)
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
        colors = {"small": GREY, "smallmono": GREY, "warn": RED, "pass": GREEN, "fail": RED}
        self.color(colors.get(style, (0, 0, 0)))
        return self.block(text, width, size * 0.3528 * 1.42, dry=dry)

    def block(self, text: str, width: float, line_h: float, *, dry: bool = False) -> float:
        """Draw ``text`` wrapped to ``width`` from the current position (in the current font) and return
        its height. See ``wrap`` for where lines break."""
        lines = wrap(text, width, self.pdf.get_string_width)
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


def draw_with_fonts(draw: Callable[[FontSet], FPDF], fonts: FontSet | None) -> FPDF:
    """Run ``draw`` with the pre-subset working fonts (``fonts.working_fonts``) when they are built and hold every
    character the document drew, else (again) with the full faces: ``fonts`` or ``find_fonts()``."""
    full = find_fonts() if fonts is None else fonts
    working = working_fonts(full, build="never")
    if working is not None:
        pdf = draw(working)
        if not any(getattr(font, "missing_glyphs", None) for font in pdf.fonts.values()):
            return pdf
        for font in pdf.fonts.values():  # discarded: release the font files it opened
            font.ttfont.close()  # type: ignore[union-attr]
    return draw(full)


def new_pdf(title: str, subject: str, *, auto_break: bool) -> FPDF:
    from fpdf import FPDF

    class _Pdf(FPDF):
        footer_text = ""

        def header(self) -> None:
            _page_border(self)

        def footer(self) -> None:
            self.set_y(-13)
            self.set_font("cjk", "", 7)
            self.set_text_color(*GREY)
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
    pdf.set_draw_color(*NAVY)
    pdf.set_line_width(0.6)
    pdf.rect(8, 8, pdf.w - 16, pdf.h - 16)
    pdf.set_line_width(0.2)
    pdf.rect(9.6, 9.6, pdf.w - 19.2, pdf.h - 19.2)


def draw_title(w: Writer, zh: str, en: str, top_left: str, top_right: str) -> None:
    pdf = w.pdf
    pdf.set_xy(w.left, 13.5)
    w.font(7.4)
    w.color(GREY)
    pdf.cell(w.width / 2, 4, top_left)
    pdf.cell(w.width / 2, 4, top_right, align="R")
    pdf.set_xy(w.left, 19.5)
    w.font(24, bold=True)
    w.color(NAVY)
    pdf.set_char_spacing(6)
    pdf.cell(w.width, 11, zh, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_char_spacing(1.2)
    w.font(12.5, bold=True)
    pdf.cell(w.width, 7, en.upper(), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_char_spacing(0)
    y = pdf.get_y() + 2.5
    pdf.set_draw_color(*NAVY)
    pdf.set_line_width(0.5)
    pdf.line(w.left + 40, y, w.left + w.width - 40, y)
    pdf.set_line_width(0.15)
    pdf.line(w.left + 40, y + 1.0, w.left + w.width - 40, y + 1.0)
    pdf.set_xy(w.left, y + 3.2)
    w.color((0, 0, 0))


def draw_qr(pdf: FPDF, data: str, x: float, y: float, size: float) -> None:
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


def output(pdf: FPDF) -> bytes:
    return bytes(pdf.output())


def embed_json(pdf: FPDF, name: str, data: bytes, desc: str) -> None:
    pdf.embed_file(bytes=data, basename=name, mime_type="application/json", desc=desc, compress=True)
