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
import sys
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Final

from .bounds import MAX_SIGNATURES_PER_ENVELOPE, int_field_out_of_range
from .encoding import canonical_bytes
from .errors import EncodingError, KeyMaterialError, StateError
from .events import (
    ROOT,
    TARGETS,
    Envelope,
    Event,
    ImageSigned,
    KeyCompromised,
    MetadataImported,
    RepoCreated,
    RoleKeysSet,
    RoleRemoved,
    RootRotated,
    TagDeleted,
    decode_event,
    role_scope,
    version_scope,
)
from .keys import PublicKey, crypto_valid, key_material_id, validate_public_key
from .names import MAX_REPO_LEN, is_delegated_role, is_digest, is_pattern, is_repo, is_tag
from .reasons import Reject
from .shared_maps import no_entries, owned, shared
from .tag_entry import TagEntry
from .tuf_model import TufRepo

SigCheck = Callable[[PublicKey, bytes, bytes], bool]
# What an event handler returns once every check has passed: the change, applied by calling it.
Mutation = Callable[[], None]

MAX_KEYS_PER_ROLE = 64
MAX_PATTERNS_PER_ROLE = 64


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


# the roles of every repository as RepoCreated leaves it, shared until one changes
CREATED_ROLES: Final = shared(((ROOT, 0), (TARGETS, 1)))


@dataclass(slots=True)
class RepoState:
    name: str
    origin: str                                  # "tofu" or "pinned"
    version: int = 0                             # moves on every accepted event; >= every accepted version
    keys: dict[str, PublicKey] = field(default_factory=dict)       # every key ever seen
    grants: list[Grant] = field(default_factory=list)
    roles: dict[str, int] = field(default_factory=dict)            # active role -> grant id
    # (the next three, and roles as RepoCreated leaves them, start as maps shared by every
    # repository: write through core.shared_maps.owned)
    compromised: dict[bytes, int] = field(default_factory=no_entries)    # key material -> since
    compromised_keyids: dict[str, int] = field(default_factory=no_entries)
    tags: dict[str, TagEntry] = field(default_factory=dict)
    deleted_tags: dict[str, int] = field(default_factory=no_entries)     # tag -> offset deleted
    last_log_time: int = 0
    tuf: TufRepo | None = None                   # set when the trust data is imported TUF/Notary metadata
    versions: dict[str, int] = field(default_factory=dict)         # version scope (a tag, role:R, key:K) -> last accepted

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


def pinned_origin(pins: Iterable[Pin], repo: str, root_key_names: list[frozenset[str]]) -> str:
    """``"pinned"`` or ``"tofu"`` for a repository created with root keys known by
    ``root_key_names`` (one set of ids per key: its trustlog key id, and for imported
    metadata the ids its publisher uses); raise ``PIN_MISMATCH`` unless *every* pin
    matching ``repo`` names *every* root key. The one rule for native creations,
    imported first roots and ``pins set`` (``ingest.pinpolicy.contradictions``)."""
    origin = "tofu"
    for pin in pins:
        if fnmatch.fnmatchcase(repo, pin.pattern):
            if not all(ids & pin.keyids for ids in root_key_names):
                raise RejectedEventError(Reject.PIN_MISMATCH, f"{repo}: root keys do not match the pin {pin.pattern!r}")
            origin = "pinned"
    return origin


def first_root_names(repo: RepoState) -> list[frozenset[str]]:
    """The ids of each key of ``repo``'s first root, as :func:`pinned_origin` takes them."""
    extra = repo.tuf.first_root_names if repo.tuf is not None else {}
    return [frozenset({kid, *extra.get(kid, ())}) for kid in (repo.grants[0].keyids if repo.grants else ())]


