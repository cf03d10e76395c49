"""Replay: the trust state as of any offset or log time, rebuilt from the log without
re-verifying signatures.

Every record in the log was verified when it was appended, and the log's integrity is
carried by its Merkle tree and signed checkpoints (``trustlog log verify`` re-checks
everything from scratch). Replay therefore trusts the records' signatures and applies
each event with :class:`TrustedFold`: the same rules as the validating fold, minus the
signature checks, with a fast path for ``ImageSigned`` (the bulk of any log) that makes
the same state changes as :meth:`TrustState.apply` does.

``TrustLog.state_at(offset=N)`` is the state after records ``[0, N)``;
``TrustLog.state_at(log_time=T)`` the state after every record appended at or before
log time ``T`` (ns). Both start from the newest usable snapshot at or below the target
(``ingest/history.py:state_at`` takes a log directory). This module imports nothing of
the pipeline: the pipeline builds on it.
"""
from __future__ import annotations

import bisect
import fnmatch
import gc
import importlib
import os
import struct
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import crc32c
import msgspec

from trustlog.core.bounds import INT64_MAX, INT64_MIN, MAX_SIGNATURES_PER_ENVELOPE
from trustlog.core.errors import EncodingError, InputError, InvalidKeyError, LogCorruptionError, LogError
from trustlog.core.events import Envelope, Event, ImageSigned
from trustlog.core.keys import (ED25519_POINT_REFUSED, DeferredPointChecks, PublicKey, deferred_point_checks,
                                key_material_id, record_point_checks, unchecked_points)
from trustlog.core.names import is_digest, is_tag
from trustlog.core.state import RejectedEventError, TagEntry, TrustState, invalid_key_rejection

from . import fold_backend
from .record_v2 import MARKER_BYTE as V2_MARKER
from .records import LogRecord, decode_record_trusted
from .segment_log import SegmentLog

_record_decoder = msgspec.msgpack.Decoder(LogRecord)
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_event_decoder = msgspec.msgpack.Decoder(Event)


def _trusted(_key: PublicKey, _message: bytes, _signature: bytes) -> bool:
    return True


