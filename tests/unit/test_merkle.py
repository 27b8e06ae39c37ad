"""Tests of service.core.merkle: RFC 6962/9162 known answers, exhaustive and property tests, every single mutation.

The reference is tests/vectors/rfc6962.json (values copied from transparency-dev/merkle) and, for sizes the
vectors do not cover, the independent recursive implementation of the RFC text in
tests/vectors/check_rfc6962.py (hashlib only, written from the RFC, not from service.core.merkle).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.errors import ProofError
from service.core.merkle import (
    EMPTY_ROOT,
    BatchTree,
    append_nodes,
    audit_paths,
    audit_paths_match,
    batch_tiles,
    consistency_ranges,
    hash_range,
    inclusion_proof_from_tiles,
    inclusion_ranges,
    leaf_hash,
    leaf_hashes,
    log_consistency_proof,
    log_inclusion_proof,
    node_hash,
    nodes_needed_for_ranges,
    perfect_subtrees,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    split_tile,
    tile_path,
    tree_levels,
    verify_consistency,
    verify_inclusion,
)

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"
VECTORS = json.loads((VECTORS_DIR / "rfc6962.json").read_text(encoding="utf-8"))
hx = bytes.fromhex


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_rfc6962", VECTORS_DIR / "check_rfc6962.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = _load_reference()
LEAVES = [hx(x) for x in VECTORS["leaves_hex"]]

# Leaves for the larger trees: deterministic, distinct.
BIG = 320
BIG_LEAVES = [i.to_bytes(4, "big") + b"leaf" for i in range(BIG)]
BIG_HASHES = [leaf_hash(x) for x in BIG_LEAVES]
BIG_TREES = {n: BatchTree(BIG_HASHES[:n]) for n in range(0, BIG + 1)}


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def raises_proof_error(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except ProofError:
        return True
    return False


# --- known answers (RFC 6962 test vectors) --------------------------------------------------------


def test_leaf_and_node_hashes_match_vectors() -> None:
    for i, want in enumerate(VECTORS["leaf_hashes_hex"]):
        assert leaf_hash(LEAVES[i]).hex() == want
    tree = BatchTree.from_leaves(LEAVES)
    for level, row in enumerate(VECTORS["node_hashes_hex_by_level"]["levels"]):
        for idx, want in enumerate(row):
            assert tree.node(level, idx).hex() == want


def test_hasher_vectors() -> None:
    for v in VECTORS["hasher_vectors"]:
        if v["kind"] == "empty_root":
            got = EMPTY_ROOT
        elif v["kind"] == "leaf":
            got = leaf_hash(hx(v["input_hex"]))
        else:
            got = node_hash(hx(v["left_hex"]), hx(v["right_hex"]))
        assert got.hex() == v["want_hex"], v["desc"]


def test_roots_match_vectors() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["empty_tree_root_hex"]
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert BatchTree([]).root == EMPTY_ROOT
    for n_str, want in VECTORS["roots_hex"].items():
        n = int(n_str)
        hashes = [leaf_hash(x) for x in LEAVES[:n]]
        assert root_from_leaf_hashes(hashes).hex() == want
        assert BatchTree(hashes).root.hex() == want
        assert BatchTree.from_leaves(LEAVES[:n]).root.hex() == want


def test_inclusion_proofs_match_vectors() -> None:
    for v in VECTORS["inclusion_proofs"]:
        i, n = v["leaf_index"], v["tree_size"]
        proof = [hx(p) for p in v["proof_hex"]]
        tree = BatchTree.from_leaves(LEAVES[:n])
        assert tree.inclusion_proof(i) == proof
        verify_inclusion(hx(v["leaf_hash_hex"]), i, n, proof, hx(v["root_hex"]))


def test_consistency_proofs_match_vectors() -> None:
    for v in VECTORS["consistency_proofs"]:
        m, n = v["size1"], v["size2"]
        proof = [hx(p) for p in v["proof_hex"]]
        assert BatchTree.from_leaves(LEAVES[:n]).consistency_proof(m) == proof
        verify_consistency(m, n, hx(v["root1_hex"]), hx(v["root2_hex"]), proof)


@pytest.mark.parametrize("probe", VECTORS["probes"]["inclusion"], ids=lambda p: p["file"])
def test_inclusion_golden_probe(probe: dict[str, Any]) -> None:
    def run() -> None:
        verify_inclusion(
            hx(probe["leaf_hash_hex"]),
            probe["leaf_index"],
            probe["tree_size"],
            [hx(x) for x in probe["proof_hex"]],
            hx(probe["root_hex"]),
        )

    assert raises_proof_error(run) == probe["want_error"]


@pytest.mark.parametrize("probe", VECTORS["probes"]["consistency"], ids=lambda p: p["file"])
def test_consistency_golden_probe(probe: dict[str, Any]) -> None:
    def run() -> None:
        verify_consistency(
            probe["size1"],
            probe["size2"],
            hx(probe["root1_hex"]),
            hx(probe["root2_hex"]),
            [hx(x) for x in probe["proof_hex"]],
        )

    assert raises_proof_error(run) == probe["want_error"]


# --- exhaustive small sizes against the independent reference ----------------------------------


def test_batch_tree_equals_reference_for_every_small_size() -> None:
    for n in range(0, 70):
        tree = BIG_TREES[n]
        assert tree.size == n
        assert tree.root == REF.mth(BIG_LEAVES[:n])
        assert root_from_leaf_hashes(BIG_HASHES[:n]) == tree.root
        for i in range(n):
            assert tree.inclusion_proof(i) == REF.path(i, BIG_LEAVES[:n])
        for m in range(1, n):
            assert tree.consistency_proof(m) == REF.consistency_proof(m, BIG_LEAVES[:n])


def test_every_proof_verifies_up_to_size_128() -> None:
    # larger sizes up to 320: the hypothesis mutation tests below verify their happy path first
    for n in range(1, 129):
        tree = BIG_TREES[n]
        for i in range(n):
            verify_inclusion(BIG_HASHES[i], i, n, tree.inclusion_proof(i), tree.root)
        for m in range(1, n + 1):
            verify_consistency(m, n, BIG_TREES[m].root, tree.root, tree.consistency_proof(m))


def test_from_leaves_equals_build_from_leaf_hashes() -> None:
    for n in (1, 2, 3, 31, 32, 33, 255, 320):
        assert BatchTree.from_leaves(BIG_LEAVES[:n]).root == BIG_TREES[n].root


@pytest.mark.parametrize("n", [4095, 4096, 4097, 2 * 4096 + 1, 3 * 4096 + 77])
def test_from_leaves_across_build_blocks(n: int) -> None:
    """Trees are built in aligned blocks of 4096 leaves: sizes around and across block ends give the RFC's
    root, its audit paths, and every node of the whole-level construction."""
    leaves = [i.to_bytes(4, "big") + b"block" for i in range(n)]
    tree = BatchTree.from_leaves(leaves)
    assert tree.root == REF.mth(leaves)
    for index in sorted({0, 4094, min(4096, n - 1), n // 2, n - 2, n - 1}):
        assert tree.inclusion_proof(index) == REF.path(index, leaves)
    levels = tree_levels([leaf_hash(x) for x in leaves])
    assert tree.depth == len(levels) - 1
    for level, nodes in enumerate(levels):
        assert [tree.node(level, j) for j in range(len(nodes))] == nodes


# --- every single mutation fails ---------------------------------------------------------------


InclusionArgs = tuple[bytes, int, int, list[bytes], bytes]
ConsistencyArgs = tuple[int, int, bytes, bytes, list[bytes]]


def inclusion_mutations(
    lh: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[str, InclusionArgs, bool]]:
    """(name, arguments, must_fail). A changed index or size keeps the very same hashes valid whenever the
    proof has the same shape (RFC 9162: an inclusion proof alone does not pin the tree size, hence SPEC §6
    step 4): those must agree with the independent reference instead of always failing."""
    muts: list[tuple[str, InclusionArgs, bool]] = []
    for k, p in enumerate(proof):
        for bit in (0, 7, 100, 255):
            muts.append(
                (f"flip bit {bit} of proof[{k}]", (lh, index, size, _replace(proof, k, flip(p, bit)), root), True)
            )
    muts.append(("flip leaf hash bit", (flip(lh, 3), index, size, proof, root), True))
    muts.append(("wrong root", (lh, index, size, proof, flip(root, 200)), True))
    muts.append(("added hash", (lh, index, size, [*proof, root], root), True))
    muts.append(("prepended hash", (lh, index, size, [root, *proof], root), True))
    if proof:
        muts.append(("dropped last hash", (lh, index, size, proof[:-1], root), True))
        muts.append(("dropped first hash", (lh, index, size, proof[1:], root), True))
    for k in range(len(proof) - 1):
        if proof[k] != proof[k + 1]:
            swapped = proof[:k] + [proof[k + 1], proof[k]] + proof[k + 2 :]
            muts.append((f"swapped {k},{k + 1}", (lh, index, size, swapped, root), True))
    muts.append(("index + 1", (lh, index + 1, size, proof, root), False))
    muts.append(("index - 1", (lh, index - 1, size, proof, root), index == 0))
    muts.append(("size + 1", (lh, index, size + 1, proof, root), False))
    muts.append(("size - 1", (lh, index, size - 1, proof, root), False))
    muts.append(("size * 2", (lh, index, size * 2, proof, root), False))
    return muts


def consistency_mutations(
    m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]
) -> list[tuple[str, ConsistencyArgs, bool]]:
    """(name, arguments, must_fail); size changes must agree with the reference (see inclusion_mutations):
    e.g. PROOF(1, D_4) verifies as a proof from 1 to 3 against the same roots."""
    muts: list[tuple[str, ConsistencyArgs, bool]] = []
    for k, p in enumerate(proof):
        for bit in (0, 7, 100, 255):
            muts.append((f"flip bit {bit} of proof[{k}]", (m, n, r1, r2, _replace(proof, k, flip(p, bit))), True))
    muts.append(("wrong old root", (m, n, flip(r1, 1), r2, proof), True))
    muts.append(("wrong new root", (m, n, r1, flip(r2, 1), proof), True))
    if r1 != r2:
        muts.append(("swapped roots", (m, n, r2, r1, proof), True))
    muts.append(("added hash", (m, n, r1, r2, [*proof, r2]), True))
    muts.append(("prepended hash", (m, n, r1, r2, [r1, *proof]), True))
    if proof:
        muts.append(("dropped last hash", (m, n, r1, r2, proof[:-1]), True))
        muts.append(("dropped first hash", (m, n, r1, r2, proof[1:]), True))
    for k in range(len(proof) - 1):
        if proof[k] != proof[k + 1]:
            swapped = proof[:k] + [proof[k + 1], proof[k]] + proof[k + 2 :]
            muts.append((f"swapped {k},{k + 1}", (m, n, r1, r2, swapped), True))
    muts.append(("old + 1", (m + 1, n, r1, r2, proof), False))
    muts.append(("old - 1", (m - 1, n, r1, r2, proof), False))
    muts.append(("new + 1", (m, n + 1, r1, r2, proof), False))
    muts.append(("new - 1", (m, n - 1, r1, r2, proof), False))
    muts.append(("new * 2", (m, n * 2, r1, r2, proof), False))
    return muts


def _replace(proof: list[bytes], k: int, h: bytes) -> list[bytes]:
    return proof[:k] + [h] + proof[k + 1 :]


def assert_inclusion_mutations_fail(index: int, size: int) -> None:
    tree = BIG_TREES[size]
    proof = tree.inclusion_proof(index)
    verify_inclusion(BIG_HASHES[index], index, size, proof, tree.root)
    for name, a, must_fail in inclusion_mutations(BIG_HASHES[index], index, size, proof, tree.root):
        rejected = raises_proof_error(lambda a=a: verify_inclusion(*a))  # type: ignore[misc]
        if must_fail:
            assert rejected, f"inclusion ({index}, {size}) accepted mutation: {name}"
        else:
            lh, i, n, pr, root = a
            assert rejected == (not REF.verify_inclusion(i, n, lh, pr, root)), f"({index}, {size}) {name}"


def assert_consistency_mutations_fail(m: int, n: int) -> None:
    proof = BIG_TREES[n].consistency_proof(m)
    r1, r2 = BIG_TREES[m].root, BIG_TREES[n].root
    verify_consistency(m, n, r1, r2, proof)
    for name, a, must_fail in consistency_mutations(m, n, r1, r2, proof):
        rejected = raises_proof_error(lambda a=a: verify_consistency(*a))  # type: ignore[misc]
        if must_fail:
            assert rejected, f"consistency ({m}, {n}) accepted mutation: {name}"
        else:
            assert rejected == (not REF.verify_consistency(*a)), f"consistency ({m}, {n}) {name}"


def test_inclusion_proof_alone_does_not_pin_the_size() -> None:
    # Why SPEC §6 step 4 checks the batch size: PATH(0, D_3) has the shape of PATH(0, D_4).
    proof = BIG_TREES[3].inclusion_proof(0)
    verify_inclusion(BIG_HASHES[0], 0, 4, proof, BIG_TREES[3].root)
    # and a consistency proof from 1 to 3 also verifies from 1 to 4 against the same roots
    verify_consistency(1, 4, BIG_TREES[1].root, BIG_TREES[3].root, BIG_TREES[3].consistency_proof(1))


def test_every_inclusion_mutation_fails_for_small_trees() -> None:
    for n in range(1, 34):
        for i in range(n):
            assert_inclusion_mutations_fail(i, n)


def test_every_consistency_mutation_fails_for_small_trees() -> None:
    for n in range(1, 34):
        for m in range(1, n + 1):
            assert_consistency_mutations_fail(m, n)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, BIG).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_inclusion_mutations_fail(index_size: tuple[int, int]) -> None:
    assert_inclusion_mutations_fail(*index_size)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, BIG).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_mutations_fail(m_n: tuple[int, int]) -> None:
    assert_consistency_mutations_fail(*m_n)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 1 << 62).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))))
def test_huge_tree_proofs_of_wrong_length_are_rejected_without_hashing(index_size: tuple[int, int]) -> None:
    index, size = index_size
    needed = len(inclusion_ranges(index, size))
    root = leaf_hash(b"root")
    for length in {0, needed - 1, needed + 1} - {needed, -1}:
        with pytest.raises(ProofError, match=f"proof has {length} hashes"):
            verify_inclusion(leaf_hash(b"x"), index, size, [root] * length, root)
    # The right length but arbitrary hashes: a root mismatch, never a crash.
    with pytest.raises(ProofError, match="computed root"):
        verify_inclusion(leaf_hash(b"x"), index, size, [root] * needed, root)


# --- hostile input: only ProofError, ever -------------------------------------------------------

hostile_ints = st.one_of(st.integers(-(1 << 70), 1 << 70), st.none(), st.booleans(), st.floats(), st.text(max_size=3))
hostile_hashes = st.one_of(st.binary(max_size=40), st.none(), st.integers(), st.text(max_size=40))
hostile_proofs = st.one_of(st.lists(hostile_hashes, max_size=6), st.none(), st.binary(max_size=64), st.integers())


@settings(max_examples=250, deadline=None)
@given(hostile_hashes, hostile_ints, hostile_ints, hostile_proofs, hostile_hashes)
def test_verify_inclusion_raises_only_proof_error(lh: Any, index: Any, size: Any, proof: Any, root: Any) -> None:
    try:
        verify_inclusion(lh, index, size, proof, root)
    except ProofError:
        pass


@settings(max_examples=250, deadline=None)
@given(hostile_ints, hostile_ints, hostile_hashes, hostile_hashes, hostile_proofs)
def test_verify_consistency_raises_only_proof_error(m: Any, n: Any, r1: Any, r2: Any, proof: Any) -> None:
    try:
        verify_consistency(m, n, r1, r2, proof)
    except ProofError:
        pass


def test_verify_rejects_short_hashes_that_would_otherwise_match() -> None:
    # tree of one leaf: root == leaf hash, so equal garbage would "verify" without the length check
    with pytest.raises(ProofError, match="has 0 bytes, expected 32"):
        verify_inclusion(b"", 0, 1, [], b"")
    with pytest.raises(ProofError, match="leaf hash has 0 bytes, expected 32"):
        verify_inclusion(b"", 0, 1, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="old root has 3 bytes"):
        verify_consistency(1, 2, b"abc", b"abc", [BIG_HASHES[1]])


# --- error wording ------------------------------------------------------------------------------


def test_error_messages_say_expected_and_found() -> None:
    t5, t9 = BIG_TREES[5], BIG_TREES[9]
    with pytest.raises(ProofError, match="^index 7 is not below tree size 5$"):
        t5.inclusion_proof(7)
    with pytest.raises(ProofError, match="^index 7 is not below tree size 5$"):
        verify_inclusion(BIG_HASHES[0], 7, 5, [], t5.root)
    with pytest.raises(ProofError, match="^proof has 3 hashes, a tree of 9 needs 4 for index 2$"):
        verify_inclusion(BIG_HASHES[2], 2, 9, t9.inclusion_proof(2)[:3], t9.root)
    with pytest.raises(ProofError, match="^computed root .*, expected root "):
        verify_inclusion(BIG_HASHES[3], 2, 9, t9.inclusion_proof(2), t9.root)
    with pytest.raises(ProofError, match="old size 6 is larger than new size 5"):
        t5.consistency_proof(6)
    with pytest.raises(ProofError, match="old size 0 is not positive"):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="^computed new root"):
        verify_consistency(3, 9, BIG_TREES[3].root, t5.root, t9.consistency_proof(3))
    assert root_from_inclusion_proof(BIG_HASHES[2], 2, 9, t9.inclusion_proof(2)) == t9.root


def test_bad_leaf_hash_length_is_rejected_when_building() -> None:
    with pytest.raises(ProofError, match="leaf hash 1 has 31 bytes, expected 32"):
        BatchTree([BIG_HASHES[0], BIG_HASHES[1][:31]])
    with pytest.raises(ProofError, match="leaf hash 0 has 33 bytes"):
        root_from_leaf_hashes([BIG_HASHES[0] + b"x"])


# --- the log kept as perfect subtrees ----------------------------------------------------------


def build_log(n: int) -> dict[tuple[int, int], bytes]:
    """Append n leaves one at a time with append_nodes, keeping only what the frontier hands out."""
    stored: dict[tuple[int, int], bytes] = {}
    for size in range(n):
        frontier = {node: stored[node] for node in perfect_subtrees(0, size)}
        for node, h in append_nodes(size, BIG_HASHES[size], frontier):
            assert node not in stored
            stored[node] = h
    return stored


LOG = build_log(BIG)


def test_append_nodes_builds_exactly_the_perfect_subtrees_of_the_batch_tree() -> None:
    tree = BIG_TREES[BIG]
    expected = {}
    level = 0
    while (1 << level) <= BIG:
        for idx in range(BIG >> level):
            expected[(level, idx)] = tree.node(level, idx)
        level += 1
    assert LOG == expected


def test_append_nodes_order_and_missing_frontier() -> None:
    frontier = {node: LOG[node] for node in perfect_subtrees(0, 7)}
    got = append_nodes(7, BIG_HASHES[7], frontier)
    assert [node for node, _ in got] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    with pytest.raises(ProofError, match=r"frontier node \(1, 2\) of a log of 7 leaves is missing"):
        append_nodes(7, BIG_HASHES[7], {(0, 6): LOG[(0, 6)]})


def test_perfect_subtrees_cover_ranges() -> None:
    assert perfect_subtrees(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert perfect_subtrees(5, 16) == [(0, 5), (1, 3), (3, 1)]
    assert perfect_subtrees(4, 4) == []
    rnd = random.Random(9162)
    for _ in range(500):
        start = rnd.randrange(0, 1000)
        end = rnd.randrange(start, 1100)
        covered = []
        for level, idx in perfect_subtrees(start, end):
            covered.extend(range(idx << level, (idx + 1) << level))
        assert covered == list(range(start, end))


def test_log_proofs_equal_batch_tree_proofs_from_only_the_needed_nodes() -> None:
    for n in range(1, BIG + 1, 7):
        tree = BIG_TREES[n]
        assert hash_range(0, n, {k: LOG[k] for k in nodes_needed_for_ranges([(0, n)])}) == tree.root
        for i in range(0, n, 3):
            ranges = inclusion_ranges(i, n)
            fetched = {k: LOG[k] for k in nodes_needed_for_ranges(ranges)}
            assert log_inclusion_proof(i, n, fetched) == tree.inclusion_proof(i)
        for m in range(1, n + 1, 5):
            ranges = consistency_ranges(m, n)
            fetched = {k: LOG[k] for k in nodes_needed_for_ranges(ranges)}
            assert log_consistency_proof(m, n, fetched) == tree.consistency_proof(m)


def test_hash_range_rejects_unaligned_range_and_missing_node() -> None:
    assert hash_range(0, 0, {}) == EMPTY_ROOT
    with pytest.raises(ProofError, match="does not start at a multiple of 4"):
        hash_range(1, 4, LOG)
    with pytest.raises(ProofError, match=r"node \(3, 0\) needed for range \[0, 9\) is missing"):
        hash_range(0, 9, {(0, 8): LOG[(0, 8)]})


def test_batch_tree_keeps_levels_compact() -> None:
    n = 100_000
    hashes = [os.urandom(32) for _ in range(n)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tree = BatchTree(hashes)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 2n nodes of 32 bytes; a list of bytes objects would take more than 2n * 73 bytes.
    assert retained < 2 * n * 32 + 4096, f"{retained / n:.1f} bytes retained per leaf"
    assert tree.depth == 17
    for level in range(tree.depth + 1):
        width = -(-n // (1 << level))
        assert len(tree.node(level, width - 1)) == 32
        with pytest.raises(ProofError, match=f"node \\({level}, {width}\\) is not in a tree of {n} leaves"):
            tree.node(level, width)


# --- the bulk helpers of ``evidence audit`` agree with the tree and its proofs -------------------------------


def test_leaf_hashes_equal_leaf_hash() -> None:
    assert leaf_hashes(BIG_LEAVES[:50]) == BIG_HASHES[:50]
    assert leaf_hashes([]) == []


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 100, 257])
def test_tree_levels_and_audit_paths_equal_batch_tree(n: int) -> None:
    hashes = BIG_HASHES[:n]
    tree = BatchTree(hashes)
    levels = tree_levels(hashes)
    assert levels[-1] == [tree.root] and len(levels) == tree.depth + 1
    assert all(levels[lv][j] == tree.node(lv, j) for lv in range(len(levels)) for j in range(len(levels[lv])))
    proofs = [b"".join(tree.inclusion_proof(i)) for i in range(n)]
    assert audit_paths(levels) == proofs
    assert audit_paths_match(levels, proofs)
    if n > 2:  # the same bytes, one hash moved from a proof to the next: the concatenation alone is equal
        moved = [proofs[0][:-32], proofs[0][-32:] + proofs[1], *proofs[2:]]
        assert b"".join(moved) == b"".join(proofs) and not audit_paths_match(levels, moved)
    flipped = [*proofs[:-1], proofs[-1][:-1] + bytes([proofs[-1][-1] ^ 1])] if proofs[-1] else None
    if flipped is not None:
        assert not audit_paths_match(levels, flipped)
    assert not audit_paths_match(levels, [*proofs[:-1], proofs[-1] + b"x" * 32])


# --- batch trees kept as tiles (issue 15) ------------------------------------------------------------------


def _random_hashes(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(32) for _ in range(n)]


@pytest.mark.parametrize("n", [*range(1, 600), 1023, 1024, 1025, 65_535, 65_536, 65_537, 70_000, 196_613])
def test_proofs_from_tiles_equal_batch_tree_proofs(n: int) -> None:
    """Every size 1..599 and both sides of the tile edges of levels 8 and 16: the proof computed from the tiles
    a leaf needs is the batch tree's own, for every leaf of small trees and a sample of large ones."""
    hashes = _random_hashes(n, n)
    tree = BatchTree(hashes)
    tiles = {(k, t): data for k, t, data in tree.tiles()}
    assert tiles == {(k, t): data for k, t, data in batch_tiles(tree_levels(hashes))}
    assert b"".join(tiles[(0, t)] for t in range(-(-n // 256))) == b"".join(hashes)  # level 0: the leaf hashes
    assert all(len(data) in range(32, 256 * 32 + 1, 32) for data in tiles.values())
    indexes = (
        range(n) if n < 2000 else [0, 255, 256, n // 2, n - 257, n - 256, n - 1, *random.Random(n).sample(range(n), 50)]
    )
    for i in indexes:
        needed = {(k, t) for k, t, _, _ in tile_path(i, n)}
        assert needed <= set(tiles)
        assert inclusion_proof_from_tiles(i, n, {key: tiles[key] for key in needed}) == tree.inclusion_proof(i), i


def test_tiles_of_edge_trees_and_bad_input() -> None:
    assert batch_tiles(tree_levels([])) == []
    one = _random_hashes(1, 1)
    assert BatchTree(one).tiles() == [(0, 0, one[0])]
    assert inclusion_proof_from_tiles(0, 1, {(0, 0): one[0]}) == []
    # 257 leaves: two tiles of leaf hashes, one of 2 nodes at level 8 (the root is not a tile)
    assert [(k, t, len(d)) for k, t, d in BatchTree(_random_hashes(257, 2)).tiles()] == [
        (0, 0, 8192),
        (0, 1, 32),
        (1, 0, 64),
    ]
    assert tile_path(300, 70_000) == [(0, 1, 256, 44), (1, 0, 256, 1), (2, 0, 2, 0)]
    tiles = {(k, t): d for k, t, d in BatchTree(_random_hashes(300, 3)).tiles()}
    assert raises_proof_error(lambda: inclusion_proof_from_tiles(300, 300, tiles))
    assert raises_proof_error(lambda: inclusion_proof_from_tiles(5, 300, {(0, 0): tiles[(0, 0)]}))
    assert raises_proof_error(lambda: inclusion_proof_from_tiles(5, 300, {**tiles, (1, 0): tiles[(1, 0)][:32]}))
    assert raises_proof_error(lambda: split_tile(b"x" * 33))
    assert raises_proof_error(lambda: split_tile(b"x" * 32 * 257))
