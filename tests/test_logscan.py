"""The compiled checks of a log's derived files (ingest/_logscan.pyx) and their Python
twins give the same answer on every input: valid files, and files damaged anywhere
(the caller then rebuilds or refuses the same way; LogCorruptionError and rebuild
notices come from the callers, tests/test_segment_log.py and tests/test_derived_files.py)."""
from __future__ import annotations

import os

import struct
from array import array

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_or_skip
from trustlog.ingest import logindex, segment_log
from trustlog.ingest.logindex import _walk_postings_py
from trustlog.ingest.segment_log import _INDEX_MAGIC, _index_entries_py

try:
    from trustlog.ingest import _logscan
except ImportError as e:
    require_or_skip("the compiled log scan (ingest/_logscan.pyx; build it with `pip install -e .`)", e)

ENTRY, TRAILER = struct.Struct(">IQ"), struct.Struct(">4sQQI")
BLOCK, PENTRY = struct.Struct(">IIQI"), struct.Struct(">QQII")
NONE = 0xFFFFFFFFFFFFFFFF
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _index_file(entries, seg_size: int, count: int, magic: bytes = _INDEX_MAGIC) -> bytes:
    head = b"".join(ENTRY.pack(r, p) for r, p in entries) + TRAILER.pack(magic, seg_size, count, 0)[:-4]
    return head + struct.pack(">I", crc32c.crc32c(head))


def _same_entries(data: bytes, seg_size: int, count: int) -> None:
    want = _index_entries_py(data, seg_size, count, _INDEX_MAGIC)
    got = _logscan.index_entries(data, seg_size, count, _INDEX_MAGIC)
    if want is None:
        assert got is None
    else:
        assert got is not None and got[0].typecode == "I" and got[1].typecode == "Q"
        assert (got[0].tolist(), got[1].tolist()) == (want[0].tolist(), want[1].tolist())


def test_the_callers_use_the_compiled_checks() -> None:
    # the choice is made at import (another test may switch fold_backend.BACKEND later)
    if os.environ.get("TRUSTLOG_PUREPYTHON") != "1":
        assert segment_log._index_entries is _logscan.index_entries
        assert logindex._walk_postings is _logscan.walk_postings


def _increasing(n: int, step: int = 7):
    return [(i * 3, i * step) for i in range(n)]


@pytest.mark.parametrize("entries,seg_size,count,valid", [
    (_increasing(1), 100, 1, True),
    (_increasing(5), 100, 13, True),
    (_increasing(5), 28, 13, False),          # the last entry is past the segment
    (_increasing(5), 29, 12, False),          # the last entry's record is past the count
    (_increasing(5), 29, 13, True),
    ([(0, 0), (1, 10), (1, 20)], 100, 5, False),   # a relative offset repeats
    ([(0, 0), (2, 10), (1, 20)], 100, 5, False),   # goes back
    ([(0, 0), (1, 10), (2, 10)], 100, 5, False),   # a position repeats
    ([(1, 0)], 100, 5, False),                # not starting at (0, 0)
    ([(0, 1)], 100, 5, False),
    ([(0, 0)], 100, 0, False),                # no records
])
def test_index_entries_table(entries, seg_size: int, count: int, valid: bool) -> None:
    data = _index_file(entries, seg_size, count)
    assert (_index_entries_py(data, seg_size, count, _INDEX_MAGIC) is not None) is valid
    _same_entries(data, seg_size, count)
    _same_entries(data, seg_size + 1, count)   # the segment is not the one the index describes
    _same_entries(data, seg_size, count + 1)
    _same_entries(_index_file(entries, seg_size, count, b"TLX0"), seg_size, count)
    for cut in range(len(data)):               # truncated anywhere
        _same_entries(data[:cut], seg_size, count)
    for i in range(len(data) * 8):             # any one bit flipped
        b = bytearray(data)
        b[i // 8] ^= 1 << (i % 8)
        _same_entries(bytes(b), seg_size, count)


@SETTINGS
@given(rels=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
       poss=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20),
       sort=st.booleans(), zero=st.booleans(), seg_size=st.integers(0, 2**64 - 1),
       count=st.integers(0, 2**64 - 1), near=st.booleans())
def test_index_entries_agree(rels, poss, sort, zero, seg_size, count, near) -> None:
    n = min(len(rels), len(poss))
    rels, poss = rels[:n], poss[:n]
    if sort:
        rels, poss = sorted(rels), sorted(poss)
    if zero:
        rels[0], poss[0] = 0, 0
    entries = list(zip(rels, poss))
    if near:  # sizes around the last entry, where the bounds checks bite
        seg_size, count = min(2**64 - 1, poss[-1] + seg_size % 3), min(2**64 - 1, rels[-1] + count % 3)
    _same_entries(_index_file(entries, seg_size, count), seg_size, count)


