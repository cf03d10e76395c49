"""Canonical encoding: the bytes that are signed are the bytes that are stored.

Every signed object is a msgspec Struct encoded as MessagePack with deterministic map
ordering. Decoding re-encodes and compares, so two different byte strings can never
decode to the same object (no malleability in what is signed).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from .errors import EncodingError

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def canonical_bytes(obj: Any) -> bytes:
    """The canonical MessagePack encoding of ``obj``."""
    return _encoder.encode(obj)


def decode_canonical(data: bytes, typ: type[T]) -> T:
    """Decode ``data`` as ``typ`` and insist that it is in canonical form."""
    dec = _decoders.get(typ)
    if dec is None:
        dec = _decoders[typ] = msgspec.msgpack.Decoder(typ)
    obj: T = _decode_with(dec, data)
    return obj


def canonical_decoder(typ: Any) -> Callable[[bytes], Any]:
    """``decode_canonical(data, typ)`` with the decoder looked up once (a hot path: a
    ``typing`` union such as ``Event`` costs a hash of the union per lookup)."""
    dec = msgspec.msgpack.Decoder(typ)
    return lambda data: _decode_with(dec, data)


def _decode_with(dec: msgspec.msgpack.Decoder[Any], data: bytes) -> Any:
    try:
        obj = dec.decode(data)
    except msgspec.ValidationError as e:
        raise EncodingError(f"does not match the schema: {e}") from e
    except msgspec.DecodeError as e:
        raise EncodingError(f"not valid MessagePack: {e}") from e
    if _encoder.encode(obj) != bytes(data):
        raise EncodingError("not in canonical form (re-encoding gives different bytes)")
    return obj
