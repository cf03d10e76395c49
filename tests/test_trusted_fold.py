"""The trusted fold replay uses (ingest/replay.py ``TrustedFold``) against the validating
fold (``TrustState.apply``, every signature checked), on generated histories.

Hypothesis builds histories of two repositories (``tests/histories.py``: delegations,
rotations of targets and root, removals, compromise reports, tags signed and deleted by
members and outsiders, forged signatures, replays, stale versions, events with one bad
field). The validating fold decides each event; then

* the events it accepted, applied in order by ``TrustedFold``, give the identical state
  (every field of every repository, ``tests/state_compare.py``);
* every event it refused for a reason other than a signature (all of whose signatures
  are genuine), offered to ``TrustedFold`` at the same point, is refused with the same
  reason (an event with a forged signature is exempt: not checking signatures is the
  point of the trusted fold, and a log only holds what the validating fold accepted);
* a real log (``TrustLog``) given the accepted events at the same log times and reopened
  without a snapshot (so replay folds it with ``TrustedFold``) holds the same state.

``MetadataImported`` (imported TUF metadata) takes a test of its own below: its events
come from a python-tuf repository, not from the generator.
"""
from __future__ import annotations

import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histories import (
    A1, A2, EVERYONE, EXPIRES, ODD, OPS, PATTERNS, REFUSED_OPS, REPOS, ROLES, ROOTS, SIGNERS, START, T1, T2, TAGS,
    TARGETS, run_op, start,
)
from sim import FAR, Sim, Step, key
from state_compare import assert_same_state, check_trusted_fold
from trustlog.core.events import Envelope, KeyCompromised, MetadataImported, Signature, encode_event
from trustlog.core.reasons import Reject
from trustlog.ingest.pipeline import TrustLog
from trustlog.ingest.records import LogClock

HISTORY = st.lists(st.one_of(OPS, OPS, REFUSED_OPS), min_size=10, max_size=60)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def play(setup: dict, ops: list[tuple]) -> Sim:
    """The history, decided by the validating fold (real signature checks)."""
    h = Sim()
    start(h, **setup)
    for op in ops:
        if op[0] != "check":
            run_op(h, op)
    return h


@settings(max_examples=150, **SETTINGS)
@given(setup=START, ops=HISTORY)
def test_trusted_fold_gives_the_validating_folds_state_and_reasons(setup: dict, ops: list[tuple]) -> None:
    h = play(setup, ops)
    state, _ = check_trusted_fold(h.trace)
    assert_same_state(state, h.state, "TrustedFold after the accepted events")


def random_op(rng: random.Random) -> tuple:
    """One operation of the generator's vocabulary, drawn from ``rng`` (for fixed histories)."""
    r, picks = rng.randrange(len(REPOS)), [rng.randrange(5) for _ in range(rng.randint(1, 3))]
    extra = rng.choice([None, None, None, rng.choice(EVERYONE)])
    exp = rng.choice([FAR, FAR, *EXPIRES])
    kind = rng.choice(["sign"] * 6 + ["role", "targets", "root", "remove", "compromise", "delete", "policy",
                                      "replay", "stale", "odd", "odd"])
    if kind == "sign":
        return kind, r, rng.choice(TAGS), rng.choice(["targets", *ROLES]), picks, extra, exp, rng.random() < 0.1
    if kind == "role":
        return kind, r, rng.choice(ROLES), rng.sample(SIGNERS, rng.randint(1, 3)), rng.randint(1, 2), picks, extra, \
            exp, rng.choice(PATTERNS)
    if kind == "targets":
        return kind, r, rng.sample([*TARGETS, A1], rng.randint(1, 2)), rng.randint(1, 2), picks, extra, exp
    if kind == "root":
        return kind, r, rng.sample(ROOTS, rng.randint(1, 2)), rng.randint(1, 2), picks, extra, exp
    if kind == "remove":
        return kind, r, rng.choice(ROLES), picks, extra
    if kind == "compromise":
        return kind, r, rng.choice(EVERYONE), rng.randrange(13), rng.choice([-1, 0, 1]), rng.random() < 0.3, picks
    if kind == "delete":
        return kind, r, rng.choice(TAGS), rng.choice(["targets", *ROLES]), picks
    if kind == "policy":
        knob = rng.choice(["threshold", "paths", "expires"])
        value = {"threshold": rng.randint(1, 3), "paths": rng.choice(PATTERNS), "expires": exp}[knob]
        return kind, r, rng.choice(ROLES), knob, value, picks
    if kind == "replay":
        return kind, rng.randrange(10**6)
    if kind == "stale":
        return kind, r, rng.choice(TAGS), rng.randrange(2), picks
    return kind, r, rng.choice(sorted(ODD)), picks


