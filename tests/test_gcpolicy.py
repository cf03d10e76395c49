"""Garbage collection on the ingest path: the worker's timed collections, and a batch
that leaves no cyclic garbage behind (with the automatic collector off during a worker's
run, a cycle through a batch's frame would keep the whole batch alive until the next
timed collection; see ``ingest/gcpolicy.py``)."""
from __future__ import annotations

import gc
import tempfile
import weakref
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from test_ingest_prepared import POOL
from trustlog.core.events import Envelope, Signature
from trustlog.ingest.gcpolicy import TimedCollections
from trustlog.ingest.pipeline import Fate, TrustLog
from trustlog.ingest.records import KafkaPosition, LogClock


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_timed_collections_turn_the_automatic_collector_off_and_collect_on_the_clock() -> None:
    was = gc.isenabled()
    clock = _Clock()
    timed = TimedCollections(young_seconds=2.0, full_seconds=10.0, clock=clock)
    assert timed.tick() is None                      # not started: never collects
    gc.enable()
    try:
        with timed:
            assert not gc.isenabled()
            ref = _cycle()
            assert timed.tick() is None              # no period has passed
            assert ref() is not None                 # ... and nothing collected it meanwhile
            clock.now += 2.0
            assert timed.tick() == 1
            assert ref() is None                     # the young collection found the cycle
            clock.now += 1.0
            assert timed.tick() is None
            clock.now += 7.0                         # 10 s since the start: a full collection
            assert timed.tick() == 2
            clock.now += 2.0
            assert timed.tick() == 1                 # the full one restarted the young period
            assert (timed.young, timed.full) == (2, 1)
        assert gc.isenabled()                        # restored as it was
        timed.start()
        gc.enable()                                  # (a start when it was off ...)
        gc.disable()
        timed.stop()
        assert gc.isenabled()                        # ... gives back what it found at start
    finally:
        (gc.enable if was else gc.disable)()


def test_timed_collections_refuse_periods_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="young > 0"):
        TimedCollections(young_seconds=0)
    with pytest.raises(ValueError, match="full >= young"):
        TimedCollections(young_seconds=5, full_seconds=1)


def test_the_objects_made_per_input_are_not_scanned_by_the_collector() -> None:
    """Envelopes and fates hold no reference back to anything that holds them, so they
    are not tracked: a worker has tens of thousands of them in flight."""
    pos = KafkaPosition("t", 0, 1)
    assert not gc.is_tracked(Envelope(b"payload", [Signature("k" * 64, b"s")]))
    assert not gc.is_tracked(Fate("accepted", pos, "ab", 1, pos))
    assert not gc.is_tracked(pos)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=12), min_size=1, max_size=4),
       prepared=st.booleans())
def test_an_ingested_batch_leaves_no_cyclic_garbage(batches: list[list[int]], prepared: bool, crypto) -> None:
    """Whatever the inputs (accepted, rejected for every reason the pool holds,
    duplicates, garbage), what ingest_batch and prepare made is freed by reference
    counting alone."""
    with tempfile.TemporaryDirectory() as d:
        tl = TrustLog(Path(d), crypto=crypto, clock=LogClock(now_ns=lambda: 1_000), checkpoint_every=None,
                      snapshot_every=None)
        # every kind of input once first: msgspec builds its decoders for a type on first
        # use (a closure cycle, once per process), which is not what this looks for
        warm = [(raw, KafkaPosition("warm", 0, j)) for j, raw in enumerate(POOL)]
        with tempfile.TemporaryDirectory() as w, TrustLog(Path(w), crypto=crypto, checkpoint_every=None,
                                                          snapshot_every=None) as first:
            first.ingest_batch(warm, first.prepare(warm))
            first.ingest_batch(warm[::-1])
        was = gc.isenabled()
        try:
            offset = 0
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            for batch in batches:
                raws = [(POOL[i], KafkaPosition("events", 0, offset + j)) for j, i in enumerate(batch)]
                offset += len(batch)
                tl.ingest_batch(raws, tl.prepare(raws) if prepared else None)
            del raws
            gc.collect()
            left = [getattr(o, "__qualname__", type(o).__name__) for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            (gc.enable if was else gc.disable)()
            tl.close()
        assert left == [], " ".join(left)
