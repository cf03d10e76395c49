"""Prometheus metrics of the Kafka ingest worker (``--metrics-port``).

:func:`worker_metrics` gives :class:`NoMetrics` (every call does nothing) when no port
is asked for, so ``prometheus_client`` is imported, and a port bound, only by a worker
that serves metrics. The worker reports what it did through the same few calls either
way and never checks which one it has.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FSYNC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def reason_label(reason: Any) -> str:
    """A rejection reason as a label value: the enum's value, or the text itself."""
    return str(getattr(reason, "value", reason))


class NoMetrics:
    """The worker's metrics when none are served: every call does nothing."""

    def batch(self, partition: int, accepted: int, duplicates: int, reasons: Mapping[Any, int],
              fsync_seconds: float) -> None:
        """One ingested batch of ``partition``."""

    def gauges(self, rate: float, partitions: int, lag: Mapping[int, int]) -> None:
        """The current rate, number of partitions held, and lag per partition."""

    def close(self) -> None:
        """Stop serving."""


class PrometheusMetrics(NoMetrics):
    """The worker's counters, gauges and fsync histogram, served on ``port`` from a
    registry of their own (so two workers in one process do not collide)."""

    def __init__(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        self.registry = CollectorRegistry()
        self.events = Counter("trustlog_ingest_events", "Events appended to the log", ["partition"],
                              registry=self.registry)
        self.duplicates = Counter("trustlog_ingest_duplicates", "Redelivered inputs already in the log",
                                  registry=self.registry)
        self.rejects = Counter("trustlog_ingest_rejects", "Inputs rejected, by reason", ["reason"],
                               registry=self.registry)
        self.rate = Gauge("trustlog_ingest_events_per_second", "Messages ingested per second (10 s window)",
                          registry=self.registry)
        self.lag = Gauge("trustlog_ingest_consumer_lag", "High watermark minus next offset to ingest",
                         ["partition"], registry=self.registry)
        self.fsync = Histogram("trustlog_ingest_fsync_seconds", "Seconds spent in fsync per group commit",
                               buckets=FSYNC_BUCKETS, registry=self.registry)
        self.partitions = Gauge("trustlog_ingest_partitions", "Partitions whose log this worker holds",
                                registry=self.registry)
        self.server = start_http_server(port, registry=self.registry)

    def batch(self, partition: int, accepted: int, duplicates: int, reasons: Mapping[Any, int],
              fsync_seconds: float) -> None:
        self.events.labels(str(partition)).inc(accepted)
        if duplicates:
            self.duplicates.inc(duplicates)
        for reason, c in reasons.items():
            self.rejects.labels(reason_label(reason)).inc(c)
        self.fsync.observe(fsync_seconds)

    def gauges(self, rate: float, partitions: int, lag: Mapping[int, int]) -> None:
        self.rate.set(rate)
        self.partitions.set(partitions)
        for p, n in lag.items():
            self.lag.labels(str(p)).set(n)

    def close(self) -> None:
        if isinstance(self.server, tuple):  # prometheus_client >= 0.17: (server, thread)
            try:
                self.server[0].shutdown()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass


def worker_metrics(port: int | None) -> NoMetrics:
    """Metrics served on ``port``, or none."""
    return NoMetrics() if port is None else PrometheusMetrics(port)
