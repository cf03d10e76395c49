"""Who may report a key compromised: the authority table of docs/SECURITY.md, as data.

Finding 3 of issue 8: a threshold of targets (or of root) could report *any* key, so one
targets key reported every root key compromised and the real root holders could no
longer rotate. Authority flows down, never up: a report needs the threshold of a role
at or above every role that holds, or ever held, the key. Each row: the key reported,
who signs the report, the fold's answer. Rows run on both crypto backends.
"""
from __future__ import annotations

import pytest

from sim import Sim, key

R1, R2, R3 = key("au-root1"), key("au-root2"), key("au-root3")
N1, N2 = key("au-newroot1"), key("au-newroot2")
T1, T2 = key("au-targets1"), key("au-targets2")
A1, A2 = key("au-alice1"), key("au-alice2")
B1 = key("au-bob1")
S = key("au-shared")                       # held by targets/alice and targets/bob
X = key("au-stranger")
KEYS = {k: v for k, v in globals().items() if len(k) <= 2 and k.isupper() and hasattr(v, "keyid")}


def setup(s: Sim) -> None:
    """root 2-of-{R1,R2,R3}; targets 1-of-{T1}; targets/alice {A1,A2,S}; targets/bob {B1,S};
    targets/carol {T2}, a targets key also given to a signer; then T2 joins targets too."""
    assert s.create([R1, R2, R3], [T1], root_threshold=2) == "OK"
    assert s.set_role("targets/alice", [A1, A2, S], [T1]) == "OK"
    assert s.set_role("targets/bob", [B1, S], [T1]) == "OK"
    assert s.set_role("targets/carol", [T2], [T1]) == "OK"
    assert s.set_role("targets", [T1, T2], [R1, R2]) == "OK"


# key reported -> {who signs the report: the fold's answer}
AUTHORITY = {
    # a root key: root only
    "R3": {"R1 R2": "OK", "R1": "THRESHOLD_NOT_MET", "T1": "NOT_AUTHORISED", "A1": "NOT_AUTHORISED",
           "X": "UNKNOWN_KEY"},
    "R1": {"R1 R2": "OK"},                                   # reporting itself, with its peer
    # a targets key: root or targets
    "T1": {"R1 R3": "OK", "T1": "OK", "A1": "NOT_AUTHORISED"},
    "T2": {"T2": "OK", "A1": "NOT_AUTHORISED"},              # held by targets and by a signer
    # a delegated signer's key: root, targets, or that signer role itself
    "A2": {"R1 R2": "OK", "T1": "OK", "A1": "OK", "B1": "NOT_AUTHORISED"},
    "S": {"A1": "NOT_AUTHORISED", "T1": "OK"},               # held by two signers: not by one of them
    "X": {"R1 R2": "UNKNOWN_KEY"},                           # a key the repository never held
}
ROWS = [(k, signers, res) for k, by in AUTHORITY.items() for signers, res in by.items()]


@pytest.mark.parametrize("reported,signers,expected", ROWS, ids=[f"{k} by {s}" for k, s, _ in ROWS])
def test_authority_table(reported: str, signers: str, expected: str, crypto) -> None:
    s = Sim(crypto=crypto)
    setup(s)
    assert s.compromise(KEYS[reported], 0, [KEYS[n] for n in signers.split()]) == expected


def test_an_old_root_key_stays_a_root_key(crypto) -> None:
    """A key rotated out of root still reaches back to what it signed as root: only
    root may report it, also after the rotation."""
    s = Sim(crypto=crypto)
    setup(s)
    assert s.rotate_root([N1, N2], 2, [R1, R2, N1, N2]) == "OK"
    assert s.compromise(R3, 0, [T1]) == "NOT_AUTHORISED"
    assert s.compromise(R3, 0, [N1, N2]) == "OK"


def test_targets_cannot_lock_out_the_root_holders(crypto) -> None:
    """The finding's attack: one targets key reports every root key; every report is
    refused with a named reason, and the real root holders can still rotate."""
    s = Sim(crypto=crypto)
    setup(s)
    for k in (R1, R2, R3):
        assert s.compromise(k, 0, [T1]) == "NOT_AUTHORISED"
        assert s.last_reject is not None and "authority flows down" in str(s.last_reject)
    assert s.rotate_root([N1, N2], 2, [R1, R2, N1, N2]) == "OK"
    assert s.set_role("targets", [T2], [N1, N2]) == "OK"


def test_a_removed_signer_cannot_report() -> None:
    s = Sim()
    setup(s)
    assert s.remove_role("targets/alice", [T1]) == "OK"
    assert s.compromise(A2, 0, [A1]) == "UNKNOWN_KEY"
    assert s.compromise(A2, 0, [T1]) == "OK"


def test_a_signer_reporting_its_own_key_through_the_log(tmp_path) -> None:
    """The pipeline, the index and log verify take a report signed by a delegated
    signer (the new authority row) like any other."""
    from sim import DIGEST, FAR
    from trustlog.core.events import ImageSigned, KeyCompromised, RepoCreated, RoleKeysSet, sign_event
    from trustlog.ingest.logcheck import verify_log
    from trustlog.ingest.pipeline import TrustLog

    repo = "registry.example.com/team/app"
    envs = [
        sign_event(RepoCreated(repo, 1, 0, [R1.public_key], 1, [T1.public_key], 1, FAR), [R1]),
        sign_event(RoleKeysSet(repo, 2, 0, "targets/alice", [A1.public_key, A2.public_key], 1, FAR, ["*"]), [T1]),
        sign_event(ImageSigned(repo, 3, 0, "targets/alice", "v1", DIGEST, 1, FAR), [A2]),
        sign_event(KeyCompromised(repo, 4, 0, A2.keyid, 0), [A1]),
        sign_event(KeyCompromised(repo, 5, 0, T1.keyid, 0), [A1]),       # not its key: refused
    ]
    with TrustLog(tmp_path) as tl:
        r = tl.ingest_batch([(e.to_bytes(), None) for e in envs])
        assert (r.accepted, r.rejected, r.last_reject[0]) == (4, 1, "NOT_AUTHORISED")
        postings = tl.index.repo_postings(repo)
        assert postings[-1].a == tl.state.repos[repo].roles["targets/alice"]   # the report's authority
    with TrustLog(tmp_path) as tl:
        assert A2.keyid in tl.state.repos[repo].compromised_keyids
    assert verify_log(tmp_path).ok
