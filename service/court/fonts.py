"""Find real fonts on this machine for the certificate and report PDFs.

Owns: locating a CJK font (with Latin glyphs) that fpdf2 can embed as a subset, a bold face of it when there
is one, and a Latin monospace font for digests. Courts open these PDFs years later on machines we do not
know, so every glyph must come from an embedded font: never a PDF "standard" font such as STSong-Light,
which many viewers (poppler among them) draw as empty boxes.

Preference order (first usable wins):
1. ``EVIDENCE_CJK_FONT`` (a font file path, optionally ``path#N`` for face N of a ``.ttc`` collection);
   ``EVIDENCE_CJK_FONT_BOLD`` likewise for the bold face. A set but unusable path is an error, never
   silently replaced, so a deployment gets the font it asked for.
2. Noto Sans CJK SC (Debian ``fonts-noto-cjk``): CFF outlines in an OpenType collection, which fpdf2 >= 2.8
   embeds as a CIDFontType0C subset.
3. WenQuanYi Zen Hei (Debian ``fonts-wqy-zenhei``): TrueType outlines, no bold face.
4. Whatever ``fc-match ':lang=zh-cn'`` offers, if it really has the glyphs.

Speed: ``working_fonts`` gives the same faces pre-subset to the characters the documents use, built once per machine
into a cache folder (see the section at the end).

Must not import: fpdf (the caller registers the fonts), anything from ``service`` but ``errors``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service.core.errors import FontMissing

ENV_CJK_FONT = "EVIDENCE_CJK_FONT"
ENV_CJK_FONT_BOLD = "EVIDENCE_CJK_FONT_BOLD"

INSTALL_HINT = (
    "install a CJK font: `apt-get install fonts-noto-cjk` (preferred) or `apt-get install fonts-wqy-zenhei` "
    "(or run scripts/install-system-deps), or point EVIDENCE_CJK_FONT at a TrueType/OpenType font file"
)

# A font is only usable if it has every character the documents print in Chinese, plus ASCII.
_REQUIRED_TEXT = "存证证书验报告账本时间哈希值签名密钥指纹批次封接收通过失败步骤明不能ABCxyz0189:/-"

# (regular, bold, family name inside the file); the family picks the face in a .ttc collection.
_KNOWN_CJK: tuple[tuple[str, str | None, str], ...] = (
    # Debian / Ubuntu fonts-noto-cjk
    (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
        "Noto Sans CJK SC",
    ),
    # Arch noto-fonts-cjk
    (
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
        "Noto Sans CJK SC",
    ),
    # Fedora google-noto-sans-cjk-fonts
    (
        "/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Bold.ttc",
        "Noto Sans CJK SC",
    ),
    # Debian fonts-wqy-zenhei (one weight only)
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", None, "WenQuanYi Zen Hei"),
)

_FC_PATTERNS: tuple[tuple[str, str | None, str], ...] = (
    ("Noto Sans CJK SC", "Noto Sans CJK SC:bold", "Noto Sans CJK SC"),
    ("WenQuanYi Zen Hei", None, "WenQuanYi Zen Hei"),
)

_KNOWN_MONO = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",  # Debian fonts-dejavu-core
    "/usr/share/fonts/dejavu-sans-mono-fonts/DejaVuSansMono.ttf",  # Fedora
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",  # Arch
)


@dataclass(frozen=True)
class FontFile:
    """One face of a font file: ``index`` picks the face inside a TrueType/OpenType collection (.ttc)."""

    path: Path
    index: int = 0
    family: str = ""

    def __str__(self) -> str:
        return f"{self.path}#{self.index}" if self.index else str(self.path)


@dataclass(frozen=True)
class FontSet:
    """The fonts a document uses. ``cjk_bold`` is None when the family has no bold face (WenQuanYi);
    ``mono`` is None when no Latin monospace font was found (digests then use ``cjk``)."""

    cjk: FontFile
    cjk_bold: FontFile | None
    mono: FontFile | None


def find_fonts(environ: Mapping[str, str] | None = None) -> FontSet:
    """Return the fonts to embed, looked up as the module docstring says.

    :raise FontMissing: no usable CJK font, or ``EVIDENCE_CJK_FONT`` names an unusable one; the message
        says which Debian package to install.
    """
    env = os.environ if environ is None else environ
    return _find_fonts(env.get(ENV_CJK_FONT, "").strip(), env.get(ENV_CJK_FONT_BOLD, "").strip())


@functools.lru_cache(maxsize=8)
def _find_fonts(override: str, bold_override: str) -> FontSet:
    # Cached per process, and on disk for the next process (the CLI): checking the cmap of a 20 MB collection costs
    # about half a second. Failures raise and so are not cached: a font installed later is found on the next call.
    probe = _lookup_probe(override, bold_override)
    cached = _read_lookup(probe)
    if cached is not None:
        return cached
    found = _search_fonts(override, bold_override)
    _write_lookup(probe, found)
    return found


def _search_fonts(override: str, bold_override: str) -> FontSet:
    if override:
        cjk = _font_from_spec(override, ENV_CJK_FONT)
        bold = _font_from_spec(bold_override, ENV_CJK_FONT_BOLD) if bold_override else None
        return FontSet(cjk=cjk, cjk_bold=bold, mono=find_mono_font())

    for regular, bold_path, family in _KNOWN_CJK:
        found = _usable_face(Path(regular), family)
        if found is not None:
            bold = _usable_face(Path(bold_path), family) if bold_path else None
            return FontSet(cjk=found, cjk_bold=bold, mono=find_mono_font())

    for pattern, bold_pattern, family in _FC_PATTERNS:
        found = _from_fc_match(pattern, family)
        if found is not None:
            bold = _from_fc_match(bold_pattern, family, want_bold=True) if bold_pattern else None
            return FontSet(cjk=found, cjk_bold=bold, mono=find_mono_font())

    found = _from_fc_match(":lang=zh-cn", None)
    if found is not None:
        return FontSet(cjk=found, cjk_bold=None, mono=find_mono_font())

    raise FontMissing(f"no CJK font found for the certificate PDF; {INSTALL_HINT}")


# --- the lookup, remembered on disk ---------------------------------------------------------------
# The answer of ``_search_fonts`` is valid while every file it could have chosen is unchanged: the probe lists the
# override and every known path with its size and mtime (or absence). Answers that came from fontconfig are not
# kept (fontconfig's choice has no file to probe).


def _lookup_probe(override: str, bold_override: str) -> list[list[object]]:
    paths = [spec.rpartition("#")[0] if "#" in spec else spec for spec in (override, bold_override) if spec]
    paths += [p for regular, bold, _ in _KNOWN_CJK for p in (regular, bold) if p] + list(_KNOWN_MONO)
    probe: list[list[object]] = [[_WORKING_VERSION, override, bold_override]]
    for path in paths:
        try:
            stat = os.stat(path)
            probe.append([path, stat.st_size, stat.st_mtime_ns])
        except OSError:
            probe.append([path, None, None])
    return probe


def _lookup_file() -> Path:
    return _usable_cache_dir() / "lookup.json"


def _read_lookup(probe: list[list[object]]) -> FontSet | None:
    try:
        data = json.loads(_lookup_file().read_text(encoding="utf-8"))
        if data.get("probe") != probe:
            return None
        faces = [None if f is None else FontFile(Path(f[0]), int(f[1]), str(f[2])) for f in data["fonts"]]
        cjk, bold, mono = faces
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return FontSet(cjk=cjk, cjk_bold=bold, mono=mono) if cjk is not None else None


def _write_lookup(probe: list[list[object]], fonts: FontSet) -> None:
    probed = {str(entry[0]) for entry in probe[1:]}
    faces = [fonts.cjk, fonts.cjk_bold, fonts.mono]
    if any(face is not None and str(face.path) not in probed for face in faces):
        return  # found through fontconfig: not kept
    data = {"probe": probe, "fonts": [None if f is None else [str(f.path), f.index, f.family] for f in faces]}
    target = _lookup_file()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)


def find_mono_font() -> FontFile | None:
    """Return DejaVu Sans Mono (Debian ``fonts-dejavu-core``) or None if it is not installed."""
    for path in _KNOWN_MONO:
        found = _usable_face(Path(path), None, required="0123456789abcdef ABCXYZ-+/")
        if found is not None:
            return found
    return _from_fc_match("DejaVu Sans Mono", "DejaVu Sans Mono", required="0123456789abcdef ABCXYZ-+/")


def _font_from_spec(spec: str, variable: str) -> FontFile:
    path_text, index = spec, 0
    head, sep, tail = spec.rpartition("#")
    if sep and tail.isdigit():
        path_text, index = head, int(tail)
    path = Path(path_text)
    if not path.is_file():
        raise FontMissing(f"{variable}={spec!r}: no such font file; {INSTALL_HINT}")
    missing = _missing_glyphs(path, index, _REQUIRED_TEXT)
    if missing is None:
        raise FontMissing(f"{variable}={spec!r}: not a readable TrueType/OpenType font; {INSTALL_HINT}")
    if missing:
        raise FontMissing(f"{variable}={spec!r}: the font lacks Chinese glyphs (missing {missing!r}); {INSTALL_HINT}")
    return FontFile(path=path, index=index, family=_family_name(path, index))


def _usable_face(path: Path, family: str | None, required: str = _REQUIRED_TEXT) -> FontFile | None:
    """The face of ``path`` named ``family`` (any face if None) that has every glyph of ``required``."""
    if not path.is_file():
        return None
    for index in _face_indexes(path):
        name = _family_name(path, index)
        if family is not None and name != family:
            continue
        if _missing_glyphs(path, index, required) == "":
            return FontFile(path=path, index=index, family=name)
    return None


def _from_fc_match(
    pattern: str, family: str | None, *, want_bold: bool = False, required: str = _REQUIRED_TEXT
) -> FontFile | None:
    """Ask fontconfig; it always answers with *some* font, so check the family and the glyphs ourselves."""
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        out = subprocess.run(
            [fc_match, "-f", "%{file}\n%{index}\n%{weight}\n", pattern],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.splitlines()
    if len(lines) < 2 or not lines[1].strip().isdigit():
        return None
    path, index = Path(lines[0]), int(lines[1])
    if want_bold and not (len(lines) > 2 and lines[2].strip().isdigit() and int(lines[2]) >= 180):
        return None  # fontconfig weight 200 = bold; it fell back to the regular face
    if not path.is_file() or _missing_glyphs(path, index, required) != "":
        return None
    name = _family_name(path, index)
    if family is not None and name != family:
        return None
    return FontFile(path=path, index=index, family=name)


def _face_indexes(path: Path) -> Iterable[int]:
    if path.suffix.lower() not in (".ttc", ".otc"):
        return (0,)
    try:
        with path.open("rb") as f:
            header = f.read(12)
    except OSError:
        return ()
    if header[:4] != b"ttcf":
        return (0,)
    return range(int.from_bytes(header[8:12], "big"))


def _family_name(path: Path, index: int) -> str:
    from fontTools.ttLib import TTFont  # fontTools comes with fpdf2; imported here to keep import light

    try:
        with path.open("rb") as file:  # our own handle: TTFont leaks its own when the file is no font
            font = TTFont(file, fontNumber=index, lazy=True)
            return str(font["name"].getDebugName(1) or "")
    except Exception:  # fontTools raises many kinds on a broken file; "no name" is the honest answer
        return ""


def _missing_glyphs(path: Path, index: int, text: str) -> str | None:
    """The characters of ``text`` the face has no glyph for ("" = all there); None if unreadable."""
    from fontTools.ttLib import TTFont

    try:
        with path.open("rb") as file:
            font = TTFont(file, fontNumber=index, lazy=True)
            if "glyf" not in font and "CFF " not in font:
                return None  # bitmap-only or CFF2 variable fonts: fpdf2 cannot subset them for us
            cmap = font.getBestCmap() or {}
    except Exception:  # not a font at all (fontTools raises TTLibError, struct.error, ...)
        return None
    return "".join(ch for ch in dict.fromkeys(text) if ord(ch) not in cmap)


# --- pre-subset working fonts: the font work of a certificate, done once per machine -------------
#
# Embedding a subset of Noto Sans CJK (65,535 glyphs) made fpdf2 parse the whole face and fontTools subset it
# again on every document (about 1 s of CPU). A *working font* is the same face cut once to the characters our
# documents use: ASCII, Latin, punctuation and symbols, and the 6,763 Chinese characters of GB 2312 (which hold all
# of the documents' own text). Its outlines are the face's own, so pages look the same; fpdf2 then parses and
# subsets a font nine times smaller. A document needing a character outside it (a rare name in a label) is drawn
# again with the full face (``missing_glyphs``), so nothing is drawn as a box that the full face could draw.

ENV_FONT_CACHE_DIR = "EVIDENCE_FONT_CACHE_DIR"
_WORKING_VERSION = "1"  # bump when the character set or the subsetting options change
_build_lock = threading.Lock()
_building: set[Path] = set()
log = logging.getLogger(__name__)


def working_fonts(fonts: FontSet, *, build: Literal["now", "background", "never"] = "background") -> FontSet | None:
    """``fonts`` with each CJK face replaced by its pre-subset working font, or None while one is not built yet.

    The working fonts live in the font cache directory (``EVIDENCE_FONT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/evidence-ledger/fonts``), named by a digest of the source face (path, size, mtime, face
    index) and the character set, so a changed font or character set is rebuilt, never misused. ``build`` says what
    to do when one is missing: build it in this thread ("now", about 5 s of CPU per face), start one background
    thread per face and answer None ("background"), or just answer None ("never").
    """
    faces = [face for face in (fonts.cjk, fonts.cjk_bold) if face is not None]
    paths = {face: _working_path(face) for face in faces}
    missing = [face for face in faces if not paths[face].is_file()]
    if missing and build == "now":
        for face in missing:
            _build_working_font(face, paths[face])
    elif missing:
        if build == "background":
            for face in missing:
                _start_background_build(face, paths[face])
        return None
    bold = fonts.cjk_bold
    return FontSet(
        cjk=FontFile(paths[fonts.cjk], 0, fonts.cjk.family),
        cjk_bold=FontFile(paths[bold], 0, bold.family) if bold is not None else None,
        mono=fonts.mono,
    )


def prepare_working_fonts() -> None:
    """Make sure the working fonts exist or are being built in the background (long-running processes call this
    before drawing; ``scripts/setup`` builds them ahead). Never raises: without them documents use the full faces."""
    try:
        working_fonts(find_fonts(), build="background")
    except (FontMissing, OSError):
        pass


def font_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where working fonts are kept (created on first use; a private temporary folder if that is not writable)."""
    env = os.environ if environ is None else environ
    configured = env.get(ENV_FONT_CACHE_DIR, "").strip()
    if configured:
        return Path(configured)
    base = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "evidence-ledger" / "fonts"


