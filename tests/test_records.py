"""Log records: canonical encoding, log times, and the rejects log."""
from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustlog.core.errors import EncodingError, LogError
from trustlog.ingest.records import (
    KafkaPosition,
    LogClock,
    LogRecord,
    RejectRecord,
    decode_record,
    decode_reject,
    encode_record,
    encode_reject,
)
from trustlog.ingest.rejects import RejectsLog
from trustlog.ingest.segment_log import SegmentLog

u63 = st.integers(0, 2**63 - 1)
positions = st.builds(KafkaPosition, topic=st.text(max_size=30), partition=st.integers(0, 2**31 - 1), offset=u63)
log_records = st.builds(LogRecord, log_time=u63, envelope=st.binary(max_size=200), source=st.none() | positions)
reject_records = st.builds(
    RejectRecord,
    log_time=u63,
    reason=st.text(max_size=20),
    detail=st.text(max_size=100),
    raw=st.binary(max_size=200),
    event_id=st.text(max_size=64),
    source=st.none() | positions,
)


@given(log_records)
def test_log_record_encoding_is_canonical(rec: LogRecord) -> None:
    data = encode_record(rec)
    back = decode_record(data)
    assert back == rec
    assert encode_record(back) == data


@given(log_records)
def test_equal_log_records_encode_equally(rec: LogRecord) -> None:
    source = rec.source and KafkaPosition(str(rec.source.topic), int(rec.source.partition), int(rec.source.offset))
    twin = LogRecord(int(rec.log_time), bytes(rec.envelope), source)
    assert twin == rec
    assert encode_record(twin) == encode_record(rec)


@given(reject_records)
def test_reject_record_round_trip(rec: RejectRecord) -> None:
    data = encode_reject(rec)
    assert decode_reject(data) == rec
    assert encode_reject(decode_reject(data)) == data


def test_non_canonical_bytes_are_refused() -> None:
    reordered = msgspec.msgpack.encode({"source": None, "envelope": b"e", "log_time": 1})
    assert msgspec.msgpack.decode(reordered, type=LogRecord) == LogRecord(1, b"e")
    with pytest.raises(EncodingError, match="canonical"):
        decode_record(reordered)


@pytest.mark.parametrize(
    "fields",
    [
        {"log_time": -1, "envelope": b"e", "source": None},
        {"log_time": 1, "envelope": b"e", "source": {"topic": "t", "partition": -1, "offset": 0}},
        {"log_time": 1, "envelope": b"e", "source": None, "extra": 1},
        {"log_time": 1, "envelope": "not bytes", "source": None},
    ],
    ids=["negative-time", "negative-partition", "unknown-field", "wrong-type"],
)
def test_malformed_records_are_refused(fields: dict) -> None:
    with pytest.raises(EncodingError):
        decode_record(msgspec.msgpack.encode(fields))


def test_log_clock_strictly_increases_when_the_wall_clock_stalls_or_steps_back() -> None:
    wall = iter([100, 100, 50, 200, 10])
    clock = LogClock(lambda: next(wall))
    assert [clock.next() for _ in range(5)] == [100, 101, 102, 200, 201]
    clock.observe(1000)
    clock.observe(5)
    assert clock.last == 1000


# -- RejectsLog ----------------------------------------------------------------------


def fake_clock(start: int = 1_000):
    counter = itertools.count(start)
    return lambda: next(counter)


def test_rejects_are_kept_and_counted(tmp_path: Path) -> None:
    src = KafkaPosition("events", 3, 42)
    with RejectsLog.open(tmp_path, fsync=False, now_ns=fake_clock()) as rejects:
        assert rejects.record("bad_signature", "keyid k1 did not verify", b"raw1", event_id="e1", source=src) == 0
        rejects.record("malformed", "not MessagePack", b"\xc1")
        rejects.record("bad_signature", "keyid k2 did not verify", b"raw3")
        assert list(rejects) == []  # not durable yet
        rejects.flush()
        recs = list(rejects)
    assert [r.reason for r in recs] == ["bad_signature", "malformed", "bad_signature"]
    assert recs[0] == RejectRecord(1000, "bad_signature", "keyid k1 did not verify", b"raw1", "e1", src)
    with RejectsLog.open(tmp_path, fsync=False) as rejects:
        assert rejects.counts_by_reason() == {"bad_signature": 2, "malformed": 1}


def test_reject_log_times_increase_across_reopen(tmp_path: Path) -> None:
    with RejectsLog.open(tmp_path, fsync=False, now_ns=fake_clock(5_000)) as rejects:
        rejects.record("r", "", b"")
    with RejectsLog.open(tmp_path, fsync=False, now_ns=lambda: 10) as rejects:  # clock stepped back
        rejects.record("r", "", b"")
        with pytest.raises(ValueError, match="must increase"):
            rejects.record("r", "", b"", log_time=5_001)
        rejects.record("r", "", b"", log_time=9_000)
        rejects.flush()
        assert [r.log_time for r in rejects] == [5_000, 5_001, 9_000]


def test_oversized_raw_input_is_cut_not_dropped(tmp_path: Path) -> None:
    with RejectsLog.open(tmp_path, fsync=False, max_raw_bytes=4) as rejects:
        rejects.record("too_large", "envelope over the limit", b"0123456789")
        rejects.record("short", "", b"0123")
        rejects.flush()
        cut, whole = list(rejects)
    assert cut.raw == b"0123" and "first 4 of 10 bytes" in cut.detail
    assert whole.raw == b"0123" and whole.detail == ""


def test_a_reject_needs_a_reason(tmp_path: Path) -> None:
    with RejectsLog.open(tmp_path, fsync=False) as rejects:
        with pytest.raises(ValueError, match="reason"):
            rejects.record("", "detail", b"")


def test_rejects_log_refuses_a_directory_of_other_records(tmp_path: Path) -> None:
    with SegmentLog.open(tmp_path, fsync=False) as log:
        log.append(encode_record(LogRecord(1, b"env")))
    with pytest.raises(LogError, match="does not hold a rejects log"):
        RejectsLog.open(tmp_path, fsync=False)
    with SegmentLog.open(tmp_path, fsync=False):  # the lock was released
        pass
