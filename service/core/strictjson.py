"""Strict JSON: UTF-8 without a byte order mark, no duplicate keys, no NaN or Infinity (neither spelt out nor as
a number too large for a double, such as ``1e400``).

Owns: turning request bodies and receipt files into JSON values strictly, and naming JSON types in messages.
Must not import: anything outside the standard library. Callers turn ``StrictJSONError`` into their own error
(an unreadable receipt, a 400 problem document).
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn


class StrictJSONError(ValueError):
    """The bytes are not strict JSON; ``reason`` says why in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads(raw: bytes | str, *, subject: str = "the JSON") -> Any:
    """Parse strict JSON and return the value (any JSON value); ``subject`` names the input in messages.

    :raise StrictJSONError: not UTF-8, a byte order mark, duplicate keys, NaN/Infinity, a number that overflows
        a double to infinity (``1e400``), or not JSON at all.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"{subject} is not UTF-8 text (byte {exc.start} is not valid UTF-8)") from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise StrictJSONError(f"{subject} starts with a byte order mark; strict JSON has none")

    def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)  # in C; a duplicate key shows as a shorter dict, and is then looked for
        if len(obj) == len(pairs):
            return obj
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise StrictJSONError(f"{subject} has the key {key!r} twice in one object")
            obj[key] = value
        return obj

    def reject_constant(name: str) -> NoReturn:
        raise StrictJSONError(f"{subject} contains {name}, which strict JSON does not allow")

    def finite_float(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            shown = literal if len(literal) <= 40 else literal[:37] + "..."
            raise StrictJSONError(
                f"{subject} contains the number {shown}, too large for a double (it would be Infinity)"
            )
        return value

    try:
        return json.loads(
            text, object_pairs_hook=reject_duplicates, parse_constant=reject_constant, parse_float=finite_float
        )
    except StrictJSONError:
        raise
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"{subject} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError):  # integers too long to convert, absurd nesting
        raise StrictJSONError(f"{subject} is not usable JSON (a number too long or nesting too deep)") from None


def json_type(value: Any) -> str:
    """How a message names the JSON type of ``value`` ("a string", "an array", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
