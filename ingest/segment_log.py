"""A durable, append-only log of byte records, stored as CRC-framed segment files.

Layout of a log directory::

    LOCK                        the writer's pid (the lock itself is a flock on the directory)
    00000000000000000000.seg    records with offsets 0 .. n-1
    00000000000000000000.idx    sparse offset index of a sealed segment (rebuildable)
    0000000000000000000n.seg    the next segment, named by its base offset
    ...

Each record is framed as ``length (u32 BE) | crc (u32 BE) | body``. The CRC-32C covers
the four length bytes and then the body, not the body alone: a zero-filled header
(what some filesystems leave after a crash) would otherwise be a valid empty record,
and a damaged length field would misframe the rest of the segment unnoticed.

Durability: :meth:`SegmentLog.append` only buffers; :meth:`SegmentLog.flush` writes
every buffered record, fsyncs each segment it wrote and the directory when it created
a segment file (group commit). Only then does :attr:`SegmentLog.durable_offset` move,
and only durable records can be read.

Recovery on open: the last segment is read in full. If it ends in a torn record (a
crash during a write) that record is cut off and reported in
:attr:`SegmentLog.recovery`. Damage anywhere else raises
:class:`~trustlog.core.errors.LogCorruptionError`; nothing is ever skipped.

A record of the last segment is torn when it runs past the end of the file (short
header, short body, or a garbage length), when it is the final record and fails its
CRC, or when everything from it to the end is zero bytes (an unwritten, zero-filled
tail). A bad record with other bytes after it is corruption. The one damage this
cannot tell from a torn write is a length field in the last segment that rots to point
past the end of the file: the records after it are cut off, and the cut is reported in
``recovery`` (a signed checkpoint larger than the recovered log shows it too).

Read-only opens (``read_only=True``) take no lock, create, cut and rewrite nothing: a
torn tail is left on disk (the next writer cuts it) and only the records before it are
readable; it is reported in :attr:`SegmentLog.torn_tail`.
"""
from __future__ import annotations

import bisect
import errno
import fcntl
import os
import re
import struct
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import crc32c

from trustlog.core.errors import LogCorruptionError, LogError
from trustlog.core.merkle import leaf_hash

from .closing import Closing

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
DEFAULT_INDEX_INTERVAL_BYTES = 4096
MAX_SEGMENT_BYTES = 2**32  # keeps relative offsets well inside the index's u32
LOCK_NAME = "LOCK"
SEGMENT_SUFFIX = ".seg"
INDEX_SUFFIX = ".idx"

HEADER = struct.Struct(">II")  # body length, CRC-32C of (length bytes + body)
HEADER_SIZE = HEADER.size
_LENGTH = struct.Struct(">I")
_INDEX_ENTRY = struct.Struct(">IQ")  # relative offset, byte position
_INDEX_TRAILER = struct.Struct(">4sQQI")  # magic, segment bytes, record count, CRC-32C
_INDEX_MAGIC = b"TLX1"
_SEGMENT_NAME = re.compile(r"([0-9]{20})\.seg")
_READ_CHUNK = 64 * 1024
_MAX_READER_FDS = 8

FsyncFn = Callable[[int], None]


