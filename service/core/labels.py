"""The label rule, in one place: what a deposit's label may hold (API, bulk API, CLI client, certificate).

A label is a person's name for the deposit ("contract.pdf", "合同第二版"). It is printed on certificates, so
it must be text a person reads as it is: 1-500 characters, no control characters, no line or paragraph
separators, no lone surrogates, and no invisible characters that change how the rest reads: bidirectional
controls (U+202A-202E, U+2066-2069, U+200E/200F) and zero-width characters (U+200B-200D, U+FEFF), which could
make "invoice" + U+202E + "fdp.exe" print as "invoiceexe.pdf".
"""

from __future__ import annotations

import re

__all__ = ["LABEL_FORBIDDEN", "LABEL_PATTERN", "MAX_LABEL_LENGTH", "label_problem", "sanitize_label"]

MAX_LABEL_LENGTH = 500

# Characters a label may not hold: C0/C1 controls, zero-width and bidi marks (U+200B-200F), line and paragraph
# separators, bidi embeddings/overrides (U+202A-202E) and isolates (U+2066-2069), lone surrogates, U+FEFF.
LABEL_FORBIDDEN = re.compile("[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")
# The same rule as a JSON Schema pattern (OpenAPI).
LABEL_PATTERN = (
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u200b-\\u200f\\u2028-\\u202e\\u2066-\\u2069\\ud800-\\udfff\\ufeff]+$"
)
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def label_problem(label: str) -> str | None:
    """What is wrong with ``label`` (a phrase to follow "the label ..."), or None when it is valid."""
    if not 1 <= len(label) <= MAX_LABEL_LENGTH:
        return f"must be 1-{MAX_LABEL_LENGTH} characters, found {len(label)}"
    bad = LABEL_FORBIDDEN.search(label)
    if bad is not None and _INVISIBLE.fullmatch(bad.group()):
        return (
            f"contains U+{ord(bad.group()):04X} at position {bad.start()}; bidirectional controls and zero-width "
            "characters are not allowed (they change how the rest of the label reads)"
        )
    if bad is not None:
        return (
            f"contains U+{ord(bad.group()):04X} at position {bad.start()}; "
            "control characters, line separators and lone surrogates are not allowed"
        )
    return None


def sanitize_label(text: str) -> str | None:
    """A valid label made from arbitrary text (a file name): forbidden characters become '?', the end is kept."""
    text = LABEL_FORBIDDEN.sub("?", text)
    return text[-MAX_LABEL_LENGTH:] if text else None
