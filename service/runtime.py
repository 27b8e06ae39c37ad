"""Wiring for a running process: settings -> engine -> signing key -> published key and genesis checkpoint.

Owns: what every entrypoint (``evidence serve``, gunicorn's app factory, Celery workers, admin commands) needs
before it serves, so they all start the same way. Must not import: Flask or Celery.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.engine import Engine

from service.config import Settings
from service.core.formats import utc_now
from service.core.note import Signer, Sm2Signer
from service.keys import load_or_create_signer, load_signer, load_sm2_signer
from service.sealing import ensure_genesis
from service.storage import db, ledger
from service.storage.codec import to_us


@dataclass
class Runtime:
    settings: Settings
    engine: Engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(settings, db.make_engine(settings))

    @cached_property
    def signer(self) -> Signer:
        """The checkpoint signing key. The embedded default creates it on first start; production only loads it."""
        path = self.settings.signing_key_file
        if self.settings.embedded:
            return load_or_create_signer(path, self.settings.origin)
        return load_signer(path, self.settings.origin)

    @cached_property
    def cosigners(self) -> tuple[Sm2Signer, ...]:
        """Further checkpoint signers: the SM2 key (SPEC §4.1) when its file exists. Never created here."""
        sm2 = load_sm2_signer(self.settings.sm2_key_file, self.settings.origin, self.settings.sm2_id)
        return () if sm2 is None else (sm2,)

    def prepare_signing(self) -> Signer:
        """Load (or create) the key, publish it (and the SM2 key if any) in the database and sign the size-0
        checkpoint if needed."""
        signer = self.signer
        cosigners = self.cosigners
        now = utc_now()
        with self.engine.begin() as conn:
            # Processes starting together (API workers, Celery workers) serialise here: publish once, sign once.
            ledger.lock_ledger(conn)
            ledger.insert_signing_key(conn, signer.verifier.vkey, signer.name, signer.key_hash, to_us(now))
            for extra in cosigners:
                ledger.insert_signing_key(conn, extra.verifier.vkey, extra.name, extra.key_hash, to_us(now))
            ensure_genesis(conn, signer, now, cosigners=cosigners)
        return signer
