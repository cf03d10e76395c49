"""Record format v2 (``ingest/record_v2.py``, its C reader ``ingest/_record_v2.h``):
every event kind round-trips; v2 is written exactly when it re-derives the v1 bytes;
mutated v2 bytes decode to a record that re-encodes to them or are refused, never read
as another record; the C and Python readers agree on v1, v2 and malformed records; logs
holding both formats open, replay and verify."""
from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_compiled_fold
from logtools import history
from trustlog.core.encoding import canonical_bytes
from trustlog.core.errors import EncodingError
from trustlog.core.events import (
    Envelope, ImageSigned, KeyCompromised, MetadataImported, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated,
    Signature, TagDeleted, decode_envelope, decode_event, sign_event,
)
from trustlog.core.keys import SigningKey
from trustlog.core.state import TrustState
from trustlog.ingest import pipeline, record_v2
from trustlog.ingest import records as records_mod
from trustlog.ingest.logcheck import verify_log
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import (
    KafkaPosition, LogRecord, decode_record, decode_record_trusted, encode_record, encode_record_v1, record_format,
)
from trustlog.ingest.replay import TrustedFold, fold_log, new_fold
from trustlog.ingest.segment_log import SegmentLog

KEYS = [SigningKey.from_seed(b"v2/a"), SigningKey.from_seed(b"v2/b")]
i64 = st.integers(-(2**63), 2**63 - 1)
u63 = st.integers(0, 2**63 - 1)
texts = st.text(max_size=40) | st.sampled_from(["", "targets", "targets/ci", "x" * 31, "y" * 32, "z" * 300])
hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)
digests = st.one_of(hexes.map(lambda h: "sha256:" + h), hexes.map(lambda h: "sha256:" + h.upper()), texts,
                    st.just("sha256:" + "a" * 63), st.just("sha512:" + "a" * 64))
keyids = st.one_of(hexes, hexes.map(str.upper), texts, hexes.map(lambda h: h[:63]))
pubkeys = st.builds(lambda k: k.public_key, st.sampled_from(KEYS))
positions = st.builds(KafkaPosition, topic=texts, partition=st.integers(0, 2**31 - 1), offset=u63)


def _base(_kind: type) -> dict:
    return {"repo": texts, "version": i64, "issued_at": i64}


events = st.one_of(
    st.builds(ImageSigned, **_base(ImageSigned), role=texts, tag=texts, digest=digests, size=i64, expires=i64),
    st.builds(RepoCreated, **_base(RepoCreated), root_keys=st.lists(pubkeys, max_size=2), root_threshold=i64,
              targets_keys=st.lists(pubkeys, max_size=2), targets_threshold=i64, expires=i64),
    st.builds(RootRotated, **_base(RootRotated), root_keys=st.lists(pubkeys, max_size=2), root_threshold=i64,
              expires=i64),
    st.builds(RoleKeysSet, **_base(RoleKeysSet), role=texts, keys=st.lists(pubkeys, max_size=2), threshold=i64,
              expires=i64, paths=st.lists(texts, max_size=3)),
    st.builds(RoleRemoved, **_base(RoleRemoved), role=texts),
    st.builds(KeyCompromised, **_base(KeyCompromised), keyid=keyids, since=i64, note=texts),
    st.builds(TagDeleted, **_base(TagDeleted), role=texts, tag=texts),
    st.builds(MetadataImported, **_base(MetadataImported), role=texts, metadata=st.binary(max_size=100)),
)
images = st.builds(
    ImageSigned, repo=texts, version=i64, issued_at=i64, role=texts, tag=texts, digest=digests, size=i64,
    expires=i64)
signatures = st.lists(st.builds(Signature, keyid=keyids, sig=st.binary(max_size=80)), max_size=4)
envelopes = st.builds(lambda ev, sigs: Envelope(canonical_bytes(ev), sigs), events, signatures)
records = st.builds(lambda t, env, src: LogRecord(t, env.to_bytes(), src), u63, envelopes, st.none() | positions)
image_records = st.builds(lambda t, ev, sigs, src: LogRecord(t, Envelope(canonical_bytes(ev), sigs).to_bytes(), src),
                          u63, images, signatures, st.none() | positions)


