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

import os

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sim import FAR, NOW, key  # noqa: E402
from trustlog.core.evaluate import Request, evaluate_entry  # noqa: E402
from trustlog.core.events import (  # noqa: E402
    Envelope, ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated, Signature,
    TagDeleted, sign_event,
)
from trustlog.core.keys import SigningKey, crypto_valid  # noqa: E402
from trustlog.core.state import RejectedEventError, TrustState, default_sigcheck  # noqa: E402
from trustlog.verifier.batch import BatchVerifier  # noqa: E402

from trustlog.verifier import compiled  # noqa: E402

if not compiled.available():  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise ImportError("the compiled verifier is not built (CI=true: nothing that needs it may be skipped)")
    pytest.skip("the compiled verifier is not built (`pip install -e .`)", allow_module_level=True)
CompiledEvaluator = compiled.CompiledEvaluator

REPOS = ("registry.example.com/a/app", "registry.example.com/b/app")
R1, R2, N1 = key("root1"), key("root2"), key("newroot1")
T1, T2 = key("targets1"), key("targets2")
A1, A2, A3 = key("alice1"), key("alice2"), key("alice3")
P = key("p256-diff", "ecdsa-p256")
P_DER = SigningKey("ecdsa-p256-der", P.private)      # the same key material, another key id
ROOTS = [R1, R2, N1]
TARGETS = [T1, T2]
SIGNERS = [A1, A2, A3, P, P_DER]
EVERYONE = ROOTS + TARGETS + SIGNERS
ROLES = ["targets/a", "targets/b"]
TAGS = ["v1", "v2", "build-1", "latest"]
EXPIRES = [FAR, NOW - 5, NOW + 5]
PATTERNS = [["*"], ["*"], ["v*"], ["build-*", "latest"], ["v1"], ["[!v]*"]]
REF_TIMES = (NOW, NOW + 10)


class History:
    """Events applied straight to a TrustState, log time advancing 1,000 ns each."""

    def __init__(self) -> None:
        self.state = TrustState()
        self.clock = 1_000_000
        self.offset = 0

    def submit(self, repo: str, make, signers: list[SigningKey], *, forge: bool = False) -> str:
        r = self.state.repos.get(repo)
        env = sign_event(make(1 if r is None else r.version + 1), signers)
        check = default_sigcheck
        if forge and env.signatures:
            s0 = env.signatures[0]
            bad = bytearray(s0.sig)
            bad[3] ^= 0x10
            env = Envelope(env.payload, [Signature(s0.keyid, bytes(bad)), *env.signatures[1:]])
            check = lambda k, m, s: True  # noqa: E731 - a tampered log: the fold was fooled
        self.clock += 1_000
        try:
            self.state.apply(env, log_time=self.clock, offset=self.offset, sigcheck=check)
        except RejectedEventError as e:
            return e.reason
        self.offset += 1
        return "OK"


KEY_BY_ID = {k.keyid: k for k in EVERYONE}


def holders(h: History, repo: str, role: str) -> list[SigningKey]:
    """The keys of ``role``'s current grant (the keys that can sign for it)."""
    r = h.state.repos.get(repo)
    g = None if r is None else r.role_grant(role)
    return [] if g is None else [KEY_BY_ID[k] for k in g.keyids]


def pick(h: History, repo: str, role: str, picks: list[int], extra: SigningKey | None) -> list[SigningKey]:
    """Signers: keys of ``role`` chosen by ``picks`` (repeats give duplicate signatures),
    plus an optional outsider; an empty role falls back to the outsider or T1."""
    auth = holders(h, repo, role)
    out = [auth[p % len(auth)] for p in picks] if auth else []
    if extra is not None:
        out.append(extra)
    return out or [T1]


