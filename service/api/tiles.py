"""The static read path (SPEC §10, C2SP tlog-tiles): ``/log/checkpoint``, ``/log/tile/<L>/<N>[.p/<W>]`` and
``/log/tile/entries/<N>[.p/<W>]``. Public, no authentication. Tiles never change once they exist (a partial tile
of width W is the first W hashes, fixed forever), so they are served with a year-long ``immutable`` cache
lifetime, and each app keeps the most recently served ones in memory (``TileCache``, bounded in bytes): a tile
once read from the database is never read again while it stays in the cache. The checkpoint is ``no-cache``.
No SQL here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from flask import Blueprint, Flask, Response, current_app

from service import tiles, witnessing
from service.api.state import runtime_state

bp = Blueprint("tiles", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_BYTES = 32 * 1024 * 1024
_CACHE_KEY = "evidence_tile_cache"


class TileCache:
    """Path -> tile bytes, least recently used evicted first, at most ``limit`` bytes; thread-safe."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> bytes | None:
        with self._lock:
            data = self._items.get(path)
            if data is not None:
                self._items.move_to_end(path)
            return data

    def put(self, path: str, data: bytes) -> None:
        if len(data) > self.limit:
            return
        with self._lock:
            if path in self._items:
                return
            self._items[path] = data
            self.size += len(data)
            while self.size > self.limit:
                _, old = self._items.popitem(last=False)
                self.size -= len(old)


def install_fast_path(app: Flask) -> None:
    """Answer ``GET /log/tile/...`` for a tile already in the app's cache straight from WSGI, before Flask's
    request machinery (as a static file server would); everything else, and every cache miss, goes to Flask.
    Such hits are not counted in ``evidence_http_requests`` (gunicorn's access log still has them)."""
    cache = app.extensions.setdefault(_CACHE_KEY, TileCache())
    inner = app.wsgi_app

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET" and path.startswith("/log/tile/"):
            data = cache.get(path[len("/log/") :])
            if data is not None:
                start_response(
                    "200 OK",
                    [
                        ("Content-Type", "application/octet-stream"),
                        ("Content-Length", str(len(data))),
                        ("Cache-Control", IMMUTABLE),
                    ],
                )
                return [data]
        return inner(environ, start_response)

    app.wsgi_app = wsgi  # type: ignore[method-assign]


def _cache() -> TileCache:
    cache = current_app.extensions.get(_CACHE_KEY)
    if cache is None:
        cache = current_app.extensions.setdefault(_CACHE_KEY, TileCache())
    assert isinstance(cache, TileCache)
    return cache


@bp.get("/log/checkpoint")
def checkpoint() -> Response:
    """The latest signed, cosigned checkpoint (the same as ``/v1/checkpoint``)."""
    state = runtime_state()
    with state.reader.begin() as conn:
        note = witnessing.checkpoint_with_cosignatures(conn, state.runtime.settings)
    response = Response(note, status=200, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/log/tile/<path:rest>")
def tile(rest: str) -> Response:
    """A hash tile or an entry bundle; 404 with a problem document for a malformed path or a tile not there yet."""
    path = f"tile/{rest}"
    cache = _cache()
    data = cache.get(path)
    if data is None:
        with runtime_state().reader.begin() as conn:
            _tile, data = tiles.read_tile(conn, path)
        cache.put(path, data)  # only tiles that exist get here, and those never change
    response = Response(data, status=200, content_type="application/octet-stream")
    response.headers["Cache-Control"] = IMMUTABLE
    return response
