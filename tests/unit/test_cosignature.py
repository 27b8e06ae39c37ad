"""cosignature/v1 (C2SP tlog-cosignature, SPEC §9): the product's witness keys and cosignatures against a second,
independent implementation written from the C2SP text (tests/support/c2sp_cosig.py: pure-Python RFC 8032)."""

from __future__ import annotations

import base64
import struct

import pytest

from service.core.cosignature import (
    WitnessKey,
    WitnessSigner,
    check_cosignatures,
    cosignature_key_hash,
    cosigned_message,
)
from service.core.errors import MalformedKey, MalformedNote
from service.core.formats import Checkpoint
from service.core.note import Signer, open_note, sign_note
from tests.support import c2sp_cosig as ref

SEED = bytes(range(32))
LOG = Signer("example.org/log", bytes([7]) * 32)


def checkpoint(size: int = 5, root: bytes = b"\x11" * 32) -> bytes:
    return sign_note(Checkpoint(LOG.name, size, root).to_bytes(), [LOG])


def test_reference_ed25519_matches_rfc8032_test_vector_1() -> None:
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert ref.ed25519_public(secret).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    sig = ref.ed25519_sign(secret, b"")
    assert sig.hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0"
        "595bbe24655141438e7a100b"
    )
    assert ref.ed25519_verify(ref.ed25519_public(secret), b"", sig)
    assert not ref.ed25519_verify(ref.ed25519_public(secret), b"x", sig)


def test_vkey_and_key_id_agree_with_the_independent_implementation() -> None:
    signer = WitnessSigner("witness.example/w1", SEED)
    public = ref.ed25519_public(SEED)
    assert signer.verifier.public_key == public
    assert signer.verifier.vkey == ref.vkey("witness.example/w1", public)
    assert struct.pack(">I", cosignature_key_hash("witness.example/w1", public)) == ref.key_id(
        "witness.example/w1", public
    )
    assert WitnessKey.from_vkey(ref.vkey("witness.example/w1", public)) == signer.verifier


def test_product_and_reference_cosignature_lines_are_byte_identical() -> None:
    note = checkpoint()
    body, _ = ref.body_and_signatures(note)
    signer = WitnessSigner("witness.example/w1", SEED)
    ours = signer.cosign(body, 1679315147)
    theirs = ref.cosign("witness.example/w1", SEED, body, 1679315147)
    assert ours == theirs  # Ed25519 is deterministic: same key, same message, same bytes
    assert ref.verify_line("witness.example/w1", ref.ed25519_public(SEED), body, ours) == 1679315147


def test_reference_cosignature_verifies_with_the_product_and_a_tampered_one_does_not() -> None:
    note = checkpoint(size=20852163)
    body, _ = ref.body_and_signatures(note)
    other_seed = bytes([9]) * 32
    line = ref.cosign("w2", other_seed, body, 1700000000)
    key = WitnessKey.from_vkey(ref.vkey("w2", ref.ed25519_public(other_seed)))
    [check] = check_cosignatures(note + line, [key])
    assert check.valid and check.timestamp == 1700000000
    blob = bytearray(base64.b64decode(line.split(b" ")[2]))
    blob[11] ^= 1  # the timestamp changes: the signature no longer covers it
    bad = "\u2014 w2 ".encode() + base64.b64encode(bytes(blob)) + b"\n"
    [check] = check_cosignatures(note + bad, [key])
    assert check.present and not check.valid and "invalid cosignature" in (check.reason or "")


