"""Read-only views of a log directory: open from the newest snapshot, follow the writer.

A :class:`LogView` is what every command that only reads uses (``verify``, ``inspect``,
``state``, ``replay verify``, ``proof``, ``checkpoint latest/list``, ``verify-kafka``,
``serve``). It never takes the writer's ``LOCK``, never creates, truncates or repairs a
file, and can be opened while an ingest process (the single writer) appends:

1. the newest snapshot whose header is signed by the log key (``DIR/log.pub``), whose
   body matches its digest, whose pins are the view's and whose Merkle root equals the
   root of the tree on disk at its offset is loaded (``SnapshotStore.best``, read-only);
   a view of a few repositories (``repos=``) reads only theirs, through the snapshot's
   signed index (``snapshot_index``);
2. :class:`SegmentTail` reads the segments from the snapshot's offset on, frame by frame,
   each CRC checked, and folds the records: ``ImageSigned`` (the bulk) with
   :class:`~.replay.TrustedFold` (the rules without the crypto: the verifier checks every
   tag signature when it answers, so a forged one is a BAD_SIGNATURE verdict), every
   other event — the ones that grant, rotate or revoke authority — with its signatures
   verified, so a record slipped into the files cannot hand out trust;
   ``trustlog log verify`` re-checks everything from scratch;
3. :meth:`LogView.poll` reads what the writer appended since, so a long-running reader
   (the HTTP server, ``verify-kafka``) follows the log.

What a reader may see of a concurrent write: the writer ``pwrite``s a batch of frames
then fsyncs it. A frame that runs past the end of the file, or whose CRC fails while it
ends exactly at the end of the file, is a write in progress: the tail stops before it
and tries again at the next poll. A bad frame with more bytes after it is corruption
(:class:`LogCorruptionError`). A segment is complete once the next one exists (the
writer writes the old segment's last records before it creates the next file).

Derived files (Merkle levels, checkpoints) are read with ``pread`` on read-only
descriptors; when one is missing or short, the view does without it (no snapshot is
used, proofs are refused) rather than repairing it: repairs are the writer's job.
"""
from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import crc32c
import msgspec

from trustlog.core.checkpoint import Checkpoint, SignedCheckpoint, verify_checkpoint
from trustlog.core.errors import LogCorruptionError, LogError, TrustlogError
from trustlog.core.keys import PublicKey
from trustlog.core.merkle import HASH_SIZE, TreeRangeError, consistency_proof, inclusion_proof, subtree_root
from trustlog.core.events import ImageSigned
from trustlog.core.state import Pin, RejectedEventError, TrustState, default_sigcheck

from .closing import Closing
from .logindex import LogIndex, event_postings
from .merkle_store import CHECKPOINTS_FILE, _scan_frames, level_file_name
from .replay import TrustedFold, decode_trusted, gc_paused, new_fold, resolve_target
from .segment_log import DEFAULT_MAX_RECORD_BYTES, HEADER, HEADER_SIZE, OffsetOutOfRangeError, segment_name
from .snapshot_index import SnapshotIndexError, load_repos
from .pinpolicy import POLICY_FILE, PinPolicy, PinPolicyError, same_pins
from .snapshots import SnapshotStore, pins_key
from .transparency import LOG_KEY_NAME, load_public_key, origin_for

from .segment_log import _SEGMENT_NAME as _SEGMENT_RE  # one grammar for segment file names (full match)
from .snapshot_body import decode_repo
from .snapshot_index import _raw_body, _repo_name  # the snapshot body's layout, read once
_READ = 8 * 1024 * 1024  # bytes read per pread while following


def segment_bases(directory: Path) -> list[int]:
    try:
        return sorted(int(m.group(1)) for e in os.scandir(directory) if (m := _SEGMENT_RE.fullmatch(e.name)))
    except FileNotFoundError:
        return []


