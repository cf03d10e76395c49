"""SegmentLog: framing, rolling, reading, recovery of torn tails, corruption, fsync
failures and the writer lock. fsync is injected (a recorder), so no test waits on a disk."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustlog.core.errors import LogCorruptionError, LogError
from trustlog.ingest.segment_log import (
    HEADER_SIZE,
    OffsetOutOfRangeError,
    RecoveryReport,
    SegmentLog,
    encode_frame,
    segment_name,
)

SEG0 = segment_name(0)


class FsyncRecorder:
    """Stands in for os.fsync: counts calls, and fails from call number ``fail_at`` on."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise OSError(errno.EIO, "injected fsync failure")


def open_log(path: Path, **options) -> SegmentLog:
    options.setdefault("fsync_fn", FsyncRecorder())
    return SegmentLog.open(path, **options)


def bodies(n: int, size: int = 10) -> list[bytes]:
    """``n`` distinct records of ``size`` bytes each (size >= 4)."""
    return [(b"%d:" % i).ljust(size, b".") for i in range(n)]


def write_log(path: Path, records: list[bytes], **options) -> None:
    with open_log(path, **options) as log:
        log.append_many(records)


def frame_positions(records: list[bytes]) -> list[int]:
    """Byte position of each record's frame within one segment."""
    positions, pos = [], 0
    for body in records:
        positions.append(pos)
        pos += HEADER_SIZE + len(body)
    return positions


def flip_bit(path: Path, byte: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))


# -- writing and reading -------------------------------------------------------------


def test_round_trip_including_empty_records(tmp_path: Path) -> None:
    records = [b"", b"a", b"\x00" * 100, bytes(range(256))]
    with open_log(tmp_path) as log:
        assert log.append_many(records) == [0, 1, 2, 3]
        log.flush()
        assert [log.read(i) for i in range(4)] == records
        assert list(log.scan()) == list(enumerate(records))
        assert list(log.iter_segment_bodies(2)) == records[2:]
    assert (tmp_path / SEG0).read_bytes() == b"".join(encode_frame(b) for b in records)


