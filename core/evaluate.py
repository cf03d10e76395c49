"""Trust status of a signed tag against the current state: the key-chain rules.

Crypto validity (does this signature verify?) is an input here, computed elsewhere and
cacheable forever; everything that depends on the state — delegation, compromise,
removal, expiry — is decided by this module, cheaply, on every verification run.
The compiled verifier implements the same rules over flat arrays and is checked
against this one.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import msgspec

from .keys import key_material_id
from .reasons import Code
from .state import Grant, RepoState, TagEntry
from .verdict_codes import Reason


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One verification request: is ``repo:tag`` trusted (and bound to ``digest``)?"""

    repo: str
    tag: str
    digest: str | None = None


class Verdict(msgspec.Struct, frozen=True, omit_defaults=True):
    repo: str
    tag: str
    code: str
    reason: str
    state_version: int
    digest: str | None = None
    role: str | None = None
    keys: list[str] = []
    log_offset: int | None = None
    root_trust: str | None = None  # "pinned" or "tofu": how the repository's first root was trusted

    @property
    def ok(self) -> bool:
        return self.code == Code.VALID.value


def _compromised(repo: RepoState, keyid: str, log_time: int) -> bool:
    return repo.compromised_at(keyid, log_time)


def grant_fault(repo: RepoState, gid: int, memo: dict[int, tuple[Code, str] | None]) -> tuple[Code, str] | None:
    """Why grant ``gid`` (and so everything signed under it) is not trusted, or None.

    Walks up the chain of authority: a grant stands only if enough of the keys that
    signed it were not compromised at the log time it was appended, and its parent
    stands too. Results are memoised per verification run.
    """
    if gid in memo:
        return memo[gid]
    chain: list[int] = []
    g: Grant | None = repo.grants[gid]
    fault: tuple[Code, str] | None = None
    while g is not None:
        if g.grant_id in memo:
            fault = memo[g.grant_id]
            break
        chain.append(g.grant_id)
        if g.removed_offset is not None:
            fault = (Code.ROLE_REMOVED, Reason.ROLE_REMOVED.text(role=g.role, removed_offset=g.removed_offset))
            break
        parent = repo.grants[g.parent] if g.parent is not None else None
        threshold = parent.threshold if parent is not None else g.threshold
        good = {key_material_id(repo.keys[k]) for k in g.signers if not _compromised(repo, k, g.log_time)}
        if len(good) < threshold:
            fault = (Code.DELEGATION_COMPROMISED, Reason.DELEGATION_COMPROMISED.text(role=g.role, offset=g.offset))
            break
        g = parent
    for c in chain:
        memo[c] = fault
    return fault


# -- re-delegation: what a later change of the signing role does to a tag ---------------
#
# A tag is judged by two grants of its role: the grant that signed it (its keys decide
# which signatures count, so a key rotation keeps what the outgoing key signed before
# the rotation) and the role's *current* grant (its policy applies to every tag under the
# role, old and new: a raised threshold, narrowed paths, its expiry). The signing grant's
# own expiry still bounds the tag: re-setting a role does not revive what an expired
# grant signed. Removal and compromise reports revoke (grant_fault). docs/SECURITY.md.


def effective_threshold(repo: RepoState, entry: TagEntry) -> int:
    """The threshold a tag must meet now: its role's current one (the signing grant's
    when the role no longer exists, which then fails as removed)."""
    cur = repo.role_grant(entry.role)
    return (cur if cur is not None else repo.grants[entry.grant_id]).threshold


def tag_patterns_apply(repo: RepoState, role: str) -> bool:
    """Whether ``role``'s current ``paths`` are tag patterns to check here. Not for
    ``targets`` (it signs every tag), and not in a repository of imported TUF / Notary
    metadata: there a grant's paths are TUF globs, Notary prefixes or hash prefixes, and
    the fold already re-resolves every target through the *current* delegations after
    each change (``core.tuf_fold._refresh``), so a narrowed delegation is applied there,
    by TUF's matching rules, not by fnmatch over the whole name. Both engines ask this."""
    return role != "targets" and repo.tuf is None


