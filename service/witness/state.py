"""The witness's memory and decisions (C2SP tlog-witness ``add-checkpoint``, SPEC §9), framework-free.

Owns: the witness's own SQLite database (``witness.db`` in its data dir: the latest size and root it cosigned per
log origin, every checkpoint it ever cosigned, and the misbehaviour it saw), the witness key file, and the answer
to one ``add-checkpoint`` request. The compare-and-swap of the remembered size runs in one ``BEGIN IMMEDIATE``
transaction, committed with ``synchronous=FULL`` before the cosignature is returned: a witness never answers for a
state it has not made durable, never goes back, and never cosigns two roots for one size (a trigger refuses it
even if the code were wrong). A signed checkpoint that contradicts what it cosigned is kept as evidence.
Must not import: Flask, SQLAlchemy, the ledger's storage or use cases. Standard library, ``service.core``.
"""

from __future__ import annotations

import hmac
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.core import merkle
from service.core.cosignature import WitnessSigner
from service.core.errors import ConfigError, FormatError, MalformedNote, NoteError, ProofError
from service.core.formats import Checkpoint
from service.core.note import Verifier, note_text_and_lines, open_note
from service.core.tlog_witness import SIZE_MEDIA_TYPE, AddCheckpoint, size_body

log = logging.getLogger(__name__)

KEY_FILE = "witness.key"
DB_FILE = "witness.db"
MAX_BODY = 64 * 1024  # 63 proof lines and a checkpoint with a few signatures fit many times over

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note BLOB NOT NULL,
    updated_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cosigned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    cosignature BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cosigned_origin_size ON cosigned (origin, size);
CREATE TABLE IF NOT EXISTS misbehaviour (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    received_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    our_size INTEGER NOT NULL,
    our_root BLOB NOT NULL,
    claimed_size INTEGER NOT NULL,
    claimed_root BLOB NOT NULL,
    request BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS cosigned_one_root_per_size BEFORE INSERT ON cosigned
WHEN EXISTS (SELECT 1 FROM cosigned WHERE origin = NEW.origin AND size = NEW.size AND root != NEW.root)
BEGIN SELECT RAISE(ABORT, 'refused: another root was already cosigned at this size'); END;
CREATE TRIGGER IF NOT EXISTS latest_never_shrinks BEFORE UPDATE ON latest
WHEN NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root != OLD.root)
BEGIN SELECT RAISE(ABORT, 'refused: the remembered size may only grow'); END;
CREATE TRIGGER IF NOT EXISTS cosigned_no_update BEFORE UPDATE ON cosigned
BEGIN SELECT RAISE(ABORT, 'cosigned is append-only'); END;
CREATE TRIGGER IF NOT EXISTS cosigned_no_delete BEFORE DELETE ON cosigned
BEGIN SELECT RAISE(ABORT, 'cosigned is append-only'); END;
CREATE TRIGGER IF NOT EXISTS misbehaviour_no_update BEFORE UPDATE ON misbehaviour
BEGIN SELECT RAISE(ABORT, 'misbehaviour is append-only'); END;
CREATE TRIGGER IF NOT EXISTS misbehaviour_no_delete BEFORE DELETE ON misbehaviour
BEGIN SELECT RAISE(ABORT, 'misbehaviour is append-only'); END;
CREATE TRIGGER IF NOT EXISTS latest_no_delete BEFORE DELETE ON latest
BEGIN SELECT RAISE(ABORT, 'a witness never forgets a log'); END;
"""


# --- the key ------------------------------------------------------------------------------------


def load_or_create_key(data_dir: Path, name: str | None) -> WitnessSigner:
    """The witness key of ``data_dir`` (``witness.key``, mode 0600), made on first use with ``name``.

    :raise ConfigError: unreadable or malformed key file, readable by others, or ``name`` given and different
        from the existing key's name.
    """
    path = data_dir / KEY_FILE
    if not path.exists():
        signer = WitnessSigner.generate(name or default_name())
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(signer.skey + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # made concurrently: use that one
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the witness key file {path} can be read by other users; run: chmod 600 {path}")
    try:
        signer = WitnessSigner.from_skey(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the witness key file {path}: {exc}") from None
    except FormatError as exc:
        raise ConfigError(f"the witness key file {path} is not a witness key: {exc.reason}") from None
    if name is not None and name != signer.name:
        raise ConfigError(f"the witness key in {path} is named {signer.name!r}, not {name!r}")
    return signer


def default_name() -> str:
    import socket

    host = "".join(c for c in socket.gethostname() if c.isascii() and c.isalnum() or c in ".-") or "localhost"
    return f"{host}/witness"


# --- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What to answer: status, body and media type (``detail`` explains a refusal in words)."""

    status: int
    body: bytes = b""
    media_type: str = "text/plain; charset=utf-8"
    detail: str = ""


