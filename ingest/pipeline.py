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

The segments are the truth. Every derived file is checked on open (the Merkle levels
against their checksums and the signed checkpoint, the index files against theirs,
snapshots by signature, digest and root, each record of the trusted range against its
leaf) and rebuilt from the segments when it is wrong; each repair is one line in
:attr:`TrustLog.notices`. ``read_only=True`` opens take no lock and write nothing: the
same checks run, the repairs stay in memory, and a torn tail is read around, not cut.
"""
from __future__ import annotations

import fnmatch
import hashlib
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from trustlog.core.errors import EncodingError, LogError, TrustlogError
from trustlog.core.events import (
    DEFAULT_MAX_EVENT_BYTES, Envelope, Event, ImageSigned, decode_envelope, decode_event,
)
from trustlog.core.keys import PublicKey, SigningKey
from trustlog.core.merkle import leaf_hash
from trustlog.core.reasons import Reject
from trustlog.core.state import Pin, RejectedEventError, TrustState
from trustlog.core.crypto_hook import CryptoFn, default_crypto
from trustlog.core.sigcache import CachedSigCheck, CryptoCache, remember

from . import fold_backend, precheck
from .closing import Closing
from .batch_decode import PreparedBatch, decode_batch
from .logindex import KIND_CODE, LogIndex, event_postings
from .pinpolicy import PinPolicy, PinPolicyEntry, PinPolicyError, contradictions, same_pins
from .records import KafkaPosition, LogClock, LogRecord, decode_record, decode_reject, encode_record
from .rejects import DEFAULT_MAX_RAW_BYTES, RejectsLog
from .rejects import commitment_problem as rejects_commitment_problem
from .replay import TrustedFold, decode_trusted, fold_segments, gc_paused, iter_chunks, new_fold, resolve_target
from .merkle_store import LEAVES_FILE as LEAVES_NAME
from .segment_log import SegmentLog
from .snapshots import SnapshotStore
from .transparency import LogTree

DEFAULT_CHECKPOINT_EVERY = 100_000
DEFAULT_SNAPSHOT_EVERY = 1_000_000

MAX_REMEMBERED_KEYS = 1_000_000  # keys introduced by events, kept as pre-verification hints


@dataclass(frozen=True)
class SourceLine:
    """Where an input came from in a file (``read_lines``): kept with its reject."""

    path: str
    line: int


class _LeafMismatchError(LogError):
    """A record of the signed range does not hash to the stored leaf: the leaf file or
    the record is wrong, which the root over the records decides."""


class Fate(msgspec.Struct, frozen=True, gc=False):
    """What became of one input of a batch (the Kafka worker's outcome messages).

    A redelivered input gets the fate of the copy already stored: ``status``,
    ``log_offset``/``reason`` and ``stored_source`` (where that copy came from) are the
    original's, so a repeated outcome says the same thing. ``status`` is "duplicate"
    only when the stored copy could not be located.

    A frozen msgspec Struct rather than a frozen dataclass: one is made per input on
    the ingest thread, and a frozen dataclass's ``__init__`` (an ``object.__setattr__``
    per field) costs about 1 µs against 0.1 µs."""

    status: str                              # "accepted" | "rejected" | "duplicate"
    source: KafkaPosition | None             # this input's own position
    event_id: str = ""
    log_offset: int | None = None            # accepted: the record's offset in this log
    stored_source: KafkaPosition | None = None
    reason: str = ""
    detail: str = ""


@dataclass
class BatchResult:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: Counter = field(default_factory=Counter)
    last_positions: dict[tuple[str, int], int] = field(default_factory=dict)
    last_reject: tuple[str, str] | None = None   # (reason, detail) of the latest reject
    fates: list[Fate] = field(default_factory=list)  # one per input, in order (ingest_batch only)
    rejected_items: dict[int, tuple[str, str]] = field(default_factory=dict)   # batch index -> (reason, detail)

    def add(self, other: BatchResult) -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.reasons.update(other.reasons)
        self.last_positions.update(other.last_positions)
        self.last_reject = other.last_reject or self.last_reject


class TrustLog(Closing):
    """A local trust log directory and the state folded from it."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        pins: Iterable[Pin] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        crypto: CryptoFn | None = None,
        clock: LogClock | None = None,
        fsync_fn: Callable[[int], None] | None = None,
        segment_bytes: int | None = None,
        checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
        snapshot_every: int | None = DEFAULT_SNAPSHOT_EVERY,
        snapshot_keep: int = 3,
        log_key: SigningKey | None = None,
        read_only: bool = False,
        admit: Callable[[Event], RejectedEventError | None] | None = None,
    ) -> None:
        """``admit``: asked about every decoded event before the fold; a
        :class:`RejectedEventError` it returns rejects the event (the Kafka worker
        refuses events of repositories that belong to another partition).
        ``checkpoint_every``: sign a checkpoint once this many records were appended
        since the last one (and always on close); ``snapshot_every``: write a state
        snapshot every this many records (and on close once a tenth of that has
        accumulated), keeping the ``snapshot_keep`` newest automatic ones. None turns
        the periodic ones off. ``read_only``: see the module docstring. ``pins``: the pin
        policy the caller expects; the log's own (``DIR/pins.jsonl``, see ``pinpolicy``) is
        always the one used, and a different one raises :class:`PinPolicyError` (change it
        with :meth:`set_pins`)."""
        self.dir = Path(directory)
        self.read_only = read_only
        self.notices: list[str] = []
        self.close_notices: list[str] = []
        self.max_event_bytes = max_event_bytes
        self.crypto = crypto or default_crypto()
        self.clock = clock or LogClock()
        self.cache = CryptoCache()
        self._sigcheck = CachedSigCheck(self.cache, self.crypto)
        self.fast_fold = True   # see _fast_fold_ok; False: every event through TrustState.apply
        self.fast_folded = 0    # events that took TrustedFold's path at ingest
        # which fold takes that path: "c" its compiled twin (_fastfold.IngestFold), "py" TrustedFold
        self.ingest_fold = fold_backend.BACKEND
        self.compiled_folded = 0  # of fast_folded, those the compiled one applied itself
        self._introduced: dict[str, PublicKey] = {}
        self.pins: tuple[Pin, ...] = ()
        self.state = TrustState()
        self.event_ids: set[bytes] = set()
        self.positions: dict[tuple[str, int], int] = {}
        self._reject_hashes: dict[bytes, int] = {}  # input hash -> its offset in the rejects log
        self.admit = admit
        self.checkpoint_every = checkpoint_every
        self.snapshot_every = snapshot_every
        self.snapshot_keep = snapshot_keep
        self.snapshot_used: int | None = None
        self.opened_with: dict[str, int] = {}
        self._failed = False
        self._closed = False
        self._dup_cache: dict[str, tuple[int, dict[bytes, int]]] = {}  # repo -> (postings hashed, event id -> offset)
        self._dup_fresh: set[str] = set()  # repositories whose map is current in this batch
        kw: dict = {}
        if fsync_fn is not None:
            kw["fsync_fn"] = fsync_fn
        if segment_bytes is not None:
            kw["segment_bytes"] = segment_bytes
        if not read_only:
            self.dir.mkdir(parents=True, exist_ok=True)
        # Records are CRC-checked when read; the whole-log check on open is `log verify`'s
        # (with a snapshot, most records are never read again on open).
        if read_only:
            # A reader takes no lock, so a writer may go on meanwhile. The checkpoints and
            # the index heads are read first: the segments and the rejects log read after
            # them can only have grown, so neither looks short of what was signed or indexed.
            self.tree = LogTree.open(self.dir, log_key, read_only=True)
            try:
                self.index = LogIndex.open(self.dir / "index", read_only=True)
                self.log = SegmentLog.open(self.dir / "log", verify=False, read_only=True, **kw)
            except BaseException:
                self._abort()
                raise
        else:
            self.log = SegmentLog.open(self.dir / "log", verify=False, **kw)
        try:
            self.rejects = RejectsLog.open(self.dir / "rejects", read_only=read_only,
                                           **({"fsync_fn": fsync_fn} if fsync_fn else {}))
            self.recovery = self.log.recovery
            if not read_only:
                self.tree = LogTree.open(self.dir, log_key)
            self.pin_policy = PinPolicy.load(self.dir, self.tree.public_key)
            self.pins = self.pin_policy.pins
            if pins is not None and not same_pins(pins, self.pins):
                raise PinPolicyError(self._pins_differ(tuple(pins)))
            self.state = TrustState(self.pins)
            if not read_only:
                self.index = LogIndex.open(self.dir / "index")
            self.snapshots = SnapshotStore(self.dir / "snapshots", self.tree.key or self.tree.public_key)
            self._check_rejects()
            self._replay()
            self._collect_notices()
        except BaseException:
            self._abort()
            raise
        self._last_checkpoint = self.log.next_offset
        self._last_snapshot = self.snapshot_used or 0

    def _collect_notices(self) -> None:
        """One line per derived file found wrong (and what was done), per torn tail."""
        d = self.dir
        for name, seglog in (("log", self.log), ("rejects", self.rejects.log)):
            if seglog.torn_tail is not None:
                t = seglog.torn_tail
                self.notices.append(f"{d}/{name}/{t.segment}: a torn last record of {t.truncated_bytes} bytes is "
                                    "not read (read-only; the next writer cuts it)")
            for idx in seglog.rebuilt_indexes:
                self.notices.append(f"{d}/{name}/{idx}: missing or wrong; "
                                    + ("rebuilt in memory" if self.read_only else "rebuilt from the segment"))
        if not self.read_only:  # a reader's view of the unsigned tail may race a writer: only check() counts
            for r in self.tree.merkle.repairs:
                self.notices.append(f"{d}/merkle/{r}")
        self.notices.extend(self.tree.notices)
        if self.index.rebuilt_because:
            self.notices.append(f"{d}/index: {self.index.rebuilt_because}; rebuilt "
                                + ("in memory" if self.read_only else "from the segments"))
        for s in self.snapshots.skipped:
            self.notices.append(f"{d}/snapshots/{s}: not used")

    def _leaves_from_log(self, n: int) -> Iterator[bytes]:
        return (leaf_hash(body) for body in itertools.islice(self.log.iter_segment_bodies(0), n))

    def _pins_differ(self, given: tuple[Pin, ...]) -> str:
        have = (f"pin policy version {self.pin_policy.version} ({len(self.pins)} patterns)" if self.pin_policy.version
                else "no pin policy (every repository is trusted on first use)")
        return (f"{self.dir}: the pins given ({len(given)} patterns) are not the log's: it has {have}. Pins are part "
                "of the log, used by every command; change them with `trustlog pins set FILE` (a signed, logged "
                "step that checks them against every repository already in the log)")

    def set_pins(self, pins: Iterable[Pin]) -> PinPolicyEntry:
        """Record a new pin policy in the log, signed by the log key, in force from now
        on for every command. Refused (:class:`PinPolicyError`) when a repository
        already in the log was created with root keys the new pins do not allow."""
        if self.read_only:
            raise LogError(f"{self.dir} is open read-only: open it for writing to change its pins")
        if self._failed or self._closed:
            raise LogError(f"{self.dir}: no pin change after a failed batch (or close); reopen the log")
        pins = tuple(pins)
        bad = contradictions(pins, self.state)
        if bad:
            raise PinPolicyError(f"{self.dir}: the new pins contradict {len(bad)} repositories already in the log, "
                                 f"first {bad[0]}; a pin policy must hold for the whole log")
        self.log.flush()
        n = self.log.next_offset
        entry = self.pin_policy.append(pins, key=self.tree.key, offset=n, root=self.tree.merkle.root_at(n),
                                       log_time=self.clock.next())
        self.pins = pins
        self.state.pins = pins
        for name, repo in self.state.repos.items():  # as a replay with these pins would say, both ways
            repo.origin = "pinned" if any(fnmatch.fnmatchcase(name, p.pattern) for p in pins) else "tofu"
        return entry

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
        attested = self.tree.reconcile(n, self._leaves_from_log)
        try:
            self._replay_from(n, attested)
        except _LeafMismatchError as e:
            # Which is wrong, the leaf file or the record? The root over the records says.
            attested = self.tree.reconcile(n, self._leaves_from_log, problem=str(e))
            self.state = TrustState(self.pins)
            self.positions.clear()
            self.snapshot_used = None
            self._replay_from(n, attested)
        if self.read_only:
            return
        self.tree.merkle.flush(fsync=False)
        if self.index.covered != self._covered_at_open:
            self.index.save_heads()
        if n > attested:
            self.tree.checkpoint(self.clock.last, self._rejects_head())

    def _rejects_head(self) -> tuple[int, bytes]:
        """The rejects log's tree head, for the checkpoints to sign."""
        return self.rejects.tree.size, self.rejects.tree.root()

    def _check_rejects(self) -> None:
        """The rejects log must still hold what the latest signed checkpoint committed
        to (deleted, replaced or edited rejects are tampering). A writer refuses; a
        read-only open says so in one line and goes on (the state does not depend on it)."""
        latest = self.tree.latest()
        if latest is None or not latest[1].rejects_root:
            return
        problem = rejects_commitment_problem(self.rejects.tree, latest[1])
        if problem is None:
            return
        if self.read_only:
            self.notices.append(f"{self.dir}/rejects: {problem} — run `trustlog log verify`")
            return
        raise LogError(f"{self.dir}/rejects: {problem}. It is kept as evidence; restore it from a replica or "
                       "backup, and run `trustlog log verify`")

    def _replay_from(self, n: int, attested: int) -> None:
        if self.index.covered > n:  # the index names records the log no longer has
            self.index._reset()
            self.index.rebuilt_because = f"it covers {self.index.covered} records, the log holds {n}"
        covered = self._covered_at_open = self.index.covered
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
        self._reject_hashes.clear()
        for off, body in self.rejects.log.scan():
            self._reject_hashes[_reject_hash(decode_reject(body).raw)] = off

    def _replay_trusted(self, start: int, end: int) -> None:
        """Fold records ``[start, end)`` without re-verifying signatures; each record
        must hash to the leaf the signed tree holds for it (which also covers its CRC).
        Their event ids are not kept: a redelivered old event is recognised through the
        repository index (see :meth:`_logged_at`)."""
        if start >= end:
            return
        fold = new_fold(self.state)
        apply = fold.apply
        index, state = self.index, self.state
        merkle = self.tree.merkle
        positions = self.positions
        last_time = -1
        with gc_paused():
            if not isinstance(fold, TrustedFold) and index.covered > start:
                # the indexed records, in C (compiled fold: leaf check, decode, fold)
                mid = min(end, index.covered)
                fold_segments(fold, self.log, start, mid, crc=False, leaves=merkle.leaf_hashes, positions=positions,
                              where=f"{self.dir}/log", on_leaf_mismatch=lambda o: _LeafMismatchError(
                                  f"leaf {o} of {LEAVES_NAME} is not the hash of record {o}"))
                last_time, start = fold.last_log_time, mid
            for first, bodies in (iter_chunks(self.log, start, end, crc=False) if start < end else ()):
                leaves = merkle.leaf_hashes(first, len(bodies))
                offset = first
                try:
                    for i, body in enumerate(bodies):
                        offset = first + i
                        if leaf_hash(body) != leaves[32 * i:32 * i + 32]:
                            raise _LeafMismatchError(
                                f"leaf {offset} of {LEAVES_NAME} is not the hash of record {offset}")
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

    def prepare(self, raws: Sequence[tuple[bytes, KafkaPosition | SourceLine | None]]) -> PreparedBatch:
        """Decode ``raws`` and check their signatures into the validity cache, for
        :meth:`ingest_batch` of the same list (see :mod:`.batch_decode`). Safe from
        another thread while a batch is ingested: it only reads the state and adds
        cache entries, which are facts about (key, message, signature), not trust; the
        fold verifies itself whatever was missed because the state moved on meanwhile."""
        prepared, checks = self.plan_prepare(raws)
        checks.run()
        return prepared

    def plan_prepare(self, raws: Sequence[tuple[bytes, KafkaPosition | SourceLine | None]]
                     ) -> tuple[PreparedBatch, PlannedChecks]:
        """The first half of :meth:`prepare`: decode ``raws`` and plan their signature
        checks, without running them. The Kafka worker runs the returned
        :class:`PlannedChecks` on another thread (the backend releases the GIL), so the
        next batch can be decoded, and the current one folded, meanwhile. Plans must be
        made in stream order (keys an earlier batch introduces are candidates for a
        later one); the checks may run in any order, or not at all (the fold then
        verifies what it needs itself)."""
        decoded = decode_batch(raws, self.max_event_bytes, self.admit)
        sig_cks, checks = self._plan_decoded(decoded)
        return PreparedBatch(self, raws, decoded, sig_cks), checks

    def _precheck_decoded(self, decoded: list) -> list[list[bytes | None] | None]:
        """:meth:`_precheck` of the inputs of a decoded batch that decoded; returns, per
        input, the cache keys of its pre-checked signatures (see ``precheck.plan``)."""
        sig_cks, checks = self._plan_decoded(decoded)
        checks.run()
        return sig_cks

    def _plan_decoded(self, decoded: list) -> tuple[list[list[bytes | None] | None], PlannedChecks]:
        pairs, where = [], []
        for i, (_, _, env, ev, err, _) in enumerate(decoded):
            if env is not None and err is None:
                pairs.append((env, ev))
                where.append(i)
        per: list[list[bytes | None] | None] = []
        checks = self._plan(pairs, per)
        out: list[list[bytes | None] | None] = [None] * len(decoded)
        for i, cks in zip(where, per, strict=True):
            out[i] = cks
        return out, checks

    def _precheck(self, decoded: Sequence[tuple[Envelope, Event | None]],
                  sig_cks: list[list[bytes | None] | None] | None = None) -> None:
        """Verify, in one backend call, every signature the fold will ask about
        (:meth:`_plan`, then the checks run here)."""
        self._plan(decoded, sig_cks).run()

    def _plan(self, decoded: Sequence[tuple[Envelope, Event | None]],
              sig_cks: list[list[bytes | None] | None] | None = None) -> PlannedChecks:
        """Which signatures the fold will ask about, to be verified in one backend call.

        Candidate keys are those the repository knows plus every valid key that an event
        seen so far introduces, in this batch or an earlier one not yet folded: a key id
        is the hash of the key, so the mapping is always right. What one event can cost
        is bounded (see :mod:`.precheck`); what counts is still decided by the fold."""
        introduced = self._introduced
        if len(introduced) > MAX_REMEMBERED_KEYS:
            introduced.clear()  # only a hint; the state holds every accepted key anyway
        cks, items = precheck.plan(self.state, decoded, introduced, self.cache.known(), sig_cks)
        return PlannedChecks(self.cache, self.crypto, cks, items)

    # -- ingest -------------------------------------------------------------------------

    def ingest_batch(self, raws: Sequence[tuple[bytes, KafkaPosition | SourceLine | None]],
                     prepared: PreparedBatch | None = None) -> BatchResult:
        """Decode, verify, fold and durably append one batch; return what happened.

        ``prepared``: what :meth:`prepare` made of this very ``raws`` list (decoded,
        signatures pre-verified), used as it is; anything else is decoded here.
        Raises :class:`LogError` if the batch cannot be made durable; the caller must
        then stop and reopen (the in-memory state is ahead of the disk)."""
        res = BatchResult()
        if prepared is not None and prepared.owner is self and prepared.raws is raws:
            decoded = prepared.decoded
        else:
            prepared = None
            decoded = decode_batch(raws, self.max_event_bytes, self.admit)
        if self.read_only:
            raise LogError(f"{self.dir} is open read-only; open it for writing to ingest")
        if self._failed or self._closed:
            raise LogError(f"{self.dir}: this TrustLog refuses writes after a failed batch (or close); reopen it")
        try:
            self._ingest_decoded(decoded, res, prepared.sig_cks if prepared is not None else None)
            self.positions.update(res.last_positions)
            self._dup_fresh.clear()
            if self.checkpoint_every and self.log.next_offset - self._last_checkpoint >= self.checkpoint_every:
                self.checkpoint()
            if self.snapshot_every and self.log.next_offset - self._last_snapshot >= self.snapshot_every:
                self.snapshot(auto=True)
        except BaseException:
            self._failed = True
            raise
        return res

    def _ingest_decoded(self, decoded: list, res: BatchResult,
                        sig_cks: list[list[bytes | None] | None] | None = None) -> None:
        if sig_cks is None or len(sig_cks) != len(decoded):
            sig_cks = self._precheck_decoded(decoded)
        # ImageSigned events whose every signature by the role's keys the pre-check found
        # valid are folded by TrustedFold (see _fast_fold_ok); one per batch, so its
        # caches stay small
        fast = TrustedFold(self.state) if self.fast_fold else None
        # ... on the compiled backend by its twin in C over the record body (see
        # _ingestfold.pxi), which leaves whatever is off its fast path to `fast`
        cfold = self._compiled_fold(fast)
        dirty = False  # the state changed since cfold last looked (its repository views are stale)
        index, tree = self.index, self.tree
        fates = res.fates
        # accepted records are framed, leaf-hashed and appended in one call after the
        # loop; their offsets follow on from the log's end, in order
        bodies: list[bytes] = []
        base = self.log.next_offset
        in_batch: dict[bytes, tuple[int, KafkaPosition | None]] = {}
        rejected_in_batch: dict[bytes, Fate] = {}
        sha256 = hashlib.sha256
        # the whole fast path of an ImageSigned in one C call (None: not on it; see
        # _ingestfold.pxi), else the steps below one by one
        one_pass = getattr(cfold, "ingest_image_signed", None)
        cache_get = self.cache.get
        max_bytes = self.log.max_record_bytes
        image_kind = KIND_CODE[ImageSigned.__struct_config__.tag]  # type: ignore[attr-defined]
        # ... and a run of such inputs, with the bookkeeping below, in one C call per run
        # (ingest_run: what this loop does for each, in order; it stops, untouched, at
        # the first input that is not on the fast path, which this loop then takes)
        run = getattr(cfold, "ingest_run", None) if one_pass is not None else None
        n = len(decoded)
        pos = 0
        while pos < n:
            refused = -1
            if run is not None:
                if dirty:
                    cfold.changed()
                    dirty = False
                stop = run(decoded, pos, base, bodies, sig_cks, cache_get, max_bytes, index, image_kind,
                           self.event_ids, in_batch, fates, res.last_positions, self.clock, Fate, ImageSigned)
                if stop > pos:
                    self.fast_folded += stop - pos
                    res.accepted += stop - pos
                    pos = stop
                    if pos >= n:
                        break
                refused = cfold.refused_at
            item = pos
            pos += 1
            raw, src, env, event, err, canonical = decoded[item]
            where = ""
            if isinstance(src, SourceLine):
                where, src = f" [{src.path} line {src.line}]", None
            if src is not None:
                res.last_positions[(src.topic, src.partition)] = src.offset
            if err is None and env is not None:
                eid = sha256(canonical).digest()  # = Envelope.event_id, without encoding it again
                eid_hex = eid.hex()
                if eid in self.event_ids:
                    res.duplicates += 1
                    at = in_batch.get(eid) or self._logged_at(event, eid)
                    fates.append(self._duplicate_fate(src, eid_hex, at))
                    continue
                # (an input the C run refused: it read the wall clock for it already)
                log_time = self.clock.next() if item != refused else self.clock.next_at(cfold.refused_now)
                if one_pass is not None and type(event) is ImageSigned and item != refused:
                    if dirty:
                        cfold.changed()
                        dirty = False
                    offset = base + len(bodies)
                    body = one_pass(canonical, src, log_time, offset, sig_cks[item], cache_get, max_bytes,
                                    index, image_kind, event.repo)
                    if body is not None:
                        self.fast_folded += 1
                        bodies.append(body)
                        self.event_ids.add(eid)
                        in_batch[eid] = (offset, src)
                        res.accepted += 1
                        fates.append(Fate("accepted", src, eid_hex, offset, src))
                        continue
                # the record is built before the fold: one that the log cannot hold is
                # refused here, never folded and then failed at the append (an imported
                # metadata file just under its own limit, a JSON envelope's signatures)
                body = encode_record(LogRecord(log_time, canonical, src), env, event)
                postings = event_postings(self.state, env, event)
                try:
                    if len(body) > self.log.max_record_bytes:
                        raise RejectedEventError(Reject.TOO_LARGE, f"its log record would be {len(body)} bytes; "
                                                 f"the log holds records of at most {self.log.max_record_bytes}")
                    if fast is not None and type(event) is ImageSigned and self._fast_fold_ok(env, event,
                                                                                            sig_cks[item]):
                        if cfold is None:
                            fast.apply(env, event, log_time, base + len(bodies))
                        else:
                            if dirty:
                                cfold.changed()
                                dirty = False
                            if not cfold.apply_record(body, base + len(bodies)):
                                dirty = True
                                fast.apply(env, event, log_time, base + len(bodies))
                        self.fast_folded += 1
                    else:
                        dirty = True
                        self.state.apply(env, log_time=log_time, offset=base + len(bodies), sigcheck=self._sigcheck,
                                         event=event)
                except RejectedEventError as e:
                    at = self._logged_at(event, eid) if e.reject in (Reject.VERSION_ROLLBACK,
                                                                     Reject.REPOSITORY_EXISTS) else None
                    if at is not None:
                        self.event_ids.add(eid)
                        res.duplicates += 1
                        fates.append(self._duplicate_fate(src, eid_hex, at))
                        continue
                    # without its traceback: the traceback holds this frame, which holds
                    # err, and that cycle would keep the whole batch (decoded inputs,
                    # bodies, fates) alive until the cyclic collector came by
                    err = e.with_traceback(None)
                else:
                    offset = base + len(bodies)
                    bodies.append(body)
                    index.add_event(offset, log_time, event, *postings)
                    self.event_ids.add(eid)
                    in_batch[eid] = (offset, src)
                    res.accepted += 1
                    fates.append(Fate("accepted", src, eid_hex, offset, src))
                    continue
            assert err is not None
            h = _reject_hash(raw)
            prior = self._reject_hashes.get(h)
            if prior is not None:
                res.duplicates += 1
                same = rejected_in_batch.get(h)
                fates.append(msgspec.structs.replace(same, source=src) if same is not None
                             else self._rejected_fate(src, prior))
                continue
            eid_hex = sha256(canonical).hexdigest() if env is not None else ""
            self._reject_hashes[h] = self.rejects.record(err.reason, err.message + where, raw, event_id=eid_hex,
                                                         source=src, log_time=self.clock.next())
            fates.append(rejected_in_batch.setdefault(h, Fate("rejected", src, eid_hex, None, src, err.reason,
                                                              err.message + where)))
            res.rejected += 1
            res.reasons[err.reason] += 1
            res.last_reject = (err.reason, err.message + where)
            res.rejected_items[item] = res.last_reject
        if cfold is not None:
            self.compiled_folded += cfold.fast
        leaves = bytearray()
        if bodies and self.log.append_batch(bodies, leaves) != base:
            raise LogError(f"{self.dir}: the log's end moved during the batch")  # nothing else appends
        self.rejects.flush()
        self.log.flush()
        if leaves:
            tree.merkle.append(leaves)
        try:
            tree.merkle.flush(fsync=False)
            index.flush()
        except OSError as e:
            raise LogError(
                f"every record up to offset {self.log.durable_offset - 1} is durable, but writing "
                f"{e.filename or self.dir} failed ({e.strerror or e}); the rest was not ingested. The next open "
                "rebuilds the derived files from the log") from e

    def _compiled_fold(self, fast: TrustedFold | None):  # -> _fastfold.IngestFold | None
        """The compiled ingest fold over ``fast`` (None: use ``fast`` itself) when the
        compiled fold backend is selected (``ingest_fold``, ``fold_backend.BACKEND`` by
        default) and built with it."""
        if fast is None or self.ingest_fold != "c":
            return None
        mod = fold_backend.compiled if fold_backend.compiled is not None else fold_backend.load()
        cls = getattr(mod, "IngestBatchFold", None) or getattr(mod, "IngestFold", None)
        return cls(fast, decode_trusted) if cls is not None else None

    def _fast_fold_ok(self, env: Envelope, event: ImageSigned, cks: list[bytes | None] | None) -> bool:
        """May ``event`` go to ``TrustedFold.apply`` instead of ``TrustState.apply``?

        Yes when every signature by a key of the role's current grant is known valid
        (its cache key, planned by the pre-check, is in the validity cache as valid).
        The validating fold asks its signature check about exactly those signatures (and
        any that does not verify rejects the event), so with them all valid it decides
        as ``TrustedFold`` (every rule but the signature checks, the same state changes)
        does: the same acceptance, the same reason for a reject (``TrustedFold`` hands
        anything off its fast path to ``TrustState.apply``). Otherwise (an unknown role,
        a signature not pre-checked or invalid) the validating fold decides, as always.
        ``tests/test_fast_fold.py`` holds the two paths together."""
        if cks is None:
            return False
        repo = self.state.repos.get(event.repo)
        if repo is None:
            return False
        gid = repo.roles.get(event.role)
        if gid is None:
            return False
        keyids = repo.grants[gid].keyids
        valid = self.cache.get
        sigs = env.signatures
        if len(sigs) == 1 and len(cks) == 1:  # the common case, without the generator
            if sigs[0].keyid not in keyids:
                return True
            ck = cks[0]
            return ck is not None and valid(ck) is True
        return all(ck is not None and valid(ck) is True
                   for s, ck in zip(env.signatures, cks, strict=True) if s.keyid in keyids)

    def record_reject(self, reason: str, message: str, raw: bytes) -> bool:
        """Keep an input that a source's own checks refused before the fold (a Notary
        file that is not the one its snapshot names), with its reason, once."""
        if self._failed or self._closed:
            raise LogError(f"{self.dir}: this TrustLog refuses writes after a failed batch (or close); reopen it")
        h = _reject_hash(raw)
        if h in self._reject_hashes:
            return False
        self._reject_hashes[h] = self.rejects.record(reason, message, raw, event_id="", source=None,
                                                     log_time=self.clock.next())
        self.rejects.flush()
        return True

    def _logged_at(self, event: Event, eid: bytes) -> tuple[int, KafkaPosition | None] | None:
        """Is ``event`` (refused as a rollback or a second creation) the very event
        already logged for its repository? Then it is a redelivery: return (its log
        offset, where it came from). Versions are scoped and may have gaps
        (core.events.version_scope), so a version does not name an offset: the
        repository's logged records are hashed into a map from event id to offset,
        once; the log is append-only, so later batches only extend the map."""
        seen, ids = self._dup_cache.get(event.repo, (0, {}))
        if event.repo not in self._dup_fresh:  # records were appended since: hash the new ones
            postings = self.index.repo_postings(event.repo)
            durable = self.log.durable_offset
            while seen < len(postings) and postings[seen].offset < durable:
                off = postings[seen].offset
                ids[hashlib.sha256(decode_record(self.log.read(off)).envelope).digest()] = off
                seen += 1
            self._dup_cache[event.repo] = (seen, ids)
            self._dup_fresh.add(event.repo)
        offset = ids.get(eid)
        if offset is None:
            return None
        return offset, decode_record(self.log.read(offset)).source

    def _duplicate_fate(self, src: KafkaPosition | None, event_id: str,
                        at: tuple[int, KafkaPosition | None] | None) -> Fate:
        if at is None:
            return Fate("duplicate", src, event_id)
        return Fate("accepted", src, event_id, at[0], at[1])

    def _rejected_fate(self, src: KafkaPosition | None, reject_offset: int) -> Fate:
        rec = decode_reject(self.rejects.log.read(reject_offset))
        return Fate("rejected", src, rec.event_id, None, rec.source, rec.reason, rec.detail)

    # -- checkpoints, snapshots, replay -------------------------------------------------

    def checkpoint(self):
        """Sign a checkpoint over every durable record and make the indexes durable.
        Returns the :class:`SignedCheckpoint` (None when nothing changed)."""
        if self._failed:
            raise LogError(f"{self.dir}: no checkpoint after a failed batch; reopen the log")
        self.log.flush()
        signed = self.tree.checkpoint(self.clock.last, self._rejects_head())
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

    def repair_snapshots(self) -> list[str]:
        """Set aside every snapshot that cannot be used (bad signature, body or root) as
        ``NAME.damaged`` (kept, never deleted) and write a new one at its offset from the
        segments; one line per snapshot. Only ``trustlog log repair`` calls this."""
        if self.read_only:
            raise LogError(f"{self.dir} is open read-only: snapshots cannot be repaired")
        good = set()
        for snap in self.snapshots.list():
            try:
                self.snapshots.check_body(snap)
                if snap.header.offset <= self.tree.merkle.size and \
                        self.tree.merkle.root_at(snap.header.offset) == snap.header.root:
                    good.add(snap.path.name)
            except TrustlogError:
                pass
        done = []
        d = self.snapshots.directory
        for path in sorted(d.glob("*.snap")) if d.is_dir() else []:
            if path.name in good or not path.name[:-5].isdigit():
                continue
            aside = path.with_name(path.name + ".damaged")
            os.replace(path, aside)
            offset = int(path.name[:-5])
            if offset <= self.log.durable_offset:
                self.snapshot_at(offset)
                done.append(f"{path}: damaged; kept as {aside.name} and written again from the segments")
            else:
                done.append(f"{path}: past the end of the log; kept as {aside.name}")
        return done

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

    def ingest(self, raws: Iterable[tuple[bytes, KafkaPosition | SourceLine | None]], batch_size: int = 2048,
               progress: Callable[[BatchResult], None] | None = None) -> BatchResult:
        total = BatchResult()
        batch: list[tuple[bytes, KafkaPosition | SourceLine | None]] = []
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
        if self.read_only:
            for closer in (self.index.close, lambda: self.tree.close(flush=False), self.rejects.close,
                           self.log.close):
                closer()
            return
        try:
            if not self._failed:
                self.log.flush()  # a failure here is real: records would not be durable
                where = self.dir / "merkle"
                try:
                    self.tree.checkpoint(self.clock.last, self._rejects_head())
                    where = self.dir / "index"
                    self.index.save_heads()
                    where = self.dir / "snapshots"
                    if (self.snapshot_every and self.state.version > 0
                            and self.state.version - self._last_snapshot >= max(1, self.snapshot_every // 10)):
                        self.snapshot(auto=True)
                except OSError as e:
                    # The records are durable; only derived files (rebuilt on the next open) were not written.
                    self._failed = True
                    self.index.discard_pending()
                    self.close_notices.append(
                        f"every record is durable (offsets 0..{self.log.durable_offset - 1}), but writing "
                        f"{e.filename or where} failed: {e.strerror or e}; the next open rebuilds it from the log")
            else:
                self.index.discard_pending()
                merkle = self.tree.merkle
                merkle.truncate(max(min(merkle.size, self.log.durable_offset), self._attested_floor()))
        finally:
            try:
                self.index.close()
                try:
                    self.tree.close(flush=not self._failed)
                except OSError:
                    if not self.close_notices:  # else: the same derived write failing again
                        raise
            finally:
                self.rejects.close()
                self.log.close()


@dataclass(slots=True)
class PlannedChecks:
    """Signature checks planned by :meth:`TrustLog.plan_prepare`: ``run`` verifies
    ``items`` in one backend call and stores each verdict under its cache key. Only
    facts about (key, message, signature) go into the cache: a check that is never
    run, or that fails, costs the fold its own verification, never a different verdict."""

    cache: CryptoCache
    crypto: CryptoFn
    cks: list[bytes]
    items: list[precheck.Item]

    def run(self) -> None:
        if self.items:
            remember(self.cache, self.cks, self.crypto(self.items))  # a failed check is not stored: the fold checks it again


def _reject_hash(raw: bytes) -> bytes:
    """Identity of a rejected input as the rejects log stores it (cut to its limit)."""
    return hashlib.sha256(raw[:DEFAULT_MAX_RAW_BYTES]).digest()


def _safe_decode(env: Envelope) -> Event | None:
    try:
        return decode_event(env.payload)
    except EncodingError:
        return None


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[bytes, SourceLine]]:
    """Envelopes from a JSONL file, one per line, passed on raw: a line that is not a
    valid envelope is rejected by the pipeline with a reason (and its line number),
    never skipped."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield line, SourceLine(str(path), n)