def paths_cover(paths: Sequence[str], tag: str) -> bool:
    return any(fnmatch.fnmatchcase(tag, p) for p in paths)


def outside_reason(paths: Sequence[str], entry: TagEntry) -> str:
    return Reason.OUTSIDE_PATTERNS.text(role=entry.role, paths=list(paths), tag=entry.tag)


def paths_fault(repo: RepoState, entry: TagEntry) -> tuple[Code, str] | None:
    """A delegated signer's current paths must still cover the tag."""
    if not tag_patterns_apply(repo, entry.role):
        return None
    cur = repo.role_grant(entry.role)
    if cur is None or paths_cover(cur.paths, entry.tag):
        return None
    return Code.OUTSIDE_PATTERNS, outside_reason(cur.paths, entry)


def signing_grant_expired_reason(repo: RepoState, entry: TagEntry) -> str:
    g = repo.grants[entry.grant_id]
    return Reason.GRANT_EXPIRED.text(role=entry.role, tag=entry.tag, offset=g.offset, expires=g.expires)


def expiry_fault(repo: RepoState, entry: TagEntry, ref_time: int) -> tuple[Code, str] | None:
    """Expiry at ``ref_time`` of root, targets and the signing role as they are now, of
    the grant that signed the tag, and of the tag's signature."""
    checks = [("root", repo.role_grant("root")), ("targets", repo.role_grant("targets"))]
    if entry.role != "targets":
        checks.append((entry.role, repo.role_grant(entry.role)))
    for name, g in checks:
        if g is not None and g.expires <= ref_time:
            return Code.EXPIRED, Reason.METADATA_EXPIRED.text(role=name, expires=g.expires)
    if repo.grants[entry.grant_id].expires <= ref_time:
        return Code.EXPIRED, signing_grant_expired_reason(repo, entry)
    if entry.expires <= ref_time:
        return Code.EXPIRED, Reason.SIGNATURE_EXPIRED.text(tag=entry.tag, expires=entry.expires)
    return None


def evaluate_entry(
    repo: RepoState,
    entry: TagEntry,
    sig_valid: Sequence[bool],
    ref_time: int,
    memo: dict[int, tuple[Code, str] | None],
) -> tuple[Code, str, list[str]]:
    """The verdict for one tag, given the crypto validity of each of its signatures
    (``sig_valid[i]`` for ``entry.signatures[i]``)."""
    grant = repo.grants[entry.grant_id]
    members = set(grant.keyids)          # the signing grant's keys: rotation keeps old tags
    threshold = effective_threshold(repo, entry)  # the current policy: a raised threshold applies
    counted: list[str] = []
    materials: set[bytes] = set()
    bad = compromised = 0
    # (1) signatures: valid, by a member key, not compromised when appended, each key once
    for (keyid, _sig), ok in zip(entry.signatures, sig_valid, strict=True):
        if keyid not in members:
            continue
        if not ok:
            bad += 1
            continue
        if _compromised(repo, keyid, entry.log_time):
            compromised += 1
            continue
        mat = key_material_id(repo.keys[keyid])
        if mat not in materials:
            materials.add(mat)
            counted.append(keyid)
    if len(counted) < threshold:
        if bad:
            return Code.BAD_SIGNATURE, Reason.BAD_SIGNATURE.text(bad=bad), counted
        if compromised:
            return Code.KEY_COMPROMISED, Reason.KEY_COMPROMISED.text(), counted
        return Code.THRESHOLD_NOT_MET, Reason.THRESHOLD_NOT_MET.text(counted=len(counted), threshold=threshold), counted
    # (2) the chain of authority above the signing keys
    fault = grant_fault(repo, entry.grant_id, memo)
    if fault is not None:
        return fault[0], fault[1], counted
    # (3) the role's current paths
    fault = paths_fault(repo, entry)
    if fault is not None:
        return fault[0], fault[1], counted
    # (4) expiry at the run's fixed reference time
    fault = expiry_fault(repo, entry, ref_time)
    if fault is not None:
        return fault[0], fault[1], counted
    return Code.VALID, Reason.TRUSTED.text(), counted
