"""The static read path (SPEC §10, C2SP tlog-tiles): ``/log/checkpoint``, ``/log/tile/<L>/<N>[.p/<W>]`` and
``/log/tile/entries/<N>[.p/<W>]``. Public, no authentication. Tiles never change once they exist (a partial tile
of width W is the first W hashes, fixed forever), so they are served with a year-long ``immutable`` cache
lifetime; the checkpoint is ``no-cache``. No SQL here.
"""

from __future__ import annotations

from flask import Blueprint, Response

from service import tiles, witnessing
from service.api.state import runtime_state

bp = Blueprint("tiles", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"


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
    with runtime_state().reader.begin() as conn:
        _tile, data = tiles.read_tile(conn, f"tile/{rest}")
    response = Response(data, status=200, content_type="application/octet-stream")
    response.headers["Cache-Control"] = IMMUTABLE
    return response
