"""RFC 9162 §2.1 Merkle trees: hashing, batch trees, log proofs from stored perfect subtrees, verification.

Owns: the Merkle Tree Hash (SPEC §1), inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4), their
verification, and the arithmetic of a ledger log kept as perfect subtrees (node ``(level, idx)`` is the root
of the perfect subtree over leaves ``[idx * 2**level, (idx + 1) * 2**level)``).
Must not import: anything outside the standard library except ``service.core.errors`` (the offline verifier uses
this module).

Every error raised on purpose is a :class:`~service.core.errors.ProofError` whose message says what was expected
and what was found. The verification functions raise nothing else, whatever their input.
"""

from __future__ import annotations

import base64
import hmac
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from hashlib import sha256
from itertools import chain, islice, repeat

from service.core.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "BatchTree",
    "append_nodes",
    "audit_paths",
    "audit_paths_match",
    "batch_tiles",
    "consistency_ranges",
    "hash_range",
    "hashes",
    "inclusion_proof_from_tiles",
    "inclusion_ranges",
    "leaf_hash",
    "leaf_hashes",
    "log_consistency_proof",
    "log_inclusion_proof",
    "node_hash",
    "nodes_needed_for_ranges",
    "perfect_subtrees",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "split_tile",
    "tile_path",
    "tree_levels",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

Node = tuple[int, int]
"""A perfect subtree ``(level, idx)`` covering leaves ``[idx << level, (idx + 1) << level)``."""

# The batch build runs the hashing as a chain of C-level ``map`` calls: no Python bytecode per node, which
# is what keeps the build close to the bare cost of the hashlib calls themselves.
_digest = type(sha256()).digest
_join = b"".join
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``, the RFC 9162 leaf hash."""
    return sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``, the RFC 9162 interior node hash."""
    return sha256(_NODE_PREFIX + left + right).digest()


def _check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    if hashes and set(map(len, hashes)) != {HASH_SIZE}:
        for i, h in enumerate(hashes):
            if len(h) != HASH_SIZE:
                raise ProofError(f"leaf hash {i} has {len(h)} bytes, expected {HASH_SIZE}")


