"""Outcome messages: a publisher learns through Kafka what became of each event.

For every input it consumes, the ingest worker produces one message to the outcomes
topic (default ``<topic>.outcomes``), keyed by the event id (unkeyed when the input
did not decode far enough to have one), value an :class:`Outcome` as JSON, header
``input`` = ``topic/partition/offset`` of the input it answers, in outcomes partition
(input partition mod the outcomes topic's partition count)::

    {"status": "accepted", "event_id": "...", "topic": "t", "partition": 3,
     "offset": 1207, "log_offset": 88}
    {"status": "rejected", "event_id": "...", "topic": "t", "partition": 1,
     "offset": 17, "reason": "BAD_SIGNATURE", "detail": "..."}

``partition``/``offset`` are the Kafka position of the stored copy (the input that
was appended or rejected), ``log_offset`` the record's offset in that partition's
log. Outcomes are produced after the batch's fsync and flushed before its consumer
offsets are committed, so they are at least once: a worker that takes over a
partition re-sends the outcomes of the stored inputs at or after the committed
offset (built from the log and the rejects log, so the repeat is byte-identical), and
a redelivered input is answered with the stored copy's outcome. A repeated outcome
therefore always says the same thing. ``status`` is "duplicate" only for an input
recognised as a repeat whose stored copy could not be located (rare; it is in the log).
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from trustlog.core.errors import TrustlogError

from .kafka_servers import bootstrap_servers
from .pipeline import Fate, TrustLog
from .records import KafkaPosition, decode_record, decode_reject

INPUT_HEADER = "input"
CATCH_UP_LIMIT = 100_000  # records per log; well above any poll batch (max_poll_records)


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    status: str                  # "accepted" | "rejected" | "duplicate"
    event_id: str
    topic: str
    partition: int
    offset: int
    log_offset: int | None = None
    reason: str = ""
    detail: str = ""


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Outcome)


def default_outcomes_topic(topic: str) -> str:
    return f"{topic}.outcomes"


def position_label(pos: KafkaPosition) -> str:
    return f"{pos.topic}/{pos.partition}/{pos.offset}"


def outcome_of(fate: Fate) -> Outcome | None:
    """The outcome message for ``fate`` (None for an input without a Kafka position)."""
    stored = fate.stored_source or fate.source
    if stored is None:
        return None
    return Outcome(fate.status, fate.event_id, stored.topic, stored.partition, stored.offset, fate.log_offset,
                   str(getattr(fate.reason, "value", fate.reason)), fate.detail)


class OutcomeWriter:
    """Produces outcome messages through ``producer`` (the worker's, acks=all,
    idempotent); the caller flushes it before committing consumer offsets."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.sent = 0
        # the outcomes of source partition p go to outcomes partition p mod n: in order,
        # the same partition for every repeat, and no key hashing (a third of the cost
        # of a send in kafka-python)
        parts = producer.partitions_for(topic)
        self.partitions = len(parts) if parts else 1

    def send(self, fates: Iterable[Fate]) -> None:
        for fate in fates:
            out = outcome_of(fate)
            if out is None or fate.source is None:
                continue
            self.producer.send(self.topic, key=fate.event_id.encode() or None, value=_enc.encode(out),
                               headers=[(INPUT_HEADER, position_label(fate.source).encode())],
                               partition=fate.source.partition % self.partitions)
            self.sent += 1

    def catch_up(self, tl: TrustLog, topic: str, partition: int, committed: int,
                 limit: int = CATCH_UP_LIMIT) -> int:
        """Re-send the outcomes of the inputs of ``topic``/``partition`` stored in ``tl``
        at or after Kafka offset ``committed`` (their outcomes may not have gone out).
        Reads each log backwards from its end: inputs are stored in offset order.

        Outcomes are flushed before every commit, so only the last batch before a crash
        can lack them; ``limit`` (records per log) bounds the work when a new consumer
        group (nothing committed) takes over long logs whose outcomes went out long ago."""
        fates: list[Fate] = []
        stop = max(-1, tl.log.durable_offset - 1 - limit)
        for off in range(tl.log.durable_offset - 1, stop, -1):
            rec = decode_record(tl.log.read(off))
            src = rec.source
            if src is None or (src.topic, src.partition) != (topic, partition):
                continue
            if src.offset < committed:
                break
            fates.append(Fate("accepted", src, hashlib.sha256(rec.envelope).hexdigest(), off, src))
        rl = tl.rejects.log
        for off in range(rl.durable_offset - 1, max(-1, rl.durable_offset - 1 - limit), -1):
            rej = decode_reject(rl.read(off))
            src = rej.source
            if src is None or (src.topic, src.partition) != (topic, partition):
                continue
            if src.offset < committed:
                break
            fates.append(Fate("rejected", src, rej.event_id, None, src, rej.reason, rej.detail))
        fates.sort(key=lambda f: f.source.offset if f.source is not None else -1)
        self.send(fates)
        return len(fates)


def ensure_outcomes_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create the outcomes topic unless it exists."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(bootstrap), client_id="trustlog-admin")
    try:
        if topic in admin.list_topics():
            return
        try:
            admin.create_topics([NewTopic(topic, max(1, partitions), 1)], timeout_ms=30_000)
        except TopicAlreadyExistsError:
            pass
    finally:
        admin.close()


class OutcomeWaiter:
    """Collects the outcomes of a publisher's inputs, matched by the ``input`` header.

    Create it *before* publishing: it starts at the current end of the outcomes topic,
    so every outcome produced for what is published afterwards is seen."""

    def __init__(self, bootstrap: str, outcomes_topic: str, partitions: int) -> None:
        from kafka import KafkaConsumer, TopicPartition

        ensure_outcomes_topic(bootstrap, outcomes_topic, partitions)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers(bootstrap), enable_auto_commit=False,
                                      client_id=f"trustlog-publish-wait-{os.getpid()}")
        deadline = time.monotonic() + 30
        parts = self.consumer.partitions_for_topic(outcomes_topic)
        while not parts and time.monotonic() < deadline:  # metadata of a topic just created
            time.sleep(0.2)
            self.consumer._client.cluster.request_update()
            self.consumer.poll(timeout_ms=100)
            parts = self.consumer.partitions_for_topic(outcomes_topic)
        if not parts:
            raise TrustlogError(f"outcomes topic {outcomes_topic!r} has no partitions visible")
        tps = [TopicPartition(outcomes_topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        for tp, end in self.consumer.end_offsets(tps).items():
            self.consumer.seek(tp, end)
        self.topic = outcomes_topic

    def wait(self, wanted: dict[str, str], timeout: float) -> tuple[dict[str, Outcome], set[str]]:
        """Wait for an outcome for every ``input`` label in ``wanted`` (label -> event
        id); return (outcomes by label, labels still missing at the timeout)."""
        got: dict[str, Outcome] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(wanted) and time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=200).values():
                for r in records:
                    label = next((v.decode() for k, v in (r.headers or []) if k == INPUT_HEADER), None)
                    if label in wanted and label not in got:
                        try:
                            got[label] = _dec.decode(r.value)
                        except (msgspec.ValidationError, msgspec.DecodeError):
                            continue  # not ours to interpret; keep waiting for a readable one
        return got, set(wanted) - set(got)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
