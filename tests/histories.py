"""Random histories for the property tests: hypothesis strategies for operations on two
repositories, played through the one simulator (:class:`sim.Sim`).

An operation is a tuple (its first item names it) that :func:`run_op` turns into a signed
event against the simulator's current state: signers are picked among the keys that
currently hold the role (so most events are authorised), plus an optional outsider;
versions are the next free one, except for ``stale`` (a version at or below its scope's)
and ``replay`` (an envelope submitted before, as it was). ``odd`` makes events with one
field the fold must refuse. Every event kind but ``MetadataImported`` (imported TUF
metadata, see ``tests/test_trusted_fold.py``) comes out.

Used by the differential tests of the verifiers (``test_chain_differential.py``) and of
the folds (``test_trusted_fold.py``).
"""
from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from sim import FAR, NOW, Sim, key
from trustlog.core.events import (
    ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, RoleRemoved, RootRotated, TagDeleted, version_scope,
)
from trustlog.core.keys import SigningKey

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
KEY_BY_ID = {k.keyid: k for k in EVERYONE}
STRANGER = key("never-granted")                      # a key no repository ever holds


def holders(h: Sim, repo: str, role: str) -> list[SigningKey]:
    """The keys of ``role``'s current grant (the keys that can sign for it)."""
    r = h.state.repos.get(repo)
    g = None if r is None else r.role_grant(role)
    return [] if g is None else [KEY_BY_ID[k] for k in g.keyids]


def pick(h: Sim, repo: str, role: str, picks: list[int], extra: SigningKey | None) -> list[SigningKey]:
    """Signers: keys of ``role`` chosen by ``picks`` (repeats give duplicate signatures),
    plus an optional outsider; an empty role falls back to the outsider or T1."""
    auth = holders(h, repo, role)
    out = [auth[p % len(auth)] for p in picks] if auth else []
    if extra is not None:
        out.append(extra)
    return out or [T1]


def _pk(ks: list[SigningKey]) -> list:
    return [k.public_key for k in ks]


# events the fold must refuse for one field, each (make(repo, version), role whose keys sign)
ODD: dict[str, tuple[Callable[[str, int], object], str]] = {
    "bad-tag": (lambda r, v: ImageSigned(r, v, 0, "targets", "-v1", "sha256:" + "ab" * 32, 1, FAR), "targets"),
    "bad-digest": (lambda r, v: ImageSigned(r, v, 0, "targets", "v1", "sha256:xyz", 1, FAR), "targets"),
    "negative-size": (lambda r, v: ImageSigned(r, v, 0, "targets", "v1", "sha256:" + "ab" * 32, -1, FAR), "targets"),
    "expires-at-issue": (lambda r, v: ImageSigned(r, v, 10, "targets", "v2", "sha256:" + "ab" * 32, 1, 10), "targets"),
    "root-signs-a-tag": (lambda r, v: ImageSigned(r, v, 0, "root", "v1", "sha256:" + "ab" * 32, 1, FAR), "root"),
    "no-such-signer": (lambda r, v: ImageSigned(r, v, 0, "targets/zz", "v1", "sha256:" + "ab" * 32, 1, FAR),
                       "targets"),
    "int64-overflow": (lambda r, v: ImageSigned(r, v, 0, "targets", "v1", "sha256:" + "ab" * 32, 1, 2**63),
                       "targets"),
    "targets-with-paths": (lambda r, v: RoleKeysSet(r, v, 0, "targets", _pk([T1]), 1, FAR, ["v*"]), "root"),
    "signer-without-paths": (lambda r, v: RoleKeysSet(r, v, 0, "targets/a", _pk([A1]), 1, FAR, []), "targets"),
    "bad-pattern": (lambda r, v: RoleKeysSet(r, v, 0, "targets/a", _pk([A1]), 1, FAR, ["a b"]), "targets"),
    "bad-role-name": (lambda r, v: RoleKeysSet(r, v, 0, "Targets/a", _pk([A1]), 1, FAR, ["*"]), "targets"),
    "threshold-0": (lambda r, v: RoleKeysSet(r, v, 0, "targets/a", _pk([A1]), 0, FAR, ["*"]), "targets"),
    "threshold-over-keys": (lambda r, v: RoleKeysSet(r, v, 0, "targets/a", _pk([P, P_DER]), 2, FAR, ["*"]),
                            "targets"),
    "no-keys": (lambda r, v: RoleKeysSet(r, v, 0, "targets/b", [], 1, FAR, ["*"]), "targets"),
    "remove-targets": (lambda r, v: RoleRemoved(r, v, 0, "targets"), "targets"),
    "report-a-stranger": (lambda r, v: KeyCompromised(r, v, 0, STRANGER.keyid, 0), "targets"),
    "report-before-time": (lambda r, v: KeyCompromised(r, v, 0, A1.keyid, -1), "targets"),
    "root-without-keys": (lambda r, v: RootRotated(r, v, 0, [], 1, FAR), "root"),
    "new-root-did-not-sign": (lambda r, v: RootRotated(r, v, 0, _pk([STRANGER]), 1, FAR), "root"),
    "create-again": (lambda r, v: RepoCreated(r, 1, 0, _pk([R1]), 1, _pk([T1]), 1, FAR), "root"),
    "create-at-2": (lambda r, v: RepoCreated("registry.example.com/c/app", 2, 0, _pk([R1]), 1, _pk([T1]), 1, FAR),
                    "root"),
    "bad-repo-name": (lambda r, v: RepoCreated("Registry.example.com/UPPER", 1, 0, _pk([R1]), 1, _pk([T1]), 1, FAR),
                      "root"),
}


