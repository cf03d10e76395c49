"""Record format v2: a :class:`~trustlog.ingest.records.LogRecord` without its nested
MessagePack layers, from which the v1 bytes are re-derived exactly.

A v1 record is ``msgpack(LogRecord{log_time, envelope=msgpack(Envelope{payload=msgpack(
Event), signatures=[{keyid, sig}]}), source})``: three nested maps whose keys, the
64-character hex key ids and the hex digest are most of its bytes. A v2 record is the
marker byte :data:`MARKER` (``0xC1``, which MessagePack never uses, so no v1 record can
start with it) followed by one MessagePack array, positional, no keys::

    [log_time, source, signatures, event]
    source      nil | [topic, partition, offset]
    signatures  [[keyid, sig], ...]   keyid: bin 32 (the 64-char lowercase hex key id
                                      as raw bytes) or str (any other key id)
    event       [repo, version, issued_at, role, tag, digest, size, expires]  an ImageSigned:
                    role nil = "targets", digest bin 32 = "sha256:" + its lowercase hex
                    (else the str)
                | bin: the canonical event payload verbatim (every other kind)

Every record decodes alone (no references to other records). Because the envelope and
the event are canonical MessagePack, the signed payload, the envelope and the v1 record
are re-derived from these fields byte for byte; a record is written as v2 only when that
re-derivation gives exactly its v1 bytes (:func:`encode_v2` answers None otherwise, and
the record stays v1). The Merkle leaves hash the stored bytes, so v1 and v2 records
coexist in one log and old logs open unchanged.

One byte form per format: :func:`decode_v2` re-encodes what it decoded and refuses any
other bytes (as v1 decoding does), so a v2 record has one byte form, and it is the one
the writer produces for its LogRecord. The C reader of the compiled fold
(``ingest/_record_v2.h``) parses the same layout; ``tests/test_record_v2.py`` holds the
two together.

:func:`encode_v2` is the reference writer. With the compiled fold in use the ingest
writer (``records.encode_record``) first asks its C twin, ``_fastfold.encode_v2`` (in
``_record_v2.h``), which writes an ImageSigned's v2 bytes from the v1 bytes
(``encode_record`` about five times less CPU, ``benchmarks/encode_record.py``). It
answers only when the v2 reader gives back the same fields and those fields re-encode
canonically to exactly the v1 bytes, and otherwise leaves the choice to this module;
``tests/test_record_v2.py`` checks the two write the same bytes.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

import msgspec

from trustlog.core.encoding import canonical_bytes
from trustlog.core.errors import EncodingError
from trustlog.core.events import Envelope, Event, ImageSigned, Signature

# records imports this module after defining these (either module may be imported first)
from .record_types import KafkaPosition, LogRecord

MARKER = 0xC1
MARKER_BYTE = b"\xc1"
_TARGETS = "targets"
_SHA256 = "sha256:"
_NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _Source(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    topic: str
    partition: _NonNegative
    offset: _NonNegative


class _Image(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    repo: str
    version: int
    issued_at: int
    role: Union[str, None]  # noqa: UP007  (None: "targets")
    tag: str
    digest: Any  # bytes (32: "sha256:" + hex) or str; msgspec has no bytes | str union, _text checks it
    size: int
    expires: int


class _Body(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    log_time: _NonNegative
    source: Union[_Source, None]  # noqa: UP007
    signatures: list[tuple[Any, bytes]]  # key id: bytes (32: the hex) or str, as digest
    event: Union[_Image, bytes]  # noqa: UP007


_decoder = msgspec.msgpack.Decoder(_Body)
_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_event_decoder = msgspec.msgpack.Decoder(Event)
def _raw_hex32(s: str) -> bytes | None:
    """The 32 bytes whose lowercase hex ``s`` is, or None (then ``s`` is kept as text)."""
    if len(s) != 64:
        return None
    try:
        raw = bytes.fromhex(s)
    except ValueError:
        return None
    return raw if len(raw) == 32 and raw.hex() == s else None  # fromhex also takes capitals and spaces


def _bodies(log_time: int, envelope: bytes, source: KafkaPosition | None, env: Envelope | None = None,
            event: Event | None = None) -> list[_Body]:
    """The v2 forms of a record to try, most compact first: an ImageSigned's fields,
    then the payload verbatim; none when its envelope is not an Envelope. ``env`` and
    ``event``: the envelope and event already decoded, if the caller has them (a wrong
    one only makes the re-derivation fail: the record then stays v1)."""
    if env is None:
        try:
            env = _envelope_decoder.decode(envelope)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return []
    sigs = []
    for s in env.signatures:
        raw = _raw_hex32(s.keyid)
        sigs.append((s.keyid if raw is None else raw, s.sig))
    src = None if source is None else _Source(source.topic, source.partition, source.offset)
    out = []
    ev = event
    if ev is None and env.payload[:1] == b"\x89":  # a 9-entry map: possibly an ImageSigned
        try:
            ev = _event_decoder.decode(env.payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            ev = None
    if type(ev) is ImageSigned:
        d = ev.digest  # type: ignore[union-attr]
        raw = _raw_hex32(d[7:]) if d.startswith(_SHA256) else None
        out.append(_Body(log_time, src, sigs, _Image(
            ev.repo, ev.version, ev.issued_at, None if ev.role == _TARGETS else ev.role,  # type: ignore[union-attr]
            ev.tag, d if raw is None else raw, ev.size, ev.expires)))  # type: ignore[union-attr]
    out.append(_Body(log_time, src, sigs, env.payload))
    return out


def _pack(body: _Body) -> bytes | None:
    try:
        return MARKER_BYTE + _encoder.encode(body)
    except (OverflowError, TypeError, ValueError):
        return None


def _text(v: Any, what: str) -> str:
    """A key id or digest field: its str, or the lowercase hex of its 32 raw bytes."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is not bytes:
        raise EncodingError(f"v2 record: a {what} is bytes or str, not {t.__name__}")
    if len(v) != 32:
        raise EncodingError(f"v2 record: a raw {what} is 32 bytes, got {len(v)}")
    return v.hex()  # type: ignore[no-any-return]


