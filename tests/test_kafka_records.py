"""The C reader of fetched Kafka batches (ingest/_kafkarecords.pyx, put under the
fetcher by ingest/kafka_records.py) against kafka-python's own PartitionRecords: the
same ConsumerRecords, the same fetch positions and counters, and on damaged bytes the
same records before the same error."""
from __future__ import annotations

import os
import struct
from typing import Any

import kafka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import Fetcher
from kafka.protocol.consumer import IsolationLevel
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition

from conftest import require_or_skip
from trustlog.ingest import kafka_records

TP = TopicPartition("t", 3)


def _compiled() -> Any:
    c = kafka_records._compiled()
    if c is None:
        require_or_skip("the compiled Kafka record reader (build it with `pip install -e .`)",
                        "trustlog.ingest._kafkarecords does not import")
    return c


@pytest.fixture(scope="module")
def fast_cls() -> type:
    if kafka.__version__ not in kafka_records.TESTED_KAFKA_PYTHON:
        pytest.fail(f"kafka-python {kafka.__version__} is not in kafka_records.TESTED_KAFKA_PYTHON: check its "
                    "fetcher's PartitionRecords against FastPartitionRecords and add it")
    return kafka_records._make_class(_compiled())


def build(batches: list[list[tuple[int, bytes | None, bytes | None, list]]], base: int = 0,
          compression: int = 0) -> bytes:
    out = b""
    offset = base
    for recs in batches:
        b = MemoryRecordsBuilder(magic=2, compression_type=compression, batch_size=1 << 24)
        for ts, key, value, headers in recs:
            assert b.append(ts, key, value, headers) is not None
        b.close()
        # the base offset (outside the CRC) set in place: the builder takes only small ones
        out += struct.pack(">q", offset) + bytes(b.buffer())[8:]
        offset += len(recs) + 1   # a gap, as compaction leaves
    return out


def drain(cls: type, data: bytes, fetch_offset: int = 0, check_crcs: bool = True,
          n: int | None = None) -> tuple[list, str | None, int, int, int]:
    """Everything a PartitionRecords of ``cls`` gives: the records (taken ``n`` at a time),
    the error it ends with (type and message), its next fetch offset and counters."""
    pr = cls(fetch_offset, TP, MemoryRecords(data), check_crcs=check_crcs,
             isolation_level=IsolationLevel.READ_UNCOMMITTED)
    got: list = []
    err = None
    for _ in range(10_000):
        if not pr:   # drained (a drained PartitionRecords is not taken from again)
            break
        try:
            part = pr.take(n)
        except Exception as e:  # noqa: BLE001 - compared, type and message, with kafka-python's
            err = f"{type(e).__name__}: {e}"
            break
        if not part:
            break
        got.extend(part)
    return got, err, pr.next_fetch_offset, pr.records_read, pr.bytes_read


headers_st = st.lists(st.tuples(st.text(max_size=6), st.none() | st.binary(max_size=8)), max_size=3)
record_st = st.tuples(st.integers(0, 2**42), st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=200),
                      headers_st)
batches_st = st.lists(st.lists(record_st, min_size=1, max_size=12), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches_st, base=st.integers(0, 2**40), start=st.integers(0, 20), n=st.none() | st.integers(1, 7))
def test_the_c_reader_gives_kafka_pythons_records_positions_and_counters(fast_cls: type, batches, base, start, n) -> None:
    data = build(batches, base)
    assert drain(fast_cls, data, base + start, n=n) == drain(Fetcher.PartitionRecords, data, base + start, n=n)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=batches_st, edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.none() | st.integers(0, 10**6), check_crcs=st.booleans())
def test_on_damaged_batches_it_gives_the_same_records_then_the_same_error(fast_cls: type, batches, edits, cut,
                                                                          check_crcs) -> None:
    data = bytearray(build(batches))
    for at, byte in edits:   # anywhere past the batch framing's offset field, which MemoryRecords reads first
        data[8 + at % (len(data) - 8)] = byte
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    data = bytes(data)
    assert drain(fast_cls, data, check_crcs=check_crcs) == drain(Fetcher.PartitionRecords, data, check_crcs=check_crcs)