def test_appended_records_are_not_durable_or_readable_before_flush(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        log.append(b"x")
        assert (log.next_offset, log.durable_offset) == (1, 0)
        with pytest.raises(OffsetOutOfRangeError, match="call flush"):
            log.read(0)
        assert list(log.scan()) == []
        log.flush()
        assert (log.next_offset, log.durable_offset) == (1, 1)
        assert log.read(0) == b"x"


def test_read_out_of_range(tmp_path: Path) -> None:
    with open_log(tmp_path) as log:
        log.append(b"x")
        log.flush()
        for bad in (-1, 1, 100):
            with pytest.raises(IndexError):
                log.read(bad)
        with pytest.raises(OffsetOutOfRangeError):
            log.scan(2)
        assert list(log.scan(1)) == []


def test_rolls_segments_and_reads_from_any_offset(tmp_path: Path) -> None:
    records = [bytes([i % 251]) * (i % 37) for i in range(300)]
    write_log(tmp_path, records, segment_bytes=200, index_interval_bytes=64)
    with open_log(tmp_path, segment_bytes=200, index_interval_bytes=64) as log:
        names = log.segment_names
        assert len(names) > 10
        assert sorted(p.name for p in tmp_path.glob("*.seg")) == names
        # Every segment is named by the offset of its first record.
        bases = [int(n.removesuffix(".seg")) for n in names]
        assert bases[0] == 0 and bases == sorted(bases)
        for name in names[:-1]:
            assert (tmp_path / name).stat().st_size >= 200
            assert (tmp_path / name).with_suffix(".idx").exists()
        assert [log.read(i) for i in range(len(records))] == records
        for start in range(0, len(records) + 1, 7):
            assert list(log.scan(start)) == list(enumerate(records))[start:]


def test_segment_passes_its_size_by_at_most_one_record(tmp_path: Path) -> None:
    write_log(tmp_path, [b"x" * 50] * 10, segment_bytes=100)
    sizes = [p.stat().st_size for p in sorted(tmp_path.glob("*.seg"))]
    assert sizes == [116, 116, 116, 116, 116]


def test_reopen_and_continue_appending(tmp_path: Path) -> None:
    first, second = bodies(25), [b"more-%d" % i for i in range(25)]
    write_log(tmp_path, first, segment_bytes=64)
    with open_log(tmp_path, segment_bytes=64) as log:
        assert log.recovery is None
        assert (log.next_offset, log.durable_offset) == (25, 25)
        assert log.append_many(second) == list(range(25, 50))
    with open_log(tmp_path, segment_bytes=64) as log:
        assert [body for _, body in log.scan()] == first + second


def test_reads_while_open_for_appending(tmp_path: Path) -> None:
    with open_log(tmp_path, segment_bytes=50) as log:
        log.append_many(bodies(5))
        log.flush()
        snapshot = log.scan()
        log.append_many(bodies(20))
        log.flush()
        assert len(list(snapshot)) == 5  # a scan covers what was durable when it began
        assert len(list(log.scan())) == 25
        assert log.read(24) == bodies(20)[19]


def test_record_size_limit_is_checked_at_its_edge(tmp_path: Path) -> None:
    with open_log(tmp_path, max_record_bytes=8) as log:
        assert log.append(b"x" * 8) == 0
        with pytest.raises(LogError, match="over the limit of 8"):
            log.append(b"x" * 9)
        with pytest.raises(LogError):
            log.append_many([b"ok", b"x" * 9])  # all or nothing
        assert log.next_offset == 1


def test_close_flushes_and_closed_log_refuses_use(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(b"x")
    log.close()
    log.close()  # idempotent
    with pytest.raises(LogError, match="closed"):
        log.append(b"y")
    with pytest.raises(LogError, match="closed"):
        log.read(0)
    with open_log(tmp_path) as log:
        assert log.read(0) == b"x"


def test_create_false_needs_an_existing_log(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="create=True"):
        open_log(tmp_path / "missing", create=False)
    with pytest.raises(LogError, match="no segment files"):
        open_log(tmp_path, create=False)
    write_log(tmp_path, [b"x"])
    with open_log(tmp_path, create=False) as log:
        assert log.next_offset == 1


# -- durability and fsync ------------------------------------------------------------


def test_flush_fsyncs_segments_and_directory(tmp_path: Path) -> None:
    fsync = FsyncRecorder()
    with open_log(tmp_path, fsync_fn=fsync, segment_bytes=30) as log:
        opened = fsync.calls  # directory entry of the first segment
        assert opened >= 1
        log.flush()
        assert fsync.calls == opened  # nothing buffered: no fsync
        log.append(b"a" * 10)
        log.flush()
        assert fsync.calls == opened + 1  # the segment
        assert log.last_fsync_seconds is not None and log.fsync_seconds_total >= log.last_fsync_seconds
        log.append_many([b"b" * 20, b"c" * 10])  # the second record starts a new segment
        log.flush()
        assert fsync.calls == opened + 4  # old segment, new segment, directory
        assert log.durable_offset == 3
        assert fsync.calls == log.fsync_count


def test_fsync_failure_raises_and_leaves_records_not_durable(tmp_path: Path) -> None:
    fsync = FsyncRecorder()
    log = open_log(tmp_path, fsync_fn=fsync)
    log.append(b"kept")
    log.flush()
    fsync.fail_at = fsync.calls + 1
    log.append(b"lost")
    with pytest.raises(LogError, match="not durable") as info:
        log.flush()
    assert isinstance(info.value.__cause__, OSError)
    assert log.durable_offset == 1
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1)
    assert log.read(0) == b"kept"
    with pytest.raises(LogError, match="reopen"):  # no retry after a failed fsync
        log.append(b"again")
    with pytest.raises(LogError, match="reopen"):
        log.flush()
    log.close()
    with open_log(tmp_path) as log:  # recovers from whatever reached the file
        assert log.read(0) == b"kept"


def test_directory_fsync_failure_on_a_new_segment(tmp_path: Path) -> None:
    fsync = FsyncRecorder()
    with open_log(tmp_path, fsync_fn=fsync, segment_bytes=10) as log:
        log.append(b"x" * 10)
        log.flush()
        log.append(b"y")  # rolls: new segment file, whose directory entry must be synced
        fsync.fail_at = fsync.calls + 2  # the new segment's fsync passes; the directory's fails
        with pytest.raises(LogError):
            log.flush()
        assert log.durable_offset == 1


# -- the writer lock -----------------------------------------------------------------


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with open_log(tmp_path):
        with pytest.raises(LogError, match=f"already open for writing \\(pid {os.getpid()}"):
            open_log(tmp_path)
    with open_log(tmp_path):  # released on close
        pass


# -- recovery of a torn tail ---------------------------------------------------------


def test_every_torn_tail_of_the_last_record_is_cut_off(tmp_path: Path) -> None:
    records = bodies(4, size=12)
    write_log(tmp_path, records)
    seg = tmp_path / SEG0
    whole = seg.read_bytes()
    last_start = frame_positions(records)[-1]
    for cut in range(last_start + 1, len(whole)):
        seg.write_bytes(whole[:cut])
        with open_log(tmp_path) as log:
            assert log.recovery == RecoveryReport(SEG0, cut - last_start, 3), cut
            assert (log.next_offset, log.durable_offset) == (3, 3)
            assert seg.stat().st_size == last_start
            assert [b for _, b in log.scan()] == records[:3]
            assert log.append(b"after") == 3
        with open_log(tmp_path) as log:
            assert log.recovery is None
            assert log.read(3) == b"after"
            assert log.read(2) == records[2]


def test_torn_tail_in_the_last_of_several_segments(tmp_path: Path) -> None:
    write_log(tmp_path, bodies(10), segment_bytes=40)
    last = sorted(tmp_path.glob("*.seg"))[-1]
    size = last.stat().st_size
    assert size == HEADER_SIZE + 10  # one record
    os.truncate(last, size - 3)
    with open_log(tmp_path, segment_bytes=40) as log:
        assert log.recovery == RecoveryReport(last.name, size - 3, 0)
        assert log.next_offset == 9


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\xff\xff\xff\xff" + b"\x12\x34\x56\x78" + b"junk", id="huge-length"),
        pytest.param(b"\x00\x00\x01\x00" + b"\x00" * 4 + b"short body", id="short-body"),
        pytest.param(bytes(4096), id="zero-filled"),
        pytest.param(b"\x00\x00\x00", id="short-header"),
    ],
)
def test_garbage_at_the_end_is_a_torn_tail(tmp_path: Path, tail: bytes) -> None:
    write_log(tmp_path, bodies(3))
    seg = tmp_path / SEG0
    good = seg.read_bytes()
    seg.write_bytes(good + tail)
    with open_log(tmp_path) as log:
        assert log.recovery == RecoveryReport(SEG0, len(tail), 3)
        assert log.next_offset == 3
    assert seg.read_bytes() == good


