"""Kafka ingest: a consumer-group worker that appends a topic, exactly once, to one
trust log per Kafka partition.

    <log-dir>/p0/   the TrustLog of partition 0 (log/ + rejects/)
    <log-dir>/p1/   ...

Exactly once, with the log as the truth:

* A partition's log is opened when the partition is assigned and closed when it is
  revoked. The SegmentLog ``LOCK`` (an exclusive flock) makes its owner the single
  writer; a worker that is given a partition whose log another process still holds
  waits (the partition stays paused) until the lock is free.
* On assignment the consumer seeks to ``log.positions[(topic, p)] + 1``: the last Kafka
  offset *in the log*, not the committed group offset. A message that was made durable
  but whose offset commit was lost is therefore not read again; one that is read again
  anyway (a zombie owner, a manual reset) is recognised by its event id, and a rejected
  input by its content hash.
* Every poll batch of a partition goes through :meth:`TrustLog.ingest_batch` (one batch
  signature check, one group commit). Kafka offsets are committed only after it has
  returned, i.e. after the fsync. An fsync failure (``LogError``) stops the worker with
  exit status 3 *without* committing; the batch is ingested after a restart.
* Inputs that are not accepted (not msgpack/JSON, wrong schema, oversized, bad
  signature, rule broken) go to the partition's rejects log with a reason, and with
  ``dlq`` also to a dead-letter topic (value = the raw input, headers ``reason``,
  ``detail``, ``source``). They never stop the worker. Dead letters are at least once:
  a worker taking over a partition re-sends the rejects whose source offset is at or
  after the committed group offset (the ones whose send may not have completed).
* Each input's outcome (appended at partition P offset N, or rejected with its reason)
  goes to the outcomes topic (``<topic>.outcomes``), a few messages per poll batch of
  a partition (JSON lines, one per input), after the fsync and before the commit, at
  least once (``outcomes``); ``trustlog publish --wait`` reads them.
* Repositories are mapped onto partitions by the topic's recorded layout
  (``partitioning``), not by its live partition count: an event whose repository
  belongs to another partition is rejected as WRONG_PARTITION. Metadata is refreshed
  every few seconds, so a grown topic's new partitions are assigned promptly and a
  notice is logged; repositories stay where their history is.

Throughput: while batch k is folded and appended, the two batches polled after it are
decoded (one background thread) and their signatures checked into the log's validity
cache (another; the crypto backend releases the GIL), so the checks of k+1 overlap the
decoding of k+2 and the fold of k. That only warms a cache of facts about (key, message,
signature); every trust decision is still the fold's, and batches are folded, appended
and committed one at a time in poll order, as before. A rebalance drops the batches
polled before it (they are read again from the log position).

Run it as ``python -m trustlog.cli.kafka_worker`` or ``trustlog ingest --kafka`` (its
command line is ``trustlog.cli.kafka_worker``, the progress line it feeds through a
:class:`StatusSink` ``trustlog.cli.progress_line``); its Prometheus metrics are in
:mod:`trustlog.ingest.kafka_metrics`, the partition layout and the ``p<N>/``
directories in :mod:`trustlog.ingest.partitioning`. Faults are injected only through
its seams (``fsync_fn``; see ``tests/fault_worker.py``).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener

from trustlog.core.errors import LogError
from trustlog.core.events import DEFAULT_MAX_EVENT_BYTES

from .kafka_servers import bootstrap_servers
from .kafka_metrics import NoMetrics, reason_label, worker_metrics
from .outcomes import OutcomeWriter, default_outcomes_topic, ensure_outcomes_topic
from .partitioning import (
    Layout, LayoutError, admit_for, ensure_layout, partition_dir, record_log_layout, topic_partitions,
)
from .batch_decode import PreparedBatch
from . import gcpolicy
from .pipeline import BatchResult, PlannedChecks, TrustLog
from .kafka_records import install as install_fast_records
from .records import KafkaPosition
from .rejects import RejectsLog

log = logging.getLogger("trustlog.ingest.kafka")

EXIT_OK = 0
EXIT_BAD_SETUP = 2
EXIT_LOG_FAILURE = 3
LOCK_RETRY_SECONDS = 0.2
# poll batches decoded and pre-verified ahead of the one being folded: with two, the
# signatures of batch k+1 are checked (GIL released) while batch k+2 is decoded and
# batch k folded, so the crypto overlaps Python work instead of waiting for it
PREFETCH_BATCHES = 2
# how long a poll waits for records when none are in hand. Short, because an assignment
# (at start or in a rebalance) made inside a poll leaves its partitions paused until
# their logs are open, and kafka-python sits out the rest of the timeout before the
# worker can open them: 500 ms cost every start and every rebalance ~0.4 s of idling
IDLE_POLL_MS = 100
# the first poll after an assignment takes at most this many records, and each later one
# twice as many, up to max_poll_records: the decode, signature-check and fold stages of
# the pipeline then overlap after a few milliseconds instead of only once a whole first
# batch (5,000 records, ~0.2 s) has been decoded and verified
FIRST_POLL_RECORDS = 500


class StatusSink(Protocol):
    """Where the worker's one-line status goes (the command line shows it; see
    ``trustlog.cli.progress_line``): ``update`` every half second, ``close`` once at the end."""

    def update(self, line: str, force: bool = False) -> None: ...

    def close(self, line: str) -> None: ...


class _NoStatus:
    def update(self, line: str, force: bool = False) -> None:
        pass

    def close(self, line: str) -> None:
        pass


def _batch_inputs(tp: Any, records: list[Any]) -> list[tuple[bytes, KafkaPosition]]:
    """One partition's polled records as :meth:`TrustLog.ingest_batch` takes them."""
    topic, partition = tp.topic, tp.partition
    return [(r.value if r.value is not None else b"", KafkaPosition(topic, partition, r.offset)) for r in records]