def _v1_fields(rec: LogRecord):
    """What a reader takes from a record: (log_time, source, [(keyid, sig)], payload)."""
    env = decode_envelope(rec.envelope, max_bytes=1 << 30)
    src = None if rec.source is None else (rec.source.topic.encode(), rec.source.partition, rec.source.offset)
    return rec.log_time, src, [(s.keyid.encode(), s.sig) for s in env.signatures], env.payload


@pytest.fixture(scope="module")
def compiled():
    """The compiled fold's module; under CI=true a missing build fails."""
    return require_compiled_fold()


# -- the format ------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(records)
def test_every_kind_round_trips(rec: LogRecord) -> None:
    data = encode_record(rec)
    assert record_format(data) == 2 and data[0] == record_v2.MARKER
    assert decode_record(data) == rec
    assert encode_record(decode_record(data)) == data
    t_rec, env, ev = decode_record_trusted(data)
    assert t_rec == rec and env == decode_envelope(rec.envelope, max_bytes=1 << 30)
    assert ev == decode_event(env.payload)
    # the v1 form of the same record still decodes, to the same record (old logs)
    v1 = encode_record_v1(rec)
    assert record_format(v1) == 1 and decode_record(v1) == rec and decode_record_trusted(v1) == (t_rec, env, ev)


@settings(max_examples=200, deadline=None)
@given(records, envelopes)
def test_the_decoded_envelope_a_writer_passes_is_only_a_shortcut(rec: LogRecord, other: Envelope) -> None:
    """``encode_record(rec, env, event)`` is ``encode_record(rec)`` when they are the
    record's; wrong ones can only make the record stay v1, never store another record."""
    env = decode_envelope(rec.envelope, max_bytes=1 << 30)
    assert encode_record(rec, env, decode_event(env.payload)) == encode_record(rec)
    data = encode_record(rec, other, decode_event(other.payload))
    assert decode_record(data) == rec


def test_no_v1_record_starts_with_the_marker() -> None:
    """A v1 record is a MessagePack map (fixmap, map16, map32): never 0xC1."""
    rec = LogRecord(1, b"e")
    assert encode_record_v1(rec)[0] & 0xF0 == 0x80
    with pytest.raises(msgspec.DecodeError):
        msgspec.msgpack.decode(b"\xc1")  # "never used" in MessagePack
    with pytest.raises(EncodingError):
        decode_record(b"\xc1")


@st.composite
def maybe_canonical_envelopes(draw) -> bytes:
    """Envelope bytes that are canonical or not: reordered keys, a non-canonical payload,
    trailing bytes, an integer in a longer form, or not an envelope at all."""
    env = draw(envelopes)
    how = draw(st.sampled_from(["canonical", "reordered", "payload-reordered", "trailing", "long-int", "junk"]))
    if how == "canonical":
        return env.to_bytes()
    if how == "reordered":
        return msgspec.msgpack.encode({"signatures": env.signatures, "payload": env.payload})
    if how == "payload-reordered":
        p = msgspec.msgpack.decode(env.payload)
        p = dict(reversed(list(p.items())))
        return Envelope(msgspec.msgpack.encode(p), env.signatures).to_bytes()
    if how == "trailing":
        return env.to_bytes() + b"\xc0"
    if how == "long-int":  # a payload with its version in 9 bytes: the envelope is still canonical
        at = env.payload.find(b"\xa7version")
        b = env.payload[at + 8] if at >= 0 else 0xFF
        if b >= 0x80:
            return env.to_bytes()
        p = env.payload[:at + 8] + b"\xd3" + b.to_bytes(8, "big") + env.payload[at + 9:]
        return Envelope(p, env.signatures).to_bytes()
    return draw(st.binary(max_size=60))