def test_crc_mismatch_in_the_very_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    records = bodies(3)
    write_log(tmp_path, records)
    seg = tmp_path / SEG0
    flip_bit(seg, seg.stat().st_size - 1)
    with open_log(tmp_path) as log:
        assert log.recovery == RecoveryReport(SEG0, HEADER_SIZE + len(records[-1]), 2)


# -- corruption ----------------------------------------------------------------------


@pytest.mark.parametrize("where", [3, 4, HEADER_SIZE, HEADER_SIZE + 5], ids=["length", "crc", "body", "body-end"])
def test_flipped_bit_in_a_middle_record_is_corruption(tmp_path: Path, where: int) -> None:
    records = bodies(6, size=6)
    write_log(tmp_path, records)
    victim = frame_positions(records)[2]
    flip_bit(tmp_path / SEG0, victim + where)
    with pytest.raises(LogCorruptionError) as info:
        open_log(tmp_path)
    assert (info.value.segment, info.value.offset) == (SEG0, victim)
    assert f"segment {SEG0} at byte {victim}" in str(info.value)
    with pytest.raises(LogCorruptionError):  # the last segment is always read in full
        open_log(tmp_path, verify=False)


def test_crc_mismatch_followed_by_zeros_is_still_corruption(tmp_path: Path) -> None:
    records = bodies(3)
    write_log(tmp_path, records)
    seg = tmp_path / SEG0
    flip_bit(seg, frame_positions(records)[2] + HEADER_SIZE)
    seg.write_bytes(seg.read_bytes() + bytes(100))
    with pytest.raises(LogCorruptionError):
        open_log(tmp_path)


def test_flipped_bit_in_a_sealed_segment_is_corruption(tmp_path: Path) -> None:
    records = bodies(40, size=10)
    options = dict(segment_bytes=100, index_interval_bytes=20)
    write_log(tmp_path, records, **options)
    first = tmp_path / SEG0
    last_in_first = first.stat().st_size - 10 - HEADER_SIZE
    for byte, frame in ((HEADER_SIZE, 0), (first.stat().st_size - 1, last_in_first)):
        original = first.read_bytes()
        flip_bit(first, byte)
        with pytest.raises(LogCorruptionError) as info:
            open_log(tmp_path, **options)
        assert (info.value.segment, info.value.offset) == (SEG0, frame)
        first.write_bytes(original)