class OffsetOutOfRangeError(LogError, IndexError):
    """An offset that is not (yet) a durable record of the log."""


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the log cut off: ``truncated_bytes`` of a torn record at the end of
    ``segment``, which keeps ``records`` whole records."""

    segment: str
    truncated_bytes: int
    records: int


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{SEGMENT_SUFFIX}"


def _frame_crc(length_bytes: bytes, body: bytes | memoryview) -> int:
    return crc32c.crc32c(body, crc32c.crc32c(length_bytes))


def encode_frame(body: bytes | memoryview) -> bytes:
    """The on-disk frame of one record."""
    length_bytes = _LENGTH.pack(len(body))
    return length_bytes + _LENGTH.pack(_frame_crc(length_bytes, body)) + bytes(body)


class _FrameError(Exception):
    """A frame that does not parse. ``torn`` means it could be the remains of an
    interrupted write: it runs up to or past the end of the file."""

    def __init__(self, pos: int, detail: str, torn: bool) -> None:
        super().__init__(detail)
        self.pos = pos
        self.detail = detail
        self.torn = torn


def _iter_frames(f: BinaryIO, pos: int, end: int, max_record_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(byte position, body)`` of each frame of ``f`` (positioned at ``pos``) up
    to byte ``end``, checking every CRC. Raises :class:`_FrameError` at the first bad one."""
    while pos < end:
        if end - pos < HEADER_SIZE:
            raise _FrameError(pos, f"the segment ends {end - pos} bytes into a record header", torn=True)
        header = f.read(HEADER_SIZE)
        length, crc = HEADER.unpack(header)
        body_end = pos + HEADER_SIZE + length
        if body_end > end:
            # Checked before the size limit: garbage at the very end is a torn write.
            raise _FrameError(
                pos, f"record length {length} runs {body_end - end} bytes past the end of the segment", torn=True
            )
        if length > max_record_bytes:
            raise _FrameError(
                pos,
                f"impossible record length {length} (max_record_bytes is {max_record_bytes}; "
                "if the log was written with a larger limit, open it with that limit)",
                torn=False,
            )
        body = f.read(length)
        if len(body) != length:
            raise LogError(f"segment {getattr(f, 'name', '?')} shrank while being read; is another process writing it?")
        if _frame_crc(header[:4], body) != crc:
            raise _FrameError(pos, "CRC mismatch", torn=body_end == end)
        yield pos, body
        pos = body_end


def _compiled_frames():
    """The compiled reader's module (``_fastfold.scan_frames``), or None: then the
    pure-Python ``_iter_frames`` (``tests/test_compiled_fold.py`` holds the two together)."""
    from . import fold_backend

    return fold_backend.compiled


_FRAMES = _compiled_frames()


def _scan_compiled(f: BinaryIO, seg: _Segment, end: int, max_record_bytes: int, interval: int) -> None:
    """``_iter_frames`` + ``note_record`` over the whole of ``f`` in C (one read, no
    Python per record); raises the same :class:`_FrameError` at the first bad frame."""
    m = _FRAMES
    data = f.read(end)
    if len(data) != end:
        raise LogError(f"segment {seg.name} shrank while being read; is another process writing it?")
    count, pos, problem, length = m.scan_frames(data, end, max_record_bytes, interval, seg.index_rel, seg.index_pos)
    seg.count = count
    if problem == m.FRAME_OK:
        return
    if problem == m.FRAME_SHORT_HEADER:
        raise _FrameError(pos, f"the segment ends {end - pos} bytes into a record header", torn=True)
    body_end = pos + HEADER_SIZE + length
    if problem == m.FRAME_PAST_END:
        raise _FrameError(pos, f"record length {length} runs {body_end - end} bytes past the end of the segment", torn=True)
    if problem == m.FRAME_TOO_LONG:
        raise _FrameError(pos, f"impossible record length {length} (max_record_bytes is {max_record_bytes}; "
                          "if the log was written with a larger limit, open it with that limit)", torn=False)
    raise _FrameError(pos, "CRC mismatch", torn=body_end == end)


def _index_entries_py(data: bytes, seg_size: int, expected_count: int, magic: bytes) -> tuple[array, array] | None:
    """The entries of a segment index file as ``(rel, pos)`` arrays if it provably
    describes a segment of ``seg_size`` bytes and ``expected_count`` records (trailer,
    checksum, first entry (0, 0), every entry strictly after the one before it, the
    last inside the segment); else None. The twin of ``_logscan.index_entries``."""
    n, rem = divmod(len(data) - _INDEX_TRAILER.size, _INDEX_ENTRY.size)
    if n < 1 or rem:
        return None
    got_magic, seg_bytes, count, crc = _INDEX_TRAILER.unpack_from(data, len(data) - _INDEX_TRAILER.size)
    if got_magic != magic or crc != crc32c.crc32c(data[:-4]):
        return None
    if seg_bytes != seg_size or count != expected_count:
        return None
    entries = list(_INDEX_ENTRY.iter_unpack(data[: n * _INDEX_ENTRY.size]))
    if entries[0] != (0, 0) or entries[-1][0] >= count or entries[-1][1] >= seg_size:
        return None
    if any(a[0] >= b[0] or a[1] >= b[1] for a, b in zip(entries, entries[1:])):
        return None
    return array("I", (r for r, _ in entries)), array("Q", (p for _, p in entries))