def test_fixed_histories_reach_every_rule() -> None:
    """Fixed (seeded) histories over the same vocabulary: both folds agree, and the refusals
    compared cover the fold's rules, so the property above cannot pass on easy cases only."""
    seen: Counter = Counter()
    for seed in range(6):
        rng = random.Random(seed)
        h = Sim()
        start(h, 1 + seed % 2, [T1, T2][: 1 + seed % 2], FAR, [A1, A2], 1 + seed % 2)
        for _ in range(150):
            run_op(h, random_op(rng))
        state, compared = check_trusted_fold(h.trace)
        assert_same_state(state, h.state, f"seed {seed}")
        seen.update(compared)
    must = {Reject.VERSION_ROLLBACK, Reject.REPOSITORY_EXISTS, Reject.VERSION_SKIP, Reject.INVALID_FIELD,
            Reject.INVALID_ROLE, Reject.INVALID_KEYS, Reject.UNKNOWN_ROLE, Reject.UNKNOWN_KEY,
            Reject.UNKNOWN_TAG, Reject.OUTSIDE_PATTERNS, Reject.THRESHOLD_NOT_MET, Reject.KEY_COMPROMISED,
            Reject.NOT_AUTHORISED, Reject.ROOT_OLD_THRESHOLD, Reject.ROOT_NEW_THRESHOLD}
    assert {r.value for r in must} <= set(seen), (sorted(seen), sorted(r.value for r in must))


def _times(trace: list[Step]) -> Iterator[int]:
    yield from (s.log_time for s in trace if s.outcome == "OK")


@settings(max_examples=20, **SETTINGS)
@given(setup=START, ops=HISTORY)
def test_a_real_log_of_the_accepted_events_reopens_to_the_same_state(setup: dict, ops: list[tuple]) -> None:
    h = play(setup, ops)
    accepted = [s for s in h.trace if s.outcome == "OK"]
    with tempfile.TemporaryDirectory() as d:
        times = _times(h.trace)
        with TrustLog(d, clock=LogClock(lambda: next(times)), snapshot_every=None) as tl:
            res = tl.ingest_batch([(s.env.to_bytes(), None) for s in accepted])
            assert (res.accepted, res.rejected) == (len(accepted), 0), res.last_reject
            assert_same_state(tl.state, h.state, "the log's validating fold at ingest")
        assert not list((Path(d) / "snapshots").glob("*"))
        with TrustLog(d, snapshot_every=None) as tl:
            assert tl.opened_with["snapshot"] == 0 and tl.opened_with["trusted"] == len(accepted), tl.opened_with
            assert_same_state(tl.state, h.state, "the log reopened (TrustedFold over every record)")


def test_imported_metadata_folds_the_same_way(tr, tmp_path: Path) -> None:
    """``MetadataImported`` (a python-tuf repository's files, a new version, a replay, an
    older file again, a native event refused on imported data, compromise reports by the
    publisher's targets key and by a key without the authority) through both folds: same
    outcomes, same state."""
    gun = "registry.example.com/tuf/app"
    repo = tr.TufRepo(tmp_path / "repo")
    repo.add_target("stable", b"s")
    repo.delegate("ci", paths=["ci-*"])
    repo.add_target("ci-1", b"1", role="ci")
    repo.publish()
    h = Sim(repo=gun)

    def imported(role: str, data: bytes) -> str:
        return h.submit(Envelope(encode_event(MetadataImported(gun, h.next_version(gun), 0, role, data)), []))

    def read(name: str) -> bytes:
        return (tmp_path / "repo" / name).read_bytes()

    old_ci = read("ci.json")
    assert [imported("root", read("1.root.json")), imported("targets", read("targets.json")),
            imported("ci", old_ci)] == ["OK"] * 3
    repo.add_target("ci-2", b"2", role="ci")
    repo.publish(roles=["ci"])
    assert imported("ci", read("ci.json")) == "OK"
    since = h.clock + 1
    assert imported("ci", old_ci) != "OK"                   # an older file of the role
    assert h.submit(h.trace[1].env) != "OK"                 # a replay
    assert h.sign_tag("ci-3", [key("tf-outsider")]) == "INVALID_ROLE"  # native events on imported data
    st_ = h.state.repos[gun]
    ci_key, tl_targets = st_.grants[st_.roles["ci"]].keyids[0], st_.grants[st_.roles["targets"]].keyids[0]

    def report(signer, keyid: str) -> str:
        payload = encode_event(KeyCompromised(gun, h.next_version(gun), 0, ci_key, since))
        return h.submit(Envelope(payload, [Signature(keyid, bytes.fromhex(signer.sign(payload).signature))]))

    assert report(repo.signers["ci"][0], "0" * 64) != "OK"  # a key the repository does not hold
    assert report(repo.signers["targets"][0], tl_targets) == "OK"
    state, compared = check_trusted_fold(h.trace)
    assert_same_state(state, h.state, "TrustedFold over imported metadata")
    assert sum(compared.values()) == 4 and state.repos[gun].tuf is not None
