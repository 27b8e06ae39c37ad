"""C2SP signed notes with Ed25519 (SPEC §4): every check of tests/vectors/check_note.py, run against
service.core.note (not the checker's code), plus malformation tables, key strings and round-trip properties."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.errors import BadNoteSignature, MalformedKey, MalformedNote, NoteError, UnknownKey
from service.core.formats import Checkpoint
from service.core.note import (
    MAX_SIGNATURES,
    SignedNote,
    Signer,
    Verifier,
    fingerprint,
    key_hash,
    open_note,
    parse_vkeys,
    sign_note,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "signed-note.json"
with VECTORS.open(encoding="utf-8") as _f:
    V: dict[str, Any] = json.load(_f)

KEYS: list[dict[str, Any]] = V["keys"]
VERIFIERS = {k["name"]: Verifier.from_vkey(k["vkey"]) for k in KEYS}
SIGNERS = {k["name"]: Signer.from_skey(k["skey"]) for k in KEYS if "skey" in k}
PETER = VERIFIERS["PeterNeumann"]
PETER_SIGNER = SIGNERS["PeterNeumann"]
GO_TEXT = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = next(sn for sn in V["signed_notes"] if sn["id"] == "go-peter")["note"].encode()


def test_em_dash_prefix_bytes() -> None:
    assert V["format_facts"]["em_dash_signature_prefix_hex"] == "\u2014 ".encode().hex() == "e2809420"
    assert sign_note(b"x\n", [PETER_SIGNER]).split(b"\n\n")[1].startswith(bytes.fromhex("e2809420"))


# --- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", KEYS, ids=[k["name"] for k in KEYS])
def test_vkey_parses_with_recomputed_key_hash(k: dict[str, Any]) -> None:
    v = Verifier.from_vkey(k["vkey"])
    assert v.name == k["name"]
    assert f"{v.key_hash:08x}" == k["key_hash_hex"]
    material = base64.b64decode(k["vkey"].split("+", 2)[2])
    assert material[0] == 0x01 and material[1:] == v.public_key
    expected = hashlib.sha256(k["name"].encode() + b"\x0a" + b"\x01" + v.public_key).digest()[:4]
    assert expected.hex() == k["key_hash_hex"] == f"{key_hash(v.name, v.public_key):08x}"
    assert v.vkey == k["vkey"]


@pytest.mark.parametrize("k", [k for k in KEYS if "skey" in k], ids=[k["name"] for k in KEYS if "skey" in k])
def test_skey_matches_vkey(k: dict[str, Any]) -> None:
    s = Signer.from_skey(k["skey"])
    assert s.name == k["name"]
    assert f"{s.key_hash:08x}" == k["key_hash_hex"]
    assert s.verifier == Verifier.from_vkey(k["vkey"])
    assert s.verifier.vkey == k["vkey"]
    assert s.skey == k["skey"]


def test_enoch_root_skey_is_the_all_zero_seed() -> None:
    assert Signer("EnochRoot", bytes(32)).verifier == VERIFIERS["EnochRoot"]


@pytest.mark.parametrize("k", KEYS, ids=[k["name"] for k in KEYS])
def test_every_proper_substring_of_a_vkey_is_rejected(k: dict[str, Any]) -> None:
    # golang/mod TestNewVerifier.
    v = k["vkey"].encode()
    for i in range(len(v) + 1):
        for j in range(i + 1, len(v) + 1):
            if (i, j) == (0, len(v)):
                continue
            with pytest.raises(MalformedKey):
                Verifier.from_vkey(v[i:j].decode())


@pytest.mark.parametrize("k", KEYS, ids=[k["name"] for k in KEYS])
def test_every_single_byte_increment_of_a_vkey_is_rejected(k: dict[str, Any]) -> None:
    v = k["vkey"].encode()
    for i in range(len(v)):
        b = bytearray(v)
        b[i] += 1
        with pytest.raises(MalformedKey):
            Verifier.from_vkey(bytes(b).decode("utf-8", "replace"))


@pytest.mark.parametrize("bk", V["bad_vkeys"], ids=[bk["why"] for bk in V["bad_vkeys"]])
def test_bad_vkeys_with_adjusted_hash_are_rejected(bk: dict[str, Any]) -> None:
    name, hash16, key64 = bk["vkey"].split("+", 2)
    # The hash is "adjusted": it matches, so the rejection must come from the key type or length.
    assert hashlib.sha256(name.encode() + b"\n" + base64.b64decode(key64)).digest()[:4].hex() == hash16
    with pytest.raises(MalformedKey, match="unknown signature type|expected 32"):
        Verifier.from_vkey(bk["vkey"])


def test_vkey_hash_in_upper_case_is_accepted_and_emitted_lowercase() -> None:
    name, h, key = PETER.vkey.split("+", 2)
    v = Verifier.from_vkey(f"{name}+{h.upper()}+{key}")
    assert v == PETER
    assert v.vkey == PETER.vkey


def test_vkey_base64_may_contain_plus() -> None:
    assert "+" in VERIFIERS["Log"].vkey.split("+", 2)[2]


@pytest.mark.parametrize(
    ("vkey", "reason"),
    [
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "key hash mismatch"),
        ("PeterNeumann+0xc74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "not 8 hex digits"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW", "base64"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "base64"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "space"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "empty"),
        ("PeterNeumann+c74f20a3+", "empty"),
        ("PeterNeumann", "expected <name>"),
    ],
)
def test_vkey_rejections_say_why(vkey: str, reason: str) -> None:
    with pytest.raises(MalformedKey, match=reason):
        Verifier.from_vkey(vkey)


def test_verifier_constructor_checks_key_hash() -> None:
    with pytest.raises(MalformedKey, match="mismatch"):
        Verifier(PETER.name, PETER.key_hash ^ 1, PETER.public_key)


@pytest.mark.parametrize(
    ("skey", "reason"),
    [
        ("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "mismatch"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "0x01"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKD==", "0x01"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "PRIVATE\\+KEY"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF", "base64"),
    ],
)
def test_skey_rejections_say_why(skey: str, reason: str) -> None:
    with pytest.raises(MalformedKey, match=reason):
        Signer.from_skey(skey)


def test_generated_signer_round_trips_and_hides_its_seed() -> None:
    s = Signer.generate("localhost/evidence-ledger")
    again = Signer.from_skey(s.skey)
    assert again.verifier == s.verifier
    assert Verifier.from_vkey(s.verifier.vkey) == s.verifier
    seed_b64 = s.skey.rsplit("+", 1)[1]
    assert seed_b64 not in repr(s) and s.skey not in repr(s)
    assert "localhost/evidence-ledger" in repr(s)
    assert Signer.generate("x").verifier.public_key != Signer.generate("x").verifier.public_key


def test_signer_rejects_bad_name() -> None:
    with pytest.raises(MalformedKey):
        Signer.generate("a+b")
    with pytest.raises(MalformedKey):
        Signer.generate("a\u3000b")  # ideographic space: Go's unicode.IsSpace


def test_fingerprint_is_sha256_of_public_key_in_groups_of_four() -> None:
    fp = fingerprint(PETER.public_key)
    groups = fp.split(" ")
    assert len(groups) == 16 and all(len(g) == 4 for g in groups)
    assert "".join(groups) == hashlib.sha256(PETER.public_key).hexdigest()
    assert fp == fp.lower()
    assert PETER.fingerprint == fp


def test_parse_vkeys_skips_comments_and_blank_lines() -> None:
    text = f"# operator keys\n\n{PETER.vkey}\n   \n# old\n{VERIFIERS['Log'].vkey}\r\n"
    assert parse_vkeys(text) == [PETER, VERIFIERS["Log"]]
    assert parse_vkeys("") == []


def test_parse_vkeys_names_the_bad_line() -> None:
    with pytest.raises(MalformedKey, match="line 3"):
        parse_vkeys(f"{PETER.vkey}\n# c\nnot-a-key\n")


# --- signed-note scenarios ------------------------------------------------------------------------


def _known(names: list[str]) -> list[Verifier]:
    return [VERIFIERS[n] for n in names]


@pytest.mark.parametrize("sn", V["signed_notes"], ids=[sn["id"] for sn in V["signed_notes"]])
def test_signed_note_scenarios(sn: dict[str, Any]) -> None:
    msg = sn["note"].encode()
    exp = sn["expect"]
    if not exp["ok"]:
        with pytest.raises(NoteError, match=re.escape(exp["error"])):
            open_note(msg, _known(sn["verify_with"]))
        return
    opened = open_note(msg, _known(sn["verify_with"]))
    assert [v.name for v in opened.verified] == exp["verified"]
    assert [u.split("+")[0] for u in opened.unverified] == exp["unverified"]
    if "text" not in sn:
        return
    assert opened.text == sn["text"].encode()
    assert sn["note"] == sn["text"] + "\n" + "".join(line + "\n" for line in sn["signature_lines"])
    held = [SIGNERS[line.split(" ")[1]] for line in sn["signature_lines"] if line.split(" ")[1] in SIGNERS]
    if len(held) == len(sn["signature_lines"]):
        # Ed25519 is deterministic: re-signing gives the same note, byte for byte.
        assert sign_note(sn["text"].encode(), held) == msg
    for line in sn["signature_lines"]:
        name = line.split(" ")[1]
        if name in SIGNERS:
            assert SIGNERS[name].signature_line(sn["text"].encode()) == (line + "\n").encode()
        raw = base64.b64decode(line.split(" ")[2])
        v = VERIFIERS[name]
        assert raw[:4].hex() == f"{v.key_hash:08x}"
        Ed25519PublicKey.from_public_bytes(v.public_key).verify(raw[4:], sn["text"].encode())
        tampered = sn["text"].encode()[:-1] + b"X\n"
        with pytest.raises(BadNoteSignature, match="invalid signature"):
            open_note(tampered + b"\n" + (line + "\n").encode(), [v])


def test_scenario_error_classes() -> None:
    notes = {sn["id"]: sn["note"].encode() for sn in V["signed_notes"]}
    with pytest.raises(UnknownKey, match="no verifiable signatures"):
        open_note(notes["go-no-known-keys"], [])
    with pytest.raises(BadNoteSignature, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(notes["go-corrupted-known-signature"], [PETER])
    with pytest.raises(MalformedNote, match="101 signature lines"):
        open_note(notes["go-101-signatures"], [PETER])


@pytest.mark.parametrize("mn", V["malformed_notes_hex"], ids=[mn["desc"] for mn in V["malformed_notes_hex"]])
def test_malformed_notes_from_vectors(mn: dict[str, Any]) -> None:
    with pytest.raises(MalformedNote, match=re.escape(mn["expect_error"])):
        open_note(bytes.fromhex(mn["note_hex"]), [PETER])


# --- format-only C2SP examples (keys not published) ----------------------------------------------


@pytest.mark.parametrize("key", ["signed_note_quasimodo", "checkpoint_behind_the_sofa", "checkpoint_with_cosignature"])
def test_format_only_examples_parse_but_have_no_known_key(key: str) -> None:
    with pytest.raises(UnknownKey, match="note has no verifiable signatures"):
        open_note(V["format_only_examples"][key].encode(), [PETER])


def test_c2sp_checkpoint_and_cosignature_structure() -> None:
    fo = V["format_only_examples"]
    note = fo["checkpoint_with_cosignature"]
    body, sigblock = note.split("\n\n", 1)
    cp = Checkpoint.from_bytes((body + "\n").encode())
    assert (cp.origin, cp.size, len(cp.root), cp.extensions) == (
        "example.com/behind-the-sofa",
        20852163,
        32,
        (),
    )
    with pytest.raises(UnknownKey) as info:
        open_note(note.encode(), [])
    assert "example.com/behind-the-sofa+033de0ae" in info.value.reason
    lines = sigblock.rstrip("\n").split("\n")
    log_raw = base64.b64decode(lines[0].split(" ")[2])
    cos_raw = base64.b64decode(lines[1].split(" ")[2])
    assert len(log_raw) == 4 + 64
    assert log_raw[:4].hex() == "033de0ae"
    assert len(cos_raw) == 4 + 8 + 64
    (ts,) = struct.unpack(">Q", cos_raw[4:12])
    assert ts == 1679315147
    assert fo["cosignature_v1_signed_message_example"] == f"cosignature/v1\ntime {ts}\n{body}\n"
    head, cp_note = fo["tlog_witness_add_checkpoint_request_body"].split("\n\n", 1)
    head_lines = head.split("\n")
    assert head_lines[0] == "old 20852014"
    assert all(len(base64.b64decode(x, validate=True)) == 32 for x in head_lines[1:])
    assert len(head_lines) - 1 <= 63
    assert Checkpoint.from_bytes((cp_note.split("\n\n")[0] + "\n").encode()).size == 20852163


# --- our own malformation table: each with its own reason -----------------------------------------

PETER_LINE = GO_NOTE.split(b"\n\n")[1]  # "— PeterNeumann <b64>\n"
PETER_B64 = PETER_LINE.split(b" ")[2].rstrip(b"\n")

NOTE_FAILURES: list[tuple[str, bytes, str]] = [
    ("no blank line", GO_TEXT + PETER_LINE, "no blank line"),
    ("empty signature block", GO_TEXT + b"\n", "no signature lines"),
    ("missing final newline", GO_NOTE[:-1], "does not end with a newline"),
    ("hyphen instead of em dash", GO_TEXT + b"\n- PeterNeumann " + PETER_B64 + b"\n", "does not start with"),
    ("en dash", GO_TEXT + b"\n\xe2\x80\x93 PeterNeumann " + PETER_B64 + b"\n", "does not start with"),
    (
        "dash without space",
        GO_TEXT + b"\n\xe2\x80\x94PeterNeumann " + PETER_B64 + b"\n",
        "does not start with",
    ),
    (
        "bad base64",
        GO_TEXT + b"\n\xe2\x80\x94 PeterNeumann " + PETER_B64[:-2] + b"*=\n",
        "not standard padded",
    ),
    (
        "unpadded base64",
        GO_TEXT + b"\n\xe2\x80\x94 PeterNeumann " + PETER_B64[:-1] + b"\n",
        "not standard padded",
    ),
    (
        "url-safe base64",
        GO_TEXT + b"\n\xe2\x80\x94 PeterNeumann " + PETER_B64.replace(b"/", b"_") + b"\n",
        "base64",
    ),
    ("short signature", GO_TEXT + b"\n\xe2\x80\x94 PeterNeumann AAAAAA==\n", "4 bytes"),
    ("no signature at all", GO_TEXT + b"\n\xe2\x80\x94 PeterNeumann\n", "0 bytes"),
    ("empty key name", GO_TEXT + b"\n\xe2\x80\x94  " + PETER_B64 + b"\n", "key name is empty"),
    ("plus in key name", GO_TEXT + b"\n\xe2\x80\x94 Peter+Neumann " + PETER_B64 + b"\n", "contains '\\+'"),
    ("CR", GO_NOTE.replace(b"\n", b"\r\n"), "U\\+000D"),
    ("tab in text", b"a\tb\n" + GO_NOTE, "U\\+0009"),
    ("invalid UTF-8", GO_NOTE[:5] + b"\xc3" + GO_NOTE[5:], "not valid UTF-8"),
    ("text after signatures", GO_NOTE + b"trailer\n", "line 2 does not start with"),
    ("too many signatures", GO_TEXT + b"\n" + PETER_LINE * (MAX_SIGNATURES + 1), "101 signature lines"),
]


@pytest.mark.parametrize(("note", "reason"), [r[1:] for r in NOTE_FAILURES], ids=[r[0] for r in NOTE_FAILURES])
def test_open_note_rejects_malformed(note: bytes, reason: str) -> None:
    with pytest.raises(MalformedNote, match=reason) as info:
        open_note(note, [PETER])
    assert info.value.reason.startswith("malformed note")


def test_blank_line_after_signatures_moves_the_split_and_breaks_the_signature() -> None:
    # The split is at the LAST blank line, so the old signature line becomes part of the text.
    with pytest.raises(BadNoteSignature):
        open_note(GO_NOTE + b"\n" + PETER_LINE, [PETER])


def test_exactly_max_signatures_is_accepted_and_duplicates_verify_once() -> None:
    opened = open_note(GO_TEXT + b"\n" + PETER_LINE * MAX_SIGNATURES, [PETER])
    assert opened.verified == (PETER,)


def test_repeated_identical_unknown_lines_are_listed_once() -> None:
    enoch = SIGNERS["EnochRoot"].signature_line(GO_TEXT)
    opened = open_note(GO_TEXT + b"\n" + PETER_LINE + enoch + enoch, [PETER])
    assert opened.unverified == ("EnochRoot+af0cfe78",)


def test_unknown_key_names_seen_and_trusted_keys() -> None:
    with pytest.raises(UnknownKey) as info:
        open_note(GO_NOTE, [VERIFIERS["Log"], VERIFIERS["Known"]])
    assert "PeterNeumann+c74f20a3" in info.value.reason
    assert "Log+2271c621" in info.value.reason and "Known+451c786d" in info.value.reason


def test_same_name_other_key_is_unknown_not_bad() -> None:
    impostor = Signer.generate("PeterNeumann")
    note = sign_note(GO_TEXT, [impostor])
    with pytest.raises(UnknownKey):
        open_note(note, [PETER])


def test_bad_known_signature_fails_even_if_another_verifies() -> None:
    bad = PETER_LINE[:-10] + (b"A" if PETER_LINE[-10:-9] != b"A" else b"B") + PETER_LINE[-9:]
    note = GO_TEXT + b"\n" + SIGNERS["EnochRoot"].signature_line(GO_TEXT) + bad
    with pytest.raises(BadNoteSignature, match="PeterNeumann\\+c74f20a3"):
        open_note(note, [PETER, VERIFIERS["EnochRoot"]])


def test_signature_covers_text_not_the_blank_line() -> None:
    raw = base64.b64decode(PETER_B64)
    Ed25519PublicKey.from_public_bytes(PETER.public_key).verify(raw[4:], GO_TEXT)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(PETER.public_key).verify(raw[4:], GO_TEXT + b"\n")


def test_text_may_contain_blank_lines_split_is_at_the_last_one() -> None:
    text = b"first\n\nsecond\n"
    opened = open_note(sign_note(text, [PETER_SIGNER]), [PETER])
    assert opened.text == text


# --- sign_note ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"", "empty"),
        (b"no newline", "end with a newline"),
        (b"a\rb\n", "U\\+000D"),
        (b"\xff\n", "UTF-8"),
    ],
)
def test_sign_note_rejects_bad_text(text: bytes, reason: str) -> None:
    with pytest.raises(MalformedNote, match=reason):
        sign_note(text, [PETER_SIGNER])


def test_sign_note_needs_a_signer() -> None:
    with pytest.raises(ValueError, match="signer"):
        sign_note(b"x\n", [])


def test_sign_and_open_a_checkpoint() -> None:
    signer = Signer.generate("localhost/evidence-ledger")
    body = Checkpoint("localhost/evidence-ledger", 0, hashlib.sha256(b"").digest()).to_bytes()
    note = sign_note(body, [signer])
    assert note.startswith(body + b"\n\xe2\x80\x94 localhost/evidence-ledger ")
    assert note.endswith(b"\n")
    opened = open_note(note, [signer.verifier])
    assert opened == SignedNote(body, (signer.verifier,), ())
    assert Checkpoint.from_bytes(opened.text).size == 0


note_texts = st.lists(st.text(alphabet=st.characters(min_codepoint=0x20, codec="utf-8"), max_size=30), min_size=1).map(
    lambda lines: "".join(line + "\n" for line in lines).encode()
)


@settings(max_examples=50)
@given(note_texts, st.sampled_from(sorted(SIGNERS)))
def test_sign_open_round_trip(text: bytes, name: str) -> None:
    signer = SIGNERS[name]
    opened = open_note(sign_note(text, [signer, PETER_SIGNER]), [signer.verifier])
    assert opened.text == text
    assert opened.verified == (signer.verifier,)


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_open_note_raises_only_note_errors(data: bytes) -> None:
    try:
        open_note(data, [PETER])
    except NoteError:
        pass


@given(st.integers(min_value=0, max_value=len(GO_NOTE) - 1), st.integers(min_value=1, max_value=255))
def test_any_byte_change_of_a_signed_note_is_rejected(pos: int, delta: int) -> None:
    changed = bytearray(GO_NOTE)
    changed[pos] = (changed[pos] + delta) % 256
    try:
        opened = open_note(bytes(changed), [PETER])
    except NoteError:
        return
    # Base64 with non-zero padding bits (accepted by Go too) may decode to the same signature.
    assert opened.text == GO_TEXT
