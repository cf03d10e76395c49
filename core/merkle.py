"""RFC 9162 Merkle trees (Certificate Transparency v2 hashing), with no I/O.

Hashing (RFC 9162 §2.1.1): a leaf is ``SHA-256(0x00 || data)``, an interior node is
``SHA-256(0x01 || left || right)``, the empty tree is ``SHA-256("")``. A tree of ``n``
leaves splits at ``k``, the largest power of two strictly less than ``n``.

Every subtree that this recursive split produces starts at a multiple of its own size
rounded up to a power of two. So a subtree of ``2**level`` leaves is always *aligned*
and can be named ``(level, index)``: it covers leaves ``[index << level, (index + 1) <<
level)``. Any other subtree is the right-folded hash of at most ``log2(n)`` aligned ones
(its binary decomposition). A :class:`NodeSource` that answers ``node(level, index)`` in
O(1) therefore lets roots and proofs be computed in O(log² n) hashes, whatever the size of
the log; :class:`MemoryNodeStore` is one in memory, ``trustlog.ingest.merkle_store`` one
on disk.

Verification follows the bit-manipulation algorithms of RFC 9162 §2.1.3.2 (inclusion)
and §2.1.4.2 (consistency) step by step; failures raise :class:`MerkleProofError`, never
return ``False``.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol, runtime_checkable

from .errors import TrustlogError

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_sha256 = hashlib.sha256


class MerkleProofError(TrustlogError):
    """A Merkle inclusion or consistency proof that does not verify."""


class TreeRangeError(TrustlogError, ValueError):
    """A leaf index or tree size outside the tree a proof or root was asked of."""


# --- hashing (RFC 9162 §2.1.1) -----------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``MTH({d}) = SHA-256(0x00 || d)`` (RFC 9162 §2.1.1)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` for an interior node (RFC 9162 §2.1.1)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """``k``, the largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """Reference ``MTH(D[n])`` of already-hashed leaves, by the recursion of RFC 9162
    §2.1.1. O(n); use :class:`CompactRange` or a :class:`NodeSource` on big logs."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = split_point(n)
    return node_hash(root_from_leaves(leaf_hashes[:k]), root_from_leaves(leaf_hashes[k:]))


# --- the incremental accumulator ----------------------------------------------------


NodeCallback = Callable[[int, bytes], None]


class CompactRange:
    """The roots of the perfect subtrees that make up a tree of ``size`` leaves.

    One hash per set bit of ``size``, the largest (leftmost) first, so memory is
    O(log n). Appending a leaf merges equal-sized neighbours like a binary carry; the
    root is the right fold of the peaks, which is ``MTH(D[size])`` (RFC 9162 §2.1.1).
    """

    __slots__ = ("_size", "_peaks")

    def __init__(self) -> None:
        self._size = 0
        self._peaks: list[bytes] = []

    @classmethod
    def from_peaks(cls, size: int, peaks: Sequence[bytes]) -> CompactRange:
        """Rebuild from stored peaks: ``peaks[i]`` is the aligned subtree for the i-th
        highest set bit of ``size``."""
        if size < 0 or len(peaks) != size.bit_count():
            raise TreeRangeError(
                f"a tree of {size} leaves has {max(size, 0).bit_count()} peaks, got {len(peaks)}"
            )
        _check_hashes(peaks, "peak")
        cr = cls()
        cr._size = size
        cr._peaks = list(peaks)
        return cr

    @property
    def size(self) -> int:
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        return tuple(self._peaks)

    def append(self, leaf: bytes, on_node: NodeCallback | None = None) -> None:
        """Add one leaf hash. ``on_node(level, hash)`` is called for each perfect subtree
        of ``2**level`` leaves (level >= 1) that this leaf completes, lowest first."""
        peaks = self._peaks
        h = leaf
        size = self._size
        level = 0
        while size & 1:
            h = node_hash(peaks.pop(), h)
            size >>= 1
            level += 1
            if on_node is not None:
                on_node(level, h)
        peaks.append(h)
        self._size += 1

    def extend(self, leaves: Iterable[bytes], on_node: NodeCallback | None = None) -> None:
        for leaf in leaves:
            self.append(leaf, on_node)

    def root(self) -> bytes:
        """``MTH(D[size])``: the peaks folded right to left."""
        peaks = self._peaks
        if not peaks:
            return EMPTY_ROOT
        h = peaks[-1]
        for left in reversed(peaks[:-1]):
            h = node_hash(left, h)
        return h


# --- node sources -------------------------------------------------------------------


@runtime_checkable
class NodeSource(Protocol):
    """Anything that returns the hash of the aligned perfect subtree ``(level, index)``,
    covering leaves ``[index << level, (index + 1) << level)``; level 0 is a leaf hash."""

    def node(self, level: int, index: int) -> bytes: ...


HashSource = NodeSource | Sequence[bytes] | Callable[[int], bytes]


class MemoryNodeStore:
    """Every aligned perfect subtree hash, per level, kept in memory.

    Level ``k`` holds ``size >> k`` hashes; together about ``2 * size`` hashes. Filled
    incrementally by a :class:`CompactRange`, so appends cost O(1) amortised hashes.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._range = CompactRange()
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return self._range.size

    def append(self, leaf: bytes) -> None:
        _check_hash(leaf, "leaf hash")
        self._levels[0].append(leaf)
        self._range.append(leaf, self._store_node)

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def _store_node(self, level: int, h: bytes) -> None:
        if level == len(self._levels):
            self._levels.append([])
        self._levels[level].append(h)

    def node(self, level: int, index: int) -> bytes:
        if level >= len(self._levels) or not 0 <= index < len(self._levels[level]):
            raise TreeRangeError(f"no complete subtree ({level}, {index}) in a tree of {self.size} leaves")
        return self._levels[level][index]

    def root(self) -> bytes:
        return self._range.root()

    def root_at(self, size: int) -> bytes:
        _check_size(size, self.size)
        return subtree_root(0, size, self)