def run_op(h: History, op: tuple) -> None:
    kind, repo = op[0], REPOS[op[1]]
    pk = lambda ks: [k.public_key for k in ks]  # noqa: E731
    if kind == "role":
        _, _, role, keys, thr, picks, extra, exp, paths = op
        signers = pick(h, repo, "targets", picks, extra)
        h.submit(repo, lambda v: RoleKeysSet(repo, v, 0, role, pk(keys), thr, exp, paths), signers)
    elif kind == "policy":
        # re-set a role with its current keys and one knob of its policy changed
        _, _, role, knob, value, picks = op
        r = h.state.repos.get(repo)
        g = None if r is None else r.role_grant(role)
        if g is None:
            return
        keys = [KEY_BY_ID[k] for k in g.keyids]
        thr, paths, exp = g.threshold, list(g.paths), g.expires
        if knob == "threshold":
            thr = value
        elif knob == "paths":
            paths = [] if role == "targets" else value
        else:
            exp = value
        parent = "root" if role == "targets" else "targets"
        h.submit(repo, lambda v: RoleKeysSet(repo, v, 0, role, pk(keys), thr, exp, paths),
                 pick(h, repo, parent, picks, None))
    elif kind == "targets":
        _, _, keys, thr, picks, extra, exp = op
        signers = pick(h, repo, "root", picks, extra)
        h.submit(repo, lambda v: RoleKeysSet(repo, v, 0, "targets", pk(keys), thr, exp, []), signers)
    elif kind == "root":
        _, _, keys, thr, picks, extra, exp = op
        signers = pick(h, repo, "root", picks, extra) + keys
        h.submit(repo, lambda v: RootRotated(repo, v, 0, pk(keys), thr, exp), signers)
    elif kind == "remove":
        _, _, role, picks, extra = op
        h.submit(repo, lambda v: RoleRemoved(repo, v, 0, role), pick(h, repo, "targets", picks, extra))
    elif kind == "compromise":
        _, _, k, back, jitter, by_root, picks = op
        since = max(0, h.clock - 1_000 * back + jitter)
        signers = pick(h, repo, "root" if by_root else "targets", picks, None)
        h.submit(repo, lambda v: KeyCompromised(repo, v, 0, k.keyid, since), signers)
    elif kind == "sign":
        _, _, tag, role, picks, extra, exp, forge = op
        digest = "sha256:" + f"{h.offset:064x}"
        h.submit(repo, lambda v: ImageSigned(repo, v, 0, role, tag, digest, 1, exp), pick(h, repo, role, picks, extra),
                 forge=forge)
    elif kind == "delete":
        _, _, tag, role, picks = op
        h.submit(repo, lambda v: TagDeleted(repo, v, 0, role, tag), pick(h, repo, role, picks, None))
    else:  # pragma: no cover
        raise AssertionError(kind)


def keys_from(pool: list[SigningKey], max_size: int = 4) -> st.SearchStrategy[list[SigningKey]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=max_size)


repo_i = st.integers(0, len(REPOS) - 1)
picks = st.lists(st.integers(0, 4), min_size=1, max_size=3)
outsider = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(EVERYONE))
sign_op = st.tuples(st.just("sign"), repo_i, st.sampled_from(TAGS), st.sampled_from(["targets", *ROLES, *ROLES]),
                    picks, outsider, st.sampled_from([FAR, FAR, *EXPIRES]), st.integers(0, 9).map(lambda x: x == 0))
OPS = st.one_of(
    sign_op, sign_op, sign_op, sign_op,
    st.tuples(st.just("role"), repo_i, st.sampled_from(ROLES), keys_from(SIGNERS), st.integers(1, 2),
              picks, outsider, st.sampled_from([FAR, FAR, *EXPIRES]), st.sampled_from(PATTERNS)),
    st.tuples(st.just("targets"), repo_i, keys_from(TARGETS + [A1], 3), st.integers(1, 2), picks, outsider,
              st.sampled_from([FAR, FAR, *EXPIRES])),
    st.tuples(st.just("root"), repo_i, keys_from(ROOTS, 3), st.integers(1, 2), picks, outsider,
              st.sampled_from([FAR, FAR, NOW + 5])),
    st.tuples(st.just("remove"), repo_i, st.sampled_from(ROLES), picks, outsider),
    st.one_of(
        st.tuples(st.just("policy"), repo_i, st.sampled_from(["targets", *ROLES]), st.just("threshold"),
                  st.integers(1, 3), picks),
        st.tuples(st.just("policy"), repo_i, st.sampled_from(ROLES), st.just("paths"), st.sampled_from(PATTERNS),
                  picks),
        st.tuples(st.just("policy"), repo_i, st.sampled_from(["targets", *ROLES]), st.just("expires"),
                  st.sampled_from([FAR, *EXPIRES]), picks),
    ),
    st.tuples(st.just("compromise"), repo_i, st.sampled_from(EVERYONE), st.integers(0, 12),
              st.sampled_from([-1, 0, 1]), st.booleans(), picks),
    st.tuples(st.just("delete"), repo_i, st.sampled_from(TAGS), st.sampled_from(["targets", *ROLES]), picks),
    st.just(("check",)),
)


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


