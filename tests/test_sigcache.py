"""The one cached signature check the fold uses (core/sigcache.py CachedSigCheck)."""
from __future__ import annotations

from trustlog.core.keys import SigningKey
from trustlog.core.sigcache import CachedSigCheck, CryptoCache, cache_key


def _counting(results: list[int]):
    calls: list[tuple[int, bytes, bytes, bytes]] = []

    def crypto(items):
        calls.extend(items)
        return [results[0]] * len(items)

    return crypto, calls


def test_a_miss_is_checked_once_and_remembered() -> None:
    key = SigningKey.generate("ed25519").public_key
    cache = CryptoCache()
    seen: list[None] = []
    crypto, calls = _counting([1])
    check = CachedSigCheck(cache, crypto, on_verify=lambda: seen.append(None))
    assert check(key, b"m", b"s") is True
    assert check(key, b"m", b"s") is True
    assert len(calls) == 1 and check.verified == 1 and len(seen) == 1
    assert cache.get(cache_key(key.alg, key.public, b"m", b"s")) is True


def test_only_a_valid_byte_passes() -> None:
    """0 (invalid) and 2 (the check failed) are both a rejection: fail closed."""
    key = SigningKey.generate("ed25519").public_key
    for byte in (0, 2):
        crypto, _ = _counting([byte])
        assert CachedSigCheck(CryptoCache(), crypto)(key, b"m", b"s") is False


def test_a_cached_answer_needs_no_crypto() -> None:
    key = SigningKey.generate("ed25519").public_key
    cache = CryptoCache()
    cache.put(cache_key(key.alg, key.public, b"m", b"s"), False)
    crypto, calls = _counting([1])
    check = CachedSigCheck(cache, crypto)
    assert check(key, b"m", b"s") is False and calls == [] and check.verified == 0
