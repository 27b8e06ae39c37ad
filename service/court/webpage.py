"""The self-contained web pages of ``service/static`` as text, for the server and for offline tools alike.

Owns: assembling a page (its ``/* @include X.js */`` lines replaced by the shared scripts) and embedding published
keys into the verify page. No Flask: ``evidence bundle`` puts the one-file verify page into an evidence bundle on
a machine that has only the verifier installed; ``service.api.pages`` serves the same text.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["KEYS_PLACEHOLDER", "embed_keys", "static_page", "verify_page"]

# The placeholder in verify.html that GET /verify replaces with the published keys (a data block, never executed).
KEYS_PLACEHOLDER = '<script type="application/json" id="published-keys">{"keys": [], "public_url": null}</script>'

# A line ``/* @include NAME.js */`` inside a page's inline <script> is replaced by ``service/static/NAME.js``: the
# JavaScript shared by several pages lives in one file, and every served page is still one self-contained file.
_INCLUDE = re.compile(r"^[ \t]*/\* @include ([a-z0-9-]+\.js) \*/[ \t]*\n", re.M)


def _static_source(name: str) -> str:
    return resources.files("service").joinpath("static", name).read_text(encoding="utf-8")


@cache
def static_page(name: str) -> str:
    """The page ``service/static/<name>`` as served: its ``/* @include X.js */`` lines replaced by the shared
    scripts (so the page, and any copy saved from it, needs nothing else; read once per process)."""

    def inline(match: re.Match[str]) -> str:
        script = _static_source(match.group(1))
        if "</script" in script.lower() or _INCLUDE.search(script):
            raise RuntimeError(f"service/static/{match.group(1)} cannot be inlined")
        return f"/* BEGIN {match.group(1)} */\n{script.rstrip()}\n/* END {match.group(1)} */\n"

    return _INCLUDE.sub(inline, _static_source(name))


def embed_keys(page: str, keys: list[dict[str, Any]], public_url: str) -> str:
    """``page`` with the keys data block filled in; the JSON is escaped so no ``</script>`` can end the block."""
    if page.count(KEYS_PLACEHOLDER) != 1:
        raise RuntimeError("verify.html has lost its published-keys placeholder")
    data = json.dumps({"keys": keys, "public_url": public_url.rstrip("/")}, ensure_ascii=True)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return page.replace(KEYS_PLACEHOLDER, f'<script type="application/json" id="published-keys">{data}</script>')


def verify_page(keys: list[dict[str, Any]], public_url: str) -> str:
    """The one-file verify page with ``keys`` (``/v1/keys`` items) embedded."""
    return embed_keys(static_page("verify.html"), keys, public_url)
