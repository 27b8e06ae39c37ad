"""Strict JSON request bodies: one object, only the fields a request allows.

Owns: ``json_object`` (strict JSON, see ``service.core.strictjson``, that must be an object) and
``reject_unknown_fields``, both raising ``InvalidInput`` with the message a client sees. The API reads the bytes
(``service.api.parsing.read_json_object`` adds the size limit); use cases that parse a whole body themselves
(``service.bulk.parse_batch``) call these too, so every body is judged by the same rule and the same words.
Must not import: anything outside the standard library and ``service.core``.
"""

from __future__ import annotations

from typing import Any

from service.core import strictjson
from service.core.errors import InvalidInput
from service.core.strictjson import json_type

__all__ = ["json_object", "reject_unknown_fields"]


def json_object(raw: bytes, *, shape: str = "an object") -> dict[str, Any]:
    """The strict JSON object in ``raw`` (UTF-8, no duplicate keys, no NaN/Infinity).

    :raise InvalidInput: not strict JSON, or not an object ("the JSON body must be ``shape``, found ...").
    """
    try:
        value = strictjson.loads(raw, subject="the JSON body")
    except strictjson.StrictJSONError as exc:
        raise InvalidInput(exc.reason) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"the JSON body must be {shape}, found {json_type(value)}")
    return value


def reject_unknown_fields(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """:raise InvalidInput: ``obj`` has a key not in ``allowed`` (all unknown keys are named, sorted)."""
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown field(s) in {where}: {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )
