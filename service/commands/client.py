"""``evidence submit PATH...`` and ``evidence receipts fetch``: deposit many local files by digest and collect receipts.

Owns: walking folders, hashing files locally with threads (``hashlib.file_digest`` releases the GIL, so several
files hash at once; the files never leave the machine), sending the digests in chunks of ``--chunk`` to
``POST /v1/evidence/batch``, the state file that makes a re-run after a crash safe, waiting for sealing and writing
one ``<file>.receipt.json`` per file.

Crash safety: the state (a JSON snapshot written atomically, plus a journal of JSON lines appended since, see
``State``) records every file's digest and the chunk it belongs to *before* anything is sent (the chunk's record is
fsynced), and each chunk's Idempotency-Key is derived from the state (``submit-<run id>-<chunk number>``); a chunk's
body is rebuilt from the state byte for byte. So a run killed after the server stored a chunk but before the answer
was recorded resends the same key and body, and the server answers with the same ids: no duplicates. Acknowledged
ids are recorded after each chunk; receipts with their size once a page of them is written (``write_files``).

Exit codes: 0 everything done, 1 some files failed (unreadable, refused by the server, not sealed in time), 2 usage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.core.hashing import file_digests
from service.core.labels import sanitize_label
from service.core.receipt import FORMATS as RECEIPT_FORMATS
from service.core.receipt import dump_json

if TYPE_CHECKING:
    import requests

__all__ = ["receipts", "submit"]

STATE_NAME = ".evidence-submit.json"
JOURNAL_NAME = STATE_NAME + ".log"
STATE_FORMAT = "evidence-submit-state/v1"
RECEIPT_SUFFIX = ".receipt.json"
CERTIFICATE_SUFFIX = ".certificate.pdf"  # written beside a receipt (--certificates)
MAX_CHUNK = 10_000
HTTP_TIMEOUT = 120.0
SEND_RETRIES = 5
FETCH_THREADS = 4
RECEIPTS_PAGE = 1000
HASH_GROUP = 16  # files hashed per thread-pool task  # ids per POST /v1/receipts (the server's limit)


class SubmitError(click.ClickException):
    """A failure that ends the run with exit code 1 (the reason is printed)."""

    exit_code = 1


# --- state ------------------------------------------------------------------------------------------


@dataclass
class FileEntry:
    path: str  # absolute
    rel: str  # relative to the root it was found under (POSIX separators): receipts under --out mirror it
    sha256: str
    size: int
    mtime_ns: int
    label: str | None
    chunk: int
    id: str | None = None
    receipt: str | None = None
    receipt_size: int | None = None  # bytes of the receipt file as written (checked when a run resumes)
    error: str | None = None
    attestation: str | None = None  # --sign: the depositor's SPEC §2.2 attestation (base64), made once, kept
    sm3: str | None = None  # hex SM3 (GB/T 32905) when submitted with --sm3


@dataclass
class State:
    """The run's state: a JSON snapshot (``STATE_NAME``) plus a journal of what happened since (``JOURNAL_NAME``,
    one JSON record a line, appended), so that recording a chunk or a page of receipts costs its own size and not
    the whole state's. ``save`` writes a new snapshot and drops the journal; ``load`` replays the journal over the
    snapshot (every record can be replayed twice, so a crash between the two steps is harmless; a torn last line
    is a record that was never relied on, and is ignored).
    """

    path: Path
    run: str
    server: str
    out: str | None
    files: dict[str, FileEntry] = field(default_factory=dict)
    chunks: list[list[str]] = field(default_factory=list)  # chunk number -> file paths, in body order
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def journal_path(self) -> Path:
        return self.path.with_name(JOURNAL_NAME)

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"cannot read the state file {path}: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise click.UsageError(f"{path} is not an evidence submit state file ({STATE_FORMAT})")
        files = {p: FileEntry(**e) for p, e in doc["files"].items()}
        state = cls(path, doc["run"], doc["server"], doc.get("out"), files, [list(c) for c in doc["chunks"]])
        state._replay()
        return state

    def _replay(self) -> None:
        try:
            raw = self.journal_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise click.UsageError(f"cannot read the state journal {self.journal_path}: {exc}") from None
        for line in raw.split(b"\n")[:-1]:  # the part after the last newline is a torn write (or empty)
            try:
                record = json.loads(line)
            except ValueError:
                break
            self._apply(record)

    def _apply(self, record: dict[str, Any]) -> None:
        kind = record["t"]
        if kind == "chunk":
            if record["n"] == len(self.chunks):  # a chunk already in the snapshot is not added twice
                entries = [FileEntry(**e) for e in record["files"]]
                for e in entries:
                    self.files[e.path] = e
                self.chunks.append([e.path for e in entries])
        elif kind == "ids":
            for p, evidence_id, error in record["items"]:
                e = self.files[p]
                e.id, e.error = evidence_id, error
        elif kind == "receipts":
            for p, receipt, size in record["items"]:
                e = self.files[p]
                e.receipt, e.receipt_size, e.error = receipt, size, None

    def append(self, record: dict[str, Any], *, sync: bool) -> None:
        """Add ``record`` to the journal (``sync``: durable before this returns)."""
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def add_chunk(self, entries: list[FileEntry]) -> int:
        """Record a new chunk durably (before it is sent: a re-run rebuilds the same key and body); its number."""
        number = len(self.chunks)
        for e in entries:
            e.chunk = number
            self.files[e.path] = e
        self.chunks.append([e.path for e in entries])
        self.append({"t": "chunk", "n": number, "files": [vars(e) for e in entries]}, sync=True)
        return number

    def save(self) -> None:
        """A new snapshot of everything, then the journal is dropped."""
        with self._lock:
            doc = {
                "format": STATE_FORMAT,
                "run": self.run,
                "server": self.server,
                "out": self.out,
                "chunks": self.chunks,
                "files": {p: vars(e) for p, e in self.files.items()},
            }
            write_atomically(self.path, json.dumps(doc, separators=(",", ":")).encode())
            self.journal_path.unlink(missing_ok=True)

    def chunk_key(self, number: int) -> str:
        return f"submit-{self.run}-{number}"

    def chunk_body(self, number: int) -> bytes:
        items: list[dict[str, str]] = []
        for p in self.chunks[number]:
            e = self.files[p]
            item = {"sha256": e.sha256} if e.label is None else {"sha256": e.sha256, "label": e.label}
            if e.attestation is not None:
                item["attestation"] = e.attestation
            if e.sm3 is not None:
                item["sm3"] = e.sm3
            items.append(item)
        return json.dumps({"items": items}, separators=(",", ":"), ensure_ascii=False).encode()


class Signer:
    """``--sign``: the depositor's private key (and certificate chain), used here only: it never leaves this
    machine. Each file's attestation (SPEC §2.2: this digest, with this label, now) is made once and kept in the
    state, so a resumed run sends the same bytes (the service accepts it within 24 hours of signing)."""

    def __init__(self, key_path: Path, chain_path: Path | None) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            self.key = load_pem_private_key(key_path.read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise click.UsageError(f"--sign {key_path}: not a readable unencrypted PEM private key ({exc})") from None
        self.chain: list[Any] = []
        if chain_path is not None:
            try:
                self.chain = x509.load_pem_x509_certificates(chain_path.read_bytes())
            except (OSError, ValueError) as exc:
                raise click.UsageError(f"--sign-cert {chain_path}: not PEM certificates ({exc})") from None

    def attest(self, sha256_hex: str, label: str | None, sm3_hex: str | None = None) -> str:
        from service.core.attestation import AttestationError, build_statement, sign_statement
        from service.core.formats import claim_lines, text_sha256, utc_now

        digests = () if sm3_hex is None else (("sm3", bytes.fromhex(sm3_hex)),)  # the statement states the SM3 too
        claims = claim_lines(bytes.fromhex(sha256_hex), digests, None if label is None else text_sha256(label))
        try:
            raw = sign_statement(build_statement(claims, utc_now()), self.key, self.chain)  # type: ignore[arg-type]
        except AttestationError as exc:
            raise click.UsageError(f"--sign: {exc.reason}") from None
        return base64.b64encode(raw).decode("ascii")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- walking and hashing -------------------------------------------------------------------------------


def walk(paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """(absolute file path, path relative to its root with POSIX separators) of every regular file (or symlink to
    one), sorted: a folder's files by name, then its subfolders by name, not following symlinked folders (as
    ``os.walk``); receipts, certificates and the state are skipped, and so are folders that cannot be listed.

    Strings and ``os.scandir`` entries, not ``Path`` objects: the entry's type comes with the listing, so a file
    costs no ``stat`` here (it was a third of the client's CPU outside hashing for 10,000 files).
    """
    for root in paths:
        root = root.absolute()
        if root.is_file():
            if not _skipped(root.name):
                yield str(root), root.name
            continue
        if not root.is_dir():
            raise click.UsageError(f"{root} is neither a file nor a folder")
        yield from _walk_folder(str(root), "")


def _walk_folder(folder: str, rel: str) -> Iterator[tuple[str, str]]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        try:
            if entry.is_dir():
                if not entry.is_symlink():
                    subfolders.append(entry)
            elif entry.is_file() and not _skipped(entry.name):
                yield entry.path, rel + entry.name
        except OSError:
            continue
    for entry in subfolders:
        yield from _walk_folder(entry.path, f"{rel}{entry.name}/")


def _skipped(name: str) -> bool:
    """Receipts, certificates, the state file, and the temp files of these that a killed run may leave behind."""
    return (
        name.endswith((RECEIPT_SUFFIX, CERTIFICATE_SUFFIX))
        or name in (STATE_NAME, JOURNAL_NAME)
        or (
            name.startswith(".")
            and name.endswith(".tmp")
            and (RECEIPT_SUFFIX in name or CERTIFICATE_SUFFIX in name or STATE_NAME in name)
        )
    )


def hash_file(path: str) -> tuple[str, os.stat_result]:
    """(SHA-256 hex, the open file's ``fstat``): one open, no separate ``stat`` of the path."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        return hashlib.file_digest(f, "sha256").hexdigest(), st


def hash_file_sm3(path: str) -> tuple[str, str]:
    """(SHA-256 hex, SM3 hex) of the file, read once."""
    d = file_digests(path, sm3=True)
    assert d.sm3 is not None
    return d.sha256.hex(), d.sm3.hex()


def make_label(mode: str | None, path: str, rel: str) -> str | None:
    if mode is None:
        return None
    return sanitize_label(os.path.basename(path) if mode == "name" else rel)


# --- HTTP ---------------------------------------------------------------------------------------------


class Client:
    """A small JSON client of the service: one ``requests.Session`` per thread, problem+json shown with its detail."""

    def __init__(self, server: str, api_key: str) -> None:
        self.server = server.rstrip("/")
        self.api_key = api_key
        self._local = threading.local()

    def session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            import requests

            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {self.api_key}"
            s.headers["User-Agent"] = "evidence-submit/1"
            self._local.session = s
        return s

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send with retries on connection errors, 429 and 5xx (honouring Retry-After)."""
        import requests

        delay = 0.5
        for attempt in range(SEND_RETRIES + 1):
            try:
                r = self.session().request(method, self.server + path, timeout=HTTP_TIMEOUT, **kwargs)
            except requests.ConnectionError as exc:
                if attempt == SEND_RETRIES:
                    raise SubmitError(f"cannot reach {self.server}: {exc.__class__.__name__}") from None
                time.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            if (r.status_code == 429 or r.status_code >= 500) and attempt < SEND_RETRIES:
                time.sleep(_retry_after(r, delay))
                delay = min(delay * 2, 10)
                continue
            return r
        raise AssertionError("unreachable")


def _retry_after(r: requests.Response, default: float) -> float:
    try:
        return min(60.0, float(r.headers.get("Retry-After", default)))
    except ValueError:
        return default


def problem_text(r: requests.Response) -> str:
    """``HTTP 422 Unprocessable Entity: <detail>`` from a problem+json answer (or the status alone)."""
    detail = ""
    try:
        body = r.json()
        if isinstance(body, dict) and isinstance(body.get("detail"), str):
            detail = ": " + body["detail"]
    except ValueError:
        pass
    return f"HTTP {r.status_code} {r.reason}{detail}"


# --- the run --------------------------------------------------------------------------------------------


class Progress:
    """A rich progress bar on a terminal (stderr), nothing otherwise."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._progress: Any = None

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def task(self, description: str, total: int) -> Callable[[int], None]:
        if self._progress is None:
            return lambda n: None
        task_id = self._progress.add_task(description, total=total)
        return lambda n: self._progress.advance(task_id, n)


def state_path_for(paths: list[Path], out: Path | None) -> Path:
    if out is not None:
        return out.absolute() / STATE_NAME
    first = paths[0].absolute()
    return (first if first.is_dir() else first.parent) / STATE_NAME


def submit_all(
    state: State,
    client: Client,
    paths: list[Path],
    label_from: str | None,
    chunk: int,
    workers: int,
    progress: Progress,
    signer: Signer | None = None,
    sm3: bool = False,
) -> int:
    """Send the chunks of an earlier run that were never acknowledged, then hash the files not in the state yet and
    send them in new chunks of ``chunk``; return how many files could not be read. With ``sm3`` each file's SM3 is
    computed in the same pass as its SHA-256 and sent too (the deposit's v2 leaf binds it).

    Hashing runs in a thread pool while chunks are sent (the pool keeps hashing the next files while the main
    thread waits for the server). Each new chunk is saved in the state *before* it is sent.
    """
    for n, chunk_paths in enumerate(state.chunks):
        if any(state.files[p].id is None for p in chunk_paths):
            send_chunk(state, client, n)
    found = list(walk(paths))
    new = [(p, rel) for p, rel in found if p not in state.files]
    for p, _rel in found:
        e = state.files.get(p)
        if e is not None and e.id is not None:
            st = os.stat(p)
            if (st.st_size, st.st_mtime_ns) != (e.size, e.mtime_ns):
                click.echo(
                    f"warning: {p} changed after it was submitted; its receipt is for the earlier content", err=True
                )
    hashed = progress.task("hashing", len(new))
    sent = progress.task("submitting", len(new))

    def one(item: tuple[str, str]) -> FileEntry | None:
        p, rel = item
        try:
            sm3_hex: str | None = None
            if sm3:
                st = os.stat(p)
                digest, sm3_hex = hash_file_sm3(p)
            else:
                digest, st = hash_file(p)
        except OSError as exc:
            click.echo(f"error: cannot read {p}: {exc.strerror}", err=True)
            return None
        label = make_label(label_from, p, rel)
        entry = FileEntry(p, rel, digest, st.st_size, st.st_mtime_ns, label, -1, sm3=sm3_hex)
        if signer is not None:
            entry.attestation = signer.attest(digest, label, sm3_hex)
        return entry

    def several(items: list[tuple[str, str]]) -> list[FileEntry | None]:
        # A task per HASH_GROUP files: a future (and its Condition) per file cost more than hashing a small file.
        try:
            return [one(item) for item in items]
        finally:
            hashed(len(items))

    groups = [new[i : i + HASH_GROUP] for i in range(0, len(new), HASH_GROUP)]

    unreadable = 0
    group: list[FileEntry] = []

    def flush() -> None:
        number = state.add_chunk(list(group))  # durable before sending
        send_chunk(state, client, number)
        sent(len(group))
        group.clear()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for entries in pool.map(several, groups):  # every group is queued at once; results arrive in walk order
            for entry in entries:
                if entry is None:
                    unreadable += 1
                    continue
                group.append(entry)
                if len(group) == chunk:
                    flush()
        if group:
            flush()
    state.save()
    return unreadable


def send_chunk(state: State, client: Client, n: int) -> None:
    """POST chunk ``n`` with its Idempotency-Key and record the ids (or the server's refusal) in the state journal.

    The record is not forced to disk (the next chunk's record is): if the run dies before it is, the re-run resends
    this chunk with the same key and body and gets the same ids back.
    """
    body = state.chunk_body(n)
    r = client.request(
        "POST",
        "/v1/evidence/batch",
        data=body,
        headers={"Content-Type": "application/json", "Idempotency-Key": state.chunk_key(n)},
    )
    if r.status_code == 401:
        raise SubmitError(f"the server refused the API key: {problem_text(r)}")
    if r.status_code != 202:
        message = problem_text(r)
        click.echo(f"error: chunk {n} ({len(state.chunks[n])} files) was refused: {message}", err=True)
        for p in state.chunks[n]:
            state.files[p].error = message
    else:
        items = r.json()["items"]
        if len(items) != len(state.chunks[n]):
            raise SubmitError(f"the server answered {len(items)} items for a chunk of {len(state.chunks[n])}")
        for p, item in zip(state.chunks[n], items, strict=True):
            e = state.files[p]
            if item["sha256"] != e.sha256:
                raise SubmitError(f"the server answered digest {item['sha256']} for {p} ({e.sha256})")
            e.id, e.error = item["id"], None
    items_record = [[p, state.files[p].id, state.files[p].error] for p in state.chunks[n]]
    state.append({"t": "ids", "n": n, "items": items_record}, sync=False)


def receipt_path(state: State, e: FileEntry) -> Path:
    if state.out is not None:
        return Path(state.out) / (e.rel + RECEIPT_SUFFIX)
    return Path(e.path + RECEIPT_SUFFIX)


def fetch_receipts(state: State, client: Client, progress: Progress, timeout: float) -> None:
    """Poll until every acknowledged file has its receipt written, or ``timeout`` seconds passed.

    Receipts come ``RECEIPTS_PAGE`` at a time from ``POST /v1/receipts``. Each round first asks for one evidence
    per chunk (the chunk's last item, all in one request) and fetches a chunk's receipts once that one is sealed;
    between rounds without news the wait grows 0.1 s, 0.2 s, 0.4 s ... up to 1 s.
    A page of receipts is written file by file (temp file + rename: never half a file), then recorded in the state
    with each file's size, one fsync per page. A receipt recorded as written whose file is missing or not of the
    recorded size (a power cut before the data reached the disk) is fetched again.
    """
    for e in state.files.values():
        if e.receipt is not None and not _written(Path(e.receipt), e.receipt_size):
            e.receipt = e.receipt_size = None
    waiting = [e for e in state.files.values() if e.id is not None and e.receipt is None and e.error is None]
    advance = progress.task("receipts", len(waiting))
    deadline = time.monotonic() + timeout
    delay = 0.1
    by_chunk: dict[int, list[FileEntry]] = {}
    for e in waiting:
        by_chunk.setdefault(e.chunk, []).append(e)

    def fetch(entries: list[FileEntry]) -> list[FileEntry]:
        """Fetch and write the receipts of up to RECEIPTS_PAGE entries; return those still pending."""
        r = client.request(
            "POST",
            "/v1/receipts",
            data=json.dumps({"ids": [e.id for e in entries]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        if r.status_code != 200:
            message = problem_text(r)
            if r.status_code == 401:
                raise SubmitError(f"the server refused the API key: {message}")
            for e in entries:
                e.error = message
            click.echo(f"error: receipts of {len(entries)} files: {message}", err=True)
            return []
        items = r.json()["items"]
        if len(items) != len(entries):
            raise SubmitError(f"the server answered {len(items)} items for {len(entries)} receipt requests")
        done: list[tuple[FileEntry, Path, bytes]] = []
        still: list[FileEntry] = []
        for e, item in zip(entries, items, strict=True):
            if item.get("status") == "pending" or item.get("waiting_for") == "witnesses":
                still.append(e)
            elif item.get("format") in RECEIPT_FORMATS and item.get("evidence", {}).get("id") == e.id:
                done.append((e, receipt_path(state, e), dump_json(item)))
            else:
                e.error = f"the server has no receipt for evidence {e.id} ({item.get('status', 'unexpected answer')})"
                click.echo(f"error: receipt of {e.path}: {e.error}", err=True)
        write_files([(path, data) for _, path, data in done])
        for e, path, data in done:
            e.receipt, e.receipt_size, e.error = str(path), len(data), None
        if done:  # one fsync for the page (the record); a run that resumes checks each file against its size
            record = [[e.path, e.receipt, e.receipt_size] for e, _, _ in done]
            state.append({"t": "receipts", "items": record}, sync=True)
        advance(len(done))
        return still

    def pages(entries: list[FileEntry]) -> list[list[FileEntry]]:
        return [entries[i : i + RECEIPTS_PAGE] for i in range(0, len(entries), RECEIPTS_PAGE)]

    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        while by_chunk:
            numbers = list(by_chunk)
            probes = [by_chunk[n][-1] for n in numbers]
            still = {id(e) for page in pool.map(fetch, pages(probes)) for e in page}
            sealed = [n for n, probe in zip(numbers, probes, strict=True) if id(probe) not in still]
            rest = [e for n in sealed for e in by_chunk[n] if e.receipt is None and e.error is None]
            list(pool.map(fetch, pages(rest)))
            for n in numbers:
                left = [e for e in by_chunk[n] if e.receipt is None and e.error is None]
                if left:
                    by_chunk[n] = left
                else:
                    del by_chunk[n]
            if not by_chunk:
                break
            if time.monotonic() >= deadline:
                for entries in by_chunk.values():
                    for e in entries:
                        e.error = f"not sealed within {timeout:g} s (run 'evidence receipts fetch' later)"
                break
            if sealed:
                delay = 0.1
            else:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
    state.save()


def write_files(files: list[tuple[Path, bytes]]) -> None:
    """Write each file as a temp file renamed into place (a killed run leaves the old file or the new one, never
    half of one), then fsync each directory once. The files' data is not fsynced one by one: the state records
    each receipt's size with one fsync per page, and a run that resumes fetches again every receipt whose file is
    missing or not of the recorded size (what a power cut can leave behind)."""
    if not files:
        return
    dirs: set[Path] = set()
    pid = os.getpid()
    for path, data in files:
        parent = path.parent
        if parent not in dirs:
            parent.mkdir(parents=True, exist_ok=True)
            dirs.add(parent)
        tmp = f"{parent}/.{path.name}.{pid}.tmp"
        # os.open/os.write, not open(): no buffer object, no fstat and isatty per file (10,000 files a run).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    for d in dirs:
        _fsync_dir(d)


def _written(path: Path, size: int | None) -> bool:
    """Whether a receipt the state records as written is there, whole (of its recorded size, when known)."""
    try:
        st = path.stat()
    except OSError:
        return False
    return size is None or st.st_size == size


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return  # platforms without directory file descriptors
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fetch_certificates(state: State, client: Client, progress: Progress) -> None:
    """The certificate of deposit beside each receipt written (``x.receipt.json`` -> ``x.certificate.pdf``)."""
    entries = [e for e in state.files.values() if e.receipt is not None and e.id is not None]
    for e in entries:
        receipt = Path(str(e.receipt))
        target = receipt.with_name(receipt.name.removesuffix(RECEIPT_SUFFIX) + CERTIFICATE_SUFFIX)
        if target.exists():
            continue
        r = client.request("GET", f"/v1/evidence/{e.id}/certificate.pdf")
        if r.status_code != 200 or not r.content.startswith(b"%PDF-"):
            click.echo(f"warning: no certificate for {e.path}: {problem_text(r)}", err=True)
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(r.content)
        os.replace(tmp, target)


def summary(state: State, unreadable: int, waited: bool, *, done_before: int = 0, elapsed: float | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    files = list(state.files.values())
    submitted = sum(1 for e in files if e.id is not None)
    written = sum(1 for e in files if e.receipt is not None)
    failed = unreadable + sum(1 for e in files if e.error is not None)
    table = Table(title="evidence submit")
    for name in ("files", "submitted", "sealed", "receipts written", "failed"):
        table.add_column(name, justify="right")
    table.add_row(str(len(files) + unreadable), str(submitted), str(written), str(written), str(failed))
    Console(width=100).print(table)
    took = f" in {elapsed:.1f} s" if elapsed is not None else ""
    click.echo(f"new: {max(0, written - done_before)}, already done in an earlier run: {done_before}{took}")
    click.echo(f"state: {state.path}")
    example = next((e for e in files if e.receipt is not None), None)
    if example is not None:
        click.echo(
            f"verify offline: evidence verify {example.receipt} --key <operator vkey>   "
            f"(the file beside it is found; get the key with: evidence keys fetch {state.server})"
        )
    if failed:
        return 1
    if waited and written < len(files):
        return 1
    return 0


def _client(server: str | None, api_key: str | None) -> Client:
    if not server:
        raise click.UsageError("no server: give --server URL or set EVIDENCE_URL")
    if not api_key:
        raise click.UsageError("no API key: give --api-key KEY or set EVIDENCE_API_KEY ('evidence tenant create')")
    if not server.startswith(("http://", "https://")):
        raise click.UsageError(f"--server must be an http(s) URL, found {server!r}")
    return Client(server, api_key)


@click.command("submit")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--server", envvar="EVIDENCE_URL", help="Service URL (default $EVIDENCE_URL).")
@click.option("--api-key", envvar="EVIDENCE_API_KEY", help="Tenant API key (default $EVIDENCE_API_KEY).")
@click.option(
    "-o",
    "--output",
    "--out",
    "out",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write receipts (and the state file) here, mirroring relative paths; default: beside each file.",
)
@click.option("--no-wait", is_flag=True, help="Submit only; fetch receipts later with 'evidence receipts fetch'.")
@click.option(
    "--chunk", type=click.IntRange(1, MAX_CHUNK), default=1000, show_default=True, help="Digests per batch request."
)
@click.option(
    "--label-from", type=click.Choice(["name", "path"]), help="Label each deposit with its file name or relative path."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=min(8, os.cpu_count() or 1),
    show_default=True,
    help="Files hashed at once.",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True, help="Seconds to wait for sealing."
)
@click.option(
    "--sign",
    "sign_key",
    metavar="KEY.pem",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sign each deposit as its depositor (SPEC §2.2) with this PEM private key, which never leaves this machine: "
    "an Ed25519 key registered for the tenant ('evidence tenant key add NAME --depositor-key'), or an ECDSA/RSA key "
    "with its certificate chain in --sign-cert.",
)
@click.option(
    "--sign-cert",
    "sign_cert",
    metavar="CHAIN.pem",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The depositor's certificate first, then its intermediate CA certificates (with --sign).",
)
@click.option(
    "--certificates/--no-certificates",
    default=None,
    help="Also write each certificate of deposit (PDF) beside its receipt; default: only when one file is given.",
)
@click.option(
    "--sm3",
    is_flag=True,
    help="Also compute each file's SM3 (GB/T 32905, 国密) in the same pass and deposit it: the receipt's v2 leaf "
    "binds it (evidence.digests.sm3).",
)
def submit(
    paths: tuple[Path, ...],
    server: str | None,
    api_key: str | None,
    out: Path | None,
    no_wait: bool,
    chunk: int,
    label_from: str | None,
    workers: int,
    timeout: float,
    sign_key: Path | None,
    sign_cert: Path | None,
    certificates: bool | None,
    sm3: bool,
) -> None:
    """Hash files locally (they never leave this machine), deposit their digests, wait, write one receipt per file.

    'evidence submit contract.pdf' writes contract.pdf.receipt.json and contract.pdf.certificate.pdf beside it.
    Interrupted (Ctrl-C, a crash), the same command resumes where it stopped, without depositing anything twice.
    """
    client = _client(server, api_key)
    if sign_cert is not None and sign_key is None:
        raise click.UsageError("--sign-cert needs --sign KEY.pem")
    signer = Signer(sign_key, sign_cert) if sign_key is not None else None
    state_path = state_path_for(list(paths), out)
    if state_path.exists():
        state = State.load(state_path)
        if state.server.rstrip("/") != client.server:
            raise click.UsageError(f"{state_path} belongs to a run against {state.server}, not {client.server}")
        for e in state.files.values():
            if e.id is None:
                e.error = None  # retried below
    else:
        state = State(state_path, secrets.token_hex(8), client.server, None if out is None else str(out.absolute()))
        state.save()  # the snapshot the journal's records apply to
    if certificates is None:
        certificates = len(paths) == 1 and paths[0].is_file()
    started = time.monotonic()
    done_before = sum(1 for e in state.files.values() if e.receipt is not None)
    try:
        with Progress() as progress:
            unreadable = submit_all(state, client, list(paths), label_from, chunk, workers, progress, signer, sm3=sm3)
            if not no_wait:
                fetch_receipts(state, client, progress, timeout)
                if certificates:
                    fetch_certificates(state, client, progress)
    except KeyboardInterrupt:
        click.echo(
            f"\nInterrupted. Nothing is lost: run the same command again to resume (its state is {state_path}); "
            "files already acknowledged are not deposited twice.",
            err=True,
        )
        raise click.exceptions.Exit(130) from None
    code = summary(state, unreadable, not no_wait, done_before=done_before, elapsed=time.monotonic() - started)
    raise click.exceptions.Exit(code)


@click.group("receipts")
def receipts() -> None:
    """Receipts of earlier submissions."""


@receipts.command("fetch")
@click.argument("target", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--server", envvar="EVIDENCE_URL", help="Service URL (default: the one in the state file).")
@click.option("--api-key", envvar="EVIDENCE_API_KEY", help="Tenant API key (default $EVIDENCE_API_KEY).")
@click.option(
    "-o",
    "--output",
    "--out",
    "out",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the receipts go (default: as the submit run chose).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True, help="Seconds to wait for sealing."
)
def receipts_fetch(
    target: Path | None, server: str | None, api_key: str | None, out: Path | None, timeout: float
) -> None:
    """Fetch the receipts of a 'submit --no-wait' run. TARGET: its state file, or the folder or file it was run on
    (default: the current folder)."""
    target = (target or Path(".")).absolute()
    if target.is_dir():
        state_path = target / STATE_NAME
    elif target.name == STATE_NAME:
        state_path = target
    else:
        state_path = target.parent / STATE_NAME
    if not state_path.exists():
        raise click.UsageError(f"no state file {state_path}: run 'evidence submit' first")
    state = State.load(state_path)
    client = _client(server or state.server, api_key)
    if out is not None:
        state.out = str(out.absolute())
    for e in state.files.values():
        if e.id is not None and e.receipt is None:
            e.error = None
    with Progress() as progress:
        fetch_receipts(state, client, progress, timeout)
    raise click.exceptions.Exit(summary(state, 0, waited=True))