class _LeafNodes:
    """A :class:`NodeSource` over bare leaf hashes: O(2**level) per node. For small
    trees and tests; big logs should keep their nodes (see ``MerkleStore``)."""

    def __init__(self, get_leaf: Callable[[int], bytes]) -> None:
        self._get_leaf = get_leaf

    def node(self, level: int, index: int) -> bytes:
        if level == 0:
            return self._get_leaf(index)
        return node_hash(self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1))


def as_node_source(hashes: HashSource) -> NodeSource:
    """Accept a :class:`NodeSource`, a sequence of leaf hashes or ``get_leaf_hash(i)``."""
    if isinstance(hashes, NodeSource):
        return hashes
    if callable(hashes):
        return _LeafNodes(hashes)
    return _LeafNodes(hashes.__getitem__)


def _available(hashes: HashSource) -> int | None:
    """How many leaves ``hashes`` is known to hold, where it says."""
    size = getattr(hashes, "size", None)
    if isinstance(size, int):
        return size
    if isinstance(hashes, Sequence):
        return len(hashes)
    return None


# --- roots and proofs from a node source ---------------------------------------------


def subtree_root(start: int, count: int, nodes: NodeSource) -> bytes:
    """``MTH(D[start:start+count])`` for a range that the RFC 9162 §2.1.1 recursion
    produces (``start`` a multiple of ``count`` rounded up to a power of two): the right
    fold of its binary decomposition into aligned perfect subtrees."""
    if count == 0:
        return EMPTY_ROOT
    parts: list[bytes] = []
    while count:
        level = count.bit_length() - 1
        parts.append(nodes.node(level, start >> level))
        start += 1 << level
        count -= 1 << level
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def root_at(size: int, hashes: HashSource) -> bytes:
    """``MTH(D[size])`` of the first ``size`` leaves of ``hashes``."""
    _check_size(size, _available(hashes))
    return subtree_root(0, size, as_node_source(hashes))


