"""The trusted fast fold (ingest/replay.py ``TrustedFold``) against the validating fold
(``TrustState.apply``): over random histories of correctly signed events (with replays,
version clashes, gaps, deletions, removed roles, compromised keys and patterns), both
accept or refuse the same events with the same reason and end in equal states.

``TrustedFold`` skips signature checks only, so histories carry no bad signature; every
other rule, the per-scope version rule included, must agree exactly.
"""
from __future__ import annotations

import random

import pytest

from trustlog.core.events import (
    Envelope, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RoleRemoved, TagDeleted, decode_event,
    sign_event, version_scope,
)
from trustlog.core.keys import SigningKey
from trustlog.core.state import RejectedEventError, TrustState
from trustlog.ingest.replay import TrustedFold

REPO = "registry.example.com/team/app"
FAR = 4_000_000_000
R = SigningKey.from_seed(b"tf/root")
T = SigningKey.from_seed(b"tf/targets")
ROLES = {"targets/alice": [SigningKey.from_seed(b"tf/alice1"), SigningKey.from_seed(b"tf/alice2")],
         "targets/bob": [SigningKey.from_seed(b"tf/bob1")]}
PATHS = {"targets/alice": ["a*", "v*"], "targets/bob": ["b*", "v*"]}
TAGS = ["a1", "a2", "b1", "v1", "v2", "latest"]


def _outcome(apply, env: Envelope, log_time: int, offset: int) -> str:
    try:
        apply(env, log_time, offset)
    except RejectedEventError as e:
        return e.reason
    return "OK"


def _history(rng: random.Random, st: TrustState, n: int):
    """``n`` correctly signed envelopes, chosen against the validating state ``st`` as it
    goes (so versions are near the scopes' current ones), with replays mixed in."""
    sent: list[Envelope] = []
    yield sign_event(RepoCreated(REPO, 1, 0, [R.public_key], 1, [T.public_key], 1, FAR), [R])
    for _ in range(n):
        repo = st.repos[REPO]
        kind = rng.random()
        if sent and kind < 0.12:
            yield rng.choice(sent)  # a replay of something sent before
            continue
        role = rng.choice(["targets", "targets/alice", "targets/bob"])
        tag = rng.choice(TAGS)
        if kind < 0.2:
            ev = RoleKeysSet(REPO, 0, 0, role, [k.public_key for k in ROLES.get(role, [T])],
                             rng.choice([1, 1, 2]) if role == "targets/alice" else 1, FAR,
                             [] if role == "targets" else PATHS[role])
            signers = [R] if role == "targets" else [T]
        elif kind < 0.26:
            ev, signers = RoleRemoved(REPO, 0, 0, rng.choice(list(ROLES))), [T]
        elif kind < 0.29:
            victim = rng.choice(ROLES["targets/alice"])
            ev, signers = KeyCompromised(REPO, 0, 0, victim.keyid, rng.choice([0, 10**18])), [T]
        elif kind < 0.4:
            ev, signers = TagDeleted(REPO, 0, 0, role, tag), ROLES.get(role, [T])
        else:
            exp = rng.choice([FAR, FAR, FAR, 5])
            ev = ImageSigned(REPO, 0, 10, role, tag, "sha256:" + f"{rng.randrange(4):02x}" * 32, rng.choice([1, 0, 7]), exp)
            keys = ROLES.get(role, [T])
            signers = keys if rng.random() < 0.7 else keys[:1]
        cur = repo.versions.get(version_scope(ev), 0)
        version = rng.choice([cur + 1, cur + 1, cur + 1, cur, max(cur - 1, 1), cur + rng.randrange(2, 10**6)])
        env = sign_event(ev.__class__(**{**{f: getattr(ev, f) for f in ev.__struct_fields__}, "version": version}),
                         signers)
        sent.append(env)
        yield env


@pytest.mark.parametrize("seed", range(24))
def test_trusted_fold_agrees_with_the_validating_fold(seed: int) -> None:
    rng = random.Random(seed)
    full, fast = TrustState(), TrustState()
    trusted = TrustedFold(fast)
    offset, log_time, outcomes = 0, 1_000, []
    for env in _history(rng, full, 160):
        log_time += 1_000
        want = _outcome(lambda e, t, o: full.apply(e, log_time=t, offset=o), env, log_time, offset)
        got = _outcome(lambda e, t, o: trusted.apply(e, decode_event(e.payload), t, o), env, log_time, offset)
        assert got == want, (seed, offset, decode_event(env.payload))
        outcomes.append(want)
        if want == "OK":
            offset += 1
        assert fast.repos == full.repos and fast.version == full.version, (seed, offset)
    # the histories exercise the rules, not only the happy path
    assert "OK" in outcomes and "VERSION_ROLLBACK" in outcomes
