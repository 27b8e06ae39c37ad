"""Public endpoint ``GET /v1/ledger/proof?seq=N[&size=M]``: a ledger entry's C2SP tlog-proof (text/plain).

The proof is against the checkpoint of ``size`` (default ``seq + 1``, the checkpoint signed when the entry was
sealed); its extra data is the entry bytes. Bad parameters are ``400``, an unknown entry or size ``404``, both
as problem documents through the app's error handlers. No SQL here.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from service.api.parsing import query_int
from service.api.state import runtime_state
from service.trust import tlog_proof

bp = Blueprint("proofs", __name__)


@bp.get("/v1/ledger/proof")
def proof() -> Response:
    """The C2SP tlog-proof of ledger entry ``seq`` in the checkpoint of ``size``."""
    seq = query_int(request.args, "seq", required=True)
    size = query_int(request.args, "size", required=False)
    assert seq is not None
    with runtime_state().reader.begin() as conn:
        built = tlog_proof.proof_for_entry(conn, seq, size)
    response = Response(built.to_bytes(), status=200, content_type=tlog_proof.MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'inline; filename="entry-{seq}.tlog-proof"'
    return response
