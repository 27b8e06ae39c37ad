"""The certificate of deposit and the verification report PDFs (service.court: certificate, report, fonts).

The receipt is built by hand from SPEC §2/§3/§4/§6, independently of service.core.receipt: the certificate must
show what the bytes say. Checks use poppler (pdffonts, pdftotext, pdftoppm) as an outside reader would; without
poppler those tests skip, unless EVIDENCE_REQUIRE_SERVICES=1 (then they fail). PNG renderings go to
test-artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.core.errors import FontMissing, FormatError, NotACertificate
from service.core.verify import Check, VerificationResult
from service.court.certificate import (
    PartyDisplay,
    TimestampDisplay,
    extract_receipt,
    format_fingerprint,
    receipt_bytes,
    render_certificate,
)
from service.court.fonts import FontSet, find_fonts, working_fonts
from service.court.report import ReportInputs, TrustedKey, render_report

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WQY = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

ORIGIN = "evidence.example-court.cn/ledger"
EVIDENCE_ID = "Qm3v9xT2bLwE5kR8pZ0aYc"
FILE_BYTES = b"%PDF-1.7 purchase contract, final version\n"
FILE_SHA256 = hashlib.sha256(FILE_BYTES).hexdigest()
SEED = bytes(range(32))
PUBLIC_KEY = Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
# SPEC §4: SHA-256 of the 32-byte public key, lowercase hex in groups of four (computed here by hand).
FINGERPRINT = " ".join(hashlib.sha256(PUBLIC_KEY).hexdigest()[i : i + 4] for i in range(0, 64, 4))
VERIFY_URL = f"https://evidence.example-court.cn/verify?id={EVIDENCE_ID}"


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        reason = f"{binary} not installed (Debian package poppler-utils; run scripts/install-system-deps)"
        if os.environ.get("EVIDENCE_REQUIRE_SERVICES") == "1":
            pytest.fail(reason + " and EVIDENCE_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    return path


def _require_fonts() -> None:
    try:
        find_fonts()
    except FontMissing as exc:
        if os.environ.get("EVIDENCE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{exc} (EVIDENCE_REQUIRE_SERVICES=1)")
        pytest.skip(str(exc))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_receipt() -> dict[str, object]:
    """A receipt exactly as SPEC §6 shapes it; proofs are placeholders (rendering does not check them)."""
    leaf = (
        f"evidence-ledger leaf v1\nid {EVIDENCE_ID}\nsha256 {FILE_SHA256}\nreceived 2026-11-28T16:13:35.123456Z\n"
    ).encode()
    batch_root = hashlib.sha256(b"batch root placeholder").digest()
    entry = (
        f"evidence-ledger batch v1\nseq 42\nsize 1000\nroot {_b64(batch_root)}\nsealed 2026-11-28T16:13:40.000000Z\n"
    ).encode()
    key_hash = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + PUBLIC_KEY).digest()[:4]
    body = f"{ORIGIN}\n57\n{_b64(hashlib.sha256(b'ledger root placeholder').digest())}\n".encode()
    signature = Ed25519PrivateKey.from_private_bytes(SEED).sign(body)
    note = body.decode() + f"\n\u2014 {ORIGIN} {_b64(key_hash + signature)}\n"
    vkey = f"{ORIGIN}+{key_hash.hex()}+{_b64(bytes([1]) + PUBLIC_KEY)}"
    filler = _b64(hashlib.sha256(b"sibling").digest())
    return {
        "format": "evidence-receipt/v1",
        "evidence": {
            "id": EVIDENCE_ID,
            "sha256": FILE_SHA256,
            "received_at": "2026-11-28T16:13:35.123456Z",
            "leaf": _b64(leaf),
        },
        "batch": {"seq": 42, "size": 1000, "index": 17, "root": _b64(batch_root), "proof": [filler] * 10},
        "ledger": {"entry": _b64(entry), "proof": [filler] * 6, "checkpoint": note},
        "timestamps": [{"type": "rfc3161", "token": _b64(b"0\x82placeholder DER")}],
        "keys": [vkey],
    }


TSA = [TimestampDisplay(datetime(2026, 11, 28, 16, 13, 41, 500000, tzinfo=UTC), "FreeTSA (CN=www.freetsa.org)", True)]


@pytest.fixture(scope="module")
def receipt() -> dict[str, object]:
    return make_receipt()


@pytest.fixture(scope="module")
def certificate(receipt: dict[str, object]) -> bytes:
    _require_fonts()
    return render_certificate(
        receipt, verify_url=VERIFY_URL, label="采购合同-2026-终稿.pdf", timestamps=TSA, trusted_fingerprint=None
    )


def _write(name: str, data: bytes) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(data)
    return path


def _pdftotext(pdf: bytes) -> str:
    exe = _require("pdftotext")
    return subprocess.run([exe, "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def _fonts(pdf: bytes) -> list[tuple[str, str, str]]:
    """(name, emb, sub) per font that pdffonts lists."""
    exe = _require("pdffonts")
    path = _write("_pdffonts.pdf", pdf)
    try:
        out = subprocess.run([exe, str(path)], capture_output=True, check=True, text=True).stdout
    finally:
        path.unlink()
    rows = []
    for line in out.splitlines()[2:]:
        cols = line.split()
        rows.append((cols[0], cols[-5], cols[-4]))  # name ... emb sub uni objnum gen
    return rows


def _png(pdf: bytes, stem: str) -> list[Path]:
    exe = _require("pdftoppm")
    src = _write(f"{stem}.pdf", pdf)
    for old in ARTIFACTS.glob(f"{stem}-[0-9]*.png"):
        old.unlink()
    subprocess.run([exe, "-r", "110", "-png", str(src), str(ARTIFACTS / stem)], check=True)
    src.unlink()  # keep only the PNGs: the artifact is for looking at
    return sorted(ARTIFACTS.glob(f"{stem}-[0-9]*.png"))


def _dark_fraction(png: Path) -> float:
    from PIL import Image

    with Image.open(png) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
    return sum(histogram[:128]) / sum(histogram)


# --- the certificate ----------------------------------------------------------------------------


def test_certificate_is_one_a4_page(certificate: bytes) -> None:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(certificate))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points


def test_certificate_embeds_every_font_as_a_subset(certificate: bytes) -> None:
    fonts = _fonts(certificate)
    assert fonts, "pdffonts listed no font"
    for name, emb, sub in fonts:
        assert (emb, sub) == ("yes", "yes"), f"{name}: emb={emb} sub={sub}"
        assert "STSong" not in name
    assert any("CJK" in name or "WenQuanYi" in name for name, _, _ in fonts)


def test_certificate_text_shows_the_receipt_facts(certificate: bytes) -> None:
    text = _pdftotext(certificate)
    flat = " ".join(text.split())
    for expected in (
        "存证证书",
        "CERTIFICATE OF DEPOSIT",
        FILE_SHA256,
        EVIDENCE_ID,
        ORIGIN,
        "采购合同-2026-终稿.pdf",
        "2026-11-28 16:13:35.123456 UTC",
        "2026-11-29 00:13:35.123456 Asia/Shanghai (UTC+08:00)",
        "2026-11-28 16:13:40 UTC",  # sealed, from the ledger entry bytes
        "2026-11-29 00:13:40 Asia/Shanghai",
        "batch seq 42",
        "leaf index 17",
        "batch size 1,000",
        "checkpoint size 57",
        "FreeTSA (CN=www.freetsa.org)",
        "2026-11-28 16:13:41.500000 UTC",
        "verified against a trusted TSA root",
        "evidence verify certificate.pdf contract.pdf --key",
        "does NOT prove",
    ):
        assert expected in flat or expected.lower() in flat.lower(), expected
    # the fingerprint is computed from the receipt's key hint, printed in two lines of eight groups
    assert FINGERPRINT[:39] in flat and FINGERPRINT[40:] in flat
    assert "key hint" in flat


def test_certificate_times_follow_the_local_zone_given(receipt: dict[str, object]) -> None:
    _require_fonts()
    pdf = render_certificate(receipt, verify_url=VERIFY_URL, local_tz="America/New_York")
    flat = " ".join(_pdftotext(pdf).split())
    assert "2026-11-28 11:13:35.123456 America/New_York (UTC-05:00)" in flat
    assert "none" not in flat.split("RFC 3161 timestamp")[1][:40] or "token" in flat  # tokens present: counted
    assert "1 token(s) in receipt.json" in flat


def test_certificate_prefers_the_trusted_fingerprint_and_flags_a_different_hint(
    receipt: dict[str, object],
) -> None:
    _require_fonts()
    other = "ab12" * 16
    pdf = render_certificate(receipt, verify_url=VERIFY_URL, trusted_fingerprint=other)
    flat = " ".join(_pdftotext(pdf).split())
    assert format_fingerprint(other)[:39] in flat
    assert FINGERPRINT[:39] not in flat
    assert "the operator key trusted by the issuer" in flat
    assert "another fingerprint" in flat


def test_certificate_attaches_the_receipt(certificate: bytes, receipt: dict[str, object]) -> None:
    attached = extract_receipt(certificate)
    assert attached == receipt_bytes(receipt)
    assert json.loads(attached) == receipt


def test_certificate_attaches_the_original_receipt_bytes_verbatim(receipt: dict[str, object]) -> None:
    _require_fonts()
    original = json.dumps(receipt, separators=(",", ":")).encode()
    pdf = render_certificate(receipt, verify_url=VERIFY_URL, receipt_json=original)
    assert extract_receipt(pdf) == original


def test_certificate_refuses_receipt_bytes_that_are_another_receipt(receipt: dict[str, object]) -> None:
    other = dict(receipt, format="evidence-receipt/v2")
    with pytest.raises(FormatError, match="does not parse to the receipt"):
        render_certificate(receipt, verify_url=VERIFY_URL, receipt_json=json.dumps(other).encode())


def test_certificate_stays_one_page_with_long_label_and_many_timestamps(receipt: dict[str, object]) -> None:
    import pypdf

    _require_fonts()
    stamps = TSA * 2 + [TimestampDisplay(datetime(2026, 11, 28, 16, 13, 42, tzinfo=UTC), "DigiCert TSA 2025", False)]
    pdf = render_certificate(
        receipt,
        verify_url=VERIFY_URL + "&" + "x" * 400,
        label="非常长的文件名" * 40 + ".pdf",
        timestamps=stamps,
        trusted_fingerprint=FINGERPRINT,
    )
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 1
    flat = " ".join(_pdftotext(pdf).split())
    assert "…" in flat and "and 1 more in receipt.json" in flat
    _png(pdf, "certificate-stress")


def test_certificate_renders_to_a_png_artifact(certificate: bytes) -> None:
    pages = _png(certificate, "certificate")
    assert len(pages) == 1
    assert 0.01 < _dark_fraction(pages[0]) < 0.5  # text, rules and a QR code on a white page


def test_certificate_of_a_tolerably_broken_receipt_still_renders(receipt: dict[str, object]) -> None:
    _require_fonts()
    broken = dict(receipt, batch="not an object", ledger={"entry": "%%%", "checkpoint": 7})
    pdf = render_certificate(broken, verify_url=VERIFY_URL)
    flat = " ".join(_pdftotext(pdf).split())
    assert EVIDENCE_ID in flat and "—" in flat


def test_certificate_rejects_an_unknown_time_zone(receipt: dict[str, object]) -> None:
    with pytest.raises(FormatError, match="unknown time zone"):
        render_certificate(receipt, verify_url=VERIFY_URL, local_tz="Mars/Olympus_Mons")


def test_certificate_with_the_truetype_wenquanyi_font(
    receipt: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not WQY.is_file():
        pytest.skip("fonts-wqy-zenhei not installed")
    monkeypatch.setenv("EVIDENCE_CJK_FONT", str(WQY))
    pdf = render_certificate(receipt, verify_url=VERIFY_URL, label="合同.pdf")
    fonts = _fonts(pdf)
    assert any("WenQuanYi" in name for name, _, _ in fonts)
    assert all((emb, sub) == ("yes", "yes") for _, emb, sub in fonts)
    assert "存证证书" in _pdftotext(pdf)
    _png(pdf, "certificate-wqy")


# --- fonts --------------------------------------------------------------------------------------


def test_missing_cjk_font_names_the_debian_package(receipt: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDENCE_CJK_FONT", "/nonexistent/NoSuchFont.ttc")
    with pytest.raises(FontMissing, match=r"apt-get install fonts-noto-cjk") as info:
        render_certificate(receipt, verify_url=VERIFY_URL)
    assert "fonts-wqy-zenhei" in str(info.value)
    with pytest.raises(FontMissing):
        render_report(VerificationResult(valid=True), receipt=receipt, inputs=INPUTS)


def test_font_without_chinese_glyphs_is_refused() -> None:
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not dejavu.is_file():
        pytest.skip("fonts-dejavu-core not installed")
    with pytest.raises(FontMissing, match="lacks Chinese glyphs"):
        find_fonts({"EVIDENCE_CJK_FONT": str(dejavu)})


def test_a_file_that_is_not_a_font_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "font.ttf"
    fake.write_bytes(b"not a font at all")
    with pytest.raises(FontMissing, match="not a readable TrueType/OpenType font"):
        find_fonts({"EVIDENCE_CJK_FONT": str(fake)})


# --- extract_receipt ----------------------------------------------------------------------------


def test_extract_receipt_rejects_bytes_that_are_not_a_pdf() -> None:
    with pytest.raises(NotACertificate, match="expected a PDF"):
        extract_receipt(b'{"format": "evidence-receipt/v1"}')


def test_extract_receipt_rejects_a_damaged_pdf() -> None:
    with pytest.raises(NotACertificate):
        extract_receipt(b"%PDF-1.7\n%garbage that is no PDF body at all\n")


def test_extract_receipt_rejects_a_pdf_without_the_attachment() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    plain = bytes(pdf.output())
    with pytest.raises(NotACertificate, match="no attached receipt.json"):
        extract_receipt(plain)


# --- fingerprints -------------------------------------------------------------------------------


def test_format_fingerprint_groups_hex_and_bytes_alike() -> None:
    digest = hashlib.sha256(PUBLIC_KEY).digest()
    assert format_fingerprint(digest) == FINGERPRINT
    assert format_fingerprint(FINGERPRINT.upper()) == FINGERPRINT
    with pytest.raises(FormatError):
        format_fingerprint("abcd")
    with pytest.raises(FormatError):
        format_fingerprint(digest[:31])


# --- the verification report --------------------------------------------------------------------


INPUTS = ReportInputs(
    receipt_name="certificate.pdf",
    receipt_source="certificate",
    file_name="采购合同-2026-终稿.pdf",
    sha256=FILE_SHA256,
    tsa_certificates=("FreeTSA root CA (cacert.pem)",),
    verified_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    tool_version="evidence 0.1.0",
)


@pytest.fixture(scope="module")
def valid_report(receipt: dict[str, object]) -> Iterator[bytes]:
    _require_fonts()
    result = VerificationResult(
        valid=True,
        checks=[Check(n, True, f"step {n} detail: expected X, found X") for n in range(8)],
        statement=f"this SHA-256 was sealed in the ledger of {ORIGIN} no later than 2026-11-28T16:13:40.000000Z",
    )
    keys = receipt["keys"]
    assert isinstance(keys, list)
    trusted = tuple(TrustedKey(k, FINGERPRINT) for k in keys)
    yield render_report(result, receipt=receipt, inputs=replace(INPUTS, trusted_keys=trusted), local_tz="Asia/Shanghai")


@pytest.fixture(scope="module")
def invalid_report(receipt: dict[str, object]) -> bytes:
    _require_fonts()
    result = VerificationResult(
        valid=False,
        step=3,
        reason="batch proof gives root AAAA, expected BBBB",
        checks=[
            Check(0, True, "format evidence-receipt/v1"),
            Check(1, True, "SHA-256 matches"),
            Check(2, True, "leaf agrees"),
            Check(3, False, "batch proof gives root AAAA, expected BBBB"),
        ],
    )
    return render_report(result, receipt=receipt, inputs=INPUTS, local_tz="Asia/Shanghai")


def test_valid_report_transcribes_every_check(valid_report: bytes) -> None:
    flat = " ".join(_pdftotext(valid_report).split())
    for expected in (
        "验证报告",
        "VERIFICATION REPORT",
        "VALID",
        f"sealed in the ledger of {ORIGIN}",
        FILE_SHA256,
        FINGERPRINT[:39],
        FINGERPRINT[40:],
        "certificate.pdf",
        "FreeTSA root CA (cacert.pem)",
        "2026-12-01 09:00:00 UTC",
        "2026-12-01 17:00:00 Asia/Shanghai (UTC+08:00)",
        "evidence 0.1.0",
        "Checkpoint signature",
        "Proves:",
        "Does NOT prove",
    ):
        assert expected in flat, expected
    for n in range(8):
        assert f"step {n} detail: expected X, found X" in flat
    assert flat.count("PASS") == 8 and "FAIL" not in flat and "INVALID" not in flat


def test_invalid_report_names_the_failing_step_and_what_was_not_run(invalid_report: bytes) -> None:
    flat = " ".join(_pdftotext(invalid_report).split())
    assert "INVALID" in flat
    assert "failed at step 3: batch proof gives root AAAA, expected BBBB" in flat
    assert flat.count("PASS") == 3 and flat.count("FAIL") == 1
    assert flat.count("NOT RUN") == 4 and "verification stopped at step 3" in flat
    assert "Proves:" not in flat and "proves neither" in flat
    assert "no key" not in flat and "Trusted keys" in flat and "none" in flat  # no trusted keys given


def test_reports_embed_subset_fonts_attach_the_receipt_and_render(
    valid_report: bytes, invalid_report: bytes, receipt: dict[str, object]
) -> None:
    for name, pdf in (("report-valid", valid_report), ("report-invalid", invalid_report)):
        fonts = _fonts(pdf)
        assert fonts and all((emb, sub) == ("yes", "yes") for _, emb, sub in fonts), fonts
        assert json.loads(extract_receipt(pdf)) == receipt
        pages = _png(pdf, name)
        assert pages and all(0.005 < _dark_fraction(page) < 0.5 for page in pages)


def test_report_attaches_the_machine_readable_result(invalid_report: bytes) -> None:
    import pypdf

    attachments = pypdf.PdfReader(io.BytesIO(invalid_report)).attachments
    result = json.loads(attachments["verification-result.json"][0])
    assert result["valid"] is False and result["step"] == 3


# --- line breaking (measured in characters here, in millimetres in the PDFs) --------------------


def test_wrap_breaks_latin_at_spaces_and_chinese_anywhere_but_before_closing_punctuation() -> None:
    from service.court.layout import wrap as _wrap

    assert _wrap("ab cd ef", 5, len) == ["ab cd", "ef"]
    assert _wrap("一二三，四", 3, len) == ["一二", "三，四"]  # the comma never starts a line
    assert _wrap("运行（certificate.pdf 为本证书）", 16, len) == ["运行", "（certificate.pdf", "为本证书）"]
    assert _wrap("abcdefg", 3, len) == ["abc", "def", "g"]  # only a word wider than the line is cut
    assert _wrap("第一行\n第二行", 10, len) == ["第一行", "第二行"]


def test_report_lists_the_witness_policy_and_each_witness_outcome(receipt: dict[str, object]) -> None:
    _require_fonts()
    from service.core.verify import WitnessResult

    when = datetime(2026, 11, 28, 16, 14, tzinfo=UTC)
    result = VerificationResult(
        valid=True,
        checks=[Check(n, True, f"step {n} ok") for n in range(8)],
        witnesses=[
            WitnessResult("witness.one", "witness.one+00+AA", "1111 2222", True, when, "cosigned at 2026-11-28"),
            WitnessResult("witness.two", "witness.two+00+BB", "3333 4444", False, None, "bad signature"),
            WitnessResult("witness.three", "witness.three+00+CC", "5555 6666", False, None, "no cosignature", False),
        ],
        quorum="1 of {witness.one, witness.two, witness.three}",
    )
    inputs = replace(INPUTS, witness_policy="--policy policy.txt: quorum 1 of {…}; witnesses witness.one, …")
    flat = " ".join(_pdftotext(render_report(result, receipt=receipt, inputs=inputs)).split())
    assert "Witness policy" in flat and "--policy policy.txt" in flat
    assert "Witness cosignatures (quorum: 1 of {witness.one, witness.two, witness.three})" in flat
    for expected in ("witness.one 有效 VALID", "witness.two 无效 INVALID", "witness.three 未签 ABSENT"):
        assert expected in flat, expected
    assert "1111 2222" in flat and "no cosignature" in flat


def test_certificate_prints_the_install_command_of_the_issuing_service_and_stays_one_page(
    receipt: dict[str, object],
) -> None:
    import pypdf

    _require_fonts()
    public = "https://evidence-ledger.intermediate-court.example.gov.cn"
    pdf = render_certificate(
        receipt,
        verify_url=VERIFY_URL + "&" + "x" * 400,
        label="非常长的文件名" * 40 + ".pdf",
        timestamps=TSA * 2,
        trusted_fingerprint=FINGERPRINT,
        public_url=public,
    )
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 1
    flat = " ".join(_pdftotext(pdf).split())
    assert f"pip install --no-index --find-links {public}/download/ evidence-ledger" in flat
    assert "pip install evidence-ledger" not in flat  # the package is on no public index


def test_certificate_prints_the_sm2_key_when_the_checkpoint_carries_its_signature(
    receipt: dict[str, object],
) -> None:
    """SPEC §4.1: a dual-signed checkpoint's certificate shows both keys; the SM2 one with its SM3 fingerprint."""
    import copy

    import pypdf

    from service.core.note import Sm2Signer

    _require_fonts()
    doc = copy.deepcopy(receipt)
    gm = Sm2Signer.generate(ORIGIN)
    ledger = doc["ledger"]
    assert isinstance(ledger, dict)
    body = ledger["checkpoint"].split("\n\n")[0].encode() + b"\n"
    ledger["checkpoint"] += gm.signature_line(body).decode()
    keys = doc["keys"]
    assert isinstance(keys, list)
    keys.append(gm.verifier.vkey)
    stamps = TSA * 2 + [TimestampDisplay(datetime(2026, 11, 28, 16, 13, 42, tzinfo=UTC), "DigiCert TSA 2025", False)]
    pdf = render_certificate(
        doc, verify_url=VERIFY_URL, label="非常长的文件名" * 40 + ".pdf", timestamps=stamps, trusted_fingerprint=None
    )
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 1
    flat = " ".join(_pdftotext(pdf).split())
    assert "SM2 signing key" in flat and "SM2 签名密钥" in flat
    assert gm.verifier.fingerprint_sm3 in flat
    assert "ID 1234567812345678" in flat
    assert FINGERPRINT in flat  # the Ed25519 key is still printed (on one line)
    _png(pdf, "certificate-sm2")
    # An SM2 key in the hint that did not sign this checkpoint is not printed.
    doc2 = copy.deepcopy(receipt)
    keys2 = doc2["keys"]
    assert isinstance(keys2, list)
    keys2.append(gm.verifier.vkey)
    flat2 = " ".join(_pdftotext(render_certificate(doc2, verify_url=VERIFY_URL)).split())
    assert "SM2 signing key" not in flat2


