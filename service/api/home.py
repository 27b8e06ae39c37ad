"""``GET /``: the bilingual start page: what this service is and where each journey starts.

Owns: the landing page (deposit, verify, check a certificate number, the verifier download, the operator's keys
with fingerprints, the API documents). Public; it makes no requests and runs no script.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from service import sealing
from service.api.download import keys_card
from service.api.html import document, esc, html_response
from service.api.state import runtime_state
from service.core.distribution import download_url, install_command

bp = Blueprint("home", __name__)

# (path, Chinese title, English title, Chinese text, English text)
_JOURNEYS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "/deposit",
        "存证",
        "Deposit",
        "在浏览器中计算文件的 SHA-256 并只提交摘要（需要 API 密钥），得到回执与存证证书。",
        "Hash a file in your browser and submit only its SHA-256 (needs an API key); get the receipt and the "
        "certificate of deposit.",
    ),
    (
        "/verify",
        "验证回执或证书",
        "Verify a receipt or certificate",
        "离线验证：文件在本机计算摘要，不上传；可另存为单个文件离线使用。",
        "Offline verification: the file is hashed on your computer and never uploaded; save the page and use it "
        "offline.",
    ),
    (
        "/check",
        "核验证书编号",
        "Check a certificate number",
        "只有证书和文件？填写证书编号并选择文件，编号与文件都相符时取回回执并在本机验证。",
        "Holding only the certificate and the file? Type its number and choose the file: when both match, the "
        "receipt is returned and verified in your browser.",
    ),
    (
        "/download/",
        "下载验证工具",
        "Download the verifier",
        "命令行验证工具与单文件验证网页，可在无网络、无软件包索引的电脑上安装。",
        "The command-line verifier and the one-file verify page, installable with no network and no package index.",
    ),
    (
        "/openapi.json",
        "接口文档",
        "API documentation",
        "OpenAPI 3.1 描述的全部接口；错误按 RFC 9457 返回。",
        "Every endpoint as OpenAPI 3.1; errors are RFC 9457 problem documents.",
    ),
)


def _journeys() -> str:
    items = "".join(
        f'<li><a href="{path}"><strong>{esc(zh)}</strong> <span class="en">{esc(en)}</span></a> — {esc(tzh)}'
        f' <span class="en">{esc(ten)}</span></li>'
        for path, zh, en, tzh, ten in _JOURNEYS
    )
    title = '<h2>从这里开始 <span class="en">Start here</span></h2>'
    return f'<section class="card" id="start">{title}<ul class="links">{items}</ul></section>'


def landing_html(public_url: str, origin: str, keys: list[dict[str, Any]]) -> str:
    body = (
        '<section class="card" id="about"><h2>这是什么 <span class="en">What this is</span></h2>'
        "<p>开源电子数据存证服务：文件（或仅其 SHA-256 摘要）提交后，服务将摘要按批次封存进 RFC 9162 默克尔树，"
        "并写入经 Ed25519 签名、只可追加的账本。"
        "持有文件与回执的任何人，日后都可离线证明该文件不晚于封存时间已存在且未被改动，"
        "无需信任本服务。</p>"
        '<p class="en">An open-source evidence deposit service: a file (or only its SHA-256) is sealed in batches '
        "into RFC 9162 Merkle trees, whose roots enter an append-only ledger signed with Ed25519. Years later anyone "
        "holding "
        "the file and its receipt can prove offline, without trusting this service, that this exact file existed, "
        "unchanged, no later than the sealing time.</p></section>"
        f"{_journeys()}"
        '<section class="card" id="commands"><h2>命令行 <span class="en">Command line</span></h2>'
        "<p>一份合同，一条命令（回执与证书写在文件旁）："
        ' <span class="en">One contract, one command (receipt and certificate written beside the file):</span></p>'
        f"<pre>EVIDENCE_URL={esc(public_url)} EVIDENCE_API_KEY=&lt;key&gt; evidence submit contract.pdf\n"
        "evidence verify contract.pdf.receipt.json contract.pdf --key '&lt;vkey&gt;'</pre>"
        "<p>没有验证工具？从本服务安装（无需软件包索引）："
        ' <span class="en">No verifier yet? Install it from this service (no package index needed):</span></p>'
        f"<pre>{esc(install_command(public_url))}</pre>"
        "<p>API 密钥由运营方签发（<code>evidence tenant create NAME</code>）。"
        ' <span class="en">API keys are issued by the operator (<code>evidence tenant create NAME</code>).</span></p>'
        "</section>"
        f"{keys_card(keys)}"
    )
    return document("Evidence Ledger 存证服务", "Evidence deposit", f"{origin} · {download_url(public_url)}", body)


@bp.get("/")
def landing() -> Response:
    """The start page (public)."""
    state = runtime_state()
    settings = state.runtime.settings
    with state.reader.begin() as conn:
        keys = sealing.key_list(conn)
    return html_response(landing_html(settings.public_url, settings.origin, keys))


def openapi_paths() -> dict[str, Any]:
    return {
        "/": {
            "get": {
                "operationId": "landingPage",
                "summary": "The bilingual start page (HTML): deposit, verify, download the verifier, keys, API docs.",
                "responses": {
                    "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                    "503": {"$ref": "#/components/responses/Unavailable"},
                },
            }
        }
    }