@settings(max_examples=300, deadline=None)
@given(u63, maybe_canonical_envelopes(), st.none() | positions)
def test_v2_is_written_iff_it_re_derives_the_v1_bytes(log_time: int, envelope: bytes, source) -> None:
    rec = LogRecord(log_time, envelope, source)
    data = encode_record(rec)
    try:
        exact = canonical_bytes(msgspec.msgpack.decode(envelope, type=Envelope)) == envelope
    except (msgspec.DecodeError, msgspec.ValidationError):
        exact = False
    assert (record_format(data) == 2) == exact
    assert decode_record(data) == rec
    if exact:
        assert decode_record_trusted(data)[0] == rec
    else:
        assert data == encode_record_v1(rec)


def test_an_image_signed_is_stored_as_fields_and_is_compact() -> None:
    key = KEYS[0]
    ev = ImageSigned("registry.example.com/team/app-0001", 1_700_000_123, 1_700_000_000, "targets", "v1.7",
                     "sha256:" + "ab" * 32, 12_345, 4_102_444_800)
    rec = LogRecord(1_764_000_000_000_000_000, sign_event(ev, [key]).to_bytes(), None)
    data, v1 = encode_record(rec), encode_record_v1(rec)
    assert type(record_v2._parse(data).event) is record_v2._Image
    assert key.keyid.encode() not in data and bytes.fromhex(key.keyid) in data
    assert ev.digest.encode() not in data and bytes.fromhex(ev.digest[7:]) in data
    assert len(v1) - len(data) >= 190, (len(v1), len(data))  # keys, hex, "targets", nesting


def test_other_spellings_of_a_v2_record_are_refused() -> None:
    """The fields in another encoding of the same values, or the record in the form the
    writer does not choose, are refused by the strict decoder (the trusted one reads
    them; the Merkle tree covers such bytes)."""
    ev = ImageSigned("r", 5, 1, "targets", "t", "sha256:" + "cd" * 32, 3, 9)
    env = sign_event(ev, [KEYS[0]])
    rec = LogRecord(7, env.to_bytes(), None)
    body = record_v2._parse(encode_record(rec))
    image = body.event
    others = {
        "role-spelled-out": msgspec.structs.replace(body, event=msgspec.structs.replace(image, role="targets")),
        "digest-as-text": msgspec.structs.replace(body, event=msgspec.structs.replace(image, digest=ev.digest)),
        "keyid-as-text": msgspec.structs.replace(body, signatures=[(KEYS[0].keyid, env.signatures[0].sig)]),
        "payload-verbatim": msgspec.structs.replace(body, event=env.payload),
    }
    for name, other in others.items():
        data = b"\xc1" + msgspec.msgpack.encode(other)
        with pytest.raises(EncodingError, match="canonical"):
            decode_record(data)
        assert decode_record_trusted(data)[0] == rec, name
    long_int = encode_record(rec).replace(b"\x07", b"\xd3" + b"\x00" * 7 + b"\x07", 1)  # log_time 7, 9 bytes
    assert decode_record_trusted(long_int)[0] == rec
    with pytest.raises(EncodingError, match="canonical"):
        decode_record(long_int)


@pytest.mark.parametrize("body", [
    [1, None, [[b"\x00" * 31, b"s"]], b"\x80"],                          # a raw key id is 32 bytes
    [1, None, [], ["r", 1, 1, None, "t", b"\x00" * 33, 1, 2]],          # a raw digest is 32 bytes
    [-1, None, [], b"\x80"],                                              # log time >= 0
    [1, ["t", -1, 0], [], b"\x80"],                                       # partition >= 0
    [1, None, [], b"\x80", "extra"],
    [1, None, []],
    [1, None, [], "payload as text"],
    [1, None, [], ["r", 1, 1, None, "t", "d", 1]],
])
def test_malformed_v2_records_are_refused(body) -> None:
    data = b"\xc1" + msgspec.msgpack.encode(body)
    with pytest.raises(EncodingError):
        decode_record(data)
    with pytest.raises(EncodingError):
        decode_record_trusted(data)


