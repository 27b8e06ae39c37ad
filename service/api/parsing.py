"""Reading requests: strict JSON bodies, integer query parameters, labels, and streamed multipart uploads.

Owns: turning request bytes into values or ``InvalidInput`` / ``PayloadTooLarge`` with a reason a client can act
on. Upload bodies are never held whole: ``MultipartFile`` exposes the ``file`` part of a multipart body as a
stream, parsed incrementally with werkzeug's sans-IO ``MultipartDecoder`` (``request.files`` would spool it).
"""

from __future__ import annotations

import io
from typing import IO, Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Event, Field, File, MultipartDecoder, NeedData, Preamble

from service.core.bodies import json_object
from service.core.errors import FormatError, InvalidInput, PayloadTooLarge
from service.core.formats import parse_sha256_hex
from service.core.labels import label_problem
from service.core.strictjson import json_type

MAX_JSON_BODY = 1024 * 1024
# Largest value a query parameter may hold (the ledger's sizes are 64-bit signed in PostgreSQL).
MAX_QUERY_INT = 2**63 - 1
READ_CHUNK = 256 * 1024
# Multipart headers and the label field must fit in this much memory; the file part streams.
MAX_MULTIPART_HEADERS = 64 * 1024
MAX_MULTIPART_PARTS = 8
MULTIPART_OVERHEAD = 1024 * 1024  # allowance above max_upload_bytes for boundaries, headers and the label


# --- JSON -----------------------------------------------------------------------------------------


