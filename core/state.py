"""Trust state per repository, and the fold that applies one event or rejects it.

This module is a state machine with no I/O (compare python-tuf's TrustedMetadataSet):
the ingest layer hands it an envelope, the log time and log offset the envelope will
have, and a signature oracle; it either mutates the state or raises
:class:`RejectedEventError` and leaves the state exactly as it was.

Authority is recorded as *grants*: every accepted root, targets or delegation key set is
a :class:`Grant` that remembers which keys of its parent grant signed it and when (log
time). A compromise report therefore has a precise blast radius: a grant made by a key
at or after its compromise time falls, and so does everything beneath it.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .encoding import canonical_bytes
from .errors import EncodingError, KeyError_, StateError
from .events import (
    ROOT,
    TARGETS,
    Envelope,
    Event,
    ImageSigned,
    KeyCompromised,
    RepoCreated,
    RoleKeysSet,
    RoleRemoved,
    RootRotated,
    TagDeleted,
    decode_event,
)
from .keys import PublicKey, crypto_valid, key_material_id, validate_public_key
from .reasons import Reject

SigCheck = Callable[[PublicKey, bytes, bytes], bool]

MAX_KEYS_PER_ROLE = 64
MAX_PATTERNS_PER_ROLE = 64
_ROLE_RE = re.compile(r"^targets/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPO_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def default_sigcheck(key: PublicKey, message: bytes, signature: bytes) -> bool:
    return crypto_valid(key.alg, key.public, message, signature)


class RejectedEventError(StateError):
    """The fold refused an event. ``reason`` is a :class:`Reject` code."""

    def __init__(self, reason: Reject, message: str) -> None:
        super().__init__(reason.value, message)
        self.reject = reason


@dataclass(slots=True)
class Grant:
    """One accepted key set for a role, and the authority that made it."""

    grant_id: int
    role: str
    keyids: tuple[str, ...]
    threshold: int
    paths: tuple[str, ...]
    expires: int
    log_time: int
    offset: int
    parent: int | None          # grant whose keys signed this one (None: first root)
    signers: tuple[str, ...]     # keyids of the parent grant that signed, counted
    removed_offset: int | None = None


@dataclass(slots=True)
class TagEntry:
    """The current signed binding of a tag, with what is needed to re-verify it."""

    tag: str
    digest: str
    size: int
    expires: int
    role: str
    grant_id: int
    log_time: int
    offset: int
    version: int
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]


@dataclass(slots=True)
class RepoState:
    name: str
    origin: str                                  # "tofu" or "pinned"
    version: int = 0
    keys: dict[str, PublicKey] = field(default_factory=dict)       # every key ever seen
    grants: list[Grant] = field(default_factory=list)
    roles: dict[str, int] = field(default_factory=dict)            # active role -> grant id
    compromised: dict[bytes, int] = field(default_factory=dict)    # key material -> since
    compromised_keyids: dict[str, int] = field(default_factory=dict)
    tags: dict[str, TagEntry] = field(default_factory=dict)
    deleted_tags: dict[str, int] = field(default_factory=dict)     # tag -> offset deleted
    last_log_time: int = 0

    def role_grant(self, role: str) -> Grant | None:
        gid = self.roles.get(role)
        return None if gid is None else self.grants[gid]

    def compromised_at(self, keyid: str, log_time: int) -> bool:
        """True when ``keyid``'s key material was reported compromised at or before
        ``log_time`` (log time, never a signer's claim)."""
        key = self.keys.get(keyid)
        if key is None:
            return False
        since = self.compromised.get(key_material_id(key))
        return since is not None and since <= log_time


@dataclass(frozen=True, slots=True)
class Pin:
    """Repositories matching ``pattern`` must be created with root keys in ``keyids``."""

    pattern: str
    keyids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Applied:
    event: Event
    event_id: str
    repo: str
    version: int


class TrustState:
    """The fold over the log: per-repository trust state.

    ``version`` is the number of log records folded so far (the next log offset), and
    every verdict names it.
    """

    def __init__(self, pins: Iterable[Pin] = ()) -> None:
        self.repos: dict[str, RepoState] = {}
        self.version = 0
        self.pins = tuple(pins)

    # -- the fold ---------------------------------------------------------------------

    def apply(
        self,
        env: Envelope,
        *,
        log_time: int,
        offset: int,
        sigcheck: SigCheck = default_sigcheck,
        event: Event | None = None,
    ) -> Applied:
        """Apply one envelope appended at ``offset`` and ``log_time``, or raise
        :class:`RejectedEventError` leaving the state unchanged."""
        if event is None:
            try:
                event = decode_event(env.payload)
            except EncodingError as e:
                raise RejectedEventError(Reject.MALFORMED, f"payload is not a canonical event: {e}") from e
        if not env.signatures:
            raise RejectedEventError(Reject.UNKNOWN_KEY, "envelope carries no signatures")
        handler = _HANDLERS[type(event)]
        mutate = handler(self, env, event, log_time, offset, sigcheck)
        mutate()
        repo = self.repos[event.repo]
        repo.version = event.version
        repo.last_log_time = log_time
        self.version = offset + 1
        return Applied(event, env.event_id, event.repo, event.version)

    def skip(self, offset: int) -> None:
        """Advance the state version over a record that changes nothing."""
        self.version = offset + 1

    # -- checks shared by the handlers -------------------------------------------------

    def _repo_for(self, event: Event) -> RepoState:
        repo = self.repos.get(event.repo)
        if repo is None:
            raise RejectedEventError(Reject.UNKNOWN_REPOSITORY, f"repository {event.repo!r} does not exist; create it first")
        if event.version <= repo.version:
            raise RejectedEventError(
                Reject.VERSION_ROLLBACK, f"{event.repo}: version {event.version} is not above the current {repo.version}"
            )
        if event.version != repo.version + 1:
            raise RejectedEventError(
                Reject.VERSION_SKIP, f"{event.repo}: version {event.version} skips ahead; expected {repo.version + 1}"
            )
        return repo


def _check_keys(keys: list[PublicKey], threshold: int, what: str) -> dict[str, PublicKey]:
    if not keys:
        raise RejectedEventError(Reject.INVALID_KEYS, f"{what}: an empty key list trusts nothing")
    if len(keys) > MAX_KEYS_PER_ROLE:
        raise RejectedEventError(Reject.INVALID_KEYS, f"{what}: {len(keys)} keys; at most {MAX_KEYS_PER_ROLE}")
    out: dict[str, PublicKey] = {}
    materials: set[bytes] = set()
    for k in keys:
        try:
            nk = validate_public_key(k)
        except KeyError_ as e:
            raise RejectedEventError(Reject.INVALID_KEYS, f"{what}: {e}") from e
        if nk != k:
            raise RejectedEventError(Reject.INVALID_KEYS, f"{what}: key {nk.keyid[:16]}… is not in normalised form")
        out[k.keyid] = k
        materials.add(key_material_id(k))
    if not 1 <= threshold <= len(materials):
        raise RejectedEventError(
            Reject.INVALID_KEYS,
            f"{what}: threshold {threshold} must be between 1 and the {len(materials)} distinct keys",
        )
    return out


def count_signers(
    repo: RepoState | None,
    env: Envelope,
    keys: dict[str, PublicKey],
    threshold: int,
    log_time: int,
    sigcheck: SigCheck,
    what: str,
    short_reason: Reject = Reject.THRESHOLD_NOT_MET,
) -> tuple[str, ...]:
    """Key ids among ``keys`` whose signatures on ``env`` verify, each key material
    counted once; raise unless at least ``threshold`` of them.

    A signature by a role key that does not verify rejects the event outright: it is
    evidence of tampering even when enough other signatures are valid.
    """
    counted: list[str] = []
    materials: set[bytes] = set()
    compromised = 0
    for s in env.signatures:
        key = keys.get(s.keyid)
        if key is None:
            continue
        if not sigcheck(key, env.payload, s.sig):
            raise RejectedEventError(Reject.BAD_SIGNATURE, f"{what}: signature by key {s.keyid[:16]}… does not verify")
        mat = key_material_id(key)
        if mat in materials:
            continue
        if repo is not None:
            since = repo.compromised.get(mat)
            if since is not None and since <= log_time:
                compromised += 1
                continue
        materials.add(mat)
        counted.append(s.keyid)
    if len(counted) >= threshold:
        return tuple(counted)
    if compromised:
        raise RejectedEventError(Reject.KEY_COMPROMISED, f"{what}: signed with a key reported compromised")
    if not counted and short_reason is Reject.THRESHOLD_NOT_MET:
        raise RejectedEventError(Reject.UNKNOWN_KEY, f"{what}: no signature by any of its {len(keys)} keys")
    raise RejectedEventError(short_reason, f"{what}: {len(counted)} of the {threshold} signatures needed")


def _check_expiry(expires: int, issued_at: int, what: str) -> None:
    if expires <= issued_at:
        raise RejectedEventError(Reject.INVALID_FIELD, f"{what}: expires ({expires}) is not after issued_at ({issued_at})")


def _role_keys(repo: RepoState, grant: Grant) -> dict[str, PublicKey]:
    return {k: repo.keys[k] for k in grant.keyids}


# -- handlers: each validates everything, then returns a closure that mutates ----------


def _repo_created(st: TrustState, env: Envelope, ev: RepoCreated, log_time: int, offset: int, sigcheck: SigCheck):
    if ev.repo in st.repos:
        raise RejectedEventError(Reject.REPOSITORY_EXISTS, f"repository {ev.repo!r} already exists")
    if not _REPO_RE.match(ev.repo) or len(ev.repo) > 255:
        raise RejectedEventError(Reject.INVALID_FIELD, f"{ev.repo!r} is not a valid repository name (GUN)")
    if ev.version != 1:
        raise RejectedEventError(Reject.VERSION_SKIP, f"{ev.repo}: a repository starts at version 1, not {ev.version}")
    _check_expiry(ev.expires, ev.issued_at, "root")
    root = _check_keys(ev.root_keys, ev.root_threshold, "root")
    targets = _check_keys(ev.targets_keys, ev.targets_threshold, "targets")
    origin = "tofu"
    for pin in st.pins:
        if fnmatch.fnmatchcase(ev.repo, pin.pattern):
            if not set(root) <= pin.keyids:
                raise RejectedEventError(Reject.PIN_MISMATCH, f"{ev.repo}: root keys do not match the pin {pin.pattern!r}")
            origin = "pinned"
            break
    signers = count_signers(None, env, root, ev.root_threshold, log_time, sigcheck, "root")

    def mutate() -> None:
        repo = RepoState(ev.repo, origin)
        repo.keys.update(root)
        repo.keys.update(targets)
        g_root = Grant(0, ROOT, tuple(root), ev.root_threshold, (), ev.expires, log_time, offset, None, signers)
        g_targets = Grant(1, TARGETS, tuple(targets), ev.targets_threshold, (), ev.expires, log_time, offset, 0, signers)
        repo.grants += [g_root, g_targets]
        repo.roles[ROOT] = 0
        repo.roles[TARGETS] = 1
        st.repos[ev.repo] = repo

    return mutate


def _root_rotated(st: TrustState, env: Envelope, ev: RootRotated, log_time: int, offset: int, sigcheck: SigCheck):
    repo = st._repo_for(ev)
    _check_expiry(ev.expires, ev.issued_at, "root")
    old = repo.role_grant(ROOT)
    assert old is not None
    new = _check_keys(ev.root_keys, ev.root_threshold, "new root")
    signers = count_signers(
        repo, env, _role_keys(repo, old), old.threshold, log_time, sigcheck, "root rotation (old root keys)",
        Reject.ROOT_OLD_THRESHOLD,
    )
    count_signers(repo, env, new, ev.root_threshold, log_time, sigcheck, "root rotation (new root keys)", Reject.ROOT_NEW_THRESHOLD)

    def mutate() -> None:
        repo.keys.update(new)
        gid = len(repo.grants)
        repo.grants.append(Grant(gid, ROOT, tuple(new), ev.root_threshold, (), ev.expires, log_time, offset, old.grant_id, signers))
        repo.roles[ROOT] = gid

    return mutate


def _parent_role(role: str) -> str:
    return ROOT if role == TARGETS else TARGETS


def _role_keys_set(st: TrustState, env: Envelope, ev: RoleKeysSet, log_time: int, offset: int, sigcheck: SigCheck):
    repo = st._repo_for(ev)
    if ev.role != TARGETS and not _ROLE_RE.match(ev.role):
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.role!r}: set 'targets' or a delegated 'targets/NAME'")
    if ev.role == TARGETS and ev.paths:
        raise RejectedEventError(Reject.INVALID_ROLE, "targets signs every tag; paths apply to delegated signers only")
    if ev.role != TARGETS and not ev.paths:
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.role}: a delegated signer needs at least one tag pattern")
    if len(ev.paths) > MAX_PATTERNS_PER_ROLE:
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.role}: at most {MAX_PATTERNS_PER_ROLE} patterns")
    _check_expiry(ev.expires, ev.issued_at, ev.role)
    keys = _check_keys(ev.keys, ev.threshold, ev.role)
    parent = repo.role_grant(_parent_role(ev.role))
    assert parent is not None
    signers = count_signers(repo, env, _role_keys(repo, parent), parent.threshold, log_time, sigcheck, f"{ev.role} (signed by {parent.role})")

    def mutate() -> None:
        repo.keys.update(keys)
        gid = len(repo.grants)
        repo.grants.append(
            Grant(gid, ev.role, tuple(keys), ev.threshold, tuple(ev.paths), ev.expires, log_time, offset, parent.grant_id, signers)
        )
        repo.roles[ev.role] = gid

    return mutate