def _plan_jobs(jobs: list[tuple[TrustLog, Any, list[Any]]]) -> list[tuple[Any, PreparedBatch, PlannedChecks]]:
    """Decode each partition's batch and plan its signature checks (on the decoding
    thread, in poll order: a batch's plan may use keys an earlier one introduces)."""
    out: list[tuple[Any, PreparedBatch, PlannedChecks]] = []
    for tl, tp, records in jobs:
        try:
            out.append((tp, *tl.plan_prepare(_batch_inputs(tp, records))))
        except Exception as e:  # noqa: BLE001 - only a head start: ingest_batch decodes and checks everything itself
            log.debug("pre-verification failed (the fold will check): %r", e)
    return out


def _check_jobs(planned: Future) -> dict[Any, PreparedBatch]:
    """Run the planned signature checks of one poll batch (on the checking thread; the
    crypto backend releases the GIL, so the next batch is decoded and the previous one
    folded meanwhile)."""
    out: dict[Any, PreparedBatch] = {}
    try:
        jobs = planned.result()
    except Exception as e:  # noqa: BLE001 - as below
        log.debug("pre-verification failed (the fold will check): %r", e)
        return out
    for tp, prep, checks in jobs:
        try:
            checks.run()
        except Exception as e:  # noqa: BLE001 - as above: the fold verifies what is not in the cache
            log.debug("pre-verification failed (the fold will check): %r", e)
        out[tp] = prep
    return out


# -- the worker -------------------------------------------------------------------------------

@dataclass
class WorkerStats:
    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0
    dead_letters: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    fsync_seconds: float = 0.0
    ingest_seconds: float = 0.0
    first_message_at: float | None = None   # monotonic: when the first batch was committed
    last_message_at: float | None = None
    first_batch_messages: int = 0            # the messages of that first batch
    partitions_seen: set[int] = field(default_factory=set)
    by_partition: dict[int, int] = field(default_factory=dict)
    outcomes: int = 0
    gc_seconds: float = 0.0                  # in the worker's timed collections (see .gcpolicy)
    gc_collections: int = 0
    layout_partitions: int = 0
    topic_partitions: int = 0
    exit_code: int = 0
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        span = ((self.last_message_at or 0) - (self.first_message_at or 0)) if self.first_message_at else 0.0
        return {
            "messages": self.messages, "accepted": self.accepted, "rejected": self.rejected,
            "duplicates": self.duplicates, "batches": self.batches, "commits": self.commits,
            "commit_failures": self.commit_failures, "dead_letters": self.dead_letters,
            "rejected_by_reason": dict(self.reasons), "fsync_seconds": round(self.fsync_seconds, 4),
            "ingest_seconds": round(self.ingest_seconds, 4), "active_seconds": round(span, 4),
            "messages_per_second": round(self.messages / span, 1) if span > 0 else None,
            "partitions": sorted(self.partitions_seen),
            "messages_by_partition": {str(p): n for p, n in sorted(self.by_partition.items())},
            "outcomes": self.outcomes, "gc_seconds": round(self.gc_seconds, 4),
            "gc_collections": self.gc_collections, "layout_partitions": self.layout_partitions,
            "topic_partitions": self.topic_partitions, "exit_code": self.exit_code, "error": self.error,
        }