@SETTINGS
@given(data=st.binary(max_size=200), seg_size=st.integers(0, 300), count=st.integers(0, 50))
def test_index_entries_agree_on_any_bytes(data: bytes, seg_size: int, count: int) -> None:
    _same_entries(data, seg_size, count)


# -- postings.dat --------------------------------------------------------------------


def _postings(blocks) -> tuple[bytes, array]:
    """Blocks ``(name id, entries)`` chained as the index writes them; and the heads."""
    out = bytearray()
    last: dict[int, int] = {}
    for nid, n in blocks:
        body = b"".join(PENTRY.pack(i, i + 1, i, 0) for i in range(n))
        out += BLOCK.pack(nid, n, last.get(nid, NONE), crc32c.crc32c(body)) + body
        last[nid] = len(out) - len(body) - BLOCK.size
    names = max((nid for nid, _ in blocks), default=-1) + 1
    return bytes(out), array("Q", [last.get(i, NONE) for i in range(names)])


def _same_walk(data: bytes, heads: array) -> tuple[int, int]:
    want = _walk_postings_py(data, heads)
    assert _logscan.walk_postings(data, heads) == want
    return want


def test_walk_postings_codes() -> None:
    data, heads = _postings([(0, 2), (1, 1), (0, 3), (2, 0), (1, 2)])
    assert _same_walk(data, heads) == (logindex.WALK_OK, 0)
    assert _same_walk(b"", array("Q")) == (logindex.WALK_OK, 0)
    assert _same_walk(data + b"\0" * 5, heads)[0] == logindex.WALK_SHORT
    assert _same_walk(data, array("Q", list(heads)[:-1]))[0] == logindex.WALK_MALFORMED  # a name id too big
    assert _same_walk(data, array("Q", [heads[1], heads[0], heads[2]]))[0] == logindex.WALK_HEADS
    assert _same_walk(data[:-1], heads)[0] == logindex.WALK_MALFORMED  # the last block runs past the end
    b = bytearray(data)
    b[BLOCK.size] ^= 1
    assert _same_walk(bytes(b), heads) == (logindex.WALK_CRC, 0)
    assert (logindex.WALK_OK, logindex.WALK_SHORT, logindex.WALK_MALFORMED, logindex.WALK_CRC, logindex.WALK_HEADS) \
        == (_logscan.WALK_OK, _logscan.WALK_SHORT, _logscan.WALK_MALFORMED, _logscan.WALK_CRC, _logscan.WALK_HEADS)


def test_walk_postings_agree_on_any_damage() -> None:
    data, heads = _postings([(0, 1), (1, 2), (0, 1), (2, 1), (1, 1)])
    for cut in range(len(data)):
        _same_walk(data[:cut], heads)
    for i in range(len(data) * 8):
        b = bytearray(data)
        b[i // 8] ^= 1 << (i % 8)
        _same_walk(bytes(b), heads)


@SETTINGS
@given(blocks=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), max_size=12),
       data=st.data())
def test_walk_postings_agree(blocks, data) -> None:
    raw, heads = _postings(blocks)
    if raw and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1:]
    if data.draw(st.booleans()):
        heads = array("Q", data.draw(st.lists(st.sampled_from([NONE, 0, 20, 44, 68]), max_size=6)))
    _same_walk(raw, heads)


# -- the keys a segment introduces (a hint for the replay's helper thread) -------------

_KEY = b"\xa7keytype\xa7ed25519\xa6public\xc4\x20"


def _keys_reference(data: bytes) -> list[bytes]:
    out: dict[bytes, None] = {}
    i = data.find(_KEY)
    while i >= 0 and i + len(_KEY) + 32 <= len(data):
        out[data[i + len(_KEY):i + len(_KEY) + 32]] = None
        i = data.find(_KEY, i + len(_KEY) + 32)
    return list(out)


def test_ed25519_keys_finds_the_keys_events_introduce() -> None:
    from trustlog.core.events import RepoCreated, RoleKeysSet, sign_event
    from trustlog.core.keys import SigningKey
    from trustlog.ingest.records import LogRecord, encode_record

    r, t, c = (SigningKey.from_seed(s) for s in (b"ks-root", b"ks-targets", b"ks-ci"))
    evs = [RepoCreated("registry.example.com/a/b", 1, 0, [r.public_key], 1, [t.public_key], 1, 99),
           RoleKeysSet("registry.example.com/a/b", 2, 0, "targets/ci", [c.public_key, r.public_key], 1, 99, ["*"])]
    seg = b"".join(encode_record(LogRecord(i, sign_event(e, [r]).to_bytes(), None)) for i, e in enumerate(evs))
    want = [r.public_key.public, t.public_key.public, c.public_key.public]
    assert _logscan.ed25519_keys(seg) == want == _keys_reference(seg)
    assert _logscan.ed25519_keys(seg[:-10]) == _keys_reference(seg[:-10])