def _role_removed(st: TrustState, env: Envelope, ev: RoleRemoved, log_time: int, offset: int, sigcheck: SigCheck):
    repo = st._repo_for(ev)
    if not _ROLE_RE.match(ev.role):
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.role!r}: only delegated signers 'targets/NAME' can be removed")
    if ev.role not in repo.roles:
        raise RejectedEventError(Reject.UNKNOWN_ROLE, f"{ev.repo}: no delegated signer {ev.role!r}")
    parent = repo.role_grant(TARGETS)
    assert parent is not None
    count_signers(repo, env, _role_keys(repo, parent), parent.threshold, log_time, sigcheck, f"remove {ev.role}")

    def mutate() -> None:
        for g in repo.grants:
            if g.role == ev.role and g.removed_offset is None:
                g.removed_offset = offset
        del repo.roles[ev.role]

    return mutate


def _key_compromised(st: TrustState, env: Envelope, ev: KeyCompromised, log_time: int, offset: int, sigcheck: SigCheck):
    repo = st._repo_for(ev)
    key = repo.keys.get(ev.keyid)
    if key is None:
        raise RejectedEventError(Reject.UNKNOWN_KEY, f"{ev.repo}: key {ev.keyid[:16]}… was never part of this repository")
    if ev.since < 0:
        raise RejectedEventError(Reject.INVALID_FIELD, "since must be a log time (ns since the epoch)")
    errors: list[RejectedEventError] = []
    for role in (ROOT, TARGETS):
        g = repo.role_grant(role)
        assert g is not None
        try:
            count_signers(repo, env, _role_keys(repo, g), g.threshold, log_time, sigcheck, f"compromise report ({role})")
            break
        except RejectedEventError as e:
            errors.append(e)
    else:  # name both roles: "root: no signature" alone misleads a signer who used an old targets key
        raise RejectedEventError(errors[0].reject, "needs a threshold of root or of targets, met by neither: "
                                 + "; ".join(e.message for e in errors))
    mat = key_material_id(key)

    def mutate() -> None:
        prev = repo.compromised.get(mat)
        repo.compromised[mat] = ev.since if prev is None else min(prev, ev.since)
        for kid, k in repo.keys.items():
            if key_material_id(k) == mat:
                repo.compromised_keyids[kid] = repo.compromised[mat]

    return mutate


