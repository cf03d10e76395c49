"""Fetched Kafka records read in C, under kafka-python's own fetcher.

kafka-python turns every fetched record into Python objects a varint at a time: about
8 us a record here, most of what a bare consumer costs and about a quarter of the
worker's CPU beside signature checks. :func:`install` gives one consumer's fetcher a
:class:`FastPartitionRecords`, which reads each plain v2 batch (uncompressed, not a
control batch) with ``trustlog.ingest._kafkarecords.batch_records`` in one C pass and
yields the very ``ConsumerRecord`` tuples kafka-python's loop would.

Everything else goes through the same steps as kafka-python's
``Fetcher.PartitionRecords._unpack_records`` (the CRC check of each batch, leader
epochs, control batches skipped, the next fetch offset advanced record by record, the
last batch's next offset, drain): a compressed or legacy batch, or one the C reader is
not sure of, is read by kafka-python's per-record loop, which yields the same records
and raises the same error. ``read_committed`` consumers, deserializers, another
kafka-python version, a missing extension or ``TRUSTLOG_PUREPYTHON=1`` leave the consumer as
it was.
``tests/test_kafka_records.py`` holds the two readers together on random and damaged
batches.
"""
from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("trustlog.ingest.kafka")

# the kafka-python releases whose fetcher internals this was written against and tested
# with (PartitionRecords' attributes, DefaultRecordBatch's layout); another one is left alone
TESTED_KAFKA_PYTHON = ("3.0.12",)


def _compiled() -> Any:
    try:
        return importlib.import_module("trustlog.ingest._kafkarecords")
    except ImportError:
        return None


_FAST: type | None = None   # FastPartitionRecords, made on first use


def fast_partition_records_class() -> type | None:
    """:class:`FastPartitionRecords` (made once), or None where it cannot be used: another
    kafka-python release, the extension not built, or ``TRUSTLOG_PUREPYTHON=1`` (as for
    the verifier and the fold: everything in Python)."""
    global _FAST
    if os.environ.get("TRUSTLOG_PUREPYTHON") == "1":
        return None
    if _FAST is not None:
        return _FAST
    import kafka

    c = _compiled()
    if c is None or kafka.__version__ not in TESTED_KAFKA_PYTHON:
        return None
    _FAST = _make_class(c)
    return _FAST


def _make_class(c: Any) -> type:
    from kafka.consumer.fetcher import ConsumerRecord, Fetcher
    from kafka.errors import CorruptRecordError
    from kafka.protocol.consumer import IsolationLevel

    batch_records = c.batch_records   # checks the batch is at least its header long
    read_uncommitted = IsolationLevel.READ_UNCOMMITTED

    class FastPartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc, name-defined]
        """kafka-python's PartitionRecords with plain v2 batches read in C (see the module)."""

        def _unpack_records(self, tp: Any, records: Any, key_deserializer: Any,
                            value_deserializer: Any) -> Iterator[Any]:
            if (key_deserializer is not None or value_deserializer is not None
                    or self.isolation_level != read_uncommitted):
                yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
                return
            topic, partition = tp.topic, tp.partition
            last_batch = None
            batch = records.next_batch()
            while batch is not None:
                last_batch = batch
                if self.check_crcs and not batch.validate_crc():
                    raise CorruptRecordError("Record batch for partition %s at offset %s failed crc check" % (
                        self.topic_partition, batch.base_offset))
                magic = batch.magic
                if magic == 2:
                    self.leader_epoch = batch.leader_epoch
                    if batch.is_control_batch:  # a transaction marker: never returned to the consumer
                        self.next_fetch_offset = batch.next_offset
                        batch = records.next_batch()
                        continue
                got = None
                if magic == 2 and batch.compression_type == 0:
                    got = batch_records(batch._buffer, batch.records_count, batch.base_offset,
                                        batch.first_timestamp, batch.max_timestamp, batch.timestamp_type,
                                        topic, partition, self.leader_epoch, ConsumerRecord)
                if got is not None:
                    recs, sizes = got
                    for rec, size in zip(recs, sizes):
                        self.records_read += 1
                        self.bytes_read += size
                        self.next_fetch_offset = rec.offset + 1
                        yield rec
                else:
                    yield from self._slow_batch(tp, batch)
                batch = records.next_batch()
            # a v2 batch keeps its last offset even when compaction removed its last record
            if last_batch is not None and last_batch.magic == 2:
                self.next_fetch_offset = last_batch.next_offset
            self.drain()

        def _slow_batch(self, tp: Any, batch: Any) -> Iterator[Any]:
            """One batch through kafka-python's per-record loop (no deserializers)."""
            for record in batch:
                if self.check_crcs and not record.validate_crc():
                    raise CorruptRecordError("Record for partition %s at offset %s failed crc check" % (
                        self.topic_partition, record.offset))
                key, value, headers = record.key, record.value, record.headers
                header_size = sum(len(k.encode("utf-8")) + (len(v) if v is not None else 0)
                                  for k, v in headers) if headers else -1
                self.records_read += 1
                self.bytes_read += record.size_in_bytes
                self.next_fetch_offset = record.offset + 1
                yield ConsumerRecord(tp.topic, tp.partition, self.leader_epoch, record.offset, record.timestamp,
                                     record.timestamp_type, key, value, headers, record.checksum,
                                     len(key) if key is not None else -1, len(value) if value is not None else -1,
                                     header_size)

    return FastPartitionRecords


def install(consumer: Any) -> bool:
    """Read ``consumer``'s fetched batches in C from now on; False (and nothing changed)
    where that cannot be done (see the module's docstring)."""
    cls = fast_partition_records_class()
    fetcher = getattr(consumer, "_fetcher", None)
    if cls is None or fetcher is None or getattr(fetcher, "PartitionRecords", None) is not cls.__mro__[1]:
        log.debug("Kafka records are read by kafka-python (the C reader is not built or does not fit this "
                  "kafka-python)")
        return False
    cfg = getattr(fetcher, "config", {})
    if cfg.get("key_deserializer") is not None or cfg.get("value_deserializer") is not None:
        return False
    fetcher.PartitionRecords = cls
    return True