def decode_trusted(body: bytes | memoryview) -> tuple[LogRecord, Envelope, Event]:
    """Decode a record of a trusted log, either format (no canonical-form re-check: the
    bytes are covered by the Merkle tree; ``trustlog log verify`` checks the canonical
    form). ``records.decode_record_trusted``."""
    return decode_record_trusted(body)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while a fold makes millions of acyclic objects (it
    would rescan them again and again; nothing it could free is made here)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class TrustedFold:
    """Applies records of a trusted log to a :class:`TrustState`: every rule but the
    signature checks. Raises :class:`RejectedEventError` exactly where the validating
    fold would for any reason other than a bad signature."""

    __slots__ = ("state", "deferred", "_materials", "_patterns")

    def __init__(self, state: TrustState) -> None:
        self.state = state
        # the point checks this fold's thread defers (fold_segments sets it): each is
        # noted with the offset of the record that made it
        self.deferred: DeferredPointChecks | None = None
        self._materials: dict[str, bytes] = {}
        self._patterns: dict[tuple[tuple[str, ...], str], bool] = {}

    def apply(self, env: Envelope, ev: Event, log_time: int, offset: int) -> None:
        """Apply one decoded record. ``ImageSigned`` (the bulk of any log) takes a fast
        path with the same effects as ``_image_signed`` in core.state; anything
        unusual goes to :meth:`TrustState.apply` (which then accepts or raises)."""
        if type(ev) is ImageSigned and len(env.signatures) <= MAX_SIGNATURES_PER_ENVELOPE and (
                ev.issued_at >= INT64_MIN and ev.expires <= INT64_MAX and 0 <= ev.size <= INT64_MAX) and (
                0 < ev.version <= INT64_MAX):  # core.bounds, as TrustState.apply checks them
            st = self.state
            repo = st.repos.get(ev.repo)
            if repo is not None and repo.tuf is None and ev.version > repo.versions.get(ev.tag, 0):
                gid = repo.roles.get(ev.role)
                if gid is not None:
                    grant = repo.grants[gid]
                    sigs = env.signatures
                    comp = repo.compromised
                    signatures = None
                    if len(sigs) == 1 and grant.threshold == 1:
                        s = sigs[0]
                        kid = s.keyid
                        if kid in grant.keyids:
                            if comp:
                                since = comp.get(self._material(repo, kid))
                                if since is None or since > log_time:
                                    signatures = ((kid, s.sig),)
                            else:
                                signatures = ((kid, s.sig),)
                    else:
                        signatures = self._counted(repo, grant, sigs, log_time)
                    if signatures is not None and ev.expires > ev.issued_at and ev.size >= 0 and (
                            ev.role == "targets" or self._may_sign(grant.paths, ev.tag)) and (
                            is_tag(ev.tag) and is_digest(ev.digest)):
                        tag = ev.tag
                        repo.tags[tag] = TagEntry(tag, ev.digest, ev.size, ev.expires, ev.role, gid, log_time,
                                                  offset, ev.version, env.payload, signatures)
                        if repo.deleted_tags:
                            repo.deleted_tags.pop(tag, None)
                        repo.versions[tag] = ev.version  # a tag's scope is its name (core.events.version_scope)
                        repo.version = max(repo.version + 1, ev.version)  # as TrustState.apply
                        repo.last_log_time = log_time
                        st.version = offset + 1
                        return
        if self.deferred is not None:
            self.deferred.offset = offset
        self.state.apply(env, log_time=log_time, offset=offset, sigcheck=_trusted, event=ev)

    def _material(self, repo, keyid: str) -> bytes:
        m = self._materials.get(keyid)
        if m is None:
            m = self._materials[keyid] = key_material_id(repo.keys[keyid])
        return m

    def _may_sign(self, paths: tuple[str, ...], tag: str) -> bool:
        k = (paths, tag)
        ok = self._patterns.get(k)
        if ok is None:
            ok = self._patterns[k] = any(fnmatch.fnmatchcase(tag, p) for p in paths)
        return ok

    def counted_keyids(self, repo, kids: list[str | None], threshold: int, log_time: int) -> list[str] | None:
        """``count_signers`` without the crypto, over an envelope's key ids in order
        (None for one that is not the role's): the key ids that count (one per key
        material, none compromised at ``log_time``), or None if ``threshold`` is not
        met. The one counting rule of this fold and the compiled one (``_fastfold``)."""
        comp = repo.compromised
        counted: list[str] = []
        mats: set[bytes] = set()
        for kid in kids:
            if kid is None:
                continue
            mat = self._material(repo, kid)
            if mat in mats:
                continue
            if comp:
                since = comp.get(mat)
                if since is not None and since <= log_time:
                    continue
            mats.add(mat)
            counted.append(kid)
        if not counted or len(counted) < threshold:
            return None
        return counted

    def _counted(self, repo, grant, sigs, log_time: int) -> tuple[tuple[str, bytes], ...] | None:
        """The signatures that count, or None if the threshold is not met."""
        keyids = grant.keyids
        counted = self.counted_keyids(repo, [s.keyid if s.keyid in keyids else None for s in sigs],
                                      grant.threshold, log_time)
        if counted is None:
            return None
        return tuple((s.keyid, s.sig) for s in sigs if s.keyid in counted)

    def fold_bodies(self, first: int, bodies: list, where: str = "log") -> None:
        """Fold consecutive record bodies, the first at offset ``first``."""
        rdec, edec, vdec = _record_decoder.decode, _envelope_decoder.decode, _event_decoder.decode
        apply = self.apply
        offset = first
        try:
            for body in bodies:
                if body[:1] == V2_MARKER:  # a v2 record (records.py): its fields, the payload re-derived
                    rec, env, ev = decode_record_trusted(body)
                    apply(env, ev, rec.log_time, offset)
                else:
                    rec = rdec(body)
                    env = edec(rec.envelope)
                    apply(env, vdec(env.payload), rec.log_time, offset)
                offset += 1
        except (msgspec.ValidationError, msgspec.DecodeError, EncodingError, RejectedEventError) as e:
            raise replay_error(where, offset, e) from e


def replay_error(where: str, offset: int, e: Exception) -> LogError:
    """The error for record ``offset`` of a trusted log that does not replay (the
    compiled fold's ``replay_error`` says the same)."""
    return LogError(f"{where}: record {offset} cannot be replayed ({e}); the log was altered — "
                    "run `trustlog log verify`")


_FRAME = struct.Struct(">II")