def run_op(h: Sim, op: tuple) -> None:
    """Submit the event ``op`` describes (see the module docstring)."""
    kind = op[0]
    if kind == "replay":
        if h.trace:
            step = h.trace[op[1] % len(h.trace)]
            h.submit(step.env, forged=step.forged)
        return
    repo = REPOS[op[1]]
    pk = _pk
    if kind == "role":
        _, _, role, keys, thr, picks, extra, exp, paths = op
        signers = pick(h, repo, "targets", picks, extra)
        h.propose(repo, lambda v: RoleKeysSet(repo, v, 0, role, pk(keys), thr, exp, paths), signers)
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
        h.propose(repo, lambda v: RoleKeysSet(repo, v, 0, role, pk(keys), thr, exp, paths),
                  pick(h, repo, parent, picks, None))
    elif kind == "targets":
        _, _, keys, thr, picks, extra, exp = op
        signers = pick(h, repo, "root", picks, extra)
        h.propose(repo, lambda v: RoleKeysSet(repo, v, 0, "targets", pk(keys), thr, exp, []), signers)
    elif kind == "root":
        _, _, keys, thr, picks, extra, exp = op
        signers = pick(h, repo, "root", picks, extra) + keys
        h.propose(repo, lambda v: RootRotated(repo, v, 0, pk(keys), thr, exp), signers)
    elif kind == "remove":
        _, _, role, picks, extra = op
        h.propose(repo, lambda v: RoleRemoved(repo, v, 0, role), pick(h, repo, "targets", picks, extra))
    elif kind == "compromise":
        _, _, k, back, jitter, by_root, picks = op
        since = max(0, h.clock - 1_000 * back + jitter)
        signers = pick(h, repo, "root" if by_root else "targets", picks, None)
        h.propose(repo, lambda v: KeyCompromised(repo, v, 0, k.keyid, since), signers)
    elif kind == "sign":
        _, _, tag, role, picks, extra, exp, forged = op
        digest = "sha256:" + f"{h.offset:064x}"
        h.propose(repo, lambda v: ImageSigned(repo, v, 0, role, tag, digest, 1, exp), pick(h, repo, role, picks, extra),
                  forged=forged)
    elif kind == "delete":
        _, _, tag, role, picks = op
        h.propose(repo, lambda v: TagDeleted(repo, v, 0, role, tag), pick(h, repo, role, picks, None))
    elif kind == "stale":
        # a version at or below its scope's current one (a signer that missed a change)
        _, _, tag, back, picks = op
        r = h.state.repos.get(repo)
        make = lambda v: ImageSigned(repo, v, 0, "targets", tag, "sha256:" + "cd" * 32, 1, FAR)  # noqa: E731
        current = 0 if r is None else r.versions.get(version_scope(make(1)), 0)
        h.propose(repo, make, pick(h, repo, "targets", picks, None), version=max(current - back, 1))
    elif kind == "odd":
        _, _, name, picks = op
        make, role = ODD[name]
        h.propose(repo, lambda v: make(repo, v), pick(h, repo, role, picks, None))
    else:  # pragma: no cover
        raise AssertionError(kind)


def start(h: Sim, root_thr: int, targets_keys: list[SigningKey], expires: int, a_keys: list[SigningKey],
          a_thr: int) -> None:
    """Create both repositories (root R1+R2) with signers ``targets/a`` and ``targets/b``."""
    for i, repo in enumerate(REPOS):
        h.propose(repo, lambda v, repo=repo: RepoCreated(repo, v, 0, [R1.public_key, R2.public_key], root_thr,
                                                           [k.public_key for k in targets_keys], 1, expires), [R1, R2])
        run_op(h, ("role", i, "targets/a", a_keys, a_thr, [0], None, FAR, ["*"]))
        run_op(h, ("role", i, "targets/b", [A3, P, P_DER], 1, [0], None, FAR, ["v*", "latest"]))


def keys_from(pool: list[SigningKey], max_size: int = 4) -> st.SearchStrategy[list[SigningKey]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=max_size)


repo_i = st.integers(0, len(REPOS) - 1)
picks = st.lists(st.integers(0, 4), min_size=1, max_size=3)
outsider = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(EVERYONE))
sign_op = st.tuples(st.just("sign"), repo_i, st.sampled_from(TAGS), st.sampled_from(["targets", *ROLES, *ROLES]),
                    picks, outsider, st.sampled_from([FAR, FAR, *EXPIRES]), st.integers(0, 9).map(lambda x: x == 0))
# the operations of the verifiers' differential test; ("check",) asks it to compare there
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
# ... and those that only the folds' differential test needs (the verifiers see only
# what a fold accepted, so refused events add nothing there)
REFUSED_OPS = st.one_of(
    st.tuples(st.just("replay"), st.integers(0, 10**6)),
    st.tuples(st.just("stale"), repo_i, st.sampled_from(TAGS), st.integers(0, 1), picks),
    st.tuples(st.just("odd"), repo_i, st.sampled_from(sorted(ODD)), picks),
)
START = st.fixed_dictionaries({
    "root_thr": st.integers(1, 2), "targets_keys": keys_from(TARGETS, 2),
    "expires": st.sampled_from([FAR, FAR, NOW + 5]), "a_keys": keys_from(SIGNERS, 3), "a_thr": st.integers(1, 2),
})