def _compiled_index_entries():
    from . import fold_backend

    m = fold_backend.logscan()
    return m.index_entries if m is not None else _index_entries_py


_index_entries = _compiled_index_entries()


def _frame_records_py(bodies: list[bytes], start: int, pending: bytearray, leaves: bytearray | None, size: int,
                      count: int, segment_bytes: int, interval: int, index_rel: array, index_pos: array
                      ) -> tuple[int, int, int]:
    """Frame ``bodies[start:]`` onto ``pending`` while the segment (``size`` bytes,
    ``count`` records) is under ``segment_bytes``, with the index entries
    ``_Segment.note_record`` makes and, unless ``leaves`` is None, each body's RFC 9162
    leaf hash appended to it. Returns (the next body's index, size, count). The twin of
    ``_fastfold.frame_records`` (``tests/test_batch_append.py`` holds them together)."""
    last = index_pos[-1] if index_pos else -1
    i, n = start, len(bodies)
    while i < n and not (count and size >= segment_bytes):
        body = bodies[i]
        if last < 0 or size - last >= interval:
            index_rel.append(count)
            index_pos.append(size)
            last = size
        length_bytes = _LENGTH.pack(len(body))
        pending += length_bytes
        pending += _LENGTH.pack(_frame_crc(length_bytes, body))
        pending += body
        if leaves is not None:
            leaves += leaf_hash(body)
        size += HEADER_SIZE + len(body)
        count += 1
        i += 1
    return i, size, count


def _frame_records():
    """``_fastfold.frame_records``, or its twin when the compiled module is not in use."""
    return _FRAMES.frame_records if _FRAMES is not None else _frame_records_py


def _is_zero_filled(f: BinaryIO, pos: int, end: int) -> bool:
    f.seek(pos)
    while pos < end:
        chunk = f.read(min(_READ_CHUNK, end - pos))
        if not chunk or chunk.count(0) != len(chunk):
            return False
        pos += len(chunk)
    return True