@st.composite
def mutated(draw, of=records, encode=encode_record) -> bytes:
    """A record's bytes with one to three bytes flipped, cut, inserted or deleted
    (never the first: a v2 record stays one)."""
    data = bytearray(encode(draw(of)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = draw(st.integers(1, len(data)))
        if how == "flip" and i < len(data):
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[i:]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif i < len(data):
            del data[i]
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), mutated(image_records)))
def test_mutated_v2_bytes_are_never_read_as_another_record(data: bytes) -> None:
    try:
        rec = decode_record(data)
    except EncodingError:
        return
    assert encode_record(rec) == data  # the one byte form of what it decoded to


# -- the C reader ----------------------------------------------------------------------

def _python_reads(data: bytes):
    """The trusted Python decoder's reading in the C reader's terms, or None if it refuses."""
    try:
        rec, env, _ = decode_record_trusted(data)
    except EncodingError:
        return None
    return _v1_fields(rec)




@settings(max_examples=300, deadline=None)
@given(images, signatures, u63, st.none() | positions)
def test_c_and_python_readers_agree_on_both_formats(compiled, ev, sigs, log_time, source) -> None:
    rec = LogRecord(log_time, Envelope(canonical_bytes(ev), sigs).to_bytes(), source)
    v1, v2 = encode_record_v1(rec), encode_record(rec)
    assert record_format(v2) == 2
    want = _v1_fields(rec)
    c1, c2 = compiled.parse_record(v1), compiled.parse_record(v2)
    # the C reader reads every ImageSigned within int64 and 128 signatures (else falls back)
    assert c1 == want and c2 == want


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), mutated(image_records), mutated(image_records, encode_record_v1),
                 records.map(encode_record_v1), image_records.map(encode_record)))
def test_c_reader_never_reads_what_python_reads_otherwise(compiled, data: bytes) -> None:
    """On any body (valid, malformed, of either format) the C reader either declines
    or reads exactly what the trusted Python decoder reads."""
    got = compiled.parse_record(data)
    if got is not None:
        want = _python_reads(data)
        if want is None:  # only text that is not UTF-8, which the fast path never takes (see below)
            assert _not_utf8(got), (got, data)
        else:
            assert got == want


def _not_utf8(got) -> bool:
    """Whether a C reading has a key id or payload text that is not UTF-8: the C reader
    leaves text as bytes, and the fast path matches key ids, repository and role against
    the (UTF-8) names the state holds and checks tag and digest as ASCII, so such a
    record always goes to the Python decoder, which refuses it."""
    _, _, sigs, payload = got
    try:
        for k, _ in sigs:
            k.decode()
        msgspec.msgpack.decode(payload)
    except (UnicodeDecodeError, msgspec.DecodeError):
        return True
    return False


# -- logs ------------------------------------------------------------------------------

def test_a_log_of_both_formats_opens_replays_and_verifies(tmp_path: Path, monkeypatch) -> None:
    """An old log (v1 records), extended by this writer (v2): it opens, both folds
    rebuild the same state as the validating fold, and `log verify` passes."""
    events = history(12)
    d = tmp_path / "log"
    with monkeypatch.context() as m:
        m.setattr(pipeline, "encode_record", lambda rec, *_: encode_record_v1(rec))  # the writer before v2
        # ... which had no one-pass C ingest of an ImageSigned (that writes v2 itself)
        m.setattr(pipeline.fold_backend, "BACKEND", "python")
        with TrustLog(d, checkpoint_every=10, snapshot_every=None) as tl:
            tl.ingest_batch([(e.to_bytes(), None) for e in events[:13]])
    with TrustLog(d, checkpoint_every=10, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in events[13:]])
        want = tl.state.repos
    log = SegmentLog.open(d / "log", create=False)
    try:
        formats = [record_format(body) for _, body in log.scan(0)]
    finally:
        log.close()
    assert formats == [1] * 13 + [2] * (len(events) - 13)
    r = verify_log(d)
    assert r.ok, r.to_dict()
    with TrustLog(d, checkpoint_every=None, snapshot_every=None) as tl:
        assert tl.state.repos == want
    assert fold_log(d).repos == want


