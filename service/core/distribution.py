"""Where a stranger gets the verifier: the route every service serves it on, and the one install command.

Owns: the names printed on certificates, the download page, the landing page and the ``serve`` banner, so they
cannot drift apart. ``evidence-ledger`` exists on no public package index: a service serves its own wheels (and
those the verifier depends on) at ``<public URL>/download/`` (``service.api.download``), built at setup time by
``scripts/build-download``.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

__all__ = [
    "DOWNLOAD_PATH",
    "PACKAGE",
    "VERIFY_PAGE_FILE",
    "check_url",
    "download_url",
    "install_command",
    "is_loopback_url",
]

PACKAGE = "evidence-ledger"
DOWNLOAD_PATH = "/download/"
# The one-file verify page as offered on the download page and put into evidence bundles.
VERIFY_PAGE_FILE = "evidence-ledger-verify.html"

_LOOPBACK_HOSTS = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "::1", "0.0.0.0", "::"})


def download_url(public_url: str) -> str:
    """``<public URL>/download/``."""
    return public_url.rstrip("/") + DOWNLOAD_PATH


def check_url(public_url: str, evidence_id: str) -> str:
    """What a certificate's QR code opens: the public checking page with the certificate number filled in."""
    return f"{public_url.rstrip('/')}/check?id={quote(evidence_id, safe='')}"


def install_command(public_url: str) -> str:
    """The pip command that installs the verifier from the service at ``public_url``, with no package index."""
    return f"pip install --no-index --find-links {download_url(public_url)} {PACKAGE}"


def is_loopback_url(url: str | None) -> bool:
    """True when ``url`` is unset or names this machine only (a stranger's browser or pip cannot reach it)."""
    if not url:
        return True
    host = (urlsplit(url).hostname or "").lower()
    return not host or host in _LOOPBACK_HOSTS or host.startswith("127.") or host.endswith(".localhost")
