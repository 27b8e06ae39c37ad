"""Wiring for a running process: settings -> engine -> signing key -> published key and genesis checkpoint.

Owns: what every entrypoint (``evidence serve``, gunicorn's app factory, Celery workers, admin commands) needs
before it serves, so they all start the same way. Must not import: Flask or Celery.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine, make_url

from service.config import Settings
from service.core.formats import utc_now
from service.core.note import Signer, Sm2Signer
from service.keys import load_or_create_signer, load_signer, load_sm2_signer
from service.sealing import ensure_genesis
from service.storage import db, ledger
from service.storage.codec import to_us

log = logging.getLogger(__name__)


def private_data_dir(settings: Settings) -> None:
    """Create the data directory 0700, or take group and other access away from an existing one, if the signing
    key or a SQLite database lives there. A directory we may not chmod is left as it is, with a warning."""
    data_dir = settings.data_dir
    uses = [settings.signing_key_file]
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and not url.database.startswith(("file:", ":memory:")):
        uses.append(Path(url.database).expanduser().absolute())
    if not any(data_dir in p.parents for p in uses):
        return
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)
        return
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        try:
            data_dir.chmod(mode & 0o700)
        except OSError as exc:
            log.warning("the data directory %s is readable by other users (mode %o): %s", data_dir, mode, exc)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """The runtime of ``settings``. The data directory, when it holds the database or the signing key, is made
        private (0700; an older release created it 0755), and so is an embedded database (0600, see
        ``db.private_database_file``)."""
        private_data_dir(settings)
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