class _Listener(ConsumerRebalanceListener):
    """ConsumerRebalanceListener. Runs on kafka-python's IO thread, so it only does quick
    things: pause what is assigned (the main loop opens, seeks and resumes), keep a
    revoked log open until the new assignment is known (re-assigned: reused without a
    re-fold; not: closed, releasing its lock for the new owner)."""

    def __init__(self, worker: KafkaIngestWorker) -> None:
        self.w = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        w = self.w
        # A rebalance that a metadata change (a grown topic) started must finish even if
        # the metadata flaps back meanwhile: kafka-python, like the Java client before
        # KAFKA-9815, only rejoins while the snapshots differ, and otherwise leaves the
        # member with no partitions and no heartbeats. Ask for the rejoin explicitly.
        coordinator = getattr(w.consumer, "_coordinator", None)
        if coordinator is not None and hasattr(coordinator, "request_rejoin"):
            coordinator.request_rejoin()
        with w._lock:
            for tp in revoked:
                if tp.topic != w.topic:
                    continue
                tl = w._logs.pop(tp.partition, None)
                if tl is not None:
                    w._stale[tp.partition] = tl
                w._pending.discard(tp.partition)
            w._assigned = set()
            w._generation += 1

    def on_partitions_lost(self, lost: Any) -> None:
        # evicted: another member may own these already -- release the locks now
        self.on_partitions_revoked(lost)
        w = self.w
        with w._lock:
            for tp in lost:
                tl = w._stale.pop(tp.partition, None)
                if tl is not None:
                    w._close_log(tp.partition, tl)

    def on_partitions_assigned(self, assigned: Any) -> None:
        w = self.w
        mine = [tp for tp in assigned if tp.topic == w.topic]
        with w._lock:
            parts = {tp.partition for tp in mine}
            for p in list(w._stale):
                if p not in parts:
                    w._close_log(p, w._stale.pop(p))
            w._assigned = parts
            w._pending = set(parts)
            w._generation += 1
            w._assigned_at = time.monotonic()
            w._poll_records = FIRST_POLL_RECORDS
        if mine:
            w.consumer.pause(*mine)
        log.info("assigned partitions %s of %s", sorted(parts), w.topic)


