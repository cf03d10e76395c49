"""Crypto-validity cache keyed by a hash of (algorithm, key, message, signature).

Whether a signature verifies never changes, so after a state change (a revoked signer,
a rotation, a compromise report) a re-verification only re-evaluates trust status.
A 128-bit BLAKE2b key makes an accidental collision negligible; an attacker cannot
choose a colliding entry without breaking BLAKE2b.
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, KeysView, Sequence
from typing import Protocol

from .crypto_hook import CryptoFn
from .keys import PublicKey

_LEN = struct.Struct(">BIII")


def cache_key(alg: int, public: bytes, message: bytes, signature: bytes) -> bytes:
    h = hashlib.blake2b(_LEN.pack(alg, len(public), len(message), len(signature)), digest_size=16)
    h.update(public)
    h.update(message)
    h.update(signature)
    return h.digest()


VALID = 1
INVALID = 0
# Any other byte from a check (2: the check itself failed) is no verdict: it rejects
# now and is never remembered, so the signature is checked again next time (as the
# compiled verifier does: verifier/_compiled_trust.pxi, step 5).


class VerdictStore(Protocol):
    """Where verdicts go: :class:`CryptoCache`, or the compiled ``SigCache``."""

    def put(self, key: bytes, valid: bool) -> None: ...


def remember(cache: VerdictStore, cks: Sequence[bytes], results: Sequence[int]) -> int:
    """Store the verdicts of one batch check (``results[i]`` for ``cks[i]``) in
    ``cache`` (a :class:`CryptoCache` or the compiled ``SigCache``); a failed check is
    not stored. Returns how many failed."""
    failed = 0
    for ck, r in zip(cks, results, strict=True):
        if r in (VALID, INVALID):
            cache.put(ck, r == VALID)
        else:
            failed += 1
    return failed


class CryptoCache:
    """Validity by content hash. Only two values are stored: valid and invalid (a
    check that failed is not a verdict and is never stored: see :func:`remember`)."""

    __slots__ = ("_d", "hits", "misses")

    def __init__(self) -> None:
        self._d: dict[bytes, bool] = {}
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: bytes) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def known(self) -> KeysView[bytes]:
        """The cache keys whose validity is known, as a live view: ``ck in view`` without
        a Python call per lookup (the ingest pre-check asks it once per signature)."""
        return self._d.keys()

    def get(self, key: bytes) -> bool | None:
        v = self._d.get(key)
        if v is None:
            self.misses += 1
        else:
            self.hits += 1
        return v

    def put(self, key: bytes, valid: bool) -> None:
        self._d[key] = valid


class CachedSigCheck:
    """The fold's signature check (``sigcheck=`` of ``TrustState.apply``) over a cache.

    A signature whose validity ``cache`` knows is answered from it; any other is checked
    by ``crypto`` (the injected batch check, one item) and the answer remembered; a
    check that failed (byte 2) is a rejection now and is not remembered, so it is
    made again the next time the signature is asked about (``failed`` counts them). Callers
    pre-verify in batches (``ingest/precheck.py``), so this path mostly hits.
    ``on_verify``, if given, is called once for every check ``crypto`` made (``log
    verify`` counts them); ``verified`` counts them too.
    """

    __slots__ = ("cache", "crypto", "failed", "on_verify", "verified")

    def __init__(self, cache: CryptoCache, crypto: CryptoFn, on_verify: Callable[[], None] | None = None) -> None:
        self.cache = cache
        self.crypto = crypto
        self.on_verify = on_verify
        self.verified = 0
        self.failed = 0

    def __call__(self, key: PublicKey, message: bytes, signature: bytes) -> bool:
        ck = cache_key(key.alg, key.public, message, signature)
        v = self.cache.get(ck)
        if v is None:
            r = self.crypto([(key.alg, key.public, message, signature)])[0]
            v = r == VALID
            if v or r == INVALID:
                self.cache.put(ck, v)
            else:
                self.failed += 1
            self.verified += 1
            if self.on_verify is not None:
                self.on_verify()
        return v
