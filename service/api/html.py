"""Server-rendered HTML pages (``/``, ``/download/``): one bilingual skeleton, one stylesheet, a strict CSP.

Owns: ``csp_for`` (a Content-Security-Policy allowing exactly a page's own inline ``<script>``/``<style>`` blocks,
by SHA-256, and nothing else but ``connect``), ``html_response`` and ``document`` (the skeleton the generated
pages share, in the look of ``service/static``). Text is escaped by the callers with ``esc``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re

from flask import Response

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)

STYLE = """
:root { --navy: #162c54; --navy-2: #23407a; --ink: #1b2430; --grey: #5f6368; --rule: #d6dbe4; --bg: #f4f6fa;
  --mono: ui-monospace, "DejaVu Sans Mono", "SFMono-Regular", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
html { background: var(--bg); }
body { margin: 0; color: var(--ink); font: 15px/1.55 system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC",
  "PingFang SC", "Microsoft YaHei", "WenQuanYi Zen Hei", sans-serif; }
a { color: var(--navy-2); }
code, .mono { font-family: var(--mono); font-size: 13px; word-break: break-all; }
pre { background: #0f1b33; color: #e8eefb; padding: 10px 12px; border-radius: 6px; overflow-x: auto;
  font: 13px/1.5 var(--mono); white-space: pre-wrap; word-break: break-all; }
.en { color: var(--grey); }
header.top { background: var(--navy); color: #fff; padding: 18px 0 16px; border-bottom: 4px solid #0d1d3a; }
header.top h1 { margin: 0; font-size: 22px; }
header.top h1 .en { color: #c9d3e6; font-size: 17px; }
header.top .sub { margin: 2px 0 0; color: #c9d3e6; font-size: 13.5px; }
.wrap { max-width: 900px; margin: 0 auto; padding: 0 20px; }
main.wrap { padding-top: 22px; padding-bottom: 40px; }
.card { background: #fff; border: 1px solid var(--rule); border-radius: 8px; padding: 14px 18px; margin-bottom: 16px; }
.card h2 { margin: 0 0 8px; font-size: 16px; color: var(--navy); }
.card p { margin: 6px 0; }
.warn { border-color: #e0b000; background: #fff8e1; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--rule); vertical-align: top; }
th { color: var(--grey); font-weight: 600; }
ul.links { padding-left: 20px; margin: 6px 0; }
footer { color: var(--grey); font-size: 12.5px; padding-bottom: 30px; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def csp_for(text: str, connect: str = "'none'") -> str:
    """A CSP allowing exactly ``text``'s inline ``<script>`` and ``<style>`` blocks (by SHA-256) and nothing else
    but ``connect`` for fetch (``'none'`` or ``'self'``)."""
    sources: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(text):
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        sources[kind].append(f"'sha256-{digest}'")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + (" ".join(sources["script"]) or "'none'"),
            "style-src " + (" ".join(sources["style"]) or "'none'"),
            "img-src data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def html_response(text: str, *, connect: str = "'none'", status: int = 200) -> Response:
    response = Response(text, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp_for(text, connect)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


def document(title_zh: str, title_en: str, subtitle: str, body: str) -> str:
    """A whole bilingual page: the header (Chinese title, English title, a subtitle line) and ``body`` (HTML)."""
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{esc(title_zh)} · {esc(title_en)} — Evidence Ledger</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<header class="top"><div class="wrap"><h1>{esc(title_zh)} <span class="en">{esc(title_en)}</span></h1>'
        f'<p class="sub">{esc(subtitle)}</p></div></header>\n'
        f'<main class="wrap">\n{body}\n</main>\n'
        '<footer class="wrap"><p>Evidence Ledger · 开源存证服务 · open-source evidence deposit ·'
        ' <a href="/">首页 Home</a> · <a href="/download/">下载验证工具 Download the verifier</a></p></footer>\n'
        "</body>\n</html>\n"
    )