def inclusion_proof(index: int, size: int, hashes: HashSource) -> list[bytes]:
    """``PATH(index, D[size])``, the audit path of RFC 9162 §2.1.3.1, leaf side first.

    The recursion ``PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])`` (``m < k``) or
    ``PATH(m - k, D[k:n]) : MTH(D[0:k])`` is walked top-down and reversed.
    """
    _check_size(size, _available(hashes))
    if not 0 <= index < size:
        raise TreeRangeError(f"leaf index {index} is outside a tree of {size} leaves")
    nodes = as_node_source(hashes)
    path: list[bytes] = []
    start, n, m = 0, size, index
    while n > 1:
        k = split_point(n)
        if m < k:
            path.append(subtree_root(start + k, n - k, nodes))
            n = k
        else:
            path.append(subtree_root(start, k, nodes))
            start, n, m = start + k, n - k, m - k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, hashes: HashSource) -> list[bytes]:
    """``PROOF(old_size, D[new_size])`` of RFC 9162 §2.1.4.1: ``SUBPROOF(m, D[n], true)``.

    Empty when ``old_size`` is 0 or equals ``new_size`` (nothing to prove).
    """
    _check_size(new_size, _available(hashes))
    if not 0 <= old_size <= new_size:
        raise TreeRangeError(f"old tree size {old_size} is not within 0..{new_size}")
    if old_size in (0, new_size):
        return []
    nodes = as_node_source(hashes)
    proof: list[bytes] = []
    start, n, m, complete = 0, new_size, old_size, True
    while m != n:
        k = split_point(n)
        if m <= k:
            proof.append(subtree_root(start + k, n - k, nodes))
            n = k
        else:
            proof.append(subtree_root(start, k, nodes))
            start, n, m, complete = start + k, n - k, m - k, False
    if not complete:
        proof.append(subtree_root(start, n, nodes))
    proof.reverse()
    return proof


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -----------------------------------


