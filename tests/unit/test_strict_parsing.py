"""The fast paths of ``strictjson.loads`` (duplicate keys found through ``dict(pairs)``) and ``parse_sha256_hex``
(``bytes.fromhex`` plus a round trip) refuse exactly what the character-by-character checks refuse."""

from __future__ import annotations

import pytest

from service.core.errors import FormatError
from service.core.formats import parse_sha256_hex
from service.core.strictjson import StrictJSONError, loads


def test_duplicate_keys_anywhere_are_refused() -> None:
    for text in (
        '{"a": 1, "a": 1}',
        '{"items": [{"sha256": "x", "label": "y", "sha256": "x"}]}',
        '{"a": {"b": {"c": 1, "d": 2, "c": 3}}}',
    ):
        with pytest.raises(StrictJSONError, match=r"has the key '(a|sha256|c)' twice in one object"):
            loads(text)
    same_key_in_other_objects = '{"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}'
    assert loads(same_key_in_other_objects) == {"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("AB" * 32, "upper-case digits"),
        ("ab" * 31 + "aB", "upper-case digits"),
        ("ab " * 21 + "a", "' ' at position 2: not a hex digit"),  # 64 characters that fromhex would take
        (" " + "ab" * 31 + "a", "' ' at position 0"),
        ("ab" * 31 + "a\n", "'\\\\n' at position 63"),
        ("ab" * 31 + "a\u0660", "not a hex digit"),  # an Arabic-Indic digit
        ("ab" * 31, "64 hex digits, 62 given"),
        ("ab" * 33, "64 hex digits, 66 given"),
    ],
)
def test_sha256_hex_refusals(text: str, problem: str) -> None:
    with pytest.raises(FormatError, match=problem):
        parse_sha256_hex(text)


def test_sha256_hex_accepts_lowercase() -> None:
    digest = bytes(range(32))
    assert parse_sha256_hex(digest.hex()) == digest