def _next_level(nodes: Sequence[bytes]) -> list[bytes]:
    """Hash pairs of one level; an unpaired last node is promoted unchanged (this gives the RFC's MTH)."""
    it = iter(nodes)
    out = list(map(_digest, map(sha256, map(_join, zip(repeat(_NODE_PREFIX), it, it)))))
    if len(nodes) & 1:
        out.append(nodes[-1])
    return out


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash of the given leaf hashes (``EMPTY_ROOT`` for none).

    :raise ProofError: a leaf hash is not 32 bytes.
    """
    _check_leaf_hashes(hashes)
    if not hashes:
        return EMPTY_ROOT
    level: Sequence[bytes] = hashes
    while len(level) > 1:
        level = _next_level(level)
    return bytes(level[0])


# Trees are built in aligned blocks of 2**_BLOCK_LEVELS leaves, every level of a block while its hashes are still
# in the CPU cache, then the block roots upward. Aligned blocks pair nodes exactly as a whole-level pass would.
# 4096 leaves (about 300 KB of digest objects per level) measured best of 2**6..2**20 on a 1 MiB-L2 core
# (bench/bench_merkle.py, CPU time: 2**8 1.41-1.44x the floor, 2**12 1.26-1.33x, 2**16 1.52x, no blocks 1.66x).
_BLOCK_LEVELS = 12


def _build_levels(n: int, leaf_block: Callable[[int, int], list[bytes]]) -> list[bytes]:
    """Every level of the tree over ``n`` leaves, each joined into one ``bytes``; ``leaf_block(start, end)``
    returns the leaf hashes of ``[start, end)``."""
    if n == 0:
        return [b""]
    depth = (n - 1).bit_length()
    k = min(_BLOCK_LEVELS, depth)
    block = 1 << k
    parts: list[list[bytes]] = [[] for _ in range(k + 1)]
    roots = []
    for start in range(0, n, block):
        level = leaf_block(start, min(start + block, n))
        parts[0].append(_join(level))
        for part in parts[1:]:
            if len(level) > 1:
                level = _next_level(level)
            part.append(_join(level))
        roots.append(level[0])
    levels = [_join(p) for p in parts]
    level = roots
    while len(level) > 1:
        level = _next_level(level)
        levels.append(_join(level))
    return levels


class BatchTree:
    """A whole tree built at once, every level kept as one ``bytes`` object (32 bytes per node).

    Level ``l`` holds ``ceil(size / 2**l)`` nodes; node ``j`` of level ``l`` is the MTH of leaves
    ``[j * 2**l, min((j + 1) * 2**l, size))``. An unpaired last node is promoted unchanged to the next
    level, which is exactly RFC 9162's split at the largest power of two below ``n``; proofs skip the
    missing siblings.
    """

    __slots__ = ("_below_root", "_levels", "_size")

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        """Build the tree over ``leaf_hashes`` (each 32 bytes), in leaf-index order.

        :raise ProofError: a leaf hash is not 32 bytes.
        """
        _check_leaf_hashes(leaf_hashes)
        self._size = len(leaf_hashes)
        self._levels = _build_levels(len(leaf_hashes), lambda start, end: list(leaf_hashes[start:end]))
        self._below_root = tuple(self._levels[:-1])

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> BatchTree:
        """Build the tree from leaf bytes (hashing each as ``SHA-256(0x00 || leaf)``) in one fast pass.

        The hash inputs are made by ``b"".join`` of a ``zip`` tuple (which ``zip`` reuses): cheaper than
        ``prefix.__add__``, which takes a buffer of both operands, and than slicing one joined buffer."""
        items = leaves if isinstance(leaves, list) else list(leaves)
        tree = cls.__new__(cls)
        tree._size = len(items)
        tree._levels = _build_levels(
            len(items),
            lambda start, end: list(map(_digest, map(sha256, map(_join, zip(repeat(_LEAF_PREFIX), items[start:end]))))),
        )
        tree._below_root = tuple(tree._levels[:-1])
        return tree

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    @property
    def root(self) -> bytes:
        """The Merkle Tree Hash (``EMPTY_ROOT`` for an empty tree)."""
        return self._levels[-1] if self._size else EMPTY_ROOT

    @property
    def depth(self) -> int:
        """Number of levels above the leaves (0 for a tree of 0 or 1 leaves)."""
        return len(self._levels) - 1

    def node(self, level: int, idx: int) -> bytes:
        """Node ``(level, idx)``: MTH of leaves ``[idx << level, min((idx+1) << level, size))``.

        :raise ProofError: no such node in this tree.
        """
        if not (0 <= level < len(self._levels)) or not (0 <= idx and (idx << level) < self._size):
            raise ProofError(f"node ({level}, {idx}) is not in a tree of {self._size} leaves")
        start = idx * HASH_SIZE
        return self._levels[level][start : start + HASH_SIZE]

    def leaf_hash(self, index: int) -> bytes:
        """Return the hash of leaf ``index``.

        :raise ProofError: ``index`` is not below the tree size.
        """
        _check_index(index, self._size)
        return self.node(0, index)

    def inclusion_proof(self, index: int) -> list[bytes]:
        """Return the RFC 9162 §2.1.3.1 audit path of leaf ``index``, ordered from the leaf upward.

        :raise ProofError: ``index`` is not below the tree size.
        """
        if type(index) is not int or not 0 <= index < self._size:
            _check_index(index, self._size)
        proof: list[bytes] = []
        append = proof.append
        for level in self._below_root:
            start = (index ^ 1) << 5  # * HASH_SIZE
            if start < len(level):  # no sibling: the node is promoted unchanged to the next level
                append(level[start : start + HASH_SIZE])
            index >>= 1
        return proof

    def tiles(self) -> list[tuple[int, int, bytes]]:
        """The stored form of this tree's upper levels: :func:`batch_tiles` of its levels."""
        return batch_tiles(self._levels)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """Return the RFC 9162 §2.1.4.1 consistency proof from ``old_size`` to this tree (empty if equal).

        :raise ProofError: ``old_size`` is not in ``1..size``.
        """
        ranges = consistency_ranges(old_size, self._size)
        proof = []
        for start, end in ranges:
            level = (end - start - 1).bit_length()
            proof.append(self.node(level, start >> level))
        return proof