def test_both_folds_read_v1_and_v2_bodies_alike(compiled) -> None:
    """The same history as v1 bodies and as v2 bodies, through the pure-Python and the
    compiled trusted folds: four equal states, most records on the C fast path."""
    events = history(12)
    bodies = {fmt: [enc(LogRecord(1000 + i, e.to_bytes(), KafkaPosition("t", 0, i) if i % 2 else None))
                    for i, e in enumerate(events)]
              for fmt, enc in (("v1", encode_record_v1), ("v2", encode_record))}
    assert {record_format(b) for b in bodies["v2"]} == {2}
    states = {}
    for fmt, bs in bodies.items():
        for backend in ("py", "c"):
            st_ = TrustState()
            fold = new_fold(st_, backend)
            fold.fold_bodies(0, bs)
            if backend == "c":
                assert fold.fast >= 12, (fmt, fold.fast, fold.slow)
            states[(fmt, backend)] = st_.repos
    first = next(iter(states.values()))
    assert all(s == first for s in states.values())


def test_audit_scan_finds_a_key_in_v2_records(tmp_path: Path) -> None:
    from logtools import CI
    from trustlog.services.audit import audit_scan

    d = tmp_path / "log"
    with TrustLog(d, checkpoint_every=None, snapshot_every=None) as tl:
        tl.ingest_batch([(e.to_bytes(), None) for e in history(6)])
    got = audit_scan(str(d), CI.keyid)
    assert len(got) == 3  # build-1, build-3, build-5
    assert [o for o, _, _ in got] == sorted(o for o, _, _ in got)


def test_trusted_fold_refuses_a_malformed_v2_record() -> None:
    from trustlog.core.errors import LogError

    bad = b"\xc1" + msgspec.msgpack.encode([1, None, [[b"\x00" * 31, b"s"]], b"\x80"])
    with pytest.raises(LogError, match="cannot be replayed"):
        TrustedFold(TrustState()).fold_bodies(0, [bad])


def test_compiled_fold_refuses_a_malformed_v2_record(compiled) -> None:
    from trustlog.core.errors import LogError
    from trustlog.ingest.replay import decode_trusted

    bad = b"\xc1" + msgspec.msgpack.encode([1, None, [[b"\x00" * 31, b"s"]], b"\x80"])
    fold = compiled.CompiledFold(TrustedFold(TrustState()), decode_trusted)
    with pytest.raises(LogError, match="cannot be replayed"):
        fold.fold_bodies(0, [bad])


# -- the C encoder (_fastfold.encode_v2, what encode_record uses with the compiled fold) --

def _python_v2(rec: LogRecord) -> bytes | None:
    """What the Python encoder writes as v2 for ``rec`` (None: it stays v1)."""
    return record_v2.encode_v2(rec.log_time, rec.envelope, rec.source)


many_signatures = st.lists(st.builds(Signature, keyid=keyids, sig=st.binary(max_size=80)), min_size=12,
                           max_size=132)
odd_names = st.one_of(texts, st.text(alphabet=st.characters(min_codepoint=0x80, blacklist_categories=("Cs",)), max_size=20),
                      st.sampled_from(["\x00", "é" * 40, "\U0001f600", "sha256:", "a" * 255, "b" * 256]))
odd_images = st.builds(
    ImageSigned, repo=odd_names, version=i64, issued_at=i64, role=odd_names | st.just("targets"), tag=odd_names,
    digest=digests | odd_names, size=i64, expires=i64)
odd_image_records = st.builds(
    lambda t, ev, sigs, src: LogRecord(t, Envelope(canonical_bytes(ev), sigs).to_bytes(), src),
    u63, odd_images, st.one_of(signatures, many_signatures), st.none() | positions)


