"""Outcome messages: a publisher learns through Kafka what became of each event.

For every poll batch of an input partition, the ingest worker produces the outcomes of
all its inputs to the outcomes topic (default ``<topic>.outcomes``), in outcomes
partition (input partition mod the outcomes topic's partition count). One message
carries many inputs (format 2; before it, one message per input): unkeyed, header
``inputs`` = ``topic/partition/first-last`` (the Kafka offsets of the first and the last
input it answers), value JSON lines, one line per input in offset order, each an
:class:`OutcomeLine` (an :class:`Outcome` and the ``input`` it answers)::

    {"status":"accepted","event_id":"...","topic":"t","partition":3,"offset":1207,"log_offset":88,"input":"t/3/1207"}
    {"status":"rejected","event_id":"...","topic":"t","partition":3,"offset":1208,"reason":"BAD_SIGNATURE","detail":"...","input":"t/3/1208"}

``partition``/``offset`` are the Kafka position of the stored copy (the input that
was appended or rejected), ``log_offset`` the record's offset in that partition's
log, ``input`` (``topic/partition/offset``) the input the line answers: a redelivered
input is answered with the stored copy's outcome, so the two can differ. A message
holds at most :data:`MAX_MESSAGE_BYTES` of lines (a batch's lines are cut into
consecutive messages). A reader takes the lines it wants and ignores the others; a
line of another shape is not an outcome (:class:`OutcomeWaiter` skips it).

Outcomes are produced after the batch's fsync and flushed before its consumer offsets
are committed, so they are at least once: a worker that takes over a partition
re-sends the outcomes of the stored inputs at or after the committed offset (built
from the log and the rejects log). The line for an input is a function of the stored
copy and the input's position, so a repeat of it is byte-identical, and a repeated
outcome always says the same thing; the messages around the lines repeat exactly when
the re-sent range is the batch that was sent (the usual case: only the last batch
before a crash can lack its commit). ``status`` is "duplicate" only for an input
recognised as a repeat whose stored copy could not be located (rare; it is in the log).
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from trustlog.core.errors import TrustlogError

from .kafka_servers import bootstrap_servers
from .pipeline import Fate, TrustLog
from .records import KafkaPosition, decode_record, decode_reject

INPUTS_HEADER = "inputs"     # format 2: "topic/partition/first-last" of the lines' inputs
INPUT_HEADER = "input"       # format 1 (one message per input), still read by OutcomeWaiter
MAX_MESSAGE_BYTES = 256 * 1024  # well under the broker's and the producer's 1 MiB default
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


class OutcomeLine(Outcome, frozen=True, kw_only=True):
    """One line of a format-2 message: the outcome and the input it answers."""

    input: str                   # "topic/partition/offset" of the input

    def outcome(self) -> Outcome:
        return Outcome(self.status, self.event_id, self.topic, self.partition, self.offset, self.log_offset,
                       self.reason, self.detail)


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Outcome)
_line_dec = msgspec.json.Decoder(OutcomeLine)


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


def outcome_line(fate: Fate) -> bytes | None:
    """The encoded line for ``fate`` (no newline; None for an input without a Kafka position)."""
    src = fate.source
    if src is None:
        return None
    stored = fate.stored_source or src
    return _enc.encode(OutcomeLine(fate.status, fate.event_id, stored.topic, stored.partition, stored.offset,
                                   fate.log_offset, str(getattr(fate.reason, "value", fate.reason)), fate.detail,
                                   input=f"{src.topic}/{src.partition}/{src.offset}"))


def outcome_messages(fates: Iterable[Fate],
                     max_bytes: int = MAX_MESSAGE_BYTES) -> Iterator[tuple[KafkaPosition, KafkaPosition, bytes]]:
    """The format-2 messages for ``fates`` (in order): (first input, last input, value).
    A message holds the consecutive lines of one input partition, at most ``max_bytes``
    of them (a single longer line goes alone)."""
    lines: list[bytes] = []
    first = last = None
    size = 0
    for fate in fates:
        line = outcome_line(fate)
        if line is None:
            continue
        src = fate.source
        assert src is not None
        if lines and (size + len(line) + 1 > max_bytes or (src.topic, src.partition) != (last.topic, last.partition)):
            yield first, last, b"\n".join(lines) + b"\n"
            lines, size = [], 0
        if not lines:
            first = src
        lines.append(line)
        size += len(line) + 1
        last = src
    if lines:
        yield first, last, b"\n".join(lines) + b"\n"


class OutcomeWriter:
    """Produces outcome messages through ``producer`` (the worker's, acks=all,
    idempotent); the caller flushes it before committing consumer offsets."""

    def __init__(self, producer: Any, topic: str, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.producer = producer
        self.topic = topic
        self.max_bytes = max_bytes
        self.sent = 0       # inputs answered
        self.messages = 0   # messages produced
        # the outcomes of source partition p go to outcomes partition p mod n: in order,
        # the same partition for every repeat
        parts = producer.partitions_for(topic)
        self.partitions = len(parts) if parts else 1

    def send(self, fates: Iterable[Fate]) -> int:
        """Produce the outcomes of ``fates`` (one batch, in input order); return how many
        inputs they answer."""
        n = 0
        for first, last, value in outcome_messages(fates, self.max_bytes):
            label = f"{first.topic}/{first.partition}/{first.offset}-{last.offset}"
            self.producer.send(self.topic, value=value, headers=[(INPUTS_HEADER, label.encode())],
                               partition=first.partition % self.partitions)
            self.messages += 1
            n += value.count(b"\n")
        self.sent += n
        return n

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
        return self.send(fates)


def read_outcome_message(headers: Iterable[tuple[str, bytes]] | None, value: bytes | None) -> list[tuple[str, Outcome]]:
    """The (input label, outcome) pairs of one message of an outcomes topic, format 2
    (JSON lines) or format 1 (one outcome, its input in the ``input`` header). A line
    or message that is not an outcome is left out (not ours to interpret)."""
    hdrs = dict(headers or [])
    if value is None:
        return []
    if INPUTS_HEADER in hdrs:
        out = []
        for line in value.splitlines():
            try:
                ol = _line_dec.decode(line)
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
            out.append((ol.input, ol.outcome()))
        return out
    if INPUT_HEADER in hdrs:
        try:
            return [(hdrs[INPUT_HEADER].decode(errors="replace"), _dec.decode(value))]
        except (msgspec.ValidationError, msgspec.DecodeError):
            return []
    return []


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
    """Collects the outcomes of a publisher's inputs, matched by the input each line
    answers (format 2; a format-1 message by its ``input`` header).

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
                    for label, outcome in read_outcome_message(r.headers, r.value):
                        if label in wanted and label not in got:
                            got[label] = outcome
        return got, set(wanted) - set(got)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
