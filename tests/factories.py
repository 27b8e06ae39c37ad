"""Builders the integration tests share: a migrated, signing-ready ``Runtime``, the app, tenants and their headers.

``make_runtime(tmp_path, url, **overrides)``: migrates ``url``, builds ``Settings(data_dir=tmp_path / "data",
database_url=url, **overrides)`` and publishes the signing key (the genesis checkpoint is signed). The caller
disposes ``runtime.engine`` (fixtures do it after ``yield``). ``make_app``: ``create_app`` without the in-process
sealer (tests seal explicitly). ``new_key``: a new tenant and its API key. ``auth``: the request headers of a key.
The ``app`` and ``client`` fixtures built from these are in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from service.api import create_app
from service.config import Settings
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant

__all__ = ["auth", "make_app", "make_runtime", "new_key"]


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
