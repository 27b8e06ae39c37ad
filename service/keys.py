"""The operator's checkpoint signing key on disk (SPEC §4 signer key file, mode 0600).

Owns: creating the key file on first start, loading it, refusing a file others can read, and rotating it.
Must not import: Flask, Celery or the database (callers record the public key in the database themselves).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from service.core.errors import ConfigError, FormatError
from service.core.note import Signer


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


def write_signer(path: Path, signer: Signer) -> None:
    """Write ``signer`` to ``path`` with mode 0600, atomically; never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(signer.skey + "\n")
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
