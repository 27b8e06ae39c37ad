"""RFC 3161 time-stamps for ledger entries (SPEC §5): obtain, check and store one token per entry and TSA.

Owns: the use cases ``timestamp_batch`` (one ledger entry, every configured TSA that has no token for it yet)
and ``timestamp_pending`` (the sweep over entries still lacking tokens), loading the trusted TSA roots, and
``TimestampThread``, the in-process sweeper of the embedded default. Celery tasks (``workers.timestamp_tasks``)
are thin adapters over these functions.

Tokens are obtained OUTSIDE the sealing transaction: a TSA that is slow or down never holds the ledger lock and
never blocks sealing. Each token is checked against the trusted TSA roots (``Settings.tsa_ca_files``) before it
is stored, then stored in its own short transaction (``timestamps`` is append-only; one token per entry and
TSA, enforced by a unique key, so two workers racing on the same entry store it once).

Must not import: Flask or Celery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from service import tsa_client
from service.background import Loop
from service.config import Settings, TimestampAuthority
from service.core.certs import load_certificate_files as load_tsa_roots
from service.core.errors import ConfigError, TimestampError, TimestampInvalid
from service.core.formats import utc_now
from service.core.timestamps import verify_token
from service.storage import db, ledger
from service.storage.codec import to_us

__all__ = [
    "PendingReport",
    "RequestToken",
    "StoredToken",
    "TimestampThread",
    "load_tsa_roots",
    "timestamp_batch",
    "timestamp_pending",
]

log = logging.getLogger(__name__)

RequestToken = Callable[[str, bytes], bytes]
"""``(tsa_url, message) -> DER TimeStampToken`` over SHA-256(message); raises ``TimestampError``."""

SWEEP_LIMIT = 100  # entries per TSA looked at in one sweep (the next sweep takes the rest)


@dataclass(frozen=True)
class StoredToken:
    """A token now stored for ledger entry ``seq`` from the TSA named ``tsa``."""

    seq: int
    tsa: str
    gen_time: datetime
    authority: str


@dataclass
class PendingReport:
    """What one sweep did: tokens stored, and failures (``(seq, tsa name, reason)``) left for a later sweep."""

    stored: list[StoredToken] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)


def _roots_for(settings: Settings, roots: Sequence[x509.Certificate] | None) -> Sequence[x509.Certificate]:
    if roots is None:
        roots = load_tsa_roots(settings.tsa_ca_files)
    if not roots:
        # Storing a token nobody checked would let a misconfigured or hostile TSA URL put garbage in receipts.
        raise ConfigError(
            "EVIDENCE_TSA is set but EVIDENCE_TSA_CA_FILES names no certificate: tokens cannot be checked "
            "before they are stored; add the TSAs' root certificates"
        )
    return roots


def timestamp_batch(
    engine: Engine,
    settings: Settings,
    seq: int,
    *,
    request: RequestToken = tsa_client.request_token,
    roots: Sequence[x509.Certificate] | None = None,
    now: Callable[[], datetime] = utc_now,
) -> list[StoredToken]:
    """Obtain, check and store a token for ledger entry ``seq`` from every configured TSA lacking one.

    Each TSA is asked in turn; one that fails does not stop the others. Returns the tokens stored by this call
    (a token stored meanwhile by another worker counts as done, not as stored here).

    :raise KeyError: no ledger entry ``seq``.
    :raise ConfigError: TSAs are configured but no trusted TSA certificate is.
    :raise TimestampError: at least one TSA failed (unreachable, refused, or a token that does not verify
        against the trusted roots); the message names every failure. The tokens of the other TSAs are stored.
    """
    if not settings.tsa:
        return []
    trusted = _roots_for(settings, roots)
    with db.read_only(engine).connect() as conn:
        batch = ledger.get_batch(conn, seq)
        if batch is None:
            raise KeyError(f"no ledger entry {seq}")
        entry = bytes(batch.entry)
        have = {str(t.tsa) for t in ledger.timestamps_for_batch(conn, seq)}
    stored: list[StoredToken] = []
    failures: list[str] = []
    for tsa in settings.tsa:
        if tsa.name in have:
            continue
        try:
            token = _stamp(engine, tsa, seq, entry, request, trusted, now)
        except TimestampError as exc:
            failures.append(f"{tsa.name}: {exc.reason}")
            continue
        if token is not None:
            stored.append(token)
    if failures:
        raise TimestampError(f"ledger entry {seq}: " + "; ".join(failures))
    return stored


def _stamp(
    engine: Engine,
    tsa: TimestampAuthority,
    seq: int,
    entry: bytes,
    request: RequestToken,
    roots: Sequence[x509.Certificate],
    now: Callable[[], datetime],
) -> StoredToken | None:
    """One TSA, one entry: request (no transaction open), verify, store in a short transaction."""
    token = request(tsa.url, entry)
    try:
        info = verify_token(token, entry, roots)
    except TimestampInvalid as exc:
        # A token we cannot check is not stored: it would fail step 7 for every verifier trusting the same roots.
        raise TimestampError(
            f"the token from {tsa.url} does not verify against the trusted roots: {exc.reason}"
        ) from exc
    try:
        with engine.begin() as conn:
            ledger.insert_timestamp(conn, seq, tsa.name, token, to_us(info.gen_time), to_us(now()))
    except IntegrityError:
        # (batch_seq, tsa) is unique: another worker stored this entry's token first. Nothing to do.
        log.info("ledger entry %d already has a token from %s", seq, tsa.name)
        return None
    log.info("time-stamped ledger entry %d by %s at %s", seq, tsa.name, info.gen_time.isoformat())
    return StoredToken(seq, tsa.name, info.gen_time, info.authority)


def timestamp_pending(
    engine: Engine,
    settings: Settings,
    *,
    request: RequestToken = tsa_client.request_token,
    roots: Sequence[x509.Certificate] | None = None,
    limit: int = SWEEP_LIMIT,
    now: Callable[[], datetime] = utc_now,
) -> PendingReport:
    """Time-stamp ledger entries that lack a token from some configured TSA (oldest first, ``limit`` per TSA).

    Failures are logged and reported, never raised: the entry stays without a token and a later sweep tries
    again. A TSA that fails once in a sweep is not asked again in the same sweep (it is probably down).

    :raise ConfigError: TSAs are configured but no trusted TSA certificate is.
    """
    report = PendingReport()
    if not settings.tsa:
        return report
    trusted = _roots_for(settings, roots)
    for tsa in settings.tsa:
        with db.read_only(engine).connect() as conn:
            seqs = ledger.batches_without_timestamp(conn, tsa.name, limit)
        for seq in seqs:
            with db.read_only(engine).connect() as conn:
                batch = ledger.get_batch(conn, seq)
            if batch is None:  # cannot happen: batches are append-only
                continue
            try:
                token = _stamp(engine, tsa, seq, bytes(batch.entry), request, trusted, now)
            except TimestampError as exc:
                log.warning("time-stamping ledger entry %d by %s failed (will retry): %s", seq, tsa.name, exc.reason)
                report.failed.append((seq, tsa.name, exc.reason))
                break
            if token is not None:
                report.stored.append(token)
    return report


class TimestampThread(Loop):
    """The embedded default's time-stamper: runs ``timestamp_pending`` every ``interval`` seconds.

    Start it next to the in-process sealer; ``poke()`` after a seal makes it run at once instead of waiting.
    Errors never stop it (they are logged and counted): a TSA outage only delays tokens.
    """

    what = "time-stamp sweep"

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        interval: float = 30.0,
        request: RequestToken = tsa_client.request_token,
    ) -> None:
        super().__init__("evidence-timestamper", interval)
        self.engine = engine
        self.settings = settings
        self.request = request
        self._roots: Sequence[x509.Certificate] | None = None

    def start_loop(self) -> bool:
        if not self.settings.tsa:
            return False
        try:
            self._roots = load_tsa_roots(self.settings.tsa_ca_files)
        except ConfigError:
            log.exception("time-stamping is off: the TSA certificates cannot be loaded")
            return False
        return True

    def step(self) -> PendingReport:
        return timestamp_pending(self.engine, self.settings, request=self.request, roots=self._roots)