class KafkaIngestWorker:
    """Consume ``topic`` in consumer group ``group`` into ``<log_dir>/p<partition>/``.

    :meth:`run` returns the exit status: 0 after a clean stop (signal, ``max_messages``,
    ``idle_exit``), 2 when the topic's layout is missing or contradicts the logs, 3 after
    a log failure (nothing of the failed batch committed).

    ``status`` receives the one-line status (none by default); ``metrics_port`` serves
    Prometheus metrics; ``fsync_fn`` replaces ``os.fsync`` in every partition log (the
    seam a fault-injection test uses).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        log_dir: str | os.PathLike[str],
        *,
        dlq: str | None = None,
        outcomes: str | None = "",
        instance_id: str | None = None,
        max_messages: int | None = None,
        idle_exit: float | None = None,
        metrics_port: int | None = None,
        max_poll_records: int = 5000,
        max_partition_fetch_bytes: int = 8 * 1024 * 1024,
        fetch_max_bytes: int = 64 * 1024 * 1024,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 100,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 2000,
        metadata_max_age_ms: int = 5000,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        fsync_fn: Callable[[int], None] | None = None,
        status: StatusSink | None = None,
        client_id: str | None = None,
        consumer_options: dict[str, Any] | None = None,
        log_options: dict[str, Any] | None = None,
        preverify: bool = True,
        install_signal_handlers: bool = True,
        read_records_in_c: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.log_dir = Path(log_dir)
        self.dlq = dlq
        # "" = the default <topic>.outcomes; None = no outcome messages
        self.outcomes_topic = default_outcomes_topic(topic) if outcomes == "" else outcomes
        self.layout: Layout | None = None
        self._outcomes: OutcomeWriter | None = None
        self._checked_partitions_at = 0.0
        self.read_records_in_c = read_records_in_c   # False: kafka-python's own loop (for comparisons)
        self.fast_records = False   # whether the consumer reads fetched batches in C (_make_consumer)
        self.instance_id = instance_id
        self.max_messages = max_messages
        self.idle_exit = idle_exit
        self.max_poll_records = max_poll_records
        self.max_event_bytes = max_event_bytes
        self.fsync_fn = fsync_fn
        self.install_signal_handlers = install_signal_handlers
        self.log_options = dict(log_options or {})
        self.preverify = preverify
        self._executor: ThreadPoolExecutor | None = None   # decoding and planning (see _preverify_async)
        self._check_executor: ThreadPoolExecutor | None = None   # the planned signature checks
        self.prefetch = PREFETCH_BATCHES
        # garbage collection during run(): on a clock from the loop, not per allocation
        self.collections = gcpolicy.TimedCollections()
        self._generation = 0
        self._poll_records = FIRST_POLL_RECORDS   # the next poll's max_records, before max_poll_records
        self.commit_timeout_ms = 30_000
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._logs: dict[int, TrustLog] = {}
        self._stale: dict[int, TrustLog] = {}
        self._pending: set[int] = set()
        self._assigned: set[int] = set()
        self._assigned_at: float | None = None
        self._next_offset: dict[int, int] = {}
        self._catchup: set[int] = set()
        self._failed_log: TrustLog | None = None
        self._rate_window: deque[tuple[float, int]] = deque()
        self._metrics_port = metrics_port
        self._metrics: NoMetrics = NoMetrics()
        self._status: StatusSink = status if status is not None else _NoStatus()
        self._consumer_config: dict[str, Any] = dict(
            bootstrap_servers=bootstrap_servers(bootstrap),
            group_id=group,
            client_id=client_id or f"trustlog-ingest-{os.getpid()}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_poll_records,
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            fetch_max_bytes=fetch_max_bytes,
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            metadata_max_age_ms=metadata_max_age_ms,  # notice a grown topic within seconds
        )
        if instance_id:
            self._consumer_config["group_instance_id"] = instance_id
        self._consumer_config.update(consumer_options or {})
        self.consumer: Any = None
        self.producer: Any = None

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop after the current batch (thread- and signal-safe)."""
        self._stop.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        self._stop.set()

    # -- logs -------------------------------------------------------------------------------

    def _open_log(self, partition: int) -> TrustLog:
        opts: dict[str, Any] = {"max_event_bytes": self.max_event_bytes, **self.log_options}
        if self.layout is not None:
            opts["admit"] = admit_for(partition, self.layout)
        if self.fsync_fn is not None:
            opts["fsync_fn"] = self.fsync_fn
        return TrustLog(partition_dir(self.log_dir, partition), **opts)

    def _close_log(self, partition: int, tl: TrustLog) -> None:
        if tl is self._failed_log:
            return  # never flush a log whose group commit failed; the process exit releases it
        try:
            tl.close()
        except Exception as e:  # noqa: BLE001
            log.warning("closing the log of partition %d failed: %s", partition, e)

    def _activate_pending(self) -> None:
        """Open (or reuse) the log of each newly assigned partition, seek to the offset
        after the last one the log holds, resume fetching. A log still locked by its
        previous owner is retried on the next round."""
        from kafka import TopicPartition

        with self._lock:
            todo = sorted(self._pending)
        for p in todo:
            with self._lock:
                if p not in self._pending:
                    continue
                tl = self._stale.pop(p, None)
            if tl is None:
                try:
                    tl = self._open_log(p)
                except LogError as e:
                    if isinstance(e.__cause__, BlockingIOError):
                        log.info("partition %d: its log is still held by another writer; waiting", p)
                        continue
                    raise
                if tl.recovery is not None:
                    log.warning("partition %d: recovered log: %s", p, tl.recovery)
            tp = TopicPartition(self.topic, p)
            with self._lock:
                if p not in self._pending:  # revoked while we were opening it
                    self._stale[p] = tl
                    continue
                self._pending.discard(p)
                self._logs[p] = tl
            nxt = tl.positions.get((self.topic, p), -1) + 1
            self._next_offset[p] = nxt
            self.stats.partitions_seen.add(p)
            self.consumer.seek(tp, nxt)
            self.consumer.resume(tp)
            if self.dlq or self._outcomes is not None:
                self._catchup.add(p)
            log.info("partition %d: log %s holds up to offset %d; consuming from %d",
                     p, partition_dir(self.log_dir, p), nxt - 1, nxt)

    # -- dead letters -------------------------------------------------------------------------

    def _send_dead_letter(self, rec: Any) -> None:
        src = rec.source
        headers = [("reason", rec.reason.encode()), ("detail", rec.detail.encode("utf-8", "replace"))]
        key = None
        if src is not None:
            headers.append(("source", f"{src.topic}/{src.partition}/{src.offset}".encode()))
            key = f"{src.topic}/{src.partition}".encode()
        self.producer.send(self.dlq, value=rec.raw, key=key, headers=headers)
        self.stats.dead_letters += 1

    def _dlq_new_rejects(self, rejects: RejectsLog, start: int) -> None:
        from .records import decode_reject

        rl = rejects.log
        for off in range(start, rl.durable_offset):
            self._send_dead_letter(decode_reject(rl.read(off)))

    def _catch_up(self) -> None:
        """Re-send the dead letters and outcomes of a newly owned partition's inputs
        whose source offset is at or after the group's committed offset: they may never
        have been sent. Then commit the log's position (everything up to it is durable
        and its messages are out), so the next owner does not repeat them."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        sent = False
        commits = {}
        for p in sorted(self._catchup):
            tl = self._logs.get(p)
            if tl is None:
                continue
            tp = TopicPartition(self.topic, p)
            committed = self.consumer.committed(tp) or 0
            if self.dlq:
                for rec in tl.rejects:
                    if rec.source is not None and rec.source.topic == self.topic and rec.source.partition == p \
                            and rec.source.offset >= committed:
                        self._send_dead_letter(rec)
                        sent = True
            if self._outcomes is not None:
                n = self._outcomes.catch_up(tl, self.topic, p, committed)
                self.stats.outcomes += n
                sent = sent or n > 0
            nxt = tl.positions.get((self.topic, p), -1) + 1
            if nxt > committed:
                commits[tp] = OffsetAndMetadata(nxt, "", -1)
        self._catchup.clear()
        if sent:
            self.producer.flush()
        if commits:
            try:
                self.consumer.commit(commits, timeout_ms=self.commit_timeout_ms)
            except KafkaError as e:  # harmless: the next owner repeats the (identical) messages
                log.warning("offset commit after the catch-up failed (%s)", e)

    # -- the loop -------------------------------------------------------------------------------

    def _make_consumer(self) -> Any:
        from kafka import KafkaConsumer

        c = KafkaConsumer(**self._consumer_config)
        # fetched batches read in C where that fits (ingest.kafka_records); else kafka-python's loop
        self.fast_records = self.read_records_in_c and install_fast_records(c)
        log.info("fetched records are read %s", "in C (ingest/_kafkarecords)" if self.fast_records
                 else "by kafka-python's own loop")
        return c

    def _ingest_polled(self, polled: dict[Any, list[Any]],
                       prepared: dict[Any, PreparedBatch] | None = None) -> dict[Any, Any]:
        """Ingest each partition's records as one batch (decoded and pre-verified in the
        background when ``prepared`` has it); return the offsets to commit."""
        from kafka.structs import OffsetAndMetadata

        commits: dict[Any, Any] = {}
        for tp, records in polled.items():
            if not records or tp.topic != self.topic:
                continue
            with self._lock:
                tl = self._logs.get(tp.partition)
                if tl is None:
                    continue  # revoked meanwhile: not ours to write, not committed
                prep = prepared.get(tp) if prepared else None
                if prep is not None and prep.owner is tl:
                    raws = prep.raws
                else:  # not prepared, or by a log revoked and reopened meanwhile
                    prep, raws = None, _batch_inputs(tp, records)
                rej_start = tl.rejects.log.next_offset
                fs0 = tl.log.fsync_seconds_total + tl.rejects.log.fsync_seconds_total
                t0 = time.perf_counter()
                try:
                    res: BatchResult = tl.ingest_batch(raws, prep)
                except LogError:
                    self._failed_log = tl
                    raise
                self.stats.ingest_seconds += time.perf_counter() - t0
                spent = tl.log.fsync_seconds_total + tl.rejects.log.fsync_seconds_total - fs0
                if self.dlq and res.rejected:
                    self._dlq_new_rejects(tl.rejects, rej_start)
                if self._outcomes is not None:
                    self.stats.outcomes += self._outcomes.send(res.fates)
            self.stats.fsync_seconds += spent
            self._count(tp.partition, res, len(records), spent)
            nxt = records[-1].offset + 1
            self._next_offset[tp.partition] = nxt
            commits[tp] = OffsetAndMetadata(nxt, "", -1)
        return commits

    def _count(self, partition: int, res: BatchResult, n: int, fsync_spent: float) -> None:
        s = self.stats
        now = time.monotonic()
        if s.first_message_at is None:
            s.first_message_at = now
            s.first_batch_messages = n
        s.last_message_at = now
        s.messages += n
        s.by_partition[partition] = s.by_partition.get(partition, 0) + n
        s.accepted += res.accepted
        s.rejected += res.rejected
        s.duplicates += res.duplicates
        s.batches += 1
        for reason, c in res.reasons.items():
            s.reasons[reason_label(reason)] = s.reasons.get(reason_label(reason), 0) + c
        self._rate_window.append((now, n))
        self._metrics.batch(partition, res.accepted, res.duplicates, res.reasons, fsync_spent)

    def _rate(self) -> float:
        now = time.monotonic()
        w = self._rate_window
        while w and now - w[0][0] > 10.0:
            w.popleft()
        if not w:
            return 0.0
        span = max(now - w[0][0], 1.0)
        return sum(n for _, n in w) / span

    def _lag(self) -> dict[int, int]:
        from kafka import TopicPartition

        out = {}
        for p in list(self._logs):
            hw = self.consumer.highwater(TopicPartition(self.topic, p))
            if hw is not None:
                out[p] = max(0, hw - self._next_offset.get(p, 0))
        return out

    def _status_line(self) -> str:
        s = self.stats
        lag = self._lag()
        parts = ",".join(str(p) for p in sorted(self._logs)) or "-"
        waiting = f" waiting for p{','.join(map(str, sorted(self._pending)))}" if self._pending else ""
        return (f"ingest {self.topic} [{self.group}] partitions {parts}{waiting}: {s.messages:,} messages "
                f"({self._rate():,.0f}/s), {s.accepted:,} appended, {s.rejected:,} rejected, "
                f"{s.duplicates:,} duplicates, lag {sum(lag.values()):,}")

    def _update_gauges(self) -> None:
        self._metrics.gauges(self._rate(), len(self._logs), self._lag())

    def _ingest_and_commit(self, polled: dict[Any, list[Any]],
                           prepared: dict[Any, PreparedBatch] | None = None) -> None:
        from kafka.errors import KafkaError

        commits = self._ingest_polled(polled, prepared)
        if not commits:
            return
        if self.producer is not None:
            self.producer.flush()  # dead letters and outcomes out before the offsets move on
        try:
            self.consumer.commit(commits, timeout_ms=self.commit_timeout_ms)
            self.stats.commits += 1
        except KafkaError as e:  # the log is the truth: the next owner seeks by it
            self.stats.commit_failures += 1
            log.warning("offset commit failed (%s); the log keeps the position", e)

    def next_poll_records(self) -> int:
        """The max_records of the next poll: FIRST_POLL_RECORDS after an assignment,
        doubling with each poll up to max_poll_records (see FIRST_POLL_RECORDS)."""
        n = min(self._poll_records, self.max_poll_records)
        self._poll_records = min(2 * self._poll_records, self.max_poll_records)
        return max(1, n)

    def _preverify_async(self, polled: dict[Any, list[Any]]) -> Future | None:
        """Decode and plan ``polled`` on the decoding thread, then check its signatures
        on the checking thread; the future gives each partition's PreparedBatch. Each
        stage is one thread, so batches go through both in poll order."""
        if not self.preverify:
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustlog-decode")
            self._check_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustlog-preverify")
        assert self._check_executor is not None
        with self._lock:
            jobs = [(self._logs[tp.partition], tp, recs) for tp, recs in polled.items()
                    if recs and tp.topic == self.topic and tp.partition in self._logs]
        return self._check_executor.submit(_check_jobs, self._executor.submit(_plan_jobs, jobs))

    def _drop_held(self, held: deque[tuple[int, dict[Any, list[Any]], Future | None]]) -> None:
        """Forget the batches polled before a rebalance (the consumer seeks each
        partition by its log again, so they are read again); their pre-verification is
        let finish, as it only adds facts to the validity caches."""
        while held and held[0][0] != self._generation:
            held.popleft()

    def run(self) -> int:
        from kafka import KafkaProducer

        old_handlers = {}
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                old_handlers[sig] = signal.signal(sig, self._on_signal)
        self._metrics = worker_metrics(self._metrics_port)
        progress = self._status
        gc_clock = self.collections.start()  # automatic GC off, collected on a clock: see .gcpolicy
        progress.update(f"ingest {self.topic} [{self.group}]: started (pid {os.getpid()}), logs in {self.log_dir}",
                        force=True)
        started = time.monotonic()
        self.stats.exit_code = EXIT_OK
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.layout = self._wait_for_layout(started)
            if self.layout is None:
                return self.stats.exit_code  # stopped (or idle) before the topic existed
            record_log_layout(self.log_dir, self.layout)
            self.stats.layout_partitions = self.stats.topic_partitions = self.layout.partitions
            self.consumer = self._make_consumer()
            if self.dlq or self.outcomes_topic:
                # a few outcome messages per poll batch (each up to outcomes.MAX_MESSAGE_BYTES
                # of lines), flushed per batch: 1 MiB producer batches carry them in one request
                self.producer = KafkaProducer(bootstrap_servers=bootstrap_servers(self.bootstrap), acks="all",
                                              enable_idempotence=True, linger_ms=5, batch_size=1 << 20,
                                              client_id=f"trustlog-ingest-out-{os.getpid()}")
            if self.outcomes_topic:
                ensure_outcomes_topic(self.bootstrap, self.outcomes_topic, self.layout.partitions)
                self._outcomes = OutcomeWriter(self.producer, self.outcomes_topic)
            self.consumer.subscribe([self.topic], listener=_Listener(self))
            # the topic's partitions into the consumer's metadata before its first join:
            # kafka-python joins on whatever metadata it has, and without the topic's the
            # group's first assignment is empty and a second join follows (~0.1-0.2 s)
            self.consumer.partitions_for_topic(self.topic)
            last_status = 0.0
            # (generation, records, pre-verification) of each batch polled but not yet
            # ingested, oldest first: up to self.prefetch of them are held while the
            # oldest is folded, appended and committed
            held: deque[tuple[int, dict[Any, list[Any]], Future | None]] = deque()
            while True:
                stopping = self._stop.is_set()
                polled: dict[Any, list[Any]] = {}
                if not stopping:
                    if self._pending:
                        self._activate_pending()
                    if self._catchup:
                        self._catch_up()
                    # a batch already in hand is appended without waiting for more (its
                    # outcomes are awaited by publishers); otherwise wait a little for records
                    wait_ms = 0 if held else LOCK_RETRY_SECONDS * 1000 if self._pending else IDLE_POLL_MS
                    polled = self.consumer.poll(timeout_ms=wait_ms, max_records=self.next_poll_records())
                    if polled:
                        # decoded and pre-verified in the background while older batches
                        # are folded and appended (the crypto backend releases the GIL)
                        held.append((self._generation, polled, self._preverify_async(polled)))
                # the oldest batch is ingested once more than `prefetch` are held, or when
                # no more records came (nothing to overlap it with), or when stopping
                if held and (len(held) > max(0, self.prefetch) or not polled or stopping):
                    gen0, records, fut = held.popleft()
                    prepared = fut.result() if fut is not None else None
                    if gen0 == self._generation:  # else: a rebalance re-seeked; they come again
                        self._ingest_and_commit(records, prepared)
                    else:  # and so are the later ones polled before the rebalance
                        self._drop_held(held)
                gc_clock.tick()
                now = time.monotonic()
                if now - last_status >= 0.5:
                    last_status = now
                    self._update_gauges()
                    self._check_partition_count(now)
                    progress.update(self._status_line())
                if stopping and not held:
                    break
                if self.max_messages is not None and self.stats.messages >= self.max_messages:
                    break
                if self.idle_exit is not None and not self._pending and not held:
                    since = max(self.stats.last_message_at or started, self._assigned_at or started)
                    if now - since >= self.idle_exit:
                        log.info("idle for %.1f s: stopping", now - since)
                        break
        except LayoutError as e:
            self.stats.exit_code = EXIT_BAD_SETUP
            self.stats.error = str(e)
            log.error("%s", e)
        except LogError as e:
            self.stats.exit_code = EXIT_LOG_FAILURE
            self.stats.error = str(e)
            log.error("log failure, stopping without committing: %s", e)
        finally:
            for ex in (self._executor, self._check_executor):
                if ex is not None:
                    ex.shutdown(wait=True)
            self._executor = self._check_executor = None
            try:
                if self.consumer is not None:
                    self.consumer.close(autocommit=False)
            except Exception as e:  # noqa: BLE001
                log.warning("closing the consumer: %s", e)
            if self.producer is not None:
                try:
                    self.producer.close(timeout=10)
                except Exception as e:  # noqa: BLE001
                    log.warning("closing the dead-letter/outcomes producer: %s", e)
            with self._lock:
                for p, tl in list(self._logs.items()) + list(self._stale.items()):
                    self._close_log(p, tl)
                self._logs.clear()
                self._stale.clear()
            self._metrics.close()
            progress.close(self._status_line_final())
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
            gc_clock.stop()
            self.stats.gc_seconds, self.stats.gc_collections = gc_clock.seconds, gc_clock.young + gc_clock.full
        return self.stats.exit_code

    def _wait_for_layout(self, started: float) -> Layout | None:
        """The topic's layout (recorded now if it has none); waits while the topic does
        not exist yet. None if asked to stop (or idle too long) meanwhile."""
        said = False
        while True:
            try:
                return ensure_layout(self.bootstrap, self.topic)
            except LayoutError:
                if topic_partitions(self.bootstrap, self.topic) is not None:
                    raise
            if not said:
                log.warning("topic %s does not exist yet; waiting for it", self.topic)
                said = True
            if self._stop.wait(1.0) or (self.idle_exit is not None and time.monotonic() - started >= self.idle_exit):
                return None

    def _check_partition_count(self, now: float) -> None:
        """Notice a change of the topic's partition count (from the consumer's metadata,
        refreshed every ``metadata_max_age_ms``) and say what it means."""
        if self.layout is None or now - self._checked_partitions_at < 2.0:
            return
        self._checked_partitions_at = now
        parts = self.consumer.partitions_for_topic(self.topic)
        n = len(parts) if parts else 0
        if not n or n == self.stats.topic_partitions:
            return
        was, self.stats.topic_partitions = self.stats.topic_partitions, n
        lay = self.layout
        if n < lay.partitions:
            log.error("topic %s now has %d partitions, fewer than the %d of its layout: was it re-created?",
                      self.topic, n, lay.partitions)
        elif n > lay.partitions:
            log.warning("topic %s now has %d partitions (was %d); repositories stay on the %d partitions of its "
                        "layout (%s.layout), so every history stays where it is; partitions %d-%d receive no "
                        "events from layout-aware publishers", self.topic, n, was, lay.partitions, self.topic,
                        lay.partitions, n - 1)

    def _status_line_final(self) -> str:
        s = self.stats
        span = (s.last_message_at or 0) - (s.first_message_at or 0)
        rate = f" ({s.messages / span:,.0f}/s)" if span > 0 else ""
        tail = f"; STOPPED ON LOG FAILURE: {s.error}" if s.exit_code else ""
        return (f"ingest {self.topic} [{self.group}] done: {s.messages:,} messages{rate}, {s.accepted:,} appended, "
                f"{s.rejected:,} rejected, {s.duplicates:,} duplicates{tail}")
