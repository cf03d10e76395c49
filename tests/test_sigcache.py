"""The one cached signature check the fold uses (core/sigcache.py CachedSigCheck)."""
from __future__ import annotations

import pytest

from conftest import require_compiled_verifier
from sim import FAR, NOW, Sim, key
from trustlog.core.evaluate import Request
from trustlog.core.events import RepoCreated, envelope_to_json, sign_event
from trustlog.core.keys import SigningKey
from trustlog.core.sigcache import CachedSigCheck, CryptoCache, cache_key, remember
from trustlog.ingest.pipeline import TrustLog
from trustlog.verifier.batch import BatchVerifier


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


# -- a failed check (byte 2) is a rejection now, never a cached verdict ----------------


class Flaky:
    """A batch check that answers ``byte`` for every item until ``fail`` is cleared,
    then the real check of ``backend``; counts the items it was asked about."""

    def __init__(self, real, byte: int = 2) -> None:
        self.real, self.byte, self.fail, self.asked = real, byte, True, 0

    def __call__(self, items):
        self.asked += len(items)
        return [self.byte] * len(items) if self.fail else self.real(items)


def test_a_failed_check_is_not_remembered_and_is_retried() -> None:
    """Byte 2: rejected now, nothing cached, asked again next time (then remembered)."""
    key = SigningKey.generate("ed25519").public_key
    cache = CryptoCache()
    crypto = Flaky(lambda items: [1] * len(items))
    check = CachedSigCheck(cache, crypto)
    assert check(key, b"m", b"s") is False and len(cache) == 0 and check.failed == 1
    assert check(key, b"m", b"s") is False and crypto.asked == 2 and len(cache) == 0
    crypto.fail = False
    assert check(key, b"m", b"s") is True and crypto.asked == 3 and check.failed == 2
    assert check(key, b"m", b"s") is True and crypto.asked == 3 and len(cache) == 1


@pytest.mark.parametrize("kind", ["py", "c"])
def test_remember_stores_verdicts_only(kind: str) -> None:
    """The batch pre-checks' one way into a cache (Python CryptoCache or compiled SigCache)."""
    if kind == "c":
        require_compiled_verifier()
        from trustlog.verifier._cverify import SigCache
        cache = SigCache()
    else:
        cache = CryptoCache()
    cks = [cache_key(1, b"k", b"m", bytes([i])) for i in range(4)]
    assert remember(cache, cks, [1, 0, 2, 7]) == 2
    assert cache.get(cks[0]) is True and cache.get(cks[1]) is False
    assert cks[2] not in cache and cks[3] not in cache and len(cache) == 2


def _signed_registry():
    s = Sim(repo="registry.example.com/team/flaky")
    r, t = key("flaky-root"), key("flaky-targets")
    assert s.create([r], [t]) == "OK"
    assert s.sign_tag("v1", [t]) == "OK"
    return s


@pytest.mark.parametrize("engine", ["py", "c"])
def test_verifier_engines_retry_a_failed_check(engine: str, crypto) -> None:
    """Both verifier engines, over both crypto backends: a failed check gives the same
    rejecting verdict, is not cached, and the next run checks the signature again."""
    if engine == "c":
        require_compiled_verifier()
    s = _signed_registry()
    flaky = Flaky(crypto)
    v = BatchVerifier(s.state, ref_time=NOW, crypto=flaky, engine=engine)
    req = [Request(s.repo, "v1")]
    assert v.verify_all(req)[0].code == "BAD_SIGNATURE" and flaky.asked == 1
    assert v.verify_all(req)[0].code == "BAD_SIGNATURE" and flaky.asked == 2
    flaky.fail = False
    assert v.verify_all(req)[0].code == "VALID" and flaky.asked == 3
    assert v.verify_all(req)[0].code == "VALID" and flaky.asked == 3  # now a cached verdict


def test_ingest_precheck_does_not_cache_a_failed_check(tmp_path, crypto) -> None:
    """TrustLog's batch pre-check and fold: a failed check rejects the event with a
    reason and leaves no verdict behind; the same signatures verify once the check works."""
    repo = "registry.example.com/team/flaky"
    r, t = key("flaky-root"), key("flaky-targets")
    created = sign_event(RepoCreated(repo, 1, 0, [r.public_key], 1, [t.public_key], 1, FAR), [r])
    flaky = Flaky(crypto)
    with TrustLog(tmp_path, crypto=flaky) as log:
        res = log.ingest([(created.to_bytes(), None)])
        assert (res.accepted, res.rejected) == (0, 1) and res.last_reject[0] == "BAD_SIGNATURE"
        assert len(log.cache) == 0
        assert flaky.asked == 2  # the batch pre-check, then the fold asked again (not cached)
        flaky.fail = False
        # the same envelope again, on the JSON wire (other raw bytes, so not answered from
        # the rejects log): its signature is checked again, verifies and is accepted
        res = log.ingest([(envelope_to_json(created), None)])
        assert (res.accepted, res.rejected) == (1, 0) and flaky.asked == 3 and len(log.cache) == 1
