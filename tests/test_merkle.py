"""RFC 9162 Merkle trees: known vectors, exhaustive small trees, tampering, the store."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustlog.core.errors import LogCorruptionError, TrustlogError
from trustlog.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryNodeStore,
    MerkleProofError,
    TreeRangeError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_at,
    root_from_leaves,
    split_point,
    verify_consistency,
    verify_inclusion,
)
from trustlog.ingest.merkle_store import LEAVES_FILE, MerkleStore, level_file_name

VECTORS = json.loads((Path(__file__).parent / "vectors" / "merkle" / "rfc6962_8leaf.json").read_text())
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves"]]
LEAF_HASHES = [leaf_hash(x) for x in LEAVES]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots"]]

MAX_SIZE = 300
BIG = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE)]
BIG_NODES = MemoryNodeStore(BIG)
BIG_ROOTS = [BIG_NODES.root_at(n) for n in range(MAX_SIZE + 1)]


def hx(xs: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


# --- literal RFC 9162 §2.1.3.1 / §2.1.4.1 recursions, independent of core.merkle ------


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = split_point(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [root_from_leaves(d[k:])]
    return ref_path(m - k, d[k:]) + [root_from_leaves(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [root_from_leaves(d)]
    k = split_point(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [root_from_leaves(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [root_from_leaves(d[:k])]


# --- known vectors ----------------------------------------------------------------------


def test_empty_root() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves([]) == EMPTY_ROOT == CompactRange().root() == MemoryNodeStore().root()


def test_domain_separation() -> None:
    assert leaf_hash(b"") == ROOTS[1]
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[2]
    assert leaf_hash(LEAF_HASHES[0] + LEAF_HASHES[1]) != ROOTS[2]


@pytest.mark.parametrize("size", range(9))
def test_vector_roots(size: int) -> None:
    cr = CompactRange()
    cr.extend(LEAF_HASHES[:size])
    assert root_from_leaves(LEAF_HASHES[:size]) == ROOTS[size]
    assert cr.root() == ROOTS[size]
    assert root_at(size, LEAF_HASHES) == ROOTS[size]
    assert root_at(size, LEAF_HASHES.__getitem__) == ROOTS[size]
    assert MemoryNodeStore(LEAF_HASHES).root_at(size) == ROOTS[size]


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['index']}@{c['size']}")
def test_vector_inclusion(case: dict) -> None:
    index, size, path = case["index"], case["size"], hx(case["path"])
    assert inclusion_proof(index, size, LEAF_HASHES) == path
    assert inclusion_proof(index, size, MemoryNodeStore(LEAF_HASHES)) == path
    verify_inclusion(LEAF_HASHES[index], index, size, path, ROOTS[size])


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['old']}-{c['new']}")
def test_vector_consistency(case: dict) -> None:
    old, new, proof = case["old"], case["new"], hx(case["proof"])
    assert consistency_proof(old, new, LEAF_HASHES) == proof
    assert consistency_proof(old, new, MemoryNodeStore(LEAF_HASHES)) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


# Edge cases after transparency-dev/merkle TestVerifyConsistency; a size-0 tree must
# carry the RFC 9162 empty root here (stricter than that library, which accepts any).
R1, R2 = b"\x01" * 32, b"\x02" * 32


@pytest.mark.parametrize(
    "old, new, root1, root2, proof, ok",
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 1, EMPTY_ROOT, R2, [], True),
        (1, 1, R2, R2, [], True),
        (0, 0, R1, R1, [], False),  # not the empty root
        (1, 1, R1, R2, [], False),  # one size, two roots
        (1, 0, R1, R2, [], False),  # time travel
        (2, 1, R1, R2, [], False),
        (1, 2, R1, R2, [], False),  # empty proof
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),  # equal roots, proof not empty
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, R1, R1, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edges(old: int, new: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool) -> None:
    if ok:
        verify_consistency(old, new, root1, root2, proof)
    else:
        with pytest.raises(MerkleProofError):
            verify_consistency(old, new, root1, root2, proof)


def test_inclusion_edges() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)  # a one-leaf tree's root is its leaf
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)]:
        with pytest.raises(MerkleProofError, match="outside"):
            verify_inclusion(h, index, size, [], h)
    with pytest.raises(MerkleProofError, match="32 bytes"):
        verify_inclusion(b"", 0, 1, [], h)
    with pytest.raises(MerkleProofError, match="32 bytes"):
        verify_inclusion(h, 0, 1, [], b"")
    with pytest.raises(TreeRangeError):
        inclusion_proof(3, 3, LEAF_HASHES)
    with pytest.raises(TreeRangeError, match="beyond"):
        inclusion_proof(0, 9, LEAF_HASHES)
    with pytest.raises(TreeRangeError):
        consistency_proof(5, 4, LEAF_HASHES)
    assert issubclass(MerkleProofError, TrustlogError)


# --- exhaustive small trees -------------------------------------------------------------


def test_reference_recursions_agree_exhaustively() -> None:
    """Every index and every (old, new) pair up to 40 leaves equals the literal RFC
    recursion, and verifies."""
    for n in range(1, 41):
        d = BIG[:n]
        assert root_from_leaves(d) == BIG_ROOTS[n]
        for m in range(n):
            path = inclusion_proof(m, n, BIG_NODES)
            assert path == ref_path(m, d)
            verify_inclusion(d[m], m, n, path, BIG_ROOTS[n])
        for m in range(1, n + 1):
            proof = consistency_proof(m, n, BIG_NODES)
            assert proof == (ref_subproof(m, d, True) if m < n else [])
            verify_consistency(m, n, BIG_ROOTS[m], BIG_ROOTS[n], proof)


def test_compact_range_every_size() -> None:
    cr = CompactRange()
    for n in range(1, MAX_SIZE + 1):
        cr.append(BIG[n - 1])
        assert cr.root() == BIG_ROOTS[n]
        assert len(cr.peaks) == n.bit_count()
        assert CompactRange.from_peaks(n, cr.peaks).root() == BIG_ROOTS[n]
    assert BIG_ROOTS[MAX_SIZE] == root_from_leaves(BIG)


def inclusion_must_fail(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    with pytest.raises(MerkleProofError):
        verify_inclusion(leaf, index, size, proof, root)


def consistency_must_fail(old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes]) -> None:
    with pytest.raises(MerkleProofError):
        verify_consistency(old, new, r1, r2, proof)


def sample(n: int, rng: random.Random) -> set[int]:
    return {0, n // 2, n - 1, rng.randrange(n), rng.randrange(n)}


def test_inclusion_every_size_verifies_and_resists_tampering() -> None:
    rng = random.Random(9162)
    for n in range(1, MAX_SIZE + 1):
        root = BIG_ROOTS[n]
        for m in sample(n, rng):
            proof = inclusion_proof(m, n, BIG_NODES)
            leaf = BIG[m]
            verify_inclusion(leaf, m, n, proof, root)
            for i in range(len(proof)):
                inclusion_must_fail(leaf, m, n, proof[:i] + [flip(proof[i], rng.randrange(256))] + proof[i + 1:], root)
            inclusion_must_fail(flip(leaf, rng.randrange(256)), m, n, proof, root)
            inclusion_must_fail(leaf, m, n, proof, flip(root, rng.randrange(256)))
            for other in {m - 1, m + 1, m ^ 2} - {m}:
                inclusion_must_fail(leaf, other, n, proof, root)
            for size in (2 * n, n // 2):
                inclusion_must_fail(leaf, m, size, proof, root)
            inclusion_must_fail(leaf, m, n, proof + [root], root)
            inclusion_must_fail(leaf, m, n, [root] + proof, root)
            if proof:
                inclusion_must_fail(leaf, m, n, proof[:-1], root)


def test_consistency_every_size_verifies_and_resists_tampering() -> None:
    rng = random.Random(6962)
    for n in range(2, MAX_SIZE + 1):
        for m in sample(n, rng) - {0}:
            if m == n:
                continue
            proof = consistency_proof(m, n, BIG_NODES)
            r1, r2 = BIG_ROOTS[m], BIG_ROOTS[n]
            verify_consistency(m, n, r1, r2, proof)
            for i in range(len(proof)):
                consistency_must_fail(m, n, r1, r2, proof[:i] + [flip(proof[i], rng.randrange(256))] + proof[i + 1:])
            consistency_must_fail(m, n, flip(r1, rng.randrange(256)), r2, proof)
            consistency_must_fail(m, n, r1, flip(r2, rng.randrange(256)), proof)
            consistency_must_fail(m, n, r2, r1, proof)
            for old in {m - 1, m + 1, m ^ 2} - {m, 0}:
                consistency_must_fail(old, n, r1, r2, proof)
            for new in (2 * n, n // 2):
                consistency_must_fail(m, new, r1, r2, proof)
            consistency_must_fail(m, n, r1, r2, proof[:-1])
            consistency_must_fail(m, n, r1, r2, proof + [r1])
            consistency_must_fail(m, n, r1, r2, [proof[0]] + proof)


def test_every_bit_of_a_proof_matters() -> None:
    """All 256 single-bit flips of every hash, on a few shapes."""
    for m, n in [(5, 8), (6, 7), (13, 300)]:
        proof = inclusion_proof(m, n, BIG_NODES)
        for i in range(len(proof)):
            for bit in range(256):
                inclusion_must_fail(BIG[m], m, n, proof[:i] + [flip(proof[i], bit)] + proof[i + 1:], BIG_ROOTS[n])
        for bit in range(256):
            inclusion_must_fail(flip(BIG[m], bit), m, n, proof, BIG_ROOTS[n])
            inclusion_must_fail(BIG[m], m, n, proof, flip(BIG_ROOTS[n], bit))
        cproof = consistency_proof(m, n, BIG_NODES)
        for i in range(len(cproof)):
            for bit in range(256):
                tampered = cproof[:i] + [flip(cproof[i], bit)] + cproof[i + 1:]
                consistency_must_fail(m, n, BIG_ROOTS[m], BIG_ROOTS[n], tampered)


def test_the_size_is_bound_by_the_signed_checkpoint_not_the_proof() -> None:
    """RFC 9162 verification alone does not pin the size: index 0's path in 8 leaves is
    also a valid-shaped path in 7. The tree size must come from a signed checkpoint."""
    proof = inclusion_proof(0, 8, BIG_NODES)
    verify_inclusion(BIG[0], 0, 7, proof, BIG_ROOTS[8])


def tamper_one(data: st.DataObject, first: bytes, second: bytes, proof: list[bytes]
               ) -> tuple[bytes, bytes, list[bytes]]:
    """One bit flipped, as hypothesis draws it: in ``first`` (the leaf, or the old root),
    in ``second`` (the root, or the new root) or in one node of ``proof``."""
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")  # -2 first, -1 second
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        return flip(first, bit), second, proof
    if target == -1:
        return first, flip(second, bit), proof
    return first, second, proof[:target] + [flip(proof[target], bit)] + proof[target + 1:]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_hypothesis_tampered_inclusion_fails(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, MAX_SIZE), label="size")
    m = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(m, n, BIG_NODES)
    verify_inclusion(BIG[m], m, n, proof, BIG_ROOTS[n])
    leaf, root, proof = tamper_one(data, BIG[m], BIG_ROOTS[n], proof)
    inclusion_must_fail(leaf, m, n, proof, root)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_hypothesis_tampered_consistency_fails(data: st.DataObject) -> None:
    n = data.draw(st.integers(2, MAX_SIZE), label="new")
    m = data.draw(st.integers(1, n - 1), label="old")
    proof = consistency_proof(m, n, BIG_NODES)
    r1, r2 = BIG_ROOTS[m], BIG_ROOTS[n]
    verify_consistency(m, n, r1, r2, proof)
    r1, r2, proof = tamper_one(data, r1, r2, proof)
    consistency_must_fail(m, n, r1, r2, proof)


class CountingNodes:
    """A fake node store of any size: counts how many nodes a proof reads."""

    def __init__(self) -> None:
        self.reads = 0

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        return leaf_hash(b"%d/%d" % (level, index))


@pytest.mark.parametrize("size", [10_000_000, 2**24, 2**24 + 1, 12_345_677])
def test_proofs_on_huge_trees_read_few_nodes(size: int) -> None:
    bound = size.bit_length() ** 2
    for index in (0, size // 3, size - 1):
        nodes = CountingNodes()
        assert len(inclusion_proof(index, size, nodes)) <= size.bit_length()
        assert nodes.reads <= bound
    nodes = CountingNodes()
    consistency_proof(size // 3 + 1, size, nodes)
    root_at(size, nodes)
    assert nodes.reads <= 2 * bound


# --- the on-disk store -----------------------------------------------------------------


def fill(store: MerkleStore, hashes: list[bytes], rng: random.Random) -> None:
    """Append in chunks of random sizes, alternating list and packed-bytes forms."""
    i = 0
    while i < len(hashes):
        chunk = hashes[i:i + rng.randint(1, 40)]
        store.append(b"".join(chunk) if rng.random() < 0.5 else chunk)
        i += len(chunk)
        if rng.random() < 0.3:
            store.flush(fsync=False)


def test_store_roots_and_proofs_match_reference(tmp_path: Path) -> None:
    rng = random.Random(1)
    with MerkleStore.open(tmp_path) as store:
        fill(store, BIG[:200], rng)
        assert store.root() == BIG_ROOTS[200]  # some of it still unflushed
    with MerkleStore.open(tmp_path) as store:
        assert store.repairs == ()
        assert store.size == 200
        fill(store, BIG[200:], rng)
        for n in range(MAX_SIZE + 1):
            assert store.root_at(n) == BIG_ROOTS[n]
        assert store.root() == root_from_leaves(BIG)
        for n in (1, 2, 7, 64, 65, 199, 200, 255, 256, 257, MAX_SIZE):
            for m in sample(n, rng):
                assert store.inclusion_proof(m, n) == ref_path(m, BIG[:n])
                if 0 < m < n:
                    assert store.consistency_proof(m, n) == ref_subproof(m, BIG[:n], True)
        assert store.inclusion_proof(3) == inclusion_proof(3, MAX_SIZE, BIG)
        assert store.consistency_proof(77) == consistency_proof(77, MAX_SIZE, BIG)
        store.verify_integrity()


def test_store_append_leaves_and_bad_input(tmp_path: Path) -> None:
    with MerkleStore.open(tmp_path) as store:
        assert store.root() == EMPTY_ROOT
        assert store.append_leaves(LEAVES) == 8
        assert store.root() == ROOTS[8]
        with pytest.raises(TreeRangeError, match="append_leaves"):
            store.append([LEAF_HASHES[0], b"short"])
        with pytest.raises(TreeRangeError, match="multiple of 32"):
            store.append(b"x" * 33)
        assert store.size == 8  # a bad batch appends nothing
        with pytest.raises(TreeRangeError):
            store.root_at(9)
        with pytest.raises(TreeRangeError):
            store.inclusion_proof(8)


def test_store_torn_tail_is_detected_and_cut(tmp_path: Path) -> None:
    with MerkleStore.open(tmp_path) as store:
        store.append(BIG[:100])
    leaves = tmp_path / LEAVES_FILE
    os.truncate(leaves, 90 * 32 + 17)  # a crash in the middle of writing hash 90
    with MerkleStore.open(tmp_path) as store:
        assert store.size == 90  # the log re-appends leaves 90.. from its records
        assert any("leaves.hashes" in r and "torn" in r for r in store.repairs)
        assert any("level-01.hashes" in r and "cut" in r for r in store.repairs)
        assert store.root() == BIG_ROOTS[90]
        store.verify_integrity()
        store.append(BIG[90:])
        assert store.root() == BIG_ROOTS[MAX_SIZE]
    assert leaves.stat().st_size == MAX_SIZE * 32


def test_store_rebuilds_short_or_missing_level_files(tmp_path: Path) -> None:
    with MerkleStore.open(tmp_path) as store:
        store.append(BIG)
    os.truncate(tmp_path / level_file_name(1), 10 * 32 + 3)
    (tmp_path / level_file_name(4)).unlink()
    with MerkleStore.open(tmp_path) as store:
        assert any("level-01.hashes: rebuilt" in r for r in store.repairs)
        assert any("level-04.hashes: rebuilt" in r for r in store.repairs)
        store.verify_integrity()
        assert store.root() == BIG_ROOTS[MAX_SIZE]
        assert store.inclusion_proof(123) == inclusion_proof(123, MAX_SIZE, BIG)
    assert (tmp_path / level_file_name(4)).stat().st_size == (MAX_SIZE >> 4) * 32


def test_store_detects_a_corrupt_level_hash(tmp_path: Path) -> None:
    with MerkleStore.open(tmp_path) as store:
        store.append(BIG)
    with open(tmp_path / level_file_name(2), "r+b") as f:
        f.seek(5 * 32)
        f.write(b"\xff")
    with MerkleStore.open(tmp_path) as store:
        with pytest.raises(LogCorruptionError, match=r"level-02.hashes at byte 160"):
            store.verify_integrity()


def test_store_truncate_for_recovery(tmp_path: Path) -> None:
    with MerkleStore.open(tmp_path) as store:
        store.append(BIG[:150])
        store.flush()
        store.append(BIG[150:])
        store.truncate(120)
        assert store.size == 120 and store.root() == BIG_ROOTS[120]
        store.append(BIG[120:])
        assert store.root() == BIG_ROOTS[MAX_SIZE]
    with MerkleStore.open(tmp_path) as store:
        assert store.repairs == ()
        store.verify_integrity()
