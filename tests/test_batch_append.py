"""The ingest append of a whole batch in one call into C (``_fastfold.frame_records``,
``_fastfold.compact_append``) against its pure-Python twin (``segment_log._frame_records_py``,
``CompactRange.append`` per leaf): the same frames, segment index entries, leaf hashes and
tree nodes for every input, and the same log directory from a whole ingest."""
from __future__ import annotations

import hashlib
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require_compiled_fold
from trustlog.core.keys import SigningKey
from trustlog.core.merkle import CompactRange, leaf_hash
from trustlog.ingest import merkle_store, segment_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import KafkaPosition, LogClock
from trustlog.ingest.synthetic import SyntheticRegistry


@pytest.fixture(scope="module")
def compiled():
    """The compiled module; under CI=true a missing build fails."""
    return require_compiled_fold()


def _frame(fn, bodies, start, size, count, segment_bytes, interval, index, with_leaves):
    rel, pos = array("I", index[0]), array("Q", index[1])
    pending = bytearray(b"prior")
    leaves = bytearray(b"L" * 32) if with_leaves else None
    out = fn(bodies, start, pending, leaves, size, count, segment_bytes, interval, rel, pos)
    return out, bytes(pending), None if leaves is None else bytes(leaves), list(rel), list(pos)


@settings(max_examples=300, deadline=None)
@given(bodies=st.lists(st.binary(max_size=200), max_size=30), data=st.data(),
       size=st.integers(0, 3000), count=st.integers(0, 50), segment_bytes=st.sampled_from([1, 100, 1000, 1 << 20]),
       interval=st.sampled_from([1, 64, 4096]), indexed=st.booleans(), with_leaves=st.booleans())
def test_frame_records_is_its_python_twin(compiled, bodies, data, size, count, segment_bytes, interval, indexed,
                                          with_leaves) -> None:
    start = data.draw(st.integers(0, len(bodies)))
    if count == 0:
        size = 0
    index = ([0], [max(0, size - data.draw(st.integers(0, 200)))]) if indexed and count else ([], [])
    args = (bodies, start, size, count, segment_bytes, interval, index, with_leaves)
    c, py = _frame(compiled.frame_records, *args), _frame(segment_log._frame_records_py, *args)
    assert c == py
    (nxt, new_size, new_count), pending, leaves, _, _ = py
    taken = bodies[start:nxt]
    assert pending == b"prior" + b"".join(segment_log.encode_frame(b) for b in taken)
    assert new_count - count == len(taken) and new_size - size == sum(8 + len(b) for b in taken)
    if with_leaves:
        assert leaves == b"L" * 32 + b"".join(leaf_hash(b) for b in taken)


def test_frame_records_refuses_what_is_not_bytes(compiled) -> None:
    with pytest.raises(TypeError, match="bytes"):
        compiled.frame_records([b"a", bytearray(b"b")], 0, bytearray(), None, 0, 0, 1 << 20, 64, array("I"),
                               array("Q"))
    with pytest.raises(ValueError, match="start"):
        compiled.frame_records([b"a"], 2, bytearray(), None, 0, 0, 1 << 20, 64, array("I"), array("Q"))


def _leaves(n: int, seed: int) -> list[bytes]:
    return [hashlib.sha256(b"%d/%d" % (seed, i)).digest() for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(before=st.integers(0, 300), n=st.integers(0, 300), seed=st.integers(0, 5))
def test_compact_append_is_compact_range_append(compiled, before, n, seed) -> None:
    old, new = _leaves(before, seed), _leaves(n, seed + 100)
    ref = CompactRange()
    ref.extend(old)
    seen: dict[int, bytearray] = {}
    peaks = list(ref.peaks)
    ref.extend(new, lambda level, h: seen.setdefault(level, bytearray()).extend(h))
    nodes: list[bytearray] = []
    assert compiled.compact_append(peaks, before, b"".join(new), nodes) == before + n == ref.size
    assert tuple(peaks) == ref.peaks
    assert {lv: bytes(b) for lv, b in enumerate(nodes) if lv and b} == {lv: bytes(b) for lv, b in seen.items()}
    assert all(not b for lv, b in enumerate(nodes) if lv not in seen)


def test_compact_append_refuses_bad_input(compiled) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        compiled.compact_append([], 0, b"x" * 33, [])
    with pytest.raises(ValueError, match="peaks"):
        compiled.compact_append([], 3, b"x" * 32, [])


def _events() -> list[bytes]:
    reg = SyntheticRegistry(8, 200, ref_time=1_900_000_000)
    envs = [*reg.phase1(), *reg.phase2(2**62)]
    return [e.to_bytes() for e in envs] + [b"\x00junk %d" % i for i in range(5)]


def _ingest(path: Path, raws: list[bytes]) -> dict[str, bytes]:
    """Ingest ``raws`` in batches of varied sizes; every file of the log directory."""
    with TrustLog(path, clock=LogClock(lambda: 0), log_key=SigningKey.from_seed(b"batch-append"),
                  segment_bytes=8192, checkpoint_every=150, snapshot_every=None) as tl:
        i, k = 0, 1
        while i < len(raws):
            tl.ingest_batch([(r, KafkaPosition("t", 0, i + j)) for j, r in enumerate(raws[i:i + k])])
            i += k
            k = k * 3 % 97 + 1
        root = tl.tree.merkle.root()
    files = {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    files["root"] = root
    return files


def test_a_log_ingested_in_c_is_the_python_one(compiled, tmp_path, monkeypatch) -> None:
    """Byte-identical segments, segment indexes, Merkle levels, key/repository indexes,
    checkpoints and root from the compiled append and the pure-Python one."""
    raws = _events()
    monkeypatch.setattr(segment_log, "_FRAMES", compiled)
    monkeypatch.setattr(merkle_store, "_COMPACT", compiled)
    c = _ingest(tmp_path / "c", raws)
    monkeypatch.setattr(segment_log, "_FRAMES", None)
    monkeypatch.setattr(merkle_store, "_COMPACT", None)
    py = _ingest(tmp_path / "py", raws)
    assert sum(name.endswith(".seg") for name in c) > 5  # several segment rolls
    assert any("/level" in name or name.startswith("merkle/") for name in c)
    assert c.keys() == py.keys()
    assert [name for name in c if c[name] != py[name]] == []
