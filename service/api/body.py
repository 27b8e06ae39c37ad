"""A raw request body read straight from gunicorn's socket into the caller's buffer (``readinto``), for uploads.

Owns: ``raw_body_stream``, what ``POST /v1/evidence`` hashes. Under gunicorn, a body of known length (not chunked)
would otherwise go socket -> a new ``bytes`` per ``recv`` -> the Unreader's ``BytesIO`` -> slices -> werkzeug's
``LimitedStream`` -> the hashing buffer: four copies and an allocation per MiB. Here the bytes gunicorn already
buffered are taken first, then ``recv_into`` fills the caller's buffer: one copy, by the kernel.

Exactly ``Content-Length`` bytes are read, never more: on a keep-alive connection the next request's bytes (read
ahead into gunicorn's buffer, or still in the socket) stay where gunicorn's parser finds them; gunicorn's own
count of the body left (``LengthReader.length``) is kept current after every read, so whatever is not read (an
error, a refusal) is discarded by gunicorn as usual before the next request.
Anything else (another server, a chunked body, a stream someone already wrapped) gets werkzeug's
``request.stream``, unchanged.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO, cast

from flask import request
from werkzeug.exceptions import ClientDisconnected

__all__ = ["raw_body_stream"]


def raw_body_stream() -> BinaryIO:
    """The body of the current request as a binary stream with ``readinto`` (see the module)."""
    direct = _gunicorn_body()
    return cast(BinaryIO, direct) if direct is not None else cast(BinaryIO, request.stream)


def _gunicorn_body() -> _SocketBody | None:
    environ = request.environ
    sock = environ.get("gunicorn.socket")
    body = environ.get("wsgi.input")
    if sock is None or body is None or request.content_length is None:
        return None
    try:
        from gunicorn.http.body import Body, LengthReader
    except ImportError:  # pragma: no cover - gunicorn.socket is only set by gunicorn
        return None
    if type(body) is not Body or type(body.reader) is not LengthReader:
        return None  # chunked or until-EOF bodies, or a wrapped stream
    reader = body.reader
    unreader = reader.unreader
    take_buffered = getattr(unreader, "take_buffered", None)
    if take_buffered is None or not hasattr(unreader, "unread") or not isinstance(body.buf, io.BytesIO):
        return None  # another gunicorn than the one this was written against
    # Body bytes already taken from the reader (read but not yet returned), then those gunicorn read ahead past
    # the headers: the part of them beyond this body belongs to the next request and goes back.
    first = body.buf.getvalue()
    body.buf = io.BytesIO()
    ahead = take_buffered()
    mine, rest = ahead[: reader.length], ahead[reader.length :]
    if rest:
        unreader.unread(rest)
    reader.length -= len(mine)
    return _SocketBody(first + mine, sock, reader)


class _SocketBody(io.RawIOBase):
    """``first``, then the rest of the body (``reader.length`` bytes) by ``recv_into`` from ``sock``."""

    def __init__(self, first: bytes, sock: Any, reader: Any) -> None:
        super().__init__()
        self._first = memoryview(first)
        self._sock = sock
        self._reader = reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` as far as the body goes (0 at its end).

        :raise ClientDisconnected: the connection ended before ``Content-Length`` bytes came (as werkzeug's
            ``LimitedStream`` does: a short body must not be hashed as if it were whole).
        """
        view = memoryview(buffer).cast("B")
        filled = 0
        if self._first:
            filled = min(len(view), len(self._first))
            view[:filled] = self._first[:filled]
            self._first = self._first[filled:]
        reader, recv_into = self._reader, self._sock.recv_into
        while filled < len(view) and reader.length > 0:
            n = recv_into(view[filled:], min(len(view) - filled, reader.length))
            if n == 0:
                raise ClientDisconnected()
            reader.length -= n
            filled += n
        return filled