def _fits_the_c_reader(rec: LogRecord) -> bool:
    """An ImageSigned the C reader takes: every integer in int64, at most 128 signatures,
    a payload within the v2 reader's scratch space."""
    env = decode_envelope(rec.envelope, max_bytes=1 << 30)
    return (type(decode_event(env.payload)) is ImageSigned and len(env.signatures) <= 128
            and len(env.payload) <= 2048)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(records, image_records, odd_image_records))
def test_c_encoder_writes_what_the_python_encoder_writes(compiled, rec: LogRecord) -> None:
    """Every kind, odd names, many signatures, hex and other key ids, with and without a
    source: the C encoder answers the Python encoder's v2 bytes, or None (then Python
    decides); for an ImageSigned within the C reader's bounds it always answers."""
    got = compiled.encode_v2(encode_record_v1(rec))
    want = _python_v2(rec)
    if got is not None:
        assert got == want
        assert type(record_v2._parse(got).event) is record_v2._Image
    elif _fits_the_c_reader(rec):
        pytest.fail(f"the C encoder declined an ImageSigned it can read: {rec!r}")
    else:
        env = decode_envelope(rec.envelope, max_bytes=1 << 30)
        assert type(decode_event(env.payload)) is not ImageSigned or len(env.signatures) > 128 \
            or len(env.payload) > 2048


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(records, image_records, odd_image_records), envelopes)
def test_encode_record_is_the_same_on_both_backends(rec: LogRecord, other: Envelope) -> None:
    """``encode_record`` (the C encoder first when the compiled fold is in use) stores
    exactly what the Python encoder alone stores, with the record's own decoded envelope
    and event, with wrong ones, or with none."""
    want = records_mod.encode_record_py(rec)
    assert encode_record(rec) == want
    env = decode_envelope(rec.envelope, max_bytes=1 << 30)
    ev = decode_event(env.payload)
    assert encode_record(rec, env, ev) == want and records_mod.encode_record_py(rec, env, ev) == want
    wrong = decode_event(other.payload)
    assert encode_record(rec, other, wrong) == want and records_mod.encode_record_py(rec, other, wrong) == want
    assert decode_record(want) == rec


def test_encode_record_uses_the_c_encoder_exactly_with_the_compiled_fold() -> None:
    """The choice is made once, at import, from the environment (as fold_backend's): a
    test that switches ``fold_backend.BACKEND`` later does not change it, so this reads
    the environment, not ``BACKEND``."""
    import os

    from trustlog.ingest import fold_backend

    if os.environ.get("TRUSTLOG_PUREPYTHON") == "1":
        assert records_mod._c_encode_v2 is None
        return
    try:
        compiled = fold_backend.load()
    except ImportError:
        assert records_mod._c_encode_v2 is None
        return
    assert records_mod._c_encode_v2 is compiled.encode_v2


@st.composite
def v1_spellings(draw) -> bytes:
    """v1 bytes of an ImageSigned record, canonical or not: the envelope or the payload
    not canonical, an integer or a header in a longer form, keys reordered, trailing
    bytes, or a few bytes flipped, cut, inserted or deleted."""
    rec = draw(image_records)
    v1 = encode_record_v1(rec)
    how = draw(st.sampled_from(["canonical", "envelope", "long-log-time", "map16", "str8-key", "reordered",
                                "trailing", "mutated"]))
    if how == "envelope":
        return encode_record_v1(LogRecord(rec.log_time, draw(maybe_canonical_envelopes()), rec.source))
    if how == "long-log-time":  # log_time in 9 bytes, whatever its value
        at = len(b"\x83\xa8log_time")
        head = v1[at]
        width = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8}.get(head, 0)
        value = head if head < 0x80 else int.from_bytes(v1[at + 1:at + 1 + width], "big")
        return v1[:at] + b"\xcf" + value.to_bytes(8, "big") + v1[at + 1 + width:]
    if how == "map16":
        return b"\xde\x00\x03" + v1[1:]
    if how == "str8-key":
        return v1[:1] + b"\xd9\x08" + v1[2:]
    if how == "reordered":
        m = msgspec.msgpack.decode(v1)
        return msgspec.msgpack.encode(dict(reversed(list(m.items()))))
    if how == "trailing":
        return v1 + b"\xc0"
    if how == "mutated":
        return draw(mutated(st.just(rec), encode_record_v1))
    return v1


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v1_spellings())
def test_c_encoder_answers_only_for_the_canonical_v1_bytes(compiled, data: bytes) -> None:
    """The C encoder writes v2 only for bytes that are the one canonical v1 form of the
    record they decode to, and then what the Python encoder writes for that record: a
    spelling the v1 reader tolerates never becomes the v2 of a record with other bytes."""
    got = compiled.encode_v2(data)
    if got is None:
        return
    rec = decode_record(data)  # raises (the test fails) for bytes that are not a canonical v1 record
    assert encode_record_v1(rec) == data
    assert got == _python_v2(rec)