def _climb(fn: int, sn: int) -> tuple[int, int]:
    """The step both RFC 9162 verifiers share: if LSB(fn) is not set, right-shift fn
    and sn until it is or fn is 0 (§2.1.3.2 step 4.b.ii, §2.1.4.2 step 6.b.iii)."""
    while not fn & 1 and fn != 0:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Steps 1-4 of RFC 9162 §2.1.3.2: the root that ``proof`` leads ``leaf`` to."""
    _check_hash(leaf, "leaf hash", MerkleProofError)
    _check_hashes(proof, "inclusion proof element", MerkleProofError)
    # (1) leaf_index must be below tree_size.
    if not 0 <= index < size:
        raise MerkleProofError(f"leaf index {index} is outside a tree of {size} leaves")
    # (2) fn = leaf_index, sn = tree_size - 1; (3) r = hash.
    fn, sn, r = index, size - 1, leaf
    # (4) For each p in inclusion_path:
    for p in proof:
        # (a) a proof longer than the path to the root fails.
        if sn == 0:
            raise MerkleProofError(f"inclusion proof has {len(proof)} hashes: too many for leaf {index} of {size}")
        # (b) p is a left sibling when fn is a right child or fn is the last node of its level.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _climb(fn, sn)  # (b.ii)
        else:
            r = node_hash(r, p)
        # (c)
        fn, sn = fn >> 1, sn >> 1
    # (5, first half) sn must have reached 0: the path reached the root.
    if sn != 0:
        raise MerkleProofError(f"inclusion proof has {len(proof)} hashes: too few for leaf {index} of {size}")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`MerkleProofError` unless ``proof`` shows that ``leaf`` (a leaf hash)
    is leaf ``index`` of the tree of ``size`` leaves whose root is ``root``
    (RFC 9162 §2.1.3.2)."""
    _check_hash(root, "root hash", MerkleProofError)
    computed = root_from_inclusion_proof(leaf, index, size, proof)
    # (5) compare r against root_hash.
    if computed != root:
        raise MerkleProofError(
            f"inclusion proof for leaf {index} of {size} leads to root {computed.hex()}, "
            f"not the expected {root.hex()}"
        )


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Raise :class:`MerkleProofError` unless ``proof`` shows that the tree of
    ``new_size`` leaves with root ``new_root`` extends the one of ``old_size`` leaves
    with root ``old_root`` (RFC 9162 §2.1.4.2).

    The RFC algorithm covers ``0 < old_size < new_size``. Outside it: equal sizes need
    equal roots and an empty proof; an old size of 0 needs ``old_root == EMPTY_ROOT`` and
    an empty proof (every tree extends the empty tree).
    """
    _check_hash(old_root, "old root hash", MerkleProofError)
    _check_hash(new_root, "new root hash", MerkleProofError)
    _check_hashes(proof, "consistency proof element", MerkleProofError)
    if not 0 <= old_size <= new_size:
        raise MerkleProofError(f"tree sizes go backwards or below zero: {old_size} -> {new_size}")
    if old_size == new_size or old_size == 0:
        _verify_trivial_consistency(old_size, new_size, old_root, new_root, proof)
        return
    # (1) an empty consistency_path fails.
    if not proof:
        raise MerkleProofError(f"empty consistency proof between sizes {old_size} and {new_size}")
    # (2) if first is an exact power of 2, prepend first_hash.
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    # (3) fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # (4) right-shift both while LSB(fn) is set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # (5) fr = sr = first value of the path.
    fr = sr = path[0]
    # (6) for each subsequent value c:
    for c in path[1:]:
        # (a)
        if sn == 0:
            raise MerkleProofError(f"consistency proof {old_size} -> {new_size} has too many hashes")
        # (b)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            fn, sn = _climb(fn, sn)  # (b.iii)
        else:
            sr = node_hash(sr, c)
        # (c)
        fn, sn = fn >> 1, sn >> 1
    # (7) fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0:
        raise MerkleProofError(f"consistency proof {old_size} -> {new_size} has too few hashes")
    if fr != old_root:
        raise MerkleProofError(
            f"consistency proof {old_size} -> {new_size} leads to old root {fr.hex()}, not {old_root.hex()}"
        )
    if sr != new_root:
        raise MerkleProofError(
            f"consistency proof {old_size} -> {new_size} leads to new root {sr.hex()}, not {new_root.hex()}"
        )


def _verify_trivial_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    if proof:
        raise MerkleProofError(
            f"consistency proof {old_size} -> {new_size} must be empty, has {len(proof)} hashes"
        )
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise MerkleProofError(f"the root of the empty tree is {EMPTY_ROOT.hex()}, not {old_root.hex()}")
    if old_size == new_size and old_root != new_root:
        raise MerkleProofError(
            f"two different roots for the same tree size {new_size}: {old_root.hex()} and {new_root.hex()}"
        )


# --- argument checks ----------------------------------------------------------------


def _check_hash(h: bytes, what: str, error: type[TrustlogError] = TreeRangeError) -> None:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        got = len(h) if isinstance(h, (bytes, bytearray)) else type(h).__name__
        raise error(f"{what} must be {HASH_SIZE} bytes, got {got}")


def _check_hashes(hs: Sequence[bytes], what: str, error: type[TrustlogError] = TreeRangeError) -> None:
    for i, h in enumerate(hs):
        _check_hash(h, f"{what} [{i}]", error)


def _check_size(size: int, available: int | None) -> None:
    if size < 0:
        raise TreeRangeError(f"tree size must be >= 0, got {size}")
    if available is not None and size > available:
        raise TreeRangeError(f"tree size {size} is beyond the {available} leaves stored")
