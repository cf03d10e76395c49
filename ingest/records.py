"""What the append-only logs store: one canonical MessagePack body per record.

Bodies use :func:`trustlog.core.encoding.canonical_bytes`, so a record has exactly one
byte form; decoding re-encodes and refuses anything else. The Merkle tree hashes these
bytes, so determinism here is what makes a checkpoint reproducible.

``log_time`` is integer nanoseconds since the Unix epoch, assigned by the log writer
(see :class:`LogClock`) and strictly increasing within one log. It is the time trust
decisions use (a ``KeyCompromised.since`` is compared against it), never a signer's
claimed time.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

import msgspec

from trustlog.core.encoding import canonical_bytes, decode_canonical

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class KafkaPosition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a record came from upstream, so a redelivered message is recognised."""

    topic: str
    partition: NonNegative
    offset: NonNegative


class LogRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An accepted event: its canonical envelope bytes (``Envelope.to_bytes()``)."""

    log_time: NonNegative
    envelope: bytes
    source: KafkaPosition | None = None


class RejectRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An input that was not accepted, kept with the reason so nothing is dropped
    silently. ``raw`` is the input as received (possibly cut short, see
    :class:`trustlog.ingest.rejects.RejectsLog`); ``event_id`` is empty when the input
    did not decode far enough to have one."""

    log_time: NonNegative
    reason: str
    detail: str
    raw: bytes
    event_id: str = ""
    source: KafkaPosition | None = None


def encode_record(record: LogRecord) -> bytes:
    return canonical_bytes(record)


def decode_record(data: bytes) -> LogRecord:
    """Decode a canonical :class:`LogRecord`; raises ``EncodingError`` otherwise."""
    return decode_canonical(data, LogRecord)


def encode_reject(record: RejectRecord) -> bytes:
    return canonical_bytes(record)


def decode_reject(data: bytes) -> RejectRecord:
    """Decode a canonical :class:`RejectRecord`; raises ``EncodingError`` otherwise."""
    return decode_canonical(data, RejectRecord)


class LogClock:
    """Hands out strictly increasing log times (ns), even if the wall clock stalls or
    steps back: each time is ``max(now, last + 1)``.

    A writer reopening a log calls :meth:`observe` with the last stored log time first,
    so times keep increasing across restarts.
    """

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._last = -1

    @property
    def last(self) -> int:
        """The last time handed out or observed (-1 if none)."""
        return self._last

    def observe(self, log_time: int) -> None:
        """Record that ``log_time`` is already used; later times will be greater."""
        self._last = max(self._last, log_time)

    def next(self) -> int:
        t = max(self._now_ns(), self._last + 1)
        self._last = t
        return t
