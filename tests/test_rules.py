"""Every trust rule as a table: a scenario, then the expected verdict or rejection.

Keys, thresholds and who signed are data, as python-tuf's
``tests/test_updater_key_rotations.py`` writes them: ``V(keys=[0, 1, 2], threshold=2,
sigs=[0, 2], res=...)`` is a key set of keys 0, 1 and 2 with threshold 2, signed by
keys 0 and 2, and what must come of it (:data:`ROOT_ROTATIONS`, :data:`ROLE_KEYS`).
The other rules are scenarios: each row builds a history in the in-memory simulator
(tests/sim.py), and the last step's outcome, a rejection reason from the fold or a
verdict code from the verifier, is compared with the row's expectation. Rows run on
both crypto backends (and so on both evaluation engines).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sim import DIGEST, FAR, NOW, Sim, flip_bit, key, resign
from trustlog.core.events import Envelope, ImageSigned, RepoCreated, Signature, sign_event
from trustlog.core.keys import SigningKey
from trustlog.core.state import TrustState

R1, R2, R3 = key("root1"), key("root2"), key("root3")
N1, N2 = key("newroot1"), key("newroot2")
T1, T2 = key("targets1"), key("targets2")
A1, A2 = key("alice1"), key("alice2")
B1 = key("bob1")
X = key("stranger")
P1 = key("p256-1", "ecdsa-p256")
P1_DER = key("p256-1-der", "ecdsa-p256-der")


# -- key sets, thresholds and signers as data ----------------------------------------------

# keys 0-7: Ed25519; 8 and 9: one P-256 key under its two key types (two key ids, one key)
K = [key(f"rule-k{i}") for i in range(8)] + [key("rule-p256", "ecdsa-p256")]
K.append(SigningKey("ecdsa-p256-der", K[8].private))


@dataclass(frozen=True)
class V:
    """One version of a key set: its ``keys`` and ``threshold`` (indices into :data:`K`),
    the keys that sign (``sigs``; a repeat is a second signature by the same key), and
    ``res``, what must come of it: "OK" / "VALID", or the rejection reason."""

    keys: list[int]
    threshold: int
    sigs: list[int]
    res: str = "OK"


def _k(ix: list[int]) -> list[SigningKey]:
    return [K[i] for i in ix]


# root versions: the first creates the repository, each later one is a RootRotated that
# needs the old root's threshold AND its own
ROOT_ROTATIONS: dict[str, list[V]] = {
    "1-of-1 key rotation": [V([1], 1, [1]), V([2], 1, [2, 1]), V([2], 1, [2])],
    "1-of-1 key rotation, unused signatures": [V([1], 1, [3, 1, 4]), V([2], 1, [3, 2, 1, 4]), V([2], 1, [3, 2, 4])],
    "1-of-1 key rotation fails: not signed with the old key": [
        V([1], 1, [1]), V([2], 1, [2, 3, 4], "ROOT_OLD_THRESHOLD")],
    "1-of-1 key rotation fails: not signed with the new key": [
        V([1], 1, [1]), V([2], 1, [1, 3, 4], "ROOT_NEW_THRESHOLD")],
    "3-of-5, signed with different key combinations": [
        V([0, 1, 2, 3, 4], 3, [0, 2, 4]), V([0, 1, 2, 3, 4], 3, [0, 4, 1]), V([0, 1, 2, 3, 4], 3, [0, 1, 3])],
    "3-of-5, one key rotated": [V([0, 1, 2, 3, 4], 3, [0, 2, 4]), V([0, 1, 3, 4, 5], 3, [0, 4, 1])],
    "3-of-5, one key rotated fails: not signed by 3 new keys": [
        V([0, 1, 2, 3, 4], 3, [0, 2, 4]), V([0, 1, 3, 4, 5], 3, [0, 2, 4], "ROOT_NEW_THRESHOLD")],
    "3-of-5, one key rotated fails: not signed by 3 old keys": [
        V([0, 1, 2, 3, 4], 3, [0, 2, 4]), V([0, 1, 3, 4, 5], 3, [0, 4, 5], "ROOT_OLD_THRESHOLD")],
    "3-of-5, all keys rotated": [V([0, 1, 2, 3, 4], 3, [0, 2, 4]), V([5, 6, 7, 1, 2], 3, [0, 2, 4, 5, 6, 7])],
    "1-of-3 threshold raised to 2-of-3": [V([1, 2, 3], 1, [1]), V([1, 2, 3], 2, [1, 2])],
    "1-of-3 raised to 2-of-3 fails: the new threshold is not reached": [
        V([1, 2, 3], 1, [1]), V([1, 2, 3], 2, [2], "ROOT_NEW_THRESHOLD")],
    "2-of-3 lowered to 1-of-3": [V([1, 2, 3], 2, [1, 2]), V([1, 2, 3], 1, [1, 2]), V([1, 2, 3], 1, [1])],
    "2-of-3 lowered to 1-of-3 fails: the old threshold is not reached": [
        V([1, 2, 3], 2, [1, 2]), V([1, 2, 3], 1, [1], "ROOT_OLD_THRESHOLD")],
    "1-of-1 grown to 2-of-2": [V([1], 1, [1]), V([1, 2], 2, [1, 2])],
    "a key signing twice counts once": [V([1, 2], 2, [1, 2]), V([3, 4], 2, [1, 1, 3, 4], "ROOT_OLD_THRESHOLD")],
    "two key ids of one key count once": [V([8, 9, 1], 2, [8, 1]), V([3], 1, [8, 9, 3], "ROOT_OLD_THRESHOLD")],
    "created short of its threshold": [V([1, 2], 2, [1], "THRESHOLD_NOT_MET")],
    "created signed by no root key": [V([1], 1, [2], "UNKNOWN_KEY")],
    "created with a threshold above its keys": [V([1], 2, [1], "INVALID_KEYS")],
    "created with a threshold above its distinct keys": [V([8, 9], 2, [8, 9], "INVALID_KEYS")],
    "created with a threshold of 0": [V([1], 0, [1], "INVALID_KEYS")],
    "rotated to a threshold of 0": [V([1], 1, [1]), V([2], 0, [1, 2], "INVALID_KEYS")],
    "rotated to no keys": [V([1], 1, [1]), V([], 1, [1], "INVALID_KEYS")],
}


@pytest.mark.parametrize("versions", ROOT_ROTATIONS.values(), ids=ROOT_ROTATIONS.keys())
def test_root_rotation(versions: list[V], crypto) -> None:
    """Every version but the last must be accepted, the last gives its ``res``; then the
    root in force is the last accepted one: its threshold can act, a key it dropped cannot."""
    s = Sim(crypto=crypto)
    for i, v in enumerate(versions):
        if i == 0:
            got = s.create(_k(v.keys), [T1], root_threshold=v.threshold, signers=_k(v.sigs))
        else:
            got = s.rotate_root(_k(v.keys), v.threshold, _k(v.sigs))
        assert got == (v.res if i == len(versions) - 1 else "OK"), (i, s.last_reject)
    in_force = [v for v in versions if v.res == "OK"]
    if not in_force:
        assert s.repo not in s.state.repos
        return
    root = in_force[-1]
    signers = [i for i in dict.fromkeys(root.sigs) if i in root.keys]
    dropped = [i for v in in_force for i in v.keys if i not in root.keys and K[i].keyid not in
               {K[j].keyid for j in root.keys}]
    if dropped:
        assert s.set_role("targets", [T2], _k(dropped)) == "UNKNOWN_KEY"
    assert s.set_role("targets", [T2], _k(signers)) == "OK"


# a role's key sets: each version is set by its parent (root for targets, targets for a
# delegated signer), then a tag is signed by ``sigs``: "VALID" (accepted, and it
# verifies) or the reason the fold refuses the tag (or the key set itself)
ROLE_KEYS: dict[str, list[V]] = {
    "1-of-1": [V([1], 1, [1], "VALID")],
    "1-of-1, unused signatures": [V([1], 1, [3, 1, 4], "VALID")],
    "1-of-1 key rotation": [V([1], 1, [1], "VALID"), V([2], 1, [2], "VALID")],
    "1-of-1 key rotation: the old key cannot sign": [V([1], 1, [1], "VALID"), V([2], 1, [1, 3, 4], "UNKNOWN_KEY")],
    "not signed with the role's key": [V([2], 1, [1, 3, 4], "UNKNOWN_KEY")],
    "no signatures": [V([1], 1, [], "UNKNOWN_KEY")],
    "3-of-5, signed by keys of which one is not the role's": [V([0, 1, 3, 4, 5], 3, [0, 2, 4], "THRESHOLD_NOT_MET")],
    "3-of-5, two signatures": [V([0, 1, 3, 4, 5], 3, [0, 4], "THRESHOLD_NOT_MET")],
    "3-of-5, every key combination": [V([0, 1, 2, 3, 4], 3, sigs, "VALID") for sigs in
                                      ([0, 2, 4], [0, 4, 1], [0, 1, 3], [1, 2, 3], [2, 3, 4])],
    "2-of-2, one key signing twice": [V([1, 2], 2, [1, 1], "THRESHOLD_NOT_MET")],
    "2-of-3, two key ids of one key": [V([8, 9, 1], 2, [8, 9], "THRESHOLD_NOT_MET")],
    "2-of-3, a P-256 key under each key type and an Ed25519 key": [V([8, 9, 1], 2, [9, 1], "VALID")],
    "threshold above the keys": [V([1], 2, [1], "INVALID_KEYS")],
    "threshold above the distinct keys": [V([8, 9], 2, [8, 9], "INVALID_KEYS")],
    "threshold of 0": [V([1], 0, [1], "INVALID_KEYS")],
    "1-of-3 raised to 2-of-3": [V([1, 2, 3], 1, [1], "VALID"), V([1, 2, 3], 2, [1], "THRESHOLD_NOT_MET"),
                                V([1, 2, 3], 2, [1, 2], "VALID")],
}


@pytest.mark.parametrize("role", ["targets", "targets/alice"])
@pytest.mark.parametrize("versions", ROLE_KEYS.values(), ids=ROLE_KEYS.keys())
def test_role_keys(versions: list[V], role: str, crypto) -> None:
    s = Sim(crypto=crypto)
    base(s)
    parent = [R1, R2] if role == "targets" else [T1]
    for i, v in enumerate(versions):
        got = s.set_role(role, _k(v.keys), parent, threshold=v.threshold, paths=None if role == "targets" else ["*"])
        if got == "OK":
            got = s.sign_tag(f"t{i}", _k(v.sigs), role=role)
            if got == "OK":
                got = s.verify(f"t{i}")
        assert got == v.res, (i, s.last_reject)


# -- scenarios --------------------------------------------------------------------------


def base(s: Sim) -> None:
    assert s.create([R1, R2, R3], [T1, T2], root_threshold=2, targets_threshold=1) == "OK"


def with_alice(s: Sim, paths: list[str] | None = None, threshold: int = 1) -> None:
    base(s)
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=paths or ["v*"], threshold=threshold) == "OK"


def sc_valid(s: Sim) -> str:
    base(s)
    s.sign_tag("v1", [T1])
    return s.verify("v1")


def sc_bad_signature(s: Sim) -> str:
    base(s)
    env = sign_event(ImageSigned(s.repo, 2, 0, "targets", "v1", DIGEST, 1, 4_000_000_000), [T1])
    forged = Envelope(env.payload, [Signature(T1.keyid, flip_bit(env.signatures[0].sig, 5))])
    return s.submit(forged)


def sc_same_key_two_keyids_counted_once(s: Sim) -> str:
    # one P-256 key listed under both Notary (raw) and TUF (DER) key types: two key ids
    base(s)
    der_twin = key("p256-1", "ecdsa-p256")
    from trustlog.core.keys import SigningKey
    twin = SigningKey("ecdsa-p256-der", der_twin.private)
    assert twin.keyid != der_twin.keyid
    assert s.set_role("targets/ci", [der_twin, twin], [T1], threshold=2, paths=["*"]) == "INVALID_KEYS"
    # with a genuine second key the threshold of 2 is allowed, and the twin still counts once
    assert s.set_role("targets/ci", [der_twin, twin, A1], [T1], threshold=2, paths=["*"]) == "OK"
    return s.sign_tag("v1", [der_twin, twin], role="targets/ci")


def sc_old_root_after_rotation(s: Sim) -> str:
    base(s)
    assert s.rotate_root([N1, N2], 2, [R1, R2, N1, N2]) == "OK"
    return s.set_role("targets", [T2], [R1, R2])


def sc_version_rollback(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1]) == "OK"
    return s.sign_tag("v1", [T1], digest="sha256:" + "cd" * 32, version=2)


def sc_version_gap(s: Sim) -> str:
    base(s)
    return s.sign_tag("v1", [T1], version=1_700_000_000_123)  # a time-based version (sign without a log)


def sc_repo_not_at_version_one(s: Sim) -> str:
    s.version = 4
    return s.submit(s.signed(RepoCreated(s.repo, 5, 0, [R1.public_key], 1, [T1.public_key], 1, FAR), [R1]))


# -- concurrent signers and replays (versions are scoped: docs/SECURITY.md) -------------


def sc_two_tags_same_version(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1], version=2) == "OK"
    assert s.sign_tag("v2", [T2], version=2) == "OK"  # another signer, same starting state
    return s.verify("v2")


def sc_same_tag_same_version(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1], version=2) == "OK"
    return s.sign_tag("v1", [T2], digest="sha256:" + "cd" * 32, version=2)


def sc_two_roles_at_once(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["a*"], version=2) == "OK"
    assert s.set_role("targets/bob", [B1], [T1], paths=["b*"], version=2) == "OK"
    assert s.sign_tag("a1", [A1], role="targets/alice", version=3) == "OK"
    assert s.sign_tag("b1", [B1], role="targets/bob", version=3) == "OK"
    return "VALID" if s.verify("a1") == s.verify("b1") == "VALID" else "BROKEN"


def sc_replay_old_signing(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1], version=2) == "OK"
    old = s.sent[-1]
    assert s.sign_tag("v1", [T1], digest="sha256:" + "cd" * 32, version=3) == "OK"
    assert s.submit(old) == "VERSION_ROLLBACK"
    return s.verify("v1", "sha256:" + "cd" * 32)


def sc_replay_resurrects_deleted(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1], version=2) == "OK"
    old = s.sent[-1]
    assert s.delete_tag("v1", [T1], version=3) == "OK"
    assert s.submit(old) == "VERSION_ROLLBACK"
    return s.verify("v1")


def sc_resign_after_delete(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1], version=2) == "OK"
    assert s.delete_tag("v1", [T1], version=3) == "OK"
    assert s.sign_tag("v1", [T1], version=3) == "VERSION_ROLLBACK"  # not above the deletion
    return s.sign_tag("v1", [T1], version=4)


def sc_replay_removed_role(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["v*"], version=2) == "OK"
    old = s.sent[-1]
    assert s.remove_role("targets/alice", [T1], version=3) == "OK"
    assert s.submit(old) == "VERSION_ROLLBACK"
    return s.sign_tag("v1", [A1], role="targets/alice")


def sc_replay_old_root(s: Sim) -> str:
    base(s)
    assert s.set_role("targets", [T2], [R1, R2], version=2) == "OK"
    old = s.sent[-1]
    assert s.set_role("targets", [T1], [R1, R2], version=3) == "OK"
    return s.submit(old)


def sc_replay_compromise_report(s: Sim) -> str:
    base(s)
    assert s.compromise(T2, 0, [R1, R2], version=2) == "OK"
    return s.submit(s.sent[-1])


def sc_expired_signature(s: Sim) -> str:
    base(s)
    s.sign_tag("v1", [T1], expires=NOW - 1)
    return s.verify("v1")


def sc_expired_root(s: Sim) -> str:
    assert s.create([R1], [T1], expires=NOW - 10) == "OK"
    s.sign_tag("v1", [T1])
    return s.verify("v1")


def sc_expired_delegation(s: Sim) -> str:
    base(s)
    s.set_role("targets/alice", [A1], [T1], paths=["*"], expires=NOW - 5)
    s.sign_tag("v1", [A1], role="targets/alice")
    return s.verify("v1")


def sc_signer_outside_patterns(s: Sim) -> str:
    with_alice(s, paths=["v*"])
    return s.sign_tag("latest", [A1], role="targets/alice")


def sc_signer_inside_patterns(s: Sim) -> str:
    with_alice(s, paths=["v*"])
    s.sign_tag("v2.1", [A1], role="targets/alice")
    return s.verify("v2.1")


def sc_removed_signer_cannot_sign(s: Sim) -> str:
    with_alice(s)
    assert s.remove_role("targets/alice", [T1]) == "OK"
    return s.sign_tag("v1", [A1], role="targets/alice")


def sc_removed_signer_tags_fall(s: Sim) -> str:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.remove_role("targets/alice", [T1]) == "OK"
    return s.verify("v1")


def verified(history: Callable[[Sim], None], tag: str) -> Callable[[Sim], str]:
    """A scenario: ``history``, then the verdict on ``tag`` (rows that share a history)."""
    def scenario(s: Sim) -> str:
        history(s)
        return s.verify(tag)
    return scenario


def compromised_between_v1_and_v2(s: Sim) -> None:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    since = s.now() + 1
    assert s.sign_tag("v2", [A1], role="targets/alice") == "OK"
    assert s.compromise(A1, since, [T1]) == "OK"


def sc_signing_after_compromise_report(s: Sim) -> str:
    with_alice(s)
    assert s.compromise(A1, 0, [T1]) == "OK"
    return s.sign_tag("v1", [A1], role="targets/alice")


def sc_claimed_time_does_not_matter(s: Sim) -> str:
    # the signer claims an early issued_at; log time decides
    with_alice(s)
    since = s.now() + 1
    s.clock += 10
    assert s.sign_tag("v1", [A1], role="targets/alice", issued_at=1) == "OK"
    assert s.compromise(A1, since, [T1]) == "OK"
    return s.verify("v1")


def sc_delegation_by_compromised_key(s: Sim) -> str:
    # T1 delegates to alice after T1's compromise time: alice's tags fall with it
    base(s)
    since = s.now() + 1
    assert s.set_role("targets/alice", [A1], [T1], paths=["*"]) == "OK"
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.compromise(T1, since, [R1, R2]) == "OK"
    return s.verify("v1")


def sc_delegation_before_compromise_stands(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["*"]) == "OK"
    since = s.now() + 1
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.compromise(T1, since, [R1, R2]) == "OK"
    return s.verify("v1")


def sc_tampered_payload(s: Sim) -> str:
    base(s)
    env = sign_event(ImageSigned(s.repo, 2, 0, "targets", "v1", DIGEST, 1, 4_000_000_000), [T1])
    tampered = resign(env, env.payload.replace(b"ab" * 4, b"cd" * 4, 1))
    return s.submit(tampered)


def sc_tampered_noncanonical(s: Sim) -> str:
    base(s)
    env = sign_event(ImageSigned(s.repo, 2, 0, "targets", "v1", DIGEST, 1, 4_000_000_000), [T1])
    return s.submit(resign(env, env.payload + b"\x00"))


def sc_digest_mismatch(s: Sim) -> str:
    base(s)
    s.sign_tag("v1", [T1])
    return s.verify("v1", "sha256:" + "00" * 32)


def sc_unknown_tag(s: Sim) -> str:
    base(s)
    return s.verify("nope")


def sc_deleted_tag(s: Sim) -> str:
    base(s)
    s.sign_tag("v1", [T1])
    assert s.delete_tag("v1", [T1]) == "OK"
    return s.verify("v1")


def sc_repo_twice(s: Sim) -> str:
    base(s)
    s.version = 0
    return s.create([R1, R2, R3], [T1], root_threshold=2)


def sc_ecdsa_signer(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/ci", [P1, P1_DER], [T1], paths=["*"]) == "OK"
    assert s.sign_tag("raw", [P1], role="targets/ci") == "OK"
    assert s.verify("raw") == "VALID"
    assert s.sign_tag("der", [P1_DER], role="targets/ci") == "OK"
    return s.verify("der")


def sc_rsa_signer(s: Sim) -> str:
    base(s)
    rk = key("rsa-1", "rsa-pss-sha256")
    assert s.set_role("targets/rsa", [rk], [T1], paths=["*"]) == "OK"
    assert s.sign_tag("v1", [rk], role="targets/rsa") == "OK"
    return s.verify("v1")


def sc_targets_rotation(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1]) == "OK"
    assert s.set_role("targets", [T2], [R1, R3]) == "OK"
    assert s.sign_tag("v2", [T1]) == "UNKNOWN_KEY"
    assert s.sign_tag("v2", [T2]) == "OK"
    return s.verify("v1")


# -- re-delegation (issue 8, finding 4): a later change of the signing role ----------------
# A policy change (paths narrowed, threshold raised, an expiry) applies to every tag
# under the role, old and new; a key rotation keeps what the outgoing key signed before
# it; a compromise report is the revocation. docs/SECURITY.md, "Re-delegation".


def paths_narrowed_after_latest_and_v1(s: Sim) -> None:
    with_alice(s, paths=["*"])
    assert s.sign_tag("latest", [A1], role="targets/alice") == "OK"
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"]) == "OK"


def sc_paths_narrowed_then_widened(s: Sim) -> str:
    with_alice(s, paths=["*"])
    assert s.sign_tag("latest", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"]) == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*", "latest"]) == "OK"
    return s.verify("latest")


def threshold_raised_after_v1_by_one_and_v2_by_two(s: Sim) -> None:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.sign_tag("v2", [A1, A2], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"], threshold=2) == "OK"


def sc_targets_threshold_raised(s: Sim) -> str:
    base(s)
    assert s.sign_tag("v1", [T1]) == "OK"
    assert s.set_role("targets", [T1, T2], [R1, R2], threshold=2) == "OK"
    return s.verify("v1")


def sc_signing_grant_expired_then_reset(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["*"], expires=NOW - 5) == "OK"
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1], [T1], paths=["*"]) == "OK"   # re-set: a fresh expiry
    return s.verify("v1")


def sc_reset_role_expires(s: Sim) -> str:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"], expires=NOW - 5) == "OK"
    return s.verify("v1")


def sc_rotation_keeps_old_tags(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["v*"]) == "OK"
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A2], [T1], paths=["v*"]) == "OK"   # A1 rotated out
    return s.verify("v1")


def sc_rotation_then_compromise_revokes(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["v*"]) == "OK"
    since = s.now() + 1
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A2], [T1], paths=["v*"]) == "OK"
    assert s.compromise(A1, since, [T1]) == "OK"
    return s.verify("v1")


def sc_rotation_then_later_compromise_keeps(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["v*"]) == "OK"
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A2], [T1], paths=["v*"]) == "OK"
    assert s.compromise(A1, s.now() + 1, [T1]) == "OK"
    return s.verify("v1")


def sc_rotation_with_narrowed_paths(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["*"]) == "OK"
    assert s.sign_tag("latest", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A2], [T1], paths=["v*"]) == "OK"
    return s.verify("latest")


def sc_removed_then_readded(s: Sim) -> str:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.remove_role("targets/alice", [T1]) == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"]) == "OK"
    return s.verify("v1")


SCENARIOS: list[tuple[str, Callable[[Sim], str], str]] = [
    ("valid tag", sc_valid, "VALID"),
    ("bad signature", sc_bad_signature, "BAD_SIGNATURE"),
    ("two key ids of one key counted once", sc_same_key_two_keyids_counted_once, "THRESHOLD_NOT_MET"),
    ("old root after rotation", sc_old_root_after_rotation, "UNKNOWN_KEY"),
    ("version rollback", sc_version_rollback, "VERSION_ROLLBACK"),
    ("a version gap is fine", sc_version_gap, "OK"),
    ("repository not created at version 1", sc_repo_not_at_version_one, "VERSION_SKIP"),
    ("two tags signed from the same state", sc_two_tags_same_version, "VALID"),
    ("one tag signed twice at one version", sc_same_tag_same_version, "VERSION_ROLLBACK"),
    ("two delegated roles publish at once", sc_two_roles_at_once, "VALID"),
    ("replayed old signing rolls nothing back", sc_replay_old_signing, "VALID"),
    ("replay cannot resurrect a deleted tag", sc_replay_resurrects_deleted, "TAG_DELETED"),
    ("a deleted tag re-signed above its deletion", sc_resign_after_delete, "OK"),
    ("replay cannot restore a removed role", sc_replay_removed_role, "UNKNOWN_ROLE"),
    ("replayed old targets key set", sc_replay_old_root, "VERSION_ROLLBACK"),
    ("replayed compromise report", sc_replay_compromise_report, "VERSION_ROLLBACK"),
    ("expired signature", sc_expired_signature, "EXPIRED"),
    ("expired root", sc_expired_root, "EXPIRED"),
    ("expired delegation", sc_expired_delegation, "EXPIRED"),
    ("signer outside its patterns", sc_signer_outside_patterns, "OUTSIDE_PATTERNS"),
    ("signer inside its patterns", sc_signer_inside_patterns, "VALID"),
    ("removed signer cannot sign", sc_removed_signer_cannot_sign, "UNKNOWN_ROLE"),
    ("removed signer's tags fall", sc_removed_signer_tags_fall, "ROLE_REMOVED"),
    ("signed before compromise stays valid", verified(compromised_between_v1_and_v2, "v1"), "VALID"),
    ("signed after compromise falls", verified(compromised_between_v1_and_v2, "v2"), "KEY_COMPROMISED"),
    ("signing after a compromise report", sc_signing_after_compromise_report, "KEY_COMPROMISED"),
    ("claimed issued_at does not decide", sc_claimed_time_does_not_matter, "KEY_COMPROMISED"),
    ("delegation by compromised key falls", sc_delegation_by_compromised_key, "DELEGATION_COMPROMISED"),
    ("delegation before compromise stands", sc_delegation_before_compromise_stands, "VALID"),
    ("tampered payload bytes", sc_tampered_payload, "BAD_SIGNATURE"),
    ("non-canonical payload", sc_tampered_noncanonical, "MALFORMED"),
    ("digest mismatch", sc_digest_mismatch, "DIGEST_MISMATCH"),
    ("unknown tag", sc_unknown_tag, "UNKNOWN_TAG"),
    ("deleted tag", sc_deleted_tag, "TAG_DELETED"),
    ("repository created twice", sc_repo_twice, "REPOSITORY_EXISTS"),
    ("ECDSA raw and DER signers", sc_ecdsa_signer, "VALID"),
    ("RSA-PSS signer", sc_rsa_signer, "VALID"),
    ("targets rotation keeps old tags", sc_targets_rotation, "VALID"),
    # re-delegation
    ("paths narrowed: an old tag outside them falls", verified(paths_narrowed_after_latest_and_v1, "latest"),
     "OUTSIDE_PATTERNS"),
    ("paths narrowed: an old tag inside them stays", verified(paths_narrowed_after_latest_and_v1, "v1"), "VALID"),
    ("paths narrowed, then widened again", sc_paths_narrowed_then_widened, "VALID"),
    ("threshold raised above an old tag's signatures",
     verified(threshold_raised_after_v1_by_one_and_v2_by_two, "v1"), "THRESHOLD_NOT_MET"),
    ("threshold raised, the old tag has enough", verified(threshold_raised_after_v1_by_one_and_v2_by_two, "v2"),
     "VALID"),
    ("targets threshold raised", sc_targets_threshold_raised, "THRESHOLD_NOT_MET"),
    ("signing grant expired, role re-set", sc_signing_grant_expired_then_reset, "EXPIRED"),
    ("role re-set with an expiry now past", sc_reset_role_expires, "EXPIRED"),
    ("key rotation keeps what the old key signed", sc_rotation_keeps_old_tags, "VALID"),
    ("rotation, then compromise of the old key", sc_rotation_then_compromise_revokes, "KEY_COMPROMISED"),
    ("rotation, then a compromise after the tag", sc_rotation_then_later_compromise_keeps, "VALID"),
    ("rotation with narrowed paths", sc_rotation_with_narrowed_paths, "OUTSIDE_PATTERNS"),
    ("removed and re-added role", sc_removed_then_readded, "ROLE_REMOVED"),
]


@pytest.mark.parametrize("name,scenario,expected", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_rule(name: str, scenario: Callable[[Sim], str], expected: str, crypto) -> None:
    s = Sim(crypto=crypto)
    assert scenario(s) == expected


@pytest.mark.parametrize("pinned_keys,expected,origin", [
    (None, "OK", "tofu"),
    ([R1, R2, R3], "OK", "pinned"),
    ([R1, X], "PIN_MISMATCH", None),
])
def test_pins_and_trust_on_first_use(pinned_keys, expected: str, origin: str | None) -> None:
    from trustlog.core.state import Pin

    pins = [] if pinned_keys is None else [Pin("registry.example.com/team/*", frozenset(k.keyid for k in pinned_keys))]
    s = Sim(state=TrustState(pins))
    assert s.create([R1, R2, R3], [T1], root_threshold=2) == expected
    if origin is not None:
        assert s.state.repos[s.repo].origin == origin


def test_rejection_leaves_state_unchanged() -> None:
    s = Sim()
    base(s)
    before = (s.state.version, s.state.repos[s.repo].version, dict(s.state.repos[s.repo].roles))
    assert s.rotate_root([N1, N2], 2, [R1, N1, N2]) == "ROOT_OLD_THRESHOLD"
    assert (s.state.version, s.state.repos[s.repo].version, dict(s.state.repos[s.repo].roles)) == before


def test_rejection_messages_name_the_problem() -> None:
    s = Sim()
    with_alice(s, paths=["v*"])
    assert s.sign_tag("latest", [A1], role="targets/alice") == "OUTSIDE_PATTERNS"
    assert s.last_reject is not None
    assert "latest" in str(s.last_reject) and "v*" in str(s.last_reject)
