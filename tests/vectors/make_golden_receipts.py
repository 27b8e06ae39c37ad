"""Make the golden receipts in tests/vectors/receipts/ WITHOUT any of Evidence Ledger's own code.

An independent implementation of SPEC §1-§6: the Merkle trees come from pymerkle (RFC 6962 mode), the signature
from `cryptography`'s Ed25519 directly, the leaf, entry, checkpoint and note bytes are written out here by hand.
If our verifier accepts these receipts, receipts made by another correct implementation verify.

The signing seed is a published test value (like golang.org/x/mod's PeterNeumann key): it protects nothing.

    .venv/bin/python tests/vectors/make_golden_receipts.py     # rewrites tests/vectors/receipts/
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pymerkle import InmemoryTree

OUT = Path(__file__).parent / "receipts"
ORIGIN = "example.org/evidence-ledger-test"
SEED = hashlib.sha256(b"evidence-ledger golden receipts test key (public, protects nothing)").digest()
CONTRACT = b"CONTRACT OF SALE\nThe seller sells the buyer one (1) bicycle for 100 CNY.\n"


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def leaf_bytes(eid: str, digest: bytes, received: str) -> bytes:
    return f"evidence-ledger leaf v1\nid {eid}\nsha256 {digest.hex()}\nreceived {received}\n".encode()


def entry_bytes(seq: int, size: int, root: bytes, sealed: str) -> bytes:
    return f"evidence-ledger batch v1\nseq {seq}\nsize {size}\nroot {b64(root)}\nsealed {sealed}\n".encode()


def tree(items: list[bytes]) -> InmemoryTree:
    t = InmemoryTree(algorithm="sha256")  # RFC 6962 hashing: 0x00 leaf prefix, 0x01 node prefix
    for item in items:
        t.append_entry(item)
    return t


def inclusion(t: InmemoryTree, index: int, size: int) -> list[str]:
    # pymerkle counts leaves from 1 and starts its path with the leaf's own hash: RFC 9162 wants neither.
    path = t.prove_inclusion(index + 1, size).serialize()["path"]
    return [b64(bytes.fromhex(h)) for h in path[1:]]


def root(t: InmemoryTree, size: int) -> bytes:
    return bytes(t.get_root(size)) if size else hashlib.sha256(b"").digest()


def make() -> dict[str, object]:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_hash = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + pub).digest()[:4]
    vkey = f"{ORIGIN}+{key_hash.hex()}+" + b64(bytes([1]) + pub)

    def sign(text: bytes) -> str:
        sig = key.sign(text)
        return (text + b"\n" + f"\u2014 {ORIGIN} {b64(key_hash + sig)}\n".encode()).decode()

    digest = hashlib.sha256(CONTRACT).digest()
    cases: dict[str, object] = {}

    # Ledger of three batches. Batch 1 (5 leaves) holds our contract at index 2; the receipt proves entry 1
    # against the checkpoint of size 3 (a later checkpoint than the one signed at sealing: also valid).
    batch_leaves = [
        leaf_bytes(
            f"golden{i:02d}AAAAAAAAAAAAAAA",
            hashlib.sha256(b"other %d" % i).digest(),
            f"2026-11-28T16:13:3{i}.00000{i}Z",
        )
        for i in range(5)
    ]
    batch_leaves[2] = leaf_bytes("golden02AAAAAAAAAAAAAAA", digest, "2026-11-28T16:13:35.123456Z")
    bt = tree(batch_leaves)
    broot = root(bt, 5)
    entries = [
        entry_bytes(0, 1, hashlib.sha256(b"\x00batch0").digest(), "2026-11-28T16:13:30.000000Z"),
        entry_bytes(1, 5, broot, "2026-11-28T16:13:36.000000Z"),
        entry_bytes(2, 2, hashlib.sha256(b"\x00batch2").digest(), "2026-11-28T16:13:37.500000Z"),
    ]
    lt = tree(entries)
    checkpoint = f"{ORIGIN}\n3\n{b64(root(lt, 3))}\n".encode()
    cases["batch5-index2-ledger3"] = {
        "format": "evidence-receipt/v1",
        "evidence": {
            "id": "golden02AAAAAAAAAAAAAAA",
            "sha256": digest.hex(),
            "received_at": "2026-11-28T16:13:35.123456Z",
            "leaf": b64(batch_leaves[2]),
        },
        "batch": {"seq": 1, "size": 5, "index": 2, "root": b64(broot), "proof": inclusion(bt, 2, 5)},
        "ledger": {"entry": b64(entries[1]), "proof": inclusion(lt, 1, 3), "checkpoint": sign(checkpoint)},
        "timestamps": [],
        "keys": [vkey],
    }

    # A batch of one leaf in a ledger of one entry: both proofs are empty.
    one = leaf_bytes("golden-single_0123456789", digest, "2026-11-28T23:59:59.999999Z")
    ot = tree([one])
    e0 = entry_bytes(0, 1, root(ot, 1), "2026-11-29T00:00:00.000000Z")
    ct = tree([e0])
    cases["single"] = {
        "format": "evidence-receipt/v1",
        "evidence": {
            "id": "golden-single_0123456789",
            "sha256": digest.hex(),
            "received_at": "2026-11-28T23:59:59.999999Z",
            "leaf": b64(one),
        },
        "batch": {"seq": 0, "size": 1, "index": 0, "root": b64(root(ot, 1)), "proof": []},
        "ledger": {"entry": b64(e0), "proof": [], "checkpoint": sign(f"{ORIGIN}\n1\n{b64(root(ct, 1))}\n".encode())},
        "keys": [vkey],
        "x-unknown-field": "ignored by verifiers (SPEC §6)",
    }

    # The last leaf of a 7-leaf batch, the last entry of a 6-entry ledger (odd right edges).
    seven = [
        leaf_bytes(
            f"golden7-{i}-AAAAAAAAAAAAAAA", hashlib.sha256(b"seven %d" % i).digest(), "2026-11-28T10:00:00.000000Z"
        )
        for i in range(6)
    ]
    seven.append(leaf_bytes("golden7-6-AAAAAAAAAAAAAAA", digest, "2026-11-28T10:00:00.000001Z"))
    st = tree(seven)
    six = [entry_bytes(i, 1, hashlib.sha256(b"e%d" % i).digest(), f"2026-11-28T09:00:0{i}.000000Z") for i in range(5)]
    six.append(entry_bytes(5, 7, root(st, 7), "2026-11-28T10:00:01.000000Z"))
    sixt = tree(six)
    cases["batch7-index6-ledger6"] = {
        "format": "evidence-receipt/v1",
        "evidence": {
            "id": "golden7-6-AAAAAAAAAAAAAAA",
            "sha256": digest.hex(),
            "received_at": "2026-11-28T10:00:00.000001Z",
            "leaf": b64(seven[6]),
        },
        "batch": {"seq": 5, "size": 7, "index": 6, "root": b64(root(st, 7)), "proof": inclusion(st, 6, 7)},
        "ledger": {
            "entry": b64(six[5]),
            "proof": inclusion(sixt, 5, 6),
            "checkpoint": sign(f"{ORIGIN}\n6\n{b64(root(sixt, 6))}\n".encode()),
        },
        "timestamps": [],
    }
    return {"vkey": vkey, "cases": cases}


def main() -> None:
    made = make()
    OUT.mkdir(exist_ok=True)
    (OUT / "contract.txt").write_bytes(CONTRACT)
    (OUT / "trusted.vkey").write_text(f"# test key for the golden receipts\n{made['vkey']}\n")
    cases = made["cases"]
    assert isinstance(cases, dict)
    for name, doc in cases.items():
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {len(cases)} receipts to {OUT}")


if __name__ == "__main__":
    main()
