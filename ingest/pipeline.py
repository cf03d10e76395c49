"""The embedded pipeline: decode → batch-verify signatures → fold → append + fsync.

A :class:`TrustLog` is one log directory::

    DIR/log/       segments of accepted events (LogRecord bodies)
    DIR/rejects/   everything not accepted, with its reason (RejectRecord bodies)

On open, the state is rebuilt by folding the log. Every batch is verified as a batch
(one call into the crypto backend), folded in order, and made durable with one group
commit. Rejects are made durable *before* the accepted records of the same batch, so a
crash can only leave rejects that are recognised (by input hash) and not recorded twice
when the batch is read again.
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
    DEFAULT_MAX_EVENT_BYTES, Envelope, Event, RepoCreated, RootRotated, decode_envelope, decode_event, decode_wire,
)
from trustlog.core.keys import PublicKey
from trustlog.core.reasons import Reject
from trustlog.core.state import Pin, RejectedEventError, TrustState
from trustlog.verifier.cache import CryptoCache, cache_key

from .records import KafkaPosition, LogClock, LogRecord, decode_record, encode_record
from .rejects import DEFAULT_MAX_RAW_BYTES, RejectsLog
from .segment_log import SegmentLog

CryptoFn = Callable[[Sequence[tuple[int, bytes, bytes, bytes]]], Sequence[int]]


@dataclass
class BatchResult:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: Counter = field(default_factory=Counter)
    last_positions: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, other: "BatchResult") -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.reasons.update(other.reasons)
        self.last_positions.update(other.last_positions)


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
    ) -> None:
        self.dir = Path(directory)
        self.max_event_bytes = max_event_bytes
        self.crypto = crypto or _default_crypto()
        self.clock = clock or LogClock()
        self.cache = CryptoCache()
        self.state = TrustState(pins)
        self.event_ids: set[bytes] = set()
        self.positions: dict[tuple[str, int], int] = {}
        self._reject_hashes: set[bytes] = set()
        kw: dict = {}
        if fsync_fn is not None:
            kw["fsync_fn"] = fsync_fn
        if segment_bytes is not None:
            kw["segment_bytes"] = segment_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = SegmentLog.open(self.dir / "log", **kw)
        self.rejects = RejectsLog.open(self.dir / "rejects", **({"fsync_fn": fsync_fn} if fsync_fn else {}))
        self.recovery = self.log.recovery
        self._replay()

    # -- open -------------------------------------------------------------------------

    def _replay(self) -> None:
        """Fold every record of the log into the state. Signatures are verified again
        (in batches) unless they are already in the validity cache."""
        batch: list[tuple[int, LogRecord, Envelope]] = []
        for offset, body in self.log.scan(0):
            try:
                rec = decode_record(body)
                env = decode_envelope(rec.envelope, max_bytes=1 << 30)
            except EncodingError as e:
                raise LogError(f"{self.dir}/log: record {offset} does not decode: {e}") from e
            batch.append((offset, rec, env))
            if len(batch) >= 4096:
                self._replay_batch(batch)
                batch = []
        if batch:
            self._replay_batch(batch)
        for rec in self.rejects:
            self._reject_hashes.add(_reject_hash(rec.raw))

    def _replay_batch(self, batch: list[tuple[int, LogRecord, Envelope]]) -> None:
        decoded = [(env, _safe_decode(env)) for _, _, env in batch]
        self._precheck(decoded)
        for (offset, rec, env), (_, event) in zip(batch, decoded):
            try:
                self.state.apply(env, log_time=rec.log_time, offset=offset, sigcheck=self._sigcheck, event=event)
            except RejectedEventError as e:
                raise LogError(
                    f"{self.dir}/log: record {offset} breaks the rules on replay ({e}); the log was altered "
                    "or written by an incompatible version — run `trustlog log verify`"
                ) from e
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

    def _precheck(self, decoded: Sequence[tuple[Envelope, Event | None]]) -> None:
        """Verify, in one backend call, every signature the fold will ask about.

        Candidate keys are those the repository knows plus those the event introduces
        (a new repository's or a rotation's keys)."""
        items: list[tuple[int, bytes, bytes, bytes]] = []
        cks: list[bytes] = []
        for env, event in decoded:
            if event is None:
                continue
            repo = self.state.repos.get(event.repo)
            known = repo.keys if repo is not None else {}
            extra: dict[str, PublicKey] = {}
            if isinstance(event, RepoCreated):
                extra = {k.keyid: k for k in (*event.root_keys, *event.targets_keys)}
            elif isinstance(event, RootRotated):
                extra = {k.keyid: k for k in event.root_keys}
            for s in env.signatures:
                key = known.get(s.keyid) or extra.get(s.keyid)
                if key is None:
                    continue
                try:
                    alg = key.alg
                except Exception:  # noqa: BLE001 - an unknown key type is rejected by the fold
                    continue
                ck = cache_key(alg, key.public, env.payload, s.sig)
                if ck not in self.cache:
                    cks.append(ck)
                    items.append((alg, key.public, env.payload, s.sig))
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
        self._precheck([(env, ev) for _, _, env, ev, err in decoded if env is not None and err is None])
        for raw, src, env, event, err in decoded:
            if src is not None:
                res.last_positions[(src.topic, src.partition)] = src.offset
            if err is None and env is not None:
                eid = bytes.fromhex(env.event_id)
                if eid in self.event_ids:
                    res.duplicates += 1
                    continue
                log_time = self.clock.next()
                try:
                    self.state.apply(env, log_time=log_time, offset=self.log.next_offset, sigcheck=self._sigcheck,
                                     event=event)
                except RejectedEventError as e:
                    err = e
                else:
                    self.log.append(encode_record(LogRecord(log_time, env.to_bytes(), src)))
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
        self.rejects.flush()
        self.log.flush()
        self.positions.update(res.last_positions)
        return res

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
