"""Every trust rule as a table: a scenario, then the expected verdict or rejection.

Each row builds a history in the in-memory simulator (tests/sim.py). The last step's
outcome — a rejection reason from the fold, or a verdict code from the verifier — is
compared with the row's expectation. Rows run on both crypto backends.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest

from sim import DIGEST, FAR, NOW, Sim, flip_bit, key, resign
from trustlog.core.events import Envelope, ImageSigned, RepoCreated, Signature, sign_event
from trustlog.core.state import TrustState

R1, R2, R3 = key("root1"), key("root2"), key("root3")
N1, N2 = key("newroot1"), key("newroot2")
T1, T2 = key("targets1"), key("targets2")
A1, A2 = key("alice1"), key("alice2")
B1 = key("bob1")
X = key("stranger")
P1 = key("p256-1", "ecdsa-p256")
P1_DER = key("p256-1-der", "ecdsa-p256-der")


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


def sc_unknown_key(s: Sim) -> str:
    base(s)
    return s.sign_tag("v1", [X])


def sc_no_signatures(s: Sim) -> str:
    base(s)
    env = sign_event(ImageSigned(s.repo, 2, 0, "targets", "v1", DIGEST, 1, 4_000_000_000), [])
    return s.submit(env)


def sc_threshold_not_met(s: Sim) -> str:
    with_alice(s, threshold=2)
    return s.sign_tag("v1", [A1], role="targets/alice")


def sc_threshold_met(s: Sim) -> str:
    with_alice(s, threshold=2)
    s.sign_tag("v1", [A1, A2], role="targets/alice")
    return s.verify("v1")


def sc_duplicate_signature_counted_once(s: Sim) -> str:
    with_alice(s, threshold=2)
    env = sign_event(ImageSigned(s.repo, 3, 0, "targets/alice", "v1", DIGEST, 1, 4_000_000_000), [A1])
    doubled = Envelope(env.payload, env.signatures * 2)
    return s.submit(doubled)


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


def sc_root_rotation_ok(s: Sim) -> str:
    base(s)
    assert s.rotate_root([N1, N2], 2, [R1, R2, N1, N2]) == "OK"
    return s.set_role("targets", [T2], [N1, N2])


def sc_root_rotation_missing_old(s: Sim) -> str:
    base(s)
    return s.rotate_root([N1, N2], 2, [R1, N1, N2])


def sc_root_rotation_missing_new(s: Sim) -> str:
    base(s)
    return s.rotate_root([N1, N2], 2, [R1, R2, N1])


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


def sc_signed_before_compromise(s: Sim) -> str:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    since = s.now() + 1
    assert s.sign_tag("v2", [A1], role="targets/alice") == "OK"
    assert s.compromise(A1, since, [T1]) == "OK"
    return s.verify("v1")


def sc_signed_after_compromise(s: Sim) -> str:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    since = s.now() + 1
    assert s.sign_tag("v2", [A1], role="targets/alice") == "OK"
    assert s.compromise(A1, since, [T1]) == "OK"
    return s.verify("v2")


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


def sc_threshold_zero(s: Sim) -> str:
    return s.create([R1], [T1], targets_threshold=0)


def sc_empty_keys(s: Sim) -> str:
    return s.create([], [T1], signers=[R1])


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


def sc_paths_narrowed(s: Sim) -> str:
    with_alice(s, paths=["*"])
    assert s.sign_tag("latest", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"]) == "OK"
    return s.verify("latest")


def sc_paths_narrowed_keeps_covered_tags(s: Sim) -> str:
    with_alice(s, paths=["*"])
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"]) == "OK"
    return s.verify("v1")


def sc_paths_narrowed_then_widened(s: Sim) -> str:
    with_alice(s, paths=["*"])
    assert s.sign_tag("latest", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"]) == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*", "latest"]) == "OK"
    return s.verify("latest")


def sc_threshold_raised(s: Sim) -> str:
    with_alice(s)
    assert s.sign_tag("v1", [A1], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"], threshold=2) == "OK"
    return s.verify("v1")


def sc_threshold_raised_tag_has_enough(s: Sim) -> str:
    with_alice(s)
    assert s.sign_tag("v1", [A1, A2], role="targets/alice") == "OK"
    assert s.set_role("targets/alice", [A1, A2], [T1], paths=["v*"], threshold=2) == "OK"
    return s.verify("v1")


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


def sc_rotated_out_key_cannot_sign(s: Sim) -> str:
    base(s)
    assert s.set_role("targets/alice", [A1], [T1], paths=["v*"]) == "OK"
    assert s.set_role("targets/alice", [A2], [T1], paths=["v*"]) == "OK"
    return s.sign_tag("v1", [A1], role="targets/alice")


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
    ("unknown key", sc_unknown_key, "UNKNOWN_KEY"),
    ("no signatures", sc_no_signatures, "UNKNOWN_KEY"),
    ("threshold not met", sc_threshold_not_met, "THRESHOLD_NOT_MET"),
    ("threshold met", sc_threshold_met, "VALID"),
    ("duplicate signature counted once", sc_duplicate_signature_counted_once, "THRESHOLD_NOT_MET"),
    ("two key ids of one key counted once", sc_same_key_two_keyids_counted_once, "THRESHOLD_NOT_MET"),
    ("root rotation with both thresholds", sc_root_rotation_ok, "OK"),
    ("root rotation missing old threshold", sc_root_rotation_missing_old, "ROOT_OLD_THRESHOLD"),
    ("root rotation missing new threshold", sc_root_rotation_missing_new, "ROOT_NEW_THRESHOLD"),
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
    ("signed before compromise stays valid", sc_signed_before_compromise, "VALID"),
    ("signed after compromise falls", sc_signed_after_compromise, "KEY_COMPROMISED"),
    ("signing after a compromise report", sc_signing_after_compromise_report, "KEY_COMPROMISED"),
    ("claimed issued_at does not decide", sc_claimed_time_does_not_matter, "KEY_COMPROMISED"),
    ("delegation by compromised key falls", sc_delegation_by_compromised_key, "DELEGATION_COMPROMISED"),
    ("delegation before compromise stands", sc_delegation_before_compromise_stands, "VALID"),
    ("tampered payload bytes", sc_tampered_payload, "BAD_SIGNATURE"),
    ("non-canonical payload", sc_tampered_noncanonical, "MALFORMED"),
    ("digest mismatch", sc_digest_mismatch, "DIGEST_MISMATCH"),
    ("unknown tag", sc_unknown_tag, "UNKNOWN_TAG"),
    ("deleted tag", sc_deleted_tag, "TAG_DELETED"),
    ("threshold of zero", sc_threshold_zero, "INVALID_KEYS"),
    ("empty key list", sc_empty_keys, "INVALID_KEYS"),
    ("repository created twice", sc_repo_twice, "REPOSITORY_EXISTS"),
    ("ECDSA raw and DER signers", sc_ecdsa_signer, "VALID"),
    ("RSA-PSS signer", sc_rsa_signer, "VALID"),
    ("targets rotation keeps old tags", sc_targets_rotation, "VALID"),
    # re-delegation
    ("paths narrowed: an old tag outside them falls", sc_paths_narrowed, "OUTSIDE_PATTERNS"),
    ("paths narrowed: an old tag inside them stays", sc_paths_narrowed_keeps_covered_tags, "VALID"),
    ("paths narrowed, then widened again", sc_paths_narrowed_then_widened, "VALID"),
    ("threshold raised above an old tag's signatures", sc_threshold_raised, "THRESHOLD_NOT_MET"),
    ("threshold raised, the old tag has enough", sc_threshold_raised_tag_has_enough, "VALID"),
    ("targets threshold raised", sc_targets_threshold_raised, "THRESHOLD_NOT_MET"),
    ("signing grant expired, role re-set", sc_signing_grant_expired_then_reset, "EXPIRED"),
    ("role re-set with an expiry now past", sc_reset_role_expires, "EXPIRED"),
    ("key rotation keeps what the old key signed", sc_rotation_keeps_old_tags, "VALID"),
    ("a rotated-out key cannot sign", sc_rotated_out_key_cannot_sign, "UNKNOWN_KEY"),
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
