"""The compiled state: incremental updates, the validity cache, failing closed."""
from __future__ import annotations

import os
import tracemalloc

import pytest

from sim import DIGEST, FAR, NOW, Sim, key
from trustlog.core.evaluate import Request
from trustlog.core.keys import SigningKey
from trustlog.verifier.batch import BatchVerifier, pick_engine
from trustlog.core import tagstore_backend
from trustlog.core.sigcache import CryptoCache, cache_key

from conftest import require_compiled_verifier

compiled = require_compiled_verifier()
from trustlog.verifier._cverify import SigCache  # noqa: E402
from trustlog.verifier._cverify import cache_key as c_cache_key  # noqa: E402

CompiledEvaluator = compiled.CompiledEvaluator
R1, T1, T2 = key("root1"), key("targets1"), key("targets2")
A1, A2 = key("alice1"), key("alice2")


def registry(n_repos: int = 3, tags: int = 5) -> list[Sim]:
    """Repositories sharing one TrustState, each with a delegated signer holding A1."""
    sims = []
    shared = None
    for i in range(n_repos):
        s = Sim(repo=f"registry.example.com/team/app{i}")
        if shared is not None:
            s.state, s.clock, s.offset = shared.state, shared.clock, shared.offset
        assert s.create([R1], [T1, T2]) == "OK"
        assert s.set_role("targets/alice", [A1, A2], [T1], paths=["*"]) == "OK"
        for t in range(tags):
            assert s.sign_tag(f"v{t}", [A1 if t % 2 else A2], role="targets/alice") == "OK"
        sims.append(s)
        shared = s
    return sims


def sync(sims: list[Sim], s: Sim) -> None:
    """Sims share a state; keep their clocks and offsets in step."""
    for o in sims:
        o.clock, o.offset = s.clock, s.offset


def all_requests(state) -> list[Request]:
    return [Request(r.name, t) for r in state.repos.values() for t in r.tags]


def test_cache_key_is_the_python_one() -> None:
    rng = os.urandom
    for n in (0, 1, 31, 300):
        items = (1, rng(32), rng(n), rng(64))
        assert c_cache_key(*items) == cache_key(*items)
    assert c_cache_key(3, b"", b"", b"") == cache_key(3, b"", b"", b"")


def test_sigcache_has_cryptocache_interface() -> None:
    for cache in (CryptoCache(), SigCache()):
        k1, k2 = cache_key(1, b"k", b"m", b"s"), cache_key(1, b"k", b"m", b"t")
        assert k1 not in cache and len(cache) == 0 and cache.get(k1) is None
        cache.put(k1, True)
        cache.put(k2, False)
        assert k1 in cache and k2 in cache and len(cache) == 2
        assert cache.get(k1) is True and cache.get(k2) is False
        assert (cache.hits, cache.misses) == (2, 1)
    with pytest.raises(ValueError):
        SigCache().get(b"short")


