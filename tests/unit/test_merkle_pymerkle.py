"""Differential tests of service.core.merkle against pymerkle 7 (an independent implementation; test-only).

What pymerkle gives and how it maps to RFC 9162:
- roots: ``InmemoryTree.get_root(size)`` is RFC 9162's MTH (``get_state`` is deprecated in 7.0 and warns).
- inclusion: ``prove_inclusion(index + 1, size).path`` is ``[leaf hash] + RFC 9162 PATH`` (1-based index).
- consistency: pymerkle's consistency proofs are NOT RFC 9162 proofs and we do not compare them hash for
  hash. Where the old size ends exactly on the left child (RFC 9162 §2.1.4.1 ``m <= k``) pymerkle descends to
  the right and down to a single leaf, so its path differs in shape and usually in length (e.g. 5 hashes
  from 1 to 13 where RFC 9162 has 4), always starts with a base hash, and for ``old == new`` holds one hash
  where RFC 9162 has none. The RFC wins: we check pymerkle's own proofs against our roots and our range
  arithmetic (each of its path hashes is the MTH of a range our tree answers), and RFC proofs against the
  RFC 6962 vectors and the reference in test_merkle.py.
"""

from __future__ import annotations

import random

import pytest

from service.core.merkle import BatchTree, leaf_hash, verify_consistency, verify_inclusion

pymerkle = pytest.importorskip("pymerkle")
from pymerkle.core import _consistency_path_layout  # noqa: E402

RND = random.Random(6962)
SIZES = sorted(
    {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 32, 33, 100, 127, 128, 129, 257}
    | {RND.randrange(1, 600) for _ in range(12)}
)
LEAVES = [RND.randbytes(RND.randrange(0, 40)) for _ in range(max(SIZES))]
PYM = pymerkle.InmemoryTree.init_from_entries(LEAVES)
OURS = {n: BatchTree.from_leaves(LEAVES[:n]) for n in SIZES}


def range_hash(tree: BatchTree, start: int, end: int) -> bytes:
    """MTH of [start, end) for ranges that are nodes of ``tree`` (aligned, perfect or the tail)."""
    level = (end - start - 1).bit_length()
    assert start % (1 << level) == 0 and (end - start == 1 << level or end == tree.size)
    return tree.node(level, start >> level)


@pytest.mark.parametrize("n", SIZES)
def test_roots_agree_with_pymerkle(n: int) -> None:
    assert PYM.get_root(n) == OURS[n].root


@pytest.mark.parametrize("n", SIZES)
def test_inclusion_proofs_agree_with_pymerkle(n: int) -> None:
    tree = OURS[n]
    for i in sorted({0, n - 1, n // 2} | {RND.randrange(n) for _ in range(20)}):
        proof = PYM.prove_inclusion(i + 1, n)
        assert proof.path[0] == leaf_hash(LEAVES[i])
        assert proof.path[1:] == tree.inclusion_proof(i)
        assert proof.serialize()["metadata"] == {"algorithm": "sha256", "security": True, "size": n, "index": i + 1}
        verify_inclusion(proof.path[0], i, n, proof.path[1:], tree.root)
        proof.verify(tree.leaf_hash(i), tree.root, index=i + 1, size=n)  # pymerkle accepts our root


@pytest.mark.parametrize("n", SIZES)
def test_consistency_proofs_agree_with_pymerkle_on_roots_and_ranges(n: int) -> None:
    tree = OURS[n]
    for m in sorted({1, n, max(1, n // 2)} | {RND.randrange(1, n + 1) for _ in range(10)}):
        old_root = PYM.get_root(m)
        proof = PYM.prove_consistency(m, n)
        # pymerkle's proof verifies against our roots, by pymerkle's own rules
        proof.verify(old_root, tree.root, prior_size=m, later_size=n)
        assert old_root == BatchTree.from_leaves(LEAVES[:m]).root
        # every hash of its path is the MTH of a range our tree answers
        _, _, ranges = _consistency_path_layout(m, n)
        assert proof.path == [range_hash(tree, s, e) for s, e in ranges]
        # and our RFC 9162 proof verifies against pymerkle's roots
        verify_consistency(m, n, old_root, PYM.get_root(n), tree.consistency_proof(m))


def test_pymerkle_consistency_proofs_are_not_rfc9162_proofs() -> None:
    """The disagreement written down in the module docstring, pinned so a pymerkle change shows up."""
    tree = BatchTree.from_leaves(LEAVES[:13])
    assert len(PYM.prove_consistency(1, 13).path) == 5
    assert len(tree.consistency_proof(1)) == 4
    assert len(PYM.prove_consistency(13, 13).path) == 1
    assert tree.consistency_proof(13) == []