# --- batch trees kept as tiles: proofs on demand from tiles of every 8th level ---------------------------------
#
# A sealed batch keeps, instead of every leaf's audit path, the nodes of its tree at levels 0, 8, 16, ... (level 0:
# the leaf hashes; up to the last level with more than one node: the root is kept elsewhere; a batch of one leaf
# keeps its leaf hash), cut into tiles of up to 256 consecutive nodes. Tile (k, t) holds nodes [256 t, 256 t + 256)
# of level 8 k, the last tile of a level only what exists (the right edge's last node is the MTH of what is below
# it, as in ``BatchTree``). Tiles are aligned like the tree's own blocks, so the ``BatchTree`` of one tile's nodes
# has exactly the tree's nodes of the 8 levels above them: leaf i's audit path is the concatenation, over k, of
# node (i >> 8 k) & 255's path in the tree of tile (k, i >> 8 (k + 1)). About 32.1 bytes per leaf in all.

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_TILE_BYTES = TILE_WIDTH * HASH_SIZE


def batch_tiles(levels: Sequence[bytes | Sequence[bytes]]) -> list[tuple[int, int, bytes]]:
    """The tiles ``(k, t, hashes)`` of a batch tree given its levels (leaves first: each level as one ``bytes`` as
    ``BatchTree`` keeps them, or as a list of hashes as ``tree_levels`` returns), in ``(k, t)`` order; none for an
    empty tree."""
    out: list[tuple[int, int, bytes]] = []
    level = 0
    while level < len(levels):
        nodes = levels[level]
        data = nodes if isinstance(nodes, bytes) else b"".join(nodes)
        if not data or (level and len(data) <= HASH_SIZE):  # the root (kept in the batch's row)
            break
        k = level // TILE_HEIGHT
        out.extend(
            (k, t, data[start : start + _TILE_BYTES]) for t, start in enumerate(range(0, len(data), _TILE_BYTES))
        )
        level += TILE_HEIGHT
    return out