def iter_chunks(log: SegmentLog, start: int, end: int, chunk: int = 65_536, *,
                crc: bool = True) -> Iterator[tuple[int, list]]:
    """Record bodies ``[start, end)`` in lists of up to ``chunk``, with the offset of
    each list's first; each segment is read in one go (bodies are memoryviews into
    it). Every CRC is checked unless ``crc=False`` (for a caller that compares every
    body with its Merkle leaf, a stronger check)."""
    unpack = _FRAME.unpack_from
    for name, data, base, stop in iter_segments(log, start, end):
        mv = memoryview(data)
        size = len(data)
        pos, off = 0, base
        out: list = []
        out_first = max(start, base)
        while off < stop:
            if pos + 8 > size:
                raise LogCorruptionError(name, pos, f"the segment ends {stop - off} records early")
            length, want = unpack(data, pos)
            b1 = pos + 8 + length
            if b1 > size:
                raise LogCorruptionError(name, pos, f"record length {length} runs past the end of the segment")
            if off >= start:
                body = mv[pos + 8:b1]
                if crc and crc32c.crc32c(body, crc32c.crc32c(mv[pos:pos + 4])) != want:
                    raise LogCorruptionError(name, pos, "CRC mismatch")
                out.append(body)
                if len(out) >= chunk:
                    yield out_first, out
                    out_first, out = off + 1, []
            pos = b1
            off += 1
        if out:
            yield out_first, out


