"""The compiled key-chain evaluation against the reference, on generated histories.

Hypothesis builds histories of two repositories that share keys: delegations with
thresholds and tag patterns, targets and root rotations, removals, compromise reports at
log times around every event (the ``since <= log_time`` boundary included), tags signed
by members, non-members, twice by one key, by one P-256 key under both of its key types,
expired at several levels, and forged signatures let into the state (as a tampered log or
snapshot would); and re-delegations after tags were signed: a role re-set with the same
keys and one policy knob changed (threshold raised, paths narrowed or widened, expiry
moved), or with its keys rotated. At checkpoints, and at the end, every signed tag is evaluated

* by the reference, :func:`trustlog.core.evaluate.evaluate_entry` over
  :func:`trustlog.core.keys.crypto_valid`,
* by one compiled state kept current across the whole history by deltas (with
  compaction forced early),
* by a compiled state compiled from scratch, and by a full compiled sweep,

and code, reason and counted keys must be identical. Both BatchVerifier engines must
also give identical Verdicts on requests for present, deleted, unknown and mismatched
tags. Any divergence is a security bug.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_compiled_verifier
from histories import A1, A2, A3, OPS, P, P_DER, R1, REPOS, START, T1, T2, TAGS, run_op, start
from sim import FAR, NOW, Sim
from trustlog.core.evaluate import Request, evaluate_entry
from trustlog.core.events import ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet
from trustlog.core.keys import crypto_valid
from trustlog.core.state import TrustState
from trustlog.verifier.batch import BatchVerifier

compiled = require_compiled_verifier()
CompiledEvaluator = compiled.CompiledEvaluator
REF_TIMES = (NOW, NOW + 10)


def new_sim() -> Sim:
    """The simulator, letting forged signatures into the state (as a tampered log or
    snapshot would) so the verifiers meet them."""
    return Sim(trust_forged=True)


def reference(state: TrustState, ref_time: int) -> list:
    out = []
    for repo in state.repos.values():
        memo: dict = {}
        for entry in repo.tags.values():
            valid = [crypto_valid(repo.keys[k].alg, repo.keys[k].public, entry.payload, s) for k, s in entry.signatures]
            out.append(evaluate_entry(repo, entry, valid, ref_time, memo))
    return out


def requests(state: TrustState) -> list[Request]:
    reqs = []
    for name in REPOS:
        repo = state.repos.get(name)
        for tag in TAGS:
            reqs.append(Request(name, tag))
            if repo is not None and tag in repo.tags:
                reqs.append(Request(name, tag, repo.tags[tag].digest))
                reqs.append(Request(name, tag, "sha256:" + "00" * 32))
    reqs.append(Request("registry.example.com/nobody/app", "v1"))
    return reqs


def compare(h: Sim, inc: CompiledEvaluator) -> None:
    items = [(repo, e) for repo in h.state.repos.values() for e in repo.tags.values()]
    for ref in REF_TIMES:
        expected = reference(h.state, ref)
        assert inc.evaluate(items, ref) == expected, "compiled state kept by deltas diverged"
        fresh = CompiledEvaluator(h.state)
        assert fresh.evaluate(items, ref) == expected, "freshly compiled state diverged"
        swept = [(v.code, v.reason, v.keys) for v in fresh.sweep(ref).verdicts()]
        assert swept == [(c.value, r, k) for c, r, k in expected], "sweep diverged"
        reqs = requests(h.state)
        by_c = BatchVerifier(h.state, ref_time=ref, engine="c").verify_all(reqs)
        by_py = BatchVerifier(h.state, ref_time=ref, engine="py").verify_all(reqs)
        assert by_c == by_py, "BatchVerifier engines diverged"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(setup=START, ops=st.lists(OPS, min_size=10, max_size=50))
def test_compiled_evaluation_matches_reference(setup: dict, ops: list[tuple]) -> None:
    h = new_sim()
    start(h, **setup)
    inc = CompiledEvaluator(h.state, compact_min=0)
    for op in ops:
        if op[0] == "check":
            compare(h, inc)
        else:
            run_op(h, op)
    compare(h, inc)


def test_a_scripted_history_covers_every_verdict() -> None:
    """A fixed history that reaches every verdict a fold can lead to, so the property
    above cannot pass by generating only easy cases."""
    h = new_sim()
    a, b = REPOS
    for repo in REPOS:
        h.propose(repo, lambda v, repo=repo: RepoCreated(repo, v, 0, [R1.public_key], 1,
                                                          [T1.public_key, T2.public_key], 1, FAR), [R1])
    assert run_all(h, [
        ("role", 0, "targets/a", [A1, A2], 2, [0], None, FAR, ["*"]),
        ("role", 0, "targets/b", [A3, P, P_DER], 1, [1], None, FAR, ["*"]),
    ]) == ["OK"] * 2
    t_b = h.clock                                                   # targets/b delegated by T2 here
    assert run_all(h, [
        ("sign", 0, "v1", "targets/a", [0, 1], None, FAR, False),    # VALID, then ROLE_REMOVED
        ("sign", 0, "v2", "targets/a", [1, 0], None, FAR, True),     # BAD_SIGNATURE (forged, let in)
        ("sign", 0, "build-1", "targets/b", [1, 2], None, FAR, False),  # twin counted once; DELEGATION_COMPROMISED
        ("sign", 0, "latest", "targets", [0], None, NOW - 1, False),  # EXPIRED (the tag)
        ("sign", 1, "v1", "targets", [0], None, FAR, False),         # VALID
        ("role", 1, "targets/b", [A3], 1, [0], None, NOW - 5, ["*"]),
        ("sign", 1, "v2", "targets/b", [0], None, FAR, False),       # EXPIRED (the role)
        ("sign", 1, "latest", "targets", [1], None, FAR, False),     # KEY_COMPROMISED
        ("compromise", 1, T2, 0, 0, False, [0]),                     # since == latest's log time
        ("compromise", 0, T2, (h.clock - t_b) // 1000 + 10, 0, False, [0]),
    ]) == ["OK"] * 10
    inc = CompiledEvaluator(h.state, compact_min=0)
    compare(h, inc)
    codes = {c.value for c, _, _ in reference(h.state, NOW)}
    assert codes == {"VALID", "BAD_SIGNATURE", "EXPIRED", "DELEGATION_COMPROMISED", "KEY_COMPROMISED"}
    build1 = [k for c, _, k in reference(h.state, NOW) if c.value == "DELEGATION_COMPROMISED"]
    assert [len(k) for k in build1] == [1]                          # P and P_DER: one key
    run_op(h, ("remove", 0, "targets/a", [0], None))
    compare(h, inc)
    assert "ROLE_REMOVED" in {c.value for c, _, _ in reference(h.state, NOW)}
    # re-delegation in repo b: v2 was signed by targets/b under a grant that has expired
    assert run_all(h, [
        ("role", 1, "targets/a", [A1, A2], 1, [0], None, FAR, ["*"]),
        ("sign", 1, "build-1", "targets/a", [0], None, FAR, False),
        ("sign", 1, "v3", "targets/a", [1], None, FAR, False),
        ("policy", 1, "targets/a", "paths", ["v*"], [0]),            # build-1: OUTSIDE_PATTERNS
        ("policy", 1, "targets/b", "expires", FAR, [0]),             # v2: still EXPIRED (its signing grant)
    ]) == ["OK"] * 5
    compare(h, inc)
    assert _codes_of(h, b) == {"build-1": "OUTSIDE_PATTERNS", "v2": "EXPIRED", "v3": "VALID"}
    assert "keys that signed v2" in _reason_of(h, b, "v2")
    assert run_all(h, [("policy", 1, "targets/a", "threshold", 2, [0])]) == ["OK"]
    compare(h, inc)
    assert _codes_of(h, b) == {"build-1": "THRESHOLD_NOT_MET", "v2": "EXPIRED", "v3": "THRESHOLD_NOT_MET"}
    # an earlier compromise time replaces a later one (min), and the delta applies it
    h.propose(b, lambda v: KeyCompromised(b, v, 0, T1.keyid, 0), [T2])
    compare(h, inc)


def _verdicts_of(h: Sim, repo: str) -> dict[str, tuple]:
    r = h.state.repos[repo]
    out = {}
    for e in r.tags.values():
        valid = [crypto_valid(r.keys[k].alg, r.keys[k].public, e.payload, sig) for k, sig in e.signatures]
        out[e.tag] = evaluate_entry(r, e, valid, NOW, {})
    return out


def _codes_of(h: Sim, repo: str) -> dict[str, str]:
    """Reference verdict codes of the delegated signers' tags of ``repo``."""
    r = h.state.repos[repo]
    return {t: v[0].value for t, v in _verdicts_of(h, repo).items() if r.tags[t].role != "targets"}


