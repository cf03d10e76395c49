"""Fewer full garbage collections while a long-running writer folds events.

The folded state grows by a few GC-tracked objects per event (a tag entry and its
signature tuples), and CPython's cyclic collector re-scans *all* of it in every full
collection: by default one whenever the heap has grown by a quarter, which at ingest
rates costs a large share of the CPU per event (measured: 2 of 8.2 CPU seconds for
50,000 events through the Kafka worker). The state is acyclic and freed by reference
counting, so those scans find almost nothing; the little cyclic garbage there is
(kafka-python's futures, exception tracebacks of rejected events) is still collected
by the young generations, and by a full collection at most every ``full_every`` gen-1
collections instead of every 10 (CPython's 25 % growth rule still applies too, so
there are never more full collections than by default).

Process-wide, so only for a process that is an ingest writer (the Kafka worker); the
previous thresholds come back on exit.
"""
from __future__ import annotations

import gc

FULL_EVERY = 100  # gen-1 collections per full collection (CPython's default is 10)


def fewer_full_collections(full_every: int = FULL_EVERY) -> tuple[int, int, int]:
    """Set the policy above; return the thresholds before, for :func:`restore`."""
    before: tuple[int, int, int] = gc.get_threshold()
    gc.set_threshold(before[0], before[1], max(before[2], full_every))
    return before


def restore(before: tuple[int, int, int]) -> None:
    gc.set_threshold(*before)
