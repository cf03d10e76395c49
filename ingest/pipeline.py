"""The embedded pipeline: decode → batch-verify signatures → fold → append + fsync.

A :class:`TrustLog` is one log directory::

    DIR/log/        segments of accepted events (LogRecord bodies)
    DIR/rejects/    everything not accepted, with its reason (RejectRecord bodies)
    DIR/merkle/     RFC 9162 Merkle tree over the log's record bodies, signed checkpoints
    DIR/index/      key id -> offsets, repository -> offsets (``logindex``)
    DIR/snapshots/  signed state snapshots (``snapshots``)
    DIR/log.key     the log's Ed25519 signing key (mode 0600); DIR/log.pub its public half

On open, the state is rebuilt by folding the log: from the newest usable snapshot, then
records up to the latest signed checkpoint without re-verifying signatures (each
record's leaf hash is compared with the tree the checkpoint signs), then any records
after it with their signatures verified in batches, as at ingest. Every batch is
verified as a batch (one call into the crypto backend), folded in order, and made
durable with one group commit. Rejects are made durable *before* the accepted records
of the same batch, so a crash can only leave rejects that are recognised (by input
hash) and not recorded twice when the batch is read again. The tree and the indexes
are written after the log (not fsynced per batch: they are derived data, repaired from
the log on open); a checkpoint is signed every ``checkpoint_every`` records and on close.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trustlog.core.errors import EncodingError, EventTooLargeError, LogError
from trustlog.core.events import (
    DEFAULT_MAX_EVENT_BYTES, Envelope, Event, RepoCreated, RoleKeysSet, RootRotated, decode_envelope, decode_event,
    decode_wire,
)
from trustlog.core.keys import ALG_BY_KEYTYPE, PublicKey, SigningKey
from trustlog.core.merkle import leaf_hash
from trustlog.core.reasons import Reject
from trustlog.core.state import Pin, RejectedEventError, TrustState
from trustlog.verifier.cache import CryptoCache, cache_key

from .logindex import LogIndex, event_postings
from .records import KafkaPosition, LogClock, LogRecord, decode_record, encode_record
from .rejects import DEFAULT_MAX_RAW_BYTES, RejectsLog
from .replay import TrustedFold, decode_trusted, gc_paused, iter_chunks, resolve_target
from .segment_log import SegmentLog
from .snapshots import SnapshotStore
from .transparency import LogTree

DEFAULT_CHECKPOINT_EVERY = 100_000
DEFAULT_SNAPSHOT_EVERY = 1_000_000

MAX_REMEMBERED_KEYS = 1_000_000  # keys introduced by events, kept as pre-verification hints
CryptoFn = Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]]


@dataclass
class BatchResult:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: Counter = field(default_factory=Counter)
    last_positions: dict[tuple[str, int], int] = field(default_factory=dict)
    last_reject: tuple[str, str] | None = None   # (reason, detail) of the latest reject
    rejected_items: dict[int, tuple[str, str]] = field(default_factory=dict)   # batch index -> (reason, detail)

    def add(self, other: "BatchResult") -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.reasons.update(other.reasons)
        self.last_positions.update(other.last_positions)
        self.last_reject = other.last_reject or self.last_reject


def _default_crypto() -> CryptoFn:
    from trustlog.verifier.batch import default_crypto

    return default_crypto()


class TrustLog:
    """A local trust log directory and the state folded from it."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        pins: Iterable[Pin] = (),
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        crypto: CryptoFn | None = None,
        clock: LogClock | None = None,
        fsync_fn: Callable[[int], None] | None = None,
        segment_bytes: int | None = None,
        checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
        snapshot_every: int | None = DEFAULT_SNAPSHOT_EVERY,
        snapshot_keep: int = 3,
        log_key: SigningKey | None = None,
    ) -> None:
        """``checkpoint_every``: sign a checkpoint once this many records were appended
        since the last one (and always on close); ``snapshot_every``: write a state
        snapshot every this many records (and on close once a tenth of that has
        accumulated), keeping the ``snapshot_keep`` newest automatic ones. None turns
        the periodic ones off."""
        self.dir = Path(directory)
        self.max_event_bytes = max_event_bytes
        self.crypto = crypto or _default_crypto()
        self.clock = clock or LogClock()
        self.cache = CryptoCache()
        self._introduced: dict[str, PublicKey] = {}
        self.pins = tuple(pins)
        self.state = TrustState(self.pins)
        self.event_ids: set[bytes] = set()
        self.positions: dict[tuple[str, int], int] = {}
        self._reject_hashes: set[bytes] = set()
        self.checkpoint_every = checkpoint_every
        self.snapshot_every = snapshot_every
        self.snapshot_keep = snapshot_keep
        self.snapshot_used: int | None = None
        self.opened_with: dict[str, int] = {}
        self._failed = False
        self._closed = False
        self._dup_cache: dict[str, list[int]] = {}
        kw: dict = {}
        if fsync_fn is not None:
            kw["fsync_fn"] = fsync_fn
        if segment_bytes is not None:
            kw["segment_bytes"] = segment_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        # Records are CRC-checked when read; the whole-log check on open is `log verify`'s
        # (with a snapshot, most records are never read again on open).
        self.log = SegmentLog.open(self.dir / "log", verify=False, **kw)
        try:
            self.rejects = RejectsLog.open(self.dir / "rejects", **({"fsync_fn": fsync_fn} if fsync_fn else {}))
            self.recovery = self.log.recovery
            self.tree = LogTree.open(self.dir, log_key)
            self.index = LogIndex.open(self.dir / "index")
            self.snapshots = SnapshotStore(self.dir / "snapshots", self.tree.key)
            self._replay()
        except BaseException:
            self._abort()
            raise
        self._last_checkpoint = self.log.next_offset
        self._last_snapshot = self.snapshot_used or 0

    def _attested_floor(self) -> int:
        latest = self.tree.merkle.checkpoints.latest_checkpoint()
        return 0 if latest is None else latest.tree_size

    def _abort(self) -> None:
        for closer in (lambda: self.index.close(), lambda: self.tree.close(flush=False),
                       lambda: self.rejects.close(), lambda: self.log.close()):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort while an error propagates
                pass
        self._closed = True

    # -- open -------------------------------------------------------------------------

    def _replay(self) -> None:
        """Rebuild the state (and repair the tree and indexes) from the log:

        1. the tree is cut back to the latest signed checkpoint (``attested``);
        2. the newest snapshot at or below both ``attested`` and the offset the index
           covers, whose Merkle root matches, is loaded;
        3. records up to ``attested`` are folded without re-verifying signatures, each
           record's leaf hash compared with the tree's;
        4. records after ``attested`` are folded with their signatures verified in
           batches and their leaves appended to the tree again.
        """
        n = self.log.durable_offset
        attested = self.tree.reconcile(n)
        if self.index.covered > n:  # the index names records the log no longer has
            self.index._reset()
        covered = self.index.covered
        start = 0
        snap = self.snapshots.best(min(attested, covered), self.tree.merkle.root_at, self.pins)
        if snap is not None:
            self.state, header = snap
            start = header.offset
            self.snapshot_used = start
            self.clock.observe(header.last_log_time)
            self.positions.update({(t, p): o for t, p, o in header.positions})
        self.opened_with = {"snapshot": start, "trusted": max(0, attested - start), "verified": n - attested,
                            "indexed": max(0, n - max(covered, start))}
        self._replay_trusted(start, attested)
        self._replay_verified(attested, n)
        self.tree.merkle.flush(fsync=False)
        if self.index.covered != covered:
            self.index.save_heads()
        if n > attested:
            self.tree.checkpoint(self.clock.last)
        for rec in self.rejects:
            self._reject_hashes.add(_reject_hash(rec.raw))

    def _replay_trusted(self, start: int, end: int) -> None:
        """Fold records ``[start, end)`` without re-verifying signatures; each record
        must hash to the leaf the signed tree holds for it (which also covers its CRC).
        Their event ids are not kept: a redelivered old event is recognised through the
        repository index (see :meth:`_logged`)."""
        if start >= end:
            return
        fold = TrustedFold(self.state)
        apply = fold.apply
        index, state = self.index, self.state
        merkle = self.tree.merkle
        positions = self.positions
        last_time = -1
        with gc_paused():
            for first, bodies in iter_chunks(self.log, start, end, crc=False):
                leaves = merkle.leaf_hashes(first, len(bodies))
                offset = first
                try:
                    for i, body in enumerate(bodies):
                        offset = first + i
                        if leaf_hash(body) != leaves[32 * i:32 * i + 32]:
                            raise LogError(
                                f"{self.dir}/log: record {offset} is not the record the signed Merkle tree holds at "
                                "that offset: the log was altered — run `trustlog log verify`")
                        rec, env, event = decode_trusted(body)
                        if offset >= index.covered:
                            grant, keys = event_postings(state, env, event)
                            apply(env, event, rec.log_time, offset)
                            index.add_event(offset, rec.log_time, event, grant, keys)
                        else:
                            apply(env, event, rec.log_time, offset)
                        last_time = rec.log_time
                        if rec.source is not None:
                            positions[(rec.source.topic, rec.source.partition)] = rec.source.offset
                except (EncodingError, RejectedEventError) as e:
                    raise LogError(f"{self.dir}/log: record {offset} cannot be replayed ({e}); the log was altered "
                                   "— run `trustlog log verify`") from e
                index.flush()
        self.clock.observe(last_time)

    def _replay_verified(self, start: int, end: int) -> None:
        """Fold records ``[start, end)`` verifying every signature, as at ingest."""
        batch: list[tuple[int, bytes, LogRecord, Envelope]] = []
        for offset, body in self.log.scan(start):
            if offset >= end:
                break
            try:
                rec = decode_record(body)
                env = decode_envelope(rec.envelope, max_bytes=1 << 30)
            except EncodingError as e:
                raise LogError(f"{self.dir}/log: record {offset} does not decode: {e}") from e
            batch.append((offset, body, rec, env))
            if len(batch) >= 4096:
                self._replay_batch(batch)
                batch = []
        if batch:
            self._replay_batch(batch)
        self.index.flush()

    def _replay_batch(self, batch: list[tuple[int, bytes, LogRecord, Envelope]]) -> None:
        decoded = [(env, _safe_decode(env)) for _, _, _, env in batch]
        self._precheck(decoded)
        for (offset, body, rec, env), (_, event) in zip(batch, decoded):
            postings = event_postings(self.state, env, event) if event is not None else None
            try:
                self.state.apply(env, log_time=rec.log_time, offset=offset, sigcheck=self._sigcheck, event=event)
            except RejectedEventError as e:
                raise LogError(
                    f"{self.dir}/log: record {offset} breaks the rules on replay ({e}); the log was altered "
                    "or written by an incompatible version — run `trustlog log verify`"
                ) from e
            assert event is not None and postings is not None
            self.tree.append_leaf(leaf_hash(body))
            self.index.add_event(offset, rec.log_time, event, *postings)
            self.event_ids.add(bytes.fromhex(env.event_id))
            self.clock.observe(rec.log_time)
            if rec.source is not None:
                self.positions[(rec.source.topic, rec.source.partition)] = rec.source.offset

    # -- signatures ---------------------------------------------------------------------

    def _sigcheck(self, key: PublicKey, message: bytes, signature: bytes) -> bool:
        ck = cache_key(key.alg, key.public, message, signature)
        v = self.cache.get(ck)
        if v is None:
            v = self.crypto([(key.alg, key.public, message, signature)])[0] == 1
            self.cache.put(ck, v)
        return v

    def preverify(self, raws: Sequence[bytes | None]) -> None:
        """Check the signatures of ``raws`` into the validity cache ahead of
        :meth:`ingest_batch` (safe from another thread: it only reads the state and adds
        cache entries, which are facts about (key, message, signature), not trust)."""
        decoded: list[tuple[Envelope, Event | None]] = []
        for raw in raws:
            if not raw:
                continue
            try:
                env = decode_wire(raw, self.max_event_bytes)
                decoded.append((env, decode_event(env.payload)))
            except EncodingError:
                continue
        if decoded:
            self._precheck(decoded)

    def _precheck(self, decoded: Sequence[tuple[Envelope, Event | None]]) -> None:
        """Verify, in one backend call, every signature the fold will ask about.

        Candidate keys are those the repository knows plus every key that an event seen
        so far introduces (``RepoCreated``, ``RootRotated``, ``RoleKeysSet``), in this
        batch or an earlier one not yet folded: a key id is the hash of the key, so the
        mapping is always right. This only decides what is pre-computed into the
        validity cache; what counts is still decided by the fold."""
        introduced = self._introduced
        if len(introduced) > MAX_REMEMBERED_KEYS:
            introduced.clear()  # only a hint; the state holds every accepted key anyway
        for _, event in decoded:
            if isinstance(event, RepoCreated):
                keys: Iterable[PublicKey] = (*event.root_keys, *event.targets_keys)
            elif isinstance(event, RootRotated):
                keys = event.root_keys
            elif isinstance(event, RoleKeysSet):
                keys = event.keys
            else:
                continue
            for k in keys:
                introduced[k.keyid] = k
        items: list[tuple[int, bytes, bytes, bytes]] = []
        cks: list[bytes] = []
        seen: set[bytes] = set()
        for env, event in decoded:
            if event is None:
                continue
            repo = self.state.repos.get(event.repo)
            known = repo.keys if repo is not None else {}
            for s in env.signatures:
                key = known.get(s.keyid) or introduced.get(s.keyid)
                if key is None or key.keytype not in ALG_BY_KEYTYPE:
                    continue  # unknown keys and key types are the fold's to reject
                ck = cache_key(key.alg, key.public, env.payload, s.sig)
                if ck in seen or ck in self.cache:
                    continue
                seen.add(ck)
                cks.append(ck)
                items.append((key.alg, key.public, env.payload, s.sig))
        if items:
            for ck, ok in zip(cks, self.crypto(items), strict=True):
                self.cache.put(ck, ok == 1)

    # -- ingest -------------------------------------------------------------------------

    def ingest_batch(self, raws: Sequence[tuple[bytes, KafkaPosition | None]]) -> BatchResult:
        """Decode, verify, fold and durably append one batch; return what happened.

        Raises :class:`LogError` if the batch cannot be made durable; the caller must
        then stop and reopen (the in-memory state is ahead of the disk)."""
        res = BatchResult()
        decoded: list[tuple[bytes, KafkaPosition | None, Envelope | None, Event | None, RejectedEventError | None]] = []
        for raw, src in raws:
            try:
                env = decode_wire(raw, self.max_event_bytes)
            except EventTooLargeError as e:
                decoded.append((raw, src, None, None, RejectedEventError(Reject.TOO_LARGE, str(e))))
                continue
            except EncodingError as e:
                decoded.append((raw, src, None, None, RejectedEventError(Reject.MALFORMED, f"envelope: {e}")))
                continue
            try:
                event = decode_event(env.payload)
            except EncodingError as e:
                decoded.append((raw, src, env, None, RejectedEventError(Reject.MALFORMED, f"payload: {e}")))
                continue
            decoded.append((raw, src, env, event, None))
        if self._failed or self._closed:
            raise LogError(f"{self.dir}: this TrustLog refuses writes after a failed batch (or close); reopen it")
        try:
            self._ingest_decoded(decoded, res)
            self.positions.update(res.last_positions)
            self._dup_cache.clear()
            if self.checkpoint_every and self.log.next_offset - self._last_checkpoint >= self.checkpoint_every:
                self.checkpoint()
            if self.snapshot_every and self.log.next_offset - self._last_snapshot >= self.snapshot_every:
                self.snapshot(auto=True)
        except BaseException:
            self._failed = True
            raise
        return res

    def _ingest_decoded(self, decoded: list, res: BatchResult) -> None:
        self._precheck([(env, ev) for _, _, env, ev, err in decoded if env is not None and err is None])
        index, tree = self.index, self.tree
        for item, (raw, src, env, event, err) in enumerate(decoded):
            if src is not None:
                res.last_positions[(src.topic, src.partition)] = src.offset
            if err is None and env is not None:
                eid = bytes.fromhex(env.event_id)
                if eid in self.event_ids:
                    res.duplicates += 1
                    continue
                log_time = self.clock.next()
                postings = event_postings(self.state, env, event)
                try:
                    self.state.apply(env, log_time=log_time, offset=self.log.next_offset, sigcheck=self._sigcheck,
                                     event=event)
                except RejectedEventError as e:
                    if e.reject in (Reject.VERSION_ROLLBACK, Reject.REPOSITORY_EXISTS) and self._logged(event, eid):
                        self.event_ids.add(eid)
                        res.duplicates += 1
                        continue
                    err = e
                else:
                    body = encode_record(LogRecord(log_time, env.to_bytes(), src))
                    offset = self.log.append(body)
                    tree.append_leaf(leaf_hash(body))
                    index.add_event(offset, log_time, event, *postings)
                    self.event_ids.add(eid)
                    res.accepted += 1
                    continue
            assert err is not None
            h = _reject_hash(raw)
            if h in self._reject_hashes:
                res.duplicates += 1
                continue
            self._reject_hashes.add(h)
            self.rejects.record(err.reason, err.message, raw, event_id=env.event_id if env is not None else "",
                                source=src, log_time=self.clock.next())
            res.rejected += 1
            res.reasons[err.reason] += 1
            res.last_reject = (err.reason, err.message)
            res.rejected_items[item] = res.last_reject
        self.rejects.flush()
        self.log.flush()
        tree.merkle.flush(fsync=False)
        index.flush()

    def record_reject(self, reason: str, message: str, raw: bytes) -> bool:
        """Keep an input that a source's own checks refused before the fold (a Notary
        file that is not the one its snapshot names), with its reason, once."""
        if self._failed or self._closed:
            raise LogError(f"{self.dir}: this TrustLog refuses writes after a failed batch (or close); reopen it")
        h = _reject_hash(raw)
        if h in self._reject_hashes:
            return False
        self._reject_hashes.add(h)
        self.rejects.record(reason, message, raw, event_id="", source=None, log_time=self.clock.next())
        self.rejects.flush()
        return True

    def _logged(self, event: Event, eid: bytes) -> bool:
        """Is ``event`` (refused as a rollback or a second creation) the very event
        already logged at its repository and version? Then it is a redelivery. The
        repository index gives the offset: versions go up by one per logged event."""
        offsets = self._dup_cache.get(event.repo)
        if offsets is None:
            offsets = self._dup_cache[event.repo] = [p.offset for p in self.index.repo_postings(event.repo)]
        if not 1 <= event.version <= len(offsets):
            return False
        offset = offsets[event.version - 1]
        if offset >= self.log.durable_offset:
            return False
        return hashlib.sha256(decode_record(self.log.read(offset)).envelope).digest() == eid

    # -- checkpoints, snapshots, replay -------------------------------------------------

    def checkpoint(self):
        """Sign a checkpoint over every durable record and make the indexes durable.
        Returns the :class:`SignedCheckpoint` (None when nothing changed)."""
        if self._failed:
            raise LogError(f"{self.dir}: no checkpoint after a failed batch; reopen the log")
        self.log.flush()
        signed = self.tree.checkpoint(self.clock.last)
        self.index.save_heads()
        self._last_checkpoint = self.log.next_offset
        return signed

    def snapshot(self, *, auto: bool = False) -> Path:
        """Write a signed snapshot of the current state (see ``snapshots``)."""
        if self._failed:
            raise LogError(f"{self.dir}: no snapshot after a failed batch; reopen the log")
        self.checkpoint()  # a snapshot is usable on open only below a signed checkpoint
        path = self.snapshots.write(self.state, root=self.tree.merkle.root_at(self.state.version),
                                    last_log_time=max(self.clock.last, 0), positions=self.positions, auto=auto)
        self._last_snapshot = self.state.version
        if auto:
            self.snapshots.prune(self.snapshot_keep)
        return path

    def state_at(self, offset: int | None = None, log_time: int | None = None) -> TrustState:
        """The state after ``offset`` records, or at ``log_time`` (ns): from the newest
        usable snapshot at or below it, folded on without re-verifying signatures. The
        current state itself (not a copy) when the target is the end of the log."""
        from .replay import fold_range

        target = resolve_target(self.log, offset, log_time)
        if target == self.state.version:
            return self.state
        snap = self.snapshots.best(target, self.tree.merkle.root_at, self.pins)
        state, start = (snap[0], snap[1].offset) if snap is not None else (TrustState(self.pins), 0)
        return fold_range(state, self.log, start, target, where=str(self.dir))

    def snapshot_at(self, offset: int) -> Path:
        """Write a snapshot of the state after ``offset`` records (a past point)."""
        st = self.state_at(offset=offset)
        last = decode_record(self.log.read(offset - 1)).log_time if offset else 0
        return self.snapshots.write(st, root=self.tree.merkle.root_at(offset), last_log_time=last)

    def ingest(self, raws: Iterable[tuple[bytes, KafkaPosition | None]], batch_size: int = 2048,
               progress: Callable[[BatchResult], None] | None = None) -> BatchResult:
        total = BatchResult()
        batch: list[tuple[bytes, KafkaPosition | None]] = []
        for item in raws:
            batch.append(item)
            if len(batch) >= batch_size:
                r = self.ingest_batch(batch)
                total.add(r)
                if progress:
                    progress(r)
                batch = []
        if batch:
            r = self.ingest_batch(batch)
            total.add(r)
            if progress:
                progress(r)
        return total

    def close(self) -> None:
        """Sign a final checkpoint, save the indexes (and a snapshot when enough records
        accumulated) and close. After a failed batch nothing derived is written: the
        next open repairs the tree and indexes from what reached the log."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._failed:
                self.log.flush()
                self.tree.checkpoint(self.clock.last)
                self.index.save_heads()
                if (self.snapshot_every and self.state.version > 0
                        and self.state.version - self._last_snapshot >= max(1, self.snapshot_every // 10)):
                    self.snapshot(auto=True)
            else:
                self.index.discard_pending()
                merkle = self.tree.merkle
                merkle.truncate(max(min(merkle.size, self.log.durable_offset), self._attested_floor()))
        finally:
            try:
                self.index.close()
                self.tree.close(flush=not self._failed)
            finally:
                self.rejects.close()
                self.log.close()

    def __enter__(self) -> "TrustLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reject_hash(raw: bytes) -> bytes:
    """Identity of a rejected input as the rejects log stores it (cut to its limit)."""
    return hashlib.sha256(raw[:DEFAULT_MAX_RAW_BYTES]).digest()


def _safe_decode(env: Envelope) -> Event | None:
    try:
        return decode_event(env.payload)
    except EncodingError:
        return None


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[bytes, KafkaPosition | None]]:
    """Envelopes from a JSONL file, one per line, passed on raw: a line that is not a
    valid envelope is rejected by the pipeline with a reason, never skipped."""
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if line:
                yield line, None