def tile_path(index: int, size: int) -> list[tuple[int, int, int, int]]:
    """``(k, t, width, position)`` for each tile leaf ``index`` of a batch of ``size`` needs, leaves first: tile
    (k, t) holds ``width`` nodes of level 8 k, of which the one on the leaf's path is at ``position``.

    :raise ProofError: ``index`` is not below ``size``.
    """
    if type(index) is not int or type(size) is not int or not 0 <= index < size:
        _check_index(index, size)
    out = []
    k, count = 0, size  # count: the number of nodes at level 8 k
    while True:
        shift = TILE_HEIGHT * k
        t = index >> (shift + TILE_HEIGHT)
        out.append((k, t, min(TILE_WIDTH, count - t * TILE_WIDTH), (index >> shift) & (TILE_WIDTH - 1)))
        count = -(-count // TILE_WIDTH)
        if count <= 1:
            return out
        k += 1


def split_tile(data: bytes) -> list[bytes]:
    """The hashes of a tile (or block) stored as their concatenation.

    :raise ProofError: its length is not a multiple of 32 or more than 256 hashes.
    """
    if len(data) % HASH_SIZE or len(data) > _TILE_BYTES:
        raise ProofError(f"a tile of {len(data)} bytes is not 1 to {TILE_WIDTH} hashes of {HASH_SIZE} bytes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def inclusion_proof_from_tiles(index: int, size: int, tiles: Mapping[tuple[int, int], bytes]) -> list[bytes]:
    """Leaf ``index``'s RFC 9162 audit path in a batch of ``size``, from the tiles :func:`tile_path` names (as
    :func:`batch_tiles` gives them): equal to ``BatchTree(...).inclusion_proof(index)``.

    :raise ProofError: bad index or size, or a tile is missing or has the wrong width.
    """
    proof: list[bytes] = []
    for k, t, width, position in tile_path(index, size):
        data = tiles.get((k, t))
        if data is None:
            raise ProofError(f"tile ({k}, {t}) of a batch of {size} is missing")
        if len(data) != width * HASH_SIZE:
            raise ProofError(
                f"tile ({k}, {t}) of a batch of {size} has {len(data)} bytes, expected {width * HASH_SIZE}"
            )
        proof += BatchTree(split_tile(data)).inclusion_proof(position)
    return proof


# --- whole trees as lists, every leaf's audit path at once (the bulk path of ``evidence audit``) -------------


def leaf_hashes(leaves: Iterable[bytes]) -> list[bytes]:
    """``[leaf_hash(x) for x in leaves]`` as a chain of C-level maps (no Python bytecode per leaf)."""
    return list(map(_digest, map(sha256, map(_join, zip(repeat(_LEAF_PREFIX), leaves)))))


def hashes(inputs: Iterable[bytes]) -> list[bytes]:
    """``[sha256(x).digest() for x in inputs]`` as C-level maps: leaf hashes of inputs already prefixed with 0x00
    (``formats.leaf_hash_inputs``)."""
    return list(map(_digest, map(sha256, inputs)))


def tree_levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree over ``leaf_hashes`` (32 bytes each, not checked), leaves first, the root last
    (``[[]]`` for no leaf): level ``l`` holds node ``j`` at index ``j``, as in ``BatchTree.node(l, j)``."""
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def _siblings_per_leaf(levels: list[list[bytes]]) -> list[list[bytes]]:
    """For each level below the root, every leaf's sibling node at that level (b"" where there is none)."""
    n = len(levels[0])
    out: list[list[bytes]] = []
    for lv, nodes in enumerate(levels[:-1]):
        m = len(nodes)
        swapped: list[bytes] = [b""] * m  # node j's sibling is node j ^ 1; an unpaired last node has none
        swapped[1::2] = nodes[0 : m - m % 2 : 2]
        swapped[0 : m - m % 2 : 2] = nodes[1::2]
        if lv == 0:
            out.append(swapped)
        else:  # leaf i sits under node i >> lv: repeat each sibling 2**lv times
            out.append(list(islice(chain.from_iterable(map(repeat, swapped, repeat(1 << lv))), n)))
    return out


def audit_paths(levels: list[list[bytes]]) -> list[bytes]:
    """Every leaf's RFC 9162 audit path of the tree ``tree_levels`` returned, each as its hashes concatenated
    (leaf sibling first): ``b"".join(BatchTree(...).inclusion_proof(i))`` for every ``i``."""
    per_level = _siblings_per_leaf(levels)
    if not per_level:
        return [b""] * len(levels[0])
    return list(map(b"".join, zip(*per_level, strict=True)))


def audit_paths_match(levels: list[list[bytes]], proofs: Sequence[bytes]) -> bool:
    """True iff ``proofs[i]`` (concatenated hashes) is leaf i's audit path for every i, ``len(proofs)`` being the
    number of leaves: one comparison of the concatenation of all paths, plus every proof's length (so no hash can
    move from one proof to the next)."""
    per_level = _siblings_per_leaf(levels)
    n = len(levels[0])
    if not per_level:
        return all(p == b"" for p in proofs)
    expected = b"".join(chain.from_iterable(zip(*per_level, strict=True)))
    if expected != b"".join(proofs):
        return False
    lengths = [len(per_level) * HASH_SIZE] * n
    for lv, siblings in enumerate(per_level):
        if siblings[-1] == b"":  # the tail of leaves under the unpaired last node of this level
            start = (len(levels[lv]) - 1) << lv
            lengths[start:] = map(operator.sub, lengths[start:], repeat(HASH_SIZE))
    return lengths == list(map(len, proofs))


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProofError(f"{name} must be an integer, found {type(value).__name__}")
    return value


def _check_index(index: int, size: int) -> None:
    _check_int("index", index)
    _check_int("tree size", size)
    if index < 0:
        raise ProofError(f"index {index} is negative")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")


def _largest_pow2_below(n: int) -> int:
    """The largest power of two ``k < n`` (``n >= 2``), RFC 9162 §2.1.1's split point."""
    return 1 << ((n - 1).bit_length() - 1)


# --- a log kept as perfect subtrees -------------------------------------------------------------


def perfect_subtrees(start: int, end: int) -> list[Node]:
    """Return the aligned perfect subtrees ``(level, idx)`` that cover ``[start, end)``, left to right.

    Each is the largest aligned subtree that starts where the previous one ended and fits in the range.

    :raise ProofError: ``0 <= start <= end`` does not hold.
    """
    _check_int("start", start)
    _check_int("end", end)
    if not 0 <= start <= end:
        raise ProofError(f"range [{start}, {end}) is not a range of leaves")
    nodes = []
    while start < end:
        # Largest level allowed by the alignment of start, then by the room left.
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while (1 << level) > end - start:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose MTH make up RFC 9162 PATH(index, D_size), in proof order (leaf upward).

    :raise ProofError: ``index`` is not below ``size``.
    """
    _check_index(index, size)
    ranges = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_pow2_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose MTH make up RFC 9162 PROOF(old, D_new), in proof order.

    ``old == new`` gives no ranges (the empty proof).

    :raise ProofError: ``0 < old <= new`` does not hold.
    """
    _check_int("old size", old)
    _check_int("new size", new)
    if old <= 0:
        raise ProofError(f"old size {old} is not positive: RFC 9162 defines no consistency proof from it")
    if old > new:
        raise ProofError(f"old size {old} is larger than new size {new}")
    # SUBPROOF(m, D[start:end], b), unrolled: each step appends after the recursive part, so the ranges
    # are collected top-down and reversed at the end.
    ranges = []
    start, end, m, whole = 0, new, old, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                ranges.append((start, end))
            break
        k = _largest_pow2_below(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            whole = False
    ranges.reverse()
    return ranges


def nodes_needed_for_ranges(ranges: Iterable[tuple[int, int]]) -> set[Node]:
    """Return every perfect-subtree node :func:`hash_range` needs for these ranges (fetch in one query)."""
    needed: set[Node] = set()
    for start, end in ranges:
        needed.update(perfect_subtrees(start, end))
    return needed


def hash_range(start: int, end: int, nodes: Mapping[Node, bytes]) -> bytes:
    """Return the MTH of leaves ``[start, end)`` from the stored perfect subtrees that cover it.

    The range must be a subtree of some tree rooted at leaf 0 (``start`` a multiple of the smallest power of
    two ``>= end - start``), as every range of a proof is; ``[0, 0)`` gives ``EMPTY_ROOT``.

    :raise ProofError: the range is not such a subtree, or a node it needs is missing from ``nodes``.
    """
    covering = perfect_subtrees(start, end)
    if not covering:
        if start == 0:
            return EMPTY_ROOT
        raise ProofError(f"range [{start}, {end}) is empty")
    width = 1 << (end - start - 1).bit_length()
    if start % width:
        raise ProofError(f"range [{start}, {end}) does not start at a multiple of {width}: it is no subtree")
    hashes = []
    for node in covering:
        h = nodes.get(node)
        if h is None:
            raise ProofError(f"node {node} needed for range [{start}, {end}) is missing")
        hashes.append(h)
    # MTH splits off the largest power of two first, so the right-hand end folds first.
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def append_nodes(size: int, new_leaf_hash: bytes, frontier: Mapping[Node, bytes]) -> list[tuple[Node, bytes]]:
    """Return the nodes completed by appending leaf index ``size``: ``(0, size)`` first, then each parent.

    ``frontier`` maps the nodes of ``perfect_subtrees(0, size)`` (at least the ones the new leaf completes)
    to their hashes.

    :raise ProofError: ``size`` is negative, the leaf hash is not 32 bytes, or a frontier node is missing.
    """
    _check_int("size", size)
    if size < 0:
        raise ProofError(f"log size {size} is negative")
    if len(new_leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash has {len(new_leaf_hash)} bytes, expected {HASH_SIZE}")
    out: list[tuple[Node, bytes]] = [((0, size), bytes(new_leaf_hash))]
    h = bytes(new_leaf_hash)
    level, idx = 0, size
    while idx & 1:  # this node is a right child: its parent is now complete
        left = frontier.get((level, idx - 1))
        if left is None:
            raise ProofError(f"frontier node {(level, idx - 1)} of a log of {size} leaves is missing")
        h = node_hash(left, h)
        level, idx = level + 1, idx >> 1
        out.append(((level, idx), h))
    return out


def log_inclusion_proof(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """Return the RFC 9162 inclusion proof of ``index`` in a log of ``size`` leaves from stored nodes.

    ``nodes`` must hold ``nodes_needed_for_ranges(inclusion_ranges(index, size))``.

    :raise ProofError: bad index or size, or a needed node is missing.
    """
    return [hash_range(s, e, nodes) for s, e in inclusion_ranges(index, size)]


def log_consistency_proof(old: int, new: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """Return the RFC 9162 consistency proof from ``old`` to ``new`` leaves from stored nodes.

    ``nodes`` must hold ``nodes_needed_for_ranges(consistency_ranges(old, new))``.

    :raise ProofError: bad sizes, or a needed node is missing.
    """
    return [hash_range(s, e, nodes) for s, e in consistency_ranges(old, new)]


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -------------------------------------------------


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise ProofError(f"{name} must be bytes, found {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} has {len(value)} bytes, expected {HASH_SIZE}")
    return bytes(value)


def _check_proof(proof: object) -> list[bytes]:
    if isinstance(proof, bytes | bytearray | str) or not isinstance(proof, Iterable):
        raise ProofError(f"proof must be a sequence of hashes, found {type(proof).__name__}")
    path = list(proof)
    if set(map(type, path)) <= {bytes} and set(map(len, path)) <= {HASH_SIZE}:  # the common case, checked in C
        return path
    return [_check_hash(f"proof hash {i}", p) for i, p in enumerate(path)]


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root that ``proof`` gives for ``leaf_hash`` at ``index`` in a tree of ``size`` (RFC 9162
    §2.1.3.2 steps 1-4, with its step-5 check that the path has exactly the right length).

    :raise ProofError: any malformed input, index not below size, or a proof of the wrong length.
    """
    r = _check_hash("leaf hash", leaf_hash)
    _check_index(index, size)
    path = _check_proof(proof)
    # The RFC path length: one hash per level below the point where the paths to the leaf and to the last leaf
    # part ("inner"), plus one per left sibling on the right border above it.
    inner = (index ^ (size - 1)).bit_length()
    needed = inner + (index >> inner).bit_count()
    if len(path) != needed:
        raise ProofError(f"proof has {len(path)} hashes, a tree of {size} needs {needed} for index {index}")
    # 2. fn = leaf_index, sn = tree_size - 1
    fn, sn = index, size - 1
    for p in path:  # 4.
        if sn == 0:  # a.
            raise ProofError(f"proof for index {index} in a tree of {size} is too long")
        if fn & 1 or fn == sn:  # b.
            r = sha256(_NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:  # c.
            r = sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:  # 5.
        raise ProofError(f"proof for index {index} in a tree of {size} is too short")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` proves ``leaf_hash`` at ``index`` in the tree of ``size`` leaves with ``root``.

    :raise ProofError: the proof does not verify, or any input is malformed (nothing else is raised).
    """
    expected = _check_hash("root", root)
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if not hmac.compare_digest(computed, expected):
        raise ProofError(f"computed root {_b64(computed)}, expected root {_b64(expected)}")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``new`` leaves with ``new_root`` extends the one of ``old`` with ``old_root``.

    RFC 9162 §2.1.4.2 for ``0 < old < new`` (roots and proof hashes must be 32 bytes). Edges, as
    transparency-dev/merkle and its golden probes: ``old == new`` needs an empty proof and equal roots (any
    length: nothing is hashed); ``old == 0`` (even ``0 -> 0``) and ``old > new`` are rejected.

    :raise ProofError: the proof does not verify, or any input is malformed (nothing else is raised).
    """
    path = _check_proof(proof)
    needed = len(consistency_ranges(old, new))  # checks 0 < old <= new
    if len(path) != needed:
        raise ProofError(f"proof has {len(path)} hashes, consistency from {old} to {new} needs {needed}")
    if old == new:
        # Nothing is hashed: equal roots are the whole check (transparency-dev/merkle's golden probe
        # "sizes are equal (one) and proof is empty" accepts equal roots of any length here).
        if not isinstance(old_root, bytes | bytearray) or not isinstance(new_root, bytes | bytearray):
            raise ProofError("roots must be bytes")
        if not hmac.compare_digest(old_root, new_root):
            raise ProofError(f"trees of equal size {old} have different roots {_b64(old_root)} and {_b64(new_root)}")
        return
    first_hash = _check_hash("old root", old_root)
    second_hash = _check_hash("new root", new_root)
    # 2. old an exact power of 2: prepend first_hash
    if old & (old - 1) == 0:
        path.insert(0, first_hash)
    # 3.
    fn, sn = old - 1, new - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:  # a.
            raise ProofError(f"proof of consistency from {old} to {new} is too long")
        if fn & 1 or fn == sn:  # b.
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:  # c.
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise ProofError(f"proof of consistency from {old} to {new} is too short")
    if not hmac.compare_digest(fr, first_hash):
        raise ProofError(f"computed old root {_b64(fr)}, expected {_b64(first_hash)}")
    if not hmac.compare_digest(sr, second_hash):
        raise ProofError(f"computed new root {_b64(sr)}, expected {_b64(second_hash)}")