def test_without_full_verification_damage_is_caught_on_read(tmp_path: Path) -> None:
    records = bodies(40, size=10)
    options = dict(segment_bytes=100, index_interval_bytes=20)
    write_log(tmp_path, records, **options)
    flip_bit(tmp_path / SEG0, HEADER_SIZE)  # record 0, far from the index's last entry
    with open_log(tmp_path, verify=False, **options) as log:
        assert log.rebuilt_indexes == []
        assert log.read(1) == records[1]
        with pytest.raises(LogCorruptionError) as info:
            log.read(0)
        assert (info.value.segment, info.value.offset) == (SEG0, 0)
        with pytest.raises(LogCorruptionError):
            list(log.scan())


def test_torn_end_of_a_sealed_segment_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, bodies(10), segment_bytes=40)
    first = tmp_path / SEG0
    os.truncate(first, first.stat().st_size - 1)
    with pytest.raises(LogCorruptionError, match="only the last segment may end in a torn record"):
        open_log(tmp_path, segment_bytes=40)


def test_missing_segments_are_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, bodies(10), segment_bytes=40)
    segs = sorted(tmp_path.glob("*.seg"))
    assert len(segs) >= 3
    segs[1].unlink()
    with pytest.raises(LogCorruptionError, match="next segment starts at offset"):
        open_log(tmp_path)
    segs[0].unlink()
    with pytest.raises(LogCorruptionError, match="segments before it are missing"):
        open_log(tmp_path)


def test_record_over_the_limit_inside_a_segment_is_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, [b"x" * 100, b"y"])
    with pytest.raises(LogCorruptionError, match="impossible record length 100") as info:
        open_log(tmp_path, max_record_bytes=50)
    assert info.value.offset == 0


# -- the sparse index ----------------------------------------------------------------


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("damage", ["missing", "flipped", "truncated", "stale"])
def test_index_files_are_checked_and_rebuilt(tmp_path: Path, verify: bool, damage: str) -> None:
    records = [bytes([65 + i % 26]) * (3 + i % 11) for i in range(40)]  # segments differ
    options = dict(segment_bytes=150, index_interval_bytes=30)
    write_log(tmp_path, records, **options)
    idx = tmp_path / SEG0.replace(".seg", ".idx")
    good = idx.read_bytes()
    if damage == "missing":
        idx.unlink()
    elif damage == "flipped":
        flip_bit(idx, 13)
    elif damage == "truncated":
        idx.write_bytes(good[:-1])
    else:  # an index that belongs to another segment
        idx.write_bytes(sorted(tmp_path.glob("*.idx"))[1].read_bytes())
    with open_log(tmp_path, verify=verify, **options) as log:
        assert log.rebuilt_indexes == [idx.name]
        assert [log.read(i) for i in range(len(records))] == records
    assert idx.read_bytes() == good


def test_index_for_another_interval_is_rewritten_on_full_verification(tmp_path: Path) -> None:
    write_log(tmp_path, bodies(40), segment_bytes=150, index_interval_bytes=30)
    with open_log(tmp_path, segment_bytes=150, index_interval_bytes=60) as log:
        assert len(log.rebuilt_indexes) == len(log.segment_names) - 1
    with open_log(tmp_path, segment_bytes=150, index_interval_bytes=60) as log:
        assert log.rebuilt_indexes == []


# -- properties ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.binary(max_size=300), max_size=30),
    segment_bytes=st.integers(1, 600),
    interval=st.integers(1, 200),
)
def test_any_bodies_round_trip_through_the_log(records: list[bytes], segment_bytes: int, interval: int) -> None:
    options = dict(segment_bytes=segment_bytes, index_interval_bytes=interval)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d)
        with open_log(path, **options) as log:
            half = len(records) // 2
            log.append_many(records[:half])
            log.flush()
            log.append_many(records[half:])
        with open_log(path, **options) as log:
            assert log.recovery is None
            assert [log.read(i) for i in range(len(records))] == records
            assert [b for _, b in log.scan()] == records
            start = len(records) // 3
            assert [o for o, _ in log.scan(start)] == list(range(start, len(records)))


@given(st.binary(max_size=1000))
def test_frame_layout(body: bytes) -> None:
    frame = encode_frame(body)
    assert len(frame) == HEADER_SIZE + len(body)
    assert int.from_bytes(frame[:4], "big") == len(body)
    assert frame[HEADER_SIZE:] == body
