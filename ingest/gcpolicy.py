"""Garbage collection on a clock, not per allocation, while the Kafka worker ingests.

CPython's cyclic collector runs a young collection every 700 net allocations of
GC-tracked objects and scans every young object still alive. On the ingest path almost
every such object is alive when it is scanned: a poll batch's records, inputs, decoded
envelopes and signature plans live until the batch is committed, two or three batches
later (the pre-verification pipeline holds them). So the collector rescans the same
short-lived, acyclic objects over and over and finds nothing: measured on the 200,000
event benchmark, 1.13 s of collections in a 9.7 s run (5.7 µs an event, more than any
stage of the fold), and more per collection the longer the run.

The folded state is acyclic and freed by reference counting, and so is what a batch
makes (tests/test_gcpolicy.py holds a batch of every kind of input to leaving no cyclic
garbage); the little there is (kafka-python's futures and the like) needs a collector
but not an eager one. :class:`TimedCollections` switches the automatic collector off
for the worker's run and collects from the worker's own loop instead: the young
generations every ``young_seconds`` (each such collection scans what is alive then,
mostly the batches in flight: ~50 ms at 25k events/s, whatever the period, so the
period sets its share of the CPU), everything every ``full_seconds`` (a full
collection scans the whole state: at registry scale seconds of CPU, so rarely). The
previous setting comes back when the run ends, so it is process-wide only while a
worker runs. Measured (benchmarks/ingest.py, 200,000 events): automatic collection
after the cycle fixes ~0.3 s per 100,000 events; timed every 2 s, 0.19-0.21 s per
200,000.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable
from types import TracebackType

YOUNG_SECONDS = 5.0    # gc.collect(1) at most this often
FULL_SECONDS = 300.0   # gc.collect(2) at most this often


class TimedCollections:
    """Automatic collection off between :meth:`start` and :meth:`stop`; :meth:`tick`,
    called from the worker's loop, collects when a period has passed."""

    def __init__(self, young_seconds: float = YOUNG_SECONDS, full_seconds: float = FULL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if young_seconds <= 0 or full_seconds < young_seconds:
            raise ValueError(f"collection periods must be young > 0 and full >= young, "
                             f"not {young_seconds} and {full_seconds}")
        self.young_seconds = young_seconds
        self.full_seconds = full_seconds
        self._clock = clock
        self._was_enabled: bool | None = None  # None: not started
        self._last_young = self._last_full = 0.0
        self.young = 0      # collections run by tick
        self.full = 0
        self.seconds = 0.0  # spent in them

    def start(self) -> TimedCollections:
        if self._was_enabled is None:
            self._was_enabled = gc.isenabled()
            gc.disable()
            self._last_young = self._last_full = self._clock()
        return self

    def tick(self) -> int | None:
        """Collect if a period has passed; the generation collected, or None."""
        if self._was_enabled is None:
            return None
        now = self._clock()
        if now - self._last_full >= self.full_seconds:
            generation = 2
            self._last_full = self._last_young = now
            self.full += 1
        elif now - self._last_young >= self.young_seconds:
            generation = 1
            self._last_young = now
            self.young += 1
        else:
            return None
        t0 = time.perf_counter()
        gc.collect(generation)
        self.seconds += time.perf_counter() - t0
        return generation

    def stop(self) -> None:
        """Restore the automatic collector as it was before :meth:`start`."""
        if self._was_enabled is None:
            return
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None

    def __enter__(self) -> TimedCollections:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