def iter_records(log: SegmentLog, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, body)`` of records ``[start, end)``, CRC-checked."""
    for first, bodies in iter_chunks(log, start, end):
        for i, body in enumerate(bodies):
            yield first + i, body


def fold_range(state: TrustState, log: SegmentLog, start: int, end: int, *, where: str = "log") -> TrustState:
    """Fold records ``[start, end)`` into ``state`` (which must hold ``[0, start)``)."""
    if state.version != start:
        raise LogError(f"cannot fold from offset {start}: the state holds {state.version} records")
    fold = new_fold(state)
    with gc_paused():
        if isinstance(fold, TrustedFold):
            for first, bodies in iter_chunks(log, start, end):
                fold.fold_bodies(first, bodies, where)
        else:
            fold_segments(fold, log, start, end, where=where)
    return state


def new_fold(state: TrustState, backend: str | None = None):  # -> TrustedFold | _fastfold.CompiledFold
    """The trusted fold over ``state`` on the selected backend (``fold_backend``; ``"c"``
    or ``"py"`` to choose). Both have ``apply`` and ``fold_bodies``; the compiled one
    also ``fold_segment`` (see :func:`fold_segments`)."""
    py = TrustedFold(state)
    backend = backend or fold_backend.BACKEND
    if backend == "py":
        return py
    mod = fold_backend.compiled if fold_backend.compiled is not None else fold_backend.load()
    return mod.CompiledFold(py, decode_trusted)


def _segment_plan(log: SegmentLog, start: int, end: int) -> list[tuple[str, int, int]]:
    """``(name, base, stop)`` of each segment holding records of ``[start, end)``: the
    offset of its first record and where the range stops in it."""
    names = log.segment_names
    bases = [int(n.split(".", 1)[0]) for n in names]
    todo: list[tuple[str, int, int]] = []
    for si in range(max(0, bisect.bisect_right(bases, start) - 1), len(names)):
        base = bases[si]
        if base >= end:
            break
        todo.append((names[si], base, min(end, bases[si + 1]) if si + 1 < len(bases) else end))
    return todo


def iter_segments(log: SegmentLog, start: int, end: int) -> Iterator[tuple[str, bytes, int, int]]:
    """``(name, data, base, stop)`` of each segment holding records of ``[start, end)``:
    its bytes, the offset of its first record and where the range stops in it.

    Each segment is read in one go, the next one by a helper thread while the caller
    works on this one (the read releases the GIL, so on a second core the copy from the
    page cache overlaps the fold); at most two segments are held at a time."""
    todo = _segment_plan(log, start, end)
    directory = log.directory
    if len(todo) < 2:
        for name, base, stop in todo:
            yield name, (directory / name).read_bytes(), base, stop
        return
    with ThreadPoolExecutor(1, thread_name_prefix="trustlog-segment-read") as pool:
        ahead = pool.submit((directory / todo[0][0]).read_bytes)
        for i, (name, base, stop) in enumerate(todo):
            data = ahead.result()
            if i + 1 < len(todo):
                ahead = pool.submit((directory / todo[i + 1][0]).read_bytes)
            yield name, data, base, stop
            del data


def fold_segments(fold, log: SegmentLog, start: int, end: int, *, crc: bool = True, leaves=None,
                  positions: dict | None = None, where: str = "log", on_leaf_mismatch=None) -> None:
    """Fold records ``[start, end)`` with the compiled fold, segment by segment: each
    CRC checked (``crc``) and/or each body compared with its Merkle leaf (``leaves(first,
    count)`` -> packed hashes; a mismatch raises ``on_leaf_mismatch(offset)``); the
    Kafka positions of the records go to ``positions``.

    Each segment is read, and its frames, CRCs and leaf hashes checked
    (``check_frames``, without the GIL), by a helper thread while the fold works on
    the one before, so on two cores the checks cost the fold nothing. A segment whose
    checks all passed is folded without repeating them; one where a check failed is
    folded with them, so the fold stops at that record with the same error as
    without the helper. The fold's repository views are kept from one segment to the
    next (nothing else touches the state meanwhile) and written back at the end.

    The Ed25519 point checks of the keys the records introduce are deferred
    (:class:`~trustlog.core.keys.DeferredPointChecks`): a second helper thread makes
    them from each segment's bytes while the fold goes on, and before this returns, or
    raises anything else, every deferred check is settled in record order; the first
    key that fails stops the replay at its record, with the reason the fold gives it,
    as if it had been checked on the spot (the state is the caller's only after a
    return)."""
    py_fold = fold.py_fold
    interval = sys.getswitchinterval()
    # the fold holds the GIL and lets go of it every few hundred records; a helper that
    # wants it back asks only after the switch interval (5 ms by default), a wait it
    # would pay at each of its calls into Python
    sys.setswitchinterval(min(interval, FOLD_SWITCH_INTERVAL))
    try:
        with deferred_point_checks() as deferred:
            py_fold.deferred = deferred
            try:
                _fold_segments(fold, log, start, end, crc, leaves, positions, where, on_leaf_mismatch)
            except Exception:
                _raise_deferred_failure(deferred, where)
                raise
            finally:
                py_fold.deferred = None
            _raise_deferred_failure(deferred, where)
    finally:
        sys.setswitchinterval(interval)


FOLD_SWITCH_INTERVAL = 0.0002   # seconds (see fold_segments)


def _raise_deferred_failure(deferred: DeferredPointChecks, where: str) -> None:
    scan = fold_backend.logscan()
    failure = deferred.first_failure(scan.ed25519_points_ok if scan is not None else None)
    if failure is not None:
        offset, what = failure
        raise replay_error(where, offset, invalid_key_rejection(what, InvalidKeyError(ED25519_POINT_REFUSED)))


FIRST_PIECE = 32_768   # records of the first segment checked before the fold starts (see _fold_segments)


def _pieces(todo: list[tuple[str, int, int]], start: int) -> list[tuple[str, int, int, int, int]]:
    """``(name, base, first, stop, segment_stop)`` of the ranges fold_segments checks and
    folds one after the other: a segment each, but the first one split after
    FIRST_PIECE records, so that the fold waits only for that much to be read and
    checked before it starts (a whole 64 MiB segment's checks take ~0.2 s)."""
    out = []
    for i, (name, base, stop) in enumerate(todo):
        first = max(start, base)
        if i == 0 and stop - first > 2 * FIRST_PIECE:
            out.append((name, base, first, first + FIRST_PIECE, stop))
            first += FIRST_PIECE
        out.append((name, base, first, stop, stop))
    return out


def _fold_segments(fold, log: SegmentLog, start: int, end: int, crc: bool, leaves, positions: dict | None,
                   where: str, on_leaf_mismatch) -> None:
    m = importlib.import_module(type(fold).__module__)  # the compiled fold's module: its status codes
    pieces = _pieces(_segment_plan(log, start, end), start)
    directory = log.directory
    scan = fold_backend.logscan()  # the compiled key search and point checks (None: the settle makes them)
    finished = threading.Event()   # the fold is over: the helper stops
    last_read: list = [None, b""]  # (name, bytes) of the segment the reader read last

    def read_and_check(name: str, base: int, first: int, stop: int) -> tuple[bytes, int, bytes | None]:
        # the leaf hashes are read here too (os.pread: nothing else reads or writes the
        # tree while the fold runs), so that the fold's thread reads nothing
        lv = leaves(first, stop - first) if leaves is not None else None
        if last_read[0] == name:
            data = last_read[1]
        else:
            data = (directory / name).read_bytes()
            last_read[:] = [name, data]
            # the keys the segment introduces, for the key-check helper (the search runs
            # without the GIL; only the keys, not the segment, wait in the helper's queue)
            if scan is not None:
                helper.submit(_warm_key_checks, unchecked_points(scan.ed25519_keys(data)), finished.is_set)
        return data, m.check_frames(data, base, first, stop, crc, lv)[0], lv

    def submit(i: int):
        name, base, first, stop, _ = pieces[i]
        return reader.submit(read_and_check, name, base, first, stop)

    # not waited for at the end: a chunk of checks still running goes on into the cache,
    # and the settle makes whatever it needs itself
    helper = ThreadPoolExecutor(1, thread_name_prefix="trustlog-key-check")
    with ThreadPoolExecutor(1, thread_name_prefix="trustlog-segment-read") as reader:
        ahead = submit(0) if pieces else None
        try:
            for i, (name, base, first, stop, segment_stop) in enumerate(pieces):
                assert ahead is not None
                data, checked, lv = ahead.result()
                ahead = submit(i + 1) if i + 1 < len(pieces) else None
                if checked == m.DONE:  # every check passed: not again
                    status, pos, off = fold.fold_segment(data, base, first, stop, False, None, positions, where,
                                                         keep_views=i > 0, defer_flush=True)
                else:
                    status, pos, off = fold.fold_segment(data, base, first, stop, crc, lv, positions, where,
                                                         keep_views=i > 0, defer_flush=True)
                _raise_for(m, status, name, data, pos, segment_stop, off, on_leaf_mismatch)
                del data
        finally:
            finished.set()
            last_read[:] = [None, b""]
            fold.flush()
            if ahead is not None:
                ahead.cancel()
    helper.shutdown(wait=False, cancel_futures=True)


WARM_CHUNK = 4096  # point checks per call without the GIL (~0.15 s): the helper looks at stop() between


def _warm_key_checks(publics: list[bytes], stop) -> None:
    """The point checks of ``publics`` (the keys a segment introduces, in log order),
    ahead of the deferred checks that need them, until ``stop()``: with the compiled
    checks (``_logscan.ed25519_points_ok``), which run without the GIL, so beside a fold
    that holds it they take it back once per chunk. The verdicts are libsodium's
    either way, so the state is the same; any left are made when the fold settles."""
    scan = fold_backend.logscan()
    for i in range(0, len(publics), WARM_CHUNK):
        if stop():
            break
        part = publics[i:i + WARM_CHUNK]
        record_point_checks(part, scan.ed25519_points_ok(part))


def _raise_for(m, status: int, name: str, data: bytes, pos: int, stop: int, off: int, on_leaf_mismatch) -> None:
    if status == m.DONE:
        return
    if status == m.SHORT:
        raise LogCorruptionError(name, pos, f"the segment ends {stop - off} records early")
    if status == m.PAST_END:
        length = int.from_bytes(data[pos:pos + 4], "big")
        raise LogCorruptionError(name, pos, f"record length {length} runs past the end of the segment")
    if status == m.CRC_MISMATCH:
        raise LogCorruptionError(name, pos, "CRC mismatch")
    assert on_leaf_mismatch is not None
    raise on_leaf_mismatch(off)


def fold_log(directory: str | os.PathLike[str], end: int | None = None) -> TrustState:
    """The state folded from ``DIR/log`` from offset 0, with no snapshot, index or
    tree (the benchmark's baseline for a full rebuild). Opened read-only: a fold writes
    nothing (no writer lock taken, a torn tail is not cut but not read either)."""
    log = SegmentLog.open(os.path.join(directory, "log"), create=False, verify=False, read_only=True)
    try:
        stop = log.durable_offset if end is None else min(end, log.durable_offset)
        return fold_range(TrustState(), log, 0, stop, where=str(directory))
    finally:
        log.close()


def offset_at_time(log: SegmentLog, log_time: int) -> int:
    """The number of records appended at or before ``log_time`` (binary search: log
    times strictly increase along the log)."""
    lo, hi = 0, log.durable_offset
    while lo < hi:
        mid = (lo + hi) // 2
        if decode_record_trusted(log.read(mid))[0].log_time <= log_time:
            lo = mid + 1
        else:
            hi = mid
    return lo


def resolve_target(log: SegmentLog, offset: int | None, log_time: int | None) -> int:
    end = log.durable_offset
    target = end
    if offset is not None:
        if not 0 <= offset <= end:
            raise InputError(f"offset {offset} is outside the log (0..{end})")
        target = offset
    if log_time is not None:
        target = min(target, offset_at_time(log, log_time))
    return target
