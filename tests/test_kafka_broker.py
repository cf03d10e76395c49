"""The real Kafka broker from scripts/kafka/kafka.sh works end to end with kafka-python."""
from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from kafka_broker import delete_topics, new_topic, require_restartable_broker, restart_broker

N = 100
PARTITIONS = 4


def _produce(bootstrap: str, topic: str, start: int, count: int) -> dict[int, int]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             client_id="trustlog-test-producer")
    per_partition: dict[int, int] = {}
    try:
        futures = [producer.send(topic, key=f"repo-{i % 10}".encode(),
                                 value=f"event-{i}".encode())
                   for i in range(start, start + count)]
        producer.flush(timeout=30)
        for f in futures:
            md = f.get(timeout=30)
            per_partition[md.partition] = per_partition.get(md.partition, 0) + 1
    finally:
        producer.close(timeout=10)
    return per_partition


def _consume(bootstrap: str, topic: str, group: str, expected: int, timeout: float = 60):
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             client_id="trustlog-test-consumer")
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        consumer.commit()  # manual, synchronous commit of the consumed positions
        committed = {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close()
    return records, committed


def _check(records, committed, values: set[str], per_partition: dict[int, int]) -> None:
    assert {r.value.decode() for r in records} == values
    assert len(records) == len(values)  # no duplicates
    # one key -> one partition, and per-partition order is the produce order
    by_key: dict[str, set[int]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(ps) == 1 for ps in by_key.values())
    for p in range(PARTITIONS):
        offs = [r.offset for r in records if r.partition == p]
        assert offs == sorted(offs)
    assert {p: c or 0 for p, c in committed.items()} == \
        {p: per_partition.get(p, 0) for p in range(PARTITIONS)}


@pytest.mark.kafka
def test_produce_consume_commit(kafka_bootstrap):
    topic = new_topic(kafka_bootstrap, "trustlog-test")
    try:
        per_partition = _produce(kafka_bootstrap, topic, 0, N)
        assert sum(per_partition.values()) == N
        assert len(per_partition) > 1  # 10 keys over 4 partitions

        records, committed = _consume(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}", N)
        _check(records, committed, {f"event-{i}" for i in range(N)}, per_partition)
    finally:
        delete_topics(kafka_bootstrap, topic)


@pytest.mark.kafka
@pytest.mark.slow
def test_restart_keeps_data(kafka_bootstrap):
    """Stop/start the script's broker: same address, topic data and committed offsets kept."""
    require_restartable_broker()
    topic = new_topic(kafka_bootstrap, "trustlog-restart")
    group = f"g-{uuid.uuid4().hex[:8]}"
    try:
        first = _produce(kafka_bootstrap, topic, 0, N // 2)
        records, committed = _consume(kafka_bootstrap, topic, group, N // 2)
        _check(records, committed, {f"event-{i}" for i in range(N // 2)}, first)

        assert restart_broker() == kafka_bootstrap

        second = _produce(kafka_bootstrap, topic, N // 2, N // 2)
        records, committed = _consume(kafka_bootstrap, topic, group, N // 2)
        # the group resumes after its committed offsets: only the new half comes back
        total = {p: first.get(p, 0) + second.get(p, 0) for p in range(PARTITIONS)}
        _check(records, committed, {f"event-{i}" for i in range(N // 2, N)}, total)
    finally:
        delete_topics(kafka_bootstrap, topic)
