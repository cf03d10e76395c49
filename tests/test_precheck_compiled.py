"""The compiled signature loop of the ingest pre-check (``_fastfold.plan_signatures``,
ingest/_precheck.pxi) and its pure-Python twin (``precheck.plan_signatures``) plan the
same checks: the same cache keys, the same ``(alg, key, message, signature)`` items in
the same order, the same per-event cache keys, over hypothesis-drawn batches of
envelopes whose signatures name known keys, keys an earlier event introduced, unknown
key ids, keys of an unknown type, a key twice (with the same and with another
signature), with some signatures already cached and envelopes over the limit."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st

from conftest import require_compiled_fold
from sim import DIGEST, FAR, key
from trustlog.core.events import (
    Envelope, ImageSigned, RepoCreated, RoleKeysSet, Signature, decode_event, sign_event,
)
from trustlog.core.keys import ALG_BY_KEYTYPE, PublicKey
from trustlog.core.sigcache import cache_key
from trustlog.core.state import TrustState
from trustlog.ingest import fold_backend, precheck

KNOWN = [key("pc-known-a").public_key, key("pc-known-b").public_key, key("pc-p256", "ecdsa-p256").public_key]
INTRODUCED = [key("pc-new").public_key]
ODD = PublicKey("not-a-key-type", b"\x01" * 32)
UNKNOWN_ID = "f" * 64
KEYIDS = [k.keyid for k in KNOWN + INTRODUCED] + [ODD.keyid, UNKNOWN_ID]
REPOS = ["registry.example.com/a", "registry.example.com/b"]   # b: not in the state


@dataclass
class _Repo:
    keys: dict[str, PublicKey] = field(default_factory=dict)


def _repos() -> dict[str, _Repo]:
    return {REPOS[0]: _Repo({k.keyid: k for k in KNOWN} | {ODD.keyid: ODD})}


def _compiled():
    return require_compiled_fold()   # loaded even under TRUSTLOG_PUREPYTHON=1: the twins are compared


sig_st = st.tuples(st.sampled_from(KEYIDS), st.sampled_from([b"\x00" * 64, b"\x01" * 64, b"\x02" * 71]))
event_st = st.none() | st.builds(
    lambda repo, version, tag: ImageSigned(repo, version, 0, "targets", tag, DIGEST, 1, FAR),
    st.sampled_from(REPOS), st.integers(1, 3), st.sampled_from(["v1", "v2"]))
pair_st = st.tuples(st.lists(sig_st, max_size=5), st.sampled_from([b"m1", b"message two", b""]), event_st)


def _batch(pairs) -> list[tuple[Envelope, ImageSigned | None]]:
    return [(Envelope(payload, [Signature(kid, sig) for kid, sig in sigs]), ev) for sigs, payload, ev in pairs]


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(pair_st, max_size=8), cached_picks=st.sets(st.integers(0, 40), max_size=6),
       want_cks=st.booleans(), limit=st.integers(0, 6))
def test_the_compiled_signature_loop_plans_what_the_python_one_plans(pairs, cached_picks, want_cks, limit) -> None:
    compiled = _compiled()
    decoded = _batch(pairs)
    # some of the signatures the batch will ask about are already known to the cache
    every = [cache_key(ALG_BY_KEYTYPE[k.keytype], k.public, env.payload, s.sig)
             for env, _ in decoded for s in env.signatures for k in KNOWN + INTRODUCED if k.keyid == s.keyid]
    cached = {every[i % len(every)] for i in cached_picks} if every else set()
    introduced = {k.keyid: k for k in INTRODUCED}
    out = []
    for loop in (precheck.plan_signatures, compiled.plan_signatures):
        sig_cks: list | None = [] if want_cks else None
        cks, items = loop(_repos(), decoded, dict(introduced), cached, sig_cks, limit, ALG_BY_KEYTYPE)
        out.append((cks, items, sig_cks))
    assert out[0] == out[1]


def test_plan_gives_the_same_answer_on_either_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole of precheck.plan (introduced keys first, then the loop) on a real state,
    with the compiled loop and with the Python one."""
    compiled = _compiled()
    root, targets, new = key("pc-root"), key("pc-targets"), key("pc-ci")
    state = TrustState()
    state.apply(sign_event(RepoCreated(REPOS[0], 1, 0, [root.public_key], 1, [targets.public_key], 1, FAR), [root]),
                log_time=1, offset=0)
    grant = sign_event(RoleKeysSet(REPOS[0], 2, 0, "targets/ci", [new.public_key], 1, FAR, ["*"]), [targets])
    tag = sign_event(ImageSigned(REPOS[0], 3, 0, "targets/ci", "v1", DIGEST, 1, FAR), [new, targets])
    decoded = [(grant, decode_event(grant.payload)), (tag, decode_event(tag.payload))]
    got = []
    for loop in (compiled, None):
        monkeypatch.setattr(fold_backend, "compiled", loop)
        introduced: dict = {}
        sig_cks: list = []
        got.append((precheck.plan(state, decoded, introduced, set(), sig_cks), introduced, sig_cks))
    assert got[0] == got[1]
    (cks, items), introduced, sig_cks = got[0]
    assert len(items) == 3 and set(introduced) == {new.keyid} and len(sig_cks) == 2

