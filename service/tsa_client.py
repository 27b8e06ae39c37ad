"""HTTP client for RFC 3161 Time-Stamp Authorities (SPEC §5), used by the ``timestamp_entry`` worker.

Owns: one POST of a TimeStampReq over HTTP (RFC 3161 §3.4) and its error handling.
Must not be imported by the offline verifier (it imports ``requests``); the token checks are in
``service.core.timestamps``.
"""

from __future__ import annotations

import hashlib
import secrets

import requests

from service.core.errors import TimestampError
from service.core.timestamps import build_request, token_from_response

TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"
MAX_REPLY_BYTES = 1024 * 1024  # real replies are a few kB; more is not a time-stamp reply


def request_token(url: str, message: bytes, *, timeout: float = 10) -> bytes:
    """Ask the TSA at ``url`` for a token over SHA-256(``message``); return the DER TimeStampToken.

    Sends certReq and a random 64-bit nonce, and checks the reply (HTTP status, content type, granted
    status, imprint and nonce). The token's signature is not checked here: ``verify_token`` does that
    against the trusted roots.

    :raise TimestampError: on any failure (network error, timeout, HTTP error, wrong content type,
        rejected or mismatched reply), with the URL in the message; the caller may retry.
    """
    digest = hashlib.sha256(message).digest()
    nonce = secrets.randbits(64)
    query = build_request(digest, nonce=nonce)
    try:
        with requests.post(
            url,
            data=query,
            headers={"Content-Type": TIMESTAMP_QUERY, "Accept": TIMESTAMP_REPLY},
            timeout=timeout,
            stream=True,
        ) as response:
            body = _read_limited(response, url)
            status = response.status_code
            content_type = response.headers.get("Content-Type", "")
    except requests.RequestException as e:
        raise TimestampError(f"TSA {url} could not be reached: {e}") from e
    if status != 200:
        snippet = body[:200].decode("utf-8", "replace").strip()
        raise TimestampError(f"TSA {url} answered HTTP {status}" + (f": {snippet}" if snippet else ""))
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != TIMESTAMP_REPLY:
        raise TimestampError(
            f"TSA {url} answered with content type {content_type or '(none)'}, expected {TIMESTAMP_REPLY}"
        )
    try:
        return token_from_response(body, digest=digest, nonce=nonce)
    except TimestampError as e:
        raise TimestampError(f"TSA {url}: {e.reason}") from e


def _read_limited(response: requests.Response, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16384):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise TimestampError(f"TSA {url} sent more than {MAX_REPLY_BYTES} bytes; not a time-stamp reply")
        chunks.append(chunk)
    return b"".join(chunks)