def _expand(body: _Body) -> tuple[bytes, Envelope, Event | None]:
    """The canonical envelope bytes the fields re-derive, the envelope, and the event
    when it was stored as fields (None: the payload is stored verbatim)."""
    sigs = [Signature(_text(k, "key id"), s) for k, s in body.signatures]
    e = body.event
    ev: Event | None = None
    if type(e) is _Image:
        digest = _text(e.digest, "digest")
        if type(e.digest) is bytes:
            digest = _SHA256 + digest
        ev = ImageSigned(e.repo, e.version, e.issued_at, _TARGETS if e.role is None else e.role, e.tag, digest,
                         e.size, e.expires)
        payload = canonical_bytes(ev)
    else:
        payload = e  # type: ignore[assignment]
    env = Envelope(payload, sigs)
    return canonical_bytes(env), env, ev


def _parse(data: bytes | memoryview) -> _Body:
    if data[:1] != MARKER_BYTE:
        raise EncodingError("not a v2 record (it does not start with 0xC1)")
    try:
        return _decoder.decode(memoryview(data)[1:])
    except msgspec.ValidationError as e:
        raise EncodingError(f"v2 record does not match the schema: {e}") from e
    except msgspec.DecodeError as e:
        raise EncodingError(f"v2 record is not valid MessagePack: {e}") from e


def encode_v2(log_time: int, envelope: bytes, source: KafkaPosition | None, env: Envelope | None = None,
              event: Event | None = None) -> bytes | None:
    """The v2 bytes of the record ``LogRecord(log_time, envelope, source)``, or None if
    v2 would not re-derive exactly its v1 bytes (then the record stays v1): each
    candidate form is decoded back (:func:`decode_v2_trusted`'s steps) and must give the
    same log time, source and envelope bytes, which are what the v1 bytes are the
    canonical encoding of."""
    for body in _bodies(log_time, envelope, source, env, event):
        data = _pack(body)
        if data is None:
            continue
        try:
            back = _parse(data)
            env_bytes, _, _ = _expand(back)
        except EncodingError:
            continue
        if env_bytes == envelope and back.log_time == log_time and back.source == body.source:
            return data
    return None


def decode_v2_trusted(data: bytes | memoryview) -> tuple[LogRecord, Envelope, Event]:
    """Decode a v2 record of a trusted log (no canonical-form re-check, as
    ``replay.decode_trusted``): the record, its envelope and its event. Raises
    :class:`EncodingError` for bytes that are not a v2 record."""
    body = _parse(data)
    env_bytes, env, ev = _expand(body)
    if ev is None:
        try:
            ev = _event_decoder.decode(env.payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise EncodingError(str(e)) from e
    s = body.source
    src = None if s is None else KafkaPosition(s.topic, s.partition, s.offset)
    return LogRecord(body.log_time, env_bytes, src), env, ev


def decode_v2(data: bytes | memoryview) -> LogRecord:
    """Decode a v2 record to the :class:`LogRecord` it re-derives, insisting that
    ``data`` is exactly what :func:`encode_v2` writes for it; raises
    :class:`EncodingError` otherwise."""
    body = _parse(data)
    env_bytes, _, _ = _expand(body)
    s = body.source
    src = None if s is None else KafkaPosition(s.topic, s.partition, s.offset)
    rec = LogRecord(body.log_time, env_bytes, src)
    if encode_v2(rec.log_time, rec.envelope, rec.source) != bytes(data):
        raise EncodingError("v2 record is not in canonical form (re-encoding gives different bytes)")
    return rec