def _find_all(data: bytes, needles: list[bytes]) -> list[int]:
    """Sorted positions of every occurrence of any of ``needles`` in ``data``."""
    hits: list[int] = []
    for nd in needles:
        i = data.find(nd)
        while i >= 0:
            hits.append(i)
            i = data.find(nd, i + 1)
    hits.sort()
    return hits


class SegmentTail:
    """Follows the segment files of one ``SegmentLog`` directory without its lock.

    ``offset`` is the next record to read. :meth:`poll` returns the complete records
    the writer has added since the last call. :meth:`read` reads any record already
    passed (for proofs and audits).
    """

    def __init__(self, directory: str | os.PathLike[str], start: int = 0, *,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.directory = Path(directory)
        self.max_record_bytes = max_record_bytes
        bases = segment_bases(self.directory)
        if not bases:
            raise LogError(f"no log at {self.directory}: it holds no segment files")
        if bases[0] != 0:
            raise LogCorruptionError(segment_name(bases[0]), 0, "the segments before it are missing")
        self._bases = bases  # every segment seen so far; the last is the one being followed
        self._fd = -1
        self._open(bases[bisect.bisect_right(bases, start) - 1])
        self.offset = self._base
        self._skip_to(start)

    def _open(self, base: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._base = base
        self._name = segment_name(base)
        self._fd = os.open(self.directory / self._name, os.O_RDONLY | os.O_CLOEXEC)
        self._pos = 0

    def _skip_to(self, start: int) -> None:
        while self.offset < start:
            got = self.poll(limit=start - self.offset, bodies=False)
            if not got:
                raise OffsetOutOfRangeError(f"{self.directory}: offset {start} is past the end of the log "
                                            f"({self.offset} records)")

    @property
    def lag_bytes(self) -> int:
        """Bytes the writer has put in segments that this tail has not read yet."""
        n = os.fstat(self._fd).st_size - self._pos
        nxt = self._base_after()
        while nxt is not None:
            try:
                n += (self.directory / segment_name(nxt)).stat().st_size
            except FileNotFoundError:
                break
            nxt = None  # only the next segment is counted; more is a rare, large lag
        return max(n, 0)

    def _base_after(self) -> int | None:
        """The base of the segment after the one followed, if the writer created it."""
        nxt = self.offset
        return nxt if nxt != self._base and (self.directory / segment_name(nxt)).exists() else None

    def poll(self, limit: int | None = None, *, bodies: bool = True,
             needles: list[bytes] | None = None) -> list[tuple[int, bytes]]:
        """The complete records appended since the last call (at most ``limit`` read), as
        ``(offset, body)``; with ``bodies=False`` only counted (and an empty list of
        placeholders returned per record). With ``needles``, only the records whose body
        contains one of them are returned (every record is still read and CRC-checked,
        so a damaged one cannot hide); ``self.offset`` says how far it read."""
        out: list = []
        start = self.offset
        while limit is None or self.offset - start < limit:
            n = self._read_frames(out, None if limit is None else limit - (self.offset - start), bodies, needles)
            if n:
                continue
            nxt = self._base_after()
            if nxt is None:
                break
            # The next segment exists, so this one is complete: read it to its end once
            # more (records written between our last read and the new file's creation).
            if self._read_frames(out, None if limit is None else limit - (self.offset - start), bodies, needles):
                continue
            if os.fstat(self._fd).st_size != self._pos:
                raise LogCorruptionError(self._name, self._pos, "a sealed segment ends in a partial record")
            self._open(nxt)
            self._bases.append(nxt)
        return out

    def _read_frames(self, out: list, limit: int | None, bodies: bool, needles: list[bytes] | None = None) -> int:
        size = os.fstat(self._fd).st_size
        if size < self._pos:
            raise LogError(f"{self.directory}/{self._name} shrank below byte {self._pos} while being followed: "
                           "the log was cut back (a writer recovered from damage?); restart the reader")
        if size == self._pos:
            return 0
        data = os.pread(self._fd, min(size - self._pos, _READ), self._pos)
        at, n, end = 0, 0, len(data)
        hits = _find_all(data, needles) if needles is not None else []
        hi = 0
        mv = memoryview(data)
        crc = crc32c.crc32c
        while at + HEADER_SIZE <= end and (limit is None or n < limit):
            length, crc_want = HEADER.unpack_from(data, at)
            if length > self.max_record_bytes:
                raise LogCorruptionError(self._name, self._pos + at, f"impossible record length {length}")
            stop = at + HEADER_SIZE + length
            if stop > end:
                if at == 0 and HEADER_SIZE + length > _READ:  # one record bigger than a read
                    data = os.pread(self._fd, HEADER_SIZE + length, self._pos)
                    end, mv = len(data), memoryview(data)
                    hits = _find_all(data, needles) if needles is not None else []
                    if stop > end:
                        break
                else:
                    break
            if crc(mv[at + HEADER_SIZE:stop], crc(mv[at:at + 4])) != crc_want:
                if self._pos + stop >= os.fstat(self._fd).st_size:
                    break  # the last frame of the file: a write still in progress
                raise LogCorruptionError(self._name, self._pos + at, "CRC mismatch")
            if needles is None:
                out.append((self.offset, data[at + HEADER_SIZE:stop]) if bodies else None)
            else:
                while hi < len(hits) and hits[hi] < at + HEADER_SIZE:
                    hi += 1
                if hi < len(hits) and hits[hi] < stop:
                    out.append((self.offset, data[at + HEADER_SIZE:stop]))
            self.offset += 1
            n += 1
            at = stop
        self._pos += at
        return n

    def read(self, offset: int) -> bytes:
        """The body of record ``offset`` (one this tail has already passed)."""
        if not 0 <= offset < self.offset:
            raise OffsetOutOfRangeError(f"offset {offset} is not a record of the log (0..{self.offset - 1})")
        base = self._bases[bisect.bisect_right(self._bases, offset) - 1]
        with open(self.directory / segment_name(base), "rb") as f:
            pos, cur = 0, base
            while True:
                head = f.read(HEADER_SIZE)
                if len(head) < HEADER_SIZE:
                    raise LogCorruptionError(segment_name(base), pos, "the segment ends early")
                length, crc = HEADER.unpack(head)
                if cur == offset:
                    body = f.read(length)
                    if len(body) != length or crc32c.crc32c(body, crc32c.crc32c(head[:4])) != crc:
                        raise LogCorruptionError(segment_name(base), pos, "CRC mismatch")
                    return body
                f.seek(length, os.SEEK_CUR)
                pos += HEADER_SIZE + length
                cur += 1

    def scan(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """Records ``[start, end)`` (already passed), CRC-checked, with a fresh tail."""
        t = SegmentTail(self.directory, start, max_record_bytes=self.max_record_bytes)
        try:
            while t.offset < end:
                got = t.poll(limit=min(65_536, end - t.offset))
                if not got:
                    raise LogError(f"{self.directory}: the log ended at {t.offset}, before {end}")
                yield from got
        finally:
            t.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ReadOnlyTree:
    """The Merkle tree files of a log, read with ``pread`` and never repaired: a
    ``core.merkle.NodeSource`` for roots and proofs, and the signed checkpoints."""

    def __init__(self, directory: str | os.PathLike[str], public_key: PublicKey | None) -> None:
        self.directory = Path(directory)
        self.public_key = public_key
        self.origin = origin_for(public_key) if public_key is not None else None
        self._fds: list[int] = []
        level = 0
        while True:
            try:
                self._fds.append(os.open(self.directory / level_file_name(level), os.O_RDONLY | os.O_CLOEXEC))
            except FileNotFoundError:
                break
            level += 1

    @property
    def size(self) -> int:
        """Whole leaf hashes on disk now (the writer may add more at any time)."""
        return os.fstat(self._fds[0]).st_size // HASH_SIZE if self._fds else 0

    def node(self, level: int, index: int) -> bytes:
        if level >= len(self._fds):
            raise TreeRangeError(f"{self.directory}: no level {level} file (the tree is short: run the writer)")
        h = os.pread(self._fds[level], HASH_SIZE, index * HASH_SIZE)
        if len(h) != HASH_SIZE:
            raise TreeRangeError(f"no complete subtree ({level}, {index}) in {self.directory}")
        return h

    def leaf_hashes(self, start: int, count: int) -> bytes:
        data = os.pread(self._fds[0], count * HASH_SIZE, start * HASH_SIZE) if self._fds else b""
        if len(data) != count * HASH_SIZE:
            raise TreeRangeError(f"leaves [{start}, {start + count}) are not all on disk in {self.directory}")
        return data

    def root_at(self, size: int) -> bytes:
        if not 0 <= size <= self.size:
            raise TreeRangeError(f"tree size {size} is outside 0..{self.size}")
        return subtree_root(0, size, self)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return consistency_proof(old, new, self)

    def checkpoints(self) -> list[SignedCheckpoint]:
        """Every stored signed checkpoint, in order (a torn last frame is left out)."""
        path = self.directory / CHECKPOINTS_FILE
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        try:
            return [s for _end, s in _scan_frames(path, fd, [])]
        finally:
            os.close(fd)

    def latest(self) -> tuple[SignedCheckpoint, Checkpoint] | None:
        """The latest checkpoint, its signature checked with the log key."""
        cps = self.checkpoints()
        if not cps:
            return None
        if self.public_key is None:
            raise LogError(f"{self.directory.parent}/log.pub is missing: the checkpoints cannot be checked")
        try:
            return cps[-1], verify_checkpoint(cps[-1], self.public_key, origin=self.origin)
        except TrustlogError as e:
            raise LogError(f"{self.directory}: the latest checkpoint does not verify with the log key ({e}); "
                           "run `trustlog log verify`") from e

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class LogView(Closing):
    """A read-only, following view of one log directory (see the module docstring).

    ``state`` is the fold of records ``[0, state.version)``; :meth:`poll` folds what the
    writer appended since. Not thread-safe: poll and read from one thread.

    ``repos``: keep only these repositories (a command that answers a few requests).
    Repositories are independent in the fold (an event touches only its own), so their
    state is exactly what the full fold gives; from the snapshot only they are decoded
    (the body is still checked whole against its signed digest), and of the records
    after it only theirs are decoded and folded. ``state.version`` is still the offset
    of the whole log.
    """

    def __init__(self, directory: str | os.PathLike[str], *, pins: Iterable[Pin] | None = None,
                 use_snapshot: bool = True, follow_limit: int | None = None,
                 repos: Iterable[str] | None = None) -> None:
        self.dir = Path(directory)
        if not (self.dir / "log").is_dir():
            raise LogError(f"no log at {self.dir} (give --log DIR or set TRUSTLOG_LOG)")
        pub = self.dir / f"{LOG_KEY_NAME}.pub"
        self.public_key = load_public_key(pub) if pub.is_file() else None
        # The log's own pin policy is the one folded with (pins belong to the log);
        # ``pins``, when given, only asserts which policy the caller expects.
        if self.public_key is None and (self.dir / POLICY_FILE).exists():
            # folding without the pins would call pinned repositories trusted on first use
            raise LogError(f"{self.dir} has a pin policy ({POLICY_FILE}) but no {LOG_KEY_NAME}.pub to check it "
                           "with; restore the log's public key")
        self.pins = PinPolicy.load(self.dir, self.public_key).pins if self.public_key is not None else ()
        if pins is not None and not same_pins(tuple(pins), self.pins):
            raise PinPolicyError(f"{self.dir}: the pins given ({len(tuple(pins))} patterns) are not the log's pin "
                                 "policy; pins are part of the log, used by every command: see `trustlog pins show`, "
                                 "and change them with `trustlog pins set FILE` (a signed, logged step)")
        self.tree = ReadOnlyTree(self.dir / "merkle", self.public_key)
        self.recovery = None
        self.notices: list[str] = []
        self._check_evidence()
        self.snapshot_used: int | None = None
        self.snapshots_skipped: list[str] = []
        self.only = None if repos is None else frozenset(repos)
        # A byte search per wanted name pays off for a few names; for many, decoding
        # each record and looking its repository up in the set is cheaper.
        self._needles = None if self.only is None or len(self.only) > 64 else [r.encode() for r in self.only]
        state = TrustState(self.pins)
        if use_snapshot and self.public_key is not None:
            store = SnapshotStore(self.dir / "snapshots", self.public_key)
            if self.only is None:
                snap = store.best(self.tree.size, self.tree.root_at, self.pins)
            else:
                snap = self._best_subset(store)
            self.snapshots_skipped = store.skipped
            if snap is not None:
                state, header = snap
                self.snapshot_used = header.offset
        self.state = state
        self._fold = TrustedFold(state)
        self.tail = SegmentTail(self.dir / "log", state.version)
        self.last_log_time = -1
        self.poll(follow_limit)


    def _check_evidence(self) -> None:
        """What every open checks, reader or writer: a checkpoint frame altered on disk
        refuses the open (``LogCorruptionError``; a torn last frame is left alone), and a
        rejects log that lost what the latest checkpoint committed to is a notice (the
        state does not depend on it; `trustlog log verify` reports it)."""
        if self.public_key is None:
            return
        latest = self.tree.latest()
        if latest is None or not latest[1].rejects_root:
            return
        from .rejects import RejectsLog, commitment_problem

        rdir = self.dir / "rejects"
        try:
            rejects = RejectsLog.open(rdir, read_only=True)
        except TrustlogError as e:
            self.notices.append(f"{rdir}: {e} — run `trustlog log verify`")
            return
        try:
            problem = commitment_problem(rejects.tree, latest[1])
        finally:
            rejects.close()
        if problem is not None:
            self.notices.append(f"{rdir}: {problem} — run `trustlog log verify`")
    def _best_subset(self, store: SnapshotStore):
        """``SnapshotStore.best`` decoding only the repositories in ``self.only``."""
        want = pins_key(self.pins)
        for snap in reversed(store.list()):
            h = snap.header
            if h.offset > self.tree.size:
                continue
            if h.pins != want:
                store.skipped.append(f"{snap.path.name}: made with other pins")
                continue
            try:
                if self.tree.root_at(h.offset) != h.root:
                    store.skipped.append(f"{snap.path.name}: its Merkle root does not match the log's")
                    continue
                st = TrustState(self.pins)
                try:  # through the snapshot's index: only the chunks that hold them are read
                    _, start = store._read_header(snap.path)
                    with gc_paused():
                        st.repos = load_repos(snap.path, start, h.body_len, h.body_sha256, h.offset,
                                              store.public_key, self.only)
                    st.version = h.offset
                    return st, h
                except SnapshotIndexError as e:
                    store.skipped.append(f"{snap.path.name}: index not used ({e})")
                body = store.check_body(snap)
                only, needles = self.only, self._needles
                with gc_paused():
                    for raw in _raw_body.decode(body).repos:
                        b = bytes(raw)
                        if needles is None or any(n in b for n in needles):  # most are not asked for
                            name = _repo_name.decode(b).name
                            if name in only:
                                st.repos[name] = decode_repo(b)
                st.version = h.offset
                return st, h
            except (TrustlogError, msgspec.ValidationError, msgspec.DecodeError) as e:
                store.skipped.append(f"{snap.path.name}: {e}")
        return None

    @property
    def version(self) -> int:
        return self.state.version

    def poll(self, limit: int | None = None) -> int:
        """Fold the records appended since the last call (at most ``limit``); returns
        how many. Raises :class:`LogError` if a record cannot be replayed: the view is
        then unusable (a reader must not answer from a state that stopped following)."""
        before = self.tail.offset
        got = self.tail.poll(limit, needles=self._needles)
        if not got:
            self.state.version = self.tail.offset
            return self.tail.offset - before
        apply = self._fold.apply
        offset = got[0][0]
        only, state = self.only, self.state
        try:
            with gc_paused():
                for offset, body in got:  # with needles, only records that name a wanted repository
                    rec, env, ev = decode_trusted(body)
                    if only is not None and ev.repo not in only:
                        continue
                    if type(ev) is ImageSigned:
                        apply(env, ev, rec.log_time, offset)
                    else:  # authority changes are re-verified: a reader never trusts a forged grant
                        state.apply(env, log_time=rec.log_time, offset=offset, sigcheck=default_sigcheck, event=ev)
                    self.last_log_time = rec.log_time
        except (ValueError, TrustlogError, RejectedEventError) as e:
            raise LogError(f"{self.dir}/log: record {offset} cannot be replayed ({e}); the log was altered — "
                           "run `trustlog log verify`") from e
        self.state.version = self.tail.offset
        return self.tail.offset - before

    @property
    def lag_bytes(self) -> int:
        return self.tail.lag_bytes

    def read(self, offset: int) -> bytes:
        return self.tail.read(offset)

    def state_at(self, offset: int | None = None, log_time: int | None = None) -> TrustState:
        """The state after ``offset`` records or at ``log_time`` (ns): from the newest
        usable snapshot at or below it, folded on. The view's own state (not a copy)
        when the target is where the view stands."""
        target = resolve_target(_ReadOnlyLog(self), offset, log_time)
        if target == self.state.version:
            return self.state
        if target > self.state.version:
            raise LogError(f"offset {target} is past the view ({self.state.version})")
        state, start = TrustState(self.pins), 0
        if self.public_key is not None:
            snap = SnapshotStore(self.dir / "snapshots", self.public_key).best(
                min(target, self.tree.size), self.tree.root_at, self.pins)
            if snap is not None:
                state, start = snap[0], snap[1].offset
        fold = new_fold(state)  # compiled when built (same states: tests/test_compiled_fold.py)
        with gc_paused():
            buf: list = []
            first = start
            for off, body in self.tail.scan(start, target):
                buf.append(body)
                if len(buf) >= 65_536:
                    fold.fold_bodies(first, buf, str(self.dir))
                    first, buf = off + 1, []
            if buf:
                fold.fold_bodies(first, buf, str(self.dir))
        return state

    def close(self) -> None:
        self.tail.close()
        self.tree.close()


class _ReadOnlyLog:
    """The two things ``replay.resolve_target`` asks of a log."""

    def __init__(self, view: LogView) -> None:
        self._view = view

    @property
    def durable_offset(self) -> int:
        return self._view.state.version

    def read(self, offset: int) -> bytes:
        return self._view.read(offset)


class ViewSet(Closing):
    """The views of one ``--log`` directory: a single log (``DIR/log``), or one per
    Kafka partition (``DIR/p0``, ``DIR/p1``, ... as the ingest worker writes them),
    merged into one :class:`TrustState` (repositories are partitioned by key, so they
    never overlap). ``state.version`` is the number of records folded, over all logs."""

    def __init__(self, directory: str | os.PathLike[str], *, pins: Iterable[Pin] | None = None,
                 use_snapshot: bool = True, repos: Iterable[str] | None = None) -> None:
        d = Path(directory)
        self.directory = d
        self._pins = None if pins is None else tuple(pins)
        self._repos = None if repos is None else frozenset(repos)
        self._use_snapshot = use_snapshot
        self.partitioned = not (d / "log").is_dir()
        dirs = self._partition_dirs() if self.partitioned else [d]
        if not dirs:
            raise LogError(f"no log at {d}: neither {d}/log nor partition logs {d}/p0, {d}/p1, ... "
                           "(give --log DIR or set TRUSTLOG_LOG)")
        self.views: list[LogView] = []
        try:
            for p in dirs:
                self.views.append(LogView(p, pins=pins, use_snapshot=use_snapshot, repos=self._repos))
        except BaseException:
            self.close()
            raise
        self.recovery = None
        if not self.partitioned:
            self.state = self.views[0].state
        else:
            self.state = TrustState(self.views[0].pins if self.views else ())
            self._merge()

    @property
    def notices(self) -> list[str]:
        """One line per problem an open found and read around (see LogView)."""
        return [n for v in self.views for n in v.notices]

    def _merge(self) -> None:
        merged = self.state.repos
        for v in self.views:
            for name, repo in v.state.repos.items():
                have = merged.get(name)
                if have is None:
                    if any(name in o.state.repos for o in self.views if o is not v):
                        raise LogError(f"repository {name!r} is in two partition logs; was the topic "
                                       "repartitioned or keyed by something else?")
                    merged[name] = repo
                elif have is not repo:
                    merged[name] = repo
        self.state.version = sum(v.state.version for v in self.views)

    def _partition_dirs(self) -> list[Path]:
        d = self.directory
        return sorted((p for p in (d.iterdir() if d.is_dir() else ())
                       if p.name[:1] == "p" and p.name[1:].isdigit() and (p / "log").is_dir()),
                      key=lambda p: int(p.name[1:]))

    def poll(self, limit: int | None = None) -> int:
        """Fold what the writers appended; in a partitioned directory also pick up
        partition logs that appeared since (a worker took a new partition)."""
        n = sum(v.poll(limit) for v in self.views)
        if self.partitioned:
            known = {v.dir for v in self.views}
            for p in self._partition_dirs():
                if p not in known:
                    try:
                        view = LogView(p, pins=self._pins, use_snapshot=self._use_snapshot, repos=self._repos)
                    except LogError:
                        continue  # still being created by its worker: try again next time
                    self.views.append(view)
                    n += max(view.version, 1)
        if n and self.partitioned:
            self._merge()
        return n

    @property
    def version(self) -> int:
        return self.state.version

    @property
    def lag_bytes(self) -> int:
        return sum(v.lag_bytes for v in self.views)

    def close(self) -> None:
        for v in self.views:
            v.close()


class _AuditLog:
    """What ``services.audit.audit_key`` asks of an open log: ``state``, ``index``,
    ``log.read``."""

    def __init__(self, view: LogView, index: LogIndex) -> None:
        self.state = view.state
        self.index = index
        self.log = view


def _index_for(view: LogView) -> LogIndex:
    """The writer's index, checked (``LogIndex.open(read_only=True)``: a damaged index is
    rebuilt in memory, nothing is written) and caught up in memory to where ``view``
    stands."""
    idx = LogIndex.open(view.dir / "index", read_only=True)
    while view.version < idx.covered:  # the writer indexed records this view has not read yet
        if not view.poll():
            raise LogError(f"{view.dir}/index covers {idx.covered} records but the log holds {view.version}; "
                           "the index is ahead of its log (run the writer to repair it)")
    if idx.covered < view.version:
        state = view.state_at(offset=idx.covered) if idx.covered else TrustState(view.pins)
        fold = TrustedFold(state)
        for off, body in view.tail.scan(idx.covered, view.version):
            rec, env, ev = decode_trusted(body)
            grant, keys = event_postings(state, env, ev)
            fold.apply(env, ev, rec.log_time, off)
            idx.add_event(off, rec.log_time, ev, grant, keys)
    return idx


def audit_source(view: LogView) -> _AuditLog:
    """An object ``audit_key`` can audit, over a read-only view."""
    return _AuditLog(view, _index_for(view))


def read_record(directory: str | os.PathLike[str], offset: int) -> bytes:
    """The body of record ``offset`` of ``DIR/log``, without the lock."""
    t = SegmentTail(Path(directory) / "log", offset)
    try:
        got = t.poll(limit=1)
        if not got:
            raise OffsetOutOfRangeError(f"offset {offset} is not a record of {directory}/log ({t.offset} records)")
        return got[0][1]
    finally:
        t.close()
