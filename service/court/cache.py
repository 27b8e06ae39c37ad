"""Rendered certificates kept on disk, so a sealed evidence's certificate is drawn once, not on every request.

Owns: ``CertificateCache`` (a folder per evidence id, holding PDF files named by a digest of everything the page
shows) and ``certificate_key`` (that digest). A certificate is a pure function of its inputs: the receipt's bytes
(and so the checkpoint and the timestamp tokens it carries), the label, the QR target, the time zone, the trusted
keys and TSA roots, and the code that draws it. All of them go into the key, so a changed input or a new release of
the renderer is a different file, never a stale page; nothing is ever invalidated in place.

Why files and not the database: the PDF is derived data (the ledger can redraw it any time), ~75 KB against the
~400 bytes a deposit may cost in the database (issue 15), and the ledger's tables are append-only by trigger. API
processes on one machine share the folder (each file is written to a temporary name and renamed, so a reader sees
a whole PDF or none); processes on other machines each draw a certificate at most once. The folder is bounded
(``max_bytes``): the least recently served files go first.

Must not import: anything in ``service`` but ``court``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAME = re.compile(r"^[0-9a-f]{32}\.pdf$")
# The code whose output is on the page (relative to service/): a change to any of them is a new certificate.
_RENDERER_MODULES = (
    "court/certificate.py",
    "court/layout.py",
    "court/view.py",
    "court/fonts.py",
    "core/distribution.py",
)


@functools.lru_cache(maxsize=1)
def renderer_digest() -> str:
    """A digest of the code that draws certificates: a new release never serves a page drawn by an old one."""
    service = Path(__file__).parents[1]
    digest = hashlib.sha256()
    for name in _RENDERER_MODULES:
        digest.update((service / name).read_bytes())
    return digest.hexdigest()


def certificate_key(evidence_id: str, parts: Iterable[str | bytes]) -> str:
    """The cache key of one certificate, ``<evidence id>/<digest>``: a digest of the renderer and of every input."""
    digest = hashlib.sha256(renderer_digest().encode())
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no two input lists collide
    return f"{evidence_id}/{digest.hexdigest()[:32]}"


class CertificateCache:
    """PDF files in ``directory`` (folders and files private to the service), at most about ``max_bytes`` of them."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None  # bytes in the folder, counted on the first write

    def has_any(self, evidence_id: str) -> bool:
        """Whether some certificate of ``evidence_id`` is stored (cheap: no database, one small folder)."""
        try:
            with os.scandir(self.directory / evidence_id) as entries:
                return any(_NAME.match(entry.name) for entry in entries)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def get(self, key: str) -> bytes | None:
        """The PDF stored under ``key``, or None. A hit marks the file as recently served."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the cached certificate %s: %s", path, exc.strerror)
            return None
        if not data.startswith(b"%PDF-") or not data.rstrip().endswith(b"%%EOF"):
            return None  # never serve a damaged file; the next write replaces it
        try:
            os.utime(path)
        except OSError:
            pass
        return data

    def put(self, key: str, pdf: bytes) -> None:
        """Store ``pdf`` under ``key`` (atomically), then trim the folder to ``max_bytes``. Failures are logged:
        the cache only saves work, so a full or read-only disk must not fail the request."""
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pdf)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot cache the certificate in %s: %s", self.directory, exc.strerror)
            tmp.unlink(missing_ok=True)
            return
        with self._lock:
            self._size = (self._count() if self._size is None else self._size) + len(pdf)
            if self._size > self.max_bytes:
                self._size = self._trim(int(self.max_bytes * 0.9))

    def _path(self, key: str) -> Path:
        evidence_id, _, digest = key.partition("/")
        if not _ID.match(evidence_id) or not _NAME.match(f"{digest}.pdf"):
            raise ValueError(f"not a certificate cache key: {key!r}")
        return self.directory / evidence_id / f"{digest}.pdf"

    def _files(self) -> list[tuple[float, int, Path]]:
        found = []
        try:
            folders = [Path(e.path) for e in os.scandir(self.directory) if e.is_dir() and _ID.match(e.name)]
        except FileNotFoundError:
            return []
        for folder in folders:
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:  # another process trimmed it
                continue
            for entry in entries:
                if not _NAME.match(entry.name):
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                found.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        return found

    def _count(self) -> int:
        return sum(size for _, size, _ in self._files())

    def _trim(self, target: int) -> int:
        """Delete the least recently served files until at most ``target`` bytes remain; return what remains."""
        files = sorted(self._files())
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= target:
                break
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()  # only when it was the evidence's last certificate
            except OSError:
                pass
            total -= size
        return total
