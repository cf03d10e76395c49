"""What the append-only logs store: one canonical body per record.

An accepted event's record is written in one of two formats, each with exactly one byte
form (decoding re-encodes and refuses anything else). The Merkle tree hashes these
bytes, so determinism here is what makes a checkpoint reproducible.

* v1: :func:`trustlog.core.encoding.canonical_bytes` of a :class:`LogRecord` (a MessagePack
  map, so its first byte is 0x80-0x8F or 0xDE/0xDF);
* v2 (``ingest/record_v2.py``): the marker byte 0xC1 (never used by MessagePack) and the
  record's fields without the nested layers, from which the v1 bytes are re-derived.
  :func:`encode_record` writes v2 whenever that re-derivation is exact, v1 otherwise;
  both decode to the same :class:`LogRecord`, so old logs open unchanged.

Every reader decodes records here (:func:`decode_record`, or :func:`decode_record_trusted`
for a replay that trusts the Merkle tree); the compiled fold's C reader parses both
formats (``ingest/_fastfold.h``, ``ingest/_record_v2.h``).

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
from trustlog.core.errors import EncodingError
from trustlog.core.events import Envelope, Event

from . import fold_backend, record_v2
from .record_types import KafkaPosition, LogRecord

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


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


def encode_record(record: LogRecord, env: Envelope | None = None, event: Event | None = None) -> bytes:
    """The record's bytes as the log stores them: v2 when it re-derives exactly the
    canonical v1 bytes, else v1 (see the module docstring). They depend on the record
    alone, whichever backend encodes it:

    * the compiled fold's C encoder (``_fastfold.encode_v2``, when the compiled fold is
      in use) answers an ``ImageSigned``'s v2 bytes from the v1 bytes, or None when it
      is unsure (any other kind, anything its reader does not take); then
    * the Python encoder (``record_v2.encode_v2``) decides. ``env`` and ``event``: the
      record's envelope and event if the caller has them decoded (saves decoding them
      again); ones that do not match the record make its re-derivation fail, and it is
      then tried once more from the record's bytes alone, so they never change the
      result (``tests/test_record_v2.py`` holds both encoders and both ways equal)."""
    if _c_encode_v2 is not None:
        v1 = canonical_bytes(record)
        v2 = _c_encode_v2(v1)
        if v2 is not None:
            return v2  # type: ignore[no-any-return]
        return _encode_py(record, env, event) or v1
    return _encode_py(record, env, event) or canonical_bytes(record)


def encode_record_py(record: LogRecord, env: Envelope | None = None, event: Event | None = None) -> bytes:
    """:func:`encode_record` by the Python encoder alone (the C encoder's twin; tests and
    the benchmark compare the two)."""
    return _encode_py(record, env, event) or canonical_bytes(record)


def _encode_py(record: LogRecord, env: Envelope | None, event: Event | None) -> bytes | None:
    """The v2 bytes of ``record`` by ``record_v2.encode_v2``, or None (it stays v1)."""
    v2 = record_v2.encode_v2(record.log_time, record.envelope, record.source, env, event)
    if v2 is None and (env is not None or event is not None):
        v2 = record_v2.encode_v2(record.log_time, record.envelope, record.source)  # the hints may be wrong
    return v2  # type: ignore[no-any-return]


def encode_record_v1(record: LogRecord) -> bytes:
    """The v1 bytes of a record (what logs written before v2 hold; tests and migration)."""
    return canonical_bytes(record)


def record_format(data: bytes | memoryview) -> int:
    """2 for a v2 record (first byte 0xC1), else 1 (a v1 record, or not a record)."""
    return 2 if data[:1] == record_v2.MARKER_BYTE else 1


def decode_record(data: bytes | memoryview) -> LogRecord:
    """Decode a record of either format in its one canonical form; raises
    ``EncodingError`` otherwise."""
    if data[:1] == record_v2.MARKER_BYTE:
        return record_v2.decode_v2(data)  # type: ignore[no-any-return]
    return decode_canonical(bytes(data) if type(data) is not bytes else data, LogRecord)


def decode_record_trusted(data: bytes | memoryview) -> tuple[LogRecord, Envelope, Event]:
    """A record of a trusted log with its envelope and event, without the
    canonical-form re-checks (the bytes are covered by the Merkle tree; ``trustlog log
    verify`` checks the canonical form). Raises ``EncodingError``."""
    if data[:1] == record_v2.MARKER_BYTE:
        return record_v2.decode_v2_trusted(data)  # type: ignore[no-any-return]
    try:
        rec = _record_decoder.decode(data)
        env = _envelope_decoder.decode(rec.envelope)
        return rec, env, _event_decoder.decode(env.payload)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise EncodingError(str(e)) from e


_record_decoder = msgspec.msgpack.Decoder(LogRecord)
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_event_decoder = msgspec.msgpack.Decoder(Event)

# the C encoder of the compiled fold when it is in use (a build before it: None, Python encodes)
_c_encode_v2: Callable[[bytes], bytes | None] | None = (
    None if fold_backend.compiled is None else getattr(fold_backend.compiled, "encode_v2", None))


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
        return self.next_at(self._now_ns())

    def next_at(self, now: int) -> int:
        """:meth:`next` with the wall clock read as ``now`` (by a caller that read it
        already: the compiled ingest run, ``_fastfold.IngestBatchFold.ingest_run``, reads
        ``_now_ns`` and ``_last`` itself and hands a refused input's reading back here)."""
        t = max(now, self._last + 1)
        self._last = t
        return t