# --- working fonts: the font work done once per machine -----------------------------------------


@pytest.fixture(scope="module")
def working_set() -> Iterator[FontSet]:
    _require_fonts()
    working = working_fonts(find_fonts(), build="now")
    assert working is not None
    yield working


def _drawn_with(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the CJK face of every page drawing (a second entry means the document was drawn again)."""
    from service.court import layout

    faces: list[Path] = []
    real = layout.Writer.__init__

    def spy(self: layout.Writer, pdf: object, fonts: FontSet, **kwargs: float) -> None:
        faces.append(fonts.cjk.path)
        real(self, pdf, fonts, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(layout.Writer, "__init__", spy)
    return faces


def test_documents_are_drawn_once_with_the_working_fonts(
    working_set: FontSet, receipt: dict[str, object], valid_report: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every character the documents print themselves is in the working fonts: no second drawing, no box."""
    faces = _drawn_with(monkeypatch)
    pdf = render_certificate(
        receipt,
        verify_url=VERIFY_URL,
        label="采购合同（终稿）·第2版.pdf",
        timestamps=TSA,
        trusted_fingerprint=FINGERPRINT,
    )
    assert faces == [working_set.cjk.path]
    assert "采购合同（终稿）·第2版.pdf" in _pdftotext(pdf)
    result = VerificationResult(valid=False, step=3, reason="r", checks=[Check(0, True, "x"), Check(3, False, "r")])
    render_report(result, receipt=receipt, inputs=INPUTS)
    assert faces == [working_set.cjk.path] * 2
    assert all((emb, sub) == ("yes", "yes") for _, emb, sub in _fonts(pdf))


def test_a_character_outside_the_working_fonts_is_drawn_with_the_full_face(
    working_set: FontSet, receipt: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    rare = "龘"  # U+9F98: in Noto Sans CJK, not in GB 2312
    faces = _drawn_with(monkeypatch)
    pdf = render_certificate(receipt, verify_url=VERIFY_URL, label=f"{rare}氏合同.pdf")
    assert faces == [working_set.cjk.path, find_fonts().cjk.path]
    assert f"{rare}氏合同.pdf" in _pdftotext(pdf)


def test_working_fonts_are_named_by_their_source_and_rebuilt_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not WQY.is_file():
        pytest.skip("fonts-wqy-zenhei not installed")
    from service.court import fonts as fonts_module

    monkeypatch.setenv("EVIDENCE_FONT_CACHE_DIR", str(tmp_path / "cache"))
    fonts_module._usable_cache_dir.cache_clear()
    fonts_module._working_path_cached.cache_clear()
    try:
        copy = tmp_path / "wqy.ttc"
        copy.write_bytes(WQY.read_bytes())
        source = find_fonts({"EVIDENCE_CJK_FONT": str(copy)})
        assert working_fonts(source, build="never") is None  # not built: callers use the full face meanwhile
        first = working_fonts(source, build="now")
        assert first is not None and first.cjk.path.parent == tmp_path / "cache"
        assert first.cjk.path.stat().st_size < copy.stat().st_size / 2
        os.utime(copy, ns=(1, 1))  # the source font changed: its working font is another file
        fonts_module._find_fonts.cache_clear()
        assert working_fonts(find_fonts({"EVIDENCE_CJK_FONT": str(copy)}), build="never") is None
    finally:
        fonts_module._usable_cache_dir.cache_clear()
        fonts_module._working_path_cached.cache_clear()
        fonts_module._find_fonts.cache_clear()


def test_report_of_a_v2_receipt_lists_step_8_when_it_was_not_run(receipt: dict[str, object]) -> None:
    _require_fonts()
    result = VerificationResult(valid=False, step=3, reason="bad proof", checks=[Check(3, False, "bad proof")])
    v1 = " ".join(_pdftotext(render_report(result, receipt=receipt, inputs=INPUTS)).split())
    v2 = " ".join(
        _pdftotext(render_report(result, receipt=dict(receipt, format="evidence-receipt/v2"), inputs=INPUTS)).split()
    )
    assert v1.count("NOT RUN") == 7 and "Depositor's attestation" not in v1  # steps 0-2 and 4-7
    assert v2.count("NOT RUN") == 8 and "Depositor's attestation" in v2


def test_the_font_lookup_is_remembered_until_a_font_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not WQY.is_file():
        pytest.skip("fonts-wqy-zenhei not installed")
    from service.court import fonts as fonts_module

    monkeypatch.setenv("EVIDENCE_FONT_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "wqy.ttc"
    copy.write_bytes(WQY.read_bytes())
    env = {"EVIDENCE_CJK_FONT": str(copy)}
    fonts_module._usable_cache_dir.cache_clear()
    try:
        fonts_module._find_fonts.cache_clear()
        first = find_fonts(env)
        assert (tmp_path / "cache" / "lookup.json").is_file()

        def no_search(override: str, bold_override: str) -> FontSet:
            raise AssertionError("searched again")

        fonts_module._find_fonts.cache_clear()
        with monkeypatch.context() as patch:
            patch.setattr(fonts_module, "_search_fonts", no_search)
            assert find_fonts(env) == first  # a new process: the answer comes from the file
            os.utime(copy, ns=(5, 5))
            fonts_module._find_fonts.cache_clear()
            with pytest.raises(AssertionError, match="searched again"):
                find_fonts(env)  # the font file changed: looked up again
    finally:
        fonts_module._usable_cache_dir.cache_clear()
        fonts_module._find_fonts.cache_clear()


def test_certificate_prints_each_witness_name_fingerprint_and_time(receipt: dict[str, object]) -> None:
    import pypdf

    from service.court.certificate import WitnessDisplay

    witnesses = [
        WitnessDisplay(
            f"court{i}.example/witness",
            " ".join(f"{(i * 7 + j) % 65536:04x}" for j in range(16)),
            datetime(2026, 11, 28, 16, 14, i, tzinfo=UTC),
        )
        for i in range(4)
    ]
    pdf = render_certificate(
        receipt, verify_url=VERIFY_URL, label="采购合同-2026-终稿-附件A.pdf", timestamps=TSA, witnesses=witnesses
    )
    assert len(pypdf.PdfReader(io.BytesIO(pdf)).pages) == 1
    flat = " ".join(_pdftotext(pdf).split())
    assert "Witnessed no later than" in flat and "见证联署" in flat
    # as many as the one page holds get their own lines (at least one here), the others are counted
    printed = [w for w in witnesses if w.name in flat]
    assert printed and printed == witnesses[: len(printed)]
    for w in printed:
        assert w.fingerprint in flat
    assert f"and {len(witnesses) - len(printed)} more in receipt.json" in flat
    assert "court0.example/witness · 2026-11-28 16:14:00 UTC" in flat
    plain = render_certificate(receipt, verify_url=VERIFY_URL)
    assert "Witnessed no later than" not in " ".join(_pdftotext(plain).split())
    # crowded (a long label, three time-stamps): still one page (witnesses then only in receipt.json)
    crowded = render_certificate(
        receipt, verify_url=VERIFY_URL, label="非常长的文件名" * 40, timestamps=TSA * 3, witnesses=witnesses
    )
    assert len(pypdf.PdfReader(io.BytesIO(crowded)).pages) == 1


def test_attested_case_deposit_with_a_label_fits_one_page() -> None:
    """A v2 deposit with a label, a case phase and an X.509 depositor (the crowded page a case bundle needs) is drawn
    on one page: the rows are set closer instead of the certificate being refused as overflowing."""
    _require_fonts()
    vector = Path(__file__).parents[1] / "vectors" / "receipts-v2" / "v2-ed25519-case.json"
    doc = json.loads(vector.read_text())
    party = PartyDisplay("CN=张三,O=某某律师事务所有限公司,L=Hangzhou,ST=Zhejiang,C=CN", "ca")
    cosigner = PartyDisplay("Ed25519 key 1a2b 3c4d 5e6f 7a8b 9c0d 1e2f 3a4b 5c6d", "key", "2026-11-28T16:14:00.000000Z")
    pdf = render_certificate(
        doc,
        verify_url="https://ledger.example.org/check?id=x",
        label=doc["evidence"]["label"],
        public_url="https://ledger.example.org",
        parties=[party, cosigner],
    )
    text = _pdftotext(pdf)
    assert "张三" in text and "goldenCASE" in text
    assert json.loads(extract_receipt(pdf)) == doc
