"""``receipt.dump_json`` writes exactly the bytes of ``json.dumps(indent=2, ensure_ascii=False) + "\\n"`` (its fast
path must never change a receipt file), for any JSON document and for the values it hands back to ``json``."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.receipt import dump_json


def reference(document: Any) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),  # controls, quotes, backslashes, non-ASCII, lone surrogates
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=500)
@given(st.dictionaries(st.text(max_size=8), documents, max_size=6))
def test_dump_json_equals_json_dumps(document: dict[str, Any]) -> None:
    try:
        want = reference(document)
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, both refuse it
        try:
            dump_json(document)
        except UnicodeEncodeError:
            return
        raise AssertionError("dump_json encoded a lone surrogate") from None
    assert dump_json(document) == want


def test_values_left_to_json_dumps() -> None:
    deep: Any = "x"
    for _ in range(100):  # deeper than the prepared indents
        deep = [deep]
    for document in (
        {"nan": float("nan"), "inf": float("-inf")},
        {"tuple": (1, "a"), "int key": {1: 2, None: 3, False: 4}},
        {"deep": deep},
        {"sub": type("S", (str,), {})("s"), "intsub": type("I", (int,), {})(5)},
        {"empty": {}, "none": [], "nested": [{}, [[]], {"a": []}]},
    ):
        assert dump_json(document) == reference(document)


def test_a_stored_receipt_shape() -> None:
    document = {
        "format": "evidence-receipt/v1",
        "evidence": {"id": "ev_1", "sha256": "ab" * 32, "label": 'café \u2028 "q" \\', "size": 0},
        "proof": ["AAAA", "BBBB"],
        "ok": True,
        "nothing": None,
        "ratio": 0.1,
    }
    assert dump_json(document) == reference(document)