def compare(h: History, inc: CompiledEvaluator) -> None:
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
@given(root_thr=st.integers(1, 2), targets_keys=keys_from(TARGETS, 2), expires=st.sampled_from([FAR, FAR, NOW + 5]),
       a_keys=keys_from(SIGNERS, 3), a_thr=st.integers(1, 2), ops=st.lists(OPS, min_size=10, max_size=50))
def test_compiled_evaluation_matches_reference(root_thr: int, targets_keys: list[SigningKey], expires: int,
                                               a_keys: list[SigningKey], a_thr: int, ops: list[tuple]) -> None:
    h = History()
    for repo in REPOS:
        h.submit(repo, lambda v, repo=repo: RepoCreated(repo, v, 0, [R1.public_key, R2.public_key], root_thr,
                                                          [k.public_key for k in targets_keys], 1, expires),
                 [R1, R2])
        run_op(h, ("role", REPOS.index(repo), "targets/a", a_keys, a_thr, [0], None, FAR, ["*"]))
        run_op(h, ("role", REPOS.index(repo), "targets/b", [A3, P, P_DER], 1, [0], None, FAR, ["v*", "latest"]))
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
    h = History()
    a, b = REPOS
    for repo in REPOS:
        h.submit(repo, lambda v, repo=repo: RepoCreated(repo, v, 0, [R1.public_key], 1,
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
    h.submit(b, lambda v: KeyCompromised(b, v, 0, T1.keyid, 0), [T2])
    compare(h, inc)


def _verdicts_of(h: History, repo: str) -> dict[str, tuple]:
    r = h.state.repos[repo]
    out = {}
    for e in r.tags.values():
        valid = [crypto_valid(r.keys[k].alg, r.keys[k].public, e.payload, sig) for k, sig in e.signatures]
        out[e.tag] = evaluate_entry(r, e, valid, NOW, {})
    return out


def _codes_of(h: History, repo: str) -> dict[str, str]:
    """Reference verdict codes of the delegated signers' tags of ``repo``."""
    r = h.state.repos[repo]
    return {t: v[0].value for t, v in _verdicts_of(h, repo).items() if r.tags[t].role != "targets"}


def _reason_of(h: History, repo: str, tag: str) -> str:
    return _verdicts_of(h, repo)[tag][1]


def run_all(h: History, ops: list[tuple]) -> list[str]:
    out = []
    for op in ops:
        before = h.offset
        run_op(h, op)
        out.append("OK" if h.offset == before + 1 else "REJECTED")
    return out


def test_large_state_uses_every_thread() -> None:
    """Enough tags (over the 4,096-row threshold) that evaluation and crypto run on
    several OpenMP threads; still identical to the reference."""
    h = History()
    repo = REPOS[0]
    h.submit(repo, lambda v: RepoCreated(repo, v, 0, [R1.public_key], 1, [T1.public_key], 1, FAR), [R1])
    h.submit(repo, lambda v: RoleKeysSet(repo, v, 0, "targets/a", [A1.public_key, A2.public_key], 1, FAR, ["*"]), [T1])
    for i in range(4200):
        signer = [A1] if i % 3 else [A2]
        h.submit(repo, lambda v, i=i: ImageSigned(repo, v, 0, "targets/a", f"t{i}", "sha256:" + "ab" * 32, 1,
                                                   NOW - 1 if i % 97 == 0 else FAR), signer, forge=i % 211 == 0)
    since = h.clock - 1_000 * 2000
    h.submit(repo, lambda v: KeyCompromised(repo, v, 0, A1.keyid, since), [T1])
    inc = CompiledEvaluator(h.state, nthreads=2)
    items = [(r, e) for r in h.state.repos.values() for e in r.tags.values()]
    assert inc.evaluate(items, NOW) == reference(h.state, NOW)
    codes = {c for c, _, _ in inc.evaluate(items, NOW)}
    assert {c.value for c in codes} == {"VALID", "KEY_COMPROMISED", "EXPIRED", "BAD_SIGNATURE"}
