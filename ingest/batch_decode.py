"""Decoding one ingest batch, once, and possibly on another thread than the fold.

The Kafka worker decodes batch N+1 and checks its signatures (one backend call, GIL
released) on a background thread while batch N is folded, appended and fsynced on the
worker's thread. :meth:`TrustLog.prepare` returns that work as a :class:`PreparedBatch`
and :meth:`TrustLog.ingest_batch` takes it as it is, so no input is decoded twice.
Decoding is a pure function of the input bytes (and of the log's size limit and
admission rule, fixed when the log is opened), so where it runs changes no outcome.

Each input becomes one :data:`Decoded` tuple (a tuple, not an object: this runs once
per event on the hot path)::

    (raw, source, envelope | None, event | None, error | None, canonical envelope bytes)

``canonical`` is what the log stores and what the event id hashes. A MessagePack input
*is* its canonical envelope (``decode_envelope`` refuses any other byte form), so it is
kept as received instead of being encoded again; a JSON input is encoded once here.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trustlog.core.errors import EncodingError, EventTooLargeError
from trustlog.core.events import Envelope, Event, decode_event, decode_wire, is_json_wire
from trustlog.core.reasons import Reject
from trustlog.core.state import RejectedEventError

Decoded = tuple[bytes, Any, Envelope | None, Event | None, RejectedEventError | None, bytes]


def decode_batch(
    raws: Sequence[tuple[bytes, Any]],
    max_event_bytes: int,
    admit: Callable[[Event], RejectedEventError | None] | None,
) -> list[Decoded]:
    """Decode every ``(raw, source)`` of a batch; an input that does not decode (or that
    ``admit`` refuses) carries the :class:`RejectedEventError` it will be recorded with."""
    out: list[Decoded] = []
    append = out.append
    for raw, src in raws:
        try:
            env = decode_wire(raw, max_event_bytes)
        except EventTooLargeError as e:
            append((raw, src, None, None, RejectedEventError(Reject.TOO_LARGE, str(e)), b""))
            continue
        except EncodingError as e:
            append((raw, src, None, None, RejectedEventError(Reject.MALFORMED, f"envelope: {e}"), b""))
            continue
        canonical = env.to_bytes() if is_json_wire(raw) else bytes(raw)
        try:
            event = decode_event(env.payload)
        except EncodingError as e:
            append((raw, src, env, None, RejectedEventError(Reject.MALFORMED, f"payload: {e}"), canonical))
            continue
        append((raw, src, env, event, admit(event) if admit is not None else None, canonical))
    return out


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch decoded and pre-verified by :meth:`TrustLog.prepare`, for
    :meth:`TrustLog.ingest_batch` of the same log and the same ``raws`` list (anything
    else is decoded afresh there)."""

    owner: object                         # the TrustLog that prepared it
    raws: Sequence[tuple[bytes, Any]]     # the very list it was made from
    decoded: list[Decoded]
    # per input: the cache key of each signature the pre-check planned (precheck.plan's
    # sig_cks), None for an input without signature work
    sig_cks: list[list[bytes | None] | None] | None = None