def _signing_grant(repo: RepoState, role: str, tag: str) -> Grant:
    grant = repo.role_grant(role)
    if grant is None:
        if role == ROOT or (role != TARGETS and not _ROLE_RE.match(role)):
            raise RejectedEventError(Reject.INVALID_ROLE, f"{role!r} cannot sign tags; use targets or a delegated signer")
        raise RejectedEventError(Reject.UNKNOWN_ROLE, f"{repo.name}: no signer role {role!r} (removed or never added)")
    if role != TARGETS and not any(fnmatch.fnmatchcase(tag, p) for p in grant.paths):
        raise RejectedEventError(
            Reject.OUTSIDE_PATTERNS, f"{role} may sign tags matching {list(grant.paths)}, not {tag!r}"
        )
    return grant


def _image_signed(st: TrustState, env: Envelope, ev: ImageSigned, log_time: int, offset: int, sigcheck: SigCheck):
    repo = st._repo_for(ev)
    if not _TAG_RE.match(ev.tag):
        raise RejectedEventError(Reject.INVALID_FIELD, f"{ev.tag!r} is not a valid tag")
    if not _DIGEST_RE.match(ev.digest):
        raise RejectedEventError(Reject.INVALID_FIELD, f"{ev.digest!r} is not a sha256:<64 hex> digest")
    if ev.size < 0:
        raise RejectedEventError(Reject.INVALID_FIELD, f"size {ev.size} is negative")
    _check_expiry(ev.expires, ev.issued_at, f"{ev.repo}:{ev.tag}")
    grant = _signing_grant(repo, ev.role, ev.tag)
    signers = count_signers(repo, env, _role_keys(repo, grant), grant.threshold, log_time, sigcheck, f"{ev.repo}:{ev.tag} by {ev.role}")
    sigs = tuple((s.keyid, s.sig) for s in env.signatures if s.keyid in signers)

    def mutate() -> None:
        repo.tags[ev.tag] = TagEntry(
            ev.tag, ev.digest, ev.size, ev.expires, ev.role, grant.grant_id, log_time, offset, ev.version, env.payload, sigs
        )
        repo.deleted_tags.pop(ev.tag, None)

    return mutate


def _tag_deleted(st: TrustState, env: Envelope, ev: TagDeleted, log_time: int, offset: int, sigcheck: SigCheck):
    repo = st._repo_for(ev)
    if ev.tag not in repo.tags:
        raise RejectedEventError(Reject.UNKNOWN_TAG, f"{ev.repo}: no tag {ev.tag!r} to delete")
    grant = _signing_grant(repo, ev.role, ev.tag)
    count_signers(repo, env, _role_keys(repo, grant), grant.threshold, log_time, sigcheck, f"delete {ev.repo}:{ev.tag}")

    def mutate() -> None:
        del repo.tags[ev.tag]
        repo.deleted_tags[ev.tag] = offset

    return mutate


_HANDLERS = {
    RepoCreated: _repo_created,
    RootRotated: _root_rotated,
    RoleKeysSet: _role_keys_set,
    RoleRemoved: _role_removed,
    KeyCompromised: _key_compromised,
    ImageSigned: _image_signed,
    TagDeleted: _tag_deleted,
}

__all__ = [
    "Applied", "Grant", "Pin", "RejectedEventError", "RepoState", "SigCheck", "TagEntry", "TrustState",
    "count_signers", "default_sigcheck", "canonical_bytes",
]
