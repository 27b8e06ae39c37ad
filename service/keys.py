"""The operator's checkpoint signing keys on disk (SPEC §4 signer key file; SPEC §4.1 SM2 PEM; both mode 0600).

Owns: creating the key file on first start, loading it, refusing a file others can read, and rotating it:
``rotate_signing_key`` swaps the file and, in one transaction holding the ledger lock, closes the old key's
validity window and publishes the new key (``evidence keys rotate`` only parses and prints); the optional SM2 key
(created only by ``evidence keys init --sm2``, loaded when present).
Must not import: Flask, Celery, the API or the CLI. The database only through ``service.storage``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from service.config import Settings
from service.core.errors import ConfigError, FormatError
from service.core.formats import utc_now
from service.core.note import Signer, Sm2Signer, Verifier
from service.storage import db, ledger
from service.storage.codec import from_us, to_us


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(
            f"cannot read the signing key file {path}: {exc.strerror}; provision it first (evidence keys init)"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the signing key file {path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )


def write_signer(path: Path, signer: Signer | Sm2Signer) -> None:
    """Write ``signer`` to ``path`` with mode 0600, atomically; never overwrites an existing file. A missing
    directory is created 0700."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(signer.pem.decode("ascii") if isinstance(signer, Sm2Signer) else signer.skey + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if the file appeared meanwhile: another process created the key first
    finally:
        tmp.unlink(missing_ok=True)


def load_signer(path: Path, origin: str) -> Signer:
    """Load the signer key at ``path``; its name must be ``origin``.

    :raise ConfigError: unreadable, readable by others, malformed, or named after another origin.
    """
    _check_private(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the signing key file {path}: {exc}") from None
    try:
        signer = Signer.from_skey(text)
    except FormatError as exc:
        raise ConfigError(f"the signing key file {path} is not a signer key: {exc.reason}") from None
    if signer.name != origin:
        raise ConfigError(
            f"the signing key in {path} is named {signer.name!r} but the origin is {origin!r}; "
            "the key name must equal the origin (SPEC §4)"
        )
    return signer


def load_or_create_signer(path: Path, origin: str) -> Signer:
    """Load the signing key, creating it (mode 0600) on first start."""
    if not path.exists():
        try:
            write_signer(path, Signer.generate(origin))
        except FileExistsError:
            pass  # created concurrently by another process; load theirs
    return load_signer(path, origin)


def rotate_signer(path: Path, origin: str) -> tuple[Signer, Signer, Path]:
    """Make a new signing key at ``path``; the old one is kept beside it as ``<name>.<keyhash>.retired``.

    Returns (old signer, new signer, where the old key was moved).
    """
    old = load_signer(path, origin)
    retired = path.with_name(f"{path.name}.{old.key_hash:08x}.retired")
    new = Signer.generate(origin)
    tmp_new = path.with_name(f".{path.name}.new")
    tmp_new.unlink(missing_ok=True)
    write_signer(tmp_new, new)
    os.replace(path, retired)
    os.replace(tmp_new, path)
    return old, new, retired


# --- rotation (issue 5: trust beyond the operator) -------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    """A finished rotation: the ``old`` and ``new`` verifier keys, where the old key file went, and when."""

    old: Verifier
    new: Verifier
    retired: Path
    at: datetime


def sealer_running(settings: Settings) -> bool:
    """True when an ``evidence serve`` process holds the data dir's sealer lock (it caches the old key)."""
    lock = settings.data_dir / "sealer.lock"
    if not lock.exists():
        return False
    try:
        import fcntl
    except ImportError:  # not POSIX: cannot tell
        return False
    with open(lock, "ab") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def rotate_signing_key(settings: Settings, *, now: datetime | None = None) -> Rotation:
    """Replace the checkpoint signing key: new key file, old key's window closed, new key published.

    One transaction holding the ledger lock (no batch is sealed meanwhile) closes the old key's window and
    publishes the new key, both at the same instant (never before the newest checkpoint). The file swap
    (``keys.rotate_signer``: new key written 0600 and fsynced, old one kept as ``<file>.<keyhash>.retired``) is
    done inside that transaction; if the transaction fails, the old key file is put back, so the key file and
    the published keys never disagree. Running processes keep the key they loaded: restart them afterwards.

    :raise ConfigError: the key file's key is not the published, still valid key of this database.
    """
    path = settings.signing_key_file
    engine = db.make_engine(settings)
    swapped: tuple[Signer, Signer, Path] | None = None
    try:
        with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory lock below
            ledger.lock_ledger(conn)
            current = load_signer(path, settings.origin)
            rows = [r for r in ledger.list_signing_keys(conn) if r.vkey == current.verifier.vkey]
            if not rows:
                raise ConfigError(
                    f"the key in {path} ({current.verifier.key_id}) is not published in this database: "
                    "run 'evidence keys publish' (or start the service once) before rotating it"
                )
            if all(r.valid_until is not None for r in rows):
                raise ConfigError(f"the key in {path} ({current.verifier.key_id}) was already retired")
            last = ledger.latest_checkpoint(conn)
            at_us = to_us(now or utc_now())
            if last is not None:
                at_us = max(at_us, to_us(last.created) + 1)  # the old key's window holds every checkpoint it signed
            swapped = rotate_signer(path, settings.origin)
            old, new, _ = swapped
            ledger.close_signing_key(conn, old.key_hash, at_us)
            ledger.insert_signing_key(conn, new.verifier.vkey, new.name, new.key_hash, at_us)
    except BaseException:
        if swapped is not None:
            os.replace(swapped[2], path)  # the database still publishes the old key as current: keep using it
        raise
    finally:
        engine.dispose()
    return Rotation(old.verifier, new.verifier, swapped[2], from_us(at_us))


def load_sm2_signer(path: Path, origin: str, distid: str) -> Sm2Signer | None:
    """The SM2 signing key at ``path`` (PKCS#8 PEM, SPEC §4.1) named ``origin``, or None when the file is absent.

    :raise ConfigError: readable by others, unreadable, not an SM2 private key, or OpenSSL 3 missing.
    """
    if not path.exists():
        return None
    _check_private(path)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the SM2 signing key file {path}: {exc.strerror}") from None
    try:
        return Sm2Signer(origin, pem, distid.encode("ascii"))
    except FormatError as exc:
        raise ConfigError(f"the SM2 signing key file {path} is not usable: {exc.reason}") from None
