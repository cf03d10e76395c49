"""Pure-Python batch signature check: the reference twin of ``_cverify``.

Both modules expose the same ``verify_batch`` over the same packed layout (see
:func:`pack_batch`), and must give the same byte for every item:

* ``1`` (:data:`VALID`) — the signature verifies,
* ``0`` (:data:`INVALID`) — it does not, or the key, signature or algorithm code is
  malformed or unknown,
* ``2`` (:data:`ERROR`) — the check itself failed (an internal library error); callers
  treat it as a rejection.

Each item is checked by :func:`trustlog.core.keys.crypto_valid`, the reference: keys
only in their type's one accepted encoding, with the bounds of
:mod:`trustlog.core.keyparse`, which the compiled module applies too
(``scripts/fuzz_crypto_differential.py`` holds the two together).
"""
from __future__ import annotations

import os
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import nacl.exceptions
from cryptography.exceptions import InternalError, UnsupportedAlgorithm

from trustlog.core.keys import crypto_valid

INVALID: Final = 0
VALID: Final = 1
ERROR: Final = 2

Buffer = bytes | bytearray | memoryview

# Below this many items per worker a thread pool costs more than it saves.
_MIN_ITEMS_PER_THREAD: Final = 64

# What crypto_valid may raise on a library failure it does not itself classify.
_INTERNAL_ERRORS: Final = (InternalError, UnsupportedAlgorithm, nacl.exceptions.CryptoError)


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """n signatures laid out in contiguous buffers, as both backends take them.

    Item ``i`` is ``(algs[i], keys[key_offsets[i]:key_offsets[i+1]], ...)``; every
    offsets array has ``n + 1`` entries (uint64).
    """

    algs: bytes
    keys: bytes
    key_offsets: array
    msgs: bytes
    msg_offsets: array
    sigs: bytes
    sig_offsets: array

    def __len__(self) -> int:
        return len(self.algs)

    def args(self) -> tuple[bytes, bytes, array, bytes, array, bytes, array]:
        """The positional arguments of ``verify_batch`` (before ``nthreads``)."""
        return (self.algs, self.keys, self.key_offsets, self.msgs, self.msg_offsets, self.sigs, self.sig_offsets)


def _pack(parts: Sequence[bytes]) -> tuple[bytes, array]:
    offsets = array("Q", [0])
    total = 0
    for p in parts:
        total += len(p)
        offsets.append(total)
    return b"".join(parts), offsets


def pack_batch(items: Sequence[tuple[int, bytes, bytes, bytes]]) -> PackedBatch:
    """Pack ``(alg, public_key, message, signature)`` tuples for ``verify_batch``."""
    algs = bytearray(len(items))
    for i, item in enumerate(items):
        alg = item[0]
        if not 0 <= alg <= 255:
            raise ValueError(f"item {i}: algorithm code {alg} does not fit in a byte")
        algs[i] = alg
    keys, key_offsets = _pack([bytes(it[1]) for it in items])
    msgs, msg_offsets = _pack([bytes(it[2]) for it in items])
    sigs, sig_offsets = _pack([bytes(it[3]) for it in items])
    return PackedBatch(bytes(algs), keys, key_offsets, msgs, msg_offsets, sigs, sig_offsets)


def default_threads() -> int:
    """Worker threads for ``nthreads=0``: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def verify_one(alg: int, key: bytes, msg: bytes, sig: bytes) -> int:
    """Verdict byte for one item, from the reference."""
    try:
        return VALID if crypto_valid(alg, key, msg, sig) else INVALID
    except _INTERNAL_ERRORS:
        return ERROR


def _offsets(name: str, buf: Buffer, n: int) -> memoryview:
    mv = memoryview(buf)
    if mv.ndim != 1 or mv.itemsize != 8 or mv.format not in ("Q", "L", "=Q", "<Q", "@Q", "@L"):
        raise ValueError(f"{name} must be a 1-D uint64 buffer (array('Q')), got format {mv.format!r}")
    if len(mv) != n + 1:
        raise ValueError(f"{name} must have n + 1 = {n + 1} entries, got {len(mv)}")
    return mv


def check_layout(n: int, offsets: memoryview, data_len: int, name: str) -> None:
    """The checks both backends make before touching any item (same messages)."""
    prev = offsets[0]
    for i in range(1, n + 1):
        cur = offsets[i]
        if cur < prev:
            raise ValueError(f"{name} must be non-decreasing (entry {i})")
        prev = cur
    if prev > data_len:
        raise ValueError(f"{name} point past the end of their buffer ({prev} > {data_len})")


def verify_batch(
    algs: Buffer,
    keys: Buffer,
    key_offsets: Buffer,
    msgs: Buffer,
    msg_offsets: Buffer,
    sigs: Buffer,
    sig_offsets: Buffer,
    nthreads: int = 0,
) -> bytearray:
    """Check n signatures; return n verdict bytes (1 valid, 0 invalid, 2 error)."""
    alg_mv = memoryview(algs)
    if alg_mv.ndim != 1 or alg_mv.itemsize != 1:
        raise ValueError("algs must be a 1-D buffer of uint8")
    n = len(alg_mv)
    if nthreads < 0:
        raise ValueError(f"nthreads must be >= 0, got {nthreads}")
    ko = _offsets("key_offsets", key_offsets, n)
    mo = _offsets("msg_offsets", msg_offsets, n)
    so = _offsets("sig_offsets", sig_offsets, n)
    kb, mb, sb = bytes(keys), bytes(msgs), bytes(sigs)
    check_layout(n, ko, len(kb), "key_offsets")
    check_layout(n, mo, len(mb), "msg_offsets")
    check_layout(n, so, len(sb), "sig_offsets")
    a = bytes(alg_mv.cast("B")) if alg_mv.format != "B" else bytes(alg_mv)
    out = bytearray(n)

    def run(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            out[i] = verify_one(a[i], kb[ko[i]:ko[i + 1]], mb[mo[i]:mo[i + 1]], sb[so[i]:so[i + 1]])

    workers = min(nthreads or default_threads(), max(1, n // _MIN_ITEMS_PER_THREAD))
    if workers <= 1:
        run(0, n)
        return out
    # PyNaCl (cffi) releases the GIL during libsodium calls, so Ed25519 spreads over
    # cores; each worker writes a disjoint slice of ``out``.
    step = -(-n // workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(run, lo, min(lo + step, n)) for lo in range(0, n, step)]:
            f.result()
    return out