def _with_bad_utf8(rec: LogRecord, text: str) -> bytes:
    """The v1 bytes of ``rec`` with the UTF-8 text ``text`` (which it holds once) spoilt
    by one byte that is never UTF-8 (same length, so every header stays right)."""
    v1 = encode_record_v1(rec)
    raw = text.encode()
    assert v1.count(raw) == 1
    return v1.replace(raw, raw[:1] + b"\xff" + raw[2:])


@pytest.mark.parametrize("where", ["repo", "role", "tag", "digest", "keyid", "topic"])
def test_c_encoder_declines_text_that_is_not_utf8(compiled, where: str) -> None:
    """msgspec refuses such text, so the Python encoder writes such a record as v1 or
    with its payload verbatim; the C encoder leaves it to the Python one."""
    ev = ImageSigned("QQrepoQQ", 1, 2, "QQroleQQ", "QQtagQQ", "QQdigestQQ", 3, 4)
    env = Envelope(canonical_bytes(ev), [Signature("QQkeyidQQ", b"s")])
    rec = LogRecord(5, env.to_bytes(), KafkaPosition("QQtopicQQ", 0, 1))
    assert compiled.encode_v2(encode_record_v1(rec)) == _python_v2(rec) is not None
    bad = _with_bad_utf8(rec, f"QQ{where}QQ")
    assert compiled.encode_v2(bad) is None
    if where == "topic":  # not a LogRecord at all: nothing to write
        with pytest.raises(EncodingError):
            decode_record(bad)
        return
    spoilt = decode_record(bad)  # the envelope is bytes: only its decoding meets the text
    data = encode_record(spoilt)
    assert data == records_mod.encode_record_py(spoilt)
    assert record_format(data) == 1 or type(record_v2._parse(data).event) is bytes  # never as fields


def test_c_encoder_declines_what_its_reader_does_not_take(compiled) -> None:
    """Beyond the C reader (129 signatures, an integer above int64, another kind, a
    payload over its scratch space) it answers None, and encode_record still writes what
    the Python encoder writes."""
    ev = ImageSigned("r", 1, 2, "targets", "t", "sha256:" + "ab" * 32, 3, 4)
    cases = {
        "129 signatures": LogRecord(1, Envelope(canonical_bytes(ev), [Signature("k", b"s")] * 129).to_bytes()),
        "uint64": LogRecord(1, Envelope(canonical_bytes(msgspec.structs.replace(ev, size=2**63)), []).to_bytes()),
        "another kind": LogRecord(1, Envelope(canonical_bytes(RoleRemoved("r", 1, 2, "x")), []).to_bytes()),
        "long payload": LogRecord(1, Envelope(canonical_bytes(msgspec.structs.replace(ev, repo="r" * 3000)),
                                              []).to_bytes()),
    }
    for name, rec in cases.items():
        assert compiled.encode_v2(encode_record_v1(rec)) is None, name
        assert encode_record(rec) == records_mod.encode_record_py(rec), name
        assert record_format(encode_record(rec)) == 2, name  # the Python encoder still writes v2
    assert compiled.encode_v2(b"") is None and compiled.encode_v2(b"\xc1") is None
