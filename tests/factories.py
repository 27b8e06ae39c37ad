"""Builders the integration tests share: a migrated, signing-ready ``Runtime``, the app, tenants and their headers.

``make_runtime(tmp_path, url, **overrides)``: migrates ``url``, builds ``Settings(data_dir=tmp_path / "data",
database_url=url, **overrides)`` and publishes the signing key (the genesis checkpoint is signed). The caller
disposes ``runtime.engine`` (fixtures do it after ``yield``). ``make_app``: ``create_app`` without the in-process
sealer (tests seal explicitly). ``new_key``: a new tenant and its API key. ``auth``: the request headers of a key.
The ``app`` and ``client`` fixtures built from these are in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.engine import Connection

from service import sealing
from service.api import create_app
from service.config import Settings
from service.core import merkle
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db, ledger
from service.tenants import create_tenant

__all__ = ["auth", "make_app", "make_runtime", "new_key", "seal_as_before_0007"]


def make_runtime(tmp_path: Path, url: str, **overrides: Any) -> Runtime:
    db.upgrade(url)
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path / "data", database_url=url, **overrides))
    runtime.prepare_signing()
    return runtime


def make_app(runtime: Runtime) -> Flask:
    return create_app(runtime=runtime, start_sealer=False)


def new_key(runtime: Runtime, name: str = "acme") -> str:
    with runtime.engine.begin() as conn:
        return create_tenant(conn, name, utc_now())


def auth(key: str, idem: str | None = None) -> dict[str, str]:
    """``Authorization: Bearer <key>`` (and ``Idempotency-Key: <idem>`` when given)."""
    headers = {"Authorization": f"Bearer {key}"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return headers


def seal_as_before_0007(rt: Runtime, monkeypatch: pytest.MonkeyPatch, n: int) -> sealing.SealResult:
    """Seal ``n`` pending deposits the way releases before migration 0007 did: every leaf's audit path stored in
    ``batch_leaves.proof``, no ``batch_tiles`` (the sealer's own tree and rows, written the old way: the pending
    rows are still there when it inserts the leaves, so their leaf hashes are read back from them)."""
    insert_leaves = ledger.insert_batch_leaves

    def with_proofs(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        pending = {r.pk: r for r in ledger.select_pending(conn, 1_000_000)}
        tree = merkle.BatchTree([merkle.leaf_hash(sealing.leaf_of(pending[r["evidence_pk"]]).to_bytes()) for r in rows])
        insert_leaves(conn, [{**r, "proof": b"".join(tree.inclusion_proof(r["leaf_index"]))} for r in rows])

    with monkeypatch.context() as m:
        m.setattr(ledger, "insert_batch_leaves", with_proofs)
        m.setattr(ledger, "insert_batch_tiles", lambda conn, seq, tiles: None)
        with rt.engine.begin() as conn:
            result = sealing.seal_batch(conn, rt.signer, utc_now(), n)
    assert result is not None and result.size == n
    return result