class TrustState:
    """The fold over the log: per-repository trust state.

    ``version`` is the number of log records folded so far (the next log offset), and
    every verdict names it.
    """

    def __init__(self, pins: Iterable[Pin] = ()) -> None:
        self.repos: dict[str, RepoState] = {}
        self.version = 0
        self.pins = tuple(pins)
        # key id -> (that key id's str, the key): the one pair of objects every repository
        # of this state holds for a key (see shared_keys)
        self._keys: dict[str, tuple[str, PublicKey]] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}   # the key-id tuples of grants, one each

    def shared_keys(self, keys: dict[str, PublicKey]) -> dict[str, PublicKey]:
        """``keys`` (key id -> key, as the fold accepted them) with the key-id str and
        the key object this state already holds for each, where it holds an equal one.

        Each decoded event carries its own copies, and one signer key (a CI key, an
        organisation's root) is set in many repositories: sharing them keeps one key
        object and one 64-character id per key instead of one per repository and role
        (~300 bytes each). Equality, not identity, is what every reader compares."""
        out: dict[str, PublicKey] = {}
        table = self._keys
        for kid, key in keys.items():
            got = table.get(kid)
            if got is None or got[1] != key:
                got = table[kid] = (kid, key)
            out[got[0]] = got[1]
        return out

    def shared_ids(self, keyids: Iterable[str]) -> tuple[str, ...]:
        """``keyids`` as a tuple of the key-id strs :meth:`shared_keys` holds, itself the
        one tuple this state holds for that sequence (a grant's keys, its signers, which
        many repositories have alike)."""
        table = self._keys
        t = tuple(got[0] if (got := table.get(k)) is not None else k for k in keyids)
        return self._tuples.setdefault(t, t)

    # -- the fold ---------------------------------------------------------------------

    def apply(
        self,
        env: Envelope,
        *,
        log_time: int,
        offset: int,
        sigcheck: SigCheck = default_sigcheck,
        event: Event | None = None,
    ) -> None:
        """Apply one envelope appended at ``offset`` and ``log_time``, or raise
        :class:`RejectedEventError` leaving the state unchanged."""
        if event is None:
            try:
                event = decode_event(env.payload)
            except EncodingError as e:
                raise RejectedEventError(Reject.MALFORMED, f"payload is not a canonical event: {e}") from e
        if type(event) is MetadataImported:
            pass  # signed inside its metadata, by the publisher (core.tuf_fold)
        elif not env.signatures:
            raise RejectedEventError(Reject.UNKNOWN_KEY, "envelope carries no signatures")
        elif type(event) is not KeyCompromised and (r := self.repos.get(event.repo)) is not None and r.tuf is not None:
            raise RejectedEventError(
                Reject.INVALID_ROLE, f"{event.repo}: its trust data is imported TUF/Notary metadata; "
                "change it at its publisher (only compromise reports are native events here)")
        if len(env.signatures) > MAX_SIGNATURES_PER_ENVELOPE:
            raise RejectedEventError(
                Reject.INVALID_FIELD, f"{len(env.signatures)} signatures; at most {MAX_SIGNATURES_PER_ENVELOPE}"
            )
        bad_int = int_field_out_of_range(event)
        if bad_int is not None:
            raise RejectedEventError(
                Reject.INVALID_FIELD, f"{bad_int} = {getattr(event, bad_int)} is outside the int64 range"
            )
        handler = _HANDLERS[type(event)]
        mutate = handler(self, env, event, log_time, offset, sigcheck)
        mutate()
        repo = self.repos[event.repo]
        scope = version_scope(event)
        if ":" in scope:   # role:R or key:K, a new str per event: one per distinct scope (a tag's is its name)
            scope = sys.intern(scope)
        repo.versions[scope] = event.version
        # versions are per scope (core.events); the repository's own moves on every change
        # (the compiled verifier recompiles a repository when it moves) and stays above them all
        repo.version = max(repo.version + 1, event.version)
        repo.last_log_time = log_time
        self.version = offset + 1

    # -- checks shared by the handlers -------------------------------------------------

    def _repo_for(self, event: Event) -> RepoState:
        repo = self.repos.get(event.repo)
        if repo is None:
            raise RejectedEventError(Reject.UNKNOWN_REPOSITORY, f"repository {event.repo!r} does not exist; create it first")
        scope = version_scope(event)
        current = repo.versions.get(scope, 0)
        if event.version <= current:  # a replay, or a signer that did not see the last change of this scope
            raise RejectedEventError(
                Reject.VERSION_ROLLBACK,
                f"{event.repo}: version {event.version} of {scope if ':' in scope else 'tag ' + scope} "
                f"is not above its current {current}",
            )
        return repo


def invalid_key_rejection(what: str, error: KeyMaterialError) -> RejectedEventError:
    """The rejection of an event for a key of ``what`` (a role, ``"new root"``) that
    ``validate_public_key`` refused; also what a trusted replay raises for a key whose
    deferred point check fails (``core.keys.DeferredPointChecks``)."""
    return RejectedEventError(Reject.INVALID_KEYS, f"{what}: {error}")