def test_sigcache_under_300_bytes_per_signature() -> None:
    n = 300_000
    keys = [os.urandom(16) for _ in range(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache = SigCache()
    for i, k in enumerate(keys):
        cache.put(k, i % 7 != 0)
    per = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    assert len(cache) == n and per <= 300 and cache.nbytes / n <= 64, per
    assert all(cache.get(k) is (i % 7 != 0) for i, k in enumerate(keys[:1000]))


def test_engine_choice() -> None:
    class PyCrypto:
        backend = "py"

        def __call__(self, items):  # pragma: no cover - never called
            raise AssertionError

    assert pick_engine(crypto=PyCrypto()) == "py"
    assert pick_engine("py") == "py"
    with pytest.raises(ValueError):
        pick_engine("fortran")
    s = registry(1, 1)[0]
    assert BatchVerifier(s.state, ref_time=NOW).engine in ("c", "py")


def test_compromise_report_recompiles_one_repository_and_verifies_nothing() -> None:
    sims = registry(4, 6)
    s0 = sims[0]
    state = s0.state
    v = BatchVerifier(state, ref_time=NOW, engine="c")
    ct = v._compiled.ct
    first = v.sweep()
    assert first.counts == {"VALID": 24} and ct.verified == 24
    # A1 reported compromised in app2 since before everything: its A1 tags fall
    s2 = sims[2]
    sync(sims, sims[-1])
    assert s2.compromise(A1, 0, [T1]) == "OK"
    recompiled = ct.recompiled
    swept = v.sweep()
    assert ct.recompiled == recompiled + 1 and ct.verified == 24      # trust re-evaluated, no crypto
    assert swept.counts == {"VALID": 21, "KEY_COMPROMISED": 3}
    ref = BatchVerifier(state, ref_time=NOW, engine="py").verify_all(all_requests(state))
    assert v.verify_all(all_requests(state)) == ref
    assert sorted(swept, key=lambda x: (x.repo, x.tag)) == sorted(ref, key=lambda x: (x.repo, x.tag))


def test_new_tags_and_removals_are_deltas() -> None:
    sims = registry(3, 4)
    state = sims[0].state
    v = BatchVerifier(state, ref_time=NOW, engine="c")
    v.sweep()
    ct = v._compiled.ct
    s1 = sims[1]
    sync(sims, sims[-1])
    assert s1.sign_tag("v0", [A1], role="targets/alice", digest="sha256:" + "cd" * 32) == "OK"   # re-sign
    assert s1.sign_tag("new", [A2], role="targets/alice") == "OK"
    assert s1.delete_tag("v1", [T1]) == "OK"
    verified, recompiled = ct.verified, ct.recompiled
    assert v.sweep().counts == {"VALID": 12}
    assert ct.recompiled == recompiled + 1 and ct.verified == verified + 2    # only the two new signatures
    assert s1.remove_role("targets/alice", [T1]) == "OK"
    assert v.sweep().counts == {"VALID": 8, "ROLE_REMOVED": 4}
    assert ct.verified == verified + 2
    got = v.verify_all([Request(s1.repo, "v1"), Request(s1.repo, "v0", DIGEST), Request(s1.repo, "new")])
    assert [x.code for x in got] == ["TAG_DELETED", "DIGEST_MISMATCH", "ROLE_REMOVED"]


def test_a_change_below_the_highest_version_is_a_delta() -> None:
    """Versions are per scope (docs/SECURITY.md): a tag re-pointed at a version below
    another tag's still moves the repository's own version, so the compiled state is
    recompiled and no stale digest is served."""
    s = Sim()
    assert s.create([R1], [T1]) == "OK"
    assert s.sign_tag("v1", [T1], version=1_000_000) == "OK"
    assert s.sign_tag("v2", [T1], version=1) == "OK"
    v = BatchVerifier(s.state, ref_time=NOW, engine="c")
    assert v.verify_all([Request(s.repo, "v2")])[0].digest == DIGEST
    assert s.sign_tag("v2", [T1], version=2, digest="sha256:" + "cd" * 32) == "OK"
    assert v.verify_all([Request(s.repo, "v2")])[0].digest == "sha256:" + "cd" * 32


def test_compaction_keeps_verdicts() -> None:
    sims = registry(2, 3)
    state = sims[0].state
    ev = CompiledEvaluator(state, compact_min=0)
    ev.sweep(NOW)
    s = sims[0]
    for i in range(6):
        sync(sims, sims[-1] if i == 0 else s)
        assert s.sign_tag("v0", [A1], role="targets/alice", digest="sha256:" + f"{i:064x}") == "OK"
        ev.sweep(NOW)
    assert ev.ct.compactions >= 1 and ev.ct.dead_rows <= ev.ct.live_rows
    assert ev.sweep(NOW).counts == {"VALID": 6}
    ref = BatchVerifier(state, ref_time=NOW, engine="py").verify_all(all_requests(state))
    assert BatchVerifier(state, ref_time=NOW, engine="c").verify_all(all_requests(state)) == ref


def test_shared_sigcache_makes_a_new_verifier_warm() -> None:
    state = registry(2, 5)[0].state
    cache = SigCache()
    BatchVerifier(state, ref_time=NOW, engine="c", cache=cache).sweep()
    assert len(cache) == 10
    v2 = BatchVerifier(state, ref_time=NOW, engine="c", cache=cache)
    assert v2.sweep().counts == {"VALID": 10}
    assert v2._compiled.ct.verified == 0 and v2._compiled.ct.cache_hits == 10


def test_python_cryptocache_is_consulted_and_filled() -> None:
    state = registry(1, 3)[0].state
    pyc = CryptoCache()
    v = BatchVerifier(state, ref_time=NOW, engine="c", cache=pyc)
    assert v.sweep().counts == {"VALID": 3} and len(pyc) == 3
    v2 = BatchVerifier(state, ref_time=NOW, engine="c", cache=pyc)
    v2.sweep()
    assert v2._compiled.ct.verified == 0


def test_external_crypto_function_decides_validity() -> None:
    state = registry(1, 3)[0].state
    calls = []

    def says_no(items):
        calls.append(len(items))
        return [0] * len(items)

    v = BatchVerifier(state, ref_time=NOW, engine="c", crypto=says_no)
    assert v.sweep().counts == {"BAD_SIGNATURE": 3} and calls == [3]


def test_sweep_must_be_read_before_the_state_changes() -> None:
    sims = registry(1, 2)
    v = BatchVerifier(sims[0].state, ref_time=NOW, engine="c")
    sw = v.sweep()
    assert sims[0].sign_tag("more", [T1]) == "OK"
    v.sweep()
    with pytest.raises(RuntimeError):
        list(sw)


# -- failing closed ----------------------------------------------------------------------

def _codes(state) -> list[str]:
    return [x.code for x in BatchVerifier(state, ref_time=NOW, engine="c").verify_all(all_requests(state))]


def test_malformed_entries_are_errors_never_valid() -> None:
    s = registry(1, 4)[0]
    repo = s.state.repos[s.repo]
    e = list(repo.tags.values())
    e[0].grant_id = 99                                   # no such grant
    e[1].signatures = (("nope", e[1].signatures[0][1]),)  # a key the repository never had
    e[2].signatures = ((e[2].signatures[0][0], "not bytes"),)
    for x in e[:3]:   # entries read from a compact store are copies: store them back
        repo.tags[x.tag] = x
    assert _codes(s.state) == ["ERROR", "ERROR", "ERROR", "VALID"]
    # unknown key type on a signing key
    kid = e[3].signatures[0][0]
    repo.keys[kid] = type(repo.keys[kid])("dsa", repo.keys[kid].public)
    assert _codes(s.state)[3] == "ERROR"


def test_broken_repository_is_all_errors() -> None:
    sims = registry(2, 2)
    state = sims[0].state
    v = BatchVerifier(state, ref_time=NOW, engine="c")
    assert v.sweep().counts == {"VALID": 4}
    broken = state.repos[sims[0].repo]
    broken.grants[1].threshold = "two"                  # not an int
    broken.version += 1
    got = v.verify_all(all_requests(state))
    assert [x.code for x in got] == ["ERROR", "ERROR", "VALID", "VALID"]
    assert "threshold" in got[0].reason or "TypeError" in got[0].reason or "int" in got[0].reason


def test_crypto_failure_is_an_error_verdict() -> None:
    state = registry(1, 2)[0].state

    def explodes(items):
        raise RuntimeError("HSM unplugged")

    got = BatchVerifier(state, ref_time=NOW, engine="c", crypto=explodes).verify_all(all_requests(state))
    assert {x.code for x in got} == {"ERROR"} and "HSM unplugged" in got[0].reason


def test_removed_repository_is_dropped() -> None:
    sims = registry(2, 2)
    state = sims[0].state
    v = BatchVerifier(state, ref_time=NOW, engine="c")
    assert v.sweep().total == 4
    del state.repos[sims[0].repo]
    state.version += 1
    assert v.sweep().counts == {"VALID": 2}
    assert [x.code for x in v.verify_all([Request(sims[0].repo, "v0")])] == ["UNKNOWN_REPOSITORY"]


def test_rsa_and_ecdsa_signers_through_the_compiled_crypto() -> None:
    s = Sim()
    assert s.create([R1], [T1]) == "OK"
    p = key("p256-c1", "ecdsa-p256")
    pd = SigningKey("ecdsa-p256-der", p.private)
    rk = key("rsa-c1", "rsa-pss-sha256")
    assert s.set_role("targets/ci", [p, pd, rk], [T1], paths=["*"], threshold=2) == "OK"
    assert s.sign_tag("a", [p, rk], role="targets/ci") == "OK"
    assert s.sign_tag("b", [pd, rk], role="targets/ci", expires=FAR) == "OK"
    ref = BatchVerifier(s.state, ref_time=NOW, engine="py").verify_all(all_requests(s.state))
    assert BatchVerifier(s.state, ref_time=NOW, engine="c").verify_all(all_requests(s.state)) == ref
    assert [x.code for x in ref] == ["VALID", "VALID"]


def test_row_index_survives_churn() -> None:
    """Many tags re-signed and deleted over rounds: the row index (TagEntry address ->
    row), carried-over validity bytes and compaction stay consistent with the state."""
    import random

    rng = random.Random(7)
    s = Sim()
    assert s.create([R1], [T1]) == "OK"
    for i in range(600):
        assert s.sign_tag(f"t{i}", [T1], digest="sha256:" + f"{i:064x}") == "OK"
    ev = CompiledEvaluator(s.state, compact_min=64)
    py = BatchVerifier(s.state, ref_time=NOW, engine="py")
    for round_ in range(6):
        for i in rng.sample(range(600), 150):
            tag = f"t{i}"
            if tag in s.state.repos[s.repo].tags and rng.random() < 0.3:
                assert s.delete_tag(tag, [T1]) == "OK"
            else:
                assert s.sign_tag(tag, [T1], digest="sha256:" + f"{round_:032x}{i:032x}") == "OK"
        repo = s.state.repos[s.repo]
        items = [(repo, e) for e in repo.tags.values()]
        got = ev.evaluate(items, NOW)
        assert [c.value for c, _, _ in got] == ["VALID"] * len(items)
        assert ev.sweep(NOW).counts == {"VALID": len(items)}
        assert BatchVerifier(s.state, ref_time=NOW, engine="c").verify_all(all_requests(s.state)) == \
            py.verify_all(all_requests(s.state))
    assert ev.ct.compactions >= 1 and ev.ct.live_rows == len(s.state.repos[s.repo].tags)


def test_sigcache_grows_by_half_and_keeps_every_verdict() -> None:
    """The table takes any size (a slot is the hash modulo it) and grows by half before
    it passes 80 % full, so a cached signature costs 21 to 32 bytes once it has grown;
    every verdict survives the growths, and a key never put is absent."""
    assert SigCache(5000).capacity == 5000 and SigCache(10).capacity == 1024
    cache = SigCache()
    keys = [os.urandom(16) for _ in range(60_000)]
    sizes = [cache.capacity]
    for i, k in enumerate(keys):
        cache.put(k, i % 3 != 0)
        if cache.capacity != sizes[-1]:
            sizes.append(cache.capacity)
        assert len(cache) * 5 <= cache.capacity * 4
    assert len(sizes) > 5 and all(b == a + (a >> 1) for a, b in zip(sizes, sizes[1:]))
    assert any(c & (c - 1) for c in sizes)            # not only powers of two
    assert 21 <= cache.nbytes / len(cache) <= 32
    assert len(cache) == len(keys) and all(cache.get(k) is (i % 3 != 0) for i, k in enumerate(keys))
    assert all(cache.get(os.urandom(16)) is None for _ in range(1000))


def test_a_store_changed_since_it_was_compiled_is_never_read() -> None:
    """A compact store's rows are read in place (their log time and expiry are not copied
    into the compiled rows): a store changed since its repository was compiled may have
    moved them, so its tags are ERROR until the next refresh, and the others unaffected.
    The stores are compact ones whichever backend the run selects (TRUSTLOG_PUREPYTHON=1
    selects dicts, whose compiled rows hold copies and never go stale)."""
    with tagstore_backend.forced("compact"):
        sims = registry(2, 3)
    assert all(tagstore_backend.is_compact(r) for r in sims[0].state.repos.values())
    state = sims[0].state
    ev = CompiledEvaluator(state)
    ct = ev.ct
    assert ev.sweep(NOW).counts == {"VALID": 6}
    rows_of: dict[str, list[int]] = {}
    for r in ct.live_row_ids():
        rows_of.setdefault(ct.row_info(r)[0], []).append(r)
    changed = sims[0]
    sync(sims, sims[-1])
    for t in range(40):     # enough rows for the store to move them
        assert changed.sign_tag(f"more{t}", [A1], role="targets/alice") == "OK"
    codes, details, _ = ct.sweep(NOW)        # no refresh: the compiled rows are stale
    assert {compiled.CODES[codes[r]] for r in rows_of[changed.repo]} == {compiled.Code.ERROR}
    assert {compiled.CODES[codes[r]] for r in rows_of[sims[1].repo]} == {compiled.Code.VALID}
    rows = ct.rows_for_items([(state.repos[sims[1].repo], e) for e in state.repos[sims[1].repo].tags.values()])
    assert {compiled.CODES[b] for b in ct.evaluate(rows, NOW)[0]} == {compiled.Code.VALID}
    assert ev.sweep(NOW).counts == {"VALID": 46}      # refreshed: compiled again, read again