def test_the_records_read_in_c_are_not_scanned_by_the_cyclic_collector(fast_cls: type) -> None:
    """A worker holds tens of thousands of fetched records at once; they hold no
    reference back to anything (see gcpolicy.py), so they and their header lists are
    not tracked, and equal kafka-python's all the same."""
    import gc

    data = build([[(1000 + i, b"k", b"v" * i, [("h", b"x")] if i % 2 else []) for i in range(20)]])
    got = drain(fast_cls, data)[0]
    assert got == drain(Fetcher.PartitionRecords, data)[0] and len(got) == 20
    assert not any(gc.is_tracked(r) or gc.is_tracked(r.headers) for r in got)


def test_compressed_batches_go_through_kafka_pythons_loop_with_the_same_result(fast_cls: type) -> None:
    recs = [[(1000 + i, b"k%d" % i, b"v" * i, [("h", b"x")]) for i in range(20)]]
    data = build(recs, compression=1) + build(recs, base=100)   # gzip, then a plain batch
    got = drain(fast_cls, data)
    assert got == drain(Fetcher.PartitionRecords, data)
    assert len(got[0]) == 40 and got[1] is None


def test_install_puts_the_reader_under_one_consumers_fetcher_only(fast_cls: type) -> None:
    class FakeFetcher:   # the two attributes install() reads, nothing else
        PartitionRecords = Fetcher.PartitionRecords
        config: dict = {"key_deserializer": None, "value_deserializer": None}

    class Consumer:
        def __init__(self) -> None:
            self._fetcher = FakeFetcher()

    c, other = Consumer(), Consumer()
    want = os.environ.get("TRUSTLOG_PUREPYTHON") != "1"
    assert kafka_records.install(c) is want
    assert (c._fetcher.PartitionRecords is kafka_records.fast_partition_records_class()) is want
    assert other._fetcher.PartitionRecords is Fetcher.PartitionRecords
    assert FakeFetcher.PartitionRecords is Fetcher.PartitionRecords
    d = Consumer()
    d._fetcher.config = {"key_deserializer": None, "value_deserializer": bytes.decode}
    assert kafka_records.install(d) is False
    assert d._fetcher.PartitionRecords is Fetcher.PartitionRecords


@pytest.mark.kafka
def test_from_the_real_broker_the_installed_reader_gives_what_kafka_python_gives(kafka_bootstrap: str) -> None:
    """Batches as a real broker sends them (several producers' batches, headers, null
    keys and values, a gzip batch among them) read by a consumer with the C reader
    installed and by a stock one: the same records, and the same positions after."""
    from kafka import KafkaConsumer, KafkaProducer

    from kafka_broker import delete_topics, new_topic

    topic = new_topic(kafka_bootstrap, "kafkarecords", 2)
    try:
        for compression in (None, "gzip", None):
            p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5, compression_type=compression)
            for i in range(700):
                p.send(topic, key=None if i % 7 == 0 else b"repo-%d" % (i % 13),
                       value=None if i % 11 == 1 and i % 7 else b"event-%d-" % i + b"x" * (i % 300),
                       headers=[("n", b"%d" % i), ("\u00e9", b"")] if i % 5 == 0 else None)
            p.flush(timeout=30)
            p.close(timeout=10)
        got = {}
        for fast in (False, True):
            c = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, max_poll_records=97)
            try:
                if fast:
                    assert kafka_records.install(c) is (os.environ.get("TRUSTLOG_PUREPYTHON") != "1")
                tps = [TopicPartition(topic, q) for q in range(2)]
                c.assign(tps)
                c.seek_to_beginning(*tps)
                recs: list = []
                for _ in range(400):
                    for batch in c.poll(timeout_ms=200).values():
                        recs.extend(batch)
                    if len(recs) >= 2100:
                        break
                got[fast] = (sorted(recs, key=lambda r: (r.partition, r.offset)), [c.position(tp) for tp in tps])
            finally:
                c.close()
        assert len(got[True][0]) == 2100
        assert got[True] == got[False]
    finally:
        delete_topics(kafka_bootstrap, topic)