def _refuse(status: int, detail: str) -> Answer:
    return Answer(status, detail=detail)


@dataclass(frozen=True)
class LogState:
    origin: str
    size: int
    root: bytes


class Witness:
    """One witness: its key, the logs it follows (by origin) and its database."""

    def __init__(
        self, data_dir: Path, signer: WitnessSigner, logs: Iterable[Verifier], *, clock: object = None
    ) -> None:
        self.data_dir = data_dir
        self.signer = signer
        self.logs: dict[str, list[Verifier]] = {}
        for key in logs:
            self.logs.setdefault(key.name, []).append(key)
        self.db_path = data_dir / DB_FILE
        self._clock = clock if callable(clock) else time.time
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # the commit is on disk before we answer
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def state(self, origin: str) -> LogState:
        row = self._connect().execute("SELECT size, root FROM latest WHERE origin = ?", (origin,)).fetchone()
        if row is None:
            return LogState(origin, 0, merkle.EMPTY_ROOT)
        return LogState(origin, int(row[0]), bytes(row[1]))

    def misbehaviour(self) -> list[dict[str, object]]:
        rows = self._connect().execute(
            "SELECT origin, received_us, kind, detail, our_size, claimed_size FROM misbehaviour ORDER BY id"
        )
        keys = ("origin", "received_us", "kind", "detail", "our_size", "claimed_size")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def add_checkpoint(self, body: bytes) -> Answer:
        """Answer one ``add-checkpoint`` request (C2SP tlog-witness status codes, SPEC §9)."""
        if len(body) > MAX_BODY:
            return _refuse(413, f"the request is {len(body)} bytes; at most {MAX_BODY} are accepted")
        try:
            request = AddCheckpoint.from_bytes(body)
            text, _ = note_text_and_lines(request.note)
            checkpoint = Checkpoint.from_bytes(text)
        except FormatError as exc:
            return _refuse(400, f"malformed request: {exc.reason}")
        keys = self.logs.get(checkpoint.origin)
        if keys is None:
            return _refuse(404, f"this witness does not follow a log with origin {checkpoint.origin!r}")
        try:
            open_note(request.note, keys)
        except MalformedNote as exc:
            return _refuse(400, f"malformed checkpoint note: {exc.reason}")
        except NoteError as exc:
            return _refuse(403, f"the checkpoint is not signed by the log's key: {exc.reason}")
        return self._decide(request, text, checkpoint, body)

    def _decide(self, request: AddCheckpoint, text: bytes, cp: Checkpoint, body: bytes) -> Answer:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")  # the compare-and-swap below is atomic: one writer at a time
        try:
            answer = self._decide_locked(conn, request, text, cp, body)
            conn.execute("COMMIT")  # synchronous=FULL: durable before the answer leaves
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return answer

    def _decide_locked(
        self, conn: sqlite3.Connection, request: AddCheckpoint, text: bytes, cp: Checkpoint, body: bytes
    ) -> Answer:
        row = conn.execute("SELECT size, root FROM latest WHERE origin = ?", (cp.origin,)).fetchone()
        size, root = (0, merkle.EMPTY_ROOT) if row is None else (int(row[0]), bytes(row[1]))

        # Evidence first: a validly signed checkpoint with another root at a size this witness cosigned is a fork,
        # whatever the request's old size says.
        earlier = conn.execute(
            "SELECT root FROM cosigned WHERE origin = ? AND size = ? LIMIT 1", (cp.origin, cp.size)
        ).fetchone()
        if earlier is not None and not hmac.compare_digest(bytes(earlier[0]), cp.root):
            self._record(conn, cp, size, root, body, "fork", f"another root at size {cp.size}, which was cosigned")
            if request.old == size:
                return _refuse(422, f"refused: a different root was already cosigned at size {cp.size} (fork)")
        if request.old > cp.size:
            return _refuse(400, f"old size {request.old} is larger than the checkpoint size {cp.size}")
        if request.old != size:
            return Answer(409, size_body(size), SIZE_MEDIA_TYPE, f"this witness's size for {cp.origin} is {size}")
        if cp.size == 0 and cp.root != merkle.EMPTY_ROOT:
            return _refuse(422, "a checkpoint of size 0 must have the root of the empty tree")
        if request.old == cp.size:
            if not hmac.compare_digest(root, cp.root):
                self._record(conn, cp, size, root, body, "fork", f"another root at size {cp.size}, the witness's size")
                return _refuse(422, f"refused: a different root was already cosigned at size {cp.size} (fork)")
            if request.proof:
                return _refuse(422, "the sizes are equal, so the consistency proof must be empty")
        elif request.old == 0:
            if request.proof:
                return _refuse(422, "from size 0 the consistency proof must be empty")
        else:
            try:
                merkle.verify_consistency(size, cp.size, root, cp.root, request.proof)
            except ProofError as exc:
                self._record(
                    conn, cp, size, root, body, "inconsistent", f"bad consistency proof from {size}: {exc.reason}"
                )
                return _refuse(422, f"the consistency proof from size {size} does not verify: {exc.reason}")

        timestamp = max(int(self._clock()), 1)
        line = self.signer.cosign(text, timestamp)
        now_us = int(self._clock() * 1_000_000)
        if row is None:
            conn.execute(
                "INSERT INTO latest (origin, size, root, note, updated_us) VALUES (?, ?, ?, ?, ?)",
                (cp.origin, cp.size, cp.root, request.note, now_us),
            )
        else:
            updated = conn.execute(
                "UPDATE latest SET size = ?, root = ?, note = ?, updated_us = ? WHERE origin = ? AND size = ?",
                (cp.size, cp.root, request.note, now_us, cp.origin, size),
            )
            if updated.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; never cosign on a lost race
                raise RuntimeError("the witness state changed during the compare-and-swap")
        conn.execute(
            "INSERT INTO cosigned (origin, size, root, note, timestamp, cosignature) VALUES (?, ?, ?, ?, ?, ?)",
            (cp.origin, cp.size, cp.root, request.note, timestamp, line),
        )
        return Answer(200, line)

    def _record(
        self, conn: sqlite3.Connection, cp: Checkpoint, size: int, root: bytes, body: bytes, kind: str, detail: str
    ) -> None:
        conn.execute(
            "INSERT INTO misbehaviour (origin, received_us, kind, detail, our_size, our_root, claimed_size, "
            "claimed_root, request) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cp.origin, int(self._clock() * 1_000_000), kind, detail, size, root, cp.size, cp.root, body),
        )
        log.warning(
            "MISBEHAVIOUR of log %s (%s): %s; this witness is at size %d root %s; the log signed size %d root %s; "
            "the signed request is kept in %s",
            cp.origin,
            kind,
            detail,
            size,
            root.hex(),
            cp.size,
            cp.root.hex(),
            self.db_path,
        )


def log_keys_from(values: Sequence[str]) -> list[Verifier]:
    """Log verifier keys from ``--log`` values: each a vkey or a file with one per line.

    :raise ConfigError: a bad key or an unreadable file (names which).
    """
    from service.core.note import parse_vkeys

    keys: list[Verifier] = []
    for item in values:
        try:
            if "+" not in item or Path(item).is_file():
                try:
                    text = Path(item).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read the log key file {item!r}: {exc}") from None
                found = parse_vkeys(text)
                if not found:
                    raise ConfigError(f"the log key file {item!r} holds no key")
                keys.extend(found)
            else:
                keys.append(Verifier.from_vkey(item))
        except FormatError as exc:
            raise ConfigError(f"bad log key {item!r}: {exc.reason}") from None
    return keys
