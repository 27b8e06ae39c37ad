"""The case certificate (案件存证证书, issue 14): one PDF for an evidence chain.

Owns: drawing the case (title, reference, id), every phase in order with its time, digest, label and depositors,
and the statement of what was checked; every receipt of the case is attached to the PDF (``receipt-<phase>-<id>.json``)
so anyone can verify each one offline and check the chain (SPEC §6.2: phases exactly 1..N, times increasing).
The caller verifies every receipt first and passes what it found (``CasePhase``); this module only draws.
Must not import: anything in ``service`` but ``core.errors`` and ``court``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.court.certificate import PartyDisplay
from service.court.fonts import FontSet
from service.court.layout import GREY, Value, Writer, draw_title, draw_with_fonts, embed_json, new_pdf, output

__all__ = ["CasePhase", "render_case_certificate"]

_TRUST = {
    "ca": "证书经受信任 CA 验证 · certificate verified against a trusted CA",
    "unchecked": "证书未经 CA 验证 · certificate not checked against a CA",
    "key": "登记公钥 · bare Ed25519 key registered with the operator",
}


@dataclass(frozen=True)
class CasePhase:
    """One phase as the caller verified it: the first deposit's receipt and its countersignatures' receipts."""

    phase: int
    name: str
    evidence_id: str
    sha256: str
    received: str
    sealed: str
    label: str | None
    parties: Sequence[PartyDisplay]
    receipts: Sequence[tuple[str, bytes]] = field(default_factory=tuple)  # (attachment name, receipt JSON bytes)


def render_case_certificate(
    *,
    case_id: str,
    title: str,
    reference: str | None,
    created: str,
    origin: str,
    fingerprint: str,
    phases: Sequence[CasePhase],
    fonts: FontSet | None = None,
) -> bytes:
    """Return the case certificate as PDF bytes, with every receipt attached."""

    def draw(fonts: FontSet) -> object:
        pdf = new_pdf(f"案件存证证书 Case certificate {case_id}", title, auto_break=True)
        pdf.set_author(origin)
        w = Writer(pdf, fonts, left=16, right=16)
        pdf.footer_text = "每个阶段的机器可读回执已嵌入本 PDF · every phase's receipt is attached inside this PDF"  # type: ignore[attr-defined]
        pdf.alias_nb_pages()
        pdf.add_page()
        draw_title(w, "案件存证证书", "Case Certificate of Deposit", f"账本 Ledger: {origin}", f"案件 Case {case_id}")
        w.paragraph(
            f"兹证明：下列案件的 {len(phases)} 个阶段依次存证于 {origin} 存证账本；"
            "每个阶段的回执均已验证并附于本文件。",
            size=9,
        )
        w.paragraph(
            f"This certifies that the {len(phases)} phases of the case below were deposited, in this order, in the "
            f"ledger of {origin}; every phase's receipt was verified and is attached to this file.",
            size=8.4,
            color=GREY,
        )
        w.numbered_section("案件", "Case")
        w.row("案件名称", "Title", [("text", title)])
        if reference:
            w.row("案号/外部编号", "Reference", [("text", reference)])
        w.row("案件编号", "Case ID", [("mono", case_id)])
        w.row("创建时间", "Created (UTC)", [("text", created)])
        w.row("阶段", "Phases", [("text", f"1–{len(phases)}，连续无缺 · 1 to {len(phases)}, none missing or repeated")])
        w.numbered_section("各阶段存证", "Phases in order")
        for p in phases:
            values: list[Value] = [("text", p.name)]
            if p.label:
                values.append(("text", f"文件 File: {p.label}"))
            values += [
                ("mono", p.sha256),
                ("small", f"存证编号 Evidence {p.evidence_id} · 接收 received {p.received} · 封存 sealed {p.sealed}"),
            ]
            if not p.parties:
                values.append(("small", "未签名 · unattested"))
            for party in p.parties:
                who = party.identity if party.countersigned is None else f"{party.identity}（会签 countersigned）"
                values.append(("small", f"{who} — {_TRUST.get(party.trust, party.trust)}"))
            w.row(f"第 {p.phase} 阶段", f"Phase {p.phase}", values)
        w.numbered_section("核验", "How this was checked")
        w.paragraph(
            "每个回执均按 SPEC §6 验证（存证叶子、批次证明、账本证明、检查点签名、存证人签名）；阶段编号 1 至 N 连续、"
            "接收时间递增（SPEC §6.2）。运营方密钥指纹：" + fingerprint,
            size=8.6,
        )
        w.paragraph(
            "Each receipt was verified as SPEC §6 says (leaf, batch proof, ledger proof, checkpoint signature, "
            "depositor attestation); the phases are numbered 1 to N without gaps, with increasing receipt times "
            "(SPEC §6.2). "
            f"Operator key fingerprint: {fingerprint}. Verify any attached receipt offline: evidence verify RECEIPT.",
            size=8,
            color=GREY,
        )
        for p in phases:
            for name, data in p.receipts:
                embed_json(pdf, name, data, f"Receipt of phase {p.phase} ({p.evidence_id})")
        return pdf

    pdf = draw_with_fonts(draw, fonts)  # type: ignore[arg-type]
    return output(pdf)
