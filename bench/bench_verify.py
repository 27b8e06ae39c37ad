"""Verify one receipt (file hashing excluded) against the single Ed25519 verification inside it.

Target (issue 2): reading and verifying a receipt costs at most 3x the one Ed25519 signature check it contains.
Both are measured in this run, interleaved, on the golden receipts of tests/vectors/receipts (made by an
independent implementation) and on a receipt from a 10,000-leaf batch in a ledger of 100,000 entries (longer
proofs).

    .venv/bin/python bench/bench_verify.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import statistics
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.core import merkle  # noqa: E402
from service.core.formats import Checkpoint, Leaf, LedgerEntry, parse_time  # noqa: E402
from service.core.note import Signer, Verifier, parse_vkeys, sign_note  # noqa: E402
from service.core.receipt import build_receipt, dump_json, load_json  # noqa: E402
from service.core.verify import verify_receipt  # noqa: E402

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "receipts"


def big_receipt() -> tuple[bytes, bytes, list[Verifier]]:
    """A receipt for leaf 4,321 of a 10,000-leaf batch that is entry 77,777 of a 100,000-entry ledger."""
    signer = Signer.generate("bench.example/log")
    received = parse_time("2026-11-29T00:00:00.000001Z")
    leaves = [Leaf(f"bench{i:017d}", hashlib.sha256(b"%d" % i).digest(), received) for i in range(10_000)]
    tree = merkle.BatchTree.from_leaves(leaf.to_bytes() for leaf in leaves)
    entry = LedgerEntry(77_777, tree.size, tree.root, parse_time("2026-11-29T00:00:01.000000Z")).to_bytes()
    entries = [hashlib.sha256(b"\x00e%d" % i).digest() for i in range(100_000)]
    entries[77_777] = merkle.leaf_hash(entry)
    log = merkle.BatchTree(entries)
    note = sign_note(Checkpoint(signer.name, log.size, log.root).to_bytes(), [signer])
    doc = build_receipt(
        leaf=leaves[4321],
        batch_seq=77_777,
        batch_size=tree.size,
        leaf_index=4321,
        batch_root=tree.root,
        batch_proof=tree.inclusion_proof(4321),
        entry=entry,
        ledger_proof=log.inclusion_proof(77_777),
        checkpoint=note,
        keys=[signer.verifier.vkey],
    )
    return dump_json(doc), leaves[4321].sha256, [signer.verifier]


def ed25519_check(note_text: str, vkey: Verifier) -> tuple[Ed25519PublicKey, bytes, bytes]:
    text, sigline = note_text.encode().rsplit(b"\n\n", 1)
    sig = base64.b64decode(sigline.split(b" ")[2])[4:]
    return Ed25519PublicKey.from_public_bytes(vkey.public_key), sig, text + b"\n"


def measure(name: str, raw: bytes, digest: bytes, keys: list[Verifier], rounds: int) -> float:
    doc = load_json(raw)
    assert verify_receipt(doc, sha256=digest, trusted_keys=keys).valid
    pub, sig, msg = ed25519_check(doc["ledger"]["checkpoint"], keys[0])
    pub.verify(sig, msg)
    t_sig, t_receipt = [], []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        t0 = clock()
        pub.verify(sig, msg)
        t1 = clock()
        verify_receipt(load_json(raw), sha256=digest, trusted_keys=keys)
        t2 = clock()
        t_sig.append(t1 - t0)
        t_receipt.append(t2 - t1)
    sig_us, rec_us = statistics.median(t_sig) / 1000, statistics.median(t_receipt) / 1000
    ratio = rec_us / sig_us
    verdict = "ok" if ratio <= 3 else "MISSED"
    print(
        f"{name:32} {len(raw):7,} B  Ed25519 {sig_us:7.1f} µs   receipt {rec_us:7.1f} µs   "
        f"{ratio:4.2f}x  (target <= 3x: {verdict})"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    contract = (GOLDEN / "contract.txt").read_bytes()
    digest = hashlib.sha256(contract).digest()
    keys = parse_vkeys((GOLDEN / "trusted.vkey").read_text())
    print("median of", args.rounds, "interleaved rounds; receipt = load_json + verify_receipt (steps 0-7)")
    for name in ("single", "batch5-index2-ledger3", "batch7-index6-ledger6"):
        measure(name, (GOLDEN / f"{name}.json").read_bytes(), digest, keys, args.rounds)
    raw, big_digest, big_keys = big_receipt()
    measure("batch 10^4 / ledger 10^5", raw, big_digest, big_keys, args.rounds)


if __name__ == "__main__":
    main()