def test_the_signed_message_is_the_c2sp_one() -> None:
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cosigned_message(body, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + body
    assert cosigned_message(body, 1679315147) == ref.message(body, 1679315147)


def test_cosigned_checkpoint_still_opens_with_the_log_key_alone() -> None:
    note = checkpoint()
    body, _ = ref.body_and_signatures(note)
    cosigned = note + WitnessSigner("w1", SEED).cosign(body, 1)
    opened = open_note(cosigned, [LOG.verifier])
    assert opened.verified == (LOG.verifier,)
    assert len(opened.unverified) == 1  # the cosignature: an unknown key to a log verifier, ignored


def test_a_witness_key_named_like_the_log_does_not_confuse_the_log_signature() -> None:
    note = checkpoint()
    body, _ = ref.body_and_signatures(note)
    w = WitnessSigner(LOG.name, SEED)  # same name, type 0x04: a different key ID
    cosigned = note + w.cosign(body, 42)
    assert open_note(cosigned, [LOG.verifier]).verified == (LOG.verifier,)
    [check] = check_cosignatures(cosigned, [w.verifier])
    assert check.valid and check.timestamp == 42


def test_missing_and_unknown_cosignatures() -> None:
    note = checkpoint()
    body, _ = ref.body_and_signatures(note)
    listed = WitnessSigner("w1", SEED)
    stranger = WitnessSigner("w9", bytes([3]) * 32)
    [check] = check_cosignatures(note + stranger.cosign(body, 5), [listed.verifier])
    assert not check.present and not check.valid


def test_cosignature_of_another_checkpoint_is_invalid() -> None:
    signer = WitnessSigner("w1", SEED)
    other_body = Checkpoint(LOG.name, 6, b"\x22" * 32).to_bytes()
    note = checkpoint()
    [check] = check_cosignatures(note + signer.cosign(other_body, 7), [signer.verifier])
    assert check.present and not check.valid


@pytest.mark.parametrize(
    ("vkey", "words"),
    [
        (LOG.verifier.vkey, "checkpoint signing key"),
        ("w1+00000000+BAAA", "key ID mismatch"),
        ("w1", "expected <name>"),
        ("w 1+00000000+BAAA", "space"),
        ("w1+xyz+BAAA", "8 hex"),
        ("w1+00000000+!!", "base64"),
    ],
)
def test_bad_witness_vkeys_are_rejected(vkey: str, words: str) -> None:
    with pytest.raises(MalformedKey, match=words):
        WitnessKey.from_vkey(vkey)


def test_every_substring_and_one_byte_change_of_a_vkey_is_rejected() -> None:
    good = WitnessSigner("w1", SEED).verifier.vkey
    for i in range(len(good)):
        for candidate in (good[:i], good[:i] + chr(ord(good[i]) + 1) + good[i + 1 :]):
            if candidate == good:
                continue
            with pytest.raises(MalformedKey):
                WitnessKey.from_vkey(candidate)


def test_skey_round_trip_and_zero_timestamp_refused() -> None:
    signer = WitnessSigner.generate("court.example/witness")
    again = WitnessSigner.from_skey(signer.skey)
    assert again.verifier == signer.verifier
    # PRIVATE+KEY+<name>+<hash>+<base64>: the base64 key material may itself hold "+".
    secret = signer.skey.split("+", 4)[4]
    assert "PRIVATE" not in repr(signer) and secret not in repr(signer)
    with pytest.raises(ValueError, match="positive"):
        signer.cosign(b"a\n1\nAAAA\n", 0)
    with pytest.raises(MalformedKey):
        WitnessSigner.from_skey(LOG.skey)  # type 0x01


def test_zero_timestamp_and_wrong_length_cosignatures_are_invalid() -> None:
    note = checkpoint()
    body, _ = ref.body_and_signatures(note)
    signer = WitnessSigner("w1", SEED)
    kid = struct.pack(">I", signer.key_hash)
    zero = kid + struct.pack(">Q", 0) + signer._private.sign(cosigned_message(body, 0))  # noqa: SLF001
    line = "\u2014 w1 ".encode() + base64.b64encode(zero) + b"\n"
    [check] = check_cosignatures(note + line, [signer.verifier])
    assert not check.valid and "timestamp 0" in (check.reason or "")
    short = "\u2014 w1 ".encode() + base64.b64encode(kid + b"\x00" * 10) + b"\n"
    [check] = check_cosignatures(note + short, [signer.verifier])
    assert not check.valid and "bytes" in (check.reason or "")


def test_malformed_notes_are_reported() -> None:
    with pytest.raises(MalformedNote):
        check_cosignatures(b"no blank line\n", [])
    with pytest.raises(MalformedNote):
        check_cosignatures(checkpoint() + b"- not a signature\n", [])