def _check_keys(keys: list[PublicKey], threshold: int, what: str) -> dict[str, PublicKey]:
    if not keys:
        raise RejectedEventError(Reject.INVALID_KEYS, f"{what}: an empty key list trusts nothing")
    if len(keys) > MAX_KEYS_PER_ROLE:
        raise RejectedEventError(Reject.INVALID_KEYS, f"{what}: {len(keys)} keys; at most {MAX_KEYS_PER_ROLE}")
    out: dict[str, PublicKey] = {}
    materials: set[bytes] = set()
    for k in keys:
        try:
            nk = validate_public_key(k, what=what)
        except KeyMaterialError as e:
            raise invalid_key_rejection(what, e) from e
        if nk != k:
            raise RejectedEventError(
                Reject.INVALID_KEYS,
                f"{what}: {k.keytype} key {k.keyid[:16]}… is not in its one accepted encoding "
                f"(re-encoded, its key id is {nk.keyid[:16]}…)",
            )
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


def _repo_created(st: TrustState, env: Envelope, ev: RepoCreated, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    if ev.repo in st.repos:
        raise RejectedEventError(Reject.REPOSITORY_EXISTS, f"repository {ev.repo!r} already exists")
    if not is_repo(ev.repo):
        raise RejectedEventError(
            Reject.INVALID_FIELD, f"{ev.repo!r} is not a valid repository name (GUN, at most {MAX_REPO_LEN} characters)"
        )
    if ev.version != 1:
        raise RejectedEventError(Reject.VERSION_SKIP, f"{ev.repo}: a repository starts at version 1, not {ev.version}")
    _check_expiry(ev.expires, ev.issued_at, "root")
    root = _check_keys(ev.root_keys, ev.root_threshold, "root")
    targets = _check_keys(ev.targets_keys, ev.targets_threshold, "targets")
    origin = pinned_origin(st.pins, ev.repo, [frozenset({kid}) for kid in root])  # every matching pin holds
    signers = count_signers(None, env, root, ev.root_threshold, log_time, sigcheck, "root")

    def mutate() -> None:
        root_keys, targets_keys, by = st.shared_keys(root), st.shared_keys(targets), st.shared_ids(signers)
        repo = RepoState(ev.repo, origin)
        repo.keys.update(root_keys)
        repo.keys.update(targets_keys)
        g_root = Grant(0, ROOT, st.shared_ids(root_keys), ev.root_threshold, (), ev.expires, log_time, offset, None, by)
        g_targets = Grant(1, TARGETS, st.shared_ids(targets_keys), ev.targets_threshold, (), ev.expires, log_time, offset,
                          0, by)
        repo.grants = [g_root, g_targets]   # (not +=: a list grown from empty keeps room for 8)
        repo.roles = CREATED_ROLES
        repo.versions[role_scope(TARGETS)] = ev.version
        st.repos[ev.repo] = _native_store(repo)

    return mutate


def _root_rotated(st: TrustState, env: Envelope, ev: RootRotated, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
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
        keys = st.shared_keys(new)
        repo.keys.update(keys)
        gid = len(repo.grants)
        repo.grants.append(Grant(gid, ROOT, st.shared_ids(keys), ev.root_threshold, (), ev.expires, log_time, offset,
                                 old.grant_id, st.shared_ids(signers)))
        owned(repo, "roles")[ROOT] = gid

    return mutate


def _parent_role(role: str) -> str:
    return ROOT if role == TARGETS else TARGETS


def _role_keys_set(st: TrustState, env: Envelope, ev: RoleKeysSet, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    repo = st._repo_for(ev)
    if ev.role != TARGETS and not is_delegated_role(ev.role):
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.role!r}: set 'targets' or a delegated 'targets/NAME'")
    if ev.role == TARGETS and ev.paths:
        raise RejectedEventError(Reject.INVALID_ROLE, "targets signs every tag; paths apply to delegated signers only")
    if ev.role != TARGETS and not ev.paths:
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.role}: a delegated signer needs at least one tag pattern")
    if len(ev.paths) > MAX_PATTERNS_PER_ROLE:
        raise RejectedEventError(Reject.INVALID_ROLE, f"{ev.role}: at most {MAX_PATTERNS_PER_ROLE} patterns")
    bad = [p for p in ev.paths if not is_pattern(p)]
    if bad:
        raise RejectedEventError(
            Reject.INVALID_ROLE, f"{ev.role}: {bad[0]!r} is not a tag pattern (tag characters and * ? [ ] ! only)"
        )
    _check_expiry(ev.expires, ev.issued_at, ev.role)
    keys = _check_keys(ev.keys, ev.threshold, ev.role)
    parent = repo.role_grant(_parent_role(ev.role))
    assert parent is not None
    signers = count_signers(repo, env, _role_keys(repo, parent), parent.threshold, log_time, sigcheck,
                            f"{ev.role} (signed by {parent.role})")

    def mutate() -> None:
        shared = st.shared_keys(keys)
        repo.keys.update(shared)
        gid = len(repo.grants)
        repo.grants.append(
            Grant(gid, ev.role, st.shared_ids(shared), ev.threshold, tuple(ev.paths), ev.expires, log_time, offset,
                  parent.grant_id, st.shared_ids(signers))
        )
        owned(repo, "roles")[ev.role] = gid

    return mutate


def _role_removed(st: TrustState, env: Envelope, ev: RoleRemoved, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    repo = st._repo_for(ev)
    if not is_delegated_role(ev.role):
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
        del owned(repo, "roles")[ev.role]

    return mutate


def _key_compromised(st: TrustState, env: Envelope, ev: KeyCompromised, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    repo = st._repo_for(ev)
    key = repo.keys.get(ev.keyid)
    if key is None:
        raise RejectedEventError(Reject.UNKNOWN_KEY, f"{ev.repo}: key {ev.keyid[:16]}… was never part of this repository")
    if ev.since < 0:
        raise RejectedEventError(Reject.INVALID_FIELD, "since must be a log time (ns since the epoch)")
    mat = key_material_id(key)
    allowed = compromise_authority(repo, mat)
    errors: list[RejectedEventError] = []
    for role in allowed:
        g = repo.role_grant(role)
        if g is None:
            continue
        try:
            count_signers(repo, env, _role_keys(repo, g), g.threshold, log_time, sigcheck, f"compromise report ({role})")
            break
        except RejectedEventError as e:
            errors.append(e.with_traceback(None))  # kept without the frame: no cycle through it
    else:
        _refuse_unauthorised_report(repo, env, ev, allowed, log_time, sigcheck)
        if not errors:
            raise RejectedEventError(
                Reject.NOT_AUTHORISED, f"{ev.repo}: no active role may report key {ev.keyid[:16]}… compromised")
        # name every role tried: "root: no signature" alone misleads a signer who used an old targets key
        raise RejectedEventError(errors[0].reject, f"needs a threshold of {' or of '.join(allowed)}, met by "
                                 "none: " + "; ".join(e.message for e in errors))

    def mutate() -> None:
        compromised, compromised_keyids = owned(repo, "compromised"), owned(repo, "compromised_keyids")
        prev = compromised.get(mat)
        compromised[mat] = ev.since if prev is None else min(prev, ev.since)
        for kid, k in repo.keys.items():
            if key_material_id(k) == mat:
                compromised_keyids[kid] = compromised[mat]

    return mutate


def compromise_authority(repo: RepoState, material: bytes) -> tuple[str, ...]:
    """The roles whose threshold may report the key with ``material`` compromised.

    A report needs a role at or above *every* role that holds or ever held the key
    (any grant in the history, because a compromise reaches back to what the key signed
    while it held that role): a root key can be reported by root only; a targets key by
    root or targets; a delegated signer's key by root, targets or that signer role
    itself. A key shared by two delegated roles can be reported by root or targets
    only, so no signer can revoke another signer's key. See docs/SECURITY.md.
    """
    holders = {g.role for g in repo.grants if any(key_material_id(repo.keys[k]) == material for k in g.keyids)}
    if ROOT in holders:
        return (ROOT,)
    if TARGETS in holders or len(holders) != 1:
        return (ROOT, TARGETS)
    return (ROOT, TARGETS, next(iter(holders)))


def _refuse_unauthorised_report(
    repo: RepoState, env: Envelope, ev: KeyCompromised, allowed: tuple[str, ...], log_time: int, sigcheck: SigCheck
) -> None:
    """Name the problem when a report is signed by a role that may not make it."""
    for role, gid in repo.roles.items():
        if role in allowed:
            continue
        g = repo.grants[gid]
        try:
            count_signers(repo, env, _role_keys(repo, g), g.threshold, log_time, sigcheck, f"compromise report ({role})")
        except RejectedEventError:
            continue
        raise RejectedEventError(
            Reject.NOT_AUTHORISED,
            f"{ev.repo}: key {ev.keyid[:16]}… may be reported compromised only by a threshold of "
            f"{' or '.join(allowed)}, not by {role} (authority flows down, never up)",
        )


def _signing_grant(repo: RepoState, role: str, tag: str) -> Grant:
    grant = repo.role_grant(role)
    if grant is None:
        if role == ROOT or (role != TARGETS and not is_delegated_role(role)):
            raise RejectedEventError(Reject.INVALID_ROLE, f"{role!r} cannot sign tags; use targets or a delegated signer")
        raise RejectedEventError(Reject.UNKNOWN_ROLE, f"{repo.name}: no signer role {role!r} (removed or never added)")
    if role != TARGETS and not any(fnmatch.fnmatchcase(tag, p) for p in grant.paths):
        raise RejectedEventError(
            Reject.OUTSIDE_PATTERNS, f"{role} may sign tags matching {list(grant.paths)}, not {tag!r}"
        )
    return grant


def _image_signed(st: TrustState, env: Envelope, ev: ImageSigned, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    repo = st._repo_for(ev)
    if not is_tag(ev.tag):
        raise RejectedEventError(Reject.INVALID_FIELD, f"{ev.tag!r} is not a valid tag")
    if not is_digest(ev.digest):
        raise RejectedEventError(Reject.INVALID_FIELD, f"{ev.digest!r} is not a sha256:<64 hex> digest")
    if ev.size < 0:
        raise RejectedEventError(Reject.INVALID_FIELD, f"size {ev.size} is negative")
    _check_expiry(ev.expires, ev.issued_at, f"{ev.repo}:{ev.tag}")
    grant = _signing_grant(repo, ev.role, ev.tag)
    signers = count_signers(repo, env, _role_keys(repo, grant), grant.threshold, log_time, sigcheck, f"{ev.repo}:{ev.tag} by {ev.role}")
    shared = {k: k for k in grant.keyids}  # the grant's key-id strings: one per key, not one per tag
    sigs = tuple((shared[s.keyid], s.sig) for s in env.signatures if s.keyid in signers)

    def mutate() -> None:
        repo.tags[ev.tag] = TagEntry(
            ev.tag, ev.digest, ev.size, ev.expires, ev.role, grant.grant_id, log_time, offset, ev.version, env.payload, sigs
        )
        repo.deleted_tags.pop(ev.tag, None)

    return mutate


def _tag_deleted(st: TrustState, env: Envelope, ev: TagDeleted, log_time: int, offset: int, sigcheck: SigCheck) -> Mutation:
    repo = st._repo_for(ev)
    if ev.tag not in repo.tags:
        raise RejectedEventError(Reject.UNKNOWN_TAG, f"{ev.repo}: no tag {ev.tag!r} to delete")
    grant = _signing_grant(repo, ev.role, ev.tag)
    count_signers(repo, env, _role_keys(repo, grant), grant.threshold, log_time, sigcheck, f"delete {ev.repo}:{ev.tag}")

    def mutate() -> None:
        del repo.tags[ev.tag]
        owned(repo, "deleted_tags")[ev.tag] = offset

    return mutate


def _native_store(repo: RepoState) -> RepoState:
    """A new native repository's tags in the selected store (core.tagstore_backend:
    the compiled compact one, else a dict). Imported lazily: the compiled store imports
    this module for TagEntry."""
    from . import tagstore_backend

    tagstore_backend.adopt(repo)
    return repo


_HANDLERS: dict[type, Callable[..., Mutation]] = {
    RepoCreated: _repo_created,
    RootRotated: _root_rotated,
    RoleKeysSet: _role_keys_set,
    RoleRemoved: _role_removed,
    KeyCompromised: _key_compromised,
    ImageSigned: _image_signed,
    TagDeleted: _tag_deleted,
}

__all__ = [
    "Grant", "Pin", "RejectedEventError", "RepoState", "SigCheck", "TagEntry", "TrustState",
    "compromise_authority", "count_signers", "default_sigcheck", "canonical_bytes", "first_root_names",
    "pinned_origin",
]