@functools.lru_cache(maxsize=1)
def working_chars() -> frozenset[int]:
    """The characters of a working font: Latin, punctuation and symbols, and GB 2312 (which holds all the documents'
    own Chinese text: tests/unit/test_certificate.py checks that a certificate and a report need nothing else)."""
    chars: set[int] = set(range(0x20, 0x7F)) | set(range(0xA0, 0x250))
    for start, end in ((0x2000, 0x2070), (0x2190, 0x2200), (0x2460, 0x2500), (0x3000, 0x3040), (0xFF00, 0xFFF0)):
        chars.update(range(start, end))
    for cp in range(0x4E00, 0xA000):
        try:
            chr(cp).encode("gb2312")
        except UnicodeEncodeError:
            continue
        chars.add(cp)
    return frozenset(chars)


@functools.lru_cache(maxsize=16)
def _working_path_cached(path: Path, index: int, size: int, mtime_ns: int) -> Path:
    from fontTools import version as fonttools_version

    digest = hashlib.sha256(
        "\n".join(
            [_WORKING_VERSION, fonttools_version, str(path), str(index), str(size), str(mtime_ns)]
            + [format(cp, "x") for cp in sorted(working_chars())]
        ).encode()
    ).hexdigest()[:20]
    return _usable_cache_dir() / f"{path.stem}-{index}-{digest}.otf"


