"""Crypto-validity cache keyed by a hash of (algorithm, key, message, signature).

Whether a signature verifies never changes, so after a state change (a revoked signer,
a rotation, a compromise report) a re-verification only re-evaluates trust status.
A 128-bit BLAKE2b key makes an accidental collision negligible; an attacker cannot
choose a colliding entry without breaking BLAKE2b.
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from .crypto_hook import CryptoFn
from .keys import PublicKey

_LEN = struct.Struct(">BIII")


def cache_key(alg: int, public: bytes, message: bytes, signature: bytes) -> bytes:
    h = hashlib.blake2b(_LEN.pack(alg, len(public), len(message), len(signature)), digest_size=16)
    h.update(public)
    h.update(message)
    h.update(signature)
    return h.digest()


class CryptoCache:
    """Validity by content hash. Only two values are stored: valid and invalid."""

    __slots__ = ("_d", "hits", "misses")

    def __init__(self) -> None:
        self._d: dict[bytes, bool] = {}
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: bytes) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

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
    by ``crypto`` (the injected batch check, one item) and the answer remembered. Callers
    pre-verify in batches (``ingest/precheck.py``), so this path mostly hits.
    ``on_verify``, if given, is called once for every check ``crypto`` made (``log
    verify`` counts them); ``verified`` counts them too.
    """

    __slots__ = ("cache", "crypto", "on_verify", "verified")

    def __init__(self, cache: CryptoCache, crypto: CryptoFn, on_verify: Callable[[], None] | None = None) -> None:
        self.cache = cache
        self.crypto = crypto
        self.on_verify = on_verify
        self.verified = 0

    def __call__(self, key: PublicKey, message: bytes, signature: bytes) -> bool:
        ck = cache_key(key.alg, key.public, message, signature)
        v = self.cache.get(ck)
        if v is None:
            v = self.crypto([(key.alg, key.public, message, signature)])[0] == 1
            self.cache.put(ck, v)
            self.verified += 1
            if self.on_verify is not None:
                self.on_verify()
        return v
