"""``GET /download/``: the service serves its own verifier, so every instruction on a certificate works for a stranger.

Owns: the download page (bilingual; a pip "find-links" page at the same time: one ``<a href="NAME#sha256=...">``
per wheel), the files under it (the wheels of ``settings.download_dir``, built by ``scripts/build-download``: this
project's wheel and those it depends on for this platform) and the one-file verify page with this server's keys
embedded. ``pip install --no-index --find-links <public URL>/download/ evidence-ledger`` then works on a machine
with no package index. Public, no key.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_file

from service import sealing
from service.api.html import document, esc, html_response
from service.api.pages import content_security_policy
from service.api.state import runtime_state
from service.core.distribution import PACKAGE, VERIFY_PAGE_FILE, download_url, install_command
from service.core.errors import NotFound
from service.core.note import Verifier
from service.court.webpage import embed_keys, static_page

bp = Blueprint("download", __name__)

log = logging.getLogger(__name__)

_WHEEL_NAME = re.compile(r"[A-Za-z0-9_.+-]+\.whl")
_PROJECT_WHEEL = re.compile(r"evidence_ledger-([^-]+)-.*\.whl")


@dataclass(frozen=True)
class Wheel:
    name: str
    size: int
    sha256: str


_cache_lock = threading.Lock()
_cache: dict[tuple[str, int, int], str] = {}


def _digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None:
        with path.open("rb") as f:
            hit = hashlib.file_digest(f, "sha256").hexdigest()
        with _cache_lock:
            _cache[key] = hit
    return hit


def list_wheels(directory: Path) -> list[Wheel]:
    """The wheels in ``directory`` (sorted by name, this project's first), each with its size and SHA-256."""
    try:
        paths = [p for p in directory.iterdir() if _WHEEL_NAME.fullmatch(p.name) and p.is_file()]
    except OSError:
        return []
    paths.sort(key=lambda p: (not p.name.startswith("evidence_ledger-"), p.name.lower()))
    return [Wheel(p.name, p.stat().st_size, _digest(p)) for p in paths]


def has_project_wheel(directory: Path) -> bool:
    return any(_PROJECT_WHEEL.fullmatch(w.name) for w in list_wheels(directory))


def verify_page_html() -> str:
    """The one-file verify page with this server's published keys embedded (what ``GET /verify`` serves)."""
    state = runtime_state()
    with state.reader.begin() as conn:
        keys = sealing.key_list(conn)
    return embed_keys(static_page("verify.html"), keys, state.runtime.settings.public_url)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{max(1, round(n / 1024))} KB"


def _keys_table(keys: list[dict[str, Any]]) -> str:
    rows = []
    for item in keys:
        verifier = Verifier.from_vkey(item["vkey"])
        until = item["valid_until"] or "当前 current"
        rows.append(
            f'<tr><td class="mono">{esc(verifier.fingerprint)}</td><td class="mono">{esc(item["vkey"])}</td>'
            f"<td>{esc(item['valid_from'])}<br>→ {esc(until)}</td></tr>"
        )
    if not rows:
        return "<p>尚未发布密钥 · No key published yet.</p>"
    return (
        "<table><tr><th>指纹 Fingerprint</th><th>验证公钥 Verifier key (vkey)</th><th>有效期 Valid</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def keys_card(keys: list[dict[str, Any]]) -> str:
    return (
        '<section class="card" id="keys"><h2>运营方公钥 <span class="en">The operator\'s keys</span></h2>'
        "<p>验证时需要信任运营方的验证公钥。请将指纹与证书上所印指纹、以及运营方通过其他渠道公布的指纹核对。"
        ' <span class="en">Verifying trusts the operator\'s verifier key: compare its fingerprint with the one printed '
        "on the certificate and with one the operator publishes through another channel.</span></p>"
        f"{_keys_table(keys)}</section>"
    )


@bp.get("/download/")
def download_page() -> Response:
    """The download page: the one-file verify page and the verifier's wheels (also a pip find-links page)."""
    state = runtime_state()
    settings = state.runtime.settings
    with state.reader.begin() as conn:
        keys = sealing.key_list(conn)
    wheels = list_wheels(settings.download_dir)
    public = settings.public_url
    command = install_command(public)
    links = "".join(
        f'<tr><td><a class="mono" href="{esc(w.name)}#sha256={w.sha256}">{esc(w.name)}</a></td>'
        f'<td>{_size(w.size)}</td><td class="mono">{w.sha256}</td></tr>'
        for w in wheels
    )
    if any(_PROJECT_WHEEL.fullmatch(w.name) for w in wheels):
        wheel_card = (
            '<section class="card" id="cli"><h2>2. 命令行验证工具 <span class="en">The command-line verifier'
            "</span></h2>"
            "<p>需要 Python 3.11 或更新版本。以下命令只从本页安装，不访问任何软件包索引："
            ' <span class="en">Needs Python 3.11 or newer. These commands install from this page only, with no '
            "package index:</span></p>"
            f"<pre>python3 -m venv evidence-verifier\n"
            f". evidence-verifier/bin/activate      # Windows: evidence-verifier\\Scripts\\activate\n"
            f"{esc(command)}\n"
            "evidence verify certificate.pdf contract.pdf --key '&lt;vkey&gt;'</pre>"
            "<p>验证在本机离线进行，结果为 VALID（退出码 0）即全部检查通过。二进制软件包为本服务所在平台构建；"
            "其他平台请下载 evidence_ledger 软件包并从软件包索引安装其依赖。"
            ' <span class="en">Verification runs offline on your machine; VALID (exit code 0) means every check '
            "passed. The binary wheels are built for the platform this service runs on; on another platform "
            f"download the {PACKAGE} wheel and let pip take its dependencies from a package index.</span></p>"
            f"<table><tr><th>文件 File</th><th>大小 Size</th><th>SHA-256</th></tr>{links}</table></section>"
        )
    else:
        wheel_card = (
            '<section class="card warn" id="cli"><h2>2. 命令行验证工具 <span class="en">The command-line verifier'
            "</span></h2><p>本服务尚未构建验证工具软件包。运营方：运行 scripts/setup（或 scripts/build-download），"
            '或设置 EVIDENCE_DOWNLOAD_DIR。 <span class="en">The verifier wheels have not been built on this server. '
            "Operator: run scripts/setup (or scripts/build-download), or set EVIDENCE_DOWNLOAD_DIR.</span></p>"
            "</section>"
        )
    body = (
        '<section class="card"><p>本服务出具的存证回执与存证证书可在任何电脑上离线验证，无需信任本服务。'
        ' <span class="en">Receipts and certificates of deposit from this service can be verified offline on any '
        "computer, without trusting this service.</span></p></section>"
        '<section class="card" id="page"><h2>1. 网页验证（单个文件） <span class="en">The verify page (one file)'
        "</span></h2><p>下载后用浏览器打开，无需联网；已内置本服务的公钥。"
        ' <span class="en">Download it and open it in a browser, with no network; this service\'s keys are inside.'
        f'</span></p><p><a href="{VERIFY_PAGE_FILE}" download>{VERIFY_PAGE_FILE}</a></p></section>'
        f"{wheel_card}{keys_card(keys)}"
    )
    page = document("下载验证工具", "Download the verifier", download_url(public), body)
    return html_response(page)


@bp.get("/download/<name>")
def download_file(name: str) -> Response:
    """One file of the download page: a wheel, or the one-file verify page."""
    if name == VERIFY_PAGE_FILE:
        response = Response(verify_page_html(), status=200, mimetype="text/html")
        response.headers["Content-Disposition"] = f'attachment; filename="{VERIFY_PAGE_FILE}"'
        response.headers["Content-Security-Policy"] = content_security_policy("verify.html", "'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response
    directory = runtime_state().runtime.settings.download_dir
    if not _WHEEL_NAME.fullmatch(name) or name not in {w.name for w in list_wheels(directory)}:
        raise NotFound(f"no file {name[:100]!r} on the download page (see /download/)")
    response = send_file(directory / name, mimetype="application/octet-stream", as_attachment=True, download_name=name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3.1 path items of this blueprint."""
    html = {"text/html": {"schema": {"type": "string"}}}
    return {
        "/download/": {
            "get": {
                "operationId": "downloadPage",
                "summary": "The verifier download page (HTML, also a pip --find-links page): the one-file verify page "
                "and the wheels of the offline verifier and its dependencies.",
                "responses": {
                    "200": {"description": "The page.", "content": html},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
        "/download/{name}": {
            "get": {
                "operationId": "downloadFile",
                "summary": f"A file of the download page: a wheel (.whl) or {VERIFY_PAGE_FILE}.",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "A file name listed on /download/.",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.+-]+$"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        },
    }
