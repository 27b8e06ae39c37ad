"""SM2 checkpoint signatures (SPEC §4.1): key strings, dual-signed notes and receipts, and interop with the
``openssl`` command line, an independent SM2 implementation (signatures made here verify with
``openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:...``, and signatures made by ``openssl`` over
checkpoint bodies verify here)."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.core import merkle, sm2
from service.core.errors import BadNoteSignature, MalformedKey, UnknownKey
from service.core.formats import Checkpoint, Leaf, LedgerEntry
from service.core.note import ALG_SM2, Signer, Sm2Signer, Sm2Verifier, Verifier, open_note, parse_vkeys, sign_note
from service.core.receipt import build_receipt
from service.core.verify import verify_receipt

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line")
NAME = "example.org/ledger"
BODY = Checkpoint(NAME, 7, hashlib.sha256(b"root").digest()).to_bytes()


@pytest.fixture(scope="module")
def ed() -> Signer:
    return Signer.generate(NAME)


@pytest.fixture(scope="module")
def gm() -> Sm2Signer:
    return Sm2Signer.generate(NAME)


def _lines(note: bytes) -> list[bytes]:
    return note.split(b"\n\n", 1)[1].splitlines(keepends=True)


def _sig_of(line: bytes) -> tuple[int, bytes]:
    raw = base64.b64decode(line.split(b" ")[2])
    return int(struct.unpack(">I", raw[:4])[0]), raw[4:]


def _openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], input=stdin, capture_output=True, check=False)


def _pub_pem(tmp: Path, private_pem: bytes) -> Path:
    (tmp / "k.pem").write_bytes(private_pem)
    pub = tmp / "pub.pem"
    assert _openssl("pkey", "-in", str(tmp / "k.pem"), "-pubout", "-out", str(pub)).returncode == 0
    return pub


# --- key strings ---------------------------------------------------------------------------------------


def test_vkey_round_trip_and_type_bytes(gm: Sm2Signer) -> None:
    v = gm.verifier
    assert ALG_SM2 == bytes([0xFF, 0x06, 0x08, 0x2A, 0x81, 0x1C, 0xCF, 0x55, 0x01, 0x83, 0x75])
    parsed = Verifier.from_vkey(v.vkey)
    assert isinstance(parsed, Sm2Verifier) and parsed == v
    assert parsed.algorithm == "sm2" and parsed.distid == b"1234567812345678"
    material = base64.b64decode(v.vkey.split("+", 2)[2])
    assert material == ALG_SM2 + v.public_key + b"1234567812345678"
    expected = hashlib.sha256(NAME.encode() + b"\n" + material).digest()[:4]
    assert v.key_hash == int.from_bytes(expected, "big")
    assert v.vkey.split("+", 2)[2].startswith("/wYIKoEcz1UBg3UE")
    assert v.fingerprint.replace(" ", "") == hashlib.sha256(v.public_key).hexdigest()
    assert v.fingerprint_sm3.replace(" ", "") == hashlib.new("sm3", v.public_key).hexdigest()
    assert len(v.fingerprint_sm3) == 79
    assert parse_vkeys(f"# both\n{v.vkey}\n") == [v]


def test_the_distinguishing_id_is_part_of_the_key() -> None:
    pem = sm2.generate_pem()
    a, b = Sm2Signer(NAME, pem), Sm2Signer(NAME, pem, b"ALICE123@YAHOO.COM")
    assert a.verifier.public_key == b.verifier.public_key
    assert a.key_hash != b.key_hash and a.verifier.vkey != b.verifier.vkey
    note = sign_note(BODY, [b])
    assert open_note(note, [b.verifier]).verified == (b.verifier,)
    # Same point, default ID, forced to b's key hash: the signature does not verify.
    forged = Sm2Verifier.__new__(Sm2Verifier)
    object.__setattr__(forged, "name", NAME)
    object.__setattr__(forged, "key_hash", b.key_hash)
    object.__setattr__(forged, "public_key", a.verifier.public_key)
    object.__setattr__(forged, "distid", a.verifier.distid)
    with pytest.raises(BadNoteSignature):
        open_note(note, [forged])


def _vkey(name: str, material: bytes) -> str:
    h = hashlib.sha256(name.encode() + b"\n" + material).digest()[:4].hex()
    return f"{name}+{h}+{base64.b64encode(material).decode()}"


@pytest.mark.parametrize(
    ("material", "reason"),
    [
        (ALG_SM2 + b"\x04" + b"\x01" * 64 + b"1234567812345678", "not a point on the SM2 curve"),
        (ALG_SM2 + b"\x04" + b"\x01" * 10, "65-byte"),
        (bytes([0xFF, 0x06, 0x03, 0x2B, 0x65, 0x70]) + b"\x04" * 65, "unknown signature type ff 06 03 2b 65 70"),
        (b"\x02" + b"\x00" * 32, "unknown signature type 0x02"),
    ],
)
def test_bad_sm2_vkeys_say_why(material: bytes, reason: str) -> None:
    with pytest.raises(MalformedKey, match=reason):
        Verifier.from_vkey(_vkey(NAME, material))


def test_empty_or_long_distinguishing_id_is_refused(gm: Sm2Signer) -> None:
    point = gm.verifier.public_key
    with pytest.raises(MalformedKey, match="distinguishing ID"):
        Verifier.from_vkey(_vkey(NAME, ALG_SM2 + point))
    with pytest.raises(MalformedKey, match="distinguishing ID"):
        Verifier.from_vkey(_vkey(NAME, ALG_SM2 + point + b"x" * 256))
    assert Verifier.from_vkey(_vkey(NAME, ALG_SM2 + point + b"x" * 255)).distid == b"x" * 255


def test_signer_hides_its_key_and_refuses_other_curves(gm: Sm2Signer) -> None:
    assert "PRIVATE" not in repr(gm) and gm.pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(MalformedKey, match="not an SM2 key"):
        Sm2Signer(NAME, p256)
    with pytest.raises(MalformedKey, match="not a PEM private key"):
        Sm2Signer(NAME, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


# --- dual-signed notes -------------------------------------------------------------------------------


def test_dual_signed_note_verifies_with_either_key_or_both(ed: Signer, gm: Sm2Signer) -> None:
    note = sign_note(BODY, [ed, gm])
    lines = _lines(note)
    assert len(lines) == 2 and lines[0] == ed.signature_line(BODY)
    assert open_note(note, [ed.verifier]).verified == (ed.verifier,)
    assert open_note(note, [ed.verifier]).unverified == (gm.verifier.key_id,)
    assert open_note(note, [gm.verifier]).verified == (gm.verifier,)
    assert open_note(note, [ed.verifier, gm.verifier]).verified == (ed.verifier, gm.verifier)


def test_corrupted_sm2_line_is_ignored_without_the_sm2_key_and_fails_with_it(ed: Signer, gm: Sm2Signer) -> None:
    note = sign_note(BODY, [ed, gm])
    head, sm2_line = note.rsplit(b"\n", 2)[0], _lines(note)[1]
    key_hash, sig = _sig_of(sm2_line)
    bad_sig = sig[:-1] + bytes([sig[-1] ^ 1])
    bad_line = f"\u2014 {NAME} {base64.b64encode(struct.pack('>I', key_hash) + bad_sig).decode()}\n".encode()
    bad = note[: len(note) - len(sm2_line)] + bad_line
    assert bad != note and head
    assert open_note(bad, [ed.verifier]).verified == (ed.verifier,)
    with pytest.raises(BadNoteSignature, match=re.escape(gm.verifier.key_id)):
        open_note(bad, [gm.verifier])
    with pytest.raises(BadNoteSignature):
        open_note(bad, [ed.verifier, gm.verifier])


def test_sm2_only_note_with_ed25519_trusted_is_unknown(ed: Signer, gm: Sm2Signer) -> None:
    with pytest.raises(UnknownKey):
        open_note(sign_note(BODY, [gm]), [ed.verifier])


def test_non_der_signature_encodings_are_refused(gm: Sm2Signer) -> None:
    sig = gm.sign(BODY)
    assert gm.verifier.verify(BODY, sig)
    assert sig[0] == 0x30 and sig[1] == len(sig) - 2
    long_form = bytes([0x30, 0x81, sig[1]]) + sig[2:]  # BER long-form length of the same SEQUENCE
    assert not gm.verifier.verify(BODY, long_form)
    assert not gm.verifier.verify(BODY, sig + b"\x00")
    assert not gm.verifier.verify(BODY, b"")
    assert not gm.verifier.verify(BODY, b"\x00" * 64)


# --- the openssl command line -------------------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize("distid", [b"1234567812345678", b"ALICE123@YAHOO.COM"])
def test_product_signatures_verify_with_openssl_pkeyutl(tmp_path: Path, ed: Signer, distid: bytes) -> None:
    gm = Sm2Signer(NAME, sm2.generate_pem(), distid)
    pub = _pub_pem(tmp_path, gm.pem)
    for size in (0, 1, 12345):
        body = Checkpoint(NAME, size, hashlib.sha256(b"%d" % size).digest()).to_bytes()
        note = sign_note(body, [ed, gm])
        key_hash, sig = _sig_of(_lines(note)[1])
        assert key_hash == gm.key_hash
        (tmp_path / "text").write_bytes(note.split(b"\n\n", 1)[0] + b"\n")
        assert (tmp_path / "text").read_bytes() == body
        (tmp_path / "sig").write_bytes(sig)
        args = ["pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey", str(pub)]
        args += ["-in", str(tmp_path / "text"), "-sigfile", str(tmp_path / "sig")]
        good = _openssl(*args, "-pkeyopt", f"distid:{distid.decode()}")
        assert good.returncode == 0 and b"Signature Verified Successfully" in good.stdout, good
        wrong_id = _openssl(*args, "-pkeyopt", "distid:0000000000000000")
        assert wrong_id.returncode != 0
        (tmp_path / "text").write_bytes(body.replace(b"\n", b"\n ", 1))
        assert _openssl(*args, "-pkeyopt", f"distid:{distid.decode()}").returncode != 0


@needs_openssl
def test_openssl_signatures_over_checkpoint_bodies_verify_in_the_product(tmp_path: Path, ed: Signer) -> None:
    key = tmp_path / "openssl.pem"
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", str(key)).returncode == 0
    verifier = Sm2Signer(NAME, key.read_bytes()).verifier  # the product reads openssl's key file
    pub = _pub_pem(tmp_path, key.read_bytes())
    der = _openssl("pkey", "-pubin", "-in", str(pub), "-outform", "DER").stdout
    assert der[-65:] == verifier.public_key
    for size in (0, 5, 99999):
        body = Checkpoint(NAME, size, hashlib.sha256(b"x%d" % size).digest()).to_bytes()
        (tmp_path / "body").write_bytes(body)
        made = _openssl(
            "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(key), "-in", str(tmp_path / "body"),
            "-pkeyopt", "distid:1234567812345678",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        line = f"\u2014 {NAME} {base64.b64encode(struct.pack('>I', verifier.key_hash) + made.stdout).decode()}\n"
        note = sign_note(body, [ed]) + line.encode()
        assert open_note(note, [verifier]).verified == (verifier,)
        assert open_note(note, [ed.verifier, verifier]).verified == (ed.verifier, verifier)
        assert not verifier.verify(body + b"x", made.stdout)


# --- receipts --------------------------------------------------------------------------------------------


def _receipt(signers: list[Signer | Sm2Signer]) -> tuple[dict[str, object], bytes]:
    received = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC)
    digest = hashlib.sha256(b"contract").digest()
    leaves = [Leaf(f"ev{i:022d}", digest if i == 1 else hashlib.sha256(b"%d" % i).digest(), received) for i in range(3)]
    tree = merkle.BatchTree.from_leaves(leaf.to_bytes() for leaf in leaves)
    entry = LedgerEntry(0, tree.size, tree.root, received).to_bytes()
    log = merkle.BatchTree([merkle.leaf_hash(entry)])
    note = sign_note(Checkpoint(NAME, 1, log.root).to_bytes(), signers)
    doc = build_receipt(
        leaf=leaves[1], batch_seq=0, batch_size=tree.size, leaf_index=1, batch_root=tree.root,
        batch_proof=tree.inclusion_proof(1), entry=entry, ledger_proof=log.inclusion_proof(0), checkpoint=note,
        keys=[s.verifier.vkey for s in signers],
    )  # fmt: skip
    return doc, digest


def test_receipt_with_both_signatures(ed: Signer, gm: Sm2Signer) -> None:
    doc, digest = _receipt([ed, gm])
    for trusted in ([ed.verifier], [gm.verifier], [ed.verifier, gm.verifier], [gm.verifier, ed.verifier]):
        result = verify_receipt(doc, sha256=digest, trusted_keys=trusted)
        assert result.valid, result.to_json()
    step6 = [c for c in verify_receipt(doc, trusted_keys=[gm.verifier]).checks if c.step == 6][0]
    assert "SM2 key" in step6.detail and gm.verifier.fingerprint_sm3 in step6.detail


def test_receipt_with_corrupted_sm2_line(ed: Signer, gm: Sm2Signer) -> None:
    doc, digest = _receipt([ed, gm])
    ledger = doc["ledger"]
    assert isinstance(ledger, dict)
    note = str(ledger["checkpoint"])
    last = note.rstrip("\n").rsplit("\n", 1)[1]
    b64 = last.rsplit(" ", 1)[1]
    raw = bytearray(base64.b64decode(b64))
    raw[20] ^= 0x40
    ledger["checkpoint"] = note.replace(b64, base64.b64encode(bytes(raw)).decode())
    assert verify_receipt(doc, sha256=digest, trusted_keys=[ed.verifier]).valid
    for trusted in ([gm.verifier], [ed.verifier, gm.verifier]):
        result = verify_receipt(doc, sha256=digest, trusted_keys=trusted)
        assert not result.valid and result.step == 6
        assert f"invalid signature for key {gm.verifier.key_id}" in (result.reason or "")


def test_receipt_signed_only_by_ed25519_fails_with_only_the_sm2_key(ed: Signer, gm: Sm2Signer) -> None:
    doc, digest = _receipt([ed])
    result = verify_receipt(doc, sha256=digest, trusted_keys=[gm.verifier])
    assert not result.valid and result.step == 6 and "no verifiable signatures" in (result.reason or "")
