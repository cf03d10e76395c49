"""Bounds on what one event may carry, checked by the fold before anything else.

* Every integer field of an event fits in int64. MessagePack carries integers up to
  2**64 - 1 and Python compares any size, but the compiled engine keeps times in int64:
  an expiry past 2**63 would otherwise be EXPIRED on one engine and VALID on the other.
  Refusing such an event at the fold keeps every accepted time representable everywhere.
* An envelope carries at most :data:`MAX_SIGNATURES_PER_ENVELOPE` signatures, so the
  signature work one event can cause is bounded (with the key bounds of
  :mod:`trustlog.core.keyparse`: each verification is at most one RSA-4096 operation
  with a 64-bit exponent).

No I/O; :mod:`trustlog.core.state` applies these.
"""
from __future__ import annotations

from typing import Final

import msgspec

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# A root rotation needs the old and the new root threshold, each of at most
# core.state.MAX_KEYS_PER_ROLE (64) keys.
MAX_SIGNATURES_PER_ENVELOPE: Final = 128


def int_field_out_of_range(event: msgspec.Struct) -> str | None:
    """The name of the first integer field of ``event`` outside int64, or None."""
    for name in event.__struct_fields__:
        v = getattr(event, name)
        if type(v) is int and not INT64_MIN <= v <= INT64_MAX:
            return name
    return None


def check_ref_time(ref_time: int) -> int:
    """A verification's reference time, which must fit in int64 like every log time;
    raises ValueError (bad input) otherwise."""
    if type(ref_time) is not int or not INT64_MIN <= ref_time <= INT64_MAX:
        raise ValueError(f"reference time {ref_time!r} is outside int64, the range of every time the fold accepts")
    return ref_time