@SETTINGS
@given(parts=st.lists(st.one_of(st.binary(max_size=40), st.just(_KEY), st.just(_KEY[:-1]),
                                st.just(_KEY + b"k" * 32)), max_size=12))
def test_ed25519_keys_agree(parts) -> None:
    data = b"".join(parts)
    assert _logscan.ed25519_keys(data) == _keys_reference(data)


def _count_point_checks(monkeypatch) -> list[bytes]:
    """The keys libsodium's point check is asked about from now on (cache misses)."""
    import nacl.bindings

    asked: list[bytes] = []
    real = nacl.bindings.crypto_core_ed25519_is_valid_point

    def counted(public: bytes) -> bool:
        asked.append(public)
        return real(public)

    monkeypatch.setattr(nacl.bindings, "crypto_core_ed25519_is_valid_point", counted)
    return asked


def test_the_compiled_point_checks_are_libsodiums_through_pynacl(monkeypatch) -> None:
    """``_logscan.ed25519_points_ok`` (without the GIL, beside a fold) gives PyNaCl's
    verdict on valid keys, small-order points, non-canonical encodings and points off
    the subgroup; recorded, those verdicts are what validate_public_key answers."""
    import nacl.bindings

    from trustlog.core import keys
    from trustlog.core.keys import PublicKey, SigningKey, validate_public_key

    good = [SigningKey.from_seed(b"warm%d" % i).public_key.public for i in range(3)]
    small = b"\x01" + b"\x00" * 31                       # the neutral point: small order
    noncanonical = b"\xee" + b"\xff" * 30 + b"\x7f"       # y >= p
    torsion = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa")  # order 8
    mixed = bytearray(good[0])
    mixed[0] ^= 1                                         # most such strings are off the subgroup
    rnd = [bytes((i * 37 + j) % 256 for j in range(32)) for i in range(40)]
    publics = good + [small, noncanonical, torsion, bytes(mixed)] + rnd
    want = bytes(1 if nacl.bindings.crypto_core_ed25519_is_valid_point(p) else 0 for p in publics)
    assert _logscan.ed25519_points_ok(publics) == want
    assert want[:3] == b"\x01\x01\x01" and want[3:6] == b"\x00\x00\x00"
    assert _logscan.ed25519_points_ok([]) == b""
    with pytest.raises(ValueError):
        _logscan.ed25519_points_ok([b"short"])
    keys.clear_key_caches()
    assert keys.unchecked_points(publics) == publics
    keys.record_point_checks(publics, want)
    assert keys.unchecked_points(publics + [b"\x09" * 32]) == [b"\x09" * 32]
    asked = _count_point_checks(monkeypatch)
    for p, v in zip(publics, want):
        if v:
            assert validate_public_key(PublicKey("ed25519", p)).public == p
        else:
            with pytest.raises(keys.InvalidKeyError):
                validate_public_key(PublicKey("ed25519", p))
    assert asked == []                                    # every answer came from the record
    with pytest.raises(ValueError):
        keys.record_point_checks(publics, want[:-1])


def test_clearing_the_key_caches_makes_the_next_check_a_miss_with_the_same_answer(monkeypatch) -> None:
    """What the replay benchmark relies on for a fresh-process figure: after
    clear_key_caches() a check is computed again (a miss), and answers as before."""
    from trustlog.core import keys
    from trustlog.core.keys import PublicKey, SigningKey, key_material_id, validate_public_key

    pub = SigningKey.from_seed(b"clear-caches").public_key.public
    bad = b"\x01" + b"\x00" * 31
    ident = key_material_id(PublicKey("ed25519", pub))
    validate_public_key(PublicKey("ed25519", pub))
    keys.clear_key_caches()
    assert not keys._point_ok
    for f in (keys._material_id, keys._rsa_key, keys._p256_key):
        assert f.cache_info().currsize == 0
    asked = _count_point_checks(monkeypatch)
    assert validate_public_key(PublicKey("ed25519", pub)).public == pub
    assert asked == [pub]
    assert key_material_id(PublicKey("ed25519", pub)) == ident
    with pytest.raises(keys.InvalidKeyError):
        validate_public_key(PublicKey("ed25519", bad))
