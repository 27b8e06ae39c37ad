"""C2SP tlog-proof export: exact text, round trip, strict parsing, and a verifier written from the spec alone.

The independent verifier below follows https://c2sp.org/tlog-proof, RFC 6962 §2.1.1 and C2SP signed-note with
only ``hashlib``, ``base64`` and ``cryptography``'s Ed25519: it shares no code with ``service``.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.core import merkle
from service.core.errors import FormatError, NoteError, ProofError
from service.core.formats import Checkpoint, LedgerEntry
from service.core.note import Signer, sign_note
from service.core.receipt import b64
from service.trust.tlog_proof import HEADER, TlogProof, from_receipt, verify

ORIGIN = "example.org/evidence-ledger"


def make_log(n: int) -> tuple[Signer, list[bytes], merkle.BatchTree]:
    signer = Signer.generate(ORIGIN)
    sealed = datetime(2026, 11, 28, 16, 13, 35, 123456, tzinfo=UTC)
    entries = [LedgerEntry(i, i + 1, hashlib.sha256(bytes([i])).digest(), sealed).to_bytes() for i in range(n)]
    return signer, entries, merkle.BatchTree([merkle.leaf_hash(e) for e in entries])


def proof_for(signer: Signer, entries: list[bytes], tree: merkle.BatchTree, index: int) -> TlogProof:
    note = sign_note(Checkpoint(ORIGIN, tree.size, tree.root).to_bytes(), [signer])
    return TlogProof(index, tuple(tree.inclusion_proof(index)), note, entries[index])


# --- an independent verifier, from the spec texts ------------------------------------------------


def spec_verify(text: bytes, vkey: str) -> tuple[int, bytes]:
    """Return (index, extra) if ``text`` is a valid tlog-proof signed by ``vkey``; raise AssertionError if not."""
    s = text.decode("utf-8")
    head, _, note = s.partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    extra = b""
    i = 1
    if lines[i].startswith("extra "):
        extra = base64.b64decode(lines[i][6:], validate=True)
        i += 1
    assert lines[i].startswith("index ")
    index = int(lines[i][6:])
    assert str(index) == lines[i][6:]
    path = [base64.b64decode(x, validate=True) for x in lines[i + 1 :]]
    # checkpoint: text, blank line, signature lines
    body, _, sigs = note.rpartition("\n\n")
    origin, size_s, root_b64 = body.split("\n")[:3]
    size, root = int(size_s), base64.b64decode(root_b64)
    # vkey: name+hash+base64(0x01||pub); signature line: "— name base64(keyid||sig)"
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    assert name == origin
    public = base64.b64decode(key_b64)[1:]
    ok = False
    for line in sigs.rstrip("\n").split("\n"):
        dash, sig_name, sig_b64 = line.split(" ")
        raw = base64.b64decode(sig_b64)
        if dash == "\u2014" and sig_name == name and raw[:4].hex() == key_id_hex:
            Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], (body + "\n").encode())
            ok = True
    assert ok, "no signature from the trusted key"
    # RFC 9162 §2.1.3.2 with the record hash = SHA-256(0x00 || entry bytes)
    r = hashlib.sha256(b"\x00" + extra).digest()
    fn, sn = index, size - 1
    for p in path:
        assert sn != 0
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0 and r == root, "inclusion proof does not reach the checkpoint root"
    return index, extra


@pytest.mark.parametrize("n", [1, 2, 7, 16, 21])
def test_every_entry_proof_verifies_with_the_spec_verifier_and_ours(n: int) -> None:
    signer, entries, tree = make_log(n)
    for index in range(n):
        proof = proof_for(signer, entries, tree, index)
        text = proof.to_bytes()
        assert spec_verify(text, signer.verifier.vkey) == (index, entries[index])
        parsed = TlogProof.from_bytes(text)
        assert parsed == proof
        assert parsed.to_bytes() == text
        checkpoint = verify(parsed, [signer.verifier])
        assert (checkpoint.size, checkpoint.root) == (n, tree.root)


def test_exact_text_layout() -> None:
    signer, entries, tree = make_log(3)
    proof = proof_for(signer, entries, tree, 2)
    lines = proof.to_bytes().decode().split("\n")
    assert lines[0] == HEADER
    assert lines[1] == "extra " + b64(entries[2])
    assert lines[2] == "index 2"
    assert lines[3] == b64(tree.inclusion_proof(2)[0])
    assert lines[4] == ""  # then the checkpoint verbatim
    assert "\n".join(lines[5:]).encode() == proof.checkpoint
    without_extra = TlogProof(0, (), proof.checkpoint, None).to_bytes().decode()
    assert without_extra.startswith(f"{HEADER}\nindex 0\n\n{ORIGIN}\n")
    assert TlogProof.from_bytes(without_extra.encode()).extra is None


def test_from_receipt_takes_the_ledger_part() -> None:
    signer, entries, tree = make_log(5)
    note = sign_note(Checkpoint(ORIGIN, 5, tree.root).to_bytes(), [signer])
    document = {
        "format": "evidence-receipt/v1",
        "batch": {"seq": 3},
        "ledger": {
            "entry": b64(entries[3]),
            "proof": [b64(h) for h in tree.inclusion_proof(3)],
            "checkpoint": note.decode(),
        },
    }
    proof = from_receipt(document)
    assert spec_verify(proof.to_bytes(), signer.verifier.vkey) == (3, entries[3])
    with pytest.raises(FormatError):
        from_receipt({"batch": {"seq": 3}})
    with pytest.raises(FormatError):
        from_receipt({**document, "batch": {"seq": -1}})


def test_verify_rejects_a_wrong_record_a_wrong_index_and_an_untrusted_key() -> None:
    signer, entries, tree = make_log(6)
    proof = proof_for(signer, entries, tree, 4)
    with pytest.raises(ProofError):
        verify(proof, [signer.verifier], record=entries[3])
    with pytest.raises(ProofError):
        verify(TlogProof(3, proof.hashes, proof.checkpoint, proof.extra), [signer.verifier])
    with pytest.raises(NoteError):
        verify(proof, [Signer.generate(ORIGIN).verifier])
    with pytest.raises(ProofError, match="no record"):
        verify(TlogProof(4, proof.hashes, proof.checkpoint, None), [signer.verifier])


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b"c2sp.org/tlog-proof@v2\nindex 0\n\nx\n", "first line"),
        (b"c2sp.org/tlog-proof@v1\nindex 01\n\nx\n", "no leading zeros"),
        (b"c2sp.org/tlog-proof@v1\nindex 0\n", "no empty line"),
        (b"c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\nx\n", "extra data"),
        (b"c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\nx\n", "expected a SHA-256 hash"),
        (b"c2sp.org/tlog-proof@v1\nindex 0\n\n", "checkpoint is missing"),
        (b"\xff", "UTF-8"),
    ],
)
def test_parse_failures_say_what_is_wrong(text: bytes, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        TlogProof.from_bytes(text)