def _reason_of(h: Sim, repo: str, tag: str) -> str:
    return _verdicts_of(h, repo)[tag][1]


def run_all(h: Sim, ops: list[tuple]) -> list[str]:
    out = []
    for op in ops:
        before = h.offset
        run_op(h, op)
        out.append("OK" if h.offset == before + 1 else "REJECTED")
    return out


def test_large_state_uses_every_thread() -> None:
    """Enough tags (over the 4,096-row threshold) that evaluation and crypto run on
    several OpenMP threads; still identical to the reference."""
    h = new_sim()
    repo = REPOS[0]
    h.propose(repo, lambda v: RepoCreated(repo, v, 0, [R1.public_key], 1, [T1.public_key], 1, FAR), [R1])
    h.propose(repo, lambda v: RoleKeysSet(repo, v, 0, "targets/a", [A1.public_key, A2.public_key], 1, FAR, ["*"]), [T1])
    for i in range(4200):
        signer = [A1] if i % 3 else [A2]
        h.propose(repo, lambda v, i=i: ImageSigned(repo, v, 0, "targets/a", f"t{i}", "sha256:" + "ab" * 32, 1,
                                                   NOW - 1 if i % 97 == 0 else FAR), signer, forged=i % 211 == 0)
    since = h.clock - 1_000 * 2000
    h.propose(repo, lambda v: KeyCompromised(repo, v, 0, A1.keyid, since), [T1])
    inc = CompiledEvaluator(h.state, nthreads=2)
    items = [(r, e) for r in h.state.repos.values() for e in r.tags.values()]
    assert inc.evaluate(items, NOW) == reference(h.state, NOW)
    codes = {c for c, _, _ in inc.evaluate(items, NOW)}
    assert {c.value for c in codes} == {"VALID", "KEY_COMPROMISED", "EXPIRED", "BAD_SIGNATURE"}
