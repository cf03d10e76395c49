"""The record types both log record formats carry (``records.py`` reads and writes
them; ``record_v2.py`` is the compact format): their own module so the two format
modules do not import each other."""
from __future__ import annotations

from typing import Annotated

import msgspec

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
