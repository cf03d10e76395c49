"""Verification requests from a Kafka topic, verdicts to another (``trustlog verify-kafka``).

The state is a read-only view that follows the ingest workers' partition logs
(:class:`~trustlog.ingest.view.ViewSet`): no writer lock is taken, and what they append
after the service started is folded in before each batch of requests. Requests
``{repo, tag[, digest]}`` (JSON) are verified in batches by the
:class:`~trustlog.verifier.batch.BatchVerifier`; each verdict (JSON) is written keyed
by the requested digest (or ``repo:tag``), with a ``request`` header naming the
request's topic/partition/offset. A request that is not one gets a
``MALFORMED_REQUEST`` verdict: nothing is dropped. Request offsets are committed after
the verdicts are acknowledged, so delivery is at least once.

The command line (``cli/kafka_cmds.py``) parses the options, installs the signal
handlers (they call :meth:`KafkaVerifyService.stop`) and prints the summary.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from trustlog.core.evaluate import Request, Verdict
from trustlog.core.reasons import Code
from trustlog.ingest.kafka_records import install as install_fast_records
from trustlog.ingest.kafka_servers import bootstrap_servers
from trustlog.ingest.partitioning import check_ownership, load_log_layout
from trustlog.ingest.view import ViewSet
from trustlog.verifier.batch import BatchVerifier


def result_key(req_repo: str, req_tag: str, digest: str | None) -> bytes:
    """Results are keyed by the requested image digest, or repo:tag when none was given."""
    return (digest or f"{req_repo}:{req_tag}").encode()


@dataclass
class VerifySummary:
    """What one run answered."""

    requests: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    state_version: int = 0
    reference_time: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "verdicts": dict(self.verdicts.most_common()),
                "state_version": self.state_version, "reference_time": self.reference_time,
                "seconds": round(self.seconds, 3)}


class KafkaVerifyService:
    """Answer the requests on ``requests_topic`` into ``results_topic`` from the partition
    logs under ``log_dir``, in consumer group ``group``.

    The logs are opened (and their ownership under ``<log_dir>/layout.json`` checked)
    when the service is made; :meth:`run` consumes until :meth:`stop`, ``idle_exit``
    seconds without requests, or ``max_messages`` requests. ``ref_time`` (seconds) fixes
    the reference time for expiry; None follows the clock (re-read before each batch).
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, bootstrap: str, requests_topic: str, results_topic: str, log_dir: str, *,
                 group: str = "trustlog-verify", ref_time: int | None = None, max_poll_records: int = 5000) -> None:
        self._t0 = time.perf_counter()
        self.bootstrap = bootstrap
        self.requests_topic = requests_topic
        self.results_topic = results_topic
        self.group = group
        self.max_poll_records = max_poll_records
        self.follow_clock = ref_time is None
        self.reference_time = int(time.time()) if ref_time is None else ref_time
        self._stop = threading.Event()
        # A read-only view that follows the ingest workers' logs: no writer lock, and what
        # they append after we started is folded in before each batch of requests.
        self.views = ViewSet(log_dir)
        try:
            if self.views.partitioned:  # each log holds only its own partition's repositories (the writers refuse others)
                layout = load_log_layout(log_dir)
                for v in self.views.views:
                    check_ownership(int(v.dir.name[1:]), v.state.repos, layout, str(v.dir))
        except BaseException:
            self.views.close()
            raise
        self.state = self.views.state
        self.verifier = BatchVerifier(self.state, ref_time=self.reference_time)

    def stop(self) -> None:
        """Stop after the current batch (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
        self.views.close()

    def __enter__(self) -> KafkaVerifyService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, *, idle_exit: float | None = None, max_messages: int | None = None) -> VerifySummary:
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.structs import OffsetAndMetadata

        servers = bootstrap_servers(self.bootstrap)
        consumer = KafkaConsumer(self.requests_topic, bootstrap_servers=servers, group_id=self.group,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 max_poll_records=self.max_poll_records, session_timeout_ms=6000,
                                 heartbeat_interval_ms=2000, client_id=f"trustlog-verify-{os.getpid()}")
        install_fast_records(consumer)  # fetched batches read in C where that fits (ingest.kafka_records)
        producer = KafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True,
                                 linger_ms=5, client_id=f"trustlog-verify-{os.getpid()}")
        views, verifier, state, results = self.views, self.verifier, self.state, self.results_topic
        dec = msgspec.json.Decoder(Request)
        enc = msgspec.json.Encoder()
        counts: Counter[str] = Counter()
        n = 0
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=500)
                while views.poll(100_000):
                    pass
                if self.follow_clock:
                    verifier.ref_time = int(time.time())
                if not polled:
                    if idle_exit is not None and time.monotonic() - last >= idle_exit:
                        break
                    continue
                last = time.monotonic()
                commits = {}
                for tp, records in polled.items():
                    good: list[tuple[Request, Any]] = []
                    for r in records:
                        try:
                            good.append((dec.decode(r.value or b""), r))
                        except (msgspec.ValidationError, msgspec.DecodeError) as e:
                            v = Verdict("", "", Code.MALFORMED_REQUEST.value,
                                        f"not a request {{\"repo\", \"tag\"[, \"digest\"]}}: {e}", state.version)
                            producer.send(results, key=None, value=enc.encode(v),
                                          headers=[("request", f"{tp.topic}/{tp.partition}/{r.offset}".encode())])
                            counts[v.code] += 1
                    for (req, r), v in zip(good, verifier.verify(req for req, _ in good)):
                        producer.send(results, key=result_key(req.repo, req.tag, req.digest),
                                      value=enc.encode(v),
                                      headers=[("request", f"{tp.topic}/{tp.partition}/{r.offset}".encode())])
                        counts[v.code] += 1
                    commits[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
                    n += len(records)
                producer.flush()  # results out before the requests count as done
                consumer.commit(commits)
                if max_messages is not None and n >= max_messages:
                    break
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=10)
        return VerifySummary(n, counts, state.version, self.reference_time, time.perf_counter() - self._t0)