def read_json_object(stream: IO[bytes], *, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """Read a strict JSON object (UTF-8, no duplicate keys, no NaN/Infinity) of at most ``limit`` bytes.

    :raise PayloadTooLarge: the body is longer than ``limit``.
    :raise InvalidInput: the body is not strict JSON, or not an object.
    """
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the JSON body is larger than the limit of {limit} bytes")
    return json_object(raw)


def sha256_field(value: Any) -> bytes:
    """The digest in a JSON body's ``sha256`` field (64 hex digits; upper case is normalised).

    :raise InvalidInput: not a string, or not 64 hex digits (the reason says which).
    """
    if not isinstance(value, str):
        raise InvalidInput(f"'sha256' must be a string of 64 hex digits, found {json_type(value)}")
    try:
        # upper-case hex (Windows certutil prints it) is accepted and normalised; the stored digest is bytes
        return parse_sha256_hex(value.lower())
    except FormatError as exc:
        raise InvalidInput(f"'sha256': {exc.reason}") from None


def sm3_field(value: Any) -> bytes:
    """The SM3 digest in a JSON body's ``sm3`` field (64 hex digits, GB/T 32905; upper case is normalised).

    :raise InvalidInput: not a string, or not 64 hex digits (the reason says which).
    """
    if not isinstance(value, str):
        raise InvalidInput(f"'sm3' must be a string of 64 hex digits (the file's SM3), found {json_type(value)}")
    digits = value.lower()
    bad = next((i for i, c in enumerate(digits) if c not in "0123456789abcdef"), None)
    if bad is not None:
        raise InvalidInput(f"'sm3': SM3 hex contains {digits[bad]!r} at position {bad}: not a hex digit")
    if len(digits) != 64:
        raise InvalidInput(f"'sm3': SM3 hex must be 64 hex digits, {len(digits)} given")
    return bytes.fromhex(digits)


# --- query parameters and labels ------------------------------------------------------------------


def query_int(args: Any, name: str, *, required: bool) -> int | None:
    """A non-negative decimal integer query parameter, or None when it is absent and not required.

    :raise InvalidInput: missing when required, given twice, or not plain decimal digits.
    """
    values = args.getlist(name)
    if not values:
        if required:
            raise InvalidInput(f"the query parameter {name!r} is required (a non-negative integer)")
        return None
    if len(values) > 1:
        raise InvalidInput(f"the query parameter {name!r} is given {len(values)} times, expected once")
    raw = values[0]
    if not raw or not raw.isascii() or not raw.isdigit():
        raise InvalidInput(f"the query parameter {name!r} must be a non-negative integer, got {raw[:40]!r}")
    if len(raw) > 19 or int(raw) > MAX_QUERY_INT:
        raise InvalidInput(f"the query parameter {name!r} is too large (at most {MAX_QUERY_INT})")
    return int(raw)


def check_label(value: Any, where: str) -> str:
    """Return ``value`` if it is a valid label: a string of 1-500 characters without control characters.

    :raise InvalidInput: naming ``where`` the label came from and what is wrong with it.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: the label must be a string, found {json_type(value)}")
    problem = label_problem(value)
    if problem is not None:
        raise InvalidInput(f"{where}: the label {problem}")
    return value


def query_label(args: Any) -> str | None:
    values = args.getlist("label")
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput(f"the query parameter 'label' is given {len(values)} times, expected once")
    return check_label(values[0], "query parameter 'label'")


# --- streamed multipart/form-data ------------------------------------------------------------------


class MultipartUpload:
    """One ``multipart/form-data`` body read from ``stream`` part by part, with bounded memory.

    ``next_part()`` returns the next part's (name, is_file) or None at the end; the part's data is then read
    with ``part_stream()`` (a file-like object with ``readinto``) or ``read_small_part(limit)``.
    """

    def __init__(self, stream: IO[bytes], boundary: str) -> None:
        self._stream = stream
        # max_form_memory_size bounds the decoder's buffer: a part's headers (or the preamble) may not grow
        # beyond it, while part data passes through in chunks of READ_CHUNK.
        self._decoder = MultipartDecoder(
            boundary.encode("latin-1"),
            max_form_memory_size=READ_CHUNK + MAX_MULTIPART_HEADERS,
            max_parts=MAX_MULTIPART_PARTS,
        )
        self._in_part = False
        self._part_done = True
        self._finished = False

    def _event(self) -> Event:
        try:
            while True:
                event = self._decoder.next_event()
                if not isinstance(event, NeedData):
                    return event
                chunk = self._stream.read(READ_CHUNK)
                self._decoder.receive_data(chunk or None)
        except RequestEntityTooLarge:
            raise InvalidInput(
                f"the multipart body has more than {MAX_MULTIPART_PARTS} parts or a part header "
                f"larger than {MAX_MULTIPART_HEADERS} bytes"
            ) from None
        except ValueError as exc:
            raise InvalidInput(f"the multipart body is malformed: {exc}") from None
        except UnicodeDecodeError:
            raise InvalidInput("the multipart body has a part header that is not UTF-8") from None

    def next_part(self) -> tuple[str, bool] | None:
        """Skip what is left of the current part; return the next part's (name, is_file) or None at the end."""
        while not self._part_done:
            self._next_data()
        if self._finished:
            return None
        while True:
            event = self._event()
            if isinstance(event, Preamble):
                continue
            if isinstance(event, Epilogue):
                self._finished = True
                return None
            if isinstance(event, File | Field):
                self._part_done = False
                return event.name or "", isinstance(event, File)
            raise InvalidInput("the multipart body is malformed: part data outside a part")

    def _next_data(self) -> bytes:
        event = self._event()
        if not isinstance(event, Data):
            raise InvalidInput("the multipart body is malformed: expected part data")
        if not event.more_data:
            self._part_done = True
        return event.data

    def part_stream(self) -> _PartStream:
        return _PartStream(self)

    def read_small_part(self, limit: int, what: str) -> bytes:
        """The whole current part, which must hold at most ``limit`` bytes."""
        out = bytearray()
        while not self._part_done:
            out += self._next_data()
            if len(out) > limit:
                raise InvalidInput(f"the multipart field {what!r} is longer than {limit} bytes")
        return bytes(out)


class _PartStream(io.RawIOBase):
    """The data of the current multipart part as a readable raw stream (what ``hashing.sha256_stream`` takes)."""

    def __init__(self, upload: MultipartUpload) -> None:
        super().__init__()
        self._upload = upload
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._upload._part_done:
                return 0
            self._pending = memoryview(self._upload._next_data())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