def _working_path(face: FontFile) -> Path:
    stat = face.path.stat()
    return _working_path_cached(face.path, face.index, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _usable_cache_dir() -> Path:
    wanted = font_cache_dir()
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        probe = wanted / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return wanted
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"evidence-ledger-fonts-{os.getuid()}"
        log.warning("font cache %s is not writable (%s); using %s", wanted, exc.strerror, fallback)
        fallback.mkdir(mode=0o700, exist_ok=True)
        return fallback


def _start_background_build(face: FontFile, target: Path) -> None:
    with _build_lock:
        if target in _building:
            return
        _building.add(target)

    def run() -> None:
        try:
            _build_working_font(face, target)
        except Exception:  # a failed build only costs speed: documents keep using the full face
            log.exception("building the working font for %s failed", face)
        finally:
            with _build_lock:
                _building.discard(target)

    threading.Thread(target=run, name=f"working-font-{face.path.stem}", daemon=True).start()


def _build_working_font(face: FontFile, target: Path) -> None:
    """Cut ``face`` to ``working_chars()`` and write it to ``target`` atomically (temp file, fsync, rename); under
    an exclusive lock on the cache folder so that processes sharing it build each font once."""
    import fcntl

    from fontTools import subset
    from fontTools.ttLib import TTFont

    lock_path = target.parent / ".lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another process built it while we waited
            return
        started = time.monotonic()
        with face.path.open("rb") as source:  # our own handle, closed here (TTFont keeps a lazy font's open)
            font = TTFont(source, fontNumber=face.index, lazy=True, recalcTimestamp=False)
            options = subset.Options(
                notdef_outline=True,
                recommended_glyphs=True,
                name_IDs=["*"],
                name_legacy=True,
                name_languages=["*"],
                layout_features=[],
                desubroutinize=True,  # fpdf2's subsetting then has no subroutines to walk
            )
            options.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE", "VORG", "vhea", "vmtx", "JSTF", "MATH"]
            subsetter = subset.Subsetter(options)
            subsetter.populate(unicodes=working_chars())
            subsetter.subset(font)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                with tmp.open("wb") as out:
                    font.save(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        log.info("built the working font %s from %s in %.1f s", target.name, face, time.monotonic() - started)


def main() -> int:
    """``python -m service.court.fonts``: find the fonts and build their working fonts now (scripts/setup runs it)."""
    try:
        fonts = find_fonts()
    except FontMissing as exc:
        print(f"no working fonts built: {exc}")
        return 0  # the documents say the same when they are drawn; setup is not the place to fail
    started = time.monotonic()
    working = working_fonts(fonts, build="now")
    assert working is not None
    for face in (working.cjk, working.cjk_bold):
        if face is not None:
            print(f"working font: {face.path} ({face.path.stat().st_size:,} bytes)")
    print(f"ready in {time.monotonic() - started:.1f} s (cache: {_usable_cache_dir()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