def _pwrite_all(fd: int, data: bytes | bytearray, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        if n == 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        view = view[n:]
        pos += n


@dataclass(eq=False)
class _Segment:
    base: int
    path: Path
    size: int = 0  # bytes including buffered records
    flushed: int = 0  # bytes written and fsynced by a successful flush
    count: int = 0  # records including buffered ones
    pending: bytearray = field(default_factory=bytearray)
    on_disk: bool = True
    wfd: int | None = None
    index_rel: array = field(default_factory=lambda: array("I"))
    index_pos: array = field(default_factory=lambda: array("Q"))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def index_path(self) -> Path:
        return self.path.with_suffix(INDEX_SUFFIX)

    def note_record(self, pos: int, interval: int) -> None:
        """Index the record at byte ``pos`` (the next relative offset) if it is the
        first, or ``interval`` bytes past the last indexed one. Deterministic, so an
        index rebuilt from the segment equals the one written while appending."""
        if not self.index_pos or pos - self.index_pos[-1] >= interval:
            self.index_rel.append(self.count)
            self.index_pos.append(pos)

    def index_bytes(self) -> bytes:
        entries = b"".join(_INDEX_ENTRY.pack(r, p) for r, p in zip(self.index_rel, self.index_pos))
        head = entries + _INDEX_TRAILER.pack(_INDEX_MAGIC, self.flushed, self.count, 0)[:-4]
        return head + _LENGTH.pack(crc32c.crc32c(head))


class SegmentLog(Closing):
    """An append-only log of byte records with offsets 0, 1, 2, ...

    Open with :meth:`open`. One writer per directory (an exclusive ``flock``); not
    thread-safe: share one instance between threads only behind a lock.
    """

    recovery: RecoveryReport | None
    """What opening cut off from a torn tail, or None when nothing was cut off."""
    torn_tail: RecoveryReport | None
    """Read-only opens: the torn tail left in place (not readable), or None."""
    rebuilt_indexes: list[str]
    """Index files found missing, stale or damaged on open and rewritten."""

    def __init__(
        self,
        directory: Path,
        lock_fd: int | None,
        *,
        segment_bytes: int,
        fsync: bool,
        max_record_bytes: int,
        index_interval_bytes: int,
        fsync_fn: FsyncFn,
    ) -> None:
        """Use :meth:`open`."""
        self._dir = directory
        self._lock_fd: int | None = lock_fd
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._fsync_fn = fsync_fn
        self._max_record_bytes = max_record_bytes
        self._index_interval = index_interval_bytes
        self._segments: list[_Segment] = []
        self._bases: list[int] = []
        self._first_unflushed = 0  # index into _segments of the first one flush must visit
        self._durable_offset = 0
        self._readers: OrderedDict[int, int] = OrderedDict()  # base offset -> read-only fd
        self._failure: BaseException | None = None
        self._closed = False
        self.recovery = None
        self.torn_tail = None
        self.read_only = lock_fd is None
        self.rebuilt_indexes = []
        self.last_fsync_seconds: float | None = None
        self.fsync_seconds_total = 0.0
        self.fsync_count = 0

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
        create: bool = True,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        index_interval_bytes: int = DEFAULT_INDEX_INTERVAL_BYTES,
        verify: bool = True,
        fsync_fn: FsyncFn = os.fsync,
        read_only: bool = False,
    ) -> SegmentLog:
        """Open (or with ``create``, start) the log in ``directory`` and recover it.

        ``fsync=False`` skips every fsync (tests, benchmarks): "durable" then only means
        handed to the OS. ``verify=True`` checks the CRC of every record of every
        segment; ``verify=False`` reads only the last segment in full and checks the
        others' index files (size, record count, checksum, and the records after the
        last index entry), relying on the CRC check every read makes. Raises
        :class:`LogCorruptionError` for damage, :class:`LogError` for anything else.
        ``read_only`` opens an existing log for reading only (see the module docstring).
        """
        if not 0 < segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in 1..{MAX_SEGMENT_BYTES}, not {segment_bytes}")
        if not 0 <= max_record_bytes < 2**32:
            raise ValueError(f"max_record_bytes must be in 0..{2**32 - 1}, not {max_record_bytes}")
        if index_interval_bytes <= 0:
            raise ValueError(f"index_interval_bytes must be positive, not {index_interval_bytes}")
        path = Path(directory)
        created_dir = False
        if read_only:
            create = False
        try:
            if not path.is_dir():
                if not create:
                    raise LogError(f"no log at {path}: the directory does not exist (open with create=True to start one)")
                path.mkdir(parents=True)
                created_dir = True
            lock_fd = None if read_only else _acquire_lock(path)
        except OSError as e:
            raise LogError(f"cannot open the log in {path}: {e}") from e
        log = cls(
            path,
            lock_fd,
            segment_bytes=segment_bytes,
            fsync=fsync,
            max_record_bytes=max_record_bytes,
            index_interval_bytes=index_interval_bytes,
            fsync_fn=fsync_fn,
        )
        try:
            log._load(create=create, created_dir=created_dir, verify=verify)
        except OSError as e:
            log._release()
            raise LogError(f"cannot open the log in {path}: {e}") from e
        except BaseException:
            log._release()
            raise
        return log

    def _load(self, *, create: bool, created_dir: bool, verify: bool) -> None:
        bases: list[int] = []
        for entry in os.scandir(self._dir):
            if entry.name.endswith(INDEX_SUFFIX + ".tmp"):
                if not self.read_only:
                    os.unlink(entry.path)  # an index write that never finished
            elif m := _SEGMENT_NAME.fullmatch(entry.name):
                bases.append(int(m.group(1)))
        bases.sort()
        if not bases:
            if not create:
                raise LogError(f"no log at {self._dir}: it holds no segment files (open with create=True to start one)")
            seg = _Segment(0, self._dir / segment_name(0), on_disk=False)
            self._create_file(seg)
            if created_dir:
                self._fsync_dir(self._dir.parent)
            self._add_segment(seg)
            return
        if bases[0] != 0:
            raise LogCorruptionError(
                segment_name(bases[0]), 0, f"the log starts at offset {bases[0]}; the segments before it are missing"
            )
        for base, next_base in zip(bases, bases[1:]):
            self._add_segment(self._load_sealed(base, next_base - base, verify))
        last = self._recover_last(bases[-1])
        self._add_segment(last)
        self._durable_offset = last.base + last.count
        self._first_unflushed = len(self._segments) - 1

    def _add_segment(self, seg: _Segment) -> None:
        self._segments.append(seg)
        self._bases.append(seg.base)

    def _load_sealed(self, base: int, expected_count: int, verify: bool) -> _Segment:
        """A segment that is not the last: it must hold exactly ``expected_count``
        whole records; any damage, even at its end, is corruption."""
        path = self._dir / segment_name(base)
        size = path.stat().st_size
        seg = _Segment(base, path, size=size, flushed=size)
        if not verify and self._load_index(seg, expected_count):
            return seg
        self._scan_segment(seg, last=False)
        if seg.count != expected_count:
            raise LogCorruptionError(
                seg.name,
                size,
                f"the segment holds {seg.count} records but the next segment starts at offset "
                f"{base + expected_count}, which needs {expected_count}",
            )
        data = seg.index_bytes()
        try:
            up_to_date = seg.index_path.read_bytes() == data
        except FileNotFoundError:
            up_to_date = False
        if not up_to_date:
            if not self.read_only:
                self._write_index(seg, data)
            self.rebuilt_indexes.append(seg.index_path.name)
        return seg

    def _scan_segment(self, seg: _Segment, *, last: bool) -> None:
        """Read every frame of ``seg``, building its index and count. In the last
        segment a torn final record is cut off; anything else bad raises."""
        end = seg.size
        with open(seg.path, "rb", buffering=_READ_CHUNK) as f:
            try:
                if _FRAMES is not None and seg.count == 0 and not seg.index_pos:
                    _scan_compiled(f, seg, end, self._max_record_bytes, self._index_interval)
                else:
                    for pos, _body in _iter_frames(f, 0, end, self._max_record_bytes):
                        seg.note_record(pos, self._index_interval)
                        seg.count += 1
            except _FrameError as e:
                if not last:
                    detail = e.detail + (" (only the last segment may end in a torn record)" if e.torn else "")
                    raise LogCorruptionError(seg.name, e.pos, detail) from None
                if not (e.torn or _is_zero_filled(f, e.pos, end)):
                    raise LogCorruptionError(seg.name, e.pos, f"{e.detail}, with {end - e.pos} bytes after it") from None
                seg.size = seg.flushed = e.pos

    def _recover_last(self, base: int) -> _Segment:
        path = self._dir / segment_name(base)
        if self.read_only:
            seg = _Segment(base, path)
            seg.size = seg.flushed = file_size = path.stat().st_size
            self._scan_segment(seg, last=True)
            if seg.size < file_size:
                self.torn_tail = RecoveryReport(seg.name, file_size - seg.size, seg.count)
            return seg
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        seg = _Segment(base, path, wfd=fd)
        try:
            seg.size = seg.flushed = file_size = os.fstat(fd).st_size
            self._scan_segment(seg, last=True)
            if seg.size < file_size:
                os.ftruncate(fd, seg.size)
                self.recovery = RecoveryReport(seg.name, file_size - seg.size, seg.count)
            # Whatever a crashed writer left in the page cache is durable from here on.
            self._timed_fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return seg

    def _load_index(self, seg: _Segment, expected_count: int) -> bool:
        """Load ``seg``'s index file if it provably describes ``seg``; else False."""
        try:
            data = seg.index_path.read_bytes()
        except FileNotFoundError:
            return False
        entries = _index_entries(data, seg.size, expected_count, _INDEX_MAGIC)
        if entries is None:
            return False
        rel, pos = entries
        # The records after the last entry must reach exactly the end of the segment.
        last_rel, last_pos = rel[-1], pos[-1]
        with open(seg.path, "rb", buffering=_READ_CHUNK) as f:
            f.seek(last_pos)
            try:
                tail = sum(1 for _ in _iter_frames(f, last_pos, seg.size, self._max_record_bytes))
            except _FrameError:
                return False
        if last_rel + tail != expected_count:
            return False
        seg.count = expected_count
        seg.index_rel, seg.index_pos = rel, pos
        return True

    def _write_index(self, seg: _Segment, data: bytes | None = None) -> None:
        """Replace ``seg``'s index file atomically. Not fsynced: it is checked on open
        and rebuilt from the segment whenever it does not match."""
        tmp = seg.index_path.with_name(seg.index_path.name + ".tmp")
        tmp.write_bytes(seg.index_bytes() if data is None else data)
        os.replace(tmp, seg.index_path)

    # -- writing -------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def max_record_bytes(self) -> int:
        """The largest record body :meth:`append` takes (and every reader reads)."""
        return self._max_record_bytes

    @property
    def next_offset(self) -> int:
        """The offset the next append gets."""
        last = self._segments[-1]
        return last.base + last.count

    @property
    def durable_offset(self) -> int:
        """Records below this offset are durable (and readable)."""
        return self._durable_offset

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self._segments]

    def append(self, body: bytes) -> int:
        """Buffer one record and return its offset. Not durable until :meth:`flush`."""
        self._check_writable()
        self._check_size(body)
        return self._append(body)

    def append_many(self, bodies: Iterable[bytes]) -> list[int]:
        """Buffer several records; all or none (sizes are checked first)."""
        self._check_writable()
        batch = list(bodies)
        for body in batch:
            self._check_size(body)
        return [self._append(body) for body in batch]

    def append_batch(self, bodies: list[bytes], leaves: bytearray | None = None) -> int:
        """Buffer ``bodies`` (bytes) as consecutive records, all or none (sizes are
        checked first), and return the first one's offset; with ``leaves``, append each
        body's RFC 9162 leaf hash to it. One call into C for the whole batch (framing,
        CRC-32C, leaf hashes, segment index), the same bytes as :meth:`append` each."""
        self._check_writable()
        limit = self._max_record_bytes
        for body in bodies:
            if len(body) > limit:
                self._check_size(body)
        first = self.next_offset
        frame = _frame_records()
        i, n = 0, len(bodies)
        while i < n:
            seg = self._segments[-1]
            if seg.count and seg.size >= self._segment_bytes:
                seg = _Segment(seg.base + seg.count, self._dir / segment_name(seg.base + seg.count), on_disk=False)
                self._add_segment(seg)  # files are created by flush
            i, seg.size, seg.count = frame(bodies, i, seg.pending, leaves, seg.size, seg.count, self._segment_bytes,
                                           self._index_interval, seg.index_rel, seg.index_pos)
        return first

    def _check_size(self, body: bytes) -> None:
        if len(body) > self._max_record_bytes:
            raise LogError(
                f"a record of {len(body)} bytes is over the limit of {self._max_record_bytes} "
                "(max_record_bytes); split it, or open the log with a larger limit"
            )

    def _append(self, body: bytes) -> int:
        seg = self._segments[-1]
        if seg.count and seg.size >= self._segment_bytes:
            seg = _Segment(seg.base + seg.count, self._dir / segment_name(seg.base + seg.count), on_disk=False)
            self._add_segment(seg)  # files are created by flush
        offset = seg.base + seg.count
        seg.note_record(seg.size, self._index_interval)
        length_bytes = _LENGTH.pack(len(body))
        seg.pending += length_bytes
        seg.pending += _LENGTH.pack(_frame_crc(length_bytes, body))
        seg.pending += body
        seg.size += HEADER_SIZE + len(body)
        seg.count += 1
        return offset

    def flush(self) -> None:
        """Write every buffered record and fsync it (group commit).

        When this returns, every appended record is durable. If a write or fsync
        fails, raises :class:`LogError` and the log refuses further writes: after a
        failed fsync the kernel may have dropped the dirty pages, so a retry could
        report success for data that is gone. Reopening recovers from what the disk holds.
        """
        self._check_writable()
        todo = self._segments[self._first_unflushed :]
        if not any(s.pending or not s.on_disk for s in todo):
            return
        spent = 0.0
        try:
            for seg in todo:
                created = not seg.on_disk
                if created:
                    self._create_file(seg, fsync_dir=False)
                assert seg.wfd is not None
                if seg.pending:
                    _pwrite_all(seg.wfd, seg.pending, seg.flushed)
                    spent += self._timed_fsync(seg.wfd)
                    seg.pending = bytearray()
                if created:
                    spent += self._fsync_dir(self._dir)
                seg.flushed = seg.size
                self._durable_offset = seg.base + seg.count
                if seg is not self._segments[-1]:
                    self._seal(seg)
        except BaseException as e:
            self._failure = e
            if isinstance(e, OSError):
                raise LogError(
                    f"flushing the log in {self._dir} failed ({e}); records from offset {self._durable_offset} "
                    "on are not durable. Close and reopen the log (it recovers from what reached the disk), "
                    "then append them again."
                ) from e
            raise
        self._first_unflushed = len(self._segments) - 1
        if self._fsync:
            self.last_fsync_seconds = spent
            self.fsync_seconds_total += spent

    def _create_file(self, seg: _Segment, *, fsync_dir: bool = True) -> None:
        seg.wfd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        seg.on_disk = True
        if fsync_dir:
            self._fsync_dir(self._dir)

    def _seal(self, seg: _Segment) -> None:
        """``seg`` will take no more records: write its index and close it for writing."""
        self._write_index(seg)
        if seg.wfd is not None:
            os.close(seg.wfd)
            seg.wfd = None

    def _timed_fsync(self, fd: int) -> float:
        if not self._fsync:
            return 0.0
        start = time.perf_counter()
        self._fsync_fn(fd)
        self.fsync_count += 1
        return time.perf_counter() - start

    def _fsync_dir(self, directory: Path) -> float:
        """Make a created (or removed) directory entry durable."""
        if not self._fsync:
            return 0.0
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return self._timed_fsync(fd)
        finally:
            os.close(fd)

    # -- reading -------------------------------------------------------------------

    def read(self, offset: int) -> bytes:
        """The body of the durable record at ``offset``."""
        self._check_open()
        if not 0 <= offset < self._durable_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is not a durable record: the log holds offsets 0..{self._durable_offset - 1}"
                + (" (call flush() to make appended records readable)" if offset < self.next_offset else "")
            )
        seg = self._segments[bisect.bisect_right(self._bases, offset) - 1]
        fd = self._reader(seg)
        pos = self._position(seg, fd, offset - seg.base)
        header = os.pread(fd, HEADER_SIZE, pos)
        if len(header) < HEADER_SIZE:
            raise LogCorruptionError(seg.name, pos, "the segment ends inside a record header")
        length, crc = HEADER.unpack(header)
        if length > self._max_record_bytes or pos + HEADER_SIZE + length > seg.flushed:
            raise LogCorruptionError(seg.name, pos, f"impossible record length {length}")
        body = os.pread(fd, length, pos + HEADER_SIZE)
        if len(body) != length or _frame_crc(header[:4], body) != crc:
            raise LogCorruptionError(seg.name, pos, "CRC mismatch")
        return body

    def scan(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(offset, body)`` for every record from ``start`` up to the durable
        offset at the time of the call, checking each CRC."""
        self._check_open()
        end = self._durable_offset
        if not 0 <= start <= end:
            raise OffsetOutOfRangeError(f"cannot scan from offset {start}: the log holds offsets 0..{end - 1}")
        return self._scan(start, end)

    def iter_segment_bodies(self, start: int = 0) -> Iterator[bytes]:
        """:meth:`scan` without the offsets, for bulk consumers."""
        return (body for _, body in self.scan(start))

    def _scan(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        offset = start
        while offset < end:
            seg = self._segments[bisect.bisect_right(self._bases, offset) - 1]
            stop = min(end, seg.base + seg.count)
            i = bisect.bisect_right(seg.index_rel, offset - seg.base) - 1
            current, pos = seg.base + seg.index_rel[i], seg.index_pos[i]
            with open(seg.path, "rb", buffering=_READ_CHUNK) as f:
                f.seek(pos)
                try:
                    for _, body in _iter_frames(f, pos, seg.flushed, self._max_record_bytes):
                        if current >= offset:
                            yield current, body
                        current += 1
                        if current >= stop:
                            break
                except _FrameError as e:
                    raise LogCorruptionError(seg.name, e.pos, e.detail) from None
            if current < stop:
                raise LogCorruptionError(seg.name, seg.flushed, f"the segment ends {stop - current} records early")
            offset = stop

    def _reader(self, seg: _Segment) -> int:
        fd = self._readers.get(seg.base)
        if fd is None:
            fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
            self._readers[seg.base] = fd
            if len(self._readers) > _MAX_READER_FDS:
                os.close(self._readers.popitem(last=False)[1])
        else:
            self._readers.move_to_end(seg.base)
        return fd

    def _position(self, seg: _Segment, fd: int, rel: int) -> int:
        """Byte position of relative offset ``rel``: from the nearest index entry at or
        before it, step over record headers."""
        i = bisect.bisect_right(seg.index_rel, rel) - 1
        current, pos = seg.index_rel[i], seg.index_pos[i]
        buf, buf_start = b"", pos
        while current < rel:
            at = pos - buf_start
            if at + HEADER_SIZE > len(buf):
                buf, buf_start, at = os.pread(fd, _READ_CHUNK, pos), pos, 0
                if len(buf) < HEADER_SIZE:
                    raise LogCorruptionError(seg.name, pos, "the segment ends inside a record header")
            (length,) = _LENGTH.unpack_from(buf, at)
            pos += HEADER_SIZE + length
            current += 1
            if pos > seg.flushed:
                raise LogCorruptionError(seg.name, pos - HEADER_SIZE - length, f"impossible record length {length}")
        return pos

    # -- lifecycle -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Flush buffered records (unless an earlier flush failed) and release the log."""
        if self._closed:
            return
        try:
            if self._failure is None and not self.read_only:
                self.flush()
        finally:
            self._release()

    def _release(self) -> None:
        self._closed = True
        for seg in self._segments:
            if seg.wfd is not None:
                os.close(seg.wfd)
                seg.wfd = None
        while self._readers:
            os.close(self._readers.popitem()[1])
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"next={self.next_offset} durable={self._durable_offset}"
        return f"<SegmentLog {self._dir} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"the log in {self._dir} is closed; open it again with SegmentLog.open()")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise LogError(f"the log in {self._dir} is open read-only; open it for writing to append")
        if self._failure is not None:
            raise LogError(
                f"the log in {self._dir} refuses writes after a failed flush ({self._failure!r}); "
                "close and reopen it to recover from what reached the disk"
            )


def _acquire_lock(directory: Path) -> int:
    """Take the directory's writer lock: an exclusive flock on the directory itself, so
    deleting or replacing ``LOCK`` cannot let a second writer in. The holder's pid goes
    in ``LOCK`` for the error message a second writer gets."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        os.close(fd)
        try:
            holder = (directory / LOCK_NAME).read_bytes()[:64].decode("ascii", "replace").strip()
        except OSError:
            holder = ""
        raise LogError(
            f"the log in {directory} is already open for writing ({holder or 'another process'} holds its lock); "
            "a log has a single writer: close the other SegmentLog first"
        ) from e
    except BaseException:
        os.close(fd)
        raise
    try:
        pid_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(pid_fd, f"pid {os.getpid()}".encode())
        finally:
            os.close(pid_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd
